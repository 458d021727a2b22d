//! What tract made of a model, read from its optimized plan: the ops and kernels it will run
//! (the record's summary), the weights' bytes, and each weighted layer's evidence.
//!
//! A layer's nodes are found by name: tract names the nodes it derives from an ONNX node after
//! it (`fc1`, `fc1.matmatmul`, `fc1.pack_b`…). The layer's matrix product is among them or,
//! where tract fused it with what follows (a bias, a ReLU), the product that consumes one of
//! them; its kernel says what the layer computes in (`OptMatMul`'s `mmm` kernels report their
//! accumulator type: i32 for tract's int8 kernels, f32, f16). The weight side of the product
//! tells whether the weights were folded into a constant at load, or are recomputed
//! (dequantized) from constants on every run.

use std::collections::HashSet;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;

use crate::backend::onnx_artifact::{belongs, stored_types};
use crate::backend::{Compute, LayerEvidence, StoredWeight, WeightType};
use crate::quant::Variant;

/// Bytes held by a model's constants: plain tensors' bytes, and for packed (exotic) ones the
/// buffer sizes tract reports. Counted on the decluttered model, where weights are still
/// constants (f32 once dequantization graphs are folded; i8 for integer layers).
pub(super) fn constant_bytes(model: &TypedModel) -> u64 {
    model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<Const>())
        .map(|c| {
            let t = c.val();
            match t.as_plain_ram_storage() {
                Some(p) => p.as_bytes().len() as u64,
                None => t
                    .exotic_fact()
                    .ok()
                    .flatten()
                    .and_then(|f| f.mem_size().as_i64())
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
            }
        })
        .sum()
}

/// `op×count` for each op of the optimized model, most frequent first: which kernels run.
pub(super) fn op_summary(model: &TypedModel) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for node in model.nodes() {
        // A matmul's name is the same for every datum type; its info names the kernel
        // tract picked (e.g. an i32-accumulating int8 kernel versus an f32 one).
        let kernel = node.op.info().ok().and_then(|lines| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix("Mult: ").map(|m| m.rsplit(" with ").next().unwrap_or(m).to_string()))
        });
        let name = match kernel {
            Some(k) => format!("{}{k}", node.op.name()),
            None => node.op.name().to_string(),
        };
        *counts.entry(name).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.iter().map(|(op, n)| format!("{op}×{n}")).collect::<Vec<_>>().join(", ")
}

/// Each weighted layer as tract-cpu's optimized plan runs it.
pub(super) fn evidence(model: &TypedModel, variant: &Variant) -> Vec<LayerEvidence> {
    layer_evidence(model, variant, "cpu", &|_| false, "cpu")
}

/// [`evidence`] for a backend on `backend_device` whose ops `on_gpu` places on `gpu_device`
/// (tract-cuda tells its GPU ops from the CPU ones by name).
pub(super) fn layer_evidence(
    model: &TypedModel,
    variant: &Variant,
    backend_device: &str,
    on_gpu: &dyn Fn(&str) -> bool,
    gpu_device: &str,
) -> Vec<LayerEvidence> {
    let stored = stored_types(&variant.onnx, &variant.layer_schemes.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>());
    let dynamic = dynamic_nodes(model);
    let source = "tract's optimized plan";
    variant
        .layer_schemes
        .iter()
        .map(|(layer, _)| {
            let scheme = variant.layer_scheme(layer);
            let stored_type = stored.get(layer).cloned().unwrap_or_else(|| StoredWeight::new(WeightType::NotFound));
            let nodes: Vec<&TypedNode> = model.nodes().iter().filter(|n| belongs(&n.name, layer)).collect();
            let ids: HashSet<usize> = nodes.iter().map(|n| n.id).collect();
            let is_mm = |n: &&TypedNode| n.op_as::<OptMatMul>().is_some() || is_product(&n.op.name());
            // The product is the layer's own node, or, where tract fused it with what follows
            // (a bias, a ReLU: the fused node takes the last op's name), the product that takes
            // the layer's packed input or bias.
            let product =
                nodes.iter().copied().find(is_mm).or_else(|| {
                    model.nodes().iter().find(|n| is_mm(n) && n.inputs.iter().any(|i| ids.contains(&i.node)))
                });
            let Some(node) = product else {
                let ops: Vec<String> = nodes.iter().map(|n| n.op.name().to_string()).collect();
                let kernel = if ops.is_empty() {
                    "no node of this layer in the optimized plan".to_string()
                } else {
                    format!("no matrix product among its nodes ({})", ops.join(", "))
                };
                return LayerEvidence::observed(
                    layer,
                    scheme,
                    stored_type,
                    Compute::NotObservable,
                    kernel,
                    backend_device,
                    true,
                    None,
                    source,
                );
            };
            let (compute, kernel) = match node.op_as::<OptMatMul>() {
                Some(mm) => kernel_of(mm),
                None => {
                    // A GPU engine's product: its operands' datum type is what it computes in.
                    let facts = model.node_input_facts(node.id).unwrap_or_default();
                    let dt = facts.iter().map(|f| f.datum_type).find(|d| d.is_float()).unwrap_or(DatumType::F32);
                    (compute_of(dt), node.op.name().to_string())
                }
            };
            let device = if on_gpu(&node.op.name()) { gpu_device } else { "cpu" };
            let per_call = per_call_ops(model, node, &dynamic);
            LayerEvidence::observed(
                layer,
                scheme,
                stored_type,
                compute,
                kernel,
                device,
                device == backend_device,
                per_call,
                source,
            )
        })
        .collect()
}

