//! Intermediate values of an ONNX model on tract: each layer's output (per-layer error
//! localization) or input (what static schemes calibrate on).

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::session::Inputs;
use crate::backend::{BackendError, BackendId, Capture, LayerSession, MODEL_OUTPUT};
use crate::quant::Variant;

/// A tract session whose runs return every layer's output (then the model's) or input.
pub(super) fn layers(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    capture: Capture,
) -> Result<Box<dyn LayerSession>, BackendError> {
    let mut names: Vec<String> = variant.plan.layers.iter().map(|(n, _)| n.clone()).collect();
    let probe = match capture {
        // Float layers' nodes carry the layer's name; zoo integer layers end in `<name>.out`.
        Capture::Outputs => ValueProbe::new(&variant.onnx, batch, &names, true, true),
        // A layer's input is its node's first input value.
        Capture::Inputs => {
            let inputs = crate::backend::onnx_artifact::layer_inputs(&variant.onnx, &names)
                .map_err(|e| BackendError::engine(id, "capturing layer values", e))?;
            ValueProbe::new(&variant.onnx, batch, &inputs, false, false)
        }
    }
    .map_err(|e| BackendError::engine(id, "capturing layer values", e))?;
    if capture == Capture::Outputs {
        names.push(MODEL_OUTPUT.to_string());
    }
    Ok(Box::new(TractLayers { id, names, probe }))
}

struct TractLayers {
    id: BackendId,
    names: Vec<String>,
    probe: ValueProbe,
}

impl LayerSession for TractLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let values = self.probe.run(input).map_err(|e| BackendError::engine(self.id, "capturing layer values", e))?;
        Ok(self.names.iter().cloned().zip(values).collect())
    }
}

/// An ONNX model whose outputs are chosen intermediate values: layer outputs for per-layer
/// error localization, layer inputs for calibration.
pub(super) struct ValueProbe {
    plan: Arc<TypedRunnableModel>,
    inputs: Inputs,
}

impl ValueProbe {
    /// `names` are ONNX value names, or node names (their first output); with `node_first`,
    /// node names are tried first (a layer's node), else value names (a layer's input). With
    /// `with_output`, the model's own output comes last.
    pub(super) fn new(
        onnx: &std::path::Path,
        batch: usize,
        names: &[String],
        node_first: bool,
        with_output: bool,
    ) -> TractResult<Self> {
        let inputs = Inputs::of(onnx, batch)?;
        let mut model = inputs.set_facts(tract_onnx::onnx().model_for_path(onnx)?)?;
        let output = model.output_outlets()?.first().copied();
        let mut outlets = Vec::new();
        for name in names {
            let node = || {
                model
                    .node_id_by_name(name)
                    .or_else(|_| model.node_id_by_name(&format!("{name}.out")))
                    .ok()
                    .map(|id| OutletId::new(id, 0))
            };
            let value = || model.find_outlet_label(name);
            let found = if node_first { node().or_else(value) } else { value().or_else(node) };
            match found {
                Some(o) => outlets.push(o),
                None => return Err(TractError::msg(format!("no node or value named {name} in {}", onnx.display()))),
            }
        }
        if with_output {
            outlets.push(output.ok_or_else(|| TractError::msg(format!("{} has no output", onnx.display())))?);
        }
        model.select_output_outlets(&outlets)?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok(ValueProbe { plan, inputs })
    }

    /// Runs one batch (exactly the prepared shape); one vector per name, in order.
    pub(super) fn run(&self, input: &[f32]) -> TractResult<Vec<Vec<f32>>> {
        let outputs = self.plan.run(self.inputs.tensors(input)?)?;
        outputs.iter().map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
    }
}
