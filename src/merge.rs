//! `qbench merge`: joins the run folders of one suite (the shards of a CI matrix) into one run
//! folder, whose reports are then written as for any run.
//!
//! Records keep their own `run_id`, `shard` and environment fields, so a merged report still
//! says where each case ran. The exported artifacts stay in their own runs.

use std::path::{Path, PathBuf};

use crate::record::Record;
use crate::record::{read_records, RecordSink};

/// Why runs cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0} has no records.jsonl; pass the run folders `qbench run` printed")]
    NoRecords(PathBuf),
    #[error("{0}/records.jsonl has no records; was the run interrupted before its first case?")]
    Empty(PathBuf),
    /// Each side: `<run folder>: suite "<name>", suite file sha256 <hex>`.
    #[error("the runs are of different suites ({a}; {b}); only runs of the same suite file merge")]
    DifferentSuites { a: String, b: String },
    #[error("case {case} ({what}) is in both {a} and {b}; merge shards of one split (the same --shard n), not overlapping runs")]
    Duplicate { case: usize, what: String, a: PathBuf, b: PathBuf },
    #[error("the runs are shards of {count}, but shard(s) {missing} are missing; pass every shard, or --partial to merge what is there")]
    MissingShards { missing: String, count: usize },
    #[error("the runs were split differently ({0}); merge shards of one --shard n")]
    MixedShardCounts(String),
    #[error("the shards were run with different --filter ({0}); merge shards of one run command")]
    MixedFilters(String),
    #[error("{0} already exists and is not empty; choose another --out")]
    Exists(PathBuf),
    #[error("cannot write {path}; check that the folder is writable, or choose another --out")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Records(#[from] crate::record::RecordError),
}

/// The merged run.
#[derive(Debug)]
pub struct Merged {
    pub run_dir: PathBuf,
    /// In `case_index` order.
    pub records: Vec<Record>,
    /// Things the user should know (a partial merge, runs from different machines).
    pub warnings: Vec<String>,
}

