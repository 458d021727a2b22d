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

use super::stored::{f32_bytes, half_bytes, Stored, StoredParams};
use super::ModelError;
use crate::quant::int::Granularity;
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
    export_stored(model_name, zoo, &params, false)
}

/// Serializes `zoo` as an ONNX model. f32 parameters become f32 initializers; integer ones
/// become an int8 initializer and a `DequantizeLinear` (per tensor, or per output channel
/// on axis 0) whose output feeds the layer: a QDQ weight graph.
///
/// With `dynamic_int8_linear`, linear layers with symmetric int8 weights are written as
/// onnxruntime's dynamic quantization does: `DynamicQuantizeLinear` (u8 activations, scale
/// from the batch at run time) → `MatMulInteger` (i32 accumulation) → `Cast` → `Mul` by
/// activation scale × per-channel weight scale → `Add` bias. These are the integer ops that
/// tract lowers to its int8 matmul kernels.
pub fn export_stored(
    model_name: &str,
    zoo: ZooModelId,
    params: &StoredParams,
    dynamic_int8_linear: bool,
) -> Result<Vec<u8>, ModelError> {
    let err = |reason: String| ModelError::Export { model: model_name.to_string(), reason };
    // `<layer>.weight` and `<layer>.bias` become the node's 2nd and 3rd inputs.
    let add_parameters = |layer: &str,
                          inputs: &mut Vec<String>,
                          inits: &mut Vec<TensorProto>,
                          nodes: &mut Vec<NodeProto>|
     -> Result<(), ModelError> {
        for p in ["weight", "bias"] {
            let key = format!("{layer}.{p}");
            match params.get(&key).ok_or_else(|| err(format!("missing tensor {key}")))? {
                Stored::F32 { shape, values } => {
                    inits.push(tensor_proto(&key, shape, DataType::Float, f32_bytes(values)))
                }
                // Stored half, cast to f32 for the float kernels (tract folds the cast).
                Stored::Half { bf16, shape, bits } => {
                    let dt = if *bf16 { DataType::Bfloat16 } else { DataType::Float16 };
                    let stored = format!("{key}.half");
                    inits.push(tensor_proto(&stored, shape, dt, half_bytes(bits)));
                    nodes.push(NodeProto {
                        input: vec![stored],
                        output: vec![key.clone()],
                        name: format!("{key}.cast"),
                        op_type: "Cast".into(),
                        attribute: vec![int("to", DataType::Float as i64)],
                        ..Default::default()
                    });
                }
                Stored::Int(q) => {
                    if q.ty.bits() != 8 || q.ty.range().0 >= 0 {
                        return Err(err(format!("{key}: ONNX export writes i8 weights only, not {:?}", q.ty)));
                    }
                    let per_channel = match q.granularity {
                        Granularity::PerTensor => false,
                        Granularity::PerChannel => true,
                        Granularity::Group(g) => return Err(err(format!("{key}: group-wise ({g}) weights need blocked DequantizeLinear (opset 21), which tract does not load"))),
                    };
                    let dims = if per_channel { vec![q.params.len()] } else { vec![] };
                    let q_name = format!("{key}.q");
                    inits.push(tensor_proto(
                        &q_name,
                        &q.shape,
                        DataType::Int8,
                        q.values.iter().map(|&v| v as i8 as u8).collect(),
                    ));
                    let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                    inits.push(tensor_proto(&format!("{key}.scale"), &dims, DataType::Float, f32_bytes(&scales)));
                    let zps: Vec<u8> = q.params.iter().map(|p| p.zero_point as i8 as u8).collect();
                    inits.push(tensor_proto(&format!("{key}.zero_point"), &dims, DataType::Int8, zps));
                    nodes.push(NodeProto {
                        input: vec![q_name, format!("{key}.scale"), format!("{key}.zero_point")],
                        output: vec![key.clone()],
                        name: format!("{key}.dequantize"),
                        op_type: "DequantizeLinear".into(),
                        attribute: if per_channel { vec![int("axis", 0)] } else { vec![] },
                        ..Default::default()
                    });
                }
            }
            inputs.push(key);
        }
        Ok(())
    };
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut current = INPUT_NAME.to_string();
    let layers = zoo.layers();
    for (i, layer) in layers.iter().enumerate() {
        let out = if i + 1 == layers.len() { OUTPUT_NAME.to_string() } else { format!("t{i}") };
        let mut inputs = vec![current.clone()];
        let (op, attrs, node_name) = match *layer {
            Layer::Conv2d { name, kernel, padding, .. } => {
                add_parameters(name, &mut inputs, &mut initializers, &mut nodes)?;
                let k = kernel as i64;
                let p = padding as i64;
                (
                    "Conv",
                    vec![
                        ints("kernel_shape", &[k, k]),
                        ints("pads", &[p, p, p, p]),
                        ints("strides", &[1, 1]),
                        ints("dilations", &[1, 1]),
                        int("group", 1),
                    ],
                    name.to_string(),
                )
            }
            Layer::Linear { name, .. } if dynamic_int8_linear => {
                let (wk, bk) = (format!("{name}.weight"), format!("{name}.bias"));
                let q = match params.get(&wk) {
                    Some(Stored::Int(q)) if q.symmetric && q.ty.bits() == 8 && q.ty.range().0 < 0 => q,
                    _ => return Err(err(format!("{wk}: dynamic int8 needs symmetric i8 weights"))),
                };
                let (n, k) = (q.shape[0], q.shape[1]);
                let scales: Vec<f32> = match q.granularity {
                    Granularity::PerChannel => q.params.iter().map(|p| p.scale).collect(),
                    Granularity::PerTensor => vec![q.params[0].scale; n],
                    Granularity::Group(_) => {
                        return Err(err(format!("{wk}: dynamic int8 needs per-tensor or per-channel weights")))
                    }
                };
                // MatMulInteger computes A[M,K]·B[K,N]: store the weight transposed.
                let transposed: Vec<u8> = (0..k * n).map(|i| q.values[(i % n) * k + i / n] as i8 as u8).collect();
                initializers.push(tensor_proto(&format!("{wk}.qT"), &[k, n], DataType::Int8, transposed));
                initializers.push(tensor_proto(&format!("{wk}.scale"), &[n], DataType::Float, f32_bytes(&scales)));
                match params.get(&bk) {
                    Some(Stored::F32 { shape, values }) => {
                        initializers.push(tensor_proto(&bk, shape, DataType::Float, f32_bytes(values)))
                    }
                    _ => return Err(err(format!("{bk}: dynamic int8 keeps biases f32"))),
                }
                let t = |s: &str| format!("{name}.{s}");
                let node = |op: &str, ins: Vec<String>, outs: Vec<String>, attribute: Vec<AttributeProto>| NodeProto {
                    name: outs[0].clone(),
                    input: ins,
                    output: outs,
                    op_type: op.into(),
                    attribute,
                    ..Default::default()
                };
                nodes.push(node(
                    "DynamicQuantizeLinear",
                    vec![current.clone()],
                    vec![t("xq"), t("xscale"), t("xzp")],
                    vec![],
                ));
                nodes.push(node("MatMulInteger", vec![t("xq"), format!("{wk}.qT"), t("xzp")], vec![t("acc")], vec![]));
                nodes.push(node("Cast", vec![t("acc")], vec![t("accf")], vec![int("to", DataType::Float as i64)]));
                nodes.push(node("Mul", vec![t("xscale"), format!("{wk}.scale")], vec![t("scale")], vec![]));
                nodes.push(node("Mul", vec![t("accf"), t("scale")], vec![t("y0")], vec![]));
                inputs = vec![t("y0"), bk];
                ("Add", vec![], name.to_string())
            }
            Layer::Linear { name, .. } => {
                add_parameters(name, &mut inputs, &mut initializers, &mut nodes)?;
                ("Gemm", vec![int("transB", 1)], name.to_string())
            }
            Layer::Relu => ("Relu", vec![], format!("relu{i}")),
            Layer::MaxPool2d { size } => {
                let s = size as i64;
                ("MaxPool", vec![ints("kernel_shape", &[s, s]), ints("strides", &[s, s])], format!("pool{i}"))
            }
            Layer::Flatten => ("Flatten", vec![int("axis", 1)], format!("flatten{i}")),
        };
        nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: node_name,
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
        current = out;
    }
    let [c, h, w] = zoo.input_shape();
    let graph = GraphProto {
        name: model_name.to_string(),
        node: nodes,
        initializer: initializers,
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

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}
