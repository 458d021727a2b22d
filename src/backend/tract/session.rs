//! tract on the CPU: the variant's ONNX file, with a concrete input shape, optimized.

use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::backend::onnx_artifact::InputLayout;
use crate::backend::{BackendError, BackendId, Prepared, Session};
use crate::model::onnx_file::InputDtype;
use crate::quant::Variant;

/// Runs tract's matrix products on `threads` threads (tract is single-threaded by default).
pub(super) fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    set_default_executor(if threads > 1 { Executor::multithread(threads) } else { Executor::SingleThread });
}

/// Builds the ONNX file's graph with its inputs at `batch` items, as far as typing every node
/// (what `prepare` does before it optimizes): unknown ops and shapes that disagree fail here.
pub(super) fn check(onnx: &std::path::Path, batch: usize, id: BackendId) -> Result<(), BackendError> {
    let inputs = Inputs::of(onnx, batch).map_err(|e| BackendError::engine(id, "reading the inputs", e))?;
    tract_onnx::onnx()
        .model_for_path(onnx)
        .and_then(|m| inputs.set_facts(m))
        .and_then(|m| m.into_typed())
        .map(drop)
        .map_err(|e| BackendError::engine(id, "loading the ONNX model", e))
}

/// The variant's ONNX file, optimized for `batch` items per run, on the CPU.
pub(super) fn prepare(variant: &Variant, batch: usize, id: BackendId) -> Result<Prepared, BackendError> {
    let inputs = Inputs::of(&variant.onnx, batch).map_err(|e| BackendError::engine(id, "reading the inputs", e))?;
    // into_optimized() is declutter + optimize; split so the weights can be counted as
    // constants between the two (codegen moves them into the kernels' packed operands).
    let mut weights_bytes = None;
    let plan = tract_onnx::onnx()
        .model_for_path(&variant.onnx)
        .and_then(|m| inputs.set_facts(m))
        .and_then(|m| m.into_typed())
        .and_then(|mut m| {
            m.declutter()?;
            weights_bytes = Some(super::plan::constant_bytes(&m));
            m.optimize()?;
            m.into_runnable()
        })
        .map_err(|e| BackendError::engine(id, "loading and optimizing the ONNX model", e))?;
    let mut evidence = super::plan::op_summary(plan.model());
    let state = plan.spawn().map_err(|e| BackendError::engine(id, "creating the run state", e))?;
    // Ops with state between runs (LSTM/GRU/Scan keep their hidden state, for streaming)
    // would carry one batch's state into the next: such models get a fresh state per run.
    let stateful = state.op_states.iter().any(Option::is_some);
    if stateful {
        evidence.push_str(" (stateful ops: a fresh run state per run, timed)");
    }
    let artifact_bytes = crate::backend::artifact_bytes(id, &variant.onnx)?;
    Ok(Prepared {
        session: Box::new(TractSession {
            id,
            variant: variant.clone(),
            state,
            plan,
            stateful,
            inputs,
            input: None,
            outputs: TVec::new(),
            output_names: crate::backend::onnx_artifact::output_names(&variant.onnx),
        }),
        artifact: variant.onnx.clone(),
        artifact_bytes,
        evidence,
        layers: Vec::new(),
        weights_bytes,
        heap_not_covered: None,
    })
}

/// A model's inputs at a batch size (see [`InputLayout`]), as tract facts and tensors.
pub(super) struct Inputs(InputLayout);

impl Inputs {
    pub(super) fn of(onnx: &std::path::Path, batch: usize) -> TractResult<Inputs> {
        Ok(Inputs(InputLayout::of(onnx, batch).map_err(TractError::from)?))
    }

    pub(super) fn set_facts(&self, mut model: InferenceModel) -> TractResult<InferenceModel> {
        for (i, (shape, dtype)) in self.0.shapes.iter().zip(&self.0.dtypes).enumerate() {
            model.set_input_fact(i, TypedFact::dt_shape(datum_type(*dtype), shape.as_slice()).into())?;
        }
        Ok(model)
    }

