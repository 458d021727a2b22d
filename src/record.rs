//! The one flat result row, with provenance, and the environment it came from.
//!
//! A [`Record`] is written for every case, measured or failed, as soon as the case
//! ends. Every output (table, files, later reports) derives from records alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::gpu::GpuInfo;
use crate::backend::LayerEvidence;
use crate::measure::stats::LatencyStats;

/// The practical threshold of the verdict against f32 (2%, `qbench compare`'s default): a
/// slowdown smaller than this is "same", not "slower".
pub const VS_F32_THRESHOLD: f64 = 0.02;

/// Whether a case produced measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    #[default]
    Ok,
    Failed,
    /// The backend cannot run the scheme (realization `unsupported`); `error` says why.
    Skipped,
}

/// One case's result. Units are in the field names; `None` means "not measured"
/// (the case failed before that point, see `error`).
///
/// Fields this version does not know (a record written by a newer qbench) are ignored when
/// reading, so an older binary can still read a newer run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    // --- identity
    pub run_id: String,
    pub case_index: usize,
    /// `k/n` when the run was one shard of the suite (`--shard`); empty otherwise.
    #[serde(default)]
    pub shard: String,
    pub suite: String,
    pub suite_sha256: String,
    /// The suite file, absolute: `qbench explain` reloads it.
    #[serde(default)]
    pub suite_file: String,
    /// `--set KEY=VALUE` changes the run applied to the suite file's text, in order
    /// (`suite_sha256` is of the changed text): `explain` and `bundle` apply them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suite_sets: Vec<String>,
    /// The measurement point's swept values (`threads=2`), when the suite's `[measure]` sweeps
    /// some; empty otherwise. Part of the case's identity: the same model, scheme, backend and
    /// batch at another point is another case.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sweep: String,
    pub model: String,
    pub zoo: String,
    pub model_sha256: Option<String>,
    pub dataset: String,
    pub dataset_sha256: String,
    pub scheme: String,
    pub backend: String,
    pub device: String,
    pub threads: usize,
    pub batch: usize,
    // --- outcome
    pub status: CaseStatus,
    pub error: Option<String>,
    // --- artifact
    pub artifact: Option<String>,
    pub artifact_bytes: Option<u64>,
    /// sha256 of the artifact file the engine loaded: a copy of the variant (a bundle's, a
    /// device's) is the variant measured here only if its bytes hash to this.
    pub artifact_sha256: Option<String>,
    /// Effective bits per parameter of the variant, scales and zero points included.
    pub bits_per_weight: Option<f64>,
    /// How the engine ran the variant, observed after prepare from the engine's own objects:
    /// the weakest of `layer_evidence`'s layers (`native`, `cpu-fallback`, `emulated`,
    /// `not-observed`); `unsupported` for a skipped case; `not-observed` when the case failed
    /// before the engine said.
    pub realization: String,
    /// What the backend expected before running (its capability answer). Differs from
    /// `realization` where the engine did something else than expected.
    #[serde(default)]
    pub expected_realization: String,
    /// What the engine made of each weighted layer: stored type, compute type, kernel, device,
    /// and the layer's realization.
    #[serde(default)]
    pub layer_evidence: Vec<LayerEvidence>,
    /// How each parameter is stored in the artifact (`name=storage, ...`).
    pub weight_storage: Option<String>,
    /// Layers whose scheme an `[[overrides]]` entry changed (`layer=scheme, ...`); empty if none.
    #[serde(default)]
    pub layer_overrides: String,
    /// How each quantized layer input is quantized (dynamic, or the calibrated range).
    #[serde(default)]
    pub activation_quant: Option<String>,
    /// Items of the dataset held out for calibration; evaluation uses the rest.
    #[serde(default)]
    pub calibration_items: usize,
    /// How those items were chosen: `at random (seed 0)`, `first in dataset order`,
    /// `stratified by label (seed 0)`
    /// (`data::split`); `None` when none were held out.
    #[serde(default)]
    pub calibration_selection: Option<String>,
    /// How the model's weights were trained, when its file says (e.g. quantization-aware
    /// training: scheme, epochs, time, seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_training: Option<String>,
    /// `[calibration] repeats`: the case's scheme calibrated on each disjoint calibration
    /// subset and evaluated on the same split, this case's own calibration (subset 0) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration_spread: Vec<CalibrationRepeat>,
    /// With a `[tuning]` split: which part the case was scored on and how it was chosen, e.g.
    /// `test split: the 4900 items not held out for tuning (stratified by label (seed 0))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_split: Option<String>,
    /// The engine's own summary of what it runs (tract: optimized op names and kernels; candle:
    /// its modules).
    pub evidence: Option<String>,
    pub parameters: usize,
    /// Loading the artifact and preparing the engine (untimed in the latency samples).
    pub prepare_ns: Option<u64>,
    /// The first run after prepare, on the latency batch.
    #[serde(default)]
    pub first_run_ns: Option<u64>,
    /// Cold start: prepare plus first run.
    #[serde(default)]
    pub cold_start_ns: Option<u64>,
    /// Median ns of a fixed CPU workload, timed at most [`crate::measure::probe::MAX_AGE`]
    /// before this case starts (`measure::probe::Prober`): cases close in time share one check.
    #[serde(default)]
    pub noise_probe_ns: Option<f64>,
    // --- memory (from the OS; None where it cannot be measured)
    /// Peak resident memory prepare added above what was resident before it.
    #[serde(default)]
    pub prepare_peak_rss_bytes: Option<u64>,
    /// Peak resident memory running the latency batch added (first run and sampling).
    #[serde(default)]
    pub run_peak_rss_bytes: Option<u64>,
    /// Bytes of the weights as the engine holds them.
    #[serde(default)]
    pub weights_bytes: Option<u64>,
    // --- heap memory, counted exactly by qbench's allocator (`measure::alloc`)
    /// Peak heap above what was live before prepare, during prepare; and every byte prepare
    /// allocated (freed or not).
    #[serde(default)]
    pub prepare_heap_peak_bytes: Option<u64>,
    #[serde(default)]
    pub prepare_heap_allocated_bytes: Option<u64>,
    /// The cores the process kept busy while the latency was sampled: its CPU time over the
    /// wall time, as the OS counts it (`getrusage`). What the engine did with `threads`: a
    /// 1-thread case stays near 1, a 4-thread one that scales near 4.
    #[serde(default)]
    pub sampling_busy_cores: Option<f64>,
    /// Peak heap above what was live before the latency sampling, during it (warm-up
    /// included); and the bytes allocated per run, averaged over its runs.
    #[serde(default)]
    pub run_heap_peak_bytes: Option<u64>,
    #[serde(default)]
    pub run_heap_allocated_bytes_per_run: Option<f64>,
    /// Allocations per run, averaged the same way (each costs the counting allocator a few
    /// atomic updates).
    #[serde(default)]
    pub run_heap_allocations_per_run: Option<f64>,
    /// The case ran alone in a fresh process (`qbench run --isolate`): its memory figures are
    /// that process's, with no pages an earlier case left behind.
    #[serde(default)]
    pub fresh_process: bool,
    /// The id of the process that ran the case.
    #[serde(default)]
    pub process_id: u32,
    /// Peak resident set of the fresh process that ran only this case, from start to its
    /// record (the OS's `VmHWM`, kept across the per-step resets): loading the model and the
    /// data, the reference pass, building the variant, prepare and the runs. `None` outside
    /// `--isolate`, where other cases share the process.
    #[serde(default)]
    pub process_peak_rss_bytes: Option<u64>,
    /// What the heap figures cannot see for this case (GPU memory: see
    /// `gpu_memory_used_bytes`); empty when they see everything the engine allocates.
    #[serde(default)]
    pub heap_not_covered: String,
    /// GPU memory in use after the first run above what was in use before prepare (the whole
    /// device's, from the driver: weights, activations, workspaces, the engine's caches).
    #[serde(default)]
    pub gpu_memory_used_bytes: Option<u64>,
    // --- host-to-device copy (GPU backends that copy the input apart from the run)
    /// Median time to copy the latency batch to the GPU, synchronized; not part of the latency
    /// samples. None on the CPU and where the copy is inside the run (tract-cuda).
    #[serde(default)]
    pub input_copy_median_ns: Option<f64>,
    // --- latency (one sample = one run of one batch)
    pub warmup_iters: u32,
    pub samples_ns: Vec<u64>,
    pub latency_min_ns: Option<f64>,
    pub latency_max_ns: Option<f64>,
    pub latency_mean_ns: Option<f64>,
    pub latency_stddev_ns: Option<f64>,
    pub latency_median_ns: Option<f64>,
    /// Percentiles (type 7), each only when the sample reaches past it (p99: 100 samples, p95:
    /// 20, p90: 10); `None` below that, where the maximum is the best figure ("≈ max").
    pub latency_p90_ns: Option<f64>,
    #[serde(default)]
    pub latency_p95_ns: Option<f64>,
    pub latency_p99_ns: Option<f64>,
    /// Median absolute deviation from the median.
    #[serde(default)]
    pub latency_mad_ns: Option<f64>,
    /// Samples outside Tukey's fences.
    #[serde(default)]
    pub latency_outliers: Option<usize>,
    /// 95% confidence interval of the median, valid for autocorrelated samples
    /// (`latency_ci_method`).
    pub latency_median_ci_low_ns: Option<f64>,
    pub latency_median_ci_high_ns: Option<f64>,
    /// How the interval was computed (`measure::stats::CI_METHOD`).
    #[serde(default)]
    pub latency_ci_method: String,
    /// The samples' autocorrelation time (the interval's block length: 1 for independent
    /// samples) and the effective sample size `n / τ` it gives.
    #[serde(default)]
    pub latency_ci_tau: Option<f64>,
    #[serde(default)]
    pub latency_n_eff: Option<f64>,
    /// Records written before qbench 0.1's dependent-sample intervals carried an iid bootstrap
    /// interval here; read and dropped.
    #[serde(default, skip_serializing)]
    pub latency_median_boot_ci_low_ns: Option<f64>,
    #[serde(default, skip_serializing)]
    pub latency_median_boot_ci_high_ns: Option<f64>,
    /// Target CI half-width of the median, in percent (0: none).
    #[serde(default)]
    pub latency_ci_target_pct: f64,
    /// Whether the sampler met the target before its budget ran out (None: no target).
    #[serde(default)]
    pub latency_ci_target_met: Option<bool>,
    /// Items per second at the mean run time (batch / mean): the rate a stream of runs
    /// sustains, which the median would overstate when some runs are slow.
    pub throughput_items_per_s: Option<f64>,
    // --- the load scenario after single-stream latency (`[scenario]`, measure::scenario)
    /// `single-stream` (latency only), `offline` or `server`.
    #[serde(default)]
    pub scenario: String,
    /// offline: sessions that ran at once, each on `threads`; how long; the items they ran and
    /// the items per second over the time the last stream took.
    #[serde(default)]
    pub offline_streams: Option<usize>,
    #[serde(default)]
    pub offline_duration_ms: Option<u64>,
    #[serde(default)]
    pub offline_items: Option<u64>,
    #[serde(default)]
    pub offline_items_per_s: Option<f64>,
    /// server: Poisson arrivals (one batch a query) at `server_target_qps`, served in order by
    /// one session; `server_latency_at_target_ns` is latency percentile `server_percentile`
    /// (arrival to completion, queueing included) over `server_queries` queries, against the
    /// bound.
    #[serde(default)]
    pub server_target_qps: Option<f64>,
    #[serde(default)]
    pub server_latency_bound_ms: Option<f64>,
    #[serde(default)]
    pub server_percentile: Option<f64>,
    #[serde(default)]
    pub server_queries: Option<u64>,
    #[serde(default)]
    pub server_latency_at_target_ns: Option<u64>,
    #[serde(default)]
    pub server_achieved_qps: Option<f64>,
    #[serde(default)]
    pub server_bound_met: Option<bool>,
    /// The highest rate whose percentile met the bound, by bisection below the single-stream
    /// ceiling (1 / median latency); `None` with a note when no rate did or no search ran.
    #[serde(default)]
    pub server_max_qps: Option<f64>,
    /// The search's probes: `rate qps: percentile ms ok|over`, in the order run.
    #[serde(default)]
    pub server_search: Option<String>,
    /// Why a scenario's figure is missing.
    #[serde(default)]
    pub scenario_note: Option<String>,
    // --- paired against f32: alternating rounds on the same backend and batch
    /// Speedup over the backend's f32 at this batch, measured in alternating rounds (random
    /// order per round): the median over rounds of f32's run time / this case's, with its 95%
    /// interval for dependent samples. A drift of the machine's speed slows both runs of a
    /// round and cancels in its ratio, which a ratio of medians measured apart does not.
    /// `None` for f32 itself and where not measured (`speedup_vs_f32_note` says why).
    #[serde(default)]
    pub speedup_vs_f32: Option<f64>,
    #[serde(default)]
    pub speedup_vs_f32_ci_low: Option<f64>,
    #[serde(default)]
    pub speedup_vs_f32_ci_high: Option<f64>,
    #[serde(default)]
    pub speedup_vs_f32_note: Option<String>,
    /// The speed verdict on those rounds (`measure::verdict::judge` on time / f32's time at
    /// [`VS_F32_THRESHOLD`]): `faster`, `slower`, `same` or `inconclusive`; `None` where no
    /// rounds were measured.
    #[serde(default)]
    pub vs_f32_verdict: Option<String>,
    /// Whether this case was measured slower than its backend's f32 at the same batch: the
    /// whole paired 95% interval of its time over f32's lies above `1 + VS_F32_THRESHOLD`. A
    /// quantized variant that costs accuracy *and* time is rarely the one to ship.
    #[serde(default)]
    pub slower_than_f32: bool,
    /// The rounds' raw times, in round order: this case's timed run and f32's.
    #[serde(default)]
    pub paired_ns: Vec<u64>,
    #[serde(default)]
    pub paired_f32_ns: Vec<u64>,
    /// Autocorrelation time of the per-round ratios (the interval's block length).
    #[serde(default)]
    pub paired_ci_tau: Option<f64>,
    /// Whether the rounds met the suite's CI target on the ratio (None: no target).
    #[serde(default)]
    pub paired_ci_target_met: Option<bool>,
    // --- task accuracy on the whole dataset
    pub eval_items: Option<usize>,
    /// Items per run of the evaluation the accuracy and fidelity columns come from: the case's
    /// own batch, or the batch of the (variant, backend)'s one evaluation shared by its cases.
    #[serde(default)]
    pub eval_batch: Option<usize>,
    /// How the evaluation was shared or why it was not: `shared: …` with the check that this
    /// case's own outputs on a slice match it, or `outputs depend on the batch: …`.
    #[serde(default)]
    pub eval_note: Option<String>,
    pub top1_accuracy: Option<f64>,
    /// Wilson 95% interval of top-1 accuracy.
    #[serde(default)]
    pub top1_ci_low: Option<f64>,
    #[serde(default)]
    pub top1_ci_high: Option<f64>,
    #[serde(default)]
    pub top5_accuracy: Option<f64>,
    #[serde(default)]
    pub top5_ci_low: Option<f64>,
    #[serde(default)]
    pub top5_ci_high: Option<f64>,
    /// Accuracy within each true class (null for a class with no items).
    #[serde(default)]
    pub per_class_accuracy: Vec<Option<f64>>,
    /// `confusion[true class][predicted class]` counts.
    #[serde(default)]
    pub confusion: Vec<Vec<u32>>,
    /// Whether each evaluation item's top-1 was its label, in dataset order, as hex (4 items
    /// a digit, the first item in the digit's highest bit): paired differences of accuracy
    /// between two cases on the same items are computed from it (`Record::top1_correct`).
    #[serde(default)]
    pub top1_correct_hex: String,
    // --- agreement with the fp32 reference outputs
    /// The engine that computed the reference logits (`candle-cpu`, f32).
    pub reference_backend: String,
    /// Items per batch of the reference pass: the suite's largest batch size, at most the
    /// evaluation split's length, or the batch the model file fixes. `None` where no reference
    /// pass ran (a language model, a model that did not load).
    #[serde(default)]
    pub reference_batch: Option<usize>,
    /// Peak heap the reference pass held above what was live before it (the engine's prepare
    /// and the outputs included), counted by qbench's allocator: the memory the pass needs
    /// beyond the cases'. `None` where not counted (no reference pass, another allocator).
    #[serde(default)]
    pub reference_peak_heap_bytes: Option<u64>,
    /// Why `reference_backend`: each CPU engine that runs the model in exact f32, timed on one
    /// batch of the reference pass, and the fastest, which computed it. `None`: no reference pass.
    #[serde(default)]
    pub reference_choice: Option<String>,
    pub ref_top1_agreement: Option<f64>,
    /// Share of items whose top-5 holds the reference's top-1 class.
    #[serde(default)]
    pub ref_top5_agreement: Option<f64>,
    pub ref_max_abs_logit_diff: Option<f64>,
    /// Cosine similarity of each item's logits with the reference's: mean and standard error.
    #[serde(default)]
    pub ref_cosine_mean: Option<f64>,
    #[serde(default)]
    pub ref_cosine_stderr: Option<f64>,
    /// SQNR of the logits pooled over the dataset, dB (null when identical to the reference).
    #[serde(default)]
    pub ref_sqnr_db: Option<f64>,
    /// Per-item mean squared logit error: mean and standard error; NMSE pooled.
    #[serde(default)]
    pub ref_mse_mean: Option<f64>,
    #[serde(default)]
    pub ref_mse_stderr: Option<f64>,
    #[serde(default)]
    pub ref_nmse: Option<f64>,
    /// KL(softmax(reference) ‖ softmax(variant)) per item, nats: mean and standard error.
    #[serde(default)]
    pub ref_kl_mean: Option<f64>,
    #[serde(default)]
    pub ref_kl_stderr: Option<f64>,
    /// Items whose KL is infinite (the variant gives a class no probability): the mean is ∞,
    /// shown as such, and `ref_kl_mean` is null.
    #[serde(default)]
    pub ref_kl_infinite_items: Option<usize>,
    // --- what the scored output is (`measure::outputs`): the columns above and below are the
    // first output's, and those that do not fit its kind stay empty (no top-1 for a sequence)
    /// The first output the model reads, by the graph's name (empty for a built-in model).
    #[serde(default)]
    pub output_name: String,
    /// classes, sequence, sequence (CTC), scores, embedding, regression.
    #[serde(default)]
    pub output_kind: String,
    /// `declared` in the suite, or why it was inferred (`inferred: one value per item ([1]), a score`).
    #[serde(default)]
    pub output_kind_source: String,
    /// Shape of one item's output.
    #[serde(default)]
    pub output_item_shape: Vec<usize>,
    /// sequence: share of (item, position) pairs whose best class is the reference's.
    #[serde(default)]
    pub ref_position_agreement: Option<f64>,
    /// sequence (CTC): share of items whose decoded text is the reference's.
    #[serde(default)]
    pub ref_text_agreement: Option<f64>,
    /// sequence (CTC) against text labels: exact-match share, its Wilson 95% interval, and the
    /// character error rate (Σ edit distance / Σ label characters).
    #[serde(default)]
    pub exact_match: Option<f64>,
    #[serde(default)]
    pub exact_match_ci_low: Option<f64>,
    #[serde(default)]
    pub exact_match_ci_high: Option<f64>,
    #[serde(default)]
    pub char_error_rate: Option<f64>,
    /// scores: the threshold, the share of values on the reference's side of it, and (one
    /// score per item, 0/1 labels) the accuracy of `score ≥ threshold` with its interval.
    #[serde(default)]
    pub score_threshold: Option<f64>,
    #[serde(default)]
    pub ref_threshold_agreement: Option<f64>,
    #[serde(default)]
    pub threshold_accuracy: Option<f64>,
    #[serde(default)]
    pub threshold_accuracy_ci_low: Option<f64>,
    #[serde(default)]
    pub threshold_accuracy_ci_high: Option<f64>,
    /// embedding: mean share of each item's k nearest neighbours (cosine) kept from the
    /// reference's, and k.
    #[serde(default)]
    pub ref_retrieval_agreement: Option<f64>,
    #[serde(default)]
    pub retrieval_k: Option<usize>,
    /// Every output the model reads, scored as its kind says (the first is the columns').
    #[serde(default)]
    pub outputs: Vec<crate::measure::outputs::OutputScore>,
    /// What the "ref" metrics compare against when it is not the f32 model: a GGUF language
    /// model's highest-precision variant in the suite (its scheme; kept as top-k log-probabilities
    /// per position). Empty otherwise.
    #[serde(default)]
    pub reference_scheme: String,
    // --- language models (GGUF): perplexity and tokens per second
    /// exp(mean negative log-likelihood) over the scored tokens of the text's windows, with its
    /// 95% interval over the windows.
    #[serde(default)]
    pub perplexity: Option<f64>,
    #[serde(default)]
    pub perplexity_ci_low: Option<f64>,
    #[serde(default)]
    pub perplexity_ci_high: Option<f64>,
    /// Tokens predicted: windows × (seq_len − 1).
    #[serde(default)]
    pub scored_tokens: Option<usize>,
    /// Prompt processing: batch × seq_len tokens per mean run time (the latency columns' run).
    #[serde(default)]
    pub pp_tokens_per_s: Option<f64>,
    /// Generation: batch × `tg_tokens` tokens fed one at a time through the KV cache, per mean
    /// time; `tg_samples_ns` holds the raw times of those runs.
    #[serde(default)]
    pub tg_tokens_per_s: Option<f64>,
    #[serde(default)]
    pub tg_tokens: Option<usize>,
    #[serde(default)]
    pub tg_samples_ns: Vec<u64>,
    // --- a target device's verification of a bundled case (`qbench-device verify`)
    /// The bundle case this record verified on a target device; `None` in a workstation's run.
    #[serde(default)]
    pub bundle_case: Option<String>,
    /// The device's verdict on the case: `pass`; `fail` (an output beyond its tolerance, or top-1
    /// agreement with the workstation below its bound); `unsupported` (this device's engine
    /// cannot run the variant; `error` says why); `error` (it ran and failed).
    #[serde(default)]
    pub device_verdict: Option<String>,
    /// The output nearest to (or farthest beyond) its tolerance, its max |device − workstation|
    /// over the bundled items, and that tolerance.
    #[serde(default)]
    pub device_worst_output: Option<String>,
    #[serde(default)]
    pub device_max_abs_diff: Option<f64>,
    #[serde(default)]
    pub device_tolerance_abs: Option<f64>,
    /// Share of items whose top class matches the workstation's, and the share required.
    #[serde(default)]
    pub device_top1_agreement: Option<f64>,
    #[serde(default)]
    pub device_min_top1_agreement: Option<f64>,
    /// Why the latency was measured under an emulator (qemu-user), when it was: the emulator's
    /// timing, not the target's; recorded, and never gated.
    #[serde(default)]
    pub timing_emulated: Option<String>,
    // --- provenance
    pub timestamp: String,
    pub qbench_version: String,
    pub git_commit: String,
    pub git_dirty: String,
    pub candle_version: String,
    pub tract_version: String,
    /// The engine this case ran on, and its version (`tract-onnx 0.23.9`).
    #[serde(default)]
    pub engine_version: String,
    pub rustc_version: String,
    pub cargo_features: String,
    pub debug_build: bool,
    pub os: String,
    pub cpu_model: String,
    pub cpu_flags: Vec<String>,
    pub logical_cores: usize,
    // --- the GPU (CUDA cases only)
    #[serde(default)]
    pub gpu_name: Option<String>,
    #[serde(default)]
    pub gpu_total_memory_bytes: Option<u64>,
    #[serde(default)]
    pub gpu_compute_capability: Option<String>,
    /// The NVIDIA kernel driver's version.
    #[serde(default)]
    pub gpu_driver_version: Option<String>,
    /// The CUDA version the driver supports, and the one qbench's kernels were built for.
    #[serde(default)]
    pub cuda_driver_version: Option<String>,
    #[serde(default)]
    pub cuda_build_version: Option<String>,
}

