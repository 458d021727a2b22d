//! The ONNX opset a rewritten graph needs, and the upgrade of an opset-11/12 graph to 13.
//!
//! A scheme may write ops or attributes the file's opset does not have: per-channel
//! `DequantizeLinear` (its `axis` exists from opset 13), a bfloat16 weight or a `Cast` to
//! bfloat16 (13),
//! `DynamicQuantizeLinear` (11). Written into an older graph they are invalid, and ONNX Runtime
//! refuses to load the file. Such a graph is upgraded to opset 13 when it imports 11 or 12: the
//! ops whose form changed between 11 and 13 are rewritten to their opset-13 form, and an op
//! this module cannot rewrite is named in the error instead of writing a file no engine loads.
//!
//! What changed between opsets 11 and 13, and what is done:
//! - `Squeeze`, `Unsqueeze`, `ReduceSum` (13): `axes` moved from an attribute to an input:
//!   the attribute becomes an int64 initializer.
//! - `Dropout` (12): `ratio` moved to an input, likewise (a float scalar).
//! - `Split` (13): `split` moved to an input, likewise.
//! - `Softmax`, `LogSoftmax`, `Hardmax` (13): before 13 the input is flattened to 2-D at `axis`
//!   and normalized over everything after it; from 13 over `axis` alone. Where `axis` is the
//!   last axis the two agree; otherwise the old meaning is written out: `Flatten(axis)`, the op
//!   on axis −1, and a `Reshape` back to the input's shape.
//! - `Resize` (13) dropped the `tf_half_pixel_for_nn` mode: refused.
//! - Every other op of the default domain kept its form: 12 and 13 otherwise added types or
//!   optional attributes (ArgMax's `select_last_index`, GatherND's `batch_dims`), which an
//!   opset-11 graph does not use.
//!
//! Subgraphs (`If`, `Loop`, `Scan` bodies) are rewritten the same way. Graphs older than opset
//! 11 are not upgraded: too many ops changed (Resize, Pad, Clip, Slice…); the error says to
//! export at a newer opset.

use tract_onnx::pb::{attribute_proto::AttributeType, tensor_proto::DataType, GraphProto, ModelProto, NodeProto};

/// The opset qbench upgrades to.
pub const UPGRADE_TO: i64 = 13;

/// The default ONNX domain's opset the model imports (1 when it names none, as ONNX reads it).
pub fn default_opset(model: &ModelProto) -> i64 {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version)
}

/// The lowest opset of the default domain that the nodes of `graph` (subgraphs included) need,
/// counting only the forms qbench writes: the integer and quantization ops, a per-channel
/// `DequantizeLinear`, a bfloat16 initializer or a `Cast` to bfloat16.
pub fn needed_opset(graph: &GraphProto) -> (i64, &'static str) {
    // A bfloat16 tensor (a weight stored half) is an input type only opset 13's ops take.
    let mut need = if graph.initializer.iter().any(|t| t.data_type == DataType::Bfloat16 as i32) {
        (13, "a bfloat16 weight")
    } else {
        (1, "")
    };
    visit(graph, &mut |n: &NodeProto| {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return;
        }
        let at = match n.op_type.as_str() {
            "DequantizeLinear" if n.attribute.iter().any(|a| a.name == "axis") => {
                (13, "a per-channel DequantizeLinear")
            }
            "Cast" if n.attribute.iter().any(|a| a.name == "to" && a.i == DataType::Bfloat16 as i64) => {
                (13, "a Cast to bfloat16")
            }
            "DynamicQuantizeLinear" => (11, "DynamicQuantizeLinear"),
            "DequantizeLinear" => (10, "DequantizeLinear"),
            "QuantizeLinear" => (10, "QuantizeLinear"),
            "MatMulInteger" => (10, "MatMulInteger"),
            "ConvInteger" => (10, "ConvInteger"),
            _ => (1, ""),
        };
        if at.0 > need.0 {
            need = at;
        }
    });
    need
}

fn visit(graph: &GraphProto, f: &mut dyn FnMut(&NodeProto)) {
    for n in &graph.node {
        f(n);
        for a in &n.attribute {
            for g in a.g.iter().chain(a.graphs.iter()) {
                visit(g, f);
            }
        }
    }
}

/// Why a graph could not be brought to the opset its rewrite needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct OpsetError(String);

