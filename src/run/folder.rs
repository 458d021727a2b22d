//! The run folder: `<out>/<suite>/<run id>/` with `environment.json`, a copy of the suite, the
//! variants' artifacts, and `records.jsonl`, appended as each case ends.

use std::path::{Path, PathBuf};

use super::RunError;
use crate::record::{Environment, Record, RecordSink};

/// Where a run writes.
pub(super) struct RunFolder {
    pub run_id: String,
    pub dir: PathBuf,
    pub artifacts: PathBuf,
    sink: RecordSink,
}

impl RunFolder {
    /// `<root>/<UTC timestamp>` (with a numeric suffix if two runs start in the same second),
    /// with the environment and the suite file written into it.
    pub fn create(root: &Path, env: &Environment, suite_file: &Path) -> Result<RunFolder, RunError> {
        create_dir(root)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let (run_id, dir) = (1..)
            .find_map(|n| {
                let id = if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") };
                let dir = root.join(&id);
                match std::fs::create_dir(&dir) {
                    Ok(()) => Some(Ok((id, dir))),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(source) => Some(Err(RunError::Folder { path: dir, source })),
                }
            })
            .expect("an unbounded counter always finds a free name")?;
        let artifacts = dir.join("artifacts");
        create_dir(&artifacts)?;
        write_file(&dir.join("environment.json"), &serde_json::to_vec_pretty(env).expect("Environment serializes"))?;
        if let Ok(text) = std::fs::read(suite_file) {
            write_file(&dir.join("suite.toml"), &text)?;
        }
        let sink = RecordSink::open(&dir.join("records.jsonl"))?;
        Ok(RunFolder { run_id, dir, artifacts, sink })
    }

    /// Appends a finished case's record (flushed: nothing measured is lost to a crash).
    pub fn append(&mut self, record: &Record) -> Result<(), RunError> {
        Ok(self.sink.append(record)?)
    }
}

fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Folder { path: dir.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|source| RunError::Folder { path: path.to_path_buf(), source })
}

/// One case a run set out to measure (`cases.json`, written when the run starts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedCase {
    pub case_index: usize,
    pub model: String,
    pub scheme: String,
    pub backend: String,
    pub batch: usize,
}

impl PlannedCase {
    fn of(r: &Record) -> PlannedCase {
        PlannedCase {
            case_index: r.case_index,
            model: r.model.clone(),
            scheme: r.scheme.clone(),
            backend: r.backend.clone(),
            batch: r.batch,
        }
    }

    fn name(&self) -> String {
        format!("case {}: {} / {} / {} / batch {}", self.case_index, self.model, self.scheme, self.backend, self.batch)
    }
}

/// Writes the cases a run sets out to measure (after `--shard` and `--only-case`).
pub(super) fn write_planned(dir: &Path, cases: &[PlannedCase]) -> Result<(), RunError> {
    write_file(&dir.join("cases.json"), &serde_json::to_vec_pretty(cases).expect("cases serialize"))
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
}

impl Completeness {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.foreign.is_empty()
    }

    /// One line per problem, for a report or a gate summary.
    pub fn describe(&self) -> Vec<String> {
        let list = |what: &str, v: &[String]| (!v.is_empty()).then(|| format!("{} {what}: {}", v.len(), v.join("; ")));
        [
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
/// folder without one (a run made before qbench wrote it, or a merged folder).
pub fn completeness(dir: &Path, records: &[Record]) -> Option<Completeness> {
    let planned: Vec<PlannedCase> = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).ok()?).ok()?;
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