impl Record {
    /// Whether `other` is the same case (in another run, or a duplicate): the same model,
    /// scheme, backend, batch and measurement point.
    pub fn same_case_as(&self, other: &Record) -> bool {
        (&self.model, &self.scheme, &self.backend, self.batch, &self.sweep)
            == (&other.model, &other.scheme, &other.backend, other.batch, &other.sweep)
    }

    /// The case as reports name it ([`case_name`]).
    pub fn case_name(&self) -> String {
        case_name(&self.model, &self.scheme, &self.backend, self.batch, &self.sweep)
    }

    /// A record of the machine and build `env` describes (the GPU's fields when `on_gpu`),
    /// stamped now; the case fills in the rest.
    pub fn from_environment(env: &Environment, on_gpu: bool) -> Record {
        let gpu = env.gpu.as_ref().filter(|_| on_gpu);
        Record {
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            qbench_version: env.qbench_version.clone(),
            git_commit: env.git_commit.clone(),
            git_dirty: env.git_dirty.clone(),
            candle_version: env.candle_version.clone(),
            tract_version: env.tract_version.clone(),
            rustc_version: env.rustc_version.clone(),
            cargo_features: env.cargo_features.clone(),
            debug_build: env.debug_build,
            os: env.os.clone(),
            cpu_model: env.cpu_model.clone(),
            cpu_flags: env.cpu_flags.clone(),
            logical_cores: env.logical_cores,
            threads: env.threads,
            gpu_name: gpu.map(|g| g.name.clone()),
            gpu_total_memory_bytes: gpu.map(|g| g.memory_bytes),
            gpu_compute_capability: gpu.map(|g| g.compute_capability.clone()),
            gpu_driver_version: gpu.and_then(|g| g.driver_version.clone()),
            cuda_driver_version: gpu.map(|g| g.driver_cuda_version.clone()),
            cuda_build_version: gpu.map(|g| g.build_cuda_version.clone()),
            ..Default::default()
        }
    }