/// Makes `model` valid at the opset its nodes need: nothing when it already imports that opset,
/// an upgrade to [`UPGRADE_TO`] from 11 or 12, an error otherwise. `why` names what needs it
/// (for the message). Returns the opset the model imports afterwards.
pub fn ensure(model: &mut ModelProto, why: &str) -> Result<i64, OpsetError> {
    let have = default_opset(model);
    let Some(graph) = model.graph.as_mut() else { return Ok(have) };
    let (need, form) = needed_opset(graph);
    if need <= have {
        return Ok(have);
    }
    // What else would do: a per-tensor scheme avoids what only per-channel weights need.
    let instead = if form.contains("per-channel") { ", or use a per-tensor scheme" } else { "" };
    if need > UPGRADE_TO || have < 11 {
        return Err(OpsetError(format!(
            "{why} writes {form}, which needs ONNX opset {need}, but the model imports opset {have}; qbench upgrades graphs only from opset 11 or 12 (older opsets changed too many ops): export the model at opset {} or later (torch.onnx.export(…, opset_version={})){instead}",
            need.max(UPGRADE_TO),
            need.max(UPGRADE_TO)
        )));
    }
    upgrade_graph(graph).map_err(|e| {
        OpsetError(format!(
            "{why} writes {form}, which needs ONNX opset {need}, but the model imports opset {have} and cannot be upgraded: {e}; export the model at opset 13 or later{instead}"
        ))
    })?;
    let mut found = false;
    for o in &mut model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            o.version = UPGRADE_TO;
            found = true;
        }
    }
    if !found {
        model.opset_import.push(tract_onnx::pb::OperatorSetIdProto { domain: String::new(), version: UPGRADE_TO });
    }
    // Opset 13 needs IR version 7 or later.
    model.ir_version = model.ir_version.max(7);
    Ok(UPGRADE_TO)
}

