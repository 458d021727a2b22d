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
