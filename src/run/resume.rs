//! `run.json`: what a run needs to be resumed (`qbench run --resume <run dir>`) — the suite
//! file and the hashes of the suite and of every file it reads, with the options that chose its
//! cases. A resumed run refuses to go on when any of them changed: its records would mix two
//! experiments under one run id.

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
    /// `--filter`, as written, when given: the run's cases are those it selects.
    #[serde(default)]
    pub filter: Option<String>,
    /// `--set KEY=VALUE` changes to the suite file's text, in order: a resumed run applies
    /// them again (`suite_sha256` is of the changed text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    pub only_case: Option<usize>,
    /// The backends' thread count (the suite's, or `--threads`).
    pub threads: usize,
    pub isolate: bool,
    /// Every case of the suite the filter selects (all, without one), whichever shard this run
    /// is: a merge of shards plans the whole suite from it, so a missing shard's cases are named.
    #[serde(default)]
    pub suite_cases: Vec<crate::record::PlannedCase>,
    /// How calibration items are chosen (`data::split`), when the suite holds some out: a run
    /// started by a qbench that chose them otherwise (the first items, before `select`) has
    /// none here, and cannot be continued on another split.
    #[serde(default)]
    pub calibration_selection: Option<String>,
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
    pub fn of(
        suite: &Suite,
        options: &super::RunOptions,
        suite_cases: Vec<crate::record::PlannedCase>,
    ) -> Result<Self, RunError> {
        let suite_file = std::path::absolute(&suite.file).unwrap_or_else(|_| suite.file.clone());
        let inputs = inputs(suite)
            .into_iter()
            .map(|(what, path)| {
                let sha256 = hash_path(&path).map_err(|source| RunError::Hash { path: path.clone(), source })?;
                let path = std::path::absolute(&path).unwrap_or(path);
                Ok(InputHash { what, path, sha256 })
            })
            .collect::<Result<_, RunError>>()?;
        Ok(RunManifest {
            qbench_version: env!("CARGO_PKG_VERSION").into(),
            suite_file,
            suite_sha256: suite.sha256.clone(),
            inputs,
            shard: options.shard.map(|s| s.name()),
            filter: options.filter.as_ref().map(|f| f.text().to_string()),
            sets: suite.sets.clone(),
            only_case: options.only_case,
            threads: suite.points[0].threads,
            isolate: options.isolate.is_some(),
            suite_cases,
            calibration_selection: suite.calibration.as_ref().map(|c| c.selection.describe()),
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
        if self.sets != now.sets {
            return Some(format!(
                "the run's --set changes ({}) differ from these ({})",
                self.sets.join(" "),
                now.sets.join(" ")
            ));
        }
        if self.suite_sha256 != now.suite_sha256 {
            return Some(format!("the suite file {} changed since the run started", self.suite_file.display()));
        }
        // By content: the same file reached by another path (a relative path resolved from
        // the suite's folder now) is the same input.
        for (was, is) in self.inputs.iter().zip(&now.inputs) {
            if (&was.what, &was.sha256) != (&is.what, &is.sha256) {
                return Some(format!("{} ({}) changed since the run started", was.what, is.path.display()));
            }
        }
        if self.inputs.len() != now.inputs.len() {
            return Some("the suite reads other files than when the run started".into());
        }
        if (&self.shard, &self.filter, self.only_case, self.threads, self.isolate)
            != (&now.shard, &now.filter, now.only_case, now.threads, now.isolate)
        {
            return Some("the run's options (shard, filter, case, threads, isolation) differ".into());
        }
        if self.calibration_selection != now.calibration_selection {
            return Some(format!(
                "its calibration items were chosen {}, and would now be chosen {}: the cases would be evaluated on other items",
                self.calibration_selection.as_deref().unwrap_or("as the first items (before [calibration] select existed)"),
                now.calibration_selection.as_deref().unwrap_or("with no calibration split")
            ));
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

/// SHA-256 of a file's bytes, streamed; of a folder, of what the folder loaders read, in name
/// order: its files, or its class subfolders' files (one level, as `data::folder` lists them),
/// hidden names left out. Links are followed only where the loader follows them, and no deeper,
/// so a link back up (`..`) cannot make the walk endless.
fn hash_path(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    if std::fs::metadata(path)?.is_file() {
        crate::hash::stream(path, &mut hasher)?;
        return Ok(crate::hash::hex(&hasher.finalize()));
    }
    let listed = |dir: &Path| -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        v.sort();
        Ok(v)
    };
    let file = |f: &Path, hasher: &mut Sha256| -> std::io::Result<()> {
        let rel = f.strip_prefix(path).unwrap_or(f);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        crate::hash::stream(f, hasher)
    };
    for entry in listed(path)? {
        if entry.is_dir() {
            for f in listed(&entry)?.into_iter().filter(|f| f.is_file()) {
                file(&f, &mut hasher)?;
            }
        } else if entry.is_file() {
            file(&entry, &mut hasher)?;
        }
    }
    Ok(crate::hash::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_hashed_as_the_loaders_read_it_and_links_back_up_end() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("ds");
        for class in ["a", "b"] {
            std::fs::create_dir_all(ds.join(class)).unwrap();
            std::fs::write(ds.join(class).join("1.png"), class).unwrap();
        }
        let before = hash_path(&ds).unwrap();
        // Links back up in each class folder: one level is read, no endless walk.
        std::os::unix::fs::symlink("..", ds.join("a/up")).unwrap();
        std::os::unix::fs::symlink("..", ds.join("b/up")).unwrap();
        assert_eq!(hash_path(&ds).unwrap(), before, "links inside class folders are not items");
        // A hidden file is not read by the loaders, so not hashed; an item is.
        std::fs::write(ds.join("a/.cache"), "x").unwrap();
        assert_eq!(hash_path(&ds).unwrap(), before);
        std::fs::write(ds.join("a/1.png"), "changed").unwrap();
        assert_ne!(hash_path(&ds).unwrap(), before);
    }
}
