//! ONNX export of zoo models, written with tract's public protobuf types.
//!
//! The graph mirrors [`ZooModelId::layers`] one node per layer; weights are the
//! reference's f32 tensors, stored as `raw_data` (little-endian). The batch
//! dimension is symbolic (`N`) so any runtime can bind it.

use std::collections::HashMap;

use candle_core::Tensor;
use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::qformat::{Granularity, IntType, QParams, QuantizedWeight};
use super::stored::{f32_bytes, half_bytes, InputQuant, InputQuants, Stored, StoredParams};
use super::ModelError;
use crate::zoo::{Layer, ZooModelId};

/// Name of the graph's input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph's output (logits).
pub const OUTPUT_NAME: &str = "logits";
/// ONNX opset the export targets; every op used exists unchanged since opset 13.
pub const OPSET: i64 = 13;

/// Serializes `zoo` with f32 `tensors` as an ONNX model.
pub fn export(model_name: &str, zoo: ZooModelId, tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>, ModelError> {
    let params = tensors
        .iter()
        .map(|(k, t)| Stored::from_tensor(t).map(|s| (k.clone(), s)))
        .collect::<candle_core::Result<StoredParams>>()
        .map_err(|e| ModelError::Export { model: model_name.to_string(), reason: e.to_string() })?;
    export_stored(model_name, zoo, &params, &InputQuants::new(), IntegerForm::Integer)
}

/// A parameter the ONNX writer has no form for (the message names the parameter and why).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param}: {problem}")]
pub struct ParamError {
    pub param: String,
    pub problem: String,
}

fn param_error(param: &str, problem: impl Into<String>) -> ParamError {
    ParamError { param: param.to_string(), problem: problem.into() }
}

/// Nodes and initializers being written, with unique names.
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    /// Names in `inits`.
    init_names: std::collections::HashSet<String>,
}

impl Graph {
    pub fn node(&mut self, op: &str, inputs: Vec<String>, output: String, attribute: Vec<AttributeProto>) -> String {
        self.node_n(op, inputs, vec![output], attribute).remove(0)
    }

