//! Schemes applied to a user's ONNX graph: each quantizable layer (MatMul, Gemm, Conv with a
//! constant weight) is rewritten in place, everything else is left as the user wrote it.
//!
//! - f16/bf16: the layer's weight and bias stored half, widened by a `Cast`.
//! - int8 weight-only, int4 groups: the weight stored as integers with its dequantization
//!   (`DequantizeLinear`, or the int4 unpacking graph), the layer op unchanged.
//! - dynamic/static int8: the layer replaced by onnxruntime's integer form (`MatMulInteger` /
//!   `ConvInteger`), which tract runs on int8 kernels; the node that computes the layer's float
//!   output carries the layer's name, so per-layer localization finds it. A static layer's
//!   output is then quantized (`QuantizeLinear`/`DequantizeLinear`, after its Relu where one is
//!   its only reader), the pair's output taking the original name. Static variants are also
//!   written in the QDQ form onnxruntime's `quantize_static` writes (`<stem>.qdq.onnx`), which
//!   ONNX Runtime loads and fuses into its int8 kernels.
//! - GGML types: quantized by candle and stored dequantized (tract has no GGML kernels).
//!
//! Weights of matrix products are quantized as `[out, in]` rows (the layout the zoo uses), so
//! per-channel scales are per output and int4 groups run along the reduction axis; the
//! dequantized `[out, in]` tensor is transposed back when the op takes `[in, out]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use tract_onnx::pb::NodeProto;

use super::{ggml, int, ActivationQuant, Calibration, Plan, SchemeId, Variant, VariantError};
use crate::model::onnx::{Graph, IntegerForm, IntegerOp};
use crate::model::onnx_file::{LayerOp, OnnxModel};
use crate::model::stored::{InputQuant, Stored, StoredParams};
use crate::model::ModelKind;

