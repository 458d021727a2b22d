//! The raw suite file, exactly as written: serde types with `deny_unknown_fields`.
//!
//! Values that later checks may reject keep their position (`Spanned`) so the
//! error can name the line. Nothing here does I/O or validation; see `resolve`.

use serde::Deserialize;
use toml::Spanned;

/// Suite format v1, as parsed from TOML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSpec {
    /// Used as the report folder name: letters, digits, `-`, `_`, `.`.
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Quantization schemes to apply to every model (`qbench list schemes`).
    pub schemes: Spanned<Vec<Spanned<String>>>,
    /// Engines to run every variant on (`qbench list backends`).
    pub backends: Spanned<Vec<Spanned<String>>>,
    /// Batch sizes for latency; accuracy is evaluated at each of them too.
    pub batch_sizes: Spanned<Vec<Spanned<i64>>>,
    /// The GPU the CUDA backends run on: `cuda:N` (default `cuda:0`).
    #[serde(default)]
    pub device: Option<Spanned<String>>,
    /// Fail every case whose scheme the backend would only emulate.
    #[serde(default)]
    pub require_native: bool,
    #[serde(default)]
    pub measure: Option<Spanned<MeasureSpec>>,
    #[serde(default)]
    pub output: Option<OutputSpec>,
    pub datasets: Spanned<Vec<Spanned<DatasetSpec>>>,
    pub models: Spanned<Vec<Spanned<ModelSpec>>>,
    /// The calibration split static schemes calibrate on.
    #[serde(default)]
    pub calibration: Option<Spanned<CalibrationSpec>>,
    /// A tuning split held out of the evaluation items: `qbench tune` decides on it, and the
    /// suite's cases are scored on the rest (the test split) unless `evaluate = "tune"`.
    #[serde(default)]
    pub tuning: Option<Spanned<TuningSpec>>,
    /// Per-layer schemes: mixed precision, or layers kept in f32.
    #[serde(default)]
    pub overrides: Vec<Spanned<OverrideSpec>>,
    /// Pass/fail thresholds checked after the run (`qbench check`, exit code 2 on failure).
    #[serde(default)]
    pub gates: Vec<Spanned<GateSpec>>,
    /// The tolerances `qbench bundle` gives a target device.
    #[serde(default)]
    pub bundle: Option<Spanned<BundleSpec>>,
    /// The load scenario measured beside single-stream latency (default: none beyond it).
    #[serde(default)]
    pub scenario: Option<Spanned<ScenarioSpec>>,
    /// Cases the matrix leaves out: every (model, scheme, backend, batch) the rule matches.
    #[serde(default)]
    pub exclude: Vec<Spanned<MatrixRuleSpec>>,
    /// Cases the matrix adds (after `exclude`): each listed combination, for the models it names.
    #[serde(default)]
    pub include: Vec<Spanned<MatrixRuleSpec>>,
}

/// `[scenario]`: a load scenario after each case's single-stream latency (MLPerf LoadGen's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// "single-stream" (default: latency only), "offline" or "server".
    pub kind: Spanned<String>,
    /// offline: sessions running at once, each on `[measure] threads` (default 1).
    pub streams: Option<Spanned<i64>>,
    /// offline: how long the streams run; server: the least span of arrivals per rate (default
    /// 1000).
    pub min_duration_ms: Option<Spanned<i64>>,
    /// server: the least queries per rate (default 256).
    pub min_queries: Option<Spanned<i64>>,
    /// server: the arrival rate, queries (one batch each) per second.
    pub target_qps: Option<Spanned<f64>>,
    /// server: the latency bound the percentile must meet, milliseconds.
    pub latency_bound_ms: Option<Spanned<f64>>,
    /// server: which latency percentile (default 99).
    pub percentile: Option<Spanned<f64>>,
    /// server: also search the highest rate that meets the bound (default true).
    pub search: Option<bool>,
    /// server: seed of the arrival times (default 0).
    pub seed: Option<Spanned<i64>>,
}

