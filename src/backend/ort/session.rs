//! ONNX Runtime sessions: the variant's ONNX file, optimized by ONNX Runtime for the CPU, with
//! each run's inputs made apart from the run (the copy is timed on its own).

use std::cell::OnceCell;
use std::path::Path;
use std::time::Instant;

use ort::session::{Session as OrtSession, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::runtime::{self, Runtime};
use crate::backend::onnx_artifact::InputLayout;
use crate::backend::{BackendError, BackendId, LayerEvidence, Prepared, Session};
use crate::model::onnx_file::InputDtype;
use crate::quant::Variant;

const ID: BackendId = BackendId::ORT_CPU;

fn runtime_or_err(stage: &'static str) -> Result<&'static Runtime, BackendError> {
    runtime::get().map_err(|why| BackendError::engine(ID, stage, why))
}

/// Builds a session of the file with ONNX Runtime's graph checks, optimizations off: unknown ops
/// and a graph ONNX Runtime refuses fail here; nothing runs.
pub(super) fn check(onnx: &Path, batch: usize) -> Result<(), BackendError> {
    let runtime = runtime_or_err("loading the ONNX model")?;
    Inputs::of(onnx, batch)?;
    runtime::builder(runtime)
        .and_then(|b| {
            b.with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable).map_err(Into::into)
        })
        .and_then(|mut b| b.commit_from_file(onnx))
        .map(drop)
        .map_err(|e| BackendError::engine(ID, "loading the ONNX model", e))
}

/// The variant's ONNX file as an ONNX Runtime session for `batch` items per run.
pub(super) fn prepare(variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
    let runtime = runtime_or_err("preparing")?;
    let inputs = Inputs::of(variant.ort_onnx(), batch)?;
    let session = runtime::builder(runtime)
        .and_then(|mut b| b.commit_from_file(variant.ort_onnx()))
        .map_err(|e| BackendError::engine(ID, "loading and optimizing the ONNX model", e))?;
    let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    if outputs.is_empty() {
        return Err(BackendError::engine(ID, "loading the ONNX model", "the model has no output"));
    }
    let artifact_bytes = crate::backend::artifact_bytes(ID, variant.ort_onnx())?;
    Ok(Prepared {
        session: Box::new(OrtRun {
            session,
            variant: variant.clone(),
            inputs,
            outputs,
            input: Vec::new(),
            input_copy_ns: None,
            last: Vec::new(),
            observed: OnceCell::new(),
        }),
        artifact: variant.ort_onnx().to_path_buf(),
        artifact_bytes,
        // What ran is read from ONNX Runtime's profile after prepare ([`Session::observed_summary`]).
        evidence: runtime::settings(runtime),
        layers: Vec::new(),
        // ONNX Runtime does not say how many bytes its (pre-packed) weights hold.
        weights_bytes: None,
        heap_not_covered: Some("ONNX Runtime's own allocations (its C++ heap and arena)"),
    })
}

/// A model's inputs at a batch size (see [`InputLayout`]), as ONNX Runtime tensors.
pub(super) struct Inputs(InputLayout);

impl Inputs {
    pub(super) fn of(onnx: &Path, batch: usize) -> Result<Inputs, BackendError> {
        InputLayout::of(onnx, batch).map(Inputs).map_err(|e| BackendError::engine(ID, "reading the inputs", e))
    }

    /// One batch of dataset items as one ONNX Runtime tensor per input, of its element type.
    pub(super) fn values(&self, values: &[f32]) -> Result<Vec<(String, DynValue)>, String> {
        let parts = self.0.split(values)?;
        let mut out = Vec::with_capacity(parts.len());
        for (((part, name), shape), dtype) in
            parts.into_iter().zip(&self.0.names).zip(&self.0.shapes).zip(&self.0.dtypes)
        {
            let shape = shape.clone();
            let value: Result<DynValue, ort::Error> = match dtype {
                InputDtype::F32 => Tensor::from_array((shape, part)).map(|t| t.into_dyn()),
                InputDtype::F16 => {
                    Tensor::from_array((shape, part.into_iter().map(half::f16::from_f32).collect::<Vec<_>>()))
                        .map(|t| t.into_dyn())
                }
                InputDtype::I64 => Tensor::from_array((shape, part.into_iter().map(|v| v as i64).collect::<Vec<_>>()))
                    .map(|t| t.into_dyn()),
                InputDtype::I32 => Tensor::from_array((shape, part.into_iter().map(|v| v as i32).collect::<Vec<_>>()))
                    .map(|t| t.into_dyn()),
                InputDtype::U8 => Tensor::from_array((shape, part.into_iter().map(|v| v as u8).collect::<Vec<_>>()))
                    .map(|t| t.into_dyn()),
            };
            out.push((name.clone(), value.map_err(|e| e.to_string())?));
        }
        Ok(out)
    }

    /// Zeros of every input's shape and type: what the observation runs (the kernels ONNX
    /// Runtime picks do not depend on the values).
    pub(super) fn zeros(&self) -> Result<Vec<(String, DynValue)>, String> {
        self.values(&vec![0.0; self.0.batch * self.0.sizes.iter().sum::<usize>()])
    }
}

/// The float values of an output, whatever float type it is.
pub(super) fn f32_values(value: &DynValue) -> Result<Vec<f32>, String> {
    shaped_values(value).map(|(_, v)| v)
}

/// An output's shape and its values as f32, whatever float type it is.
pub(super) fn shaped_values(value: &DynValue) -> Result<(Vec<usize>, Vec<f32>), String> {
    let dims = |s: &[i64]| s.iter().map(|&d| d.max(0) as usize).collect::<Vec<usize>>();
    if let Ok((s, v)) = value.try_extract_tensor::<f32>() {
        return Ok((dims(s), v.to_vec()));
    }
    if let Ok((s, v)) = value.try_extract_tensor::<half::f16>() {
        return Ok((dims(s), v.iter().map(|x| x.to_f32()).collect()));
    }
    if let Ok((s, v)) = value.try_extract_tensor::<u8>() {
        return Ok((dims(s), v.iter().map(|&x| f32::from(x)).collect()));
    }
    if let Ok((s, v)) = value.try_extract_tensor::<i8>() {
        return Ok((dims(s), v.iter().map(|&x| f32::from(x)).collect()));
    }
    Err(format!("an output of type {:?}, not a float tensor", value.dtype()))
}

/// Runs `session` on `inputs`, returning the named outputs' values in order.
pub(super) fn run_named(
    session: &mut OrtSession,
    inputs: &[(String, DynValue)],
    names: &[String],
) -> Result<Vec<DynValue>, String> {
    let feed: Vec<(&str, SessionInputValue<'_>)> =
        inputs.iter().map(|(n, v)| (n.as_str(), SessionInputValue::from(v))).collect();
    let mut outputs = session.run(feed).map_err(|e| e.to_string())?;
    names
        .iter()
        .map(|n| outputs.remove(n.as_str()).ok_or_else(|| format!("ONNX Runtime returned no output {n}")))
        .collect()
}

struct OrtRun {
    session: OrtSession,
    variant: Variant,
    inputs: Inputs,
    /// The model's outputs, in order.
    outputs: Vec<String>,
    input: Vec<(String, DynValue)>,
    input_copy_ns: Option<u64>,
    last: Vec<DynValue>,
    /// What ONNX Runtime ran, read once from its profile.
    observed: OnceCell<super::profile::Observation>,
}

impl OrtRun {
    fn observation(&self) -> &super::profile::Observation {
        self.observed.get_or_init(|| super::profile::observe(&self.variant, &self.inputs))
    }
}

impl Session for OrtRun {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        let started = Instant::now();
        self.input = self.inputs.values(input).map_err(|e| BackendError::engine(ID, "copying the input", e))?;
        self.input_copy_ns = Some(started.elapsed().as_nanos() as u64);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        if self.input.is_empty() {
            return Err(BackendError::engine(ID, "running", "no input was set"));
        }
        self.last = run_named(&mut self.session, &self.input, &self.outputs)
            .map_err(|e| BackendError::engine(ID, "running", e))?;
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        let last =
            self.last.first().ok_or_else(|| BackendError::engine(ID, "reading the output", "the model has not run"))?;
        f32_values(last).map_err(|e| BackendError::engine(ID, "reading the output", e))
    }

    fn outputs(&self) -> Result<Vec<crate::backend::OutputTensor>, BackendError> {
        if self.last.is_empty() {
            return Err(BackendError::engine(ID, "reading the output", "the model has not run"));
        }
        self.last
            .iter()
            .zip(&self.outputs)
            .map(|(v, name)| {
                let (shape, values) =
                    shaped_values(v).map_err(|e| BackendError::engine(ID, "reading the output", e))?;
                Ok(crate::backend::OutputTensor { name: name.clone(), shape: Some(shape), values })
            })
            .collect()
    }

    /// Making ONNX Runtime's input tensors copies the batch: timed apart from the run.
    fn input_copy_ns(&self) -> Option<u64> {
        self.input_copy_ns
    }

    fn layer_evidence(&self) -> Vec<LayerEvidence> {
        self.observation().layers.clone()
    }

    fn observed_summary(&self) -> Option<String> {
        Some(self.observation().summary.clone())
    }
}