    /// Fidelity against the reference's logits.
    pub fn set_fidelity(&mut self, f: &crate::measure::fidelity::Fidelity) {
        let finite = |v: f64| v.is_finite().then_some(v);
        self.ref_top1_agreement = Some(f.top1_agreement);
        self.ref_top5_agreement = Some(f.top5_agreement);
        self.ref_max_abs_logit_diff = Some(f.max_abs_err);
        self.ref_cosine_mean = finite(f.cosine.mean);
        self.ref_cosine_stderr = finite(f.cosine.stderr);
        self.ref_sqnr_db = f.sqnr_db;
        self.ref_mse_mean = finite(f.mse.mean);
        self.ref_mse_stderr = finite(f.mse.stderr);
        self.ref_nmse = finite(f.nmse);
        self.ref_kl_mean = finite(f.kl.mean);
        self.ref_kl_stderr = finite(f.kl.stderr);
        self.ref_kl_infinite_items = Some(f.kl_infinite_items);
    }

    /// The first output's kind and its kind's metrics (see [`crate::measure::outputs`]); a
    /// fidelity metric that only means something for classes (top-k agreement, KL) is cleared
    /// for other kinds.
    pub fn set_output(&mut self, s: &crate::measure::outputs::OutputScore, classes: bool) {
        self.output_name = s.name.clone();
        self.output_kind = s.kind.clone();
        self.output_kind_source = s.kind_source.clone();
        self.output_item_shape = s.item_shape.clone();
        if s.item_shape.iter().product::<usize>() <= 1 {
            // One value per item has no direction: its cosine is ±1 whatever the error.
            (self.ref_cosine_mean, self.ref_cosine_stderr) = (None, None);
        }
        if !classes {
            (self.ref_top1_agreement, self.ref_top5_agreement) = (None, None);
            (self.ref_kl_mean, self.ref_kl_stderr, self.ref_kl_infinite_items) = (None, None, None);
        }
        self.ref_position_agreement = s.ref_position_agreement;
        self.ref_text_agreement = s.ref_text_agreement;
        (self.exact_match, self.exact_match_ci_low, self.exact_match_ci_high) =
            (s.exact_match, s.exact_match_ci_low, s.exact_match_ci_high);
        self.char_error_rate = s.char_error_rate;
        self.score_threshold = s.threshold;
        self.ref_threshold_agreement = s.ref_threshold_agreement;
        (self.threshold_accuracy, self.threshold_accuracy_ci_low, self.threshold_accuracy_ci_high) =
            (s.threshold_accuracy, s.threshold_accuracy_ci_low, s.threshold_accuracy_ci_high);
        self.ref_retrieval_agreement = s.ref_retrieval_agreement;
        self.retrieval_k = s.retrieval_k;
    }