    /// One batch of dataset items as one tensor per input, of its element type.
    pub(super) fn tensors(&self, values: &[f32]) -> TractResult<TVec<TValue>> {
        let parts = self.0.split(values).map_err(TractError::msg)?;
        let mut out = TVec::new();
        for ((part, shape), dtype) in parts.iter().zip(&self.0.shapes).zip(&self.0.dtypes) {
            let t = Tensor::from_shape(shape, part)?;
            let t = if *dtype == InputDtype::F32 { t } else { t.cast_to_dt(datum_type(*dtype))?.into_owned() };
            out.push(t.into_tvalue());
        }
        Ok(out)
    }
}

fn datum_type(d: InputDtype) -> DatumType {
    match d {
        InputDtype::F32 => DatumType::F32,
        InputDtype::F16 => DatumType::F16,
        InputDtype::I64 => DatumType::I64,
        InputDtype::I32 => DatumType::I32,
        InputDtype::U8 => DatumType::U8,
    }
}

struct TractSession {
    id: BackendId,
    variant: Variant,
    state: TypedSimpleState,
    plan: Arc<TypedRunnableModel>,
    stateful: bool,
    inputs: Inputs,
    input: Option<TVec<TValue>>,
    outputs: TVec<TValue>,
    output_names: Vec<String>,
}

impl Session for TractSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        self.input =
            Some(self.inputs.tensors(input).map_err(|e| BackendError::engine(self.id, "copying the input", e))?);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let input = self.input.clone().ok_or_else(|| BackendError::engine(self.id, "running", "no input was set"))?;
        if self.stateful {
            self.state = self.plan.spawn().map_err(|e| BackendError::engine(self.id, "creating the run state", e))?;
        }
        self.outputs = self.state.run(input).map_err(|e| BackendError::engine(self.id, "running", e))?;
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        tract_output(self.id, self.outputs.first())
    }

    fn outputs(&self) -> Result<Vec<crate::backend::OutputTensor>, BackendError> {
        tract_outputs(self.id, &self.outputs, &self.output_names)
    }

    fn layer_evidence(&self) -> Vec<crate::backend::LayerEvidence> {
        super::plan::evidence(self.plan.model(), &self.variant)
    }

    /// Each node of the optimized plan, timed around tract's own evaluation of it.
    fn profile_run(&mut self) -> Option<Result<Vec<crate::backend::OpTime>, BackendError>> {
        let Some(input) = self.input.clone() else {
            return Some(Err(BackendError::engine(self.id, "profiling", "no input was set")));
        };
        if self.stateful {
            match self.plan.spawn() {
                Ok(s) => self.state = s,
                Err(e) => return Some(Err(BackendError::engine(self.id, "creating the run state", e))),
            }
        }
        let mut times = Vec::new();
        let run = self.state.run_plan_with_eval(input, |ctx, state, node, inputs| {
            let started = std::time::Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
            times.push(crate::backend::OpTime {
                name: node.name.clone(),
                op: node.op().name().to_string(),
                ns: started.elapsed().as_nanos() as u64,
            });
            out
        });
        Some(
            run.map(|outputs| {
                self.outputs = outputs;
                times
            })
            .map_err(|e| BackendError::engine(self.id, "profiling", e)),
        )
    }
}

/// Every output of a tract session's last run, named as the graph names them.
pub(super) fn tract_outputs(
    backend: BackendId,
    outputs: &[TValue],
    names: &[String],
) -> Result<Vec<crate::backend::OutputTensor>, BackendError> {
    if outputs.is_empty() {
        return Err(BackendError::engine(backend, "reading the output", "the model has not run"));
    }
    outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            Ok(crate::backend::OutputTensor {
                name: names.get(i).cloned().unwrap_or_default(),
                shape: Some(o.shape().to_vec()),
                values: tract_output(backend, Some(o))?,
            })
        })
        .collect()
}

/// The last run's output tensor of a tract session as f32 values.
pub(super) fn tract_output(backend: BackendId, out: Option<&TValue>) -> Result<Vec<f32>, BackendError> {
    let out = out.ok_or_else(|| BackendError::engine(backend, "reading the output", "the model has not run"))?;
    out.to_plain_array_view::<f32>()
        .map(|v| v.iter().copied().collect())
        .map_err(|e| BackendError::engine(backend, "reading the output", e))
}
