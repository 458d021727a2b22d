//! Backends: an inference engine on a device. Each engine's folder (`backend/<engine>/`) owns
//! everything about that engine:
//! - what it can make of a model kind, a plan and a batch size before anything runs
//!   ([`Backend::capability`], the *expectation*);
//! - building its model from a variant's artifact and preparing a [`Session`] outside any timed
//!   region ([`Backend::prepare`]);
//! - reading back, from its own objects, what it actually made of each weighted layer
//!   ([`Prepared::layers`], the *observation*), from which the record's realization is computed.
//!
//! Adding an engine is one folder that defines its [`Registration`]s, plus one line in
//! [`REGISTRY`] (and its cargo feature): nothing outside the folder matches on a backend.

pub mod candle;
pub mod gpu;
pub mod onnx_artifact;
pub mod ort;
pub mod realization;
pub mod tract;

use std::path::PathBuf;

pub use realization::{Compute, LayerEvidence, LayerRealization, Realization, StoredWeight, WeightType};

use crate::model::{LoadedModel, ModelKind};
use crate::quant::{Plan, Variant};

/// Every backend qbench knows, in the order `list backends` shows them. The one place a backend
/// is registered.
pub static REGISTRY: &[&Registration] = &[&candle::CPU, &tract::CPU, &ort::CPU, &candle::CUDA, &tract::CUDA];

/// Where a backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    /// A CUDA GPU: the suite's `device = "cuda:N"` picks which.
    Cuda,
}

/// A backend as registered: its name, what it is, where it runs, and how to make one.
pub struct Registration {
    /// As suites and records name it, e.g. `tract-cpu`.
    pub name: &'static str,
    pub description: &'static str,
    pub device: DeviceKind,
    /// The backend for the run's CUDA device (ignored on the CPU), or why this build has none:
    /// a backend behind a cargo feature answers with how to build it.
    pub create: fn(cuda_device: usize) -> Result<Box<dyn Backend>, &'static str>,
    /// Applies the suite's thread count to the engine, once per process, before it works.
    pub set_threads: fn(threads: usize),
    /// The engine's crate, whose locked version every record of the backend carries.
    pub engine_crate: &'static str,
    /// The version of an engine loaded at run time (ONNX Runtime's shared library), as the
    /// library reports it; `None` for engines compiled in, and when the library cannot load.
    pub runtime_version: fn() -> Option<String>,
}

/// A registered backend, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(&'static str);

impl BackendId {
    /// The registered backend of that name.
    pub fn from_name(s: &str) -> Option<BackendId> {
        REGISTRY.iter().find(|r| r.name == s).map(|r| BackendId(r.name))
    }

    /// Every registered backend, in registration order.
    pub fn all() -> impl Iterator<Item = BackendId> {
        REGISTRY.iter().map(|r| BackendId(r.name))
    }

    pub fn names() -> Vec<&'static str> {
        REGISTRY.iter().map(|r| r.name).collect()
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    pub fn registration(self) -> &'static Registration {
        REGISTRY.iter().find(|r| r.name == self.0).expect("a BackendId is made from the registry")
    }

    pub fn description(self) -> &'static str {
        self.registration().description
    }

    pub fn is_cuda(self) -> bool {
        self.registration().device == DeviceKind::Cuda
    }

    /// `cpu`, or `cuda:N` for a GPU backend: where its cases run.
    pub fn device_name(self, cuda_device: usize) -> String {
        match self.registration().device {
            DeviceKind::Cpu => "cpu".into(),
            DeviceKind::Cuda => format!("cuda:{cuda_device}"),
        }
    }

    /// The version of the engine's crate this qbench was built with (from Cargo.lock), and
    /// for an engine loaded at run time, the library's own (`ort 2.0.0-rc.15, ONNX Runtime
    /// 1.32.0`).
    pub fn engine_version(self) -> String {
        let krate = self.registration().engine_crate;
        let version = env!("QBENCH_LOCKED_VERSIONS")
            .split(';')
            .find_map(|entry| entry.strip_prefix(krate)?.strip_prefix('='))
            .unwrap_or("unknown");
        match (self.registration().runtime_version)() {
            Some(runtime) => format!("{krate} {version}, {runtime}"),
            None => format!("{krate} {version}"),
        }
    }

    /// Whether this build has the backend: `Err` says how to build one that has.
    pub fn built(self) -> Result<(), &'static str> {
        (self.registration().create)(0).map(|_| ())
    }

    /// The backend, on the run's CUDA device for a GPU backend. In a build without it, a
    /// backend that answers every question with how to build one that has it.
    pub fn create(self, cuda_device: usize) -> Box<dyn Backend> {
        match (self.registration().create)(cuda_device) {
            Ok(b) => b,
            Err(hint) => Box::new(NotBuilt { id: self, hint }),
        }
    }
}