    /// Whether top-1 means something for the case's first output: a classifier's (or a record
    /// from before output kinds were recorded), not a sequence's, a score's or an embedding's.
    pub fn top1_applies(&self) -> bool {
        self.output_kind.is_empty() || self.output_kind == "classes"
    }

    /// Accuracy against the labels.
    pub fn set_task(&mut self, t: crate::measure::fidelity::TaskMetrics) {
        self.top1_accuracy = Some(t.top1);
        (self.top1_ci_low, self.top1_ci_high) = (Some(t.top1_ci.0), Some(t.top1_ci.1));
        self.top5_accuracy = Some(t.top5);
        (self.top5_ci_low, self.top5_ci_high) = (Some(t.top5_ci.0), Some(t.top5_ci.1));
        self.per_class_accuracy = t.per_class.into_iter().map(|v| v.is_finite().then_some(v)).collect();
        self.confusion = t.confusion;
        self.top1_correct_hex = t
            .correct
            .chunks(4)
            .map(|c| {
                let nibble = c.iter().enumerate().fold(0u32, |acc, (i, &ok)| acc | ((ok as u32) << (3 - i)));
                char::from_digit(nibble, 16).expect("a nibble is a hex digit")
            })
            .collect();
    }

    /// Per-item top-1 correctness (`top1_correct_hex` decoded, `eval_items` long); `None` when
    /// the record has none or it does not decode to that length.
    pub fn top1_correct(&self) -> Option<Vec<bool>> {
        let n = self.eval_items?;
        if self.top1_correct_hex.len() != n.div_ceil(4) {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for d in self.top1_correct_hex.chars() {
            let nibble = d.to_digit(16)?;
            out.extend((0..4).map(|i| nibble & (1 << (3 - i)) != 0));
        }
        out.truncate(n);
        Some(out)
    }

    /// This case's top-1 minus `base`'s on the same items, with the Agresti–Min 95% interval
    /// for matched pairs (`measure::fidelity::matched_difference`); the interval is `None`
    /// when either lacks per-item results or they were scored on different items.
    pub fn top1_difference(&self, base: &Record) -> Option<(f64, Option<(f64, f64)>)> {
        let delta = self.top1_accuracy? - base.top1_accuracy?;
        let paired = match (self.top1_correct(), base.top1_correct()) {
            (Some(a), Some(b)) if self.dataset_sha256 == base.dataset_sha256 => {
                crate::measure::fidelity::matched_difference(&a, &b).map(|(_, lo, hi)| (lo, hi))
            }
            _ => None,
        };
        Some((delta, paired))
    }

    /// The alternating rounds against f32 (`variant_ns[i]` and `f32_ns[i]` from round `i`).
    pub fn set_paired(&mut self, variant_ns: Vec<u64>, f32_ns: Vec<u64>, target_met: Option<bool>) {
        if let Some((r, m)) = crate::measure::stats::paired_ratio_ci(&f32_ns, &variant_ns) {
            self.speedup_vs_f32 = Some(r.ratio);
            // Too few rounds for a 95% interval: none is claimed.
            (self.speedup_vs_f32_ci_low, self.speedup_vs_f32_ci_high) =
                if m.bounded { (Some(r.low), Some(r.high)) } else { (None, None) };
            self.paired_ci_tau = Some(m.tau);
            // Judged on time / f32's time, the orientation of every speed verdict.
            let (low, high) = if m.bounded { (1.0 / r.high, 1.0 / r.low) } else { (f64::NAN, f64::NAN) };
            let time = crate::measure::stats::RatioInterval { ratio: 1.0 / r.ratio, low, high };
            let change = crate::measure::verdict::judge(time, VS_F32_THRESHOLD, None).change;
            self.vs_f32_verdict = Some(change.name().to_string());
            self.slower_than_f32 = change == crate::measure::verdict::Change::Slower;
        } else {
            self.speedup_vs_f32_note = Some(format!(
                "not measured: {} round(s) against f32 gave no ratio (the time budget ended first); raise [measure] max_time_ms or min_samples",
                variant_ns.len()
            ));
        }
        self.paired_ci_target_met = target_met;
        self.paired_ns = variant_ns;
        self.paired_f32_ns = f32_ns;
    }

    pub fn set_latency(&mut self, samples_ns: Vec<u64>, batch: usize) {
        if let Some(s) = LatencyStats::from_samples(&samples_ns) {
            self.latency_min_ns = Some(s.min_ns);
            self.latency_max_ns = Some(s.max_ns);
            self.latency_mean_ns = Some(s.mean_ns);
            self.latency_stddev_ns = Some(s.stddev_ns);
            self.latency_median_ns = Some(s.median_ns);
            self.latency_p90_ns = s.p90_ns;
            self.latency_p95_ns = s.p95_ns;
            self.latency_p99_ns = s.p99_ns;
            self.latency_mad_ns = Some(s.mad_ns);
            self.latency_outliers = Some(s.outliers_low + s.outliers_high);
            // Too few effective samples for a 95% interval: none is claimed.
            let bounded = s.median_ci.bounded;
            self.latency_median_ci_low_ns = bounded.then_some(s.median_ci.low);
            self.latency_median_ci_high_ns = bounded.then_some(s.median_ci.high);
            self.latency_ci_method = crate::measure::stats::CI_METHOD.to_string();
            self.latency_ci_tau = Some(s.median_ci.tau);
            self.latency_n_eff = Some(s.median_ci.n_eff);
            self.throughput_items_per_s = (s.mean_ns > 0.0).then(|| batch as f64 * 1e9 / s.mean_ns);
        }
        self.samples_ns = samples_ns;
    }
}

/// The machine and build a run happened on; written to `environment.json`
/// and copied into every record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub qbench_version: String,
    pub git_commit: String,
    /// "true", "false" or "unknown" (no git at build time).
    pub git_dirty: String,
    pub candle_version: String,
    pub tract_version: String,
    pub rustc_version: String,
    pub cargo_features: String,
    pub debug_build: bool,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    /// The ISA extensions that decide which kernels run.
    pub cpu_flags: Vec<String>,
    pub logical_cores: usize,
    pub memory_bytes: Option<u64>,
    /// cpufreq scaling governor of CPU 0 (e.g. `performance`), where the OS exposes it.
    #[serde(default)]
    pub cpu_governor: Option<String>,
    pub threads: usize,
    /// The GPU the CUDA backends ran on, when the suite has one and it could be used.
    #[serde(default)]
    pub gpu: Option<GpuInfo>,
    /// Environment variables the engines read (`CANDLE_*`, `TRACT_*`, `RAYON_*`, `CUDA_*`), as
    /// `NAME=value`: `CANDLE_DEQUANTIZE_ALL=1` changes what candle runs.
    #[serde(default)]
    pub engine_env: Vec<String>,
}

