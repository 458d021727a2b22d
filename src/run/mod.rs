//! Running a suite: a pipeline. Datasets are loaded and checked first; then, model by model,
//! the reference is loaded once (`model.rs`: its f32 outputs, its variants, calibration), and
//! every case is asked of its backend (the expectation), prepared (what the engine made of each
//! layer: the observation), measured by its workload (`classify.rs`, `lm.rs`), and its record
//! appended to the run folder (`folder.rs`) before the next case starts. A failing case is
//! recorded as failed and the suite goes on. Progress is reported as typed events
//! (`progress.rs`).

mod case;
mod classify;
mod datasets;
mod folder;
mod isolate;
mod lm;
mod load;
mod model;
mod progress;
mod resume;
mod spread;

use std::path::PathBuf;
use std::sync::Arc;

pub use crate::record::{completeness, Completeness, PlannedCase};
pub use datasets::{calibration_items, calibration_split, calibration_subsets, load_datasets, tuning_split};
pub use model::{calibrate, pass_batch};
pub use progress::Event;
pub use resume::{InputHash, RunManifest};

use crate::backend::{configure_threads, BackendError, ModelQuery, Realization};
use crate::data::DataError;
use crate::model::ModelError;
use crate::quant::{Plan, VariantError};
use crate::record::{CaseStatus, Environment, Record, RecordError};
use crate::suite::{expand, Case, Suite};

/// Where the run goes, and which of its cases.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the suite's output folder.
    pub out_dir: Option<PathBuf>,
    /// Runs only this shard of the cases (`--shard k/n`).
    pub shard: Option<crate::suite::Shard>,
    /// Runs only the cases this filter matches (`--filter 'model=cnn,scheme=int8-*'`); with
    /// `shard`, that shard of them.
    pub filter: Option<crate::suite::CaseFilter>,
    /// Runs every case in a fresh process of this qbench executable (`--isolate`): memory
    /// figures of the case alone, and a crash costs only its case.
    pub isolate: Option<PathBuf>,
    /// Runs only the case with this index in the suite (what an isolated case's process does).
    pub only_case: Option<usize>,
    /// Runs only the cases with these indices, in one process and no run manifest: what the
    /// process a run starts for another thread count of a sweep does (empty: no such limit).
    pub only_cases: Vec<usize>,
    /// The qbench executable, to measure the thread counts of a `[measure] threads` sweep other
    /// than this process's in processes of their own (engines set their pools once per process).
    pub exe: Option<PathBuf>,
    /// Adds the cases not yet recorded to this run folder (`--resume`); refused when the suite
    /// or any file it reads changed since the run started (`run.json`).
    pub resume: Option<PathBuf>,
    /// Adds this suite's cases not yet recorded to this run folder, whose run planned a prefix
    /// of them: how `qbench tune` keeps every candidate it measures in one run folder as its
    /// search adds models to a suite. The folder's suite copy, `run.json` and `cases.json`
    /// become this suite's; each record keeps the suite file it was measured with.
    pub extend: Option<PathBuf>,
    /// Set to a signal's number (SIGINT, SIGTERM) to stop before the next case: the records
    /// of finished cases are kept and the run returns what it has, with `stopped_by` set.
    pub stop: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Test only: every backend's expectation is `native`, so nothing is skipped or refused
    /// early. The records' realizations must not change: they are observed, not expected.
    #[doc(hidden)]
    pub assume_native: bool,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    /// Every record of the run folder (with `--resume`, those of before too).
    pub records: Vec<Record>,
    /// The signal that stopped the run before its last case, if one did.
    pub stopped_by: Option<i32>,
    /// Cases planned and not recorded (the run stopped early).
    pub missing: usize,
}

impl RunSummary {
    pub fn failed(&self) -> usize {
        self.records.iter().filter(|r| r.status == CaseStatus::Failed).count()
    }
}