/// Applies `plan` to the ONNX `model`, writing `<stem>.onnx` (and, with static layers,
/// `<stem>.qdq.onnx`) under `artifacts_dir`.
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
    // The QDQ form of static layers (what ONNX Runtime loads), where it differs.
    let mut gq = Graph::default();
    let mut replaced_qdq: BTreeMap<usize, Vec<NodeProto>> = BTreeMap::new();
    // Static layers' output quantization by node index, for the layers they feed.
    let mut static_outputs: HashMap<usize, (String, int::QParams)> = HashMap::new();
    let (producers, consumers) = value_links(&graph.node);
    let graph_outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
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
                let weight_scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                let node = node.clone();
                let relu = relu_reader(&graph.node, &consumers, &graph_outputs, at);
                let input = match scheme.activations() {
                    ActivationQuant::Static(c) => {
                        let cal = calibration
                            .ok_or_else(|| err(format!("{}: static scheme without calibration data", scheme.name())))?;
                        let (source, chain) = static_source(&graph.node, &producers, at, &static_outputs).unzip();
                        let (iq, text) = super::static_quant(&layer.name, c, cal, relu.is_some(), source.as_ref())
                            .map_err(|e| err(e.to_string()))?;
                        // In the QDQ form the source's parameters are re-applied after each op on
                        // the way (lossless), so that onnxruntime runs them on u8.
                        if let (Some(src), Some(chain)) = (&source, chain) {
                            for n in chain {
                                if replaced_qdq.contains_key(&n) {
                                    continue;
                                }
                                let prefix = format!("qbench.{}.pass", graph.node[n].name);
                                replaced_qdq.insert(n, quantized_after(&mut gq, &graph.node[n], &prefix, src.output));
                            }
                        }
                        activation_quant.push(text);
                        iq
                    }
                    _ => {
                        activation_quant.push(format!("{}=u8 dynamic", layer.name));
                        InputQuant::Dynamic
                    }
                };
                // A static layer's bias on its int32 grid (one value per output channel: a Gemm's
                // scalar C is the same value for each), in every form.
                let bias = match (input, bias) {
                    (InputQuant::Static { input, .. }, Some((b, d, v))) => {
                        let v = match v.len() {
                            n if n == layer.out_channels => v,
                            1 => vec![v[0]; layer.out_channels],
                            n => {
                                return Err(err(format!(
                                    "{}: its bias {b} has {n} values, neither one nor one per output channel ({}), so static int8 cannot put it on the int32 grid; keep the layer in float with an [[overrides]] entry",
                                    layer.name, layer.out_channels
                                )))
                            }
                        };
                        let d = if d.iter().product::<usize>() == v.len() { d } else { vec![v.len()] };
                        Some((b, d, crate::model::qformat::static_bias(&v, input, &weight_scales).1))
                    }
                    (_, bias) => bias,
                };
                let conv = (layer.op == LayerOp::Conv).then(|| node.attribute.clone());
                let prefix = format!("qbench.{}", layer.name);
                // A shared weight's integer initializers are named after its first layer and
                // written once (`Graph::init` keeps one initializer per name).
                let weight_key = written.entry(shared(&layer.weight)).or_insert_with(|| key.clone()).clone();
                let x = node.input[0].clone();
                let original_output = node.output[0].clone();
                let b = bias.as_ref().map(|(_, d, v)| (format!("{prefix}.bias"), d.clone(), v.as_slice()));
                for form in [IntegerForm::Integer, IntegerForm::Qdq] {
                    let static_out = match input {
                        InputQuant::Static { output, .. } => Some(output),
                        InputQuant::Dynamic => None,
                    };
                    if form == IntegerForm::Qdq && static_out.is_none() {
                        continue; // dynamic layers are the same in both forms
                    }
                    let (graph_out, into) = match form {
                        IntegerForm::Integer => (&mut g, &mut replaced),
                        IntegerForm::Qdq => (&mut gq, &mut replaced_qdq),
                    };
                    // The layer's float output keeps the original name unless its quantization
                    // follows it directly (not after a Relu).
                    let float_out = match (static_out, relu) {
                        (Some(_), None) => format!("{prefix}.float"),
                        _ => original_output.clone(),
                    };
                    let op = IntegerOp {
                        prefix: &prefix,
                        form,
                        gemm: layer.op_type == "Gemm",
                        weight_key: &weight_key,
                        input,
                        conv: conv.clone(),
                        output: float_out.clone(),
                    };
                    let first = graph_out.nodes.len();
                    graph_out.integer_op(&op, x.clone(), &q, b.clone()).map_err(param)?;
                    if let (Some(p), None) = (static_out, relu) {
                        graph_out.qdq_pair(&format!("{prefix}.output"), float_out.clone(), p, original_output.clone());
                    }
                    let mut nodes = graph_out.nodes.split_off(first);
                    // The node that computes the layer's float output carries the layer's name
                    // (per-layer localization and the engines' profiles find it).
                    if let Some(n) = nodes.iter_mut().find(|n| n.output.first() == Some(&float_out)) {
                        n.name = layer.name.clone();
                    }
                    into.insert(at, nodes);
                    if let (Some(p), Some(r)) = (static_out, relu) {
                        // The Relu's output is quantized in its place (zero point 0: the
                        // quantization clamps where the Relu does).
                        into.insert(r, quantized_after(graph_out, &graph.node[r], &format!("{prefix}.output"), p));
                    }
                }
                if let InputQuant::Static { output, .. } = input {
                    static_outputs.insert(at, (layer.name.clone(), output));
                }
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
    let originals = std::mem::take(&mut graph.node);
    let original_inits = std::mem::take(&mut graph.initializer);
    let qdq = !replaced_qdq.is_empty();
    let assemble = |proto: &mut tract_onnx::pb::ModelProto, over: Option<&BTreeMap<usize, Vec<NodeProto>>>| {
        // Both protos are clones of the one whose graph was read above.
        let Some(graph) = proto.graph.as_mut() else { return };
        let mut nodes = weight_nodes.clone();
        for (i, node) in originals.iter().enumerate() {
            match over.and_then(|o| o.get(&i)).or_else(|| replaced.get(&i)) {
                Some(new) => nodes.extend(new.iter().cloned()),
                None => nodes.push(node.clone()),
            }
        }
        graph.node = nodes;
        let used: HashSet<&str> = graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        // The QDQ form's initializers first; both forms name the values they share alike.
        let new_inits = over.map_or(&[][..], |_| gq.inits.as_slice()).iter().chain(&g.inits);
        let mut inits: Vec<_> = original_inits
            .iter()
            .filter(|t| !dropped.contains(&t.name) || used.contains(t.name.as_str()))
            .cloned()
            .collect();
        let mut seen = HashSet::new();
        inits.extend(new_inits.filter(|t| used.contains(t.name.as_str()) && seen.insert(t.name.as_str())).cloned());
        graph.initializer = inits;
    };
    let mut proto_qdq = qdq.then(|| proto.clone());
    assemble(&mut proto, None);
    if let Some(p) = proto_qdq.as_mut() {
        assemble(p, Some(&replaced_qdq));
    }

    // What the rewrite wrote may need a newer opset than the file imports (per-channel
    // DequantizeLinear, a bfloat16 Cast): the graph is upgraded, or the variant refused.
    let opset_before = super::onnx_opset::default_opset(&proto);
    let what = format!("scheme {}", plan.scheme.name());
    let opset = super::onnx_opset::ensure(&mut proto, &what).map_err(|e| err(e.to_string()))?;
    let bytes = prost::Message::encode_to_vec(&proto);
    let onnx = super::write_artifact(artifacts_dir, format!("{stem}.onnx"), &bytes)?;
    // The QDQ form needs opset 13 (per-channel DequantizeLinear); a graph that cannot be raised
    // to it keeps the integer form alone, which ONNX Runtime runs too (ConvInteger, MatMulInteger).
    let mut no_qdq = None;
    let onnx_qdq = match proto_qdq.as_mut().map(|p| super::onnx_opset::ensure(p, &what).map(|_| p)) {
        None => None,
        Some(Err(e)) => {
            no_qdq = Some(e.to_string());
            None
        }
        Some(Ok(p)) => {
            let bytes = prost::Message::encode_to_vec(p);
            Some(super::write_artifact(artifacts_dir, format!("{stem}.qdq.onnx"), &bytes)?)
        }
    };
    let mut weight_storage = describe_layers(model, &params, &ggml_bits);
    if let Some(why) = no_qdq {
        weight_storage.push_str(&format!(
            "; no QDQ form for ONNX Runtime ({why}): it loads the integer form (ConvInteger/MatMulInteger)"
        ));
    }
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
        onnx_qdq,
        weight_storage,
        activation_quant: activation_quant.join(", "),
        bits_per_weight: bits_per_weight(model, &params, &ggml_bits),
    })
}

