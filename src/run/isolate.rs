//! Running a case in a fresh process: `qbench run --isolate` starts the qbench executable once
//! per case (`run <suite> --only-case <i>`), and takes the record it writes. The case's memory
//! is then its own process's, with no pages an earlier case freed for it to reuse; engines that
//! read their settings once per process (candle's and rayon's thread pools) read them for this
//! case alone; and a case that crashes its process (an engine's abort, a segfault in native
//! code) becomes a failed record while the suite goes on.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::record::{read_records, Record};
use crate::suite::Suite;

/// Why an isolated case has no record: what its process did instead.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    #[error("cannot start {exe} for the case's own process; pass the qbench executable")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the case's own process ended ({status}) without writing its record; its last words: {stderr}")]
    NoRecord { status: String, stderr: String },
}

/// Runs case `index` of `suite` in a fresh process of `exe`, with its run folder under `work`
/// and the suite's thread count (as resolved here, `--threads` included), and returns its
/// record.
pub(super) fn run_case(exe: &Path, suite: &Suite, index: usize, work: &Path) -> Result<Record, IsolateError> {
    let output = Command::new(exe)
        .arg("run")
        .arg(&suite.file)
        .args(["--only-case", &index.to_string(), "--threads", &suite.threads.to_string(), "--case-process", "--quiet"])
        .args(suite.sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .arg("--out")
        .arg(work)
        // The parent run writes the step summary, once.
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("QBENCH_TEST_KILL_AT")
        .output()
        .map_err(|source| IsolateError::Spawn { exe: exe.to_path_buf(), source })?;
    let record = std::fs::read_dir(work.join(&suite.name))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("records.jsonl"))
        .filter(|p| p.is_file())
        .filter_map(|p| read_records(&p).ok())
        .flatten()
        .find(|r| r.case_index == index);
    record.ok_or_else(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        IsolateError::NoRecord {
            status: output.status.to_string(),
            stderr: tail[tail.len().saturating_sub(3)..].join(" | "),
        }
    })
}
