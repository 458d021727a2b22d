//! What the backends that load a variant's ONNX artifact (tract, ONNX Runtime) read from the
//! file itself: which nodes belong to a layer, the type each layer's weight is stored in, and
//! the values a layer reads. The engines' own views (an optimized plan, a profile) are read in
//! their folders.

use std::collections::HashMap;

use prost::Message;

use crate::backend::{StoredWeight, WeightType};

/// Whether an engine's node `name` derives from the ONNX node `layer`, or from the nodes qbench
/// writes for it (`<layer>.…` in a zoo export, `qbench.<layer>.…` in a rewritten graph).
pub fn belongs(name: &str, layer: &str) -> bool {
    let name = name.strip_prefix("qbench.").unwrap_or(name);
    name == layer || name.strip_prefix(layer).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('#'))
}

/// The graph's output names, in order (empty when the file cannot be read: outputs are then
/// unnamed, and matched by position).
pub fn output_names(onnx: &std::path::Path) -> Vec<String> {
    std::fs::read(onnx)
        .ok()
        .and_then(|bytes| tract_onnx::pb::ModelProto::decode(bytes.as_slice()).ok())
        .and_then(|p| p.graph)
        .map(|g| g.output.into_iter().map(|o| o.name).collect())
        .unwrap_or_default()
}

/// Each layer's weight type as the ONNX file stores it: the initializer its product's weight
/// input comes from (through casts, dequantization, transposes), with the ops on the way.
pub fn stored_types(onnx: &std::path::Path, layers: &[String]) -> HashMap<String, StoredWeight> {
    let mut out = HashMap::new();
    let Ok(bytes) = std::fs::read(onnx) else { return out };
    let Ok(proto) = tract_onnx::pb::ModelProto::decode(bytes.as_slice()) else { return out };
    let Some(graph) = proto.graph else { return out };
    let inits: HashMap<&str, i32> = graph.initializer.iter().map(|t| (t.name.as_str(), t.data_type)).collect();
    for layer in layers {
        if let Some((name, via)) = weight_initializer(&graph, layer) {
            let ty = WeightType::from_name(&onnx_type_name(inits[name]));
            out.insert(layer.clone(), StoredWeight { ty, via });
        }
    }
    out
}

/// The initializer a layer's product takes its weight from, and the ops on the way (a cast, a
/// dequantization, a transpose): B of MatMul/Gemm, W of Conv, b/w of the integer ops (after the
/// activation and its scale and zero point for the QLinear ones), followed back through each
/// op's first input.
pub fn weight_initializer<'g>(graph: &'g tract_onnx::pb::GraphProto, layer: &str) -> Option<(&'g str, Vec<String>)> {
    const PRODUCTS: &[&str] =
        &["MatMul", "Gemm", "Conv", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv"];
    let node = graph.node.iter().find(|n| belongs(&n.name, layer) && PRODUCTS.contains(&n.op_type.as_str()))?;
    let at = match node.op_type.as_str() {
        "QLinearMatMul" | "QLinearConv" => 3,
        _ => 1,
    };
    let mut value = node.input.get(at)?.as_str();
    let mut via = Vec::new();
    loop {
        if let Some(t) = graph.initializer.iter().find(|t| t.name == value) {
            return Some((t.name.as_str(), via));
        }
        let p = graph.node.iter().find(|n| n.output.iter().any(|o| o == value))?;
        if via.len() >= 16 {
            return None;
        }
        via.push(p.op_type.clone());
        value = p.input.first()?.as_str();
    }
}

/// ONNX's `TensorProto.DataType` codes, as records name the types.
pub fn onnx_type_name(code: i32) -> String {
    match code {
        1 => "f32",
        2 => "u8",
        3 => "i8",
        6 => "i32",
        7 => "i64",
        10 => "f16",
        11 => "f64",
        16 => "bf16",
        21 => "u4",
        22 => "i4",
        _ => return format!("ONNX type {code}"),
    }
    .to_string()
}

/// The value each named node takes as its first input (a layer's input, for calibration).
pub fn layer_inputs(onnx: &std::path::Path, nodes: &[String]) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(onnx).map_err(|e| format!("cannot read {}: {e}", onnx.display()))?;
    let proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| format!("{} is not an ONNX model: {e}", onnx.display()))?;
    let graph = proto.graph.ok_or_else(|| format!("{} has no graph", onnx.display()))?;
    nodes
        .iter()
        .map(|name| {
            graph
                .node
                .iter()
                .find(|n| &n.name == name)
                .and_then(|n| n.input.first().cloned())
                .ok_or_else(|| format!("no node {name} in {}", onnx.display()))
        })
        .collect()
}

/// A model's inputs at a batch size, as its file declares them, in the graph's order (the order
/// of the arrays in each dataset item): what an engine that loads the artifact feeds it.
pub struct InputLayout {
    pub names: Vec<String>,
    /// Each input's shape, batch first.
    pub shapes: Vec<Vec<usize>>,
    pub dtypes: Vec<crate::model::onnx_file::InputDtype>,
    /// Values per item of each input.
    pub sizes: Vec<usize>,
    pub batch: usize,
}

impl InputLayout {
    pub fn of(onnx: &std::path::Path, batch: usize) -> Result<InputLayout, crate::model::onnx_file::GraphInputsError> {
        let declared = crate::model::onnx_file::graph_inputs(onnx)?;
        Ok(InputLayout {
            names: declared.iter().map(|(n, _, _)| n.clone()).collect(),
            shapes: declared
                .iter()
                .map(|(_, item, _)| std::iter::once(batch).chain(item.iter().copied()).collect())
                .collect(),
            dtypes: declared.iter().map(|(_, _, d)| *d).collect(),
            sizes: declared.iter().map(|(_, item, _)| item.iter().product()).collect(),
            batch,
        })
    }

    /// One batch of dataset items (each the inputs' values concatenated) split into each
    /// input's values, checked against its element type (integer inputs take whole numbers in
    /// range only).
    pub fn split(&self, values: &[f32]) -> Result<Vec<Vec<f32>>, String> {
        let total: usize = self.sizes.iter().sum();
        if values.len() != self.batch * total {
            return Err(format!("{} values for {} items of {total}", values.len(), self.batch));
        }
        let mut out = Vec::with_capacity(self.sizes.len());
        let mut offset = 0;
        for (dtype, size) in self.dtypes.iter().zip(&self.sizes) {
            let part: Vec<f32> = if self.sizes.len() == 1 {
                values.to_vec()
            } else {
                (0..self.batch)
                    .flat_map(|b| values[b * total + offset..b * total + offset + size].iter().copied())
                    .collect()
            };
            offset += size;
            dtype.check(&part).map_err(|e| e.to_string())?;
            out.push(part);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_belong_to_their_layer_by_name_only() {
        assert!(belongs("fc1", "fc1"));
        assert!(belongs("fc1.acc", "fc1"));
        assert!(belongs("qbench.fc1.w", "fc1"));
        assert!(belongs("fc1#3", "fc1"));
        assert!(!belongs("fc10", "fc1"));
        assert!(!belongs("xfc1", "fc1"));
    }
}