impl std::fmt::Display for BackendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What a backend is asked about before it runs anything: a model's kind, and once the model
/// file is read, what it holds (an ONNX graph's ops, say).
#[derive(Debug, Clone, Copy)]
pub struct ModelQuery<'a> {
    pub kind: &'a ModelKind,
    pub loaded: Option<&'a LoadedModel>,
}

impl<'a> ModelQuery<'a> {
    pub fn declared(kind: &'a ModelKind) -> Self {
        ModelQuery { kind, loaded: None }
    }

    pub fn loaded(model: &'a LoadedModel) -> Self {
        ModelQuery { kind: &model.kind, loaded: Some(model) }
    }
}

/// What a layer session returns of each weighted layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Each layer's output (after its bias, before any activation), then the model's output
    /// (named [`MODEL_OUTPUT`]): per-layer error localization.
    Outputs,
    /// Each layer's input: what static schemes calibrate on.
    Inputs,
}

/// An engine on a device.
pub trait Backend {
    fn id(&self) -> BackendId;

    /// What this backend expects to make of `plan` on `model` at `batch` items per run, asked
    /// before anything runs: `native`, `cpu-fallback`, `emulated`, or `unsupported` with the
    /// reason (the case is skipped). Skipping, `validate` and `require_native`'s early refusal
    /// use only this answer; the record's realization is observed after prepare instead.
    fn capability(&self, model: ModelQuery<'_>, plan: &Plan, batch: usize) -> Realization;

    /// Whether this backend computes the f32 reference outputs of models of this kind (every
    /// variant's fidelity is measured against them). The first registered backend that says so,
    /// and can run the model, is the reference engine.
    fn is_reference_for(&self, _model: &ModelKind) -> bool {
        false
    }

    /// Whether this backend runs a model of this kind's f32 form in f32 arithmetic throughout
    /// (no reduced-precision kernel, no approximated function): a candidate engine for the
    /// reference pass, which goes to the candidate that runs one batch fastest (timed in each
    /// run, `run::model`). By default the reference engines only.
    fn computes_exact_f32(&self, model: &ModelKind) -> bool {
        self.is_reference_for(model)
    }

    /// Whether the engine can build `model_file` (a model's f32 form) at `batch` items per run,
    /// without optimizing or running it: unknown ops, a graph whose shapes do not agree. What
    /// `qbench validate` asks after reading the files; `Ok` from engines that cannot tell
    /// cheaply.
    fn check_model(&self, _model_file: &std::path::Path, _batch: usize) -> Result<(), BackendError> {
        Ok(())
    }

    /// Loads the variant's artifact and readies it for exactly `batch` items per run. What the
    /// engine made of each layer is read afterwards ([`Prepared::observe`]), outside the
    /// measured preparation; only what the prepared summary needs is read here (candle's
    /// quantized llama walks its built model's `Debug` text once, which also gives the bytes
    /// its weights hold).
    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError>;

    /// Loads the variant so that each run returns every weighted layer's output or input (see
    /// [`Capture`]), in layer order.
    fn layer_session(
        &self,
        variant: &Variant,
        batch: usize,
        capture: Capture,
    ) -> Result<Box<dyn LayerSession>, BackendError>;
}

/// The name [`LayerSession::run`] gives the model's output, after the layers'.
pub const MODEL_OUTPUT: &str = "(model output)";

/// A model whose runs return every weighted layer's output (then the model's) or input.
pub trait LayerSession {
    /// Runs one batch (exactly the prepared batch size); `(layer, values)` in layer order, then
    /// `(MODEL_OUTPUT, values)` when capturing outputs.
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError>;
}

/// A prepared session, the artifact it was prepared from, and what the engine made of it.
pub struct Prepared {
    pub session: Box<dyn Session>,
    /// The file the backend loaded.
    pub artifact: PathBuf,
    pub artifact_bytes: u64,
    /// The engine's own summary of what it will run (tract: the optimized plan's ops and
    /// kernels; candle: its modules).
    pub evidence: String,
    /// What the engine made of each weighted layer, read from its own objects by
    /// [`Prepared::observe`]: the observation the record's realization is computed from.
    pub layers: Vec<LayerEvidence>,
    /// Bytes of the weights as the engine holds them in memory (candle's tensors and GGML
    /// blocks; tract's constants, packed or not), where the engine can say.
    pub weights_bytes: Option<u64>,
    /// Memory the engine allocates that qbench's counting allocator cannot see (an engine in
    /// C++), named for the record's `heap_not_covered`; `None` when it sees everything.
    pub heap_not_covered: Option<&'static str>,
}

impl Prepared {
    /// Reads from the engine what it made of each weighted layer (see
    /// [`Session::layer_evidence`]) into [`Prepared::layers`]. Apart from prepare, so that the
    /// reading (an artifact's header, a walk of the engine's plan) is not timed with it.
    pub fn observe(&mut self) -> &[LayerEvidence] {
        self.layers = self.session.layer_evidence();
        if let Some(summary) = self.session.observed_summary() {
            self.evidence = summary;
        }
        &self.layers
    }
}

/// A model ready to run on fixed-size batches.
/// One op's (or layer's) share of a run, as `qbench profile` reads it from the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The node's or layer's name (`conv1`, tract's node name).
    pub name: String,
    /// What it is: the engine's op name (`Conv`, `OptMatMul`, `Relu`).
    pub op: String,
    pub ns: u64,
}

