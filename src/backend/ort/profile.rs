//! What ONNX Runtime ran, read from ONNX Runtime itself: a session with the timed session's
//! settings, which also saves the graph it optimized and profiles one run. The profile names
//! each node that ran, its op (after ONNX Runtime's fusions: `QLinearConv`, `MatMulInteger`,
//! `DynamicQuantizeMatMul`, `FusedGemm`…), the execution provider that ran it and its inputs'
//! element types; the optimized graph says which of its nodes computes each layer and what
//! feeds it.
//!
//! A layer's node is found by name (ONNX Runtime names a fused node after a node it fused,
//! `fused fc1`) or by the layer's initializers (its bias, scales or weight) among the node's
//! inputs; a weight that an optimization re-laid out under a new name (the NCHWc convolution
//! transform) is recognized by its values.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{GraphProto, NodeProto, TensorProto};

use super::session::Inputs;
use crate::backend::onnx_artifact::{belongs, stored_types, weight_initializer};
use crate::backend::{Compute, LayerEvidence, StoredWeight, WeightType};
use crate::quant::Variant;

/// What an observation found: the summary for the record's `evidence`, and each layer's.
#[derive(Debug, Clone)]
pub(super) struct Observation {
    pub summary: String,
    pub layers: Vec<LayerEvidence>,
}

const SOURCE: &str = "ONNX Runtime's profile and optimized graph";

/// Ops whose kernels compute in integers (u8/i8 operands, i32 accumulation) whatever their
/// float inputs: they quantize the activation themselves.
const INTEGER_OPS: &[&str] = &[
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeLSTM",
    "QAttention",
];

/// Whether a node of ONNX Runtime's optimized graph computes a layer's product.
fn is_product(op: &str) -> bool {
    INTEGER_OPS.contains(&op)
        || matches!(
            op,
            "Conv" | "Gemm" | "MatMul" | "FusedConv" | "FusedGemm" | "FusedMatMul" | "MatMulNBits" | "ConvTranspose"
        )
}

/// Observes the variant on ONNX Runtime (see the module's comment). Whatever fails is said in
/// the summary, and every layer is then `not observable`: nothing observed, nothing claimed.
pub(super) fn observe(variant: &Variant, inputs: &Inputs) -> Observation {
    let layers: Vec<String> = variant.layer_schemes.iter().map(|(l, _)| l.clone()).collect();
    match profile(variant.ort_onnx(), inputs) {
        Ok(run) => Observation { summary: run.summary(), layers: run.evidence(variant, &layers) },
        Err(why) => Observation {
            summary: format!(
                "{}; what ran could not be read: {why}",
                super::runtime::get().map(super::runtime::settings).unwrap_or_default()
            ),
            layers: layers
                .iter()
                .map(|l| {
                    LayerEvidence::observed(
                        l,
                        variant.layer_scheme(l),
                        StoredWeight::new(WeightType::NotFound),
                        Compute::NotObservable,
                        format!("not observable: {why}"),
                        "cpu",
                        true,
                        None,
                        SOURCE,
                    )
                })
                .collect(),
        },
    }
}

/// One node of the profile: what ran.
#[derive(Debug, Clone)]
struct Ran {
    op: String,
    provider: String,
    /// The element type of each input the profile lists (`float`, `uint8`…).
    input_types: Vec<String>,
}

/// A profiled run: the nodes that ran (by name, in the order they ran), the optimized graph, and
/// the original artifact's graph.
struct ProfiledRun {
    ran: Vec<(String, Ran)>,
    optimized: GraphProto,
    original: GraphProto,
    onnx: std::path::PathBuf,
}