/// Rewrites the nodes of `graph` (and its subgraphs) whose form changed between opsets 11 and 13.
fn upgrade_graph(graph: &mut GraphProto) -> Result<(), String> {
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    let mut taken: std::collections::HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .chain(graph.initializer.iter().map(|t| t.name.clone()))
        .chain(graph.input.iter().map(|i| i.name.clone()))
        .collect();
    let mut fresh = |base: String| {
        let mut name = base.clone();
        let mut i = 1;
        while !taken.insert(name.clone()) {
            name = format!("{base}#{i}");
            i += 1;
        }
        name
    };
    for mut node in std::mem::take(&mut graph.node) {
        for a in &mut node.attribute {
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                upgrade_graph(g)?;
            }
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            nodes.push(node);
            continue;
        }
        match node.op_type.as_str() {
            "Squeeze" | "Unsqueeze" | "ReduceSum" | "Split" => {
                let key = if node.op_type == "Split" { "split" } else { "axes" };
                if let Some(at) = node.attribute.iter().position(|a| a.name == key) {
                    let values = node.attribute.remove(at).ints;
                    let name = fresh(format!("{}.{key}", node.name));
                    inits.push(tract_onnx::pb::TensorProto {
                        name: name.clone(),
                        dims: vec![values.len() as i64],
                        data_type: DataType::Int64 as i32,
                        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        ..Default::default()
                    });
                    // The input's position: Squeeze/Unsqueeze/ReduceSum/Split take it second.
                    node.input.truncate(1);
                    node.input.push(name);
                }
                nodes.push(node);
            }
            "Dropout" => {
                // Opset 12 moved `ratio` to an input (a float scalar); at inference it is the
                // identity either way, but the attribute makes an opset-12+ graph invalid.
                if let Some(at) = node.attribute.iter().position(|a| a.name == "ratio") {
                    let ratio = node.attribute.remove(at).f;
                    let name = fresh(format!("{}.ratio", node.name));
                    inits.push(tract_onnx::pb::TensorProto {
                        name: name.clone(),
                        dims: vec![],
                        data_type: DataType::Float as i32,
                        raw_data: ratio.to_le_bytes().to_vec(),
                        ..Default::default()
                    });
                    node.input.truncate(1);
                    node.input.push(name);
                }
                nodes.push(node);
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let axis = node.attribute.iter().find(|a| a.name == "axis").map_or(1, |a| a.i);
                if axis == -1 {
                    nodes.push(node);
                    continue;
                }
                // The opset-11 meaning, written out: normalize the rows of the input flattened
                // at `axis`, then restore its shape. (Equal to the opset-13 op on the last axis
                // for any rank; the extra ops cost two reshapes.)
                let x = node.input.first().cloned().ok_or_else(|| format!("{} has no input", node.name))?;
                let y = node.output.first().cloned().ok_or_else(|| format!("{} has no output", node.name))?;
                let shape = fresh(format!("{}.shape", node.name));
                let flat = fresh(format!("{}.flat", node.name));
                let out2d = fresh(format!("{}.2d", node.name));
                nodes.push(simple("Shape", vec![x.clone()], shape.clone(), format!("{}.shape", node.name), vec![]));
                nodes.push(simple(
                    "Flatten",
                    vec![x],
                    flat.clone(),
                    format!("{}.flatten", node.name),
                    vec![crate::model::onnx::int("axis", axis)],
                ));
                let mut op = node.clone();
                op.input = vec![flat];
                op.output = vec![out2d.clone()];
                op.attribute = vec![crate::model::onnx::int("axis", -1)];
                nodes.push(op);
                nodes.push(simple("Reshape", vec![out2d, shape], y, format!("{}.reshape", node.name), vec![]));
            }
            "Resize"
                if node.attribute.iter().any(|a| {
                    a.name == "coordinate_transformation_mode"
                        && a.r#type == AttributeType::String as i32
                        && a.s == b"tf_half_pixel_for_nn"
                }) =>
            {
                return Err(format!(
                    "node {} (Resize) uses coordinate_transformation_mode tf_half_pixel_for_nn, which opset 13 removed",
                    node.name
                ));
            }
            _ => nodes.push(node),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
    Ok(())
}

fn simple(
    op: &str,
    input: Vec<String>,
    output: String,
    name: String,
    attribute: Vec<tract_onnx::pb::AttributeProto>,
) -> NodeProto {
    NodeProto { name, input, output: vec![output], op_type: op.into(), attribute, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::OperatorSetIdProto;

    fn model(opset: i64, nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            ir_version: 6,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            graph: Some(GraphProto { node: nodes, ..Default::default() }),
            ..Default::default()
        }
    }

    fn per_channel_dq() -> NodeProto {
        simple(
            "DequantizeLinear",
            vec!["q".into(), "s".into(), "z".into()],
            "w".into(),
            "dq".into(),
            vec![crate::model::onnx::int("axis", 0)],
        )
    }

    #[test]
    fn only_a_graph_that_needs_it_is_upgraded_and_attributes_become_inputs() {
        // Per-tensor DequantizeLinear is opset 10: an opset-11 graph stays as it is.
        let per_tensor = simple("DequantizeLinear", vec!["q".into(), "s".into()], "w".into(), "dq".into(), vec![]);
        let mut m = model(11, vec![per_tensor]);
        assert_eq!(ensure(&mut m, "x"), Ok(11));
        // Per-channel needs 13: Unsqueeze's axes become an int64 initializer input.
        let unsq = simple(
            "Unsqueeze",
            vec!["a".into()],
            "b".into(),
            "u".into(),
            vec![crate::model::onnx::ints("axes", &[1, 3])],
        );
        let mut m = model(11, vec![per_channel_dq(), unsq]);
        assert_eq!(ensure(&mut m, "x"), Ok(13));
        assert_eq!(default_opset(&m), 13);
        assert!(m.ir_version >= 7);
        let g = m.graph.unwrap();
        let u = g.node.iter().find(|n| n.op_type == "Unsqueeze").unwrap();
        assert!(u.attribute.is_empty());
        let axes = g.initializer.iter().find(|t| t.name == u.input[1]).unwrap();
        let values: Vec<i64> = axes.raw_data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(values, [1, 3]);
        assert_eq!(axes.data_type, DataType::Int64 as i32);
    }

    #[test]
    fn softmax_keeps_its_opset_11_meaning() {
        let sm = simple("Softmax", vec!["a".into()], "b".into(), "sm".into(), vec![crate::model::onnx::int("axis", 1)]);
        let mut m = model(12, vec![per_channel_dq(), sm]);
        ensure(&mut m, "x").unwrap();
        let ops: Vec<&str> = m.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["DequantizeLinear", "Shape", "Flatten", "Softmax", "Reshape"]);
        let g = m.graph.unwrap();
        assert_eq!(g.node[4].output, ["b"]);
        assert_eq!(g.node[3].attribute[0].i, -1);
    }

    #[test]
    fn too_old_or_unconvertible_graphs_are_refused_with_the_fix() {
        let e = ensure(&mut model(10, vec![per_channel_dq()]), "int8-pc-sym").unwrap_err().to_string();
        assert!(e.contains("int8-pc-sym writes a per-channel DequantizeLinear, which needs ONNX opset 13"), "{e}");
        assert!(e.contains("imports opset 10") && e.contains("export the model at opset 13"), "{e}");
        assert!(e.contains("or use a per-tensor scheme"), "{e}");
        // A per-tensor form in a too-old graph: no advice to use what it already is.
        let per_tensor = simple("DequantizeLinear", vec!["q".into(), "s".into()], "w".into(), "dq".into(), vec![]);
        let e = ensure(&mut model(9, vec![per_tensor]), "int8-pt-sym").unwrap_err().to_string();
        assert!(
            e.contains("writes DequantizeLinear, which needs ONNX opset 10") && !e.contains("per-tensor scheme"),
            "{e}"
        );
        let mut resize = simple(
            "Resize",
            vec!["a".into()],
            "b".into(),
            "r".into(),
            vec![tract_onnx::pb::AttributeProto {
                name: "coordinate_transformation_mode".into(),
                r#type: AttributeType::String as i32,
                s: b"tf_half_pixel_for_nn".to_vec(),
                ..Default::default()
            }],
        );
        resize.domain = String::new();
        let e = ensure(&mut model(11, vec![per_channel_dq(), resize]), "int8-pc-sym").unwrap_err().to_string();
        assert!(e.contains("node r (Resize)") && e.contains("tf_half_pixel_for_nn"), "{e}");
    }
}
