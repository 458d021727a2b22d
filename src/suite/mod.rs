//! Suites: the TOML file a user writes, validated once into a typed [`Suite`],
//! then expanded into [`Case`]s.
//!
//! `spec` holds the raw serde types; [`Suite::load`] resolves them: names become
//! enums, paths are resolved against the suite file and checked to exist, and
//! defaults are applied. Every rejection names the file and the line.

mod case;
mod diagnostic;
mod filter;
mod gates;
mod matrix;
pub mod scenario;
mod set;
pub mod spec;

pub use case::{excluded, expand, select, Case, Shard};
pub use diagnostic::SuiteError;
pub use filter::{CaseFilter, FILTER_FIELDS};
pub use gates::gates_of;
pub use matrix::{Exclude, Include};
pub use set::apply_sets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::backend::BackendId;
use crate::data::DatasetFormat;
use crate::measure::latency::SamplerSettings;
use crate::measure::outputs::OutputKind;
use crate::model::onnx_file::InputDecl;
use crate::model::ModelKind;
use crate::quant::{Plan, SchemeId};
use crate::zoo::ZooModelId;
use diagnostic::{improve_serde_message, unknown, Locator};
use spec::{MeasureSpec, SuiteSpec};

/// A validated suite. Built only by [`Suite::load`] / [`Suite::from_str`].
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub description: Option<String>,
    /// The suite file, as given.
    pub file: PathBuf,
    /// sha256 of the suite's text (the file's bytes, with `--set` changes applied), hex.
    pub sha256: String,
    /// The suite's text as validated: the file's, with `sets` applied.
    pub source: String,
    /// `--set KEY=VALUE` changes applied to the file's text, in order.
    pub sets: Vec<String>,
    /// Every scheme, backend and batch size some case uses, in the suite's order (its own
    /// lists first); each model's own are in [`ModelEntry`], and [`expand`] gives the cases.
    pub schemes: Vec<SchemeId>,
    pub backends: Vec<BackendId>,
    /// The CUDA device ordinal the CUDA backends run on (`device = "cuda:N"`).
    pub cuda_device: usize,
    pub batch_sizes: Vec<usize>,
    /// Cases that a backend would only emulate fail instead of running.
    pub require_native: bool,
    /// `[measure]`'s measurement points: one, or every combination of its swept values. Each
    /// case runs at one ([`Case::point`]).
    pub points: Vec<MeasurePoint>,
    /// Runs go to `<output_dir>/<suite name>/<run id>/`.
    pub output_dir: PathBuf,
    pub datasets: Vec<DatasetEntry>,
    pub models: Vec<ModelEntry>,
    /// The calibration split, when the suite has one.
    pub calibration: Option<CalibrationSettings>,
    /// The tuning split held out of the evaluation items, when the suite has one.
    pub tuning: Option<TuningSettings>,
    /// Per-layer scheme overrides, applied in order (later entries win).
    pub overrides: Vec<Override>,
    /// Thresholds checked after the run.
    pub gates: Vec<crate::gate::Gate>,
    /// The tolerances `qbench bundle` gives a target device (`[bundle]`, else the defaults).
    pub bundle: crate::bundle::Tolerances,
    /// `[[exclude]]` rules: cases of the matrix left out.
    pub exclude: Vec<Exclude>,
    /// `[[include]]` rules: cases added to the matrix.
    pub include: Vec<Include>,
}

/// One measurement point of `[measure]`: how a case's latency is sampled, on how many threads.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurePoint {
    pub sampler: SamplerSettings,
    /// Threads each backend may use. Engines set their pools once per process, so a run
    /// measures each thread count of a sweep in a process of its own.
    pub threads: usize,
    /// Each quantized case is also measured against its backend's f32 in alternating rounds
    /// (`[measure] paired`, default true): the record's `speedup_vs_f32`.
    pub paired: bool,
    /// The swept keys' values here, e.g. `threads=2`; empty when nothing is swept.
    pub label: String,
}

/// `[calibration]`, resolved.
#[derive(Debug, Clone)]
pub struct CalibrationSettings {
    /// Items of each dataset held out to calibrate; evaluation uses the others.
    pub items: usize,
    /// Which items ([`crate::data::split`]).
    pub selection: crate::data::split::Selection,
    pub percentile: f64,
    /// Disjoint calibration subsets each static scheme is calibrated on (`repeats`, default
    /// 1): the first is the run's calibration, the others measure the spread.
    pub repeats: usize,
    /// `file:line:column` of `items`, for errors found once the dataset is loaded.
    pub items_at: String,
}

/// `[tuning]`, resolved: `items` of the evaluation items form the tuning split.
#[derive(Debug, Clone)]
pub struct TuningSettings {
    pub items: usize,
    pub selection: crate::data::split::Selection,
    /// The split the suite's cases are scored on.
    pub evaluate: SplitPart,
    /// `file:line:column` of `items`, for errors found once the dataset is loaded.
    pub items_at: String,
}

impl TuningSettings {
    /// Which split the cases are scored on, and how the tuning items were chosen.
    pub fn describe(&self) -> String {
        match self.evaluate {
            SplitPart::Tune => {
                format!("tuning split: {} evaluation items chosen {}", self.items, self.selection.describe())
            }
            SplitPart::Test => format!(
                "test split: the evaluation items not among the {} held out for tuning (chosen {})",
                self.items,
                self.selection.describe()
            ),
        }
    }
}

/// One side of the tuning split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPart {
    /// The items tuning decides on.
    Tune,
    /// The rest: the final verdict.
    Test,
}

impl SplitPart {
    pub fn name(self) -> &'static str {
        match self {
            SplitPart::Tune => "tune",
            SplitPart::Test => "test",
        }
    }
}

/// `select` and `seed` of `[calibration]` or `[tuning]`.
fn resolve_selection(
    loc: &Locator,
    table: &str,
    select: &Option<Spanned<String>>,
    seed: &Option<Spanned<i64>>,
    fallback: std::ops::Range<usize>,
) -> Result<crate::data::split::Selection, SuiteError> {
    use crate::data::split::Selection;
    let seed_value = match seed {
        None => 0,
        Some(s) => u64::try_from(*s.get_ref()).map_err(|_| {
            loc.at(s.span(), format!("{table}.seed = {} is negative; use a seed of 0 or more", s.get_ref()))
        })?,
    };
    let selection = match select.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("random") => Selection::Random { seed: seed_value },
        Some("first") => Selection::First,
        Some("stratified") => Selection::Stratified { seed: seed_value },
        Some(other) => {
            let span = select.as_ref().map(|s| s.span()).unwrap_or(fallback);
            return Err(loc.at(
                span,
                format!(
                    "{table}.select = \"{other}\" is not a way to choose items; use one of {}",
                    Selection::NAMES.join(", ")
                ),
            ));
        }
    };
    if let (Selection::First, Some(s)) = (selection, seed) {
        return Err(loc.at(
            s.span(),
            format!("{table}.seed has no effect with select = \"first\"; remove it or use select = \"random\""),
        ));
    }
    Ok(selection)
}

/// One `[[overrides]]` entry, resolved.
#[derive(Debug, Clone)]
pub struct Override {
    pub layers: Vec<LayerPattern>,
    pub scheme: SchemeId,
    /// Suite scheme-name globs it applies to; `None`: every scheme but f32.
    pub schemes: Option<Vec<glob::Pattern>>,
    /// Indices into [`Suite::models`]; `None`: every model.
    pub models: Option<Vec<usize>>,
}

/// Which layers an override names.
#[derive(Debug, Clone)]
pub enum LayerPattern {
    First,
    Last,
    Glob(glob::Pattern),
}

impl LayerPattern {
    fn matches(&self, index: usize, count: usize, name: &str) -> bool {
        match self {
            LayerPattern::First => index == 0,
            LayerPattern::Last => index + 1 == count,
            LayerPattern::Glob(p) => p.matches(name),
        }
    }
}

impl Override {
    /// Whether some layer pattern of this override names one of `layers` (a model file's, known
    /// once it is read; the suite checks zoo models when it loads).
    pub fn matches_any(&self, layers: &[(String, usize)]) -> bool {
        self.layers.iter().any(|p| layers.iter().enumerate().any(|(i, (n, _))| p.matches(i, layers.len(), n)))
    }

    fn applies(&self, model: usize, scheme: SchemeId) -> bool {
        let model_ok = self.models.as_ref().is_none_or(|m| m.contains(&model));
        let scheme_ok = match &self.schemes {
            None => scheme != SchemeId::F32,
            Some(globs) => globs.iter().any(|g| g.matches(&scheme.name())),
        };
        model_ok && scheme_ok
    }
}

/// Default `p` of the percentile calibrator.
pub const DEFAULT_PERCENTILE: f64 = 99.99;

#[derive(Debug, Clone)]
pub struct DatasetEntry {
    pub name: String,
    pub format: DatasetFormat,
    /// The images (`idx`) or array (`npy`) file.
    pub inputs: PathBuf,
    /// `npz` member.
    pub array: Option<String>,
    /// `npz` members, one per model input (empty: `array` or the only member).
    pub arrays: Vec<String>,
    /// `None`: outputs-only.
    pub labels: Option<PathBuf>,
    /// One text per item, a line each: what a CTC sequence output should decode to.
    pub text_labels: Option<PathBuf>,
    pub label_column: Option<String>,
    /// `text`: the tokenizer and the row length.
    pub tokenizer: Option<PathBuf>,
    pub seq_len: usize,
    /// `text`: windows of `seq_len` tokens over the whole file (language models).
    pub windows: bool,
    /// `raw`: bytes per item.
    pub length: usize,
    /// `images`: the preprocessing.
    pub image: Option<crate::data::ImagePrep>,
}

#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    /// What the model is, and its files.
    pub kind: ModelKind,
    /// Index into [`Suite::datasets`].
    pub dataset: usize,
    /// The kinds declared for the model's outputs, in the order it reads them (an ONNX
    /// graph's `[[models.outputs]]`; empty: every output's kind is inferred).
    pub output_kinds: Vec<Option<crate::measure::outputs::OutputKind>>,
    /// The model's schemes, backends and batch sizes (its own lists, else the suite's), before
    /// the `[[exclude]]`/`[[include]]` rules.
    pub schemes: Vec<SchemeId>,
    pub backends: Vec<BackendId>,
    pub batch_sizes: Vec<usize>,
    /// The load scenario its cases are measured under after their single-stream latency.
    pub scenario: scenario::Scenario,
}