/// Builds a profiled session that also saves its optimized graph, runs it once on zeros, and
/// reads both back.
fn profile(onnx: &Path, inputs: &Inputs) -> Result<ProfiledRun, String> {
    let runtime = super::runtime::get().map_err(|e| e.clone())?;
    let scratch = tempfile::tempdir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    let optimized_path = scratch.path().join("optimized.onnx");
    let mut session = super::runtime::builder(runtime)
        .and_then(|b| b.with_optimized_model_path(&optimized_path).map_err(Into::into))
        .and_then(|b| b.with_profiling(scratch.path().join("profile")).map_err(Into::into))
        .and_then(|mut b| b.commit_from_file(onnx))
        .map_err(|e| format!("building a profiled session: {e}"))?;
    let output = session.outputs().first().map(|o| o.name().to_string()).ok_or("the model has no output")?;
    let feed = inputs.zeros()?;
    super::session::run_named(&mut session, &feed, &[output])?;
    let profile_file = session.end_profiling().map_err(|e| format!("ending the profile: {e}"))?;
    let profile_path = {
        let p = std::path::PathBuf::from(&profile_file);
        if p.is_absolute() {
            p
        } else {
            scratch.path().join(p.file_name().unwrap_or_default())
        }
    };
    let text = crate::files::read_bounded(&profile_path, crate::files::MAX_SIDE_FILE_BYTES, "ONNX Runtime's profile")
        .map_err(|e| e.to_string())?;
    let ran = parse_profile(&text)?;
    let optimized = read_graph(&optimized_path)?;
    let original = read_graph(onnx)?;
    Ok(ProfiledRun { ran, optimized, original, onnx: onnx.to_path_buf() })
}

fn read_graph(path: &Path) -> Result<GraphProto, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    tract_onnx::pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| format!("{} is not an ONNX model: {e}", path.display()))?
        .graph
        .ok_or_else(|| format!("{} has no graph", path.display()))
}

/// The node events of ONNX Runtime's profile (a Chrome trace: `cat` `Node`, named
/// `<node>_kernel_time`, with `op_name`, `provider` and `input_type_shape` in `args`).
fn parse_profile(bytes: &[u8]) -> Result<Vec<(String, Ran)>, String> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| format!("ONNX Runtime's profile is not a JSON array of events: {e}"))?;
    let mut out = Vec::new();
    for e in &events {
        if e.get("cat").and_then(|c| c.as_str()) != Some("Node") {
            continue;
        }
        let Some(node) = e.get("name").and_then(|n| n.as_str()).and_then(|n| n.strip_suffix("_kernel_time")) else {
            continue;
        };
        let args = e.get("args");
        let field = |k: &str| args.and_then(|a| a.get(k)).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let input_types = args
            .and_then(|a| a.get("input_type_shape"))
            .and_then(|v| v.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|i| i.as_object().and_then(|o| o.keys().next().cloned()))
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default();
        out.push((node.to_string(), Ran { op: field("op_name"), provider: field("provider"), input_types }));
    }
    if out.is_empty() {
        return Err("ONNX Runtime's profile lists no node that ran".into());
    }
    Ok(out)
}

impl ProfiledRun {
    /// `op×count` of the nodes that ran, most frequent first, with the provider when it is not
    /// the CPU's, after the session's settings.
    fn summary(&self) -> String {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, r) in &self.ran {
            let name = match r.provider.as_str() {
                "CPUExecutionProvider" => r.op.clone(),
                other => format!("{} on {other}", r.op),
            };
            *counts.entry(name).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let ops = v.iter().map(|(op, n)| format!("{op}×{n}")).collect::<Vec<_>>().join(", ");
        let settings = super::runtime::get().map(super::runtime::settings).unwrap_or_default();
        format!("{settings}; ran (profiled): {ops}")
    }

