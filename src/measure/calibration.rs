//! What static schemes calibrate on: the fp32 input and output of every weighted layer over
//! the calibration split, as an engine's layer sessions capture them (the model's reference
//! engine).

use crate::backend::{BackendError, BackendId, LayerSession, MODEL_OUTPUT};
use crate::data::Dataset;
use crate::quant::{Calibration, LayerInputs};

/// Runs `inputs` and `outputs` (layer sessions prepared for `batch` items, capturing layer
/// inputs and layer outputs) over `data`.
pub fn collect(
    inputs: &mut dyn LayerSession,
    outputs: &mut dyn LayerSession,
    backend: BackendId,
    batch: usize,
    data: &Dataset,
    percentile: f64,
) -> Result<Calibration, BackendError> {
    let inputs = values(inputs, backend, batch, data, "input")?;
    let outputs = values(outputs, backend, batch, data, "output")?;
    Ok(Calibration { items: data.len(), percentile, inputs, outputs })
}

/// Every layer's captured values (`side`: what they are, for the error), flattened. A short
/// last batch is padded and the padding's values dropped.
fn values(
    session: &mut dyn LayerSession,
    backend: BackendId,
    batch: usize,
    data: &Dataset,
    side: &str,
) -> Result<LayerInputs, BackendError> {
    let mut inputs = LayerInputs::new();
    for start in (0..data.len()).step_by(batch.max(1)) {
        let n = batch.min(data.len() - start);
        let values = session.run(&data.batch_f32(start, n, batch))?;
        // The model's own output is no layer's: not kept, and free to hold −∞ (masked logits).
        for (layer, v) in values.into_iter().filter(|(layer, _)| layer != MODEL_OUTPUT) {
            // Padding items of a short last batch are dropped: their share of the values.
            let keep = v.len() / batch * n;
            let v = &v[..keep.min(v.len())];
            if v.iter().any(|x| !x.is_finite()) {
                return Err(BackendError::engine(
                    backend,
                    "calibrating",
                    format!("the {side} of layer {layer} holds NaN or infinite values"),
                ));
            }
            inputs.entry(layer).or_default().extend_from_slice(v);
        }
    }
    Ok(inputs)
}
