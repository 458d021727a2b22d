//! `run --shard k/n` and `qbench merge`: the shards partition the suite's cases by
//! (model, backend, batch) group, and merging them gives the same cases as one whole run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qbench::record::Record;
use qbench::report::jsonl::read_records;

fn qbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbench")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the suite into `out` (optionally one shard) and returns the run folder.
fn run(suite: &Path, out: &Path, shard: Option<&str>) -> PathBuf {
    let mut args = vec!["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"];
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    let o = qbench(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("t")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

fn key(r: &Record) -> (usize, String, String, String, usize) {
    (r.case_index, r.model.clone(), r.scheme.clone(), r.backend.clone(), r.batch)
}

#[test]
fn shards_partition_the_suite_by_group_and_merge_back_into_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let suite = common::write_suite(d, r#"["candle-cpu", "tract-cpu"]"#, "[4, 8]", &["mlp"], "");
    let text =
        std::fs::read_to_string(&suite).unwrap().replace(r#"schemes = ["f32"]"#, r#"schemes = ["f32", "int8-pc-sym"]"#);
    std::fs::write(&suite, text).unwrap();

    let whole = read_records(&run(&suite, &d.join("whole"), None).join("records.jsonl")).unwrap();
    assert_eq!(whole.len(), 8);
    let shard_dirs: Vec<PathBuf> =
        (1..=3).map(|k| run(&suite, &d.join(format!("s{k}")), Some(&format!("{k}/3")))).collect();
    // The groups in suite order: (backend, batch) = (candle, 4), (candle, 8), (tract, 4),
    // (tract, 8); group g goes to shard g % 3 + 1.
    let group = |r: &Record| match (r.backend.as_str(), r.batch) {
        ("candle-cpu", 4) => 0,
        ("candle-cpu", 8) => 1,
        ("tract-cpu", 4) => 2,
        _ => 3,
    };
    for (k, dir) in shard_dirs.iter().enumerate() {
        let records = read_records(&dir.join("records.jsonl")).unwrap();
        assert!(!records.is_empty());
        for r in &records {
            assert_eq!(group(r) % 3, k, "{:?} ran in shard {}", key(r), k + 1);
            assert_eq!(r.shard, format!("{}/3", k + 1));
        }
        // Each group is whole in its shard: its f32 case sits beside the int8 one.
        for r in &records {
            assert!(records.iter().any(|f| f.scheme == "f32" && group(f) == group(r)));
        }
    }

    // Merging gives every case once, in suite order, with the whole run's accuracy.
    let merged_dir = d.join("merged");
    let args: Vec<&str> = ["merge"]
        .into_iter()
        .chain(shard_dirs.iter().rev().map(|p| p.to_str().unwrap()))
        .chain(["--out", merged_dir.to_str().unwrap()])
        .collect();
    let o = qbench(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = read_records(&merged_dir.join("records.jsonl")).unwrap();
    assert_eq!(merged.iter().map(key).collect::<Vec<_>>(), whole.iter().map(key).collect::<Vec<_>>());
    for (m, w) in merged.iter().zip(&whole) {
        assert_eq!(m.top1_accuracy, w.top1_accuracy, "{:?}", key(m));
    }
    for f in ["report.md", "report.html", "records.parquet", "suite.toml", "environment.json", "merge.json"] {
        assert!(merged_dir.join(f).is_file(), "{f} missing in the merged run");
    }
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("int8-pc-sym") && table.contains("tract-cpu"), "{table}");
    // The merged run plans what its shards planned: a shard that ended early shows in it.
    let planned: Vec<qbench::run::PlannedCase> =
        serde_json::from_slice(&std::fs::read(merged_dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(planned.len(), whole.len());
    assert_eq!(qbench::run::completeness(&merged_dir, &merged).map(|c| c.is_complete()), Some(true));
    assert_eq!(qbench::run::completeness(&merged_dir, &merged[1..]).map(|c| c.missing.len()), Some(1));

    // A missing shard is refused, unless --partial.
    let (s1, s2) = (shard_dirs[0].to_str().unwrap(), shard_dirs[1].to_str().unwrap());
    let o = qbench(&["merge", s1, s2, "--out", d.join("m2").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("shard(s) 3/3 are missing") && stderr(&o).contains("--partial"), "{}", stderr(&o));
    let o = qbench(&["merge", s1, s2, "--partial", "--out", d.join("m3").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("partial merge"), "{}", stderr(&o));
    // The partial merge plans the whole suite: the missing shard's cases are named.
    let m3 = d.join("m3");
    let m3_records = read_records(&m3.join("records.jsonl")).unwrap();
    let gaps = qbench::run::completeness(&m3, &m3_records).unwrap();
    assert_eq!(gaps.missing.len(), whole.len() - m3_records.len(), "{gaps:?}");
    assert!(!gaps.missing.is_empty());
    // The same shard twice, and a merged folder that exists, are refused.
    let o = qbench(&["merge", s1, s1, "--out", d.join("m4").to_str().unwrap()]);
    assert!(o.status.code() == Some(1) && stderr(&o).contains("is in both"), "{}", stderr(&o));
    let o = qbench(&["merge", s1, "--partial", "--out", merged_dir.to_str().unwrap()]);
    assert!(o.status.code() == Some(1) && stderr(&o).contains("already exists"), "{}", stderr(&o));

    // A shard of another version of the suite file is refused.
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let changed =
        std::fs::read_to_string(&suite).unwrap().replace("name = \"t\"\n", "name = \"t\"\ndescription = \"v2\"\n");
    std::fs::write(other.join("suite.toml"), changed).unwrap();
    let s3_other = run(&other.join("suite.toml"), &other.join("out"), Some("3/3"));
    let o = qbench(&["merge", s1, s2, s3_other.to_str().unwrap(), "--out", d.join("m5").to_str().unwrap()]);
    assert!(o.status.code() == Some(1) && stderr(&o).contains("different suites"), "{}", stderr(&o));

    // Bad --shard values are one clear line, before anything runs.
    for (value, needle) in
        [("5/4", "1 ≤ k ≤ n"), ("0/2", "1 ≤ k ≤ n"), ("two", "expected k/n"), ("5/5", "shard 5/5 has no case")]
    {
        let o = qbench(&["run", suite.to_str().unwrap(), "--out", d.join("bad").to_str().unwrap(), "--shard", value]);
        let e = stderr(&o);
        assert!(o.status.code() == Some(1) && e.contains(needle) && !e.contains("panicked"), "{value}: {e}");
    }
    assert!(!d.join("bad").exists(), "a refused shard must not leave a run folder");
}