    /// Each layer as ONNX Runtime ran it.
    fn evidence(&self, variant: &Variant, layers: &[String]) -> Vec<LayerEvidence> {
        let stored = stored_types(&self.onnx, layers);
        let inits: HashSet<&str> = self.optimized.initializer.iter().map(|t| t.name.as_str()).collect();
        let renamed = Renamed::new(&self.original, &self.optimized);
        let dynamic = dynamic_values(&self.optimized);
        let owned = layer_initializers(&self.original, layers);
        // Each node computes one layer: layers are matched in graph order, each to a node no
        // earlier layer took (two layers sharing a weight, or with weights that are each
        // other's permutation, get their own nodes).
        let mut taken: HashSet<&str> = HashSet::new();
        let mut weight_users: HashMap<&str, usize> = HashMap::new();
        for layer in layers {
            if let Some((w, _)) = weight_initializer(&self.original, layer) {
                *weight_users.entry(w).or_default() += 1;
            }
        }
        let shared_weights: HashSet<&str> = weight_users.into_iter().filter(|(_, n)| *n > 1).map(|(w, _)| w).collect();
        layers
            .iter()
            .zip(&owned)
            .map(|(layer, own)| {
                let scheme = variant.layer_scheme(layer);
                let stored_type = stored.get(layer).cloned().unwrap_or_else(|| StoredWeight::new(WeightType::NotFound));
                // A product named after the layer; else one reading the layer's weight (or its
                // values under another name); else one reading an initializer only this layer
                // has (its bias or scales: a fused node also reads the next layer's input
                // scales, so those come last).
                let products =
                    || self.optimized.node.iter().filter(|n| is_product(&n.op_type) && !taken.contains(n.name.as_str()));
                let reads = |n: &NodeProto, names: &HashSet<&str>| {
                    n.input.iter().any(|i| names.contains(i.as_str()) || (inits.contains(i.as_str()) && renamed.is(i, names)))
                };
                let weight: HashSet<&str> = weight_initializer(&self.original, layer).map(|(w, _)| w).into_iter().collect();
                // A weight other layers share (two branches of one net) tells nothing apart: the
                // layer's own initializers are asked first then.
                let shared = weight.iter().any(|w| shared_weights.contains(w));
                let by_weight = || products().find(|n| !weight.is_empty() && reads(n, &weight));
                let by_own = || products().find(|n| reads(n, own));
                let node = products()
                    .find(|n| belongs(node_layer_name(&n.name), layer))
                    .or_else(|| if shared { by_own().or_else(by_weight) } else { by_weight().or_else(by_own) });
                if let Some(n) = node {
                    taken.insert(n.name.as_str());
                }
                let Some(node) = node else {
                    return LayerEvidence::observed(
                        layer,
                        scheme,
                        stored_type,
                        Compute::NotObservable,
                        "no node of ONNX Runtime's optimized graph computes this layer (none named after it or reading its initializers)",
                        "cpu",
                        true,
                        None,
                        SOURCE,
                    );
                };
                let Some((_, ran)) = self.ran.iter().find(|(name, _)| *name == node.name) else {
                    return LayerEvidence::observed(
                        layer,
                        scheme,
                        stored_type,
                        Compute::NotObservable,
                        format!("{} (node \"{}\") is in the optimized graph but not in the profile of a run", node.op_type, node.name),
                        "cpu",
                        true,
                        None,
                        SOURCE,
                    );
                };
                let compute = compute_of(ran, node);
                let on_cpu = ran.provider == "CPUExecutionProvider";
                let device = if on_cpu { "cpu".to_string() } else { ran.provider.clone() };
                let kernel = match (ran.op.as_str(), &compute) {
                    ("MatMulNBits", Compute::Int8) => format!(
                        "MatMulNBits ({}-bit weights, accuracy level 4: it quantizes the activation to int8 on every run) on {} (node \"{}\")",
                        attribute(node, "bits").unwrap_or(4),
                        ran.provider,
                        node.name
                    ),
                    _ => format!("{} on {} (node \"{}\")", ran.op, ran.provider, node.name),
                };
                let per_call = per_call_ops(&self.optimized, node, &dynamic, &self.ran);
                LayerEvidence::observed(layer, scheme, stored_type, compute, kernel, device, on_cpu, per_call, SOURCE)
            })
            .collect()
    }
}

/// A node's name without what ONNX Runtime's fusions add to it (`fused fc1`,
/// `fc1/MatMulAddFusion`, `relu1_nchwc`).
fn node_layer_name(name: &str) -> &str {
    let name = name.strip_prefix("fused ").unwrap_or(name);
    let name = name.split('/').next().unwrap_or(name);
    name.strip_suffix("_nchwc").unwrap_or(name)
}

