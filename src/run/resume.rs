//! `run.json`: what a run needs to be resumed (`qbench run --resume <run dir>`) — the suite
//! file and the hashes of the suite and of every file it reads, with the options that chose its
//! cases. A resumed run refuses to go on when any of them changed: its records would mix two
//! experiments under one run id.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::RunError;
use crate::model::ModelKind;
use crate::suite::Suite;

/// The run folder's `run.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunManifest {
    pub qbench_version: String,
    /// The suite file, absolute: a resumed run reads it again from there.
    pub suite_file: PathBuf,
    pub suite_sha256: String,
    /// Every model and dataset file (or folder) the suite reads, with its SHA-256.
    pub inputs: Vec<InputHash>,
    /// `--shard k/n`, when given.
    pub shard: Option<String>,
    pub only_case: Option<usize>,
    /// The backends' thread count (the suite's, or `--threads`).
    pub threads: usize,
    pub isolate: bool,
}

/// One file or folder a run reads, and its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputHash {
    /// What it is, e.g. `model "mlp" weights`.
    pub what: String,
    pub path: PathBuf,
    pub sha256: String,
}

impl RunManifest {
    /// The manifest of a run of `suite` with these options, hashing every input now.
    pub fn of(suite: &Suite, shard: Option<String>, only_case: Option<usize>, isolate: bool) -> Result<Self, RunError> {
        let suite_file = std::path::absolute(&suite.file).unwrap_or_else(|_| suite.file.clone());
        let inputs = inputs(suite)
            .into_iter()
            .map(|(what, path)| {
                let sha256 = hash_path(&path).map_err(|source| RunError::Hash { path: path.clone(), source })?;
                Ok(InputHash { what, path, sha256 })
            })
            .collect::<Result<_, RunError>>()?;
        Ok(RunManifest {
            qbench_version: env!("CARGO_PKG_VERSION").into(),
            suite_file,
            suite_sha256: suite.sha256.clone(),
            inputs,
            shard,
            only_case,
            threads: suite.threads,
            isolate,
        })
    }

    pub fn read(run_dir: &Path) -> Result<Self, RunError> {
        let path = run_dir.join("run.json");
        let bytes = crate::files::read_bounded(&path, 16 << 20, "a run manifest").map_err(|e| RunError::Resume {
            dir: run_dir.to_path_buf(),
            reason: format!("{e} (only runs made by qbench 0.1 with run.json can be resumed)"),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RunError::Resume {
            dir: run_dir.to_path_buf(),
            reason: format!("{} is not a run manifest ({e})", path.display()),
        })
    }

    /// Why `now` (the same suite and options, hashed again) cannot continue this run; `None`
    /// when nothing changed.
    pub fn changed(&self, now: &RunManifest) -> Option<String> {
        if self.suite_sha256 != now.suite_sha256 {
            return Some(format!("the suite file {} changed since the run started", self.suite_file.display()));
        }
        for (was, is) in self.inputs.iter().zip(&now.inputs) {
            if was != is {
                return Some(format!("{} ({}) changed since the run started", was.what, was.path.display()));
            }
        }
        if self.inputs.len() != now.inputs.len() {
            return Some("the suite reads other files than when the run started".into());
        }
        if (&self.shard, self.only_case, self.threads, self.isolate)
            != (&now.shard, now.only_case, now.threads, now.isolate)
        {
            return Some("the run's options (shard, case, threads, isolation) differ".into());
        }
        None
    }
}

/// Every file or folder the suite's models and datasets read.
fn inputs(suite: &Suite) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for m in &suite.models {
        let what = |part: &str| format!("model \"{}\" {part}", m.name);
        match &m.kind {
            ModelKind::Zoo { weights, .. } => out.push((what("weights"), weights.clone())),
            ModelKind::Onnx { path, .. } | ModelKind::GgufLm { path } => out.push((what("file"), path.clone())),
            ModelKind::Bert { path, config } => {
                out.push((what("weights"), path.clone()));
                out.push((what("config"), config.clone()));
            }
        }
    }
    for d in &suite.datasets {
        let what = |part: &str| format!("dataset \"{}\" {part}", d.name);
        out.push((what("inputs"), d.inputs.clone()));
        out.extend(d.labels.clone().map(|l| (what("labels"), l)));
        out.extend(d.tokenizer.clone().map(|t| (what("tokenizer"), t)));
    }
    out
}

/// SHA-256 of a file's bytes, streamed; of a folder, of its files' relative names and bytes in
/// name order (recursively).
fn hash_path(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    if std::fs::metadata(path)?.is_file() {
        stream(path, &mut hasher)?;
        return Ok(crate::hash::hex(&hasher.finalize()));
    }
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(path.join(&rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        // Subfolders are visited after this folder's files, in name order.
        for e in entries.iter().rev().filter(|e| e.path().is_dir()) {
            stack.push(rel.join(e.file_name()));
        }
        for e in entries.iter().filter(|e| e.path().is_file()) {
            hasher.update(rel.join(e.file_name()).to_string_lossy().as_bytes());
            hasher.update([0]);
            stream(&e.path(), &mut hasher)?;
        }
    }
    Ok(crate::hash::hex(&hasher.finalize()))
}

fn stream(path: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(()),
            n => hasher.update(&buf[..n]),
        }
    }
}