/// `[[exclude]]` / `[[include]]`: a rule over the case matrix. In an exclude, each list holds
/// globs (batch sizes: numbers) and a case is left out when it matches every list given; in an
/// include, schemes, backends and batch sizes are names and numbers, every combination of them
/// is added, and a list left out takes the model's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRuleSpec {
    pub models: Option<Spanned<Vec<Spanned<String>>>>,
    pub schemes: Option<Spanned<Vec<Spanned<String>>>>,
    pub backends: Option<Spanned<Vec<Spanned<String>>>>,
    pub batch_sizes: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Why (shown by `run --dry-run`), e.g. "candle-onnx has no integer ONNX ops".
    pub reason: Option<String>,
}

/// `[bundle]`: how far a target device's outputs may be from the workstation's
/// (`crate::bundle::TOLERANCE_RULE`); each omitted value keeps its default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    pub floor_rel: Option<Spanned<f64>>,
    pub factor: Option<Spanned<f64>>,
    pub min_top1_agreement: Option<Spanned<f64>>,
}

/// `[[gates]]`: thresholds for the cases its filters select (all cases by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Shown in reports and JUnit; default "gate N".
    pub name: Option<String>,
    /// Globs over scheme names, model names, backend names.
    pub schemes: Option<Spanned<Vec<Spanned<String>>>>,
    pub models: Option<Spanned<Vec<Spanned<String>>>>,
    pub backends: Option<Spanned<Vec<Spanned<String>>>>,
    // absolute
    pub min_top1: Option<Spanned<f64>>,
    pub max_size_bytes: Option<Spanned<i64>>,
    pub max_p99_ms: Option<Spanned<f64>>,
    // relative to the f32 case / reference
    pub max_delta_top1_pts: Option<Spanned<f64>>,
    pub min_sqnr_db: Option<Spanned<f64>>,
    pub min_top1_agreement: Option<Spanned<f64>>,
    /// KL divergence from the reference's distribution, mean per item (per token for a
    /// language model), nats.
    pub max_kl: Option<Spanned<f64>>,
    /// A language model's perplexity over its reference variant's, in percent.
    pub max_perplexity_increase_pct: Option<Spanned<f64>>,
    // relative to a baseline run
    pub max_latency_regression_pct: Option<Spanned<f64>>,
    // load scenarios ([scenario])
    /// Offline items per second (or, without an offline run, the single-stream throughput).
    pub min_items_per_s: Option<Spanned<f64>>,
    /// The server scenario's latency percentile at its target rate, milliseconds.
    pub max_p99_ms_at_rate: Option<Spanned<f64>>,
}

/// `[calibration]`: `items` items of each model's dataset calibrate static schemes (chosen as
/// `select` says); every case of the suite is then evaluated on the other items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSpec {
    pub items: Spanned<i64>,
    /// `random` (default), `first` or `stratified` (by label).
    pub select: Option<Spanned<String>>,
    /// Seed of a random or stratified choice (default 0).
    pub seed: Option<Spanned<i64>>,
    /// `p` of the percentile calibrator: the central p% of values is kept (default 99.99).
    pub percentile: Option<Spanned<f64>>,
    /// Calibrate each static scheme on this many disjoint subsets of `items` items (default 1)
    /// and report the spread of accuracy and SQNR across them.
    pub repeats: Option<Spanned<i64>>,
}

/// `[tuning]`: `items` of the evaluation items (those left after calibration) form the tuning
/// split, chosen as `select` says; the others are the test split.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningSpec {
    pub items: Spanned<i64>,
    /// `random` (default), `first` or `stratified` (by label).
    pub select: Option<Spanned<String>>,
    /// Seed of a random or stratified choice (default 0).
    pub seed: Option<Spanned<i64>>,
    /// Which split the suite's cases are scored on: `test` (default) or `tune`.
    pub evaluate: Option<Spanned<String>>,
}

