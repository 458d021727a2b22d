//! tract: the variant's ONNX file, optimized for a concrete input shape, on the CPU
//! (`tract-cpu`) or handed to tract-cuda's runtime (`tract-cuda`, feature `cuda`).
//!
//! Everything qbench knows about tract lives here: what it can run (the capability rules
//! below: the ops its ONNX registry implements, the datum types it has), how a session is
//! prepared (`session.rs`, `cuda.rs`), intermediate values for calibration and localization
//! (`probe.rs`), and what it made of each layer, read from the optimized plan (`plan.rs`).

#[cfg(feature = "cuda")]
mod cuda;
mod plan;
mod probe;
mod session;

use super::{
    Backend, BackendError, BackendId, Capture, DeviceKind, LayerSession, ModelQuery, Prepared, Realization,
    Registration,
};
use crate::model::ModelKind;
use crate::quant::{Plan, SchemeId, Variant};

impl BackendId {
    pub const TRACT_CPU: BackendId = BackendId("tract-cpu");
    pub const TRACT_CUDA: BackendId = BackendId("tract-cuda");
}

pub static CPU: Registration = Registration {
    name: "tract-cpu",
    description: "tract (ONNX, optimized with into_optimized, CPU); loads the exported .onnx file",
    device: DeviceKind::Cpu,
    create: |_| Ok(Box::new(Tract { id: BackendId::TRACT_CPU, cuda: None })),
    set_threads: session::set_threads,
    engine_crate: "tract-onnx",
    runtime_version: || None,
};

pub static CUDA: Registration = Registration {
    name: "tract-cuda",
    description: "tract on a CUDA GPU (feature cuda, tract-cuda): the ONNX file through tract's CUDA transform (cuBLAS, NVRTC kernels); ops it has no kernel for stay on the CPU, as the evidence lists",
    device: DeviceKind::Cuda,
    create: create_cuda,
    set_threads: session::set_threads,
    engine_crate: "tract-onnx",
    runtime_version: || None,
};

#[cfg(feature = "cuda")]
fn create_cuda(ordinal: usize) -> Result<Box<dyn Backend>, &'static str> {
    Ok(Box::new(Tract { id: BackendId::TRACT_CUDA, cuda: Some(ordinal) }))
}

#[cfg(not(feature = "cuda"))]
fn create_cuda(_ordinal: usize) -> Result<Box<dyn Backend>, &'static str> {
    Err(super::gpu::BUILD_HINT)
}

/// tract on the CPU (`cuda: None`) or through tract-cuda on the process's GPU.
struct Tract {
    id: BackendId,
    cuda: Option<usize>,
}

impl Tract {
    /// How tract runs one layer of this scheme, from what its ONNX import and optimizer do:
    /// QDQ and dequantizing graphs are folded into f32 constants; DynamicQuantizeLinear with
    /// MatMulInteger/ConvInteger lowers to its int8 kernels (on the CPU, also under tract-cuda,
    /// whose transform moves only f32/f16 and Q4_0 matmuls to the GPU).
    fn layer(&self, scheme: SchemeId) -> Realization {
        match scheme {
            SchemeId::F32 => Realization::Native,
            SchemeId::Bf16 => Realization::Unsupported(
                "tract 0.23 has no bfloat16 datum type, so it cannot load BFLOAT16 ONNX tensors".into(),
            ),
            SchemeId::Int8Dynamic | SchemeId::Int8Static(_) if self.cuda.is_some() => Realization::CpuFallback,
            SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => Realization::Native,
            SchemeId::F16 | SchemeId::Int8Weights { .. } | SchemeId::Int4Group { .. } | SchemeId::Ggml(_) => {
                Realization::Emulated
            }
        }
    }
}

impl Backend for Tract {
    fn id(&self) -> BackendId {
        self.id
    }

    fn capability(&self, model: ModelQuery<'_>, plan: &Plan, _batch: usize) -> Realization {
        #[cfg(feature = "cuda")]
        if let Some(ordinal) = self.cuda {
            if let Some(why) = cuda::unavailable(ordinal) {
                return Realization::Unsupported(why);
            }
        }
        match model.kind {
            ModelKind::Bert { .. } => {
                return Realization::Unsupported(
                    "tract runs ONNX graphs; a BERT safetensors checkpoint runs on candle (candle-transformers)".into(),
                )
            }
            ModelKind::GgufLm { .. } => {
                return Realization::Unsupported("tract runs ONNX graphs; a GGUF language model runs on candle (candle-transformers' quantized llama, qwen2 and qwen3)".into())
            }
            ModelKind::Zoo { .. } | ModelKind::Onnx { .. } => {}
        }
        if let Some(loaded) = model.loaded {
            let register = tract_onnx::onnx().op_register;
            if let Some(op) = loaded.onnx_ops().into_iter().find(|op| !register.0.contains_key(&op.op_type)) {
                return Realization::Unsupported(format!(
                    "node \"{}\" uses op {}, which tract does not implement; replace the op when exporting (e.g. a different opset or operator), or keep this model out of the suite",
                    op.node,
                    op.describe()
                ));
            }
        }
        // What each layer becomes (a zoo export or a rewritten graph rounds only the layers).
        plan.layer_schemes().into_iter().fold(Realization::Native, |acc, s| acc.weaker(self.layer(s)))
    }

    fn is_reference_for(&self, model: &ModelKind) -> bool {
        self.cuda.is_none() && matches!(model, ModelKind::Onnx { .. })
    }

    /// A zoo model too: tract runs its exported ONNX graph, in f32 on the CPU.
    fn computes_exact_f32(&self, model: &ModelKind) -> bool {
        self.cuda.is_none() && matches!(model, ModelKind::Onnx { .. } | ModelKind::Zoo { .. })
    }

    fn check_model(&self, model_file: &std::path::Path, batch: usize) -> Result<(), BackendError> {
        session::check(model_file, batch, self.id)
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        match self.cuda {
            None => session::prepare(variant, batch, self.id),
            #[cfg(feature = "cuda")]
            Some(ordinal) => cuda::prepare(variant, batch, self.id, ordinal),
            #[cfg(not(feature = "cuda"))]
            Some(_) => Err(BackendError::engine(self.id, "preparing", super::gpu::BUILD_HINT)),
        }
    }

    fn layer_session(
        &self,
        variant: &Variant,
        batch: usize,
        capture: Capture,
    ) -> Result<Box<dyn LayerSession>, BackendError> {
        if self.cuda.is_some() {
            return Err(BackendError::engine(
                self.id,
                "capturing layer values",
                "per-layer localization reads intermediate values on the CPU engines: it runs on the tract-cpu case of the same variant",
            ));
        }
        probe::layers(variant, batch, self.id, capture)
    }
}