pub trait Session {
    /// Copies one batch (NCHW f32, exactly `batch` items) into the engine's input.
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError>;
    /// Runs the model on the current input; this is the timed region.
    fn run(&mut self) -> Result<(), BackendError>;
    /// Logits of the last run, row-major `[batch, classes]` (the first output of a model
    /// with several).
    fn output(&self) -> Result<Vec<f32>, BackendError>;
    /// Every output of the last run, in the model's order, with the shapes the engine gave
    /// them. The default is [`Session::output`] alone, shape unknown (a built-in model's
    /// `[batch, values]`).
    fn outputs(&self) -> Result<Vec<OutputTensor>, BackendError> {
        Ok(vec![OutputTensor { name: String::new(), shape: None, values: self.output()? }])
    }
    /// Nanoseconds the last [`Session::set_input`] spent copying the batch to the device
    /// (synchronized) or into the engine's own tensors (ONNX Runtime), for backends that copy it
    /// apart from the run; `None` where the engine reads qbench's batch as it is, and where the
    /// copy is part of the run (tract-cuda).
    fn input_copy_ns(&self) -> Option<u64> {
        None
    }
    /// The session as a causal language model, when it is one.
    fn decoder(&mut self) -> Option<&mut dyn Decoder> {
        None
    }
    /// Runs the current input once, timing each op or layer where the engine runs it
    /// (synchronized on a GPU, so each time is that op's): `None` where this engine's session
    /// cannot be opened up so.
    fn profile_run(&mut self) -> Option<Result<Vec<OpTime>, BackendError>> {
        None
    }
    /// What the engine made of each weighted layer of the variant, read from its own objects
    /// (the built modules, the optimized plan), with the weight's type as the artifact stores
    /// it. Every engine must say; a layer it cannot tell about is `not observable`.
    fn layer_evidence(&self) -> Vec<LayerEvidence>;
    /// The engine's summary of what it ran, when it is read with the layers' evidence (after
    /// prepare) rather than in prepare: it then replaces [`Prepared::evidence`].
    fn observed_summary(&self) -> Option<String> {
        None
    }
}

/// One output of a run, as the engine returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// The graph's name for it (empty for a built-in model's one output).
    pub name: String,
    /// The whole tensor's shape, batch included; `None` where the engine does not say.
    pub shape: Option<Vec<usize>>,
    pub values: Vec<f32>,
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
    #[error("{backend} cannot run this: {reason}")]
    Unsupported { backend: &'static str, reason: String },
}

impl BackendError {
    pub fn engine(backend: BackendId, stage: &'static str, e: impl std::fmt::Display) -> Self {
        // `{:#}` on anyhow-style errors (tract) prints the whole cause chain on one line.
        BackendError::Engine { backend: backend.name(), stage, message: one_line(&format!("{e:#}")) }
    }
}