/// `[[overrides]]`: give the matching layers another scheme.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    /// Layer name globs (`*`, `?`, `[..]`), or `@first` / `@last` (first / last weighted layer).
    pub layers: Spanned<Vec<Spanned<String>>>,
    /// The scheme those layers get (`f32` keeps them in float).
    pub scheme: Spanned<String>,
    /// Globs over the suite's scheme names this applies to; default: every scheme but f32.
    pub schemes: Option<Spanned<Vec<Spanned<String>>>>,
    /// Model names this applies to; default: every model.
    pub models: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[measure]`: how latency is sampled. Every field is optional, and each may be a list: a
/// sweep, whose every combination of values is a measurement point each case runs at.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    pub warmup_iters: Option<Spanned<Sweep<i64>>>,
    pub warmup_ms: Option<Spanned<Sweep<i64>>>,
    /// Target 95% CI half-width of the median, in percent of the median (0 disables).
    pub target_ci_pct: Option<Spanned<Sweep<f64>>>,
    pub min_samples: Option<Spanned<Sweep<i64>>>,
    pub max_samples: Option<Spanned<Sweep<i64>>>,
    pub max_time_ms: Option<Spanned<Sweep<i64>>>,
    pub threads: Option<Spanned<Sweep<i64>>>,
    /// Measure each quantized case against its backend's f32 in alternating rounds (default
    /// true): the speedup that holds when the machine's speed drifts.
    pub paired: Option<Spanned<Sweep<bool>>>,
}

/// One value, or a list of values to sweep over (`threads = [1, 2, 4]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Sweep<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> Sweep<T> {
    /// The values, one for a single value.
    pub fn values(&self) -> Vec<T> {
        match self {
            Sweep::One(v) => vec![v.clone()],
            Sweep::Many(v) => v.clone(),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Sweep<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Through a TOML value: a list is a sweep, anything else one value of the key's type.
        match toml::Value::deserialize(d)? {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| T::deserialize(v).map_err(|e| D::Error::custom(format!("in the list: {e}"))))
                .collect::<Result<Vec<T>, D::Error>>()
                .map(Sweep::Many),
            v => T::deserialize(v)
                .map(Sweep::One)
                .map_err(|e| D::Error::custom(format!("{e}, or a list of them to sweep"))),
        }
    }
}

/// `[output]`: where runs are written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Relative to the current directory, not to the suite file.
    pub dir: Option<String>,
}

/// `[[datasets]]`: one dataset. Paths are relative to the suite file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: Spanned<String>,
    pub format: Spanned<String>,
    /// `idx`: the images file.
    pub images: Option<Spanned<String>>,
    /// `npy`: the .npy or .npz file holding the items.
    pub inputs: Option<Spanned<String>>,
    /// `npy` with an .npz file: the array's name.
    pub array: Option<Spanned<String>>,
    /// `npy` with an .npz file: several arrays, one per input of a model with several inputs
    /// (each item is their items concatenated, in this order).
    pub arrays: Option<Spanned<Vec<String>>>,
    /// Class labels: an IDX labels file (`idx`, required), or a CSV or integer .npy (`npy`,
    /// optional: without labels the dataset is outputs-only).
    pub labels: Option<Spanned<String>>,
    /// CSV labels: the column to read (default: a column named `label`, else the last).
    pub label_column: Option<Spanned<String>>,
    /// A text file with one label per item, a line each (UTF-8): what a sequence output with
    /// CTC decoding should read (exact match, character error rate).
    pub text_labels: Option<Spanned<String>>,
    /// `text`: the tokenizer.json that turns each line into token ids.
    pub tokenizer: Option<Spanned<String>>,
    /// `text`: tokens per item (longer texts are truncated, shorter ones padded).
    pub seq_len: Option<Spanned<i64>>,
    /// `text`: tokenize the whole file as one text and cut it into windows of `seq_len` tokens
    /// (a language model's perplexity text) instead of one padded row per line.
    pub windows: Option<Spanned<bool>>,
    /// `raw`: bytes per item (longer files are cut, shorter ones zero-padded).
    pub length: Option<Spanned<i64>>,
    /// `images`: the preprocessing.
    pub image: Option<Spanned<ImageSpec>>,
}

/// `[datasets.image]`: how images become tensors. Every field is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// 3 (RGB, default) or 1 (grayscale).
    pub channels: Option<Spanned<i64>>,
    /// `[height, width]`, or one number: the shorter side (aspect ratio kept).
    pub resize: Option<Spanned<SizeSpec>>,
    /// Center crop `[height, width]`.
    pub crop: Option<Spanned<Vec<i64>>>,
    /// Multiplies pixel values (0–255) first; default 1/255.
    pub scale: Option<Spanned<f64>>,
    /// Per channel, subtracted after scaling (default 0).
    pub mean: Option<Spanned<Vec<f64>>>,
    /// Per channel, divides after the mean (default 1).
    pub std: Option<Spanned<Vec<f64>>>,
    /// "nchw" (default) or "nhwc".
    pub layout: Option<Spanned<String>>,
}