/// ISA flags worth recording (x86 names from /proc/cpuinfo, Arm names from its Features line).
const INTERESTING_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimddp",
    "asimdhp",
    "sve",
    "i8mm",
    "bf16",
];

impl Environment {
    /// `gpu`: the CUDA device the run's GPU backends use, when it has any and it could be used.
    pub fn capture(threads: usize, gpu: Option<GpuInfo>) -> Environment {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| {
            cpuinfo
                .lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let cpu_model = field("model name")
            .or_else(|| field("Model"))
            .or_else(|| field("CPU part"))
            .unwrap_or_else(|| "unknown".into());
        let flags_line = field("flags").or_else(|| field("Features")).unwrap_or_default();
        let present: Vec<&str> = flags_line.split_whitespace().collect();
        let cpu_flags = INTERESTING_FLAGS.iter().filter(|f| present.contains(f)).map(|f| f.to_string()).collect();
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Environment {
            qbench_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("QBENCH_GIT_COMMIT").into(),
            git_dirty: env!("QBENCH_GIT_DIRTY").into(),
            candle_version: env!("QBENCH_CANDLE_VERSION").into(),
            tract_version: env!("QBENCH_TRACT_VERSION").into(),
            rustc_version: env!("QBENCH_RUSTC_VERSION").into(),
            cargo_features: env!("QBENCH_FEATURES").into(),
            debug_build: cfg!(debug_assertions),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            kernel,
            cpu_model,
            cpu_flags,
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            cpu_governor: std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
                .ok()
                .map(|s| s.trim().to_string()),
            threads,
            gpu,
            engine_env: engine_env(),
        }
    }
}

/// The environment variables that change what the engines do, sorted.
fn engine_env() -> Vec<String> {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| ["CANDLE_", "TRACT_", "RAYON_", "CUDA_"].iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vars.sort();
    vars
}

/// A records file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write {path}; check that the directory is writable, or choose another with --out <dir>")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a qbench record ({field}: {reason}); pass the records.jsonl a run wrote")]
    Parse { path: PathBuf, line: usize, field: String, reason: String },
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}