impl ModelEntry {
    /// The zoo architecture, for zoo models.
    pub fn zoo(&self) -> Option<ZooModelId> {
        self.kind.zoo()
    }

    /// The model file: zoo weights, the ONNX file or the checkpoint.
    pub fn file(&self) -> &Path {
        self.kind.file()
    }

    /// Shape of one item of each input, in order; `None` for a model that takes a row of
    /// token ids of any length.
    pub fn input_parts(&self) -> Option<Vec<Vec<usize>>> {
        self.kind.input_parts()
    }

    /// The weighted layers when known without reading the model file (zoo models).
    pub fn known_layers(&self) -> Option<Vec<(String, usize)>> {
        self.kind.known_layers()
    }
}

/// Defaults, chosen so the quickstart finishes in about a minute on 2 cores.
pub const DEFAULT_WARMUP_ITERS: u32 = 10;
pub const DEFAULT_WARMUP_MS: u64 = 50;
pub const DEFAULT_TARGET_CI_PCT: f64 = 1.0;
pub const DEFAULT_MIN_SAMPLES: usize = 10;
pub const DEFAULT_MAX_SAMPLES: usize = 1000;
pub const DEFAULT_MAX_TIME_MS: u64 = 2000;
pub const DEFAULT_THREADS: usize = 1;
pub const DEFAULT_OUTPUT_DIR: &str = "reports";

impl Suite {
    /// The cases of model `model` (index into [`Suite::models`]).
    pub fn cases_of(&self, model: usize) -> Vec<Case> {
        expand(self).into_iter().filter(|c| c.model == model).collect()
    }

    /// The schemes model `model`'s cases use, in the suite's order.
    pub fn schemes_of(&self, model: usize) -> Vec<SchemeId> {
        let cases = self.cases_of(model);
        self.schemes.iter().copied().filter(|s| cases.iter().any(|c| c.scheme == *s)).collect()
    }

    /// The backends model `model`'s cases use, in the suite's order.
    pub fn backends_of(&self, model: usize) -> Vec<BackendId> {
        let cases = self.cases_of(model);
        self.backends.iter().copied().filter(|b| cases.iter().any(|c| c.backend == *b)).collect()
    }

    /// The batch sizes model `model`'s cases use, in the suite's order.
    pub fn batch_sizes_of(&self, model: usize) -> Vec<usize> {
        let cases = self.cases_of(model);
        self.batch_sizes.iter().copied().filter(|b| cases.iter().any(|c| c.batch == *b)).collect()
    }

    /// Reads, parses and validates a suite file.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let source = crate::files::read_text_bounded(path, crate::files::MAX_SUITE_BYTES, "a suite")?;
        Suite::from_str(path, &source)
    }

    /// Reads a suite file, applies `sets` (`--set KEY=VALUE`, see [`apply_sets`]) to its text,
    /// and validates the result. An error in the changed text says it is the changed text.
    pub fn load_with_sets(path: &Path, sets: &[String]) -> Result<Suite, SuiteError> {
        let source = crate::files::read_text_bounded(path, crate::files::MAX_SUITE_BYTES, "a suite")?;
        if sets.is_empty() {
            return Suite::from_str(path, &source);
        }
        let edited = apply_sets(&source, sets).map_err(|message| SuiteError::At {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message,
        })?;
        let mut suite = Suite::from_str(path, &edited).map_err(|e| match e {
            SuiteError::At { file, line, column, message } => SuiteError::At {
                file,
                line,
                column,
                message: format!(
                    "{message} (in the suite as changed by --set {}; line numbers are of the changed text)",
                    sets.join(" --set ")
                ),
            },
            other => other,
        })?;
        suite.sets = sets.to_vec();
        Ok(suite)
    }

    /// Validates suite text as if it were read from `path` (paths resolve against its folder).
    pub fn from_str(path: &Path, source: &str) -> Result<Suite, SuiteError> {
        let loc = Locator { file: path, source };
        let spec = parse_spec(source).map_err(|(span, message)| loc.at(span, message))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        resolve(spec, &loc, &base, Sha256::digest(source.as_bytes()))
    }

    /// The text a run keeps as its `suite.toml`: the suite as validated, headed by the `--set`
    /// changes that made it from the file, when there are some.
    pub fn run_copy(&self) -> String {
        match self.sets.is_empty() {
            true => self.source.clone(),
            false => format!("{}{}", set::header(&self.file, &self.sets), self.source),
        }
    }
}

/// The suite's raw form. A value of the wrong type is named by its key path
/// (`batch_sizes[0]: invalid type …`), not only by its line.
fn parse_spec(source: &str) -> Result<SuiteSpec, (std::ops::Range<usize>, String)> {
    let de = toml::Deserializer::parse(source)
        .map_err(|e| (e.span().unwrap_or(0..0), improve_serde_message(e.message())))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // toml's `Spanned` shows in the path as a private field: left out.
        let path = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "")
            .replace("$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        let message = improve_serde_message(inner.message());
        let message = if path.is_empty() || path == "." || message.contains(&path) {
            message
        } else {
            format!("{path}: {message}")
        };
        (inner.span().unwrap_or(0..0), message)
    })
}

