//! `qbench tune`: the variant that ships. From the most aggressive scheme a backend runs
//! natively (or `--start`), per-layer mixed precision is searched ([`search`]) until a top-1
//! budget holds on the tuning split, and the candidates worth shipping are measured again on the
//! disjoint test split for the verdict.
//!
//! Every candidate is a real case of a real run: the search writes a suite in which each
//! candidate is a copy of the model with its own `[[overrides]]`, and measures it with `run`
//! (accuracy on the split, latency with the paired sampler, the artifact's size), adding each
//! round's candidate to one run folder (`RunOptions::extend`), so `report`, `compare`, `check`
//! and `explain` work on it. The sensitivity ranking is `explain`'s localization of the start
//! candidate on the tuning split.

pub mod qat;
pub mod search;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use search::{Layers, Measured, Search};

use crate::backend::{BackendId, ModelQuery, Realization};
use crate::gate::Verdict;
use crate::quant::SchemeId;
use crate::record::{CaseStatus, Record};
use crate::run::{Event, RunError, RunOptions};
use crate::suite::{SplitPart, Suite, SuiteError};

/// Why tuning could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("--budget {given:?}: {why}")]
    Budget { given: String, why: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("ranking the layers by sensitivity")]
    Explain(#[from] crate::explain::ExplainError),
    #[error(transparent)]
    Chart(#[from] crate::report::chart::ChartError),
    #[error("cannot write {path}; check that the folder is writable, or choose another with --out")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("candidate {label} was not measured: {why}")]
    NotMeasured { label: String, why: String },
    #[error("stopped by signal {0} before the search ended; the candidates measured so far are in {1}")]
    Stopped(usize, PathBuf),
}

/// The fewest items a tuning or test split may hold: below it a top-1 interval spans most of
/// the scale and no budget verdict means anything.
pub const MIN_SPLIT_ITEMS: usize = 100;

/// What the search minimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The median latency of one batch.
    Latency,
    /// The bytes of the artifact the backend loads.
    Size,
}

impl Objective {
    fn of(self, r: &Record) -> Option<f64> {
        match self {
            Objective::Latency => r.latency_median_ns,
            Objective::Size => r.artifact_bytes.map(|b| b as f64),
        }
    }

    fn show(self, v: Option<f64>) -> String {
        match (self, v) {
            (_, None) => "not measured".into(),
            (Objective::Latency, Some(ns)) => format!("{:.1} µs", ns / 1e3),
            (Objective::Size, Some(b)) => format!("{:.1} KiB", b / 1024.0),
        }
    }
}

/// `--budget 'max_delta_top1_pts=0.5'`: the most top-1 points a variant may lose against f32,
/// judged on the paired interval.
pub fn parse_budget(text: &str) -> Result<f64, TuneError> {
    let err = |why: &str| TuneError::Budget { given: text.to_string(), why: why.to_string() };
    let (key, value) = text.split_once('=').ok_or_else(|| err("write KEY=VALUE, e.g. max_delta_top1_pts=0.5"))?;
    if key.trim() != "max_delta_top1_pts" {
        return Err(err("the budget tune knows is max_delta_top1_pts (top-1 points lost against f32)"));
    }
    let v: f64 = value.trim().parse().map_err(|_| err("the value is not a number"))?;
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return Err(err("use a number of points from 0 to 100"));
    }
    Ok(v)
}

/// What to tune, and how.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub model: String,
    pub backend: BackendId,
    pub budget_pts: f64,
    pub objective: Objective,
    /// The start scheme; default: the most aggressive of the model's schemes the backend runs
    /// natively.
    pub start: Option<SchemeId>,
    /// Wider types a layer is promoted through, in order (default: int8 per-channel or q8_0,
    /// then f32).
    pub ladder: Option<Vec<SchemeId>>,
    /// Items of the tuning split (default: the suite's `[tuning]`, else half of the
    /// evaluation items, stratified, seed 0).
    pub tune_items: Option<usize>,
    /// The batch size latency is measured at (default: the suite's first).
    pub batch: Option<usize>,
    /// The uniform scheme the chosen variant is compared with on the test split.
    pub compare_to: SchemeId,
    pub out_dir: Option<PathBuf>,
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

/// One variant measured on the test split.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestRow {
    pub label: String,
    /// Why it is here: chosen, Pareto, comparison, closest.
    pub role: String,
    pub artifact_bytes: Option<u64>,
    pub latency_median_ns: Option<f64>,
    pub top1_accuracy: Option<f64>,
    pub drop_pts: Option<f64>,
    pub drop_ci_pts: Option<(f64, f64)>,
    #[serde(serialize_with = "verdict_name")]
    pub verdict: Verdict,
    pub message: String,
    pub realization: String,
}

fn verdict_name<S: serde::Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

