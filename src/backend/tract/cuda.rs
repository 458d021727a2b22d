//! tract on a CUDA GPU: the variant's ONNX file, decluttered, then prepared by tract-cuda's
//! runtime (its CUDA transform moves the ops it has kernels for to the GPU, then optimizes).
//! The run takes host tensors: the copy to the device and back is part of it, as tract-cuda
//! inserts it in the graph, and every run ends with a stream synchronize.

use std::sync::OnceLock;

use tract_onnx::prelude::*;

use super::session::{tract_output, Inputs};
use crate::backend::{BackendError, BackendId, Prepared, Session};
use crate::quant::Variant;

/// tract-cuda's runtime, registered by linking the crate.
fn runtime() -> Option<&'static dyn Runtime> {
    // Naming an item keeps the crate, and so its runtime registration, in the binary.
    let _ = std::any::type_name::<tract_cuda::CudaTransform>();
    runtime_for_name("cuda").ok().flatten()
}

/// Why tract-cuda cannot run on `cuda:ordinal` here, if it cannot: no usable GPU (the probe's
/// reason), another device than the first, or tract-cuda's own check (cuDNN, NVRTC).
pub(super) fn unavailable(ordinal: usize) -> Option<String> {
    static CHECK: OnceLock<Option<String>> = OnceLock::new();
    if let Err(why) = crate::backend::gpu::probe(ordinal) {
        return Some(why.to_string());
    }
    if ordinal != 0 {
        // tract-cuda 0.23 creates its context on device 0, whatever the caller wants.
        return Some("tract-cuda 0.23 always runs on the first visible GPU: to benchmark another, run with CUDA_VISIBLE_DEVICES=<its index> and device = \"cuda:0\"".into());
    }
    CHECK
        .get_or_init(|| {
            let Some(runtime) = runtime() else {
                return Some("tract-cuda's runtime is not registered in this build".into());
            };
            let checked = runtime.check().err()?;
            Some(format!("tract-cuda cannot run here: {checked:#}").replace('\n', " "))
        })
        .clone()
}

pub(super) fn prepare(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    ordinal: usize,
) -> Result<Prepared, BackendError> {
    let runtime =
        runtime().ok_or_else(|| BackendError::engine(id, "preparing", "tract-cuda's runtime is not registered"))?;
    let inputs = Inputs::of(&variant.onnx, batch).map_err(|e| BackendError::engine(id, "reading the inputs", e))?;
    let mut weights_bytes = None;
    let runnable = tract_onnx::onnx()
        .model_for_path(&variant.onnx)
        .and_then(|m| inputs.set_facts(m))
        .and_then(|m| m.into_typed())
        .and_then(|mut m| {
            m.declutter()?;
            weights_bytes = Some(super::plan::constant_bytes(&m));
            runtime.prepare(m)
        })
        .map_err(|e| BackendError::engine(id, "loading the ONNX model and moving it to the GPU", e))?;
    let device = format!("cuda:{ordinal}");
    let evidence = match runnable.typed_plan() {
        Some(plan) => placement(plan.model()),
        None => "tract-cuda (no plan to inspect)".to_string(),
    };
    let state = runnable.spawn().map_err(|e| BackendError::engine(id, "creating the run state", e))?;
    let artifact_bytes = crate::backend::artifact_bytes(id, &variant.onnx)?;
    Ok(Prepared {
        session: Box::new(TractCudaSession {
            id,
            variant: variant.clone(),
            device,
            runnable,
            state,
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
    format!("{} [{gpu} ops on the GPU; on the CPU: {cpu_note}]", super::plan::op_summary(model))
}

struct TractCudaSession {
    id: BackendId,
    variant: Variant,
    /// `cuda:N`: where the GPU ops run.
    device: String,
    /// Owns the plan the state runs.
    runnable: Box<dyn Runnable>,
    state: Box<dyn State>,
    inputs: Inputs,
    input: Option<TVec<TValue>>,
    outputs: TVec<TValue>,
    output_names: Vec<String>,
}

impl Session for TractCudaSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        self.input =
            Some(self.inputs.tensors(input).map_err(|e| BackendError::engine(self.id, "copying the input", e))?);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let id = self.id;
        let input = self.input.clone().ok_or_else(|| BackendError::engine(id, "running", "no input was set"))?;
        let mut outputs = self.state.run(input).map_err(|e| BackendError::engine(id, "running", e))?;
        // The output's copy to the host already waits for the GPU; synchronizing as well keeps
        // the clock honest should a model's output ever stay on the device.
        tract_cuda::with_cuda_stream(|s| s.synchronize().map_err(TractError::from))
            .map_err(|e| BackendError::engine(id, "synchronizing", e))?;
        self.outputs = std::mem::take(&mut outputs);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        tract_output(self.id, self.outputs.first())
    }

    fn outputs(&self) -> Result<Vec<crate::backend::OutputTensor>, BackendError> {
        super::session::tract_outputs(self.id, &self.outputs, &self.output_names)
    }

    fn layer_evidence(&self) -> Vec<crate::backend::LayerEvidence> {
        match self.runnable.typed_plan() {
            Some(plan) => {
                super::plan::layer_evidence(plan.model(), &self.variant, &self.device, &runs_on_gpu, &self.device)
            }
            None => Vec::new(),
        }
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
