//! Schemes applied to a user's ONNX graph: each quantizable layer (MatMul, Gemm, Conv with a
//! constant weight) is rewritten in place, everything else is left as the user wrote it.
//!
//! - f16/bf16: the layer's weight and bias stored half, widened by a `Cast`.
//! - int8 weight-only, int4 groups: the weight stored as integers with its dequantization
//!   (`DequantizeLinear`, or the int4 unpacking graph), the layer op unchanged.
//! - dynamic/static int8: the layer replaced by onnxruntime's integer form (`MatMulInteger` /
//!   `ConvInteger`), which tract runs on int8 kernels; its output keeps the original name and
//!   its last node the layer's name, so per-layer localization finds it.
//! - GGML types: quantized by candle and stored dequantized (tract has no GGML kernels).
//!
//! Weights of matrix products are quantized as `[out, in]` rows (the layout the zoo uses), so
//! per-channel scales are per output and int4 groups run along the reduction axis; the
//! dequantized `[out, in]` tensor is transposed back when the op takes `[in, out]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use tract_onnx::pb::NodeProto;

use super::{ggml, int, ActivationQuant, Calibration, Plan, SchemeId, Variant, VariantError};
use crate::model::onnx::{Graph, IntegerOp};
use crate::model::onnx_file::{LayerOp, OnnxModel};
use crate::model::stored::{InputQuant, Stored, StoredParams};
use crate::model::ModelKind;

