//! Backends: an inference engine on a device. Each prepares a variant's artifact
//! into a [`Session`] outside any timed region; only [`Session::run`] is timed.

mod candle_bert;
mod candle_cpu;
#[cfg(feature = "cuda")]
mod candle_cuda;
mod candle_lm;
#[cfg(feature = "candle-onnx")]
mod candle_onnx;
pub mod gpu;
pub(crate) mod tract_cpu;
#[cfg(feature = "cuda")]
mod tract_cuda;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::quant::Variant;

/// The closed set of backends qbench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendId {
    CandleCpu,
    TractCpu,
    CandleCuda,
    TractCuda,
}

/// The engine behind a backend, whatever its device: what decides which models it can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Candle,
    Tract,
}

impl BackendId {
    pub const ALL: &'static [BackendId] =
        &[BackendId::CandleCpu, BackendId::TractCpu, BackendId::CandleCuda, BackendId::TractCuda];

    pub fn name(self) -> &'static str {
        match self {
            BackendId::CandleCpu => "candle-cpu",
            BackendId::TractCpu => "tract-cpu",
            BackendId::CandleCuda => "candle-cuda",
            BackendId::TractCuda => "tract-cuda",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|b| b.name() == s)
    }

    pub fn names() -> &'static [&'static str] {
        &["candle-cpu", "tract-cpu", "candle-cuda", "tract-cuda"]
    }

    pub fn engine(self) -> Engine {
        match self {
            BackendId::CandleCpu | BackendId::CandleCuda => Engine::Candle,
            BackendId::TractCpu | BackendId::TractCuda => Engine::Tract,
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, BackendId::CandleCuda | BackendId::TractCuda)
    }

    /// The CPU backend of the same engine.
    pub fn cpu(self) -> BackendId {
        match self.engine() {
            Engine::Candle => BackendId::CandleCpu,
            Engine::Tract => BackendId::TractCpu,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BackendId::CandleCpu => "candle (CPU, gemm crate kernels, GGML QMatMul): zoo models as candle-nn modules (safetensors or GGUF), BERT checkpoints and GGUF language models through candle-transformers, ONNX files through candle-onnx (feature candle-onnx)",
            BackendId::TractCpu => "tract (ONNX, optimized with into_optimized, CPU); loads the exported .onnx file",
            BackendId::CandleCuda => "candle on a CUDA GPU (feature cuda): zoo models as candle-nn modules, BERT checkpoints and GGUF language models through candle-transformers; f16/bf16 on cuBLAS, GGML types on candle's QMatMul CUDA kernels (MMVQ/MMQ); the device is the suite's `device`",
            BackendId::TractCuda => "tract on a CUDA GPU (feature cuda, tract-cuda): the ONNX file through tract's CUDA transform (cuBLAS, NVRTC kernels); ops it has no kernel for stay on the CPU, as the evidence lists",
        }
    }

    /// Registration: the one place a backend id becomes an implementation.
    pub fn create(self) -> Box<dyn Backend> {
        match self {
            BackendId::CandleCpu => Box::new(candle_cpu::CandleCpu),
            BackendId::TractCpu => Box::new(tract_cpu::TractCpu),
            #[cfg(feature = "cuda")]
            BackendId::CandleCuda => Box::new(candle_cuda::CandleCuda),
            #[cfg(feature = "cuda")]
            BackendId::TractCuda => Box::new(tract_cuda::TractCuda),
            #[cfg(not(feature = "cuda"))]
            BackendId::CandleCuda | BackendId::TractCuda => Box::new(gpu::NotBuilt(self)),
        }
    }
}

/// An engine on a device.
pub trait Backend {
    fn id(&self) -> BackendId;
    /// Loads the variant's artifact and readies it for exactly `batch` items per run.
    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError>;
    /// Loads the variant so that each run returns the output of every weighted layer (after
    /// its bias, before any activation), in layer order, then the model's output (named
    /// [`MODEL_OUTPUT`]): for per-layer error localization.
    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError>;
}

/// The name [`LayerSession::run`] gives the model's output, after the layers'.
pub const MODEL_OUTPUT: &str = "(model output)";

/// A model whose runs return every weighted layer's output, then the model's.
pub trait LayerSession {
    /// Runs one batch (exactly the prepared batch size); `(layer, values)` in order, then
    /// `(MODEL_OUTPUT, values)`.
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError>;
}