/// Merges `runs` into `out` (default: `<first run's parent>/merged-<UTC time>`).
pub fn merge(runs: &[PathBuf], out: Option<&Path>, partial: bool) -> Result<Merged, MergeError> {
    let mut all: Vec<(Record, &PathBuf)> = Vec::new();
    for dir in runs {
        let path = dir.join("records.jsonl");
        // Only a missing file is "no records": the reader names a FIFO or a directory there.
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(MergeError::NoRecords(dir.clone()));
        }
        let records = read_records(&path)?;
        if records.is_empty() {
            return Err(MergeError::Empty(dir.clone()));
        }
        all.extend(records.into_iter().map(|r| (r, dir)));
    }
    let (first, first_dir) = (&all[0].0, all[0].1);
    if let Some((r, dir)) = all.iter().find(|(r, _)| r.suite != first.suite || r.suite_sha256 != first.suite_sha256) {
        let side = |dir: &Path, r: &Record| {
            format!("{}: suite {:?}, suite file sha256 {}", dir.display(), r.suite, r.suite_sha256)
        };
        return Err(MergeError::DifferentSuites { a: side(first_dir, first), b: side(dir, r) });
    }
    all.sort_by_key(|(r, _)| r.case_index);
    for w in all.windows(2) {
        if w[0].0.case_index == w[1].0.case_index {
            let r = &w[0].0;
            return Err(MergeError::Duplicate {
                case: r.case_index,
                what: r.case_name(),
                a: w[0].1.clone(),
                b: w[1].1.clone(),
            });
        }
    }
    let mut warnings = Vec::new();
    let mut shards: Vec<&str> = all.iter().map(|(r, _)| r.shard.as_str()).filter(|s| !s.is_empty()).collect();
    shards.sort();
    shards.dedup();
    let counts: Vec<usize> = shards.iter().filter_map(|s| s.split_once('/')?.1.parse().ok()).collect();
    if let Some(&count) = counts.first() {
        if counts.iter().any(|&c| c != count) {
            return Err(MergeError::MixedShardCounts(shards.join(", ")));
        }
        let missing: Vec<String> =
            (1..=count).map(|k| format!("{k}/{count}")).filter(|k| !shards.contains(&k.as_str())).collect();
        if !missing.is_empty() {
            if !partial {
                return Err(MergeError::MissingShards { missing: missing.join(", "), count });
            }
            warnings.push(format!("partial merge: shard(s) {} of {count} missing", missing.join(", ")));
        }
    }
    let mut machines: Vec<&str> = all.iter().map(|(r, _)| r.cpu_model.as_str()).collect();
    machines.sort();
    machines.dedup();
    if machines.len() > 1 {
        warnings.push(format!(
            "the runs come from different CPUs ({}): latencies measured on different machines do not compare; each record keeps its own environment",
            machines.join("; ")
        ));
    }

    let early: Option<Vec<crate::run::RunManifest>> =
        runs.iter().map(|d| crate::run::RunManifest::read(d).ok()).collect();
    // Shards of one run command share its filter: otherwise the merge would plan cases no shard
    // set out to measure, or call a partial suite complete.
    if let Some(m) = early.as_ref().filter(|m| m.iter().all(|x| x.shard.is_some())) {
        let mut filters: Vec<String> = m.iter().map(|x| x.filter.clone().unwrap_or_else(|| "none".into())).collect();
        filters.sort();
        filters.dedup();
        if filters.len() > 1 {
            return Err(MergeError::MixedFilters(filters.join("; ")));
        }
    }
    let run_dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => first_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("merged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))),
    };
    if std::fs::read_dir(&run_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(MergeError::Exists(run_dir));
    }
    std::fs::create_dir_all(&run_dir).map_err(|source| MergeError::Write { path: run_dir.clone(), source })?;
    for name in ["suite.toml", "environment.json"] {
        let from = first_dir.join(name);
        if from.is_file() {
            let to = run_dir.join(name);
            std::fs::copy(&from, &to).map_err(|source| MergeError::Write { path: to, source })?;
        }
    }
    let sources = serde_json::json!({
        "merged_from": runs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "shards": shards,
        "warnings": warnings,
    });
    let path = run_dir.join("merge.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&sources).unwrap_or_default())
        .map_err(|source| MergeError::Write { path, source })?;
    // The cases the runs planned, together: `check` and `report` then see a shard that ended
    // early in the merged run too. Shards plan the whole suite: a shard left out (--partial)
    // leaves its cases missing, named.
    let manifests: Option<Vec<crate::run::RunManifest>> =
        runs.iter().map(|d| crate::run::RunManifest::read(d).ok()).collect();
    // Shards of differently filtered runs plan different case lists: then each run's own.
    let whole_suite = manifests
        .filter(|m| m.iter().all(|x| x.shard.is_some() && !x.suite_cases.is_empty() && x.filter == m[0].filter))
        .and_then(|m| m.into_iter().next())
        .map(|m| m.suite_cases);
    let planned: Option<Vec<Vec<crate::record::PlannedCase>>> = match whole_suite {
        Some(all) => Some(vec![all]),
        None => runs
            .iter()
            .map(|d| crate::files::read_side_file(&d.join("cases.json")).and_then(|b| serde_json::from_slice(&b).ok()))
            .collect(),
    };
    match planned {
        Some(lists) => {
            let mut union: Vec<crate::record::PlannedCase> = lists.into_iter().flatten().collect();
            union.sort_by_key(|p| p.case_index);
            union.dedup();
            let path = run_dir.join("cases.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&union).unwrap_or_default())
                .map_err(|source| MergeError::Write { path, source })?;
        }
        None => warnings.push(
            "a merged run has no cases.json (made before qbench wrote one): whether every planned case was recorded is not checked".into(),
        ),
    }
    let mut sink = RecordSink::open(&run_dir.join("records.jsonl"))?;
    let records: Vec<Record> = all.into_iter().map(|(r, _)| r).collect();
    for r in &records {
        sink.append(r)?;
    }
    Ok(Merged { run_dir, records, warnings })
}