    fn node_n(
        &mut self,
        op: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> Vec<String> {
        self.nodes.push(NodeProto {
            name: output[0].clone(),
            input,
            output: output.clone(),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        output
    }

    /// Adds an initializer, once per name: a weight several layers share is written for the
    /// first and read by the rest (the same name always carries the same values here).
    pub fn init(&mut self, name: String, dims: &[usize], dt: DataType, raw: Vec<u8>) -> String {
        if self.init_names.insert(name.clone()) {
            self.inits.push(tensor_proto(&name, dims, dt, raw));
        }
        name
    }

    pub fn f32s(&mut self, name: String, dims: &[usize], values: &[f32]) -> String {
        self.init(name, dims, DataType::Float, f32_bytes(values))
    }

    fn i64s(&mut self, name: String, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name, &[values.len()], DataType::Int64, raw)
    }

    /// The f32 value of parameter `key` as a graph value: an initializer, or the output of the
    /// nodes that widen or dequantize its stored form.
    pub fn float_param(&mut self, key: &str, p: &Stored) -> Result<String, ParamError> {
        Ok(match p {
            Stored::F32 { shape, values } => self.f32s(key.to_string(), shape, values),
            // Stored half, cast to f32 for the float kernels (tract folds the cast).
            Stored::Half { bf16, shape, bits } => {
                let dt = if *bf16 { DataType::Bfloat16 } else { DataType::Float16 };
                let stored = self.init(format!("{key}.half"), shape, dt, half_bytes(bits));
                self.node("Cast", vec![stored], key.to_string(), vec![int("to", DataType::Float as i64)])
            }
            Stored::Int(q) if q.ty.bits() == 4 => self.int4_param(key, q)?,
            Stored::Int(q) => {
                if q.ty != IntType::I8 {
                    return Err(param_error(key, format!("8-bit weights are written as i8 only, not {:?}", q.ty)));
                }
                let per_channel = match q.granularity {
                    Granularity::PerTensor => false,
                    Granularity::PerChannel => true,
                    Granularity::Group(g) => return Err(param_error(key, format!("8-bit group-wise ({g}) weights need blocked DequantizeLinear (opset 21), which tract does not load"))),
                };
                let dims = if per_channel { vec![q.params.len()] } else { vec![] };
                let values = q.values.clone();
                let qn = self.init(format!("{key}.q"), &q.shape, DataType::Int8, values);
                let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                let sn = self.f32s(format!("{key}.scale"), &dims, &scales);
                let zps: Vec<u8> = q.params.iter().map(|p| p.zero_point as i8 as u8).collect();
                let zn = self.init(format!("{key}.zero_point"), &dims, DataType::Int8, zps);
                let axis = if per_channel { vec![int("axis", 0)] } else { vec![] };
                self.node("DequantizeLinear", vec![qn, sn, zn], key.to_string(), axis)
            }
        })
    }

    /// Packed 4-bit weights (u8 initializer, two nibbles a byte) unpacked with float ops tract
    /// folds into a constant: `hi = floor(b / 16)`, `lo = b − 16·hi`, interleaved, then
    /// `(nibble − (zero_point − qmin)) · scale` per group: exactly `DequantizeLinear`'s value.
    fn int4_param(&mut self, key: &str, q: &QuantizedWeight) -> Result<String, ParamError> {
        let n = q.values.len();
        if !n.is_multiple_of(2) {
            return Err(param_error(key, format!("{n} int4 values do not pack into whole bytes")));
        }
        let blocks = q.params.len();
        let k = |s: &str| format!("{key}.{s}");
        let packed = self.init(k("int4"), &[n / 2], DataType::Uint8, crate::model::stored::pack_int4(q));
        let b = self.node("Cast", vec![packed], k("bytes"), vec![int("to", DataType::Float as i64)]);
        let sixteen = self.f32s(k("sixteen"), &[], &[16.0]);
        let div = self.node("Div", vec![b.clone(), sixteen.clone()], k("div16"), vec![]);
        let hi = self.node("Floor", vec![div], k("hi"), vec![]);
        let hi16 = self.node("Mul", vec![hi.clone(), sixteen], k("hi16"), vec![]);
        let lo = self.node("Sub", vec![b, hi16], k("lo"), vec![]);
        let column = self.i64s(k("column"), &[(n / 2) as i64, 1]);
        let lo = self.node("Reshape", vec![lo, column.clone()], k("lo_col"), vec![]);
        let hi = self.node("Reshape", vec![hi, column], k("hi_col"), vec![]);
        let pairs = self.node("Concat", vec![lo, hi], k("pairs"), vec![int("axis", 1)]);
        let grouped_shape = self.i64s(k("grouped_shape"), &[blocks as i64, (n / blocks) as i64]);
        let grouped = self.node("Reshape", vec![pairs, grouped_shape], k("grouped"), vec![]);
        // The nibble that stands for 0: one for the whole tensor when symmetric (8 for i4),
        // else one u8 per group (as the safetensors stores it), widened by a Cast.
        let qmin = q.ty.range().0;
        let zero = if q.symmetric {
            self.f32s(k("zero_nibble"), &[], &[(q.params[0].zero_point - qmin) as f32])
        } else {
            let zps: Vec<u8> = q.params.iter().map(|p| (p.zero_point - qmin) as u8).collect();
            let zps = self.init(k("zero_nibble_u8"), &[blocks, 1], DataType::Uint8, zps);
            self.node("Cast", vec![zps], k("zero_nibble"), vec![int("to", DataType::Float as i64)])
        };
        let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
        let scale = self.f32s(k("scale"), &[blocks, 1], &scales);
        let centered = self.node("Sub", vec![grouped, zero], k("centered"), vec![]);
        let deq = self.node("Mul", vec![centered, scale], k("dequantized"), vec![]);
        let shape: Vec<i64> = q.shape.iter().map(|&d| d as i64).collect();
        let shape = self.i64s(k("shape"), &shape);
        Ok(self.node("Reshape", vec![deq, shape], key.to_string(), vec![]))
    }

    /// The zoo layer `name` as an integer layer (see [`Graph::integer_op`]).
    fn integer_layer(
        &mut self,
        layer: &Layer,
        name: &str,
        x: String,
        input: InputQuant,
        params: &StoredParams,
        form: IntegerForm,
    ) -> Result<String, ParamError> {
        let (wk, bk) = (format!("{name}.weight"), format!("{name}.bias"));
        let Some(Stored::Int(q)) = params.get(&wk) else {
            return Err(param_error(&wk, "an integer layer needs symmetric i8 weights"));
        };
        let bias = match params.get(&bk) {
            Some(Stored::F32 { values, .. }) => values,
            _ => return Err(param_error(&bk, "integer layers keep their bias in f32")),
        };
        let conv = match *layer {
            Layer::Conv2d { kernel, padding, .. } => Some(conv_attributes(kernel, padding)),
            _ => None,
        };
        let op =
            IntegerOp { prefix: name, form, gemm: true, weight_key: &wk, input, conv, output: format!("{name}.out") };
        self.integer_op(&op, x, q, Some((bk.clone(), vec![q.shape[0]], bias)))
    }

    /// An integer layer, in one of two forms of the same arithmetic ([`IntegerForm`]): the input
    /// quantized to u8 (at run time by `DynamicQuantizeLinear`, or with the calibrated scale by
    /// `QuantizeLinear`), a product against the symmetric i8 weights with i32 accumulation,
    /// scaled by input scale × per-channel weight scale, plus the bias. `q` is
    /// `[out, in]` for a matrix product or `[out, in/group, k…]` for a convolution; `bias` is
    /// named and shaped as the float layer had it (a static layer's already on its int32 grid:
    /// [`super::qformat::static_bias`]). Returns the layer's float output, `op.output`: a static
    /// layer's output quantization (a [`Graph::qdq_pair`]) is the caller's to write, after the
    /// layer or after its `Relu`.
    pub fn integer_op(
        &mut self,
        op: &IntegerOp,
        x: String,
        q: &QuantizedWeight,
        bias: Option<(String, Vec<usize>, &[f32])>,
    ) -> Result<String, ParamError> {
        let wk = op.weight_key;
        if !q.symmetric || q.ty != IntType::I8 {
            return Err(param_error(wk, "an integer layer needs symmetric i8 weights"));
        }
        let out_channels = q.shape[0];
        let w_scales: Vec<f32> = match q.granularity {
            Granularity::PerChannel => q.params.iter().map(|p| p.scale).collect(),
            Granularity::PerTensor => vec![q.params[0].scale; out_channels],
            Granularity::Group(_) => {
                return Err(param_error(wk, "an integer layer needs per-tensor or per-channel weights"))
            }
        };
        let t = |s: &str| format!("{}.{s}", op.prefix);
        let u8_zp = |p: QParams, what: &str| {
            u8::try_from(p.zero_point)
                .map_err(|_| param_error(op.prefix, format!("{what} zero point {} is not u8", p.zero_point)))
        };
        match (op.form, op.input) {
            (IntegerForm::Qdq, InputQuant::Static { input, .. }) => {
                let xs = self.f32s(t("input_scale"), &[], &[input.scale]);
                let xzp = self.init(t("input_zero_point"), &[], DataType::Uint8, vec![u8_zp(input, "input")?]);
                let xq = self.node("QuantizeLinear", vec![x, xs.clone(), xzp.clone()], t("xq"), vec![]);
                let xdq = self.node("DequantizeLinear", vec![xq, xs, xzp], t("xdq"), vec![]);
                let wdq = |g: &mut Graph| {
                    let w = g.init(format!("{wk}.q"), &q.shape, DataType::Int8, q.values.clone());
                    let ws = g.f32s(format!("{wk}.scale"), &[out_channels], &w_scales);
                    // Zero points written out, as onnxruntime's quantizer does: its Gemm fusion
                    // (QGemm) takes the DequantizeLinear's type from them.
                    let wzp =
                        g.init(format!("{wk}.zero_point"), &[out_channels], DataType::Int8, vec![0; out_channels]);
                    g.node("DequantizeLinear", vec![w, ws, wzp], t("wdq"), vec![int("axis", 0)])
                };
                let bdq = match &bias {
                    None => None,
                    Some((name, _, values)) => {
                        let (bq, _) = super::qformat::static_bias(values, input, &w_scales);
                        let scales: Vec<f32> = w_scales.iter().map(|s| s * input.scale).collect();
                        let raw = bq.iter().flat_map(|v| v.to_le_bytes()).collect();
                        let b = self.init(format!("{name}.q"), &[out_channels], DataType::Int32, raw);
                        let bs = self.f32s(format!("{name}.scale"), &[out_channels], &scales);
                        let bzp = self.init(
                            format!("{name}.zero_point"),
                            &[out_channels],
                            DataType::Int32,
                            vec![0; 4 * out_channels],
                        );
                        Some(self.node("DequantizeLinear", vec![b, bs, bzp], t("bdq"), vec![int("axis", 0)]))
                    }
                };
                match &op.conv {
                    Some(attributes) => {
                        let inputs = [xdq, wdq(self)].into_iter().chain(bdq).collect();
                        Ok(self.node("Conv", inputs, op.output.clone(), attributes.clone()))
                    }
                    // Gemm with the weight as `[out, in]` (transB), as onnxruntime's quantizer
                    // leaves a linear layer, where the input is 2-D (the zoo's, a Gemm's).
                    None if op.gemm => {
                        let inputs = [xdq, wdq(self)].into_iter().chain(bdq).collect();
                        Ok(self.node("Gemm", inputs, op.output.clone(), vec![int("transB", 1)]))
                    }
                    None => {
                        // MatMul takes B as [K, N]: the weight transposed, one scale per column.
                        let (k, n, tr) = transposed(q);
                        let w = self.init(format!("{wk}.qT"), &[k, n], DataType::Int8, tr);
                        let ws = self.f32s(format!("{wk}.scale"), &[out_channels], &w_scales);
                        let wzp = self.init(
                            format!("{wk}.zero_point"),
                            &[out_channels],
                            DataType::Int8,
                            vec![0; out_channels],
                        );
                        let wdq = self.node("DequantizeLinear", vec![w, ws, wzp], t("wdqT"), vec![int("axis", 1)]);
                        match bdq {
                            None => Ok(self.node("MatMul", vec![xdq, wdq], op.output.clone(), vec![])),
                            Some(b) => {
                                let y = self.node("MatMul", vec![xdq, wdq], t("y0"), vec![]);
                                Ok(self.node("Add", vec![y, b], op.output.clone(), vec![]))
                            }
                        }
                    }
                }
            }
            (_, input) => {
                // Per output channel, broadcast along the last axis (matmul) or axis 1 (conv, NC…).
                let channel_dims: Vec<usize> = match op.conv {
                    Some(_) => std::iter::once(out_channels).chain(std::iter::repeat_n(1, q.shape.len() - 2)).collect(),
                    None => vec![out_channels],
                };
                let (xq, xzp, scale) = match input {
                    InputQuant::Dynamic => {
                        let outs = vec![t("xq"), t("xscale"), t("xzp")];
                        let outs = self.node_n("DynamicQuantizeLinear", vec![x], outs, vec![]);
                        let ws = self.f32s(format!("{wk}.scale"), &channel_dims, &w_scales);
                        let scale = self.node("Mul", vec![outs[1].clone(), ws], t("scale"), vec![]);
                        (outs[0].clone(), outs[2].clone(), scale)
                    }
                    InputQuant::Static { input, .. } => {
                        let xs = self.f32s(t("input_scale"), &[], &[input.scale]);
                        let xzp = self.init(t("input_zero_point"), &[], DataType::Uint8, vec![u8_zp(input, "input")?]);
                        let xq = self.node("QuantizeLinear", vec![x, xs, xzp.clone()], t("xq"), vec![]);
                        let combined: Vec<f32> = w_scales.iter().map(|s| s * input.scale).collect();
                        (xq, xzp, self.f32s(t("scale"), &channel_dims, &combined))
                    }
                };
                let acc = match &op.conv {
                    Some(attributes) => {
                        let w = q.values.clone();
                        let w = self.init(format!("{wk}.q"), &q.shape, DataType::Int8, w);
                        self.node("ConvInteger", vec![xq, w, xzp], t("acc"), attributes.clone())
                    }
                    None => {
                        // MatMulInteger computes A[M,K]·B[K,N]: store the weight transposed.
                        let (k, n, tr) = transposed(q);
                        let w = self.init(format!("{wk}.qT"), &[k, n], DataType::Int8, tr);
                        self.node("MatMulInteger", vec![xq, w, xzp], t("acc"), vec![])
                    }
                };
                let accf = self.node("Cast", vec![acc], t("accf"), vec![int("to", DataType::Float as i64)]);
                match bias {
                    None => Ok(self.node("Mul", vec![accf, scale], op.output.clone(), vec![])),
                    Some((name, dims, values)) => {
                        let y = self.node("Mul", vec![accf, scale], t("y0"), vec![]);
                        let dims = if op.conv.is_some() { channel_dims } else { dims };
                        let b = self.f32s(name, &dims, values);
                        Ok(self.node("Add", vec![y, b], op.output.clone(), vec![]))
                    }
                }
            }
        }
    }

    /// `QuantizeLinear` then `DequantizeLinear` of `x` with `p` (onnxruntime's QDQ pair on an
    /// activation), the result named `output`.
    pub fn qdq_pair(&mut self, prefix: &str, x: String, p: QParams, output: String) -> String {
        let s = self.f32s(format!("{prefix}.scale"), &[], &[p.scale]);
        let zp =
            self.init(format!("{prefix}.zero_point"), &[], DataType::Uint8, vec![p.zero_point.clamp(0, 255) as u8]);
        let q = self.node("QuantizeLinear", vec![x, s.clone(), zp.clone()], format!("{prefix}.q"), vec![]);
        let out = self.node("DequantizeLinear", vec![q, s, zp], output, vec![]);
        // Named apart from its output: that keeps the name of the node it follows.
        if let Some(n) = self.nodes.last_mut() {
            n.name = format!("{prefix}.dq");
        }
        out
    }
}

/// How a dynamic or static integer layer is written: the same arithmetic either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegerForm {
    /// `QuantizeLinear` or `DynamicQuantizeLinear`, `ConvInteger`/`MatMulInteger`, then the
    /// float scaling (onnxruntime's `quantize_dynamic` form): tract lowers the integer ops to
    /// its int8 kernels.
    Integer,
    /// Static layers as onnxruntime's `quantize_static` writes them (`QuantFormat.QDQ`): the
    /// float op between `DequantizeLinear` of its input, weight and int32 bias and the
    /// `QuantizeLinear` of its output, which onnxruntime fuses into `QLinearConv`/`QGemm`
    /// (tract runs such a graph in f32). Dynamic layers keep the integer form.
    Qdq,
}

/// What [`Graph::integer_op`] writes: names and the convolution's attributes.
pub(crate) struct IntegerOp<'a> {
    /// Prefix of the names of the nodes and values it adds.
    pub prefix: &'a str,
    pub form: IntegerForm,
    /// Whether a matrix product's input is 2-D, so that the QDQ form may write a `Gemm`.
    pub gemm: bool,
    /// Prefix of the weight's initializers.
    pub weight_key: &'a str,
    pub input: InputQuant,
    /// `Some(attributes)` for a convolution (copied to ConvInteger), `None` for a matmul.
    pub conv: Option<Vec<AttributeProto>>,
    /// Name of the layer's output value.
    pub output: String,
}