/// A resize: `[h, w]` or the shorter side.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    Side(i64),
    Exact(Vec<i64>),
}

/// `[[models]]`: one reference model: a zoo architecture with weights, or a model file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: Spanned<String>,
    /// A built-in architecture (`qbench list models`).
    pub zoo: Option<Spanned<String>>,
    /// safetensors file with the zoo model's trained weights, relative to the suite file.
    pub weights: Option<Spanned<String>>,
    /// A model file (`.onnx`, or a BERT checkpoint's `.safetensors`), relative to the suite file.
    pub path: Option<Spanned<String>>,
    /// A safetensors checkpoint's `config.json` (default: `config.json` beside it).
    pub config: Option<Spanned<String>>,
    /// The model file's inputs, as the suite feeds them.
    pub inputs: Option<Spanned<Vec<Spanned<InputSpec>>>>,
    /// Values bound to symbolic dims named in `inputs` shapes, e.g. `dims = { seq = 128 }`.
    pub dims: Option<Spanned<std::collections::BTreeMap<String, Spanned<i64>>>>,
    /// Which graph output to score (default: the first).
    pub output: Option<Spanned<String>>,
    /// The outputs to score, each with its kind (`[[models.outputs]]`); instead of `output`.
    pub outputs: Option<Spanned<Vec<Spanned<ModelOutputSpec>>>>,
    /// Name of the dataset to evaluate on; may be left out when the suite has one dataset.
    pub dataset: Option<Spanned<String>>,
    /// This model's scenario kind instead of `[scenario] kind` (its parameters stay the suite's).
    pub scenario: Option<Spanned<String>>,
    /// This model's schemes, backends and batch sizes, instead of the suite's.
    pub schemes: Option<Spanned<Vec<Spanned<String>>>>,
    pub backends: Option<Spanned<Vec<Spanned<String>>>>,
    pub batch_sizes: Option<Spanned<Vec<Spanned<i64>>>>,
}

/// `[[models.outputs]]`: one output of a model file and what it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOutputSpec {
    /// The graph's output name; may be left out for the graph's first output when only one
    /// output is declared.
    pub name: Option<Spanned<String>>,
    /// "classes", "sequence", "scores", "embedding" or "regression"; default: inferred from
    /// the output's shape.
    pub kind: Option<Spanned<String>>,
    /// sequence: the axis of an item's output that runs over positions (0 or 1; the other
    /// holds the classes). Default 0.
    pub position_axis: Option<Spanned<i64>>,
    /// sequence: decode greedily as CTC with this blank class.
    pub ctc_blank: Option<Spanned<i64>>,
    /// sequence (CTC): each class's character, in class order (the blank's included).
    pub alphabet: Option<Spanned<String>>,
    /// sequence (CTC): a file with each class's symbol on its own line, in class order.
    pub alphabet_file: Option<Spanned<String>>,
    /// scores: the decision threshold (default 0.5).
    pub threshold: Option<Spanned<f64>>,
    /// embedding: neighbours of the retrieval agreement (default 5).
    pub k: Option<Spanned<i64>>,
}

/// `[[models.inputs]]`: one input of a model file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: Spanned<String>,
    /// Dims, batch first: numbers, or symbols (the batch axis's symbol takes each batch size;
    /// any other symbol must be bound in `dims`).
    pub shape: Spanned<Vec<Spanned<DimSpec>>>,
    /// Element type fed to the model: "f32", "f16", "i64", "i32" or "u8"; default: the type
    /// the model file declares for the input.
    pub dtype: Option<Spanned<String>>,
    /// Feed this constant (every element, every run) instead of dataset values: a scalar such
    /// as a sample rate, a recurrent state's zeros. Its `shape` is then the input's whole shape
    /// in the file's order.
    pub value: Option<Spanned<f64>>,
    /// Where the batch sits in `shape` (its axis in the file's order, e.g. 1 for
    /// `[time, batch, features]`). A data input's default is 0; with `value`, the constant is
    /// repeated along it, and left out, the constant has no batch axis.
    pub batch_axis: Option<Spanned<i64>>,
}

/// One dim of a declared shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DimSpec {
    Fixed(i64),
    Symbol(String),
}