/// One calibration subset's result (`Record::calibration_spread`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRepeat {
    /// Which subset (0: the run's own calibration).
    pub subset: usize,
    /// Items it held.
    pub items: usize,
    pub top1_accuracy: Option<f64>,
    pub ref_sqnr_db: Option<f64>,
    /// Why this subset has no figures (its calibration or evaluation failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `records.jsonl`: one JSON object per case, appended and flushed as each case ends, so a
/// crash or a failing case loses nothing measured before it.
pub struct RecordSink {
    path: PathBuf,
    file: File,
}

impl RecordSink {
    pub fn open(path: &Path) -> Result<RecordSink, RecordError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RecordError::Write { path: path.to_path_buf(), source })?;
        Ok(RecordSink { path: path.to_path_buf(), file })
    }

    /// Appends one record as one line, with one write. If the write fails part-way (a full
    /// disk), the file is cut back to its last complete line, so the records before stay
    /// readable.
    pub fn append(&mut self, record: &Record) -> Result<(), RecordError> {
        let mut line = serde_json::to_vec(record).expect("a Record always serializes");
        line.push(b'\n');
        let before = self.file.metadata().map(|m| m.len());
        let written = self.file.write_all(&line).and_then(|_| self.file.flush());
        if let Err(source) = written {
            if let Ok(len) = before {
                let _ = self.file.set_len(len);
            }
            return Err(RecordError::Write { path: self.path.clone(), source });
        }
        Ok(())
    }
}