/// Why a run could not start or go on (a case's failure is not one: it is recorded).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error("cannot write {path}; check that the directory is writable, or choose another with --out <dir>")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Confined(#[from] crate::files::FileError),
    #[error("shard {shard} has no case: cases go to shards by (model, backend, batch) group, and this suite's {cases} case(s) have fewer groups than shards; use fewer shards")]
    EmptyShard { shard: String, cases: usize },
    #[error("cannot hash {path} for the run's manifest (run.json)")]
    Hash {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resume the run in {dir}: {reason}")]
    Resume { dir: PathBuf, reason: String },
    #[error("--filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("the suite sweeps [measure] threads ({threads}), and engines set their thread pools once per process: the other thread counts need the qbench executable to run in processes of their own (RunOptions::exe)")]
    NoExecutable { threads: String },
    #[error("the suite has no case {index} (its cases are 0 to {last})")]
    NoSuchCase { index: usize, last: usize },
}

/// Why a case failed: its root cause, whichever step it came from. Causes shared by several
/// cases (a model that did not load, a variant or a calibration that failed) are kept once.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(transparent)]
    Model(Arc<ModelError>),
    #[error("no reference engine of this build can run model \"{model}\" ({file}), so none of its outputs can be scored: {reasons}")]
    NoEngine { model: String, file: PathBuf, reasons: String },
    #[error("the f32 reference could not run on {backend}, so this model's outputs cannot be scored")]
    Reference {
        backend: &'static str,
        #[source]
        source: Arc<CaseError>,
    },
    #[error("calibration failed")]
    Calibration(#[source] Arc<CaseError>),
    #[error("the reference variant failed ({scheme})")]
    LmReference {
        scheme: String,
        #[source]
        source: Arc<CaseError>,
    },
    #[error(
        "the suite has no weight scheme a language model can run (f32, f16, bf16, GGML types, weight-only int8/int4)"
    )]
    NoLmReference,
    #[error(transparent)]
    Shared(Arc<CaseError>),
    #[error(transparent)]
    Variant(#[from] VariantError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    TopK(#[from] crate::measure::lm::TopKError),
    #[error("{backend} would run {scheme} {realization}, not native, and the suite sets require_native = true; drop the case or the requirement")]
    NotNativeExpected { scheme: String, backend: &'static str, realization: String },
    #[error("{backend} ran {scheme} {realization}, not native, and the suite sets require_native = true; the first layer that is not: {layer}")]
    NotNativeObserved { scheme: String, backend: &'static str, realization: String, layer: String },
    #[error("a case panicked inside the engine: {0}")]
    Panic(String),
    #[error("model \"{model}\": {reason}; fix its [[models.outputs]] declaration")]
    Output { model: String, reason: String },
}

/// An error and its causes on one line (what a failed record's `error` holds).
pub use crate::backend::chain as root_cause;

/// What the case's backend says it will make of the case: the plan the suite gives the model's
/// `layers`, and the backend's expected realization of it. `run` records this before measuring
/// and `qbench validate` forecasts skips and refusals from it, so the two cannot disagree.
pub fn expectation(
    suite: &Suite,
    case: &Case,
    model: ModelQuery<'_>,
    layers: &[(String, usize)],
) -> (Plan, Realization) {
    let plan = suite.plan(case.model, case.scheme, layers);
    let expected = case.backend.create(suite.cuda_device).capability(model, &plan, case.batch);
    (plan, expected)
}

/// Runs every case of `suite`; `progress` receives each step as it happens.
pub fn run(suite: &Suite, options: &RunOptions, progress: &mut dyn FnMut(&Event)) -> Result<RunSummary, RunError> {
    let cases = expand(suite);
    let mut selected =
        crate::suite::select(suite, &cases, options.filter.as_ref(), options.shard).map_err(|reason| {
            RunError::Filter {
                filter: options.filter.as_ref().map(|f| f.text().to_string()).unwrap_or_default(),
                reason,
            }
        })?;
    // The cases the filter leaves in, whichever shard this is: a merge of the shards plans these.
    let filtered = crate::suite::select(suite, &cases, options.filter.as_ref(), None).unwrap_or_default();
    if let Some(only) = options.only_case {
        if only >= cases.len() {
            return Err(RunError::NoSuchCase { index: only, last: cases.len().saturating_sub(1) });
        }
        if !selected[only] {
            return Err(RunError::Filter {
                filter: options.filter.as_ref().map(|f| f.text().to_string()).unwrap_or_default(),
                reason: format!("it does not select case {only} (--only-case); `qbench run <suite> --dry-run` with the same options lists the cases it selects"),
            });
        }
        selected.iter_mut().enumerate().for_each(|(i, s)| *s = *s && i == only);
    }
    if !options.only_cases.is_empty() {
        if let Some(&bad) = options.only_cases.iter().find(|&&i| i >= cases.len()) {
            return Err(RunError::NoSuchCase { index: bad, last: cases.len().saturating_sub(1) });
        }
        selected.iter_mut().enumerate().for_each(|(i, s)| *s = *s && options.only_cases.contains(&i));
    }
    // One process measures one thread count: this one, the first selected case's; each other
    // count of a sweep runs in a process of its own (as every case does with --isolate).
    let here_threads =
        (0..cases.len()).find(|&i| selected[i]).map_or(suite.points[0].threads, |i| cases[i].point(suite).threads);
    let elsewhere: Vec<usize> = {
        let mut t: Vec<usize> = (0..cases.len())
            .filter(|&i| selected[i] && cases[i].point(suite).threads != here_threads)
            .map(|i| cases[i].point(suite).threads)
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let exe = options.exe.clone().or_else(|| options.isolate.clone());
    if !elsewhere.is_empty() && exe.is_none() {
        let all: Vec<String> =
            std::iter::once(here_threads).chain(elsewhere.iter().copied()).map(|t| t.to_string()).collect();
        return Err(RunError::NoExecutable { threads: all.join(", ") });
    }
    let one_process = options.only_case.is_some() || !options.only_cases.is_empty();
    let total = selected.iter().filter(|s| **s).count();
    if let (Some(shard), 0) = (options.shard, total) {
        return Err(RunError::EmptyShard { shard: shard.name(), cases: cases.len() });
    }
    let datasets = load_datasets(suite)?;
    configure_threads(here_threads);
    let uses_gpu = suite.backends.iter().any(|b| b.is_cuda());
    let gpu = uses_gpu.then(|| crate::backend::gpu::probe(suite.cuda_device).ok().cloned()).flatten();
    let env = Environment::capture(here_threads, gpu);
    // What this run sets out to measure, so `check` and `report` can tell an interrupted run.
    let all: Vec<PlannedCase> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| PlannedCase {
            case_index: i,
            model: suite.models[c.model].name.clone(),
            scheme: c.scheme.name(),
            backend: c.backend.name().to_string(),
            batch: c.batch,
            sweep: c.point(suite).label.clone(),
        })
        .collect();
    let planned: Vec<PlannedCase> = all.iter().filter(|p| selected[p.case_index]).cloned().collect();
    let all: Vec<PlannedCase> = all.into_iter().filter(|p| filtered[p.case_index]).collect();
    // A run of one case (what --isolate's case processes do) is not resumable: no manifest, so
    // its model files are not hashed once per case.
    let manifest = match one_process {
        false => Some(RunManifest::of(suite, options, all)?),
        true => None,
    };
    let (mut folder, previous) = match (&options.resume, &manifest) {
        (Some(dir), Some(now)) => {
            let resume_err = |reason: String| RunError::Resume { dir: dir.clone(), reason };
            if let Some(why) = RunManifest::read(dir)?.changed(now) {
                return Err(resume_err(format!("{why}; start a new run (qbench run <suite>)")));
            }
            let was: Vec<PlannedCase> = crate::files::read_side_file(&dir.join("cases.json"))
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| resume_err("its cases.json is missing or unreadable".into()))?;
            if was != planned {
                return Err(resume_err("the suite's cases differ from those the run planned (cases.json)".into()));
            }
            folder::RunFolder::reopen(dir)?
        }
        (None, Some(now)) if options.extend.is_some() => {
            let dir = options.extend.clone().unwrap_or_default();
            let extend_err = |reason: String| RunError::Resume { dir: dir.clone(), reason };
            let was: Vec<PlannedCase> = crate::files::read_side_file(&dir.join("cases.json"))
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| extend_err("its cases.json is missing or unreadable".into()))?;
            if !planned.starts_with(&was) {
                return Err(extend_err(
                    "the suite's first cases differ from those the run planned (cases.json): a run is only extended by cases added after its own".into(),
                ));
            }
            let reopened = folder::RunFolder::reopen(&dir)?;
            folder::write_manifest(&dir, now)?;
            folder::write_planned(&dir, &planned)?;
            folder::write_suite(&dir, &suite.run_copy())?;
            reopened
        }
        (Some(dir), None) => {
            return Err(RunError::Resume {
                dir: dir.clone(),
                reason: "a run of one case (--only-case) is not resumed".into(),
            })
        }
        (None, _) => {
            let out_root = options.out_dir.clone().unwrap_or_else(|| suite.output_dir.clone());
            let f = folder::RunFolder::create(&crate::files::join(&out_root, &suite.name)?, &env, &suite.run_copy())?;
            if let Some(m) = &manifest {
                folder::write_manifest(&f.dir, m)?;
            }
            folder::write_planned(&f.dir, &planned)?;
            (f, Vec::new())
        }
    };
    let total_planned = planned.len();
    // Resumed: the cases already recorded are not measured again.
    for p in &planned {
        if previous.iter().any(|r| PlannedCase::of(r) == *p) {
            selected[p.case_index] = false;
        }
    }
    let total = selected.iter().filter(|s| **s).count();
    progress(&Event::Started { run_id: &folder.run_id, dir: &folder.dir });
    let most_threads = (0..cases.len()).filter(|&i| selected[i]).map(|i| cases[i].point(suite).threads).max();
    if let Some(t) = most_threads.filter(|&t| t > env.logical_cores) {
        progress(&Event::Warning(format!(
            "measure.threads = {t} exceeds the {} logical cores here; threads will contend and timings overstate latency",
            env.logical_cores
        )));
    }
    if env.debug_build {
        progress(&Event::Warning("this is a debug build; timings are 10-100× slower than release and are not representative. Use cargo run --release.".into()));
    }
    let selection = [
        options.shard.map(|s| format!("shard {}", s.name())),
        options.filter.as_ref().map(|f| format!("filter {:?}", f.text())),
    ];
    let selection: Vec<String> = selection.into_iter().flatten().collect();
    if !selection.is_empty() {
        progress(&Event::Shard { name: selection.join(", "), selected: total_planned, cases: cases.len() });
    }
    if options.extend.is_some() {
        progress(&Event::Note(format!(
            "extending the run: {} case(s) already recorded, {total} added",
            total_planned - total
        )));
    } else if options.resume.is_some() {
        progress(&Event::Warning(format!(
            "resuming: {} case(s) already recorded, {total} left to measure",
            total_planned - total
        )));
    }
    let mut records = previous;
    let mut done = 0;
    // A case whose own process left no record: failed, with what the process did.
    let run_id = folder.run_id.clone();
    let failed = |index: usize, e: &isolate::IsolateError| {
        let case = &cases[index];
        let data = &datasets[suite.models[case.model].dataset];
        let mut r = case::new_record(suite, &env, &run_id, index, case, data, options, None);
        r.status = CaseStatus::Failed;
        r.error = Some(root_cause(e));
        r
    };
    let stop = || options.stop.as_ref().map(|s| s.load(std::sync::atomic::Ordering::SeqCst)).filter(|&s| s != 0);
    if let Some(exe) = &options.isolate {
        // Each case in its own process: nothing is loaded here.
        for index in (0..cases.len()).filter(|&i| selected[i]) {
            if stop().is_some() {
                break;
            }
            done += 1;
            let work = folder.dir.join("cases").join(format!("case-{index}"));
            let outcome = isolate::run_cases(exe, suite, &[index], &work).pop().map(|(_, r)| r);
            let mut record = match outcome
                .unwrap_or(Err(isolate::IsolateError::NoRecord { status: "not started".into(), stderr: String::new() }))
            {
                Ok(r) => r,
                // The case's process got the same signal: its case is not recorded.
                Err(_) if stop().is_some() => break,
                Err(e) => failed(index, &e),
            };
            record.run_id = folder.run_id.clone();
            record.shard = options.shard.map(|s| s.name()).unwrap_or_default();
            folder.append(&record)?;
            progress(&Event::Case { done, total, record: &record });
            records.push(record);
        }
    }
    let mut prober = crate::measure::probe::Prober::default();
    'models: for (model_idx, entry) in suite.models.iter().enumerate().filter(|_| options.isolate.is_none()) {
        // Cases of this model, with their index in the whole suite (the records' case_index,
        // the same in every shard).
        let model_cases: Vec<(usize, &crate::suite::Case)> = cases
            .iter()
            .enumerate()
            .filter(|(i, c)| c.model == model_idx && selected[*i] && c.point(suite).threads == here_threads)
            .collect();
        if model_cases.is_empty() {
            continue;
        }
        if stop().is_some() {
            break;
        }
        let mut state =
            model::ModelState::load(suite, model_idx, &datasets[entry.dataset], &folder.artifacts, progress)
                .alone(options.only_case.is_some() || options.only_cases.len() == 1);
        for (index, case) in model_cases {
            if stop().is_some() {
                break 'models;
            }
            done += 1;
            let probe = prober.probe();
            let mut record =
                case::new_record(suite, &env, &folder.run_id, index, case, state.data(), options, Some(probe));
            state.run_case(case, &mut record, options);
            if options.only_case.is_some() || options.only_cases.len() == 1 {
                // This process ran only this case: its whole peak is the case's.
                record.fresh_process = true;
                record.process_peak_rss_bytes = crate::measure::memory::process_peak_rss_bytes();
            }
            folder.append(&record)?;
            progress(&Event::Case { done, total, record: &record });
            records.push(record);
        }
    }
    // The sweep's other thread counts, each in a process of its own.
    for &threads in elsewhere.iter().filter(|_| options.isolate.is_none()) {
        let Some(exe) = &exe else { break };
        if stop().is_some() {
            break;
        }
        let indices: Vec<usize> =
            (0..cases.len()).filter(|&i| selected[i] && cases[i].point(suite).threads == threads).collect();
        progress(&Event::Note(format!(
            "{} case(s) at {threads} thread(s): measured in a process of their own (engines set their thread pools once per process)",
            indices.len()
        )));
        let work = folder.dir.join("cases").join(format!("threads-{threads}"));
        for (index, outcome) in isolate::run_cases(exe, suite, &indices, &work) {
            let mut record = match outcome {
                Ok(r) => r,
                // The process got the same signal: its unfinished cases are not recorded.
                Err(_) if stop().is_some() => continue,
                Err(e) => failed(index, &e),
            };
            record.run_id = folder.run_id.clone();
            record.shard = options.shard.map(|s| s.name()).unwrap_or_default();
            done += 1;
            folder.append(&record)?;
            progress(&Event::Case { done, total, record: &record });
            records.push(record);
        }
    }
    if !records.is_empty() && records.iter().all(|r| r.status != CaseStatus::Ok) {
        progress(&Event::Warning(format!(
            "nothing was measured: all {} case(s) were skipped or failed (the reasons are above and in records.jsonl)",
            records.len()
        )));
    }
    let missing = planned.iter().filter(|p| !records.iter().any(|r| PlannedCase::of(r) == **p)).count();
    // A signal after the last case stopped nothing.
    let stopped_by = stop().filter(|_| missing > 0).map(|s| s as i32);
    Ok(RunSummary { run_dir: folder.dir, records, stopped_by, missing })
}

/// Runs `f`, turning a panic inside an engine into an error so one case cannot abort the suite.
fn guarded<T>(f: impl FnOnce() -> Result<T, CaseError>) -> Result<T, CaseError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(CaseError::Panic(msg))
        }
    }
}