/// An engine's message on one line, without the stack backtrace candle appends to its errors
/// when `RUST_BACKTRACE` is set (a record's reason, not a debugging dump).
fn one_line(message: &str) -> String {
    let frame = |line: &str| {
        let t = line.trim_start();
        t.starts_with("stack backtrace")
            || t.split_once(':').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let kept: Vec<&str> = message.lines().take_while(|l| !frame(l)).map(str::trim).filter(|l| !l.is_empty()).collect();
    kept.join(" ")
}

/// An error and its causes on one line: `outer: cause: cause`, each said once, without any
/// stack backtrace an engine's error carries (what a record's `error` holds).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = one_line(&e.to_string());
    let mut source = e.source();
    while let Some(s) = source {
        let part = one_line(&s.to_string());
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text
}

/// Sets the thread count of every engine, once per process, before any engine work.
pub fn configure_threads(threads: usize) {
    CONFIGURED_THREADS.store(threads.max(1), std::sync::atomic::Ordering::Relaxed);
    for r in REGISTRY {
        (r.set_threads)(threads);
    }
}

static CONFIGURED_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// The engines' thread count in this process ([`configure_threads`]; 1 before it is called).
pub fn configured_threads() -> usize {
    CONFIGURED_THREADS.load(std::sync::atomic::Ordering::Relaxed)
}

/// No registered engine computes a model's reference: each reference engine's reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .refusals.join("; "))]
pub struct NoReferenceEngine {
    pub refusals: Vec<String>,
}

/// The backend that computes a model's f32 reference outputs: the first registered backend that
/// is a reference engine for the model's kind and can run its f32 plan. `Err` lists why each
/// reference engine cannot.
pub fn reference_backend(model: ModelQuery<'_>, f32_plan: &Plan, batch: usize) -> Result<BackendId, NoReferenceEngine> {
    let mut refusals = Vec::new();
    for id in BackendId::all() {
        let backend = id.create(0);
        if id.is_cuda() || !backend.is_reference_for(model.kind) {
            continue;
        }
        match backend.capability(model, f32_plan, batch) {
            Realization::Unsupported(why) => refusals.push(format!("{id}: {why}")),
            _ => return Ok(id),
        }
    }
    if refusals.is_empty() {
        refusals.push(format!("no backend of this build computes references for a {}", model.kind.describe()));
    }
    Err(NoReferenceEngine { refusals })
}

/// A backend this build leaves out (behind a cargo feature): every question is answered with
/// how to build a qbench that has it.
struct NotBuilt {
    id: BackendId,
    hint: &'static str,
}

impl Backend for NotBuilt {
    fn id(&self) -> BackendId {
        self.id
    }

    fn capability(&self, _model: ModelQuery<'_>, _plan: &Plan, _batch: usize) -> Realization {
        Realization::Unsupported(self.hint.to_string())
    }

    fn prepare(&self, _variant: &Variant, _batch: usize) -> Result<Prepared, BackendError> {
        Err(BackendError::engine(self.id, "preparing", self.hint))
    }

    fn layer_session(&self, _: &Variant, _: usize, _: Capture) -> Result<Box<dyn LayerSession>, BackendError> {
        Err(BackendError::engine(self.id, "capturing layer values", self.hint))
    }
}

/// The file's size, for [`Prepared::artifact_bytes`].
pub(crate) fn artifact_bytes(backend: BackendId, path: &std::path::Path) -> Result<u64, BackendError> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| BackendError::engine(backend, "reading the artifact size", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_messages_are_one_line_without_a_backtrace() {
        let with_trace =
            "cannot find tensor x\n   0: candle_core::error::Error::bt\n             at src/error.rs:1\n   1: main";
        assert_eq!(one_line(with_trace), "cannot find tensor x");
        assert_eq!(one_line("a: b\n c"), "a: b c");
        // A number followed by a colon inside the message is not a frame.
        assert_eq!(one_line("shape [2, 3]: expected 4: got 6"), "shape [2, 3]: expected 4: got 6");
    }

    #[test]
    fn the_registry_names_each_backend_once_and_ids_round_trip() {
        let names = BackendId::names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for id in BackendId::all() {
            assert_eq!(BackendId::from_name(id.name()), Some(id));
            assert_eq!(id.create(0).id(), id);
            // The engine's version, from Cargo.lock, independently of build.rs's parsing.
            let lock = include_str!("../../Cargo.lock");
            let krate = id.registration().engine_crate;
            let needle = format!("name = \"{krate}\"\nversion = \"");
            let at = lock.find(&needle).expect("the engine's crate is locked") + needle.len();
            let version = lock[at..].split('"').next().unwrap();
            // An engine loaded at run time adds the library's own version after a comma.
            let v = id.engine_version();
            assert_eq!(v.split(", ").next(), Some(format!("{krate} {version}").as_str()), "{v}");
        }
        assert_eq!(BackendId::from_name("onnxruntime-tpu"), None);
    }
}