/// A records file as read: its records, and the line number of an incomplete last line that was
/// left out (a run stopped while writing it: a full disk, a kill).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsFile {
    pub records: Vec<Record>,
    pub torn_line: Option<usize>,
}

/// Reads a `records.jsonl` back, leaving out an incomplete last line (no final newline, and not
/// a record); any other line that does not parse is an error naming its line.
pub fn read_records_file(path: &Path) -> Result<RecordsFile, RecordError> {
    let bytes = crate::files::read_bounded(path, crate::files::MAX_RECORDS_BYTES, "a records file")?;
    parse_records(path, &bytes)
}

/// Parses the bytes of a records file (`path` names it in errors), as [`read_records_file`].
pub fn parse_records(path: &Path, bytes: &[u8]) -> Result<RecordsFile, RecordError> {
    let text = String::from_utf8_lossy(bytes);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = RecordsFile { records: Vec::with_capacity(lines.len()), torn_line: None };
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_path_to_error::deserialize::<_, Record>(&mut serde_json::Deserializer::from_str(line)) {
            Ok(r) => out.records.push(r),
            Err(_) if i + 1 == lines.len() && !complete => out.torn_line = Some(i + 1),
            Err(e) => {
                let field = match e.path().to_string() {
                    p if p == "." => "the line".to_string(),
                    p => format!("field `{p}`"),
                };
                // serde quotes the offending value; a long one is cut, so the message stays a line.
                let mut reason = e.into_inner().to_string();
                if reason.len() > 160 {
                    let cut = (0..=160).rev().find(|&k| reason.is_char_boundary(k)).unwrap_or(0);
                    reason.truncate(cut);
                    reason.push('…');
                }
                return Err(RecordError::Parse { path: path.to_path_buf(), line: i + 1, field, reason });
            }
        }
    }
    Ok(out)
}

/// Reads a `records.jsonl` back ([`read_records_file`]'s records: an incomplete last line is
/// left out; any other line that does not parse is an error naming its line).
pub fn read_records(path: &Path) -> Result<Vec<Record>, RecordError> {
    read_records_file(path).map(|f| f.records)
}

/// A case as reports name it: `model / scheme / backend / batch N`, and its sweep point's
/// values when the suite sweeps some (`/ threads=2`).
pub fn case_name(model: &str, scheme: &str, backend: &str, batch: usize, sweep: &str) -> String {
    let mut name = format!("{model} / {scheme} / {backend} / batch {batch}");
    if !sweep.is_empty() {
        name.push_str(" / ");
        name.push_str(sweep);
    }
    name
}

/// One case a run set out to measure (`cases.json`, written when the run starts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedCase {
    pub case_index: usize,
    pub model: String,
    pub scheme: String,
    pub backend: String,
    pub batch: usize,
    /// [`Record::sweep`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sweep: String,
}

impl PlannedCase {
    pub fn of(r: &Record) -> PlannedCase {
        PlannedCase {
            case_index: r.case_index,
            model: r.model.clone(),
            scheme: r.scheme.clone(),
            backend: r.backend.clone(),
            batch: r.batch,
            sweep: r.sweep.clone(),
        }
    }

    fn name(&self) -> String {
        format!(
            "case {}: {}",
            self.case_index,
            case_name(&self.model, &self.scheme, &self.backend, self.batch, &self.sweep)
        )
    }
}