/// What a tune left behind.
#[derive(Debug, serde::Serialize)]
pub struct TuneOutcome {
    pub dir: PathBuf,
    pub model: String,
    pub backend: String,
    pub budget_pts: f64,
    pub objective: Objective,
    pub start: String,
    pub ladder: Vec<String>,
    /// The layers, most sensitive first, with the figure that ranked them.
    pub ranking: Vec<(String, String)>,
    /// Layers the search left as they are, and why.
    pub fixed: Vec<(String, String)>,
    pub search: Search,
    pub pareto: Vec<usize>,
    pub search_run: PathBuf,
    pub test_run: Option<PathBuf>,
    pub test: Vec<TestRow>,
    pub tune_split: String,
    pub test_split: String,
    /// The chosen variant's `[[overrides]]`, to paste into the suite.
    pub overrides: Option<String>,
    pub seconds: f64,
}

impl TuneOutcome {
    /// Whether the chosen variant holds the budget on the test split (what exit code 0 says).
    pub fn passed(&self) -> bool {
        self.test.iter().any(|t| t.role.starts_with("chosen") && t.verdict == Verdict::Pass)
    }
}

/// The user's suite reduced to what a tune measures: one model's entry, its dataset, the
/// measurement settings; candidates are added as copies of the model entry.
struct Derived {
    doc: toml_edit::DocumentMut,
    model_table: toml_edit::Table,
    model: String,
    start: SchemeId,
    /// The user's suite file, absolute.
    source: PathBuf,
}

/// Keys of a `[[models]]` and a `[[datasets]]` entry that are paths relative to the suite file.
const MODEL_PATHS: &[&str] = &["weights", "path", "config"];
const DATASET_PATHS: &[&str] = &["images", "inputs", "labels", "text_labels", "tokenizer"];

