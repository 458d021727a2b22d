//! The run folder: `<out>/<suite>/<run id>/` with `environment.json`, a copy of the suite, the
//! variants' artifacts, and `records.jsonl`, appended as each case ends.

use std::path::{Path, PathBuf};

use super::RunError;
use crate::record::{Environment, PlannedCase, Record, RecordSink};

/// Where a run writes.
pub(super) struct RunFolder {
    pub run_id: String,
    pub dir: PathBuf,
    pub artifacts: PathBuf,
    sink: RecordSink,
    /// Records appended by this process.
    appended: usize,
    /// `run.lock`, locked while this process may append (released by the OS when it ends,
    /// however it ends): a resume cannot write beside the run or another resume.
    _lock: std::fs::File,
}

/// Takes the run folder's lock, or says who holds it.
fn lock(dir: &Path) -> Result<std::fs::File, RunError> {
    let path = dir.join("run.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| RunError::Folder { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Resume {
            dir: dir.to_path_buf(),
            reason: "another qbench process is writing this run folder (the run itself, or another --resume); wait for it to end".into(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(RunError::Folder { path, source }),
    }
}

impl RunFolder {
    /// `<root>/<UTC timestamp>` (with a numeric suffix if two runs start in the same second),
    /// with the environment and the suite file written into it.
    /// `suite_text`: the suite as the run uses it (`Suite::run_copy`), kept as `suite.toml`.
    pub fn create(root: &Path, env: &Environment, suite_text: &str) -> Result<RunFolder, RunError> {
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
        let lock = lock(&dir)?;
        let artifacts = dir.join("artifacts");
        create_dir(&artifacts)?;
        write_file(&dir.join("environment.json"), &serde_json::to_vec_pretty(env).expect("Environment serializes"))?;
        write_suite(&dir, suite_text)?;
        let sink = RecordSink::open(&dir.join("records.jsonl"))?;
        Ok(RunFolder { run_id, dir, artifacts, sink, appended: 0, _lock: lock })
    }

    /// Opens the run folder `dir` again to add records (`--resume`): an incomplete last line
    /// (a run killed while writing it) is cut off first. Returns the records already there.
    pub fn reopen(dir: &Path) -> Result<(RunFolder, Vec<Record>), RunError> {
        let lock = lock(dir)?;
        let path = dir.join("records.jsonl");
        let file = crate::record::read_records_file(&path)?;
        let bytes = std::fs::read(&path).map_err(|source| RunError::Folder { path: path.clone(), source })?;
        if file.torn_line.is_some() {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let cut = std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(keep as u64));
            cut.map_err(|source| RunError::Folder { path: path.clone(), source })?;
        } else if bytes.last().is_some_and(|&b| b != b'\n') {
            // A whole record without its newline: the next one must start on a line of its own.
            use std::io::Write;
            let ended = std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(b"\n"));
            ended.map_err(|source| RunError::Folder { path: path.clone(), source })?;
        }
        let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let sink = RecordSink::open(&path)?;
        let folder = RunFolder {
            run_id,
            dir: dir.to_path_buf(),
            artifacts: dir.join("artifacts"),
            sink,
            appended: 0,
            _lock: lock,
        };
        Ok((folder, file.records))
    }

    /// Appends a finished case's record (flushed: nothing measured is lost to a crash).
    pub fn append(&mut self, record: &Record) -> Result<(), RunError> {
        self.appended += 1;
        self.test_kill_point(record);
        Ok(self.sink.append(record)?)
    }

    /// Test hook for the resume tests: `QBENCH_TEST_KILL_AT=N` kills this process with SIGKILL
    /// as it is about to append its N-th record (1-based), and `N.5` after writing half of
    /// that record's line: a crash at a chosen point, as `kill -9` would cause.
    fn test_kill_point(&self, record: &Record) {
        let Ok(at) = std::env::var("QBENCH_TEST_KILL_AT") else { return };
        let (n, half) = match at.strip_suffix(".5") {
            Some(n) => (n, true),
            None => (at.as_str(), false),
        };
        if n.parse() != Ok(self.appended) {
            return;
        }
        if half {
            use std::io::Write;
            let line = serde_json::to_vec(record).expect("a Record always serializes");
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(self.dir.join("records.jsonl")) {
                let _ = f.write_all(&line[..line.len() / 2]);
                let _ = f.flush();
            }
        }
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    }
}

/// Keeps the suite as the run uses it as the run folder's `suite.toml`.
pub(super) fn write_suite(dir: &Path, suite_text: &str) -> Result<(), RunError> {
    write_file(&dir.join("suite.toml"), suite_text.as_bytes())
}

fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Folder { path: dir.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|source| RunError::Folder { path: path.to_path_buf(), source })
}

/// Writes what a resumed run checks (`run.json`).
pub(super) fn write_manifest(dir: &Path, manifest: &super::resume::RunManifest) -> Result<(), RunError> {
    write_file(&dir.join("run.json"), &serde_json::to_vec_pretty(manifest).expect("the manifest serializes"))
}

/// Writes the cases a run sets out to measure (after `--shard` and `--only-case`).
pub(super) fn write_planned(dir: &Path, cases: &[PlannedCase]) -> Result<(), RunError> {
    write_file(&dir.join("cases.json"), &serde_json::to_vec_pretty(cases).expect("cases serialize"))
}
