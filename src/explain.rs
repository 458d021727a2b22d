//! `qbench explain`: per-layer error of one measured case, and the override that would keep its
//! worst layer in float.
//!
//! The case is rebuilt from its record: the suite file it names (refused if it changed since
//! the run), the same model, plan, calibration split and backend. Localization runs on the
//! first `items` images of the evaluation split (see `measure::layers`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::backend::{BackendError, ModelQuery, Realization};
use crate::measure::layers::{localize, Basis, Localization};
use crate::model::LoadedModel;
use crate::record::{read_records, CaseStatus, Record};
use crate::suite::Suite;

/// Why a case cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("run folder {0} has no records.jsonl; pass the folder `qbench run` printed (reports/<suite>/<run id>)")]
    NoRecords(PathBuf),
    #[error("case {index} is not in {path} (it has cases 0 to {last}); pass one of those")]
    NoCase { index: usize, path: PathBuf, last: usize },
    #[error("case {index} ({what}) was not measured ({status}); choose a measured case")]
    NotMeasured { index: usize, what: String, status: String },
    #[error("the suite {file} changed since this run (sha256 {now} vs {then} in the record); rebuilding the case needs the suite as it was, e.g. from git")]
    SuiteChanged { file: String, now: String, then: String },
    #[error("case {index} has no quantized layer (scheme {scheme}); nothing to localize")]
    NothingQuantized { index: usize, scheme: String },
    #[error("the model file {file} changed since case {index} was run (its sha256 differs from the record's); rebuilding the case needs the model as it was")]
    ModelChanged { index: usize, file: PathBuf },
    #[error("case {index} names {what} \"{name}\", which its suite {file} does not have; the records and the suite do not belong together")]
    Inconsistent { index: usize, what: &'static str, name: String, file: String },
    #[error("cannot choose the calibration items: {0}")]
    Split(String),
    #[error(transparent)]
    Records(#[from] crate::record::RecordError),
    #[error(transparent)]
    Suite(#[from] crate::suite::SuiteError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Case(#[from] crate::run::CaseError),
    #[error(transparent)]
    Localize(#[from] crate::measure::layers::LocalizeError),
    #[error("cannot create {path}; check that the run folder is writable")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The localization of one case.
#[derive(Debug)]
pub struct Explanation {
    pub record: Record,
    pub localization: Localization,
}

/// A measured case rebuilt from its record: the suite it names (as it was), the same model,
/// plan, backend, evaluation split and calibration. What `explain` localizes and `qbench bundle`
/// packs.
pub struct Rebuilt {
    pub record: Record,
    pub suite: Suite,
    pub model_index: usize,
    pub reference: LoadedModel,
    pub plan: crate::quant::Plan,
    pub backend: crate::backend::BackendId,
    /// The run's evaluation split (what its cases were scored on).
    pub eval: crate::data::Dataset,
    pub calibration: Option<crate::quant::Calibration>,
}

impl Rebuilt {
    /// The case's variant, its artifacts written under `dir`.
    pub fn variant(&self, dir: &Path) -> Result<crate::quant::Variant, crate::quant::VariantError> {
        create(dir)?;
        crate::quant::apply_model(&self.reference, &self.plan, dir, self.calibration.as_ref())
    }

    /// The model's f32 variant (the suite's f32 plan for it), its artifacts written under `dir`.
    pub fn f32_variant(&self, dir: &Path) -> Result<crate::quant::Variant, crate::quant::VariantError> {
        create(dir)?;
        let plan = self.suite.plan(self.model_index, crate::quant::SchemeId::F32, &self.reference.layers);
        crate::quant::apply_model(&self.reference, &plan, dir, None)
    }
}

fn create(dir: &Path) -> Result<(), crate::quant::VariantError> {
    std::fs::create_dir_all(dir).map_err(|source| crate::quant::VariantError::Write { path: dir.to_path_buf(), source })
}

/// Rebuilds case `index` of the run in `run_dir` (see [`Rebuilt`]), reading the model into `work`.
pub fn rebuild(run_dir: &Path, index: usize, work: &Path) -> Result<Rebuilt, ExplainError> {
    let path = run_dir.join("records.jsonl");
    // Only a missing file is "no records": a FIFO or a directory there is named as such by
    // the reader.
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(ExplainError::NoRecords(run_dir.to_path_buf()));
    }
    let records = read_records(&path)?;
    let record = records.iter().find(|r| r.case_index == index).cloned().ok_or_else(|| ExplainError::NoCase {
        index,
        path: path.clone(),
        last: records.len().saturating_sub(1),
    })?;
    rebuild_record(record, work)
}

/// Rebuilds the case of `record` (see [`Rebuilt`]), reading the model into `work`.
pub fn rebuild_record(record: Record, work: &Path) -> Result<Rebuilt, ExplainError> {
    let index = record.case_index;
    let what = record.case_name();
    if record.status != CaseStatus::Ok {
        let status = format!("{:?}", record.status).to_lowercase();
        return Err(ExplainError::NotMeasured { index, what, status });
    }
    let suite = Suite::load_with_sets(Path::new(&record.suite_file), &record.suite_sets)?;
    if suite.sha256 != record.suite_sha256 {
        return Err(ExplainError::SuiteChanged {
            file: record.suite_file.clone(),
            now: suite.sha256.clone(),
            then: record.suite_sha256.clone(),
        });
    }
    let inconsistent = |what: &'static str, name: &str| ExplainError::Inconsistent {
        index,
        what,
        name: name.to_string(),
        file: record.suite_file.clone(),
    };
    let model =
        suite.models.iter().position(|m| m.name == record.model).ok_or_else(|| inconsistent("model", &record.model))?;
    let scheme = suite
        .schemes
        .iter()
        .copied()
        .find(|s| s.name() == record.scheme)
        .ok_or_else(|| inconsistent("scheme", &record.scheme))?;
    let backend = crate::backend::BackendId::from_name(&record.backend)
        .filter(|b| suite.backends.contains(b))
        .ok_or_else(|| inconsistent("backend", &record.backend))?;
    let entry = &suite.models[model];
    std::fs::create_dir_all(work).map_err(|source| ExplainError::Folder { path: work.to_path_buf(), source })?;
    let reference = LoadedModel::load(&entry.name, &entry.kind, work)?;
    if reference.sha256 != record.model_sha256.as_deref().unwrap_or_default() {
        return Err(ExplainError::ModelChanged { index, file: entry.file().to_path_buf() });
    }
    let plan = suite.plan(model, scheme, &reference.layers);
    // The backend must be able to run the case here (a GPU case needs this machine's GPU).
    if let Realization::Unsupported(why) =
        backend.create(suite.cuda_device).capability(ModelQuery::loaded(&reference), &plan, record.batch)
    {
        return Err(BackendError::Unsupported { backend: backend.name(), reason: why }.into());
    }
    let datasets = crate::run::load_datasets(&suite)?;
    let full = &datasets[entry.dataset];
    // The run's own split: the same items calibrate and the same evaluate. A record from before
    // the choice was recorded held out the first items.
    let mut suite = suite;
    if let (Some(c), true, None) =
        (suite.calibration.as_mut(), record.calibration_items > 0, record.calibration_selection.as_ref())
    {
        c.selection = crate::data::split::Selection::First;
    }
    let (held, eval) = crate::run::calibration_split(&suite, model, full)?;
    let calibration = match (&suite.calibration, plan.needs_calibration()) {
        (Some(c), true) => {
            // A plan calibrates even where the run held nothing out (its overrides made it
            // static): then on the items the split would hold out.
            let data = if held.is_empty() {
                let s = crate::data::split::split(full.len(), c.items, full.labels.as_deref(), c.selection)
                    .map_err(|e| ExplainError::Split(e.to_string()))?;
                full.select(&s.held)
            } else {
                // With [calibration] repeats, the run calibrated on the first subset.
                crate::run::calibration_subsets(&suite, &held).swap_remove(0)
            };
            let batch = crate::run::pass_batch(&reference, &suite, &data);
            Some(crate::run::calibrate(&reference, &data, c.percentile, suite.cuda_device, batch)?)
        }
        _ => None,
    };
    Ok(Rebuilt { record, suite, model_index: model, reference, plan, backend, eval, calibration })
}

/// Rebuilds case `index` of the run in `run_dir` and localizes its error on `items` images.
pub fn explain(run_dir: &Path, index: usize, items: usize) -> Result<Explanation, ExplainError> {
    let work = run_dir.join("explain").join(format!("case-{index}"));
    let Rebuilt { record, suite, reference, plan, backend, eval, calibration, .. } = rebuild(run_dir, index, &work)?;
    if plan.layers.iter().all(|(_, s)| *s == crate::quant::SchemeId::F32) {
        return Err(ExplainError::NothingQuantized { index, scheme: record.scheme });
    }
    let apply =
        |plan: &crate::quant::Plan, dir: &Path| crate::quant::apply_model(&reference, plan, dir, calibration.as_ref());
    let mut localization = localize(&apply, &plan, backend, suite.cuda_device, &eval, items, &work)?;
    // An output that is not classes (a sequence, a score) has no top-1: layers are ranked by
    // the output's SQNR alone.
    if !record.top1_applies() {
        for e in &mut localization.layers {
            e.kept_float_top1_gain = None;
        }
    }
    Ok(Explanation { record, localization })
}

impl Explanation {
    /// The table, the ranking and the suggested override, as Markdown.
    pub fn render(&self) -> String {
        let r = &self.record;
        let l = &self.localization;
        let db = |v: Option<f64>| v.map_or("∞".to_string(), |v| format!("{v:.1}"));
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        let mut out = String::new();
        if !r.top1_applies() {
            return self.render_without_top1();
        }
        let _ = writeln!(
            out,
            "Case {}: {} / {} / {} / batch {}, on the first {} evaluation items: fp32 top-1 {}, this plan {} ({:+.2} points), output SQNR {} dB{}.\n",
            r.case_index,
            r.model,
            r.scheme,
            r.backend,
            r.batch,
            l.items,
            pct(l.fp32_top1_accuracy),
            pct(l.plan_top1_accuracy),
            100.0 * (l.plan_top1_accuracy - l.fp32_top1_accuracy),
            db(l.plan_logits_sqnr_db),
            if l.against_labels { "" } else { " (no labels: top-1 is agreement with fp32's top-1)" }
        );
        let _ = writeln!(
            out,
            "| layer | stored as | cumulative SQNR (dB) | alone: SQNR (dB) | alone: logits SQNR (dB) | kept f32: logits SQNR (dB) | kept f32: top-1 | kept f32: Δtop-1 [95% CI] (pts) |"
        );
        let _ = writeln!(out, "| --- | --- | --: | --: | --: | --: | --: | --: |");
        let points = |v: f64| format!("{:+.2}", 100.0 * v);
        for e in &l.layers {
            let kept = e.kept_float_top1_accuracy.map_or("—".to_string(), pct);
            let gain = e
                .kept_float_top1_gain
                .map_or("—".to_string(), |(d, lo, hi)| format!("{} [{}, {}]", points(d), points(lo), points(hi)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {kept} | {gain} |",
                e.layer,
                e.stored.name(),
                db(e.cumulative_sqnr_db),
                db(e.isolated_sqnr_db),
                db(e.isolated_logits_sqnr_db),
                if e.kept_float_top1_accuracy.is_some() { db(e.kept_float_logits_sqnr_db) } else { "—".into() },
            );
        }
        let _ = writeln!(
            out,
            "\nSQNR of each layer's output against fp32 (pooled over the images; ∞ = identical). cumulative: the whole plan; alone: only that layer quantized; kept f32: the plan with that layer in float, as an override would give. Δtop-1: kept f32 minus the plan, on the same items, with the Agresti–Min 95% interval for paired proportions."
        );
        let (ranked, basis) = l.ranked();
        match ranked.first() {
            Some(best) => {
                let order: Vec<String> = ranked
                    .iter()
                    .map(|e| match (basis, e.kept_float_top1_gain) {
                        (Basis::Top1, Some((d, lo, hi))) => {
                            format!("{} ({} [{}, {}] points)", e.layer, points(d), points(lo), points(hi))
                        }
                        _ => format!("{} (logits SQNR {} dB)", e.layer, db(e.kept_float_logits_sqnr_db)),
                    })
                    .collect();
                let why = match basis {
                    Basis::Top1 => "keeping each in f32 raises top-1 with a paired interval above zero".to_string(),
                    Basis::Sqnr => format!(
                        "top-1 cannot tell on these {} items (no layer's interval is above zero); these raise the logits' SQNR by {} dB or more and do not measurably lower top-1",
                        l.items,
                        crate::measure::layers::MIN_SQNR_GAIN_DB
                    ),
                };
                let _ = writeln!(
                    out,
                    "\nLayers worth keeping in float, best first ({why}): {}.\n\nKeeping {} in f32 gives top-1 {} points on these images and logits SQNR {} dB (from {}). Add to the suite:\n\n```toml\n{}```",
                    order.join(" > "),
                    best.layer,
                    best.kept_float_top1_gain.map_or("±0.00".to_string(), |(d, _, _)| points(d)),
                    db(best.kept_float_logits_sqnr_db),
                    db(l.plan_logits_sqnr_db),
                    self.suggested_override().unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "\nNo layer is worth keeping in float: none raises top-1 with a paired interval above zero on these {} items, nor (while the plan's logits are below {} dB) the logits' SQNR by {} dB or more.",
                    l.items,
                    crate::measure::layers::NEGLIGIBLE_ERROR_SQNR_DB,
                    crate::measure::layers::MIN_SQNR_GAIN_DB
                );
            }
        }
        out
    }

    /// [`Explanation::render`] for an output whose kind has no top-1 (a sequence, a score, an
    /// embedding): the layers' SQNR, ranked by the output's SQNR when each is kept in float.
    fn render_without_top1(&self) -> String {
        let r = &self.record;
        let l = &self.localization;
        let db = |v: Option<f64>| v.map_or("∞".to_string(), |v| format!("{v:.1}"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Case {}: {} / {} / {} / batch {}, on the first {} evaluation items: output SQNR {} dB. Its output \"{}\" is {} ({}): top-1 does not apply, so layers are ranked by the output's SQNR.\n",
            r.case_index,
            r.model,
            r.scheme,
            r.backend,
            r.batch,
            l.items,
            db(l.plan_logits_sqnr_db),
            r.output_name,
            r.output_kind,
            r.output_kind_source
        );
        let _ = writeln!(out, "| layer | stored as | cumulative SQNR (dB) | alone: SQNR (dB) | alone: output SQNR (dB) | kept f32: output SQNR (dB) |");
        let _ = writeln!(out, "| --- | --- | --: | --: | --: | --: |");
        for e in &l.layers {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                e.layer,
                e.stored.name(),
                db(e.cumulative_sqnr_db),
                db(e.isolated_sqnr_db),
                db(e.isolated_logits_sqnr_db),
                if e.kept_float_top1_accuracy.is_some() { db(e.kept_float_logits_sqnr_db) } else { "—".into() },
            );
        }
        let (ranked, _) = l.ranked();
        match ranked.first() {
            Some(best) => {
                let order: Vec<String> = ranked
                    .iter()
                    .map(|e| format!("{} (output SQNR {} dB)", e.layer, db(e.kept_float_logits_sqnr_db)))
                    .collect();
                let _ = writeln!(
                    out,
                    "\nLayers worth keeping in float, best first (each raises the output's SQNR by {} dB or more): {}.\n\nKeeping {} in f32 gives output SQNR {} dB (from {}). Add to the suite:\n\n```toml\n{}```",
                    crate::measure::layers::MIN_SQNR_GAIN_DB,
                    order.join(" > "),
                    best.layer,
                    db(best.kept_float_logits_sqnr_db),
                    db(l.plan_logits_sqnr_db),
                    self.suggested_override().unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "\nNo layer is worth keeping in float: none raises the output's SQNR by {} dB or more (or the plan's output SQNR is already {} dB or more).",
                    crate::measure::layers::MIN_SQNR_GAIN_DB,
                    crate::measure::layers::NEGLIGIBLE_ERROR_SQNR_DB
                );
            }
        }
        out
    }

    /// The per-layer SQNR chart of this case.
    pub fn chart(&self) -> crate::report::chart::Chart {
        let r = &self.record;
        let layers: Vec<(String, Option<f64>, Option<f64>)> = self
            .localization
            .layers
            .iter()
            .map(|e| (format!("{} ({})", e.layer, e.stored.name()), e.cumulative_sqnr_db, e.isolated_sqnr_db))
            .collect();
        crate::report::chart::layer_sqnr(r.case_index, &r.case_name(), &layers)
    }

    /// An `[[overrides]]` entry keeping the best layer to keep in f32, for this model and scheme.
    pub fn suggested_override(&self) -> Option<String> {
        let w = self.localization.ranked().0.into_iter().next()?;
        let r = &self.record;
        Some(format!(
            "[[overrides]]\nmodels = [\"{}\"]\nschemes = [\"{}\"]\nlayers = [\"{}\"]\nscheme = \"f32\"\n",
            r.model, r.scheme, w.layer
        ))
    }
}