/// What a node that ran computes in: integers for ONNX Runtime's integer ops, else the element
/// type of its first input as the profile lists it (an f32 `Gemm` whose weight a `Cast` made
/// f32 computes in f32). `MatMulNBits` computes in int8 only at accuracy level 4 (it then
/// quantizes the activation), else in the activation's float type.
fn compute_of(ran: &Ran, node: &NodeProto) -> Compute {
    if INTEGER_OPS.contains(&ran.op.as_str()) {
        return Compute::Int8;
    }
    if ran.op == "MatMulNBits" && attribute(node, "accuracy_level") == Some(4) {
        return Compute::Int8;
    }
    match ran.input_types.first().map(String::as_str) {
        Some("float") | Some("double") => Compute::F32,
        Some("float16") => Compute::F16,
        Some("bfloat16") => Compute::Bf16,
        Some("uint8") | Some("int8") => Compute::Int8,
        _ => Compute::NotObservable,
    }
}

/// An integer attribute of a node.
fn attribute(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// For each layer, the initializers that the original graph's nodes of that layer read (weight,
/// bias, scales), directly or through ops on constants (a transpose, a dequantization), and
/// that no other layer reads.
fn layer_initializers<'g>(graph: &'g GraphProto, layers: &[String]) -> Vec<HashSet<&'g str>> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let dynamic = dynamic_values(graph);
    let producer = |value: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == value));
    let mut sets: Vec<HashSet<&str>> = layers
        .iter()
        .map(|layer| {
            let mut out = HashSet::new();
            let mut stack: Vec<&str> = graph
                .node
                .iter()
                .filter(|n| belongs(&n.name, layer))
                .flat_map(|n| n.input.iter().map(String::as_str))
                .collect();
            let mut seen = HashSet::new();
            while let Some(v) = stack.pop() {
                // Values computed from the model's input lead to other layers: not followed.
                if dynamic.contains(v) || !seen.insert(v) || seen.len() > 256 {
                    continue;
                }
                if inits.contains(v) {
                    out.insert(v);
                } else if let Some(p) = producer(v) {
                    stack.extend(p.input.iter().map(String::as_str));
                }
            }
            out
        })
        .collect();
    let mut claims: HashMap<&str, usize> = HashMap::new();
    for set in &sets {
        for i in set {
            *claims.entry(i).or_default() += 1;
        }
    }
    for set in &mut sets {
        set.retain(|i| claims[i] == 1);
    }
    sets
}

/// Initializers of the optimized graph that hold an original initializer's values under a new
/// name (re-laid out: the same non-zero values, in another order or padded with zeros).
struct Renamed<'g> {
    /// Optimized initializer name → original initializer names with its values.
    same_values: HashMap<&'g str, Vec<&'g str>>,
}

impl<'g> Renamed<'g> {
    fn new(original: &'g GraphProto, optimized: &'g GraphProto) -> Renamed<'g> {
        let known: HashSet<&str> = original.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut by_values: HashMap<Vec<u32>, Vec<&str>> = HashMap::new();
        let new: Vec<&TensorProto> =
            optimized.initializer.iter().filter(|t| !known.contains(t.name.as_str())).collect();
        if new.is_empty() {
            return Renamed { same_values: HashMap::new() };
        }
        for t in &original.initializer {
            if let Some(k) = value_key(t) {
                by_values.entry(k).or_default().push(t.name.as_str());
            }
        }
        let same_values =
            new.into_iter().filter_map(|t| Some((t.name.as_str(), by_values.get(&value_key(t)?)?.clone()))).collect();
        Renamed { same_values }
    }

    /// Whether the optimized initializer `name` holds the values of one of `originals`.
    fn is(&self, name: &str, originals: &HashSet<&str>) -> bool {
        self.same_values.get(name).is_some_and(|names| names.iter().any(|n| originals.contains(n)))
    }
}

/// A float tensor's non-zero values as f32 (f16 widened, which is exact, as ONNX Runtime's
/// folded `Cast` does), sorted by bit pattern: equal for a re-laid-out copy. `None` for other
/// types and for tensors too small to tell apart (fewer than 16 non-zero values).
fn value_key(t: &TensorProto) -> Option<Vec<u32>> {
    const FLOAT16: i32 = 10;
    let values = match crate::model::onnx_file::f32_values(t) {
        Some(v) => v,
        None if t.data_type == FLOAT16 => {
            let n = t.dims.iter().product::<i64>().max(0) as usize;
            let bits: Vec<u16> = if !t.raw_data.is_empty() {
                t.raw_data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
            } else {
                t.int32_data.iter().map(|&b| b as u16).collect()
            };
            if bits.len() != n {
                return None;
            }
            bits.into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect()
        }
        None => return None,
    };
    let mut bits: Vec<u32> = values.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
    if bits.len() < 16 {
        return None;
    }
    bits.sort_unstable();
    Some(bits)
}

