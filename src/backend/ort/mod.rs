//! ONNX Runtime on the CPU (`ort-cpu`, feature `ort`): the variant's ONNX file, as most teams
//! that ship an ONNX model deploy it.
//!
//! The engine is a shared library loaded at run time (the `ort` crate's `load-dynamic`): the one
//! PyPI's `onnxruntime` wheel ships, which `scripts/ort-env.sh` fetches and names in
//! `ORT_DYLIB_PATH`. Without it the backend says so and skips its cases.
//!
//! Everything qbench knows about ONNX Runtime lives here: loading the library and its settings
//! (`runtime.rs`), preparing and running a session (`session.rs`), what it ran, read from its own
//! profile and optimized model (`profile.rs`), and intermediate values (`probe.rs`).

#[cfg(feature = "ort")]
mod probe;
#[cfg(feature = "ort")]
mod profile;
#[cfg(feature = "ort")]
mod runtime;
#[cfg(feature = "ort")]
mod session;

use super::{Backend, BackendId, DeviceKind, Registration};
#[cfg(feature = "ort")]
use super::{BackendError, Capture, LayerSession, ModelQuery, Prepared, Realization};
#[cfg(feature = "ort")]
use crate::model::ModelKind;
#[cfg(feature = "ort")]
use crate::quant::{Plan, SchemeId, Variant};

/// The environment variable naming ONNX Runtime's shared library (the `ort` crate's own).
pub const ENV_VAR: &str = "ORT_DYLIB_PATH";

/// How to get a qbench that has the backend.
#[cfg(not(feature = "ort"))]
const BUILD_HINT: &str = "this qbench was built without ONNX Runtime: build with `--features ort` and run `. scripts/ort-env.sh` (it fetches the pinned onnxruntime wheel from PyPI and sets ORT_DYLIB_PATH)";

impl BackendId {
    pub const ORT_CPU: BackendId = BackendId("ort-cpu");
}

pub static CPU: Registration = Registration {
    name: "ort-cpu",
    description: "ONNX Runtime (CPU execution provider, all graph optimizations; feature ort, library from `. scripts/ort-env.sh`); loads the exported .onnx file",
    device: DeviceKind::Cpu,
    create,
    set_threads,
    engine_crate: "ort",
    runtime_version,
};

#[cfg(feature = "ort")]
fn create(_: usize) -> Result<Box<dyn Backend>, &'static str> {
    Ok(Box::new(Ort))
}

#[cfg(not(feature = "ort"))]
fn create(_: usize) -> Result<Box<dyn Backend>, &'static str> {
    Err(BUILD_HINT)
}

#[cfg(feature = "ort")]
fn set_threads(threads: usize) {
    runtime::set_threads(threads)
}

#[cfg(not(feature = "ort"))]
fn set_threads(_: usize) {}

/// ONNX Runtime's own version, once its library is loaded (`None` when it cannot be).
#[cfg(feature = "ort")]
fn runtime_version() -> Option<String> {
    runtime::get().ok().map(|r| format!("ONNX Runtime {}", r.version))
}

#[cfg(not(feature = "ort"))]
fn runtime_version() -> Option<String> {
    None
}

/// ONNX Runtime's CPU execution provider.
#[cfg(feature = "ort")]
struct Ort;

#[cfg(feature = "ort")]
impl Ort {
    /// How ONNX Runtime's CPU provider is expected to run one layer of this scheme: its
    /// optimizer folds casts of constant weights (f16) into f32 constants, keeps a
    /// `DequantizeLinear` of constant weights and runs it on every call (weight-only int8 and
    /// int4), and has integer kernels for dynamic and static int8 (`MatMulInteger`,
    /// `ConvInteger`, `DynamicQuantizeMatMul`, `QLinearConv`). The record's realization is what
    /// its profile shows instead.
    fn layer(scheme: SchemeId) -> Realization {
        match scheme {
            SchemeId::F32 | SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => Realization::Native,
            SchemeId::F16
            | SchemeId::Bf16
            | SchemeId::Int8Weights { .. }
            | SchemeId::Int4Group { .. }
            | SchemeId::Ggml(_) => Realization::Emulated,
        }
    }
}

#[cfg(feature = "ort")]
impl Backend for Ort {
    fn id(&self) -> BackendId {
        BackendId::ORT_CPU
    }

    /// ONNX graphs (a zoo model's exported one too) run in f32 by MLAS's kernels on the CPU;
    /// ONNX Runtime's default graph optimizations fuse operators, they approximate nothing.
    fn computes_exact_f32(&self, model: &ModelKind) -> bool {
        matches!(model, ModelKind::Onnx { .. } | ModelKind::Zoo { .. })
    }

    fn capability(&self, model: ModelQuery<'_>, plan: &Plan, _batch: usize) -> Realization {
        match model.kind {
            ModelKind::Bert { .. } => {
                return Realization::Unsupported(
                    "ONNX Runtime runs ONNX graphs; a BERT safetensors checkpoint runs on candle (candle-transformers)"
                        .into(),
                )
            }
            ModelKind::GgufLm { .. } => {
                return Realization::Unsupported(
                    "ONNX Runtime runs ONNX graphs; a GGUF language model runs on candle".into(),
                )
            }
            ModelKind::Zoo { .. } | ModelKind::Onnx { .. } => {}
        }
        if let Err(why) = runtime::get() {
            return Realization::Unsupported(why.clone());
        }
        plan.layer_schemes().into_iter().fold(Realization::Native, |acc, s| acc.weaker(Self::layer(s)))
    }

    fn check_model(&self, model_file: &std::path::Path, batch: usize) -> Result<(), BackendError> {
        session::check(model_file, batch)
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        session::prepare(variant, batch)
    }

    fn layer_session(
        &self,
        variant: &Variant,
        batch: usize,
        capture: Capture,
    ) -> Result<Box<dyn LayerSession>, BackendError> {
        probe::layers(variant, batch, capture)
    }
}
