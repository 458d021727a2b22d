//! tract on a CUDA GPU: the variant's ONNX file, decluttered, then prepared by tract-cuda's
//! runtime (its CUDA transform moves the ops it has kernels for to the GPU, then optimizes).
//! The run takes host tensors: the copy to the device and back is part of it, as tract-cuda
//! inserts it in the graph, and every run ends with a stream synchronize.

use tract_onnx::prelude::*;

use super::tract_cpu::{constant_bytes, op_summary, Inputs};
use super::{Backend, BackendError, BackendId, LayerSession, Prepared, Session};
use crate::quant::Variant;

pub struct TractCuda;

const ID: BackendId = BackendId::TractCuda;

/// tract-cuda's runtime, registered by linking the crate.
pub(super) fn runtime() -> Option<&'static dyn Runtime> {
    // Naming an item keeps the crate, and so its runtime registration, in the binary.
    let _ = std::any::type_name::<tract_cuda::CudaTransform>();
    runtime_for_name("cuda").ok().flatten()
}

impl Backend for TractCuda {
    fn id(&self) -> BackendId {
        ID
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        let runtime =
            runtime().ok_or_else(|| BackendError::engine(ID, "preparing", "tract-cuda's runtime is not registered"))?;
        let inputs = Inputs::of(&variant.onnx, batch).map_err(|e| BackendError::engine(ID, "reading the inputs", e))?;
        let mut weights_bytes = None;
        let runnable = tract_onnx::onnx()
            .model_for_path(&variant.onnx)
            .and_then(|m| inputs.set_facts(m))
            .and_then(|m| m.into_typed())
            .and_then(|mut m| {
                m.declutter()?;
                weights_bytes = Some(constant_bytes(&m));
                runtime.prepare(m)
            })
            .map_err(|e| BackendError::engine(ID, "loading the ONNX model and moving it to the GPU", e))?;
        let evidence = match runnable.typed_plan() {
            Some(plan) => placement(plan.model()),
            None => "tract-cuda (no plan to inspect)".to_string(),
        };
        let state = runnable.spawn().map_err(|e| BackendError::engine(ID, "creating the run state", e))?;
        let artifact_bytes = std::fs::metadata(&variant.onnx)
            .map(|m| m.len())
            .map_err(|e| BackendError::engine(ID, "reading the artifact size", e))?;
        Ok(Prepared {
            session: Box::new(TractCudaSession { _runnable: runnable, state, inputs, input: None, output: None }),
            artifact: variant.onnx.clone(),
            artifact_bytes,
            evidence,
            weights_bytes,
        })
    }

    fn layer_session(&self, _variant: &Variant, _batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        Err(BackendError::engine(
            ID,
            "capturing layer outputs",
            "per-layer localization reads intermediate values on the CPU engines: it runs on the tract-cpu case of the same variant",
        ))
    }
}

/// Whether an op of tract-cuda's translated model runs on the GPU, by its name: tract-cuda 0.23
/// names its kernels `Cuda…` (and `ConvCudnn`), tract-gpu's shared ops `Gpu…` or `Cuda…` (its
/// backend name first), and the copies between host and device `DeviceSync…`. Everything else is
/// a tract CPU op the transform left in place.
fn runs_on_gpu(op_name: &str) -> bool {
    ["Cuda", "Gpu", "DeviceSync"].iter().any(|p| op_name.starts_with(p)) || op_name == "ConvCudnn"
}

/// Which ops run on the GPU and which stayed on the CPU, after the op summary.
fn placement(model: &TypedModel) -> String {
    let (gpu, mut cpu): (Vec<String>, Vec<String>) =
        model.nodes().iter().map(|n| n.op.name().to_string()).partition(|n| runs_on_gpu(n));
    cpu.retain(|n| n != "Source" && n != "Const");
    cpu.sort();
    cpu.dedup();
    let gpu = gpu.len();
    let cpu_note = if cpu.is_empty() { "none".to_string() } else { cpu.join(", ") };
    format!("{} [{gpu} ops on the GPU; on the CPU: {cpu_note}]", op_summary(model))
}

struct TractCudaSession {
    /// Owns the plan the state runs.
    _runnable: Box<dyn Runnable>,
    state: Box<dyn State>,
    inputs: Inputs,
    input: Option<TVec<TValue>>,
    output: Option<TValue>,
}

impl Session for TractCudaSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        self.input = Some(self.inputs.tensors(input).map_err(|e| BackendError::engine(ID, "copying the input", e))?);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let input = self.input.clone().ok_or_else(|| BackendError::engine(ID, "running", "no input was set"))?;
        let mut outputs = self.state.run(input).map_err(|e| BackendError::engine(ID, "running", e))?;
        // The output's copy to the host already waits for the GPU; synchronizing as well keeps
        // the clock honest should a model's output ever stay on the device.
        tract_cuda::with_cuda_stream(|s| s.synchronize().map_err(TractError::from))
            .map_err(|e| BackendError::engine(ID, "synchronizing", e))?;
        self.output = Some(outputs.remove(0));
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::tract_cpu::tract_output(ID, self.output.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::runs_on_gpu;

    #[test]
    fn gpu_ops_are_told_from_cpu_ops_by_name() {
        // Names as tract-cuda 0.23.9 and tract-gpu 0.23.9 give them.
        for gpu in ["CudaConv", "ConvCudnn", "CudaGgmlGemm", "CudaAdd", "GpuConcat", "GpuSlice", "DeviceSyncToHost"] {
            assert!(runs_on_gpu(gpu), "{gpu}");
        }
        for cpu in ["OptMatMul", "DynamicQuantizeLinear", "EinSum", "Softmax", "Conv", "Source"] {
            assert!(!runs_on_gpu(cpu), "{cpu}");
        }
    }
}