impl Derived {
    fn new(
        suite: &Suite,
        model: usize,
        opts: &TuneOptions,
        start: SchemeId,
        tune_items: usize,
        batch: usize,
    ) -> Result<Self, TuneError> {
        use toml_edit::{value, Array, Item, Table};
        let mut doc: toml_edit::DocumentMut =
            suite.source.parse().map_err(|e| TuneError::Usage(format!("the suite does not parse as TOML: {e}")))?;
        let base = suite.file.parent().map(Path::to_path_buf).unwrap_or_default();
        let absolute = |t: &mut Table, keys: &[&str]| {
            for k in keys {
                if let Some(p) = t.get(k).and_then(|v| v.as_str()) {
                    let p = Path::new(p);
                    if p.is_relative() {
                        let abs = std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(p));
                        t.insert(k, value(abs.to_string_lossy().as_ref()));
                    }
                }
            }
        };
        for k in [
            "description",
            "overrides",
            "gates",
            "exclude",
            "include",
            "scenario",
            "output",
            "require_native",
            "tuning",
        ] {
            doc.remove(k);
        }
        if let Some(m) = doc.get("measure").and_then(Item::as_table_like) {
            if let Some((k, _)) = m.iter().find(|(_, v)| v.is_array()) {
                return Err(TuneError::Usage(format!(
                    "[measure] {k} is a sweep, and tune measures at one point; choose one value with --set measure.{k}=…"
                )));
            }
        }
        let entry = &suite.models[model];
        let dataset = suite.datasets[entry.dataset].name.clone();
        let mut datasets = doc
            .get("datasets")
            .and_then(Item::as_array_of_tables)
            .cloned()
            .ok_or_else(|| TuneError::Usage("the suite has no [[datasets]]".into()))?;
        datasets.retain(|t| t.get("name").and_then(|v| v.as_str()) == Some(dataset.as_str()));
        for t in datasets.iter_mut() {
            absolute(t, DATASET_PATHS);
        }
        doc.insert("datasets", Item::ArrayOfTables(datasets));
        let mut model_table = doc
            .get("models")
            .and_then(Item::as_array_of_tables)
            .and_then(|a| a.iter().find(|t| t.get("name").and_then(|v| v.as_str()) == Some(entry.name.as_str())))
            .cloned()
            .ok_or_else(|| {
                TuneError::Usage(format!("model \"{}\" has no [[models]] table in the suite", entry.name))
            })?;
        for k in ["schemes", "backends", "batch_sizes", "scenario"] {
            model_table.remove(k);
        }
        absolute(&mut model_table, MODEL_PATHS);
        // `[[models.inputs]]` and `[[models.outputs]]` as inline arrays: each candidate's copy
        // then carries its own, wherever the table is written.
        let nested: Vec<String> =
            model_table.iter().filter(|(_, v)| v.is_array_of_tables()).map(|(k, _)| k.to_string()).collect();
        for k in nested {
            if let Some(Item::ArrayOfTables(a)) = model_table.remove(&k) {
                model_table.insert(&k, value(a.into_array()));
            }
        }
        model_table.set_position(None);
        let list = |items: &[String]| {
            let mut a = Array::new();
            items.iter().for_each(|s| a.push(s.as_str()));
            value(a)
        };
        doc.insert("schemes", list(&["f32".to_string()]));
        doc.insert("backends", list(&[opts.backend.name().to_string()]));
        let mut b = Array::new();
        b.push(batch as i64);
        doc.insert("batch_sizes", value(b));
        let mut tuning = Table::new();
        tuning.insert("items", value(tune_items as i64));
        let (select, seed) = match suite.tuning.as_ref().map(|t| t.selection) {
            Some(crate::data::split::Selection::First) => ("first", None),
            Some(crate::data::split::Selection::Random { seed }) => ("random", Some(seed)),
            Some(crate::data::split::Selection::Stratified { seed }) => ("stratified", Some(seed)),
            None => ("stratified", Some(0)),
        };
        tuning.insert("select", value(select));
        if let Some(seed) = seed {
            tuning.insert("seed", value(seed as i64));
        }
        doc.insert("tuning", Item::Table(tuning));
        let source = std::path::absolute(&suite.file).unwrap_or_else(|_| suite.file.clone());
        Ok(Derived { doc, model_table, model: entry.name.clone(), start, source })
    }

    /// The suite text measuring `candidates` (name, uniform scheme, layers) on `part` of the
    /// split, each beside its own f32 (what the paired sampler times it against and its drop
    /// is counted from), with the budget as a `max_delta_top1_pts` gate so `qbench check` on
    /// the run gives the same verdicts.
    fn text(&self, name: &str, part: SplitPart, candidates: &[(String, SchemeId, Layers)], budget: f64) -> String {
        use toml_edit::{value, Array, ArrayOfTables, Item, Table};
        let mut doc = self.doc.clone();
        doc.insert("name", value(name));
        if let Some(t) = doc.get_mut("tuning").and_then(Item::as_table_mut) {
            t.insert("evaluate", value(part.name()));
        }
        let one = |s: &str| {
            let mut a = Array::new();
            a.push(s);
            value(a)
        };
        let mut models = ArrayOfTables::new();
        let mut overrides = ArrayOfTables::new();
        for (label, scheme, layers) in candidates {
            let mut t = self.model_table.clone();
            t.insert("name", value(label.as_str()));
            let mut schemes = Array::new();
            schemes.push("f32");
            if *scheme != SchemeId::F32 {
                schemes.push(scheme.name());
            }
            t.insert("schemes", value(schemes));
            models.push(t);
            // Each layer not at the uniform scheme, grouped by its scheme.
            let mut by_scheme: Vec<(SchemeId, Vec<String>)> = Vec::new();
            for (layer, s) in layers.iter().filter(|(_, s)| s != scheme) {
                let pattern = glob::Pattern::escape(layer);
                match by_scheme.iter_mut().find(|(k, _)| k == s) {
                    Some((_, v)) => v.push(pattern),
                    None => by_scheme.push((*s, vec![pattern])),
                }
            }
            for (s, layers) in by_scheme {
                let mut o = Table::new();
                o.insert("models", one(label));
                o.insert("schemes", one(&scheme.name()));
                let mut a = Array::new();
                layers.iter().for_each(|l| a.push(l.as_str()));
                o.insert("layers", value(a));
                o.insert("scheme", value(s.name()));
                overrides.push(o);
            }
        }
        doc.insert("models", Item::ArrayOfTables(models));
        if !overrides.is_empty() {
            doc.insert("overrides", Item::ArrayOfTables(overrides));
        }
        let mut gate = Table::new();
        gate.insert("name", value("tune budget"));
        gate.insert("max_delta_top1_pts", value(budget));
        let mut gates = ArrayOfTables::new();
        gates.push(gate);
        doc.insert("gates", Item::ArrayOfTables(gates));
        let header = format!(
            "# Written by `qbench tune` from {}: model \"{}\", each candidate a copy of it with its own overrides.\n",
            self.source.display(),
            self.model
        );
        format!("{header}{doc}")
    }
}

/// The `[[overrides]]` block that gives `model` under `scheme` the candidate's layers.
pub fn overrides_block(model: &str, scheme: SchemeId, layers: &Layers) -> String {
    let mut by_scheme: Vec<(SchemeId, Vec<String>)> = Vec::new();
    for (layer, s) in layers.iter().filter(|(_, s)| *s != scheme) {
        match by_scheme.iter_mut().find(|(k, _)| k == s) {
            Some((_, v)) => v.push(layer.clone()),
            None => by_scheme.push((*s, vec![layer.clone()])),
        }
    }
    let q = |s: &str| toml_edit::Value::from(s).to_string().trim().to_string();
    let mut out = String::new();
    for (s, layers) in by_scheme {
        let layers: Vec<String> = layers.iter().map(|l| q(&glob::Pattern::escape(l))).collect();
        let _ = writeln!(
            out,
            "[[overrides]]\nmodels = [{}]\nschemes = [{}]\nlayers = [{}]\nscheme = {}\n",
            q(model),
            q(&scheme.name()),
            layers.join(", "),
            q(&s.name())
        );
    }
    out
}

