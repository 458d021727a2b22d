//! Intermediate values of an ONNX model on ONNX Runtime: each layer's output (per-layer error
//! localization) or input (what static schemes calibrate on). ONNX Runtime returns only graph
//! outputs, so the values are added to a copy of the model's outputs (which keeps ONNX Runtime
//! from fusing across them, as a debugger would).

use prost::Message;

use super::session::{f32_values, run_named, Inputs};
use crate::backend::{BackendError, BackendId, Capture, LayerSession, MODEL_OUTPUT};
use crate::quant::Variant;

const ID: BackendId = BackendId::ORT_CPU;

/// An ONNX Runtime session whose runs return every layer's output (then the model's) or input.
pub(super) fn layers(variant: &Variant, batch: usize, capture: Capture) -> Result<Box<dyn LayerSession>, BackendError> {
    let err = |e: String| BackendError::engine(ID, "capturing layer values", e);
    let runtime = super::runtime::get().map_err(|e| err(e.clone()))?;
    let mut names: Vec<String> = variant.plan.layers.iter().map(|(n, _)| n.clone()).collect();
    let bytes = std::fs::read(variant.ort_onnx())
        .map_err(|e| err(format!("cannot read {}: {e}", variant.ort_onnx().display())))?;
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| err(format!("{} is not an ONNX model: {e}", variant.ort_onnx().display())))?;
    let graph = proto.graph.as_mut().ok_or_else(|| err(format!("{} has no graph", variant.ort_onnx().display())))?;
    let model_output =
        graph.output.first().map(|o| o.name.clone()).ok_or_else(|| err("the model has no output".into()))?;
    let values: Vec<String> = match capture {
        // A layer's node (or, in a zoo integer export, its `<layer>.out` node): its first output.
        Capture::Outputs => names
            .iter()
            .map(|name| {
                let node = |n: &str| graph.node.iter().find(|x| x.name == n).and_then(|x| x.output.first().cloned());
                node(name)
                    .or_else(|| node(&format!("{name}.out")))
                    .or_else(|| graph.node.iter().flat_map(|n| &n.output).find(|o| *o == name).cloned())
                    .ok_or_else(|| err(format!("no node or value named {name} in {}", variant.ort_onnx().display())))
            })
            .collect::<Result<_, _>>()?,
        Capture::Inputs => crate::backend::onnx_artifact::layer_inputs(variant.ort_onnx(), &names).map_err(err)?,
    };
    let mut fetch = values.clone();
    if capture == Capture::Outputs {
        fetch.push(model_output.clone());
        names.push(MODEL_OUTPUT.to_string());
    }
    // The graph's outputs become the values asked for (ONNX Runtime infers their types).
    graph.output.retain(|o| o.name == model_output);
    for v in &values {
        if !graph.output.iter().any(|o| &o.name == v) {
            graph.output.push(tract_onnx::pb::ValueInfoProto { name: v.clone(), ..Default::default() });
        }
    }
    let bytes = proto.encode_to_vec();
    let session = super::runtime::builder(runtime)
        .and_then(|mut b| b.commit_from_memory(&bytes))
        .map_err(|e| err(format!("building the session: {e}")))?;
    let inputs = Inputs::of(variant.ort_onnx(), batch)?;
    // Two layers may read one value (calibration): each value is fetched once.
    let mut unique: Vec<String> = Vec::new();
    let index = fetch
        .iter()
        .map(|v| match unique.iter().position(|u| u == v) {
            Some(i) => i,
            None => {
                unique.push(v.clone());
                unique.len() - 1
            }
        })
        .collect();
    Ok(Box::new(OrtLayers { session, inputs, names, fetch: unique, index }))
}

struct OrtLayers {
    session: ort::session::Session,
    inputs: Inputs,
    /// What each result is called (layer names, then the model output), and which fetched
    /// value it is.
    names: Vec<String>,
    index: Vec<usize>,
    /// The values fetched, each once.
    fetch: Vec<String>,
}

impl LayerSession for OrtLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let err = |e: String| BackendError::engine(ID, "capturing layer values", e);
        let feed = self.inputs.values(input).map_err(err)?;
        let values = run_named(&mut self.session, &feed, &self.fetch).map_err(err)?;
        let values: Vec<Vec<f32>> = values.iter().map(|v| f32_values(v).map_err(err)).collect::<Result<_, _>>()?;
        Ok(self.names.iter().zip(&self.index).map(|(name, &i)| (name.clone(), values[i].clone())).collect())
    }
}