/// `node` writing its output under a new name (`<prefix>.in`), then a [`Graph::qdq_pair`] with `p`
/// that gives the quantized value the node's original output name: the nodes that replace it.
fn quantized_after(g: &mut Graph, node: &NodeProto, prefix: &str, p: int::QParams) -> Vec<NodeProto> {
    let mut node = node.clone();
    let out = std::mem::replace(&mut node.output[0], format!("{prefix}.in"));
    let first = g.nodes.len();
    g.qdq_pair(prefix, node.output[0].clone(), p, out);
    std::iter::once(node).chain(g.nodes.split_off(first)).collect()
}

/// Each value's producing node and reading nodes, by index.
fn value_links(nodes: &[NodeProto]) -> (HashMap<String, usize>, HashMap<String, Vec<usize>>) {
    let mut producers = HashMap::new();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in &n.output {
            producers.insert(o.clone(), i);
        }
        for v in n.input.iter().filter(|v| !v.is_empty()) {
            consumers.entry(v.clone()).or_default().push(i);
        }
    }
    (producers, consumers)
}

/// The `Relu` that is the only reader of node `at`'s output, if one is (a graph output is read
/// by the caller too: then none).
fn relu_reader(
    nodes: &[NodeProto],
    consumers: &HashMap<String, Vec<usize>>,
    graph_outputs: &HashSet<String>,
    at: usize,
) -> Option<usize> {
    let out = nodes[at].output.first()?;
    if graph_outputs.contains(out) {
        return None;
    }
    match consumers.get(out)?.as_slice() {
        [r] if nodes[*r].op_type == "Relu" && nodes[*r].output.len() == 1 => Some(*r),
        _ => None,
    }
}

/// Ops that keep a u8 grid's values on it: a static layer's output reaches the next layer
/// through them without leaving its quantization.
const ON_GRID: &[&str] = &["Relu", "MaxPool", "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze"];

/// The static layer (among `statics`, by node index) whose output reaches node `at`'s first
/// input through [`ON_GRID`] ops only, and those ops' indices.
fn static_source(
    nodes: &[NodeProto],
    producers: &HashMap<String, usize>,
    at: usize,
    statics: &HashMap<usize, (String, int::QParams)>,
) -> Option<(super::StaticSource, Vec<usize>)> {
    let mut value = nodes[at].input.first()?.as_str();
    let mut chain = Vec::new();
    // Bounded by the node count: a malformed graph with a cycle cannot loop for ever.
    for _ in 0..nodes.len() {
        let p = *producers.get(value)?;
        if let Some((layer, output)) = statics.get(&p) {
            return Some((super::StaticSource { layer: layer.clone(), output: *output }, chain));
        }
        let n = &nodes[p];
        if !ON_GRID.contains(&n.op_type.as_str()) || n.output.len() != 1 {
            return None;
        }
        // A MaxPool's padding is −∞, never taken; one with an indices output is not followed
        // (two outputs). Reshape's shape input is the second: only the first is followed.
        chain.push(p);
        value = n.input.first()?.as_str();
    }
    None
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