/// Op names of a GPU engine's matrix products and convolutions.
fn is_product(op: &str) -> bool {
    let op = op.to_ascii_lowercase();
    ["gemm", "matmul", "conv"].iter().any(|p| op.contains(p)) && !op.contains("pack")
}

/// What an `OptMatMul`'s kernels compute in (their accumulator type), and their names.
fn kernel_of(mm: &OptMatMul) -> (Compute, String) {
    let names: Vec<String> = mm.mmm.iter().map(|k| k.name().to_string()).collect();
    let emulated = mm.mmm.iter().any(|k| k.emulated());
    let compute = match mm.mmm.first().map(|k| k.internal_type()) {
        // tract's own flag: the kernel converts every operation to another type.
        _ if emulated => Compute::F32,
        Some(DatumType::I32) => Compute::Int8,
        Some(dt) => compute_of(dt),
        None => Compute::NotObservable,
    };
    let note = if emulated { " (a kernel tract marks emulated)" } else { "" };
    (compute, format!("OptMatMul {}{note}", names.join(", ")))
}

fn compute_of(dt: DatumType) -> Compute {
    match dt {
        DatumType::F32 | DatumType::F64 => Compute::F32,
        DatumType::F16 => Compute::F16,
        DatumType::I32 | DatumType::I8 | DatumType::U8 => Compute::Int8,
        _ => Compute::NotObservable,
    }
}

/// Nodes whose value depends on the model's inputs: everything else is computed from constants
/// alone, and, when not folded into a `Const`, recomputed on every run.
fn dynamic_nodes(model: &TypedModel) -> HashSet<usize> {
    let mut dynamic = HashSet::new();
    for node in model.eval_order().unwrap_or_default() {
        let n = model.node(node);
        if n.op.name() == "Source" || n.inputs.iter().any(|i| dynamic.contains(&i.node)) {
            dynamic.insert(node);
        }
    }
    dynamic
}

/// The ops that compute a product's weight operand from constants on every run, if any:
/// `DequantizeLinear`-style graphs tract did not fold (it folds only within a memory budget).
fn per_call_ops(model: &TypedModel, node: &TypedNode, dynamic: &HashSet<usize>) -> Option<String> {
    let mut ops = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> = node.inputs.iter().map(|i| i.node).filter(|n| !dynamic.contains(n)).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let n = model.node(id);
        if n.op_is::<Const>() {
            continue;
        }
        ops.push(format!("{} ({})", n.name, n.op.name()));
        stack.extend(n.inputs.iter().map(|i| i.node).filter(|n| !dynamic.contains(n)));
    }
    ops.sort();
    (!ops.is_empty()).then(|| format!("{} op(s) recompute the weight from constants: {}", ops.len(), ops.join(", ")))
}