/// A prepared session and the artifact it was prepared from.
pub struct Prepared {
    pub session: Box<dyn Session>,
    /// The file the backend loaded.
    pub artifact: PathBuf,
    pub artifact_bytes: u64,
    /// What the engine reports it will run, e.g. tract's optimized op names.
    pub evidence: String,
    /// Bytes of the weights as the engine holds them in memory (candle's tensors and GGML
    /// blocks; tract's constants, packed or not), where the engine can say.
    pub weights_bytes: Option<u64>,
}

/// A model ready to run on fixed-size batches.
pub trait Session {
    /// Copies one batch (NCHW f32, exactly `batch` items) into the engine's input.
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError>;
    /// Runs the model on the current input; this is the timed region.
    fn run(&mut self) -> Result<(), BackendError>;
    /// Logits of the last run, row-major `[batch, classes]`.
    fn output(&self) -> Result<Vec<f32>, BackendError>;
    /// Nanoseconds the last [`Session::set_input`] spent copying the batch to the device
    /// (synchronized), for backends that copy it apart from the run; `None` on the CPU, and
    /// where the copy is part of the run (tract-cuda).
    fn input_copy_ns(&self) -> Option<u64> {
        None
    }
    /// The session as a causal language model, when it is one.
    fn decoder(&mut self) -> Option<&mut dyn Decoder> {
        None
    }
}

/// A causal language model: what perplexity and generation speed need beyond [`Session`],
/// whose run is the prompt processing of one window of token ids per item.
pub trait Decoder {
    /// Forgets every position (the KV cache).
    fn reset(&mut self);
    /// Feeds `tokens` (`batch` rows of equal length, row-major) at positions
    /// `index_pos..index_pos + len`, after the positions fed before; returns the last
    /// position's logits, row-major `[batch, vocab]`.
    fn step(&mut self, tokens: &[u32], batch: usize, index_pos: usize) -> Result<Vec<f32>, BackendError>;
    fn vocab(&self) -> usize;
}

/// A backend failed: the message carries the engine's own words.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend}: {stage} failed: {message}")]
    Engine { backend: &'static str, stage: &'static str, message: String },
    #[error("{backend}: the model produced {count} NaN or infinite logits (first at item {item}); the model or its inputs are broken")]
    NonFinite { backend: &'static str, item: usize, count: usize },
}

impl BackendError {
    pub(crate) fn engine(backend: BackendId, stage: &'static str, e: impl std::fmt::Display) -> Self {
        // `{:#}` on anyhow-style errors (tract) prints the whole cause chain on one line.
        BackendError::Engine { backend: backend.name(), stage, message: format!("{e:#}").replace('\n', " ") }
    }
}

/// The last run's output tensor of a candle session as f32 values (any float dtype, any shape).
pub(crate) fn candle_output(backend: BackendId, out: Option<&candle_core::Tensor>) -> Result<Vec<f32>, BackendError> {
    let out = out.ok_or_else(|| BackendError::engine(backend, "reading the output", "the model has not run"))?;
    out.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| BackendError::engine(backend, "reading the output", e))
}

/// `cpu`, `cuda:N`: how a candle session's evidence names where its model runs.
pub(crate) fn candle_device_name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Runs `copy`, which puts a candle session's input on `device`, and on a GPU times it up to
/// a synchronize (candle's copies are asynchronous): `(value, Some(ns))` there, `(value, None)`
/// on the CPU, where there is no copy to time.
pub(crate) fn candle_copy_timed<T>(
    backend: BackendId,
    device: &candle_core::Device,
    copy: impl FnOnce() -> Result<T, BackendError>,
) -> Result<(T, Option<u64>), BackendError> {
    let started = std::time::Instant::now();
    let value = copy()?;
    if device.is_cpu() {
        return Ok((value, None));
    }
    device.synchronize().map_err(|e| BackendError::engine(backend, "copying the input", e))?;
    Ok((value, Some(started.elapsed().as_nanos() as u64)))
}

/// Sets the thread count every backend uses, once per process, before any engine
/// work: candle reads `RAYON_NUM_THREADS` (its pools are built on first use), tract
/// runs matrix products on its default executor.
pub fn configure_threads(threads: usize) {
    // Edition 2021: set_var is safe; qbench calls this from main's thread before
    // any engine thread pool exists.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    tract_cpu::set_threads(threads);
}