/// Applies `plan` to the ONNX `model`, writing `<stem>.onnx` under `artifacts_dir`.
pub fn apply(
    plan: &Plan,
    model: &OnnxModel,
    name: &str,
    artifacts_dir: &Path,
    calibration: Option<&Calibration>,
) -> Result<Variant, VariantError> {
    let err = |reason: String| VariantError::Quantize { model: name.to_string(), reason };
    let param = |e: crate::model::onnx::ParamError| err(e.to_string());
    let layers: Vec<(String, usize)> = model.weighted_layers();
    plan.check(layers.as_slice()).map_err(|e| err(e.to_string()))?;
    let stem = format!("{}.{}", crate::files::file_stem(name), plan.scheme.name());
    let mut proto = model.proto.clone();
    let graph = proto.graph.as_mut().ok_or_else(|| err("the model has no graph".into()))?;
    let mut g = Graph::default();
    // Per original node index: the nodes that replace it (None: keep the node).
    let mut replaced: BTreeMap<usize, Vec<NodeProto>> = BTreeMap::new();
    let mut params = StoredParams::new();
    let mut activation_quant = Vec::new();
    let mut dropped: HashSet<String> = HashSet::new();
    let mut ggml_bits: BTreeMap<String, (ggml::GgmlType, f64)> = BTreeMap::new();
    // A weight (or bias) several nodes read, in the same scheme and layout, is written once:
    // the later layers read the value written for the first (weight-tied layers, a cell
    // unrolled over time). Keyed by initializer, op layout and scheme; the value is the name
    // of what the first layer's node reads.
    let mut written: HashMap<(String, String, SchemeId), String> = HashMap::new();
    // The version each initializer's stored form was first kept in (scheme and layout): a
    // weight that layers keep in different forms is counted and described once per form.
    let mut versions: HashMap<String, String> = HashMap::new();
    for layer in &model.layers {
        let scheme = plan.layers.iter().find(|(l, _)| *l == layer.name).map_or(SchemeId::F32, |(_, s)| *s);
        let at = graph
            .node
            .iter()
            .position(|n| n.name == layer.name)
            .ok_or_else(|| err(format!("layer {} is not in the graph", layer.name)))?;
        let (dims, w) = model
            .initializer(&layer.weight)
            .ok_or_else(|| err(format!("{}: weight {} is not an inline f32 tensor", layer.name, layer.weight)))?;
        let bias = match &layer.bias {
            Some(b) => Some(
                model
                    .initializer(b)
                    .map(|(d, v)| (b.clone(), d, v))
                    .ok_or_else(|| err(format!("{}: bias {b} is not an inline f32 tensor", layer.name)))?,
            ),
            None => None,
        };
        let layout = format!("{:?}", layer.op);
        let shared = |name: &str| (name.to_string(), layout.clone(), scheme);
        let version = format!("{} {layout}", scheme.name());
        // The key a stored form is kept under: the initializer's name for its first form.
        let mut keep = |name: &str, stored: Stored| -> String {
            let first = versions.entry(name.to_string()).or_insert_with(|| version.clone());
            let key = if *first == version { name.to_string() } else { format!("{name} (also {})", scheme.name()) };
            params.insert(key.clone(), stored);
            key
        };
        let key = format!("qbench.{}.weight", layer.name);
        // The weight as `[out, in…]` rows.
        let (rows, row_shape) = match layer.op {
            LayerOp::MatMul => (transpose(&w, dims[0], dims[1]), vec![dims[1], dims[0]]),
            LayerOp::MatMulTransposed | LayerOp::Conv => (w.clone(), dims.clone()),
        };
        let quantize = |ty, symmetric, granularity| {
            int::quantize_weight(&rows, &row_shape, ty, symmetric, granularity)
                .map_err(|e| err(format!("{}: {e}", layer.weight)))
        };
        let node = &mut graph.node[at];
        match scheme {
            SchemeId::F32 => {
                keep(&layer.weight, Stored::F32 { shape: dims, values: w });
                if let Some((b, d, v)) = bias {
                    keep(&b, Stored::F32 { shape: d, values: v });
                }
            }
            SchemeId::F16 | SchemeId::Bf16 => {
                let bf16 = scheme == SchemeId::Bf16;
                let stored = half(&dims, &w, bf16);
                node.input[1] = match written.get(&shared(&layer.weight)) {
                    Some(value) => value.clone(),
                    None => g.float_param(&key, &stored).map_err(param)?,
                };
                written.insert(shared(&layer.weight), node.input[1].clone());
                keep(&layer.weight, stored);
                dropped.insert(layer.weight.clone());
                if let Some((b, d, v)) = bias {
                    let bkey = format!("qbench.{}.bias", layer.name);
                    let stored = half(&d, &v, bf16);
                    node.input[2] = match written.get(&shared(&b)) {
                        Some(value) => value.clone(),
                        None => g.float_param(&bkey, &stored).map_err(param)?,
                    };
                    written.insert(shared(&b), node.input[2].clone());
                    keep(&b, stored);
                    dropped.insert(b);
                }
            }
            SchemeId::Int8Weights { .. } | SchemeId::Int4Group { .. } | SchemeId::Ggml(_) => {
                let stored = match (scheme.weight_format(), scheme) {
                    (Some((ty, symmetric, granularity)), _) => Stored::Int(quantize(ty, symmetric, granularity)?),
                    (None, SchemeId::Ggml(t)) => Stored::F32 {
                        shape: row_shape.clone(),
                        values: ggml_round_trip(&rows, &row_shape, t).map_err(|e| err(e.to_string()))?,
                    },
                    _ => unreachable!("matched above"),
                };
                node.input[1] = match written.get(&shared(&layer.weight)) {
                    Some(value) => value.clone(),
                    None => {
                        let mut value = g.float_param(&key, &stored).map_err(param)?;
                        if layer.op == LayerOp::MatMul {
                            let attrs = vec![crate::model::onnx::ints("perm", &[1, 0])];
                            value = g.node("Transpose", vec![value], format!("{key}.kn"), attrs);
                        }
                        value
                    }
                };
                written.insert(shared(&layer.weight), node.input[1].clone());
                dropped.insert(layer.weight.clone());
                let kept = keep(&layer.weight, stored);
                if let SchemeId::Ggml(t) = scheme {
                    // The record shows the GGML type; the artifact holds its f32 dequantization.
                    ggml_bits
                        .insert(kept, (t, ggml_bits_per_weight(&rows, &row_shape, t).map_err(|e| err(e.to_string()))?));
                }
                if let Some((b, d, v)) = bias {
                    keep(&b, Stored::F32 { shape: d, values: v });
                }
            }
            SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => {
                let Some((ty, symmetric, granularity)) = scheme.weight_format() else {
                    unreachable!("integer schemes")
                };
                let q = quantize(ty, symmetric, granularity)?;
                let input = match scheme.activations() {
                    ActivationQuant::Static(c) => {
                        let cal = calibration
                            .ok_or_else(|| err(format!("{}: static scheme without calibration data", scheme.name())))?;
                        let values = cal.inputs.get(&layer.name).ok_or_else(|| {
                            err(format!("{}: no calibration inputs were collected for this layer", layer.name))
                        })?;
                        let range = c.range(values, cal.percentile);
                        let p = super::calibrate::activation_params(range);
                        activation_quant.push(super::describe_static(&layer.name, c, range, p, cal));
                        InputQuant::Static(p)
                    }
                    _ => {
                        activation_quant.push(format!("{}=u8 dynamic", layer.name));
                        InputQuant::Dynamic
                    }
                };
                let conv = (layer.op == LayerOp::Conv).then(|| node.attribute.clone());
                let prefix = format!("qbench.{}", layer.name);
                // A shared weight's integer initializers are named after its first layer and
                // written once (`Graph::init` keeps one initializer per name).
                let weight_key = written.entry(shared(&layer.weight)).or_insert_with(|| key.clone()).clone();
                let op =
                    IntegerOp { prefix: &prefix, weight_key: &weight_key, input, conv, output: node.output[0].clone() };
                let first = g.nodes.len();
                let b = bias.as_ref().map(|(_, d, v)| (format!("{prefix}.bias"), d.clone(), v.as_slice()));
                g.integer_op(&op, node.input[0].clone(), &q, b).map_err(param)?;
                let mut nodes = g.nodes.split_off(first);
                if let Some(last) = nodes.last_mut() {
                    last.name = layer.name.clone();
                }
                replaced.insert(at, nodes);
                dropped.insert(layer.weight.clone());
                keep(&layer.weight, Stored::Int(q));
                if let Some((b, d, v)) = bias {
                    dropped.insert(b.clone());
                    keep(&b, Stored::F32 { shape: d, values: v });
                }
            }
        }
    }
    // New nodes go just before the layer they feed (or in its place), keeping graph order.
    let weight_nodes = std::mem::take(&mut g.nodes);
    let mut nodes = weight_nodes;
    for (i, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        match replaced.remove(&i) {
            Some(new) => nodes.extend(new),
            None => nodes.push(node),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(g.inits);
    let used: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name) || used.contains(&t.name));

    // What the rewrite wrote may need a newer opset than the file imports (per-channel
    // DequantizeLinear, a bfloat16 Cast): the graph is upgraded, or the variant refused.
    let opset_before = super::onnx_opset::default_opset(&proto);
    let opset = super::onnx_opset::ensure(&mut proto, &format!("scheme {}", plan.scheme.name()))
        .map_err(|e| err(e.to_string()))?;
    let bytes = prost::Message::encode_to_vec(&proto);
    let onnx = super::write_artifact(artifacts_dir, format!("{stem}.onnx"), &bytes)?;
    let mut weight_storage = describe_layers(model, &params, &ggml_bits);
    if !model.float_nodes.is_empty() {
        weight_storage.push_str(&format!("; kept f32 (no quantized form): {}", model.float_nodes.join(", ")));
    }
    if opset != opset_before {
        weight_storage.push_str(&format!(
            "; graph upgraded from ONNX opset {opset_before} to {opset} for the forms this scheme writes"
        ));
    }
    Ok(Variant {
        model: name.to_string(),
        kind: ModelKind::Onnx {
            path: model.path.clone(),
            inputs: model.inputs.clone(),
            outputs: model.outputs.clone(),
        },
        input_shape: model.inputs[0].item_shape.clone(),
        plan: plan.clone(),
        // The file's already-quantized products stay as they are: the evidence reports them too.
        layer_schemes: plan
            .layers
            .iter()
            .cloned()
            .chain(model.prequantized.iter().map(|n| (n.clone(), SchemeId::F32)))
            .collect(),
        candle_artifact: onnx.clone(),
        onnx,
        weight_storage,
        activation_quant: activation_quant.join(", "),
        bits_per_weight: bits_per_weight(model, &params, &ggml_bits),
    })
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols).map(|i| v[(i % rows) * cols + i / rows]).collect()
}