/// Values that depend on the graph's inputs; everything else is computed from initializers
/// alone.
fn dynamic_values(graph: &GraphProto) -> HashSet<String> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut dynamic: HashSet<String> =
        graph.input.iter().map(|i| i.name.clone()).filter(|n| !inits.contains(n.as_str())).collect();
    // The optimized graph is in topological order (ONNX Runtime saves it so).
    for n in &graph.node {
        if n.input.iter().any(|i| dynamic.contains(i)) {
            dynamic.extend(n.output.iter().cloned());
        }
    }
    dynamic
}

/// The nodes that ran and compute the product's weight operand from initializers on every run
/// (a `DequantizeLinear` of a constant weight that ONNX Runtime keeps in the graph), if any.
fn per_call_ops(
    graph: &GraphProto,
    node: &NodeProto,
    dynamic: &HashSet<String>,
    ran: &[(String, Ran)],
) -> Option<String> {
    let producer = |value: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == value));
    let mut ops = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<&str> = node.input.iter().map(String::as_str).filter(|i| !dynamic.contains(*i)).collect();
    while let Some(v) = stack.pop() {
        let Some(p) = producer(v) else { continue };
        if !seen.insert(p.name.as_str()) {
            continue;
        }
        if ran.iter().any(|(name, _)| *name == p.name) {
            // ONNX Runtime may name a node it made after its op: its output names it then.
            let name =
                if p.name.is_empty() || p.name == p.op_type { p.output.first().unwrap_or(&p.name) } else { &p.name };
            ops.push(format!("{name} ({})", p.op_type));
        }
        stack.extend(p.input.iter().map(String::as_str).filter(|i| !dynamic.contains(*i)));
    }
    ops.sort();
    (!ops.is_empty())
        .then(|| format!("{} op(s) recompute the weight from constants on every run: {}", ops.len(), ops.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_events_give_node_op_provider_and_input_types() {
        let trace = br#"[
            {"cat":"Session","name":"model_loading_uri","args":{}},
            {"cat":"Node","name":"conv1.acc_fence_before","args":{"op_name":"ConvInteger"}},
            {"cat":"Node","name":"conv1.acc_kernel_time","args":{"op_name":"ConvInteger","provider":"CPUExecutionProvider",
              "input_type_shape":[{"uint8":[1,1,28,28]},{"int8":[16,1,3,3]},{"uint8":[]}]}},
            {"cat":"Node","name":"fused fc1_kernel_time","args":{"op_name":"FusedGemm","provider":"CPUExecutionProvider",
              "input_type_shape":[{"float":[1,1568]},{"float":[128]}]}}
        ]"#;
        let ran = parse_profile(trace).unwrap();
        assert_eq!(ran.len(), 2);
        assert_eq!(ran[0].0, "conv1.acc");
        assert_eq!((ran[0].1.op.as_str(), ran[0].1.provider.as_str()), ("ConvInteger", "CPUExecutionProvider"));
        assert_eq!(ran[0].1.input_types, ["uint8", "int8", "uint8"]);
        let node = NodeProto::default();
        assert_eq!(compute_of(&ran[0].1, &node), Compute::Int8);
        assert_eq!(compute_of(&ran[1].1, &node), Compute::F32);
        assert_eq!(node_layer_name(&ran[1].0), "fc1");
        assert_eq!(node_layer_name("relu1_nchwc"), "relu1");
        assert_eq!(node_layer_name("fc1/MatMulAddFusion"), "fc1");
        // Nothing that ran is not a pass.
        assert!(parse_profile(b"[]").is_err());
        assert!(parse_profile(b"{\"x\":1}").is_err());
    }
}