/// Runs the tune of `opts.model` on `opts.backend`; `progress` gets one line per step.
pub fn tune(suite: &Suite, opts: &TuneOptions, progress: &mut dyn FnMut(&str)) -> Result<TuneOutcome, TuneError> {
    let started = std::time::Instant::now();
    let model = suite.models.iter().position(|m| m.name == opts.model).ok_or_else(|| {
        let known: Vec<&str> = suite.models.iter().map(|m| m.name.as_str()).collect();
        TuneError::Usage(format!("model \"{}\" is not in the suite; its models: {}", opts.model, known.join(", ")))
    })?;
    let entry = &suite.models[model];
    if entry.kind.is_language_model() {
        return Err(TuneError::Usage(format!(
            "model \"{}\" is a language model, scored by perplexity: tune's budget is top-1 accuracy against f32 on labelled items",
            entry.name
        )));
    }
    let batch = opts.batch.unwrap_or(suite.batch_sizes_of(model)[0]);
    if opts.start == Some(SchemeId::F32) {
        return Err(TuneError::Usage(
            "--start f32 leaves nothing to tune: start from a quantized scheme, e.g. --start int4-g32-sym".into(),
        ));
    }
    if batch == 0 {
        return Err(TuneError::Usage("--batch 0: use a batch size of 1 or more".into()));
    }
    if let Some(ladder) = &opts.ladder {
        let bits: Vec<f64> = ladder.iter().map(|s| s.weight_precision().unwrap_or(f64::NAN)).collect();
        if bits.windows(2).any(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater)) {
            let names: Vec<String> = ladder.iter().map(|s| s.name()).collect();
            return Err(TuneError::Usage(format!(
                "--ladder {}: each rung must store weights wider than the one before (e.g. q4k,q8_0,f32)",
                names.join(",")
            )));
        }
    }
    let out_root = opts.out_dir.clone().unwrap_or_else(|| suite.output_dir.clone());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let dir = crate::files::join(&out_root, &format!("{}-tune", suite.name))
        .map_err(|e| TuneError::Usage(e.to_string()))?
        .join(format!("{}-{}-{stamp}", entry.name, opts.backend.name()));
    let mkdir =
        |p: &Path| std::fs::create_dir_all(p).map_err(|source| TuneError::Write { path: p.to_path_buf(), source });
    mkdir(&dir.join("suites"))?;
    mkdir(&dir.join("model"))?;
    // The model's layers and what the backend makes of each scheme.
    let loaded = crate::model::LoadedModel::load(&entry.name, &entry.kind, &dir.join("model"))?;
    let layers = loaded.layers.clone();
    let native = |s: SchemeId| {
        let plan = suite.plan(model, s, &layers);
        opts.backend.create(suite.cuda_device).capability(ModelQuery::loaded(&loaded), &plan, batch)
    };
    let start = match opts.start {
        Some(s) => s,
        None => suite
            .schemes_of(model)
            .into_iter()
            .filter(|s| *s != SchemeId::F32 && matches!(native(*s), Realization::Native))
            .filter_map(|s| Some((s, s.weight_precision()?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
            .ok_or_else(|| {
                TuneError::Usage(format!(
                    "none of model \"{}\"'s weight schemes runs natively on {}; name the start with --start (e.g. --start int4-g32-sym)",
                    entry.name,
                    opts.backend.name()
                ))
            })?,
    };
    if let Realization::Unsupported(why) = native(start) {
        return Err(TuneError::Usage(format!("{} cannot run {}: {why}", opts.backend.name(), start.name())));
    }
    let ladder: Vec<SchemeId> = {
        let wider = opts.ladder.clone().unwrap_or_else(|| default_ladder(start));
        let mut l = vec![start];
        l.extend(wider.into_iter().filter(|s| *s != start));
        l
    };
    let statics = std::iter::once(opts.compare_to)
        .chain(ladder.iter().copied())
        .find(|s| s.activations() != crate::quant::ActivationQuant::None);
    if let Some(s) = statics {
        return Err(TuneError::Usage(format!(
            "{} quantizes activations; tune searches weight schemes (f32, f16, int8/int4 weights, GGML types) for now",
            s.name()
        )));
    }
    // The tuning split: the suite's, or half of the evaluation items.
    let datasets = crate::run::load_datasets(suite)?;
    let full = &datasets[entry.dataset];
    if full.labels.is_none() {
        return Err(TuneError::Usage(format!(
            "dataset \"{}\" has no labels: tune's budget is top-1 accuracy against f32",
            full.name
        )));
    }
    let tune_items = match (opts.tune_items, &suite.tuning) {
        (Some(n), _) => n,
        (None, Some(t)) => t.items,
        (None, None) => full.len() / 2,
    };
    // A verdict on a handful of items is no verdict: both splits keep at least MIN_SPLIT_ITEMS.
    if tune_items < MIN_SPLIT_ITEMS || tune_items + MIN_SPLIT_ITEMS > full.len() {
        return Err(TuneError::Usage(format!(
            "--tune-items {tune_items}: the tuning and the test split each need at least {MIN_SPLIT_ITEMS} items, and dataset \"{}\" has {}",
            full.name,
            full.len()
        )));
    }
    if batch > full.len() - tune_items {
        return Err(TuneError::Usage(format!(
            "--batch {batch} is larger than the test split ({} items)",
            full.len() - tune_items
        )));
    }
    let derived = Derived::new(suite, model, opts, start, tune_items, batch)?;
    let start_layers: Layers = suite.plan(model, start, &layers).layers;
    progress(&format!(
        "tuning {} on {} at batch {batch}: start {} ({}), ladder {}, budget {:.2} top-1 points, objective {:?}",
        entry.name,
        opts.backend.name(),
        start.name(),
        native(start).name(),
        ladder.iter().map(|s| s.name()).collect::<Vec<_>>().join(" → "),
        opts.budget_pts,
        opts.objective
    ));
    let mut measurer = RunMeasurer {
        derived: &derived,
        dir: &dir,
        candidates: Vec::new(),
        run_dir: None,
        opts,
        progress,
        records: Vec::new(),
        tune_items,
        ranking: Vec::new(),
        fixed: Vec::new(),
    };
    let search = search::search(&start_layers, &ladder, &mut measurer)?;
    let search_run = measurer.run_dir.clone().unwrap_or_default();
    let pareto = search::pareto(&search.measured);
    // The verdict: the chosen variant, the Pareto set and the comparison on the test split.
    let mut test_models: Vec<(String, SchemeId, Layers)> = Vec::new();
    let mut roles: Vec<(String, String)> = Vec::new();
    let compare_label = format!("{}.{}", entry.name, opts.compare_to.name());
    test_models.push((compare_label.clone(), opts.compare_to, Vec::new()));
    roles.push((compare_label, format!("comparison (uniform {})", opts.compare_to.name())));
    let mut add = |i: usize, role: &str, test_models: &mut Vec<(String, SchemeId, Layers)>| {
        let m = &search.measured[i];
        match roles.iter_mut().find(|(l, _)| *l == m.label) {
            Some((_, r)) => r.push_str(&format!(", {role}")),
            None => {
                roles.push((m.label.clone(), role.to_string()));
                test_models.push((m.label.clone(), start, m.layers.clone()));
            }
        }
    };
    match search.chosen {
        Some(c) => add(c, "chosen", &mut test_models),
        None => {
            if let Some(c) = search.closest {
                add(c, "closest", &mut test_models)
            }
        }
    }
    for &p in &pareto {
        add(p, "Pareto", &mut test_models);
    }
    let test_path = dir.join("suites").join("test.toml");
    write(&test_path, &derived.text("test", SplitPart::Test, &test_models, opts.budget_pts))?;
    let test_suite = Suite::load(&test_path)?;
    (measurer.progress)(&format!("measuring {} variant(s) on the test split", test_models.len()));
    let options = RunOptions { out_dir: Some(dir.clone()), stop: opts.stop.clone(), ..RunOptions::default() };
    let summary = crate::run::run(&test_suite, &options, &mut |e: &Event| (measurer.progress)(&format!("  {e}")))?;
    if let Some(s) = summary.stopped_by {
        return Err(TuneError::Stopped(s as usize, dir));
    }
    let mut test = Vec::new();
    for (label, role) in &roles {
        let of = |f32: bool| summary.records.iter().find(|r| &r.model == label && (r.scheme == "f32") == f32);
        let (Some(r), base) = (of(false), of(true).filter(|b| b.status == CaseStatus::Ok)) else { continue };
        let (verdict, message) = match r.status {
            CaseStatus::Ok => crate::gate::top1_drop_verdict(base, r, opts.budget_pts),
            _ => (Verdict::Inconclusive, r.error.clone().unwrap_or_else(|| "not measured".into())),
        };
        let diff = base.and_then(|b| b.top1_difference(r));
        test.push(TestRow {
            label: label.clone(),
            role: role.clone(),
            artifact_bytes: r.artifact_bytes,
            latency_median_ns: r.latency_median_ns,
            top1_accuracy: r.top1_accuracy,
            drop_pts: diff.map(|d| 100.0 * d.0),
            drop_ci_pts: diff.and_then(|d| d.1).map(|(lo, hi)| (100.0 * lo, 100.0 * hi)),
            verdict,
            message,
            realization: r.realization.clone(),
        });
    }
    let split = |part| {
        let mut t = test_suite.tuning.clone();
        if let Some(t) = t.as_mut() {
            t.evaluate = part;
        }
        t.map(|t| t.describe()).unwrap_or_default()
    };
    let overrides = search.chosen.map(|c| overrides_block(&entry.name, start, &search.measured[c].layers));
    let outcome = TuneOutcome {
        dir: dir.clone(),
        model: entry.name.clone(),
        backend: opts.backend.name().to_string(),
        budget_pts: opts.budget_pts,
        objective: opts.objective,
        start: start.name(),
        ladder: ladder.iter().map(|s| s.name()).collect(),
        ranking: std::mem::take(&mut measurer.ranking),
        fixed: std::mem::take(&mut measurer.fixed),
        search,
        pareto,
        search_run,
        test_run: Some(summary.run_dir.clone()),
        test,
        tune_split: split(SplitPart::Tune),
        test_split: split(SplitPart::Test),
        overrides,
        seconds: started.elapsed().as_secs_f64(),
    };
    write(&dir.join("tune.md"), &outcome.render())?;
    write(&dir.join("tune.json"), &serde_json::to_string_pretty(&outcome).unwrap_or_default())?;
    if let Some(o) = outcome.overrides.as_ref().filter(|o| !o.trim().is_empty()) {
        write(&dir.join("overrides.toml"), o)?;
    }
    outcome.chart().write(&dir.join("charts"))?;
    Ok(outcome)
}

/// The wider types after `start`: from a GGML type, q3_K, q4_K and q8_0 (those wider than it), from
/// an integer or float type int8 per-channel; then f32.
pub fn default_ladder(start: SchemeId) -> Vec<SchemeId> {
    use crate::quant::ggml::GgmlType;
    let bits = start.weight_precision().unwrap_or(32.0);
    let mid: Vec<SchemeId> = if start.is_ggml() {
        vec![SchemeId::Ggml(GgmlType::Q3K), SchemeId::Ggml(GgmlType::Q4K), SchemeId::Ggml(GgmlType::Q8_0)]
    } else {
        vec![SchemeId::Int8Weights { per_channel: true, symmetric: true }]
    };
    mid.into_iter().filter(|s| s.weight_precision().is_some_and(|b| b > bits)).chain([SchemeId::F32]).collect()
}

fn write(path: &Path, text: &str) -> Result<(), TuneError> {
    std::fs::write(path, text).map_err(|source| TuneError::Write { path: path.to_path_buf(), source })
}

/// Measures each candidate as a case of a run: the round's suite holds every candidate so far,
/// and the run folder is extended by the new one.
struct RunMeasurer<'a, 'p> {
    derived: &'a Derived,
    dir: &'a Path,
    candidates: Vec<(String, SchemeId, Layers)>,
    run_dir: Option<PathBuf>,
    opts: &'a TuneOptions,
    progress: &'p mut dyn FnMut(&str),
    records: Vec<Record>,
    tune_items: usize,
    /// The ranking and the figures behind it, for the report.
    ranking: Vec<(String, String)>,
    /// Layers the search leaves as they are, and why.
    fixed: Vec<(String, String)>,
}

impl search::Measurer for RunMeasurer<'_, '_> {
    fn measure(&mut self, step: &str, layers: &Layers) -> Result<Measured, TuneError> {
        let label = format!("{}.t{:02}", self.derived.model, self.candidates.len());
        self.candidates.push((label.clone(), self.derived.start, layers.clone()));
        let all = self.candidates.clone();
        let path = self.dir.join("suites").join(format!("search-{:02}.toml", self.candidates.len() - 1));
        write(&path, &self.derived.text("search", SplitPart::Tune, &all, self.opts.budget_pts))?;
        let suite = Suite::load(&path)?;
        (self.progress)(&format!("{label}: {step}"));
        let options = RunOptions {
            out_dir: Some(self.dir.to_path_buf()),
            extend: self.run_dir.clone(),
            stop: self.opts.stop.clone(),
            ..RunOptions::default()
        };
        let progress = &mut *self.progress;
        let summary = crate::run::run(&suite, &options, &mut |e: &Event| {
            if matches!(e, Event::Case { .. } | Event::Warning(_)) {
                progress(&format!("  {e}"))
            }
        })?;
        self.run_dir = Some(summary.run_dir.clone());
        if let Some(s) = summary.stopped_by {
            return Err(TuneError::Stopped(s as usize, summary.run_dir));
        }
        self.records = summary.records;
        let base = self.records.iter().find(|r| r.model == label && r.scheme == "f32" && r.status == CaseStatus::Ok);
        let r = self
            .records
            .iter()
            .find(|r| r.model == label && r.scheme != "f32")
            .ok_or_else(|| TuneError::NotMeasured { label: label.clone(), why: "its run left no record".into() })?;
        if r.status == CaseStatus::Ok && r.top1_accuracy.is_none() {
            return Err(TuneError::Usage(format!(
                "model \"{}\" has no top-1 accuracy (its output is not class scores over labelled items): tune's budget needs one",
                self.derived.model
            )));
        }
        let (verdict, message) = match r.status {
            CaseStatus::Ok => crate::gate::top1_drop_verdict(base, r, self.opts.budget_pts),
            _ => (Verdict::Inconclusive, format!("not measured: {}", r.error.clone().unwrap_or_default())),
        };
        let diff = base.and_then(|b| b.top1_difference(r));
        Ok(Measured {
            label,
            step: step.to_string(),
            layers: layers.clone(),
            objective: self.opts.objective.of(r),
            drop_pts: diff.map(|d| 100.0 * d.0),
            drop_ci_pts: diff.and_then(|d| d.1).map(|(lo, hi)| (100.0 * lo, 100.0 * hi)),
            verdict,
            message,
        })
    }

    fn rank(&mut self, start: &Measured) -> Result<Vec<String>, TuneError> {
        self.rank_layers(start)
    }
}

impl RunMeasurer<'_, '_> {
    fn rank_layers(&mut self, m: &Measured) -> Result<Vec<String>, TuneError> {
        use crate::measure::layers::LayerError;
        let r = self
            .records
            .iter()
            .find(|r| r.model == m.label && r.scheme != "f32")
            .ok_or_else(|| TuneError::NotMeasured { label: m.label.clone(), why: "no record".into() })?;
        let run_dir = self.run_dir.clone().unwrap_or_default();
        (self.progress)(&format!(
            "ranking the layers of {} by sensitivity (explain, {} items)",
            m.label, self.tune_items
        ));
        let e = crate::explain::explain(&run_dir, r.case_index, self.tune_items)?;
        // A layer the variant stores in f32 whatever the plan says (a conv under a GGML
        // scheme) has nothing to promote, and one the suite's own overrides give another scheme
        // (a group that divides its rows) keeps it.
        let start = self.derived.start;
        let own = |layer: &str| m.layers.iter().any(|(l, s)| l == layer && *s == start);
        let mut ls: Vec<&LayerError> =
            e.localization.layers.iter().filter(|l| l.stored != SchemeId::F32 && own(&l.layer)).collect();
        self.fixed = e
            .localization
            .layers
            .iter()
            .filter(|l| !(l.stored != SchemeId::F32 && own(&l.layer)))
            .map(|l| {
                let why = if !own(&l.layer) {
                    format!("the suite's overrides give it {}", l.scheme.name())
                } else {
                    format!(
                        "stored in f32 under {} (the variant has no {} kernel for it)",
                        l.scheme.name(),
                        l.scheme.name()
                    )
                };
                (l.layer.clone(), why)
            })
            .collect();
        let gain = |l: &LayerError| l.kept_float_top1_gain.map_or(0.0, |g| g.0);
        let kept = |l: &LayerError| l.kept_float_logits_sqnr_db.unwrap_or(f64::INFINITY);
        let alone = |l: &LayerError| l.isolated_logits_sqnr_db.unwrap_or(f64::INFINITY);
        ls.sort_by(|a, b| {
            gain(b).total_cmp(&gain(a)).then(kept(b).total_cmp(&kept(a))).then(alone(a).total_cmp(&alone(b)))
        });
        let db = |v: Option<f64>| v.map_or("∞".into(), |v| format!("{v:.1} dB"));
        self.ranking = ls
            .iter()
            .map(|l| {
                let gain = l.kept_float_top1_gain.map_or("—".into(), |(d, lo, hi)| {
                    format!("{:+.2} [{:+.2}, {:+.2}] pts", 100.0 * d, 100.0 * lo, 100.0 * hi)
                });
                let why = format!(
                    "kept f32: top-1 {gain}, logits SQNR {}; alone: logits SQNR {}",
                    db(l.kept_float_logits_sqnr_db),
                    db(l.isolated_logits_sqnr_db)
                );
                (l.layer.clone(), why)
            })
            .collect();
        Ok(ls.iter().map(|l| l.layer.clone()).collect())
    }
}

impl TuneOutcome {
    /// tune.md: the settings, the ranking, every candidate, the test verdict and the overrides.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pts = |d: Option<f64>, ci: Option<(f64, f64)>| match (d, ci) {
            (Some(d), Some((lo, hi))) => format!("{d:+.2} [{lo:+.2}, {hi:+.2}]"),
            (Some(d), None) => format!("{d:+.2}"),
            _ => "—".into(),
        };
        let _ = writeln!(out, "# Tune: {} on {}\n", self.model, self.backend);
        let _ = writeln!(
            out,
            "Budget: top-1 drop against f32 at most {:.2} points, judged on the paired Agresti–Min 95% interval (the whole interval within it). Objective: {:?}. Start: {}; a layer is promoted through {}. Tuning decisions on the {}; the verdict on the {}. {:.0} s.\n",
            self.budget_pts,
            self.objective,
            self.start,
            self.ladder.join(" → "),
            self.tune_split,
            self.test_split,
            self.seconds
        );
        let _ = writeln!(
            out,
            "## Sensitivity (explain's localization of the start on the tuning split), most sensitive first\n"
        );
        for (i, (l, why)) in self.ranking.iter().enumerate() {
            let _ = writeln!(out, "{}. {l}: {why}", i + 1);
        }
        if self.ranking.is_empty() {
            let _ = writeln!(out, "(no layer the search may change)");
        }
        for (l, why) in &self.fixed {
            let _ = writeln!(out, "- {l} is left as it is: {why}");
        }
        let _ = writeln!(out, "\n## Candidates, as measured on the tuning split ({})\n", self.search_run.display());
        let _ = writeln!(
            out,
            "| candidate | step | layers | {:?} | top-1 drop vs f32 [95% CI] (pts) | budget | Pareto |",
            self.objective
        );
        let _ = writeln!(out, "| --- | --- | --- | --: | --: | --- | --- |");
        for (i, m) in self.search.measured.iter().enumerate() {
            let layers: Vec<String> = m.layers.iter().map(|(l, s)| format!("{l}={}", s.name())).collect();
            let mark = if Some(i) == self.search.chosen { " **chosen**" } else { "" };
            let _ = writeln!(
                out,
                "| {}{mark} | {} | {} | {} | {} | {} | {} |",
                m.label,
                m.step,
                layers.join(", "),
                self.objective.show(m.objective),
                pts(m.drop_pts, m.drop_ci_pts),
                m.verdict.name(),
                if self.pareto.contains(&i) { "yes" } else { "" }
            );
        }
        if let Some(dir) = &self.test_run {
            let _ = writeln!(out, "\n## Verdict on the test split ({})\n", dir.display());
        }
        let cmp = self.test.iter().find(|t| t.role.starts_with("comparison"));
        let _ = writeln!(out, "| variant | role | realization | size | size vs comparison | latency (median) | latency vs comparison | top-1 | drop vs f32 [95% CI] (pts) | budget |");
        let _ = writeln!(out, "| --- | --- | --- | --: | --: | --: | --: | --: | --: | --- |");
        for t in &self.test {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.label,
                t.role,
                t.realization,
                t.artifact_bytes.map_or("—".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
                ratio(t.artifact_bytes.map(|b| b as f64), cmp.and_then(|c| c.artifact_bytes.map(|b| b as f64))),
                t.latency_median_ns.map_or("—".into(), |ns| format!("{:.1} µs", ns / 1e3)),
                ratio(t.latency_median_ns, cmp.and_then(|c| c.latency_median_ns)),
                t.top1_accuracy.map_or("—".into(), |a| format!("{:.2}%", 100.0 * a)),
                pts(t.drop_pts, t.drop_ci_pts),
                t.verdict.name()
            );
        }
        let _ = writeln!(
            out,
            "\nSize is the artifact the backend loads. Latency ratios here are of medians sampled one after the other, not paired: on a busy machine they move by 10% between runs. Each candidate's paired speedup against its own f32 is in the run's records (`speedup_vs_f32`)."
        );
        let held = if self.passed() {
            "holds the budget on the test split too"
        } else {
            "does NOT hold the budget on the test split (see above)"
        };
        match (&self.overrides, self.search.chosen) {
            (Some(o), Some(c)) if o.trim().is_empty() => {
                let _ = writeln!(
                    out,
                    "\nChosen: {} ({}), which {held}: the start itself. Scheme {} needs no overrides for model {}: use it as it is.",
                    self.search.measured[c].label, self.search.measured[c].step, self.start, self.model
                );
            }
            (Some(o), Some(c)) => {
                let _ = writeln!(
                    out,
                    "\nChosen: {} ({}), which {held}. Add to the suite (model {}, scheme {}):\n\n```toml\n{o}```",
                    self.search.measured[c].label, self.search.measured[c].step, self.model, self.start
                );
            }
            _ => {
                let closest = self.search.closest.map(|c| &self.search.measured[c]);
                let _ = writeln!(
                    out,
                    "\nNo candidate meets the budget on the tuning split. The closest: {}.",
                    closest.map_or("none was measured".into(), |m| format!(
                        "{} ({}), top-1 drop {} points: {}",
                        m.label,
                        m.step,
                        pts(m.drop_pts, m.drop_ci_pts),
                        m.message
                    ))
                );
            }
        }
        out
    }

    /// The Pareto chart: each candidate's objective against its top-1 drop on the tuning split.
    pub fn chart(&self) -> crate::report::chart::Chart {
        use crate::report::chart::{Chart, Plot, Point};
        let points: Vec<Point> = self
            .search
            .measured
            .iter()
            .filter(|m| m.objective.is_some() && m.drop_pts.is_some())
            .map(|m| Point {
                label: m.label.rsplit('.').next().unwrap_or_default().to_string(),
                series: if m.within() { "within budget".into() } else { "over budget".into() },
                x: match self.objective {
                    Objective::Size => m.objective.unwrap_or_default() / 1024.0,
                    Objective::Latency => m.objective.unwrap_or_default() / 1e3,
                },
                x_ci: None,
                y: -m.drop_pts.unwrap_or_default(),
                y_ci: m.drop_ci_pts.map(|(lo, hi)| (-hi, -lo)),
            })
            .collect();
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.y)).collect();
        let front = crate::report::chart::pareto_front(&xy);
        Chart {
            id: "tune-pareto".into(),
            title: format!("{} on {}: candidates on the tuning split", self.model, self.backend),
            x_desc: match self.objective {
                Objective::Size => "artifact size (KiB)".into(),
                Objective::Latency => "median latency (µs)".into(),
            },
            y_desc: "top-1 change vs f32 (points)".into(),
            plot: Plot::Scatter { points, front },
        }
    }
}