fn half(dims: &[usize], values: &[f32], bf16: bool) -> Stored {
    let bits = if bf16 {
        values.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect()
    } else {
        values.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect()
    };
    Stored::Half { bf16, shape: dims.to_vec(), bits }
}

fn as_rows(rows: &[f32], shape: &[usize]) -> candle_core::Result<candle_core::Tensor> {
    let out = shape[0];
    candle_core::Tensor::from_slice(rows, (out, rows.len() / out.max(1)), &candle_core::Device::Cpu)
}

/// The rows quantized to a GGML type by candle and dequantized again.
fn ggml_round_trip(rows: &[f32], shape: &[usize], ty: ggml::GgmlType) -> candle_core::Result<Vec<f32>> {
    let q = as_rows(rows, shape).and_then(|t| ggml::quantize_linear_weight(&t, ty))?;
    q.dequantize().and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>())
}

/// Bits per weight of the GGML storage (padding included).
fn ggml_bits_per_weight(rows: &[f32], shape: &[usize], ty: ggml::GgmlType) -> candle_core::Result<f64> {
    Ok(as_rows(rows, shape).and_then(|t| ggml::quantize_linear_weight(&t, ty))?.bits_per_weight())
}

type GgmlBits = BTreeMap<String, (ggml::GgmlType, f64)>;