fn resolve(spec: SuiteSpec, loc: &Locator, base: &Path, digest: impl AsRef<[u8]>) -> Result<Suite, SuiteError> {
    let name = spec.name.get_ref().trim().to_string();
    // The suite's name is its runs' folder: kept exactly as written, so it must be a plain name.
    if crate::files::file_stem(&name) != name {
        return Err(loc.at(
            spec.name.span(),
            format!(
                "suite name \"{}\" is used as a folder name: use letters, digits, '-', '_' or '.', not starting with '.', at most {} bytes, e.g. name = \"quickstart\"",
                name.escape_debug(),
                crate::files::MAX_STEM_BYTES
            ),
        ));
    }

    let cuda_device = match &spec.device {
        None => 0,
        Some(d) => crate::backend::gpu::parse_device(d.get_ref().trim()).ok_or_else(|| {
            loc.at(
                d.span(),
                format!(
                    "device \"{}\" is not a CUDA device; write device = \"cuda:0\" (the first GPU), \"cuda:1\", ...",
                    d.get_ref()
                ),
            )
        })?,
    };

    let matrix::Lists { schemes, backends, batch_sizes, models: own_lists, include, model_names } =
        matrix::resolve_lists(&spec, loc, true)?;

    let points = resolve_measure(loc, spec.measure.as_ref())?;
    let scenarios = scenario::resolve(&spec, loc)?;

    let mut datasets = Vec::new();
    for d in spec.datasets.get_ref() {
        let d_ref = d.get_ref();
        let dname = d_ref.name.get_ref().clone();
        if datasets.iter().any(|x: &DatasetEntry| x.name == dname) {
            return Err(loc.at(
                d_ref.name.span(),
                format!("dataset \"{dname}\" is defined twice; give each [[datasets]] entry its own name"),
            ));
        }
        let format = DatasetFormat::from_name(d_ref.format.get_ref()).ok_or_else(|| {
            loc.at(d_ref.format.span(), unknown("dataset format", d_ref.format.get_ref(), DatasetFormat::names()))
        })?;
        let mut entry = resolve_dataset(loc, base, d, dname, format)?;
        if let Some(t) = &d.get_ref().text_labels {
            entry.text_labels = Some(existing_path(loc, base, t, "text labels file")?);
        }
        datasets.push(entry);
    }
    if datasets.is_empty() {
        return Err(loc.at(
            spec.datasets.span(),
            "the suite has no dataset; add a [[datasets]] entry (see suites/quickstart.toml)",
        ));
    }

    let mut models = Vec::new();
    for m in spec.models.get_ref() {
        let m_ref = m.get_ref();
        let mname = m_ref.name.get_ref().clone();
        if mname.trim().is_empty() {
            return Err(loc.at(m_ref.name.span(), "a model's name is empty; give it a name, e.g. name = \"mlp\""));
        }
        if models.iter().any(|x: &ModelEntry| x.name == mname) {
            return Err(loc.at(
                m_ref.name.span(),
                format!("model \"{}\" is defined twice; give each [[models]] entry its own name", mname.escape_debug()),
            ));
        }
        // Model names become file names (artifacts, charts): two names that map to one file name
        // (also on a case-insensitive file system) would overwrite each other's files.
        let stem = crate::files::file_stem(&mname).to_lowercase();
        if let Some(other) =
            models.iter().find(|x: &&ModelEntry| crate::files::file_stem(&x.name).to_lowercase() == stem)
        {
            return Err(loc.at(
                m_ref.name.span(),
                format!(
                    "models \"{}\" and \"{}\" would share the file name \"{}\"; rename one (file names keep letters, digits, '-', '_' and '.')",
                    other.name.escape_debug(),
                    mname.escape_debug(),
                    crate::files::file_stem(&mname)
                ),
            ));
        }
        // The batch sizes this model runs at: its own (else the suite's) and its includes'.
        let (own_schemes, own_backends, own_batches) = own_lists[models.len()].clone();
        let mut model_batches = own_batches.clone();
        for inc in include.iter().filter(|i| i.applies_to(&mname)) {
            matrix::union(&mut model_batches, inc.batch_sizes.as_deref().unwrap_or_default());
        }
        let (source, output_kinds) = resolve_source(loc, base, m, &model_batches)?;
        let dataset = match &m_ref.dataset {
            Some(dn) => datasets.iter().position(|d| &d.name == dn.get_ref()).ok_or_else(|| {
                let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
                loc.at(dn.span(), unknown("dataset", dn.get_ref(), &names))
            })?,
            None if datasets.len() == 1 => 0,
            None => {
                return Err(loc.at(
                    m.span(),
                    format!(
                        "model \"{mname}\" must name its dataset: the suite has {} datasets; add dataset = \"{}\"",
                        datasets.len(),
                        datasets[0].name
                    ),
                ));
            }
        };
        models.push(ModelEntry {
            name: mname,
            kind: source,
            dataset,
            output_kinds,
            schemes: own_schemes,
            backends: own_backends,
            batch_sizes: own_batches,
            scenario: scenarios[models.len()].clone(),
        });
    }
    if models.is_empty() {
        return Err(
            loc.at(spec.models.span(), "the suite has no model; add a [[models]] entry (see suites/quickstart.toml)")
        );
    }
    // A text dataset without a tokenizer takes the one a GGUF model that reads it carries.
    for (i, d) in datasets.iter_mut().enumerate() {
        if d.format != DatasetFormat::Text || d.tokenizer.is_some() {
            continue;
        }
        let users: Vec<&ModelEntry> = models.iter().filter(|m| m.dataset == i).collect();
        let mut ggufs: Vec<PathBuf> = users
            .iter()
            .filter_map(|m| match &m.kind {
                ModelKind::GgufLm { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        ggufs.sort();
        ggufs.dedup();
        let other = users.iter().find(|m| !matches!(m.kind, ModelKind::GgufLm { .. }));
        match (ggufs.as_slice(), other) {
            ([path], None) => d.tokenizer = Some(path.clone()),
            (ggufs, other) => {
                let why = match other {
                    Some(m) => format!("model \"{}\" reads it and is not a GGUF language model", m.name),
                    None if ggufs.is_empty() => "no GGUF language model reads it".to_string(),
                    // Two files' tokenizers may differ: which one tokenizes is the suite's to say.
                    None => format!("{} GGUF files read it, whose tokenizers may differ", ggufs.len()),
                };
                return Err(loc.at(
                    spec.datasets.get_ref()[i].span(),
                    format!(
                        "dataset \"{}\" (text) needs tokenizer = \"…/tokenizer.json\" (or tokenizer = \"…/model.gguf\" for that file's own): a GGUF's own tokenizer stands in only for the one GGUF model that reads it, and {why}",
                        d.name
                    ),
                ));
            }
        }
    }

    let output_dir = spec
        .output
        .as_ref()
        .and_then(|o| o.dir.clone())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT_DIR));
    if output_dir.as_os_str().is_empty() || output_dir.to_string_lossy().chars().any(char::is_control) {
        let span = loc.source.find("[output]").map_or(0..0, |i| i..i + 8);
        return Err(
            loc.at(span, "[output] dir must be a folder path without control characters, e.g. dir = \"reports\"")
        );
    }

    let calibration = match &spec.calibration {
        None => None,
        Some(c) => {
            let c = c.get_ref();
            let items = *c.items.get_ref();
            if items < 1 {
                return Err(loc.at(
                    c.items.span(),
                    format!("calibration.items = {items}: the calibration split is empty; use a positive number of images, e.g. items = 500"),
                ));
            }
            let percentile = match &c.percentile {
                None => DEFAULT_PERCENTILE,
                Some(p) if *p.get_ref() > 0.0 && *p.get_ref() <= 100.0 => *p.get_ref(),
                Some(p) => {
                    return Err(loc.at(
                        p.span(),
                        format!(
                            "calibration.percentile = {} is out of range; use a value in (0, 100], e.g. 99.99",
                            p.get_ref()
                        ),
                    ))
                }
            };
            let selection = resolve_selection(loc, "calibration", &c.select, &c.seed, c.items.span())?;
            let repeats = match &c.repeats {
                None => 1,
                Some(r) if (1..=20).contains(r.get_ref()) => *r.get_ref() as usize,
                Some(r) => {
                    return Err(loc.at(
                        r.span(),
                        format!(
                            "calibration.repeats = {}: use 1 to 20 disjoint calibration subsets, e.g. repeats = 5",
                            r.get_ref()
                        ),
                    ))
                }
            };
            let SuiteError::At { file, line, column, .. } = loc.at(c.items.span(), "") else { unreachable!() };
            Some(CalibrationSettings {
                items: items as usize,
                selection,
                percentile,
                repeats,
                items_at: format!("{}:{line}:{column}", file.display()),
            })
        }
    };
    let tuning = match &spec.tuning {
        None => None,
        Some(t) => {
            let t = t.get_ref();
            let items = *t.items.get_ref();
            if items < 1 {
                return Err(loc.at(
                    t.items.span(),
                    format!("tuning.items = {items}: the tuning split is empty; use a positive number of items, e.g. items = 4000"),
                ));
            }
            let selection = resolve_selection(loc, "tuning", &t.select, &t.seed, t.items.span())?;
            let evaluate = match t.evaluate.as_ref().map(|e| e.get_ref().as_str()) {
                None | Some("test") => SplitPart::Test,
                Some("tune") => SplitPart::Tune,
                Some(other) => {
                    let span = t.evaluate.as_ref().map(|e| e.span()).unwrap_or_else(|| t.items.span());
                    return Err(loc.at(
                        span,
                        format!("tuning.evaluate = \"{other}\": the cases are scored on the \"test\" split (default) or the \"tune\" split"),
                    ));
                }
            };
            let SuiteError::At { file, line, column, .. } = loc.at(t.items.span(), "") else { unreachable!() };
            Some(TuningSettings {
                items: items as usize,
                selection,
                evaluate,
                items_at: format!("{}:{line}:{column}", file.display()),
            })
        }
    };

    let overrides = resolve_overrides(&spec, loc, &schemes, &models)?;
    // A gate on the server scenario's latency needs a model that runs it.
    if !scenarios.iter().any(|s| matches!(s, scenario::Scenario::Server(_))) {
        if let Some(g) = spec.gates.iter().find_map(|g| g.get_ref().max_p99_ms_at_rate.as_ref()) {
            return Err(loc.at(g.span(), "max_p99_ms_at_rate gates the server scenario's latency, and no model runs it; add [scenario] kind = \"server\" with target_qps and latency_bound_ms"));
        }
    }
    let exclude = matrix::resolve_excludes(&spec, loc, &model_names, &schemes, &backends, &batch_sizes)?;
    let gates = gates::resolve_gates(&spec, loc, &schemes, &backends)?;
    let mut bundle = crate::bundle::Tolerances::default();
    if let Some(b) = &spec.bundle {
        let b = b.get_ref();
        for (value, slot, name) in [
            (&b.floor_rel, &mut bundle.floor_rel, "floor_rel"),
            (&b.factor, &mut bundle.factor, "factor"),
            (&b.min_top1_agreement, &mut bundle.min_top1_agreement, "min_top1_agreement"),
        ] {
            if let Some(v) = value {
                *slot = *v.get_ref();
                let mut t = crate::bundle::Tolerances::default();
                match name {
                    "floor_rel" => t.floor_rel = *slot,
                    "factor" => t.factor = *slot,
                    _ => t.min_top1_agreement = *slot,
                }
                if let Err(why) = t.check() {
                    return Err(loc.at(v.span(), format!("bundle.{name}: {why}")));
                }
            }
        }
    }

    let suite = Suite {
        name,
        description: spec.description.clone(),
        file: loc.file.to_path_buf(),
        sha256: crate::hash::hex(digest.as_ref()),
        source: loc.source.to_string(),
        sets: Vec::new(),
        schemes,
        backends,
        cuda_device,
        batch_sizes,
        require_native: spec.require_native,
        points,
        output_dir,
        datasets,
        models,
        calibration,
        tuning,
        overrides,
        gates,
        bundle,
        exclude,
        include,
    };
    matrix::check_matrix(&suite, &spec, loc)?;
    check_plans(&suite, &spec, loc)?;
    Ok(suite)
}

impl Suite {
    /// The scheme of each weighted layer of model `model` under the suite scheme `scheme`;
    /// `layers` are the model's weighted layers (see [`ModelEntry::known_layers`], or those of
    /// the loaded ONNX file).
    pub fn plan(&self, model: usize, scheme: SchemeId, layers: &[(String, usize)]) -> Plan {
        let mut plan = Plan::uniform(layers, scheme);
        let count = plan.layers.len();
        for o in self.overrides.iter().filter(|o| o.applies(model, scheme)) {
            for (i, (name, s)) in plan.layers.iter_mut().enumerate() {
                if o.layers.iter().any(|p| p.matches(i, count, name)) {
                    *s = o.scheme;
                }
            }
        }
        plan
    }
}

fn resolve_overrides(
    spec: &SuiteSpec,
    loc: &Locator,
    schemes: &[SchemeId],
    models: &[ModelEntry],
) -> Result<Vec<Override>, SuiteError> {
    let mut out = Vec::new();
    for o in &spec.overrides {
        let o = o.get_ref();
        let scheme = SchemeId::from_name(o.scheme.get_ref()).ok_or_else(|| {
            let known = SchemeId::names();
            let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
            loc.at(o.scheme.span(), unknown("scheme", o.scheme.get_ref(), &known))
        })?;
        let model_idx = match &o.models {
            None => None,
            Some(list) => {
                let mut idx = Vec::new();
                for m in list.get_ref() {
                    let i = models.iter().position(|x| &x.name == m.get_ref()).ok_or_else(|| {
                        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                        loc.at(m.span(), unknown("model", m.get_ref(), &names))
                    })?;
                    idx.push(i);
                }
                Some(idx)
            }
        };
        let scheme_globs = match &o.schemes {
            None => None,
            Some(list) => {
                let mut globs = Vec::new();
                for g in list.get_ref() {
                    let pattern = glob::Pattern::new(g.get_ref())
                        .map_err(|e| loc.at(g.span(), format!("\"{}\" is not a valid glob: {e}", g.get_ref())))?;
                    if !schemes.iter().any(|s| pattern.matches(&s.name())) {
                        let names: Vec<String> = schemes.iter().map(|s| s.name()).collect();
                        return Err(loc.at(
                            g.span(),
                            format!(
                                "override schemes pattern \"{}\" matches none of the suite's schemes ({})",
                                g.get_ref(),
                                names.join(", ")
                            ),
                        ));
                    }
                    globs.push(pattern);
                }
                Some(globs)
            }
        };
        let applicable: Vec<&ModelEntry> = match &model_idx {
            None => models.iter().collect(),
            Some(idx) => idx.iter().map(|&i| &models[i]).collect(),
        };
        if o.layers.get_ref().is_empty() {
            return Err(loc.at(
                o.layers.span(),
                "layers is empty; name at least one layer, e.g. layers = [\"@first\", \"@last\"]",
            ));
        }
        let mut layers = Vec::new();
        for l in o.layers.get_ref() {
            let pattern = match l.get_ref().as_str() {
                "@first" => LayerPattern::First,
                "@last" => LayerPattern::Last,
                g => LayerPattern::Glob(
                    glob::Pattern::new(g).map_err(|e| loc.at(l.span(), format!("\"{g}\" is not a valid glob: {e}")))?,
                ),
            };
            // Layers of model files are known once the file is read: checked at run time.
            let matched = applicable.iter().any(|m| match m.known_layers() {
                None => true,
                Some(names) => names.iter().enumerate().any(|(i, (n, _))| pattern.matches(i, names.len(), n)),
            });
            if !matched {
                let known: Vec<String> = applicable
                    .iter()
                    .filter_map(|m| {
                        let names: Vec<String> = m.known_layers()?.into_iter().map(|(n, _)| n).collect();
                        Some(format!("{}: {}", m.name, names.join(", ")))
                    })
                    .collect();
                return Err(loc.at(
                    l.span(),
                    format!(
                        "override layer pattern \"{}\" matches no layer; the layers are {}",
                        l.get_ref(),
                        known.join("; ")
                    ),
                ));
            }
            layers.push(pattern);
        }
        out.push(Override { layers, scheme, schemes: scheme_globs, models: model_idx });
    }
    Ok(out)
}

/// Every (model, scheme) plan of a case must fit its model, and static schemes need a
/// calibration split. The error points at where the model got the scheme: its own `schemes`,
/// else the suite's, else an `[[include]]`.
fn check_plans(suite: &Suite, spec: &SuiteSpec, loc: &Locator) -> Result<(), SuiteError> {
    let cases = expand(suite);
    for (mi, model) in suite.models.iter().enumerate() {
        let mut checked: Vec<SchemeId> = Vec::new();
        for c in cases.iter().filter(|c| c.model == mi) {
            if checked.contains(&c.scheme) {
                continue;
            }
            checked.push(c.scheme);
            let scheme = c.scheme;
            let named_in = |list: &Spanned<Vec<Spanned<String>>>| {
                list.get_ref().iter().find(|s| SchemeId::from_name(s.get_ref()) == Some(scheme)).map(|s| s.span())
            };
            let scheme_span = spec.models.get_ref()[mi]
                .get_ref()
                .schemes
                .as_ref()
                .and_then(named_in)
                .or_else(|| named_in(&spec.schemes))
                .or_else(|| spec.include.iter().find_map(|i| i.get_ref().schemes.as_ref().and_then(named_in)))
                .unwrap_or_else(|| spec.models.get_ref()[mi].span());
            // A model file's layers are checked when it is read (its cases fail, others run).
            let Some(layers) = model.known_layers() else { continue };
            let plan = suite.plan(mi, scheme, &layers);
            if let Err(e) = plan.check(layers.as_slice()) {
                return Err(loc.at(scheme_span.clone(), format!("model {}: {e}", model.name)));
            }
            if plan.needs_calibration() && suite.calibration.is_none() {
                return Err(loc.at(
                    scheme_span.clone(),
                    format!("{} calibrates activation ranges on a calibration split; add a [calibration] section, e.g. [calibration] items = 500 (the first 500 images calibrate, the rest evaluate)", plan.layers.iter().find(|(_, s)| matches!(s, SchemeId::Int8Static(_))).map(|(_, s)| s.name()).unwrap_or_default()),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn parse_list<T: PartialEq + Copy>(
    loc: &Locator,
    list: &Spanned<Vec<Spanned<String>>>,
    kind: &str,
    parse: impl Fn(&str) -> Option<T>,
    known: &[&str],
) -> Result<Vec<T>, SuiteError> {
    if list.get_ref().is_empty() {
        return Err(
            loc.at(list.span(), format!("the {kind} list is empty; write at least one of: {}", known.join(", ")))
        );
    }
    let mut out = Vec::new();
    for item in list.get_ref() {
        let v = parse(item.get_ref()).ok_or_else(|| loc.at(item.span(), unknown(kind, item.get_ref(), known)))?;
        if out.contains(&v) {
            return Err(loc.at(item.span(), format!("{kind} \"{}\" is listed twice; remove one", item.get_ref())));
        }
        out.push(v);
    }
    Ok(out)
}

/// `[measure]`'s measurement points: every combination of the values of its keys (each one
/// value, or a list: a sweep), the first key varying slowest. Each point must make sense
/// (`min_samples` ≤ `max_samples`).
fn resolve_measure(loc: &Locator, spec: Option<&Spanned<MeasureSpec>>) -> Result<Vec<MeasurePoint>, SuiteError> {
    use spec::Sweep;
    let empty = MeasureSpec::default();
    let m = spec.map(|s| s.get_ref()).unwrap_or(&empty);
    // Each key's values, checked: in range, a list not empty and without repeats.
    fn values<T: Clone + PartialEq + std::fmt::Display>(
        loc: &Locator,
        v: &Option<Spanned<Sweep<T>>>,
        key: &str,
        default: T,
        ok: impl Fn(&T) -> bool,
        range: &str,
    ) -> Result<Vec<T>, SuiteError> {
        let Some(v) = v else { return Ok(vec![default]) };
        let list = v.get_ref().values();
        if list.is_empty() {
            return Err(
                loc.at(v.span(), format!("measure.{key} is an empty list; give one value, or several to sweep"))
            );
        }
        for (i, x) in list.iter().enumerate() {
            if !ok(x) {
                return Err(loc.at(v.span(), format!("measure.{key} = {x} is out of range; use {range}")));
            }
            if list[..i].contains(x) {
                return Err(loc.at(v.span(), format!("measure.{key} lists {x} twice; remove one")));
            }
        }
        Ok(list)
    }
    let int = |v: &Option<Spanned<Sweep<i64>>>, key: &str, lo: i64, hi: i64, default: i64| {
        values(loc, v, key, default, |x| (lo..=hi).contains(x), &format!("{lo} to {hi}"))
    };
    let threads = int(&m.threads, "threads", 1, 1024, DEFAULT_THREADS as i64)?;
    let warmup_iters = int(&m.warmup_iters, "warmup_iters", 0, 1_000_000, DEFAULT_WARMUP_ITERS as i64)?;
    let warmup_ms = int(&m.warmup_ms, "warmup_ms", 0, 3_600_000, DEFAULT_WARMUP_MS as i64)?;
    let target_ci_pct = values(
        loc,
        &m.target_ci_pct,
        "target_ci_pct",
        DEFAULT_TARGET_CI_PCT,
        |t| (0.0..=100.0).contains(t),
        "0 (no target) to 100, e.g. 1.0",
    )?;
    let min_samples = int(&m.min_samples, "min_samples", 1, 10_000_000, DEFAULT_MIN_SAMPLES as i64)?;
    let max_samples = int(&m.max_samples, "max_samples", 1, 10_000_000, DEFAULT_MAX_SAMPLES as i64)?;
    let max_time_ms = int(&m.max_time_ms, "max_time_ms", 1, 3_600_000, DEFAULT_MAX_TIME_MS as i64)?;
    let paired = values(loc, &m.paired, "paired", true, |_| true, "true or false")?;
    let mut points = Vec::new();
    for &t in &threads {
        for &wi in &warmup_iters {
            for &wm in &warmup_ms {
                for &ci in &target_ci_pct {
                    for &lo in &min_samples {
                        for &hi in &max_samples {
                            for &mt in &max_time_ms {
                                for &p in &paired {
                                    let mut label = Vec::new();
                                    let mut swept = |key: &str, n: usize, value: String| {
                                        if n > 1 {
                                            label.push(format!("{key}={value}"));
                                        }
                                    };
                                    swept("threads", threads.len(), t.to_string());
                                    swept("warmup_iters", warmup_iters.len(), wi.to_string());
                                    swept("warmup_ms", warmup_ms.len(), wm.to_string());
                                    swept("target_ci_pct", target_ci_pct.len(), ci.to_string());
                                    swept("min_samples", min_samples.len(), lo.to_string());
                                    swept("max_samples", max_samples.len(), hi.to_string());
                                    swept("max_time_ms", max_time_ms.len(), mt.to_string());
                                    swept("paired", paired.len(), p.to_string());
                                    if lo > hi {
                                        let span = m
                                            .min_samples
                                            .as_ref()
                                            .map(|s| s.span())
                                            .or(spec.map(|s| s.span()))
                                            .unwrap_or(0..0);
                                        return Err(loc.at(span, format!("measure.min_samples ({lo}) is larger than measure.max_samples ({hi}); lower min_samples or raise max_samples")));
                                    }
                                    points.push(MeasurePoint {
                                        sampler: SamplerSettings {
                                            warmup_iters: wi as u32,
                                            warmup_time: Duration::from_millis(wm as u64),
                                            target_rel_ci: ci / 100.0,
                                            min_samples: lo as usize,
                                            max_samples: hi as usize,
                                            max_time: Duration::from_millis(mt as u64),
                                        },
                                        threads: t as usize,
                                        paired: p,
                                        label: label.join(","),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    const MAX_POINTS: usize = 256;
    if points.len() > MAX_POINTS {
        return Err(loc.at(
            spec.map(|s| s.span()).unwrap_or(0..0),
            format!("[measure] sweeps {} combinations of values (each a run of every case); keep it to {MAX_POINTS} or fewer", points.len()),
        ));
    }
    Ok(points)
}

/// A `[[datasets]]` entry's files, by format.
fn resolve_dataset(
    loc: &Locator,
    base: &Path,
    d: &Spanned<spec::DatasetSpec>,
    name: String,
    format: DatasetFormat,
) -> Result<DatasetEntry, SuiteError> {
    let d_ref = d.get_ref();
    let need = |field: &Option<Spanned<String>>, what: &str, example: &str| match field {
        Some(v) => Ok(v.clone()),
        None => Err(loc.at(d.span(), format!("dataset \"{name}\" ({}) needs {what}, e.g. {example}", format.name()))),
    };
    let refuse = |field: &Option<Spanned<String>>, key: &str| match field {
        Some(v) => Err(loc.at(v.span(), format!("{key} does not apply to format = \"{}\"", format.name()))),
        None => Ok(()),
    };
    if let (Some(a), false) = (&d_ref.arrays, format == DatasetFormat::Npy) {
        return Err(
            loc.at(a.span(), format!("arrays does not apply to format = \"{}\"; it names .npz arrays", format.name()))
        );
    }
    if let (Some(a), Some(_)) = (&d_ref.arrays, &d_ref.array) {
        return Err(loc.at(a.span(), "array and arrays together: name one array (array = \"x\") or one per model input (arrays = [\"ids\", \"mask\"])"));
    }
    if let Some(a) = d_ref.arrays.as_ref().filter(|a| a.get_ref().is_empty()) {
        return Err(loc.at(a.span(), "arrays is empty; name the .npz arrays, one per model input"));
    }
    if let (Some(w), false) = (&d_ref.windows, format == DatasetFormat::Text) {
        return Err(loc.at(
            w.span(),
            format!("windows does not apply to format = \"{}\"; it cuts a text file into token windows", format.name()),
        ));
    }
    match format {
        DatasetFormat::Idx => {
            let images = need(&d_ref.images, "images", "images = \"data/t10k-images-idx3-ubyte.gz\"")?;
            let labels = need(&d_ref.labels, "labels", "labels = \"data/t10k-labels-idx1-ubyte.gz\"")?;
            refuse(&d_ref.inputs, "inputs")?;
            refuse(&d_ref.array, "array")?;
            refuse(&d_ref.label_column, "label_column")?;
            refuse(&d_ref.tokenizer, "tokenizer")?;
            if let Some(v) = &d_ref.seq_len {
                return Err(loc.at(v.span(), "seq_len applies to format = \"text\""));
            }
            Ok(DatasetEntry {
                text_labels: None,
                name,
                format,
                inputs: existing_path(loc, base, &images, "images file")?,
                array: None,
                arrays: Vec::new(),
                labels: Some(existing_path(loc, base, &labels, "labels file")?),
                label_column: None,
                tokenizer: None,
                seq_len: 0,
                windows: false,
                length: 0,
                image: None,
            })
        }
        DatasetFormat::Images | DatasetFormat::Raw => {
            let inputs = need(&d_ref.inputs, "inputs (a folder)", "inputs = \"data/images/\"")?;
            refuse(&d_ref.images, "images (an idx key; use inputs)")?;
            refuse(&d_ref.array, "array")?;
            refuse(&d_ref.tokenizer, "tokenizer")?;
            let dir = base.join(inputs.get_ref());
            if !dir.is_dir() {
                return Err(loc.at(inputs.span(), format!("inputs \"{}\" is not a folder (looked for {}); {} datasets read one file per item from a folder", inputs.get_ref(), dir.display(), format.name())));
            }
            let labels = match &d_ref.labels {
                Some(l) => Some(existing_path(loc, base, l, "labels file")?),
                None => None,
            };
            let (length, image) = if format == DatasetFormat::Raw {
                if let Some(i) = &d_ref.image {
                    return Err(loc.at(i.span(), "[datasets.image] applies to format = \"images\""));
                }
                let length = match &d_ref.length {
                    Some(v) if (1..=1 << 26).contains(v.get_ref()) => *v.get_ref() as usize,
                    Some(v) => {
                        return Err(loc.at(
                            v.span(),
                            format!("length = {} is out of range; use a positive number of bytes", v.get_ref()),
                        ))
                    }
                    None => {
                        return Err(loc.at(
                            d.span(),
                            format!("dataset \"{name}\" (raw) needs length, the bytes per item, e.g. length = 4096"),
                        ))
                    }
                };
                (length, None)
            } else {
                if let Some(v) = &d_ref.length {
                    return Err(loc.at(v.span(), "length applies to format = \"raw\""));
                }
                (0, Some(resolve_image(loc, d_ref.image.as_ref())?))
            };
            Ok(DatasetEntry {
                text_labels: None,
                name,
                format,
                inputs: dir,
                array: None,
                arrays: Vec::new(),
                labels,
                label_column: d_ref.label_column.as_ref().map(|c| c.get_ref().clone()),
                tokenizer: None,
                seq_len: 0,
                windows: false,
                length,
                image,
            })
        }
        DatasetFormat::Text => {
            let inputs = need(&d_ref.inputs, "inputs", "inputs = \"data/sentences.txt\"")?;
            // Left out: the GGUF language model that reads this dataset brings its own (resolved
            // with the models below).
            refuse(&d_ref.images, "images (an idx key; use inputs)")?;
            refuse(&d_ref.array, "array")?;
            let seq_len = match &d_ref.seq_len {
                Some(v) if (1..=65536).contains(v.get_ref()) => *v.get_ref() as usize,
                Some(v) => {
                    return Err(loc.at(v.span(), format!("seq_len = {} is out of range; use 1 to 65536", v.get_ref())))
                }
                None => {
                    return Err(loc.at(
                        d.span(),
                        format!("dataset \"{name}\" (text) needs seq_len, the tokens per item, e.g. seq_len = 64"),
                    ))
                }
            };
            let labels = match &d_ref.labels {
                Some(l) => Some(existing_path(loc, base, l, "labels file")?),
                None => None,
            };
            Ok(DatasetEntry {
                text_labels: None,
                name,
                format,
                inputs: existing_path(loc, base, &inputs, "inputs file")?,
                array: None,
                arrays: Vec::new(),
                labels,
                label_column: d_ref.label_column.as_ref().map(|c| c.get_ref().clone()),
                tokenizer: match &d_ref.tokenizer {
                    Some(t) => Some(existing_path(loc, base, t, "tokenizer file")?),
                    None => None,
                },
                seq_len,
                windows: d_ref.windows.as_ref().is_some_and(|w| *w.get_ref()),
                length: 0,
                image: None,
            })
        }
        DatasetFormat::Npy => {
            let inputs = need(&d_ref.inputs, "inputs", "inputs = \"data/x.npy\"")?;
            refuse(&d_ref.images, "images (an idx key; use inputs)")?;
            refuse(&d_ref.tokenizer, "tokenizer (a text-format key)")?;
            if let Some(v) = &d_ref.seq_len {
                return Err(loc.at(v.span(), "seq_len applies to format = \"text\""));
            }
            let labels = match &d_ref.labels {
                Some(l) => Some(existing_path(loc, base, l, "labels file")?),
                None => None,
            };
            if labels.is_none() {
                refuse(&d_ref.label_column, "label_column without labels")?;
            }
            Ok(DatasetEntry {
                text_labels: None,
                name,
                format,
                inputs: existing_path(loc, base, &inputs, "inputs file")?,
                array: d_ref.array.as_ref().map(|a| a.get_ref().clone()),
                arrays: d_ref.arrays.as_ref().map(|a| a.get_ref().clone()).unwrap_or_default(),
                labels,
                label_column: d_ref.label_column.as_ref().map(|c| c.get_ref().clone()),
                tokenizer: None,
                seq_len: 0,
                windows: false,
                length: 0,
                image: None,
            })
        }
    }
}

/// `[datasets.image]` → the preprocessing, checked.
fn resolve_image(loc: &Locator, spec: Option<&Spanned<spec::ImageSpec>>) -> Result<crate::data::ImagePrep, SuiteError> {
    use crate::data::{ImagePrep, Resize};
    let Some(spec) = spec else {
        return Ok(ImagePrep {
            channels: 3,
            resize: Resize::None,
            crop: None,
            scale: 1.0 / 255.0,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
            channels_last: false,
        });
    };
    let s = spec.get_ref();
    let channels = match &s.channels {
        None => 3,
        Some(c) if matches!(c.get_ref(), 1 | 3) => *c.get_ref() as usize,
        Some(c) => return Err(loc.at(c.span(), format!("channels = {}: use 3 (RGB) or 1 (grayscale)", c.get_ref()))),
    };
    const MAX_SIDE: i64 = crate::data::MAX_IMAGE_SIDE as i64;
    let pair = |v: &[i64], span: std::ops::Range<usize>, what: &str| -> Result<(usize, usize), SuiteError> {
        match v {
            [h, w] if (1..=MAX_SIDE).contains(h) && (1..=MAX_SIDE).contains(w) => Ok((*h as usize, *w as usize)),
            _ => Err(loc.at(span, format!("{what} is [height, width] in pixels, each from 1 to {MAX_SIDE}"))),
        }
    };
    let resize = match &s.resize {
        None => Resize::None,
        Some(r) => match r.get_ref() {
            spec::SizeSpec::Side(n) if (1..=MAX_SIDE).contains(n) => Resize::ShorterSide(*n as usize),
            spec::SizeSpec::Side(_) => {
                return Err(loc.at(r.span(), format!("resize (the shorter side) must be from 1 to {MAX_SIDE} pixels")))
            }
            spec::SizeSpec::Exact(v) => {
                let (h, w) = pair(v, r.span(), "resize")?;
                Resize::Exact(h, w)
            }
        },
    };
    let crop = match &s.crop {
        Some(c) => Some(pair(c.get_ref(), c.span(), "crop")?),
        None => None,
    };
    let per_channel = |v: &Option<Spanned<Vec<f64>>>, what: &str, default: f32| -> Result<Vec<f32>, SuiteError> {
        match v {
            None => Ok(vec![default; channels]),
            Some(v) if v.get_ref().iter().any(|x| !(x.is_finite() && (x.abs() as f32).is_finite())) => {
                Err(loc.at(v.span(), format!("{what} values must be finite numbers")))
            }
            Some(v) if v.get_ref().len() == channels => Ok(v.get_ref().iter().map(|&x| x as f32).collect()),
            Some(v) => Err(loc.at(
                v.span(),
                format!("{what} has {} values for {channels} channel(s); give one per channel", v.get_ref().len()),
            )),
        }
    };
    let mean = per_channel(&s.mean, "mean", 0.0)?;
    let std = per_channel(&s.std, "std", 1.0)?;
    if let (Some(span), true) = (s.std.as_ref().map(|v| v.span()), std.iter().any(|v| *v == 0.0 || !v.is_finite())) {
        return Err(loc.at(span, "std values must be non-zero"));
    }
    let channels_last = match s.layout.as_ref().map(|l| (l.get_ref().as_str(), l.span())) {
        None | Some(("nchw", _)) => false,
        Some(("nhwc", _)) => true,
        Some((other, span)) => {
            return Err(loc.at(span, format!("layout \"{other}\": use \"nchw\" (channels first) or \"nhwc\"")))
        }
    };
    let scale = match &s.scale {
        Some(v) if !(v.get_ref().is_finite() && *v.get_ref() > 0.0 && (*v.get_ref() as f32).is_normal()) => {
            return Err(loc.at(
                v.span(),
                format!("scale = {} must be a positive finite number, e.g. 0.00392156862745098 (1/255)", v.get_ref()),
            ))
        }
        Some(v) => *v.get_ref() as f32,
        None => 1.0 / 255.0,
    };
    Ok(ImagePrep { channels, resize, crop, scale, mean, std, channels_last })
}

/// A `[[models]]` entry's source: `zoo` + `weights`, or `path` + `inputs`.
fn resolve_source(
    loc: &Locator,
    base: &Path,
    m: &Spanned<spec::ModelSpec>,
    batch_sizes: &[usize],
) -> Result<(ModelKind, Vec<Option<OutputKind>>), SuiteError> {
    let m_ref = m.get_ref();
    let name = m_ref.name.get_ref();
    if !matches!((&m_ref.path, &m_ref.zoo), (Some(p), None) if p.get_ref().to_ascii_lowercase().ends_with(".onnx")) {
        if let Some(o) = &m_ref.outputs {
            return Err(loc.at(o.span(), "outputs applies to ONNX files; a zoo model outputs classes, a BERT checkpoint an embedding, a GGUF model next-token logits"));
        }
    }
    let plain = |k: Result<ModelKind, SuiteError>| k.map(|k| (k, Vec::new()));
    match (&m_ref.zoo, &m_ref.path) {
        (Some(zoo_name), None) => {
            let zoo = ZooModelId::from_name(zoo_name.get_ref())
                .ok_or_else(|| loc.at(zoo_name.span(), unknown("zoo model", zoo_name.get_ref(), ZooModelId::names())))?;
            let weights = m_ref.weights.as_ref().ok_or_else(|| {
                loc.at(m.span(), format!("model \"{name}\" names zoo = \"{}\" but no weights; add weights = \"models/{}.safetensors\"", zoo.name(), zoo.name()))
            })?;
            for (field, key) in [(m_ref.inputs.as_ref().map(|i| i.span()), "inputs"), (m_ref.dims.as_ref().map(|d| d.span()), "dims"), (m_ref.output.as_ref().map(|o| o.span()), "output")] {
                if let Some(span) = field {
                    return Err(loc.at(span, format!("{key} applies to model files (path = …); a zoo model's input is built in")));
                }
            }
            plain(Ok(ModelKind::Zoo { zoo, weights: existing_path(loc, base, weights, "weights file")? }))
        }
        (None, Some(path)) => {
            if let Some(w) = &m_ref.weights {
                return Err(loc.at(w.span(), "weights belongs to zoo models; a model file holds its own weights"));
            }
            let ext = Path::new(path.get_ref()).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if ext == "safetensors" {
                return plain(resolve_checkpoint(loc, base, m, path));
            }
            if ext == "gguf" {
                return plain(resolve_gguf(loc, base, m, path));
            }
            if ext != "onnx" {
                return Err(loc.at(path.span(), format!("model file \"{}\": qbench reads .onnx model files, BERT .safetensors checkpoints and .gguf language models", path.get_ref())));
            }
            if let Some(c) = &m_ref.config {
                return Err(loc.at(c.span(), "config applies to safetensors checkpoints; an ONNX file holds its own graph"));
            }
            let file = existing_path(loc, base, path, "model file")?;
            let inputs = match m_ref.inputs {
                Some(_) => resolve_inputs(loc, m, batch_sizes)?,
                None => inputs_from_file(loc, m, &file, batch_sizes)?,
            };
            let (outputs, kinds) = resolve_outputs(loc, base, m_ref)?;
            Ok((ModelKind::Onnx { path: file, inputs, outputs }, kinds))
        }
        (Some(z), Some(_)) => Err(loc.at(z.span(), format!("model \"{name}\" has both zoo and path; a model is either a zoo architecture (zoo + weights) or a model file (path)"))),
        (None, None) => Err(loc.at(m.span(), format!("model \"{name}\" needs zoo = \"cnn\" with weights = \"…\", or path = \"model.onnx\" with its [[models.inputs]]"))),
    }
}

/// Refuses the ONNX-only model keys (and `config`, with `config_too`): "<key> <why>".
fn refuse_onnx_keys(loc: &Locator, m: &spec::ModelSpec, config_too: bool, why: &str) -> Result<(), SuiteError> {
    let config = m.config.as_ref().filter(|_| config_too).map(|c| c.span());
    for (span, key) in [
        (m.inputs.as_ref().map(|i| i.span()), "inputs"),
        (m.dims.as_ref().map(|d| d.span()), "dims"),
        (m.output.as_ref().map(|o| o.span()), "output"),
        (m.outputs.as_ref().map(|o| o.span()), "outputs"),
        (config, "config"),
    ] {
        if let Some(span) = span {
            return Err(loc.at(span, format!("{key} {why}")));
        }
    }
    Ok(())
}

/// A safetensors checkpoint and its `config.json` (the architecture is read from it at run time).
fn resolve_checkpoint(
    loc: &Locator,
    base: &Path,
    m: &Spanned<spec::ModelSpec>,
    path: &Spanned<String>,
) -> Result<ModelKind, SuiteError> {
    let m_ref = m.get_ref();
    refuse_onnx_keys(
        loc,
        m_ref,
        false,
        "applies to ONNX files; a BERT checkpoint takes rows of token ids and outputs their mean-pooled embedding",
    )?;
    let file = existing_path(loc, base, path, "checkpoint file")?;
    let config = match &m_ref.config {
        Some(c) => existing_path(loc, base, c, "config file")?,
        None => {
            let beside = file.with_file_name("config.json");
            if !beside.is_file() && std::fs::symlink_metadata(&beside).is_ok() {
                // Something is there, but not a file to read: say what, not "no config.json".
                return Err(loc.at(
                    path.span(),
                    format!(
                        "the config.json beside checkpoint \"{}\" ({}) {}; make it a regular file or set config = \"…/config.json\"",
                        path.get_ref(),
                        beside.display(),
                        why_not_a_file(&beside)
                    ),
                ));
            }
            if !beside.is_file() {
                return Err(loc.at(
                    path.span(),
                    format!(
                        "checkpoint \"{}\" has no config.json beside it ({}); add config = \"…/config.json\"",
                        path.get_ref(),
                        beside.display()
                    ),
                ));
            }
            beside
        }
    };
    Ok(ModelKind::Bert { path: file, config })
}

/// A GGUF language model: the file holds its architecture and weights; the dataset gives the
/// token ids (a `text` dataset with `windows = true`, or token-id arrays).
fn resolve_gguf(
    loc: &Locator,
    base: &Path,
    m: &Spanned<spec::ModelSpec>,
    path: &Spanned<String>,
) -> Result<ModelKind, SuiteError> {
    refuse_onnx_keys(loc, m.get_ref(), true, "does not apply to a GGUF language model: the file holds its architecture, and it takes windows of token ids from its dataset")?;
    Ok(ModelKind::GgufLm { path: existing_path(loc, base, path, "model file")? })
}

/// `output` or `[[models.outputs]]` → the graph outputs read, in order, and the kind declared
/// for each (`None`: inferred from its shape).
fn resolve_outputs(
    loc: &Locator,
    base: &Path,
    m: &spec::ModelSpec,
) -> Result<(Vec<String>, Vec<Option<OutputKind>>), SuiteError> {
    let declared = match (&m.output, &m.outputs) {
        (Some(o), None) => return Ok((vec![o.get_ref().clone()], vec![None])),
        (None, None) => return Ok((Vec::new(), Vec::new())),
        (Some(o), Some(_)) => {
            return Err(loc.at(
                o.span(),
                "output and [[models.outputs]] both pick outputs; keep [[models.outputs]] (name = \"…\" in each)",
            ))
        }
        (None, Some(d)) => d,
    };
    if declared.get_ref().is_empty() {
        return Err(loc.at(
            declared.span(),
            "outputs is empty; declare an output, e.g. [[models.outputs]] name = \"logits\", kind = \"classes\"",
        ));
    }
    let several = declared.get_ref().len() > 1;
    let (mut names, mut kinds) = (Vec::new(), Vec::new());
    for o in declared.get_ref() {
        let spec = o.get_ref();
        match &spec.name {
            Some(n) if names.contains(n.get_ref()) => {
                return Err(loc.at(n.span(), format!("output \"{}\" is declared twice", n.get_ref())))
            }
            Some(n) => names.push(n.get_ref().clone()),
            None if several => {
                return Err(loc.at(
                    o.span(),
                    "with several [[models.outputs]], each needs name = \"…\" (the graph's output name)",
                ))
            }
            None => {}
        }
        kinds.push(resolve_output_kind(loc, base, spec, o.span())?);
    }
    Ok((names, kinds))
}

/// One `[[models.outputs]]` entry's kind and its settings; keys of another kind are refused.
fn resolve_output_kind(
    loc: &Locator,
    base: &Path,
    o: &spec::ModelOutputSpec,
    at: std::ops::Range<usize>,
) -> Result<Option<OutputKind>, SuiteError> {
    use crate::measure::outputs::{Ctc, DEFAULT_RETRIEVAL_K, DEFAULT_THRESHOLD};
    let kind = match &o.kind {
        None => {
            let set = [
                (o.position_axis.as_ref().map(|x| x.span()), "position_axis"),
                (o.ctc_blank.as_ref().map(|x| x.span()), "ctc_blank"),
                (o.alphabet.as_ref().map(|x| x.span()), "alphabet"),
                (o.alphabet_file.as_ref().map(|x| x.span()), "alphabet_file"),
                (o.threshold.as_ref().map(|x| x.span()), "threshold"),
                (o.k.as_ref().map(|x| x.span()), "k"),
            ];
            if let Some((Some(span), key)) = set.into_iter().find(|(s, _)| s.is_some()) {
                return Err(loc.at(
                    span,
                    format!("{key} needs the output's kind: add kind = \"…\" ({})", OutputKind::NAMES.join(", ")),
                ));
            }
            return Ok(None);
        }
        Some(k) => k,
    };
    let not_for = |span: Option<std::ops::Range<usize>>, key: &str, kinds: &str| match span {
        Some(span) => Err(loc.at(span, format!("{key} applies to kind = {kinds}, not \"{}\"", kind.get_ref()))),
        None => Ok(()),
    };
    let is = |k: &str| kind.get_ref() == k;
    if !is("sequence") {
        not_for(o.position_axis.as_ref().map(|x| x.span()), "position_axis", "\"sequence\"")?;
        not_for(o.ctc_blank.as_ref().map(|x| x.span()), "ctc_blank", "\"sequence\"")?;
        not_for(o.alphabet.as_ref().map(|x| x.span()), "alphabet", "\"sequence\"")?;
        not_for(o.alphabet_file.as_ref().map(|x| x.span()), "alphabet_file", "\"sequence\"")?;
    }
    if !is("scores") {
        not_for(o.threshold.as_ref().map(|x| x.span()), "threshold", "\"scores\"")?;
    }
    if !is("embedding") {
        not_for(o.k.as_ref().map(|x| x.span()), "k", "\"embedding\"")?;
    }
    Ok(Some(match kind.get_ref().as_str() {
        "classes" => OutputKind::Classes,
        "regression" => OutputKind::Regression,
        "scores" => {
            let threshold = match &o.threshold {
                Some(t) if !t.get_ref().is_finite() => {
                    return Err(
                        loc.at(t.span(), format!("threshold = {} must be a finite number, e.g. 0.5", t.get_ref()))
                    )
                }
                Some(t) => *t.get_ref(),
                None => DEFAULT_THRESHOLD,
            };
            OutputKind::Scores { threshold }
        }
        "embedding" => {
            let k = match &o.k {
                Some(k) if !(1..=1000).contains(k.get_ref()) => {
                    return Err(loc.at(k.span(), format!("k = {} must be between 1 and 1000 neighbours", k.get_ref())))
                }
                Some(k) => *k.get_ref() as usize,
                None => DEFAULT_RETRIEVAL_K,
            };
            OutputKind::Embedding { k }
        }
        "sequence" => {
            let position_axis = match &o.position_axis {
                Some(a) if !(0..=1).contains(a.get_ref()) => {
                    return Err(loc.at(a.span(), format!("position_axis = {} must be 0 or 1: a sequence output has two axes per item, positions and classes", a.get_ref())))
                }
                Some(a) => *a.get_ref() as usize,
                None => 0,
            };
            let alphabet = match (&o.alphabet, &o.alphabet_file) {
                (Some(a), Some(_)) => {
                    return Err(loc.at(a.span(), "alphabet and alphabet_file both give the symbols; keep one"))
                }
                (Some(a), None) => Some(a.get_ref().chars().map(String::from).collect::<Vec<_>>()),
                (None, Some(f)) => {
                    let path = existing_path(loc, base, f, "alphabet file")?;
                    let text = crate::files::read_bounded(&path, 16 << 20, "an alphabet file")
                        .map_err(|e| loc.at(f.span(), e.to_string()))?;
                    let text = String::from_utf8(text)
                        .map_err(|_| loc.at(f.span(), format!("alphabet file {} is not UTF-8 text", path.display())))?;
                    Some(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
                }
                (None, None) => None,
            };
            let ctc = match &o.ctc_blank {
                Some(b) if !(0..=1 << 24).contains(b.get_ref()) => {
                    return Err(
                        loc.at(b.span(), format!("ctc_blank = {} must be a class index (0 or more)", b.get_ref()))
                    )
                }
                Some(b) => Some(Ctc { blank: *b.get_ref() as usize, alphabet }),
                None if alphabet.is_some() => {
                    let span = o
                        .alphabet
                        .as_ref()
                        .map(|a| a.span())
                        .or(o.alphabet_file.as_ref().map(|a| a.span()))
                        .unwrap_or(at);
                    return Err(loc.at(
                        span,
                        "an alphabet is for CTC decoding: add ctc_blank = N (the blank's class index, often 0)",
                    ));
                }
                None => None,
            };
            if let Some(Ctc { blank, alphabet: Some(a) }) = &ctc {
                if *blank >= a.len() {
                    let span = o.ctc_blank.as_ref().map(|b| b.span()).unwrap_or(at);
                    return Err(loc.at(span, format!("ctc_blank = {blank} is past the alphabet's {} symbols; the alphabet lists every class, the blank's included", a.len())));
                }
            }
            OutputKind::Sequence { position_axis, ctc }
        }
        other => {
            return Err(loc.at(kind.span(), unknown("output kind", other, OutputKind::NAMES)));
        }
    }))
}

/// A model file's inputs as it declares them, when the suite leaves out `[[models.inputs]]`:
/// the one open axis of each (a symbol `dims` does not bind) is its batch and must come first;
/// an input the file leaves in doubt (a scalar, a batch elsewhere, several open axes) is an
/// error that shows the declaration to write. A file that cannot be read gives no inputs: the
/// run then reports the file's problem as the model's failure, and the suite's other models run.
fn inputs_from_file(
    loc: &Locator,
    m: &Spanned<spec::ModelSpec>,
    file: &Path,
    batch_sizes: &[usize],
) -> Result<Vec<InputDecl>, SuiteError> {
    use crate::model::onnx_file::FileDim;
    let m_ref = m.get_ref();
    let Ok(found) = crate::model::onnx_file::file_inputs(file) else { return Ok(Vec::new()) };
    let bound = bound_dims(loc, m_ref)?;
    let model = m_ref.name.get_ref();
    let all = "declaring [[models.inputs]] lists every input, in the order the dataset's arrays feed them";
    let mut decls = Vec::new();
    let mut used: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut fixed: Vec<(String, String, usize)> = Vec::new();
    for input in found {
        let name = &input.name;
        let shown: Vec<String> = input
            .dims
            .iter()
            .map(|d| match d {
                FileDim::Fixed(n) => n.to_string(),
                FileDim::Symbol(s) => format!("\"{s}\""),
                FileDim::Unknown => "\"?\"".into(),
            })
            .collect();
        let shape = format!("[{}]", shown.join(", "));
        if input.dims.is_empty() {
            return Err(loc.at(m.span(), format!("model \"{model}\"'s input \"{name}\" is a scalar, which no dataset item feeds: feed it a constant, e.g. [[models.inputs]] name = \"{name}\", shape = [], value = 16000 ({all})")));
        }
        let open: Vec<usize> = (0..input.dims.len())
            .filter(|&a| match &input.dims[a] {
                FileDim::Fixed(_) => false,
                FileDim::Symbol(s) => !bound.contains_key(s),
                FileDim::Unknown => true,
            })
            .collect();
        let size = |d: &FileDim| match d {
            FileDim::Fixed(n) => *n,
            FileDim::Symbol(s) => bound[s],
            FileDim::Unknown => unreachable!("an unknown dim is open"),
        };
        let (fixed_batch, item_shape) = match open.as_slice() {
            [] => {
                let n = size(&input.dims[0]);
                fixed.push((name.clone(), shape.clone(), n));
                (Some(n), input.dims[1..].iter().map(size).collect())
            }
            [0] => (None, input.dims[1..].iter().map(size).collect()),
            [k] => {
                return Err(loc.at(m.span(), format!("model \"{model}\"'s input \"{name}\" has shape {shape}, its open axis at {k}: if it is a recurrent state, feed it a constant, e.g. [[models.inputs]] name = \"{name}\", shape = {shape}, value = 0, batch_axis = {k}; if it is data with the batch there, leave value out ({all})")));
            }
            several => {
                let names: Vec<String> = several.iter().map(|&a| shown[a].clone()).collect();
                return Err(loc.at(m.span(), format!("model \"{model}\"'s input \"{name}\" has shape {shape}, with {} axes the file leaves open ({}): the batch is one, bind the others with dims = {{ name = size }} (e.g. dims = {{ seq = 128 }}), or declare [[models.inputs]] ({all})", several.len(), names.join(", "))));
            }
        };
        decls.push(InputDecl {
            name: name.clone(),
            item_shape,
            fixed_batch,
            bound: bound.clone(),
            dtype: None,
            constant: None,
            batch_axis: 0,
        });
        used.extend(input.dims.iter().filter_map(|d| match d {
            FileDim::Symbol(s) => Some(s.clone()),
            _ => None,
        }));
    }
    // An input with no open axis beside one that takes the batch is not batched: no dataset
    // item can feed it. Alone, its first axis is a fixed batch the suite's sizes must match.
    let batched = decls.iter().find(|d| d.fixed_batch.is_none()).map(|d| d.name.clone());
    if let (Some((name, shape, _)), Some(other)) = (fixed.first(), &batched) {
        return Err(loc.at(m.span(), format!("model \"{model}\"'s input \"{name}\" has shape {shape}, no open axis, while \"{other}\" takes the batch: it is not batched, so no dataset item can feed it; feed it a constant, e.g. [[models.inputs]] name = \"{name}\", shape = {shape}, value = 0 ({all})")));
    }
    if let Some((name, shape, n)) = fixed.first() {
        if let Some(b) = batch_sizes.iter().find(|b| *b != n) {
            return Err(loc.at(m.span(), format!("model \"{model}\"'s input \"{name}\" has shape {shape}: its batch is fixed to {n}, but batch_sizes has {b}; use batch_sizes = [{n}], or export the model with a dynamic batch axis")));
        }
    }
    if let (Some(dims), Some(k)) = (&m_ref.dims, bound.keys().find(|k| !used.contains(*k))) {
        let named =
            if used.is_empty() { "no symbol".to_string() } else { used.iter().cloned().collect::<Vec<_>>().join(", ") };
        return Err(loc.at(
            dims.span(),
            format!("dims.{k} is bound but no input of the file names it (its inputs name {named}); remove it"),
        ));
    }
    Ok(decls)
}

/// Whether a data input other than `this` takes its batch as a symbol.
fn any_symbolic_batch(inputs: &[Spanned<spec::InputSpec>], this: &spec::InputSpec) -> bool {
    inputs.iter().map(|i| i.get_ref()).filter(|i| !std::ptr::eq(*i, this) && i.value.is_none()).any(|i| {
        let axis = i.batch_axis.as_ref().and_then(|k| usize::try_from(*k.get_ref()).ok()).unwrap_or(0);
        matches!(i.shape.get_ref().get(axis).map(|d| d.get_ref()), Some(spec::DimSpec::Symbol(_)))
    })
}

/// `dims = { name = size }`: sizes bound to the symbols of a model file's shapes.
fn bound_dims(loc: &Locator, m_ref: &spec::ModelSpec) -> Result<std::collections::BTreeMap<String, usize>, SuiteError> {
    let mut bound = std::collections::BTreeMap::new();
    if let Some(dims) = &m_ref.dims {
        for (k, v) in dims.get_ref() {
            if !(1..=1 << 24).contains(v.get_ref()) {
                return Err(
                    loc.at(v.span(), format!("dims.{k} = {} is out of range; use a positive size", v.get_ref()))
                );
            }
            bound.insert(k.clone(), *v.get_ref() as usize);
        }
    }
    Ok(bound)
}

/// `[[models.inputs]]` and `dims` → the inputs fed to an ONNX model, in declaration order (the
/// order a dataset's arrays feed them).
fn resolve_inputs(
    loc: &Locator,
    m: &Spanned<spec::ModelSpec>,
    batch_sizes: &[usize],
) -> Result<Vec<InputDecl>, SuiteError> {
    let m_ref = m.get_ref();
    let example = "[[models.inputs]] name = \"input\", shape = [\"N\", 3, 224, 224]";
    let inputs = m_ref.inputs.as_ref().ok_or_else(|| {
        loc.at(
            m.span(),
            format!("model \"{}\" is a model file: declare its input, e.g. {example}", m_ref.name.get_ref()),
        )
    })?;
    if inputs.get_ref().is_empty() {
        return Err(loc.at(inputs.span(), format!("inputs is empty; declare the model's input, e.g. {example}")));
    }
    let decls = inputs
        .get_ref()
        .iter()
        .map(|i| resolve_input(loc, m_ref, i.get_ref(), batch_sizes, any_symbolic_batch(inputs.get_ref(), i.get_ref())))
        .collect::<Result<Vec<_>, _>>()?;
    let first_data = decls.iter().find(|e| e.constant.is_none()).map_or("", |e| e.name.as_str());
    for (i, d) in decls.iter().enumerate() {
        if decls[..i].iter().any(|e| e.name == d.name) {
            return Err(loc.at(inputs.get_ref()[i].span(), format!("input \"{}\" is declared twice", d.name)));
        }
        if d.constant.is_none()
            && decls.iter().find(|e| e.constant.is_none()).is_some_and(|e| e.fixed_batch != d.fixed_batch)
        {
            return Err(loc.at(
                inputs.get_ref()[i].span(),
                match (d.fixed_batch, decls.iter().find(|e| e.constant.is_none()).and_then(|e| e.fixed_batch)) {
                    (Some(n), None) => format!(
                        "input \"{}\" is declared with a fixed first axis ({n}) while \"{}\" takes the batch: an input that is not batched is fed a constant (value = …, shape = its whole shape); one whose batch is on another axis takes batch_axis = k",
                        d.name, first_data
                    ),
                    _ => format!(
                        "input \"{}\" has another batch axis than \"{}\"; every data input takes the same batch (at its batch_axis, 0 by default)",
                        d.name, first_data
                    ),
                },
            ));
        }
    }
    if let Some(dims) = &m_ref.dims {
        let used: Vec<&str> = inputs
            .get_ref()
            .iter()
            // A data input's first axis is its batch; a constant's shape is all its own.
            .flat_map(|i| {
                let skip = usize::from(i.get_ref().value.is_none());
                i.get_ref().shape.get_ref().iter().skip(skip)
            })
            .filter_map(|d| match d.get_ref() {
                spec::DimSpec::Symbol(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if let Some(k) = dims.get_ref().keys().find(|k| !used.contains(&k.as_str())) {
            return Err(loc.at(
                dims.span(),
                format!("dims.{k} is bound but no input shape uses it; remove it or use it in shape"),
            ));
        }
    }
    Ok(decls)
}

/// One `[[models.inputs]]` entry, its symbols bound by the model's `dims`.
fn resolve_input(
    loc: &Locator,
    m_ref: &spec::ModelSpec,
    input: &spec::InputSpec,
    batch_sizes: &[usize],
    others_batched: bool,
) -> Result<InputDecl, SuiteError> {
    // Left out: the type the model file declares for this input.
    let dtype = match &input.dtype {
        None => None,
        Some(t) => Some(crate::model::onnx_file::InputDtype::from_name(t.get_ref()).ok_or_else(|| {
            loc.at(t.span(), unknown("input dtype", t.get_ref(), crate::model::onnx_file::InputDtype::NAMES))
        })?),
    };
    let bound = bound_dims(loc, m_ref)?;
    let shape = input.shape.get_ref();
    let dim = |d: &Spanned<spec::DimSpec>| -> Result<usize, SuiteError> {
        match d.get_ref() {
            spec::DimSpec::Fixed(n) if *n > 0 => Ok(*n as usize),
            spec::DimSpec::Fixed(n) => Err(loc.at(d.span(), format!("dim {n} must be positive"))),
            spec::DimSpec::Symbol(s) => bound.get(s).copied().ok_or_else(|| {
                loc.at(d.span(), format!("symbol \"{s}\" is not bound; bind it with dims = {{ {s} = … }} (only the batch axis takes the batch size)"))
            }),
        }
    };
    if let Some(value) = &input.value {
        // A constant: the whole shape in the file's order, the batch (if any) where it says.
        let v = *value.get_ref();
        if !v.is_finite() {
            return Err(loc.at(value.span(), format!("value = {v} is not a finite number")));
        }
        let batch_axis = match &input.batch_axis {
            None => None,
            Some(k) => Some(usize::try_from(*k.get_ref()).ok().filter(|k| *k < shape.len()).ok_or_else(|| {
                loc.at(
                    k.span(),
                    format!(
                        "batch_axis = {} is not an axis of shape (0 to {})",
                        k.get_ref(),
                        shape.len().saturating_sub(1)
                    ),
                )
            })?),
        };
        let mut item_shape = Vec::new();
        for (axis, d) in shape.iter().enumerate() {
            if Some(axis) == batch_axis {
                continue;
            }
            match d.get_ref() {
                spec::DimSpec::Symbol(sym) if !bound.contains_key(sym) => {
                    return Err(loc.at(
                        d.span(),
                        format!("symbol \"{sym}\" at axis {axis} is not bound: if it is the batch, set batch_axis = {axis}; otherwise bind it with dims = {{ {sym} = … }}"),
                    ))
                }
                _ => item_shape.push(dim(d)?),
            }
        }
        let constant = Some(crate::model::onnx_file::Constant { value: v, batch_axis });
        return Ok(InputDecl {
            name: input.name.get_ref().clone(),
            item_shape,
            fixed_batch: None,
            bound,
            dtype,
            constant,
            batch_axis: 0,
        });
    }
    // A data input's batch sits at batch_axis of its shape (the file's order), first by default.
    let batch_axis = match &input.batch_axis {
        None => 0,
        Some(k) => usize::try_from(*k.get_ref()).ok().filter(|k| *k < shape.len()).ok_or_else(|| {
            loc.at(
                k.span(),
                format!(
                    "batch_axis = {} is not an axis of shape (0 to {})",
                    k.get_ref(),
                    shape.len().saturating_sub(1)
                ),
            )
        })?,
    };
    if shape.is_empty() {
        return Err(loc.at(input.shape.span(), "shape is empty; write the batch axis first, e.g. shape = [\"N\", 3, 224, 224] (a scalar input takes a constant: value = …)"));
    }
    if input.batch_axis.is_some() {
        for (axis, d) in shape.iter().enumerate().filter(|(a, _)| *a != batch_axis) {
            if let spec::DimSpec::Symbol(sym) = d.get_ref() {
                if !bound.contains_key(sym) {
                    return Err(loc.at(d.span(), format!("symbol \"{sym}\" at axis {axis} is not bound: if it is the batch, set batch_axis = {axis}; otherwise bind it with dims = {{ {sym} = … }}")));
                }
            }
        }
    }
    let batch = &shape[batch_axis];
    let rest: Vec<&Spanned<spec::DimSpec>> =
        shape.iter().enumerate().filter(|(a, _)| *a != batch_axis).map(|(_, d)| d).collect();
    let fixed_batch = match batch.get_ref() {
        spec::DimSpec::Symbol(_) => None,
        spec::DimSpec::Fixed(n) => {
            let n = usize::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| loc.at(batch.span(), "the batch dim must be positive"))?;
            // Checked against the suite's batch sizes once every input is read: beside an input
            // that takes the batch, this one is not batched at all.
            if let Some(b) = batch_sizes.iter().find(|b| **b != n).filter(|_| !others_batched) {
                return Err(loc.at(batch.span(), format!("the model's batch is fixed to {n}, but batch_sizes has {b}; use batch_sizes = [{n}], or declare the batch axis as a symbol (\"N\") if the model takes any batch")));
            }
            Some(n)
        }
    };
    let item_shape = rest.into_iter().map(dim).collect::<Result<Vec<_>, _>>()?;
    Ok(InputDecl {
        name: input.name.get_ref().clone(),
        item_shape,
        fixed_batch,
        bound,
        dtype,
        constant: None,
        batch_axis,
    })
}

fn existing_path(loc: &Locator, base: &Path, value: &Spanned<String>, what: &str) -> Result<PathBuf, SuiteError> {
    let path = base.join(value.get_ref());
    if path.is_file() {
        Ok(path)
    } else {
        let why = why_not_a_file(&path);
        Err(loc.at(
            value.span(),
            format!(
                "{what} \"{}\" {why} (looked for {}); paths are relative to the suite file's folder",
                value.get_ref(),
                path.display()
            ),
        ))
    }
}

/// Why a path that is not a regular file is not one, in words that finish "\"x\" …": the OS's own
/// reason when it is not simply missing (a symbolic-link loop, no permission), or what it is instead.
fn why_not_a_file(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => "is a directory, not a file".to_string(),
        Ok(m) => match crate::files::check_regular(path, &m) {
            Err(crate::files::FileError::NotAFile { what, .. }) => format!("is {what}, not a regular file"),
            _ => "is not a regular file".to_string(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(path).is_ok() => {
            "is a symbolic link to nothing".to_string()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    }
}

/// Every `*.toml` directly in a folder, sorted: used by `qbench validate` and the tests.
pub fn suite_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}
