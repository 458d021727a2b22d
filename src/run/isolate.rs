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

/// Runs cases `indices` of `suite` in a fresh process of `exe`, with its run folder under `work`
/// and the suite as resolved here (its `--set` changes, `--threads` among them), and returns
/// each case's record, or why that case has none. The process sets its engines' threads from
/// its cases' measurement point: give it cases of one thread count.
pub(super) fn run_cases(
    exe: &Path,
    suite: &Suite,
    indices: &[usize],
    work: &Path,
) -> Vec<(usize, Result<Record, IsolateError>)> {
    let list: Vec<String> = indices.iter().map(|i| i.to_string()).collect();
    let output = Command::new(exe)
        .arg("run")
        .arg(&suite.file)
        .args(["--only-cases", &list.join(","), "--case-process", "--quiet"])
        .args(suite.sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .arg("--out")
        .arg(work)
        // The parent run writes the step summary, once.
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("QBENCH_TEST_KILL_AT")
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            let kind = e.kind();
            return indices
                .iter()
                .map(|&i| (i, Err(IsolateError::Spawn { exe: exe.to_path_buf(), source: std::io::Error::from(kind) })))
                .collect();
        }
    };
    let records: Vec<Record> = std::fs::read_dir(work.join(&suite.name))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("records.jsonl"))
        .filter(|p| p.is_file())
        .filter_map(|p| read_records(&p).ok())
        .flatten()
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    indices
        .iter()
        .map(|&index| {
            let record = records.iter().find(|r| r.case_index == index).cloned();
            let why = || IsolateError::NoRecord {
                status: output.status.to_string(),
                stderr: tail[tail.len().saturating_sub(3)..].join(" | "),
            };
            (index, record.ok_or_else(why))
        })
        .collect()
}