/// How a run's records compare with the cases it set out to measure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completeness {
    /// Planned cases with no record: the run ended early (or a record was lost).
    pub missing: Vec<String>,
    /// Cases with more than one record.
    pub duplicated: Vec<String>,
    /// Records of cases the run did not plan (another suite's, or another shard's).
    pub foreign: Vec<String>,
    /// Why the planned cases cannot be read (`cases.json` deleted, corrupt, not a file): then
    /// nothing says the run is complete.
    pub unknown: Option<String>,
}

impl Completeness {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.foreign.is_empty() && self.unknown.is_none()
    }

    /// One line per problem, for a report or a gate summary.
    pub fn describe(&self) -> Vec<String> {
        let list = |what: &str, v: &[String]| (!v.is_empty()).then(|| format!("{} {what}: {}", v.len(), v.join("; ")));
        [
            self.unknown.clone(),
            list("planned case(s) have no record (the run ended early)", &self.missing),
            list("case(s) have more than one record", &self.duplicated),
            list("record(s) are of cases this run did not plan", &self.foreign),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Compares `records` with the `cases.json` the run in `dir` wrote when it started; `None` for a
/// folder made before qbench wrote one (no `cases.json`, no `run.json`). A `cases.json` that
/// cannot be read, or one missing beside a `run.json`, makes completeness unknown, never assumed.
pub fn completeness(dir: &Path, records: &[Record]) -> Option<Completeness> {
    let path = dir.join("cases.json");
    let present = std::fs::symlink_metadata(&path).is_ok();
    if !present && std::fs::symlink_metadata(dir.join("run.json")).is_err() {
        return None;
    }
    let parsed = crate::files::read_bounded(&path, crate::files::MAX_SIDE_FILE_BYTES, "a run's planned cases")
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<Vec<PlannedCase>>(&b).map_err(|e| format!("{}: {e}", path.display())));
    let planned = match parsed {
        Ok(p) => p,
        Err(why) => {
            return Some(Completeness {
                unknown: Some(format!(
                    "the run's planned cases cannot be read ({why}); whether every case was recorded is unknown"
                )),
                ..Completeness::default()
            })
        }
    };
    let got: Vec<PlannedCase> = records.iter().map(PlannedCase::of).collect();
    let mut out = Completeness::default();
    for p in &planned {
        match got.iter().filter(|g| *g == p).count() {
            0 => out.missing.push(p.name()),
            1 => {}
            _ => out.duplicated.push(p.name()),
        }
    }
    out.foreign = got.iter().filter(|g| !planned.contains(g)).map(|g| g.name()).collect();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        Record { case_index: i, model: "m".into(), scheme: "f32".into(), ..Default::default() }
    }

    #[test]
    fn a_case_is_flagged_slower_than_f32_only_when_its_paired_interval_says_so() {
        // 60 rounds, f32 at 100 µs ± a little; the variant at a factor of f32's time.
        let rounds = |factor: f64| {
            let f: Vec<u64> = (0..60).map(|i| 100_000 + (i * 37 % 11) * 100).collect();
            let q: Vec<u64> =
                f.iter().enumerate().map(|(i, &t)| (t as f64 * factor) as u64 + (i as u64 % 7) * 50).collect();
            let mut r = Record::default();
            r.set_paired(q, f, None);
            r
        };
        let slow = rounds(2.5);
        assert!(slow.slower_than_f32);
        assert_eq!(slow.vs_f32_verdict.as_deref(), Some("slower"));
        assert!(slow.speedup_vs_f32.unwrap() < 0.45);
        let fast = rounds(0.5);
        assert!(!fast.slower_than_f32);
        assert_eq!(fast.vs_f32_verdict.as_deref(), Some("faster"));
        // 1% slower: below the 2% threshold, so not "slower".
        let close = rounds(1.01);
        assert!(!close.slower_than_f32, "{:?}", close.vs_f32_verdict);
        // Two rounds: no interval, so nothing is claimed either way.
        let mut few = Record::default();
        few.set_paired(vec![300, 310], vec![100, 101], None);
        assert!(!few.slower_than_f32);
        assert_eq!(few.vs_f32_verdict.as_deref(), Some("inconclusive"));
    }

    #[test]
    fn a_torn_last_line_is_left_out_and_other_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut sink = RecordSink::open(&path).unwrap();
        sink.append(&record(0)).unwrap();
        sink.append(&record(1)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        // A run stopped half-way through writing a third record.
        let third = serde_json::to_vec(&record(2)).unwrap();
        std::fs::write(&path, [&whole[..], &third[..third.len() / 2]].concat()).unwrap();
        let f = read_records_file(&path).unwrap();
        assert_eq!((f.records.len(), f.torn_line), (2, Some(3)));
        assert_eq!(read_records(&path).unwrap(), vec![record(0), record(1)]);
        // The same damage in the middle of the file is corruption: an error naming the line.
        let mut middle = third[..third.len() / 2].to_vec();
        middle.push(b'\n');
        std::fs::write(&path, [&middle[..], &whole[..]].concat()).unwrap();
        let e = read_records(&path).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("not a qbench record"), "{e}");
        // A complete file has no torn line; a missing one is a read error, not a write error.
        std::fs::write(&path, &whole).unwrap();
        assert_eq!(read_records_file(&path).unwrap().torn_line, None);
        let e = read_records(&dir.path().join("nope.jsonl")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read"), "{e}");
    }

    #[test]
    fn fields_from_a_newer_qbench_are_ignored() {
        let mut value = serde_json::to_value(record(4)).unwrap();
        value.as_object_mut().unwrap().insert("a_field_from_the_future".into(), serde_json::json!([1, 2]));
        let r: Record = serde_json::from_value(value).unwrap();
        assert_eq!(r, record(4));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_failed_append_leaves_the_complete_lines() {
        // /dev/full accepts the open and fails every write with ENOSPC: nothing half-written
        // stays (set_len on a device is refused, so check the error instead).
        let mut sink = RecordSink::open(Path::new("/dev/full")).unwrap();
        let e = sink.append(&record(0)).unwrap_err().to_string();
        assert!(e.starts_with("cannot write /dev/full"), "{e}");
    }
}