/// `weight=storage` per layer, graph order.
fn describe_layers(model: &OnnxModel, params: &StoredParams, ggml_bits: &GgmlBits) -> String {
    let mut out = Vec::new();
    let mut said = HashSet::new();
    for l in &model.layers {
        // A weight several layers share is described once per form it is stored in.
        for name in std::iter::once(&l.weight).chain(l.bias.as_ref()) {
            let forms: Vec<&String> = params
                .keys()
                .filter(|k| *k == name || k.starts_with(&format!("{name} (also ")))
                .filter(|k| said.insert(k.as_str()))
                .collect();
            for key in forms {
                let how = match (ggml_bits.get(key), params.get(key)) {
                    (Some((ty, _)), _) => format!("{} (dequantized to f32 in the ONNX file)", ty.name()),
                    (None, Some(p)) => p.describe(),
                    (None, None) => continue,
                };
                out.push(format!("{key}={how}"));
            }
        }
    }
    out.join(", ")
}

/// Bits stored per parameter of the model: every stored form of the layers' weights (GGML ones
/// at their format's bits; a weight layers keep in two forms counts both), the other float
/// initializers at 32, over the model's parameters (each counted once).
fn bits_per_weight(model: &OnnxModel, params: &StoredParams, ggml_bits: &GgmlBits) -> f64 {
    let (mut bits, mut count) = (0.0, 0usize);
    for (key, p) in params {
        let b = ggml_bits.get(key).map_or_else(|| p.bits_per_weight(), |(_, b)| *b);
        bits += b * p.len() as f64;
        if !key.contains(" (also ") {
            count += p.len();
        }
    }
    let rest = model.parameters.saturating_sub(count);
    (bits + 32.0 * rest as f64) / (count + rest).max(1) as f64
}