pub(crate) fn conv_attributes(kernel: usize, padding: usize) -> Vec<AttributeProto> {
    let (k, p) = (kernel as i64, padding as i64);
    vec![
        ints("kernel_shape", &[k, k]),
        ints("pads", &[p, p, p, p]),
        ints("strides", &[1, 1]),
        ints("dilations", &[1, 1]),
        int("group", 1),
    ]
}

/// Serializes `zoo` as an ONNX model. f32 parameters become f32 initializers; half ones a
/// `Cast`; i8 ones an int8 initializer and a `DequantizeLinear` (per tensor, or per output
/// channel on axis 0), a QDQ weight graph; 4-bit ones packed bytes and the float ops that
/// unpack them. Layers listed in `inputs` become integer layers (see `Graph::integer_layer`).
pub fn export_stored(
    model_name: &str,
    zoo: ZooModelId,
    params: &StoredParams,
    inputs: &InputQuants,
    form: IntegerForm,
) -> Result<Vec<u8>, ModelError> {
    let err = |reason: String| ModelError::Export { model: model_name.to_string(), reason };
    let mut g = Graph::default();
    let param = |g: &mut Graph, key: String| -> Result<String, ModelError> {
        let p = params.get(&key).ok_or_else(|| err(format!("missing tensor {key}")))?;
        g.float_param(&key, p).map_err(|e| err(e.to_string()))
    };
    let mut current = INPUT_NAME.to_string();
    let layers = zoo.layers();
    // A static layer's output quantization, until written: after the layer, or after its Relu.
    let mut pending: Option<(String, QParams)> = None;
    // In the QDQ form, the last static output's parameters, re-applied after each MaxPool and
    // Flatten on the way to the next layer (lossless: the values stay on its grid), so that
    // onnxruntime runs those ops on u8 as its own quantizer's graphs let it.
    let mut carried: Option<QParams> = None;
    for (i, layer) in layers.iter().enumerate() {
        let next = match *layer {
            Layer::Conv2d { name, .. } | Layer::Linear { name, .. } if inputs.contains_key(name) => {
                let y = g
                    .integer_layer(layer, name, current.clone(), inputs[name], params, form)
                    .map_err(|e| err(e.to_string()))?;
                carried = None;
                match inputs[name] {
                    InputQuant::Static { output, .. } => pending = Some((name.to_string(), output)),
                    InputQuant::Dynamic => pending = None,
                }
                y
            }
            Layer::Conv2d { name, kernel, padding, .. } => {
                let w = param(&mut g, format!("{name}.weight"))?;
                let b = param(&mut g, format!("{name}.bias"))?;
                g.node("Conv", vec![current.clone(), w, b], name.to_string(), conv_attributes(kernel, padding))
            }
            Layer::Linear { name, .. } => {
                let w = param(&mut g, format!("{name}.weight"))?;
                let b = param(&mut g, format!("{name}.bias"))?;
                g.node("Gemm", vec![current.clone(), w, b], name.to_string(), vec![int("transB", 1)])
            }
            Layer::Relu => g.node("Relu", vec![current.clone()], format!("relu{i}"), vec![]),
            Layer::MaxPool2d { size } => {
                let s = size as i64;
                let attrs = vec![ints("kernel_shape", &[s, s]), ints("strides", &[s, s])];
                g.node("MaxPool", vec![current.clone()], format!("pool{i}"), attrs)
            }
            Layer::Flatten => g.node("Flatten", vec![current.clone()], format!("flatten{i}"), vec![int("axis", 1)]),
        };
        current = next;
        let weighted = matches!(layer, Layer::Conv2d { .. } | Layer::Linear { .. });
        if weighted && !inputs.contains_key(layer_name(layer)) {
            (pending, carried) = (None, None);
        }
        // The output quantization goes after the layer's Relu when one follows it.
        let relu_next = matches!(layers.get(i + 1), Some(Layer::Relu));
        if let Some((name, p)) = pending.take_if(|_| !(weighted && relu_next)) {
            current = g.qdq_pair(&format!("{name}.output"), current, p, format!("{name}.quantized"));
            carried = Some(p);
        } else if let (Some(p), IntegerForm::Qdq, Layer::MaxPool2d { .. } | Layer::Flatten) = (carried, form, layer) {
            current = g.qdq_pair(&format!("pass{i}"), current, p, format!("pass{i}.quantized"));
        }
    }
    // The last node's output is the graph's output.
    if let Some(last) = g.nodes.last_mut() {
        last.output[0] = OUTPUT_NAME.to_string();
    }
    let [c, h, w] = zoo.input_shape();
    let graph = GraphProto {
        name: model_name.to_string(),
        node: g.nodes,
        initializer: g.inits,
        input: vec![value_info(INPUT_NAME, &[None, Some(c as i64), Some(h as i64), Some(w as i64)])],
        output: vec![value_info(OUTPUT_NAME, &[None, Some(zoo.num_classes() as i64)])],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "qbench".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{} ({}), exported by qbench", model_name, zoo.description()),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// A matrix product's `[out, in]` integer weight as `[in, out]` (what MatMul and MatMulInteger
/// take as B): `(in, out, values)`.
fn transposed(q: &QuantizedWeight) -> (usize, usize, Vec<u8>) {
    let (n, k) = (q.shape[0], q.shape[1]);
    (k, n, (0..k * n).map(|i| q.values[(i % n) * k + i / n]).collect())
}

fn layer_name(layer: &Layer) -> &'static str {
    match *layer {
        Layer::Conv2d { name, .. } | Layer::Linear { name, .. } => name,
        _ => "",
    }
}

fn tensor_proto(name: &str, dims: &[usize], data_type: DataType, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => Dim::DimValue(*v),
                None => Dim::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}
