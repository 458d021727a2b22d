//! Interrupted runs: `kill -9` at seeded points (between records and half-way through writing
//! one) then `qbench run --resume` gives the records an uninterrupted run gives; SIGINT and
//! SIGTERM stop after the current case with reports, the list of what is missing, and 130/143;
//! a resume refuses a suite or a model file that changed.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn qbench(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qbench"));
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A suite of `schemes` × batches 1 and 4 on the MLP, reading a copy of its weights in `dir`.
fn suite(dir: &Path, schemes: &str, max_time_ms: u32) -> PathBuf {
    std::fs::copy(common::weights("mlp"), dir.join("mlp.safetensors")).unwrap();
    let text = format!(
        "name = \"t\"\nschemes = {schemes}\nbackends = [\"tract-cpu\"]\nbatch_sizes = [1, 4]\n\n[measure]\nwarmup_iters = 2\nmin_samples = 5\nmax_samples = 50\nmax_time_ms = {max_time_ms}\n\n[[datasets]]\nname = \"fm\"\nformat = \"idx\"\nimages = {:?}\nlabels = {:?}\n\n[[models]]\nname = \"mlp\"\nzoo = \"mlp\"\nweights = \"mlp.safetensors\"\n",
        common::fashion_images(),
        common::fashion_labels()
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("t")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// A record's fields that a second measurement of the same case may change: timings, memory,
/// the process, the time and the run's id (its folder's name).
fn varies(key: &str) -> bool {
    key.ends_with("_ns")
        || ["latency_", "speedup_", "paired_", "throughput_", "vs_f32_", "slower_than_f32"]
            .iter()
            .any(|p| key.starts_with(p))
        || key.contains("rss")
        || key.contains("heap")
        // Measured by the OS during sampling.
        || key == "sampling_busy_cores"
        // The engines' times on one batch (the engine chosen, reference_backend, must match).
        || ["process_id", "timestamp", "run_id", "pp_tokens_per_s", "tg_tokens_per_s", "gpu_memory_used_bytes", "reference_choice"]
            .contains(&key)
}

/// The records of `dir` as JSON objects, without the fields that vary between measurements.
fn stable_records(dir: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    assert!(text.ends_with('\n'), "a complete last line");
    text.lines()
        .map(|l| {
            let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).unwrap();
            m.retain(|k, _| !varies(k));
            // The artifact's path lies in the run's own folder.
            if let Some(serde_json::Value::String(a)) = m.get_mut("artifact") {
                *a = a.rsplit('/').next().unwrap_or_default().to_string();
            }
            m
        })
        .collect()
}

/// The same records, or the fields that differ (a whole record is too long to read).
fn assert_same(
    got: &[serde_json::Map<String, serde_json::Value>],
    want: &[serde_json::Map<String, serde_json::Value>],
    at: &str,
) {
    assert_eq!(got.len(), want.len(), "records after a kill at {at}");
    for (g, w) in got.iter().zip(want) {
        let keys: Vec<&String> = w.keys().chain(g.keys()).collect();
        let differ: Vec<String> = keys
            .into_iter()
            .filter(|k| g.get(*k) != w.get(*k))
            .map(|k| format!("{k}: {:?} vs {:?}", g.get(k), w.get(k)))
            .collect();
        assert!(differ.is_empty(), "after a kill at {at}, case {:?}: {differ:#?}", w.get("case_index"));
    }
}

#[test]
fn resume_after_kill_9_at_seeded_points_gives_the_records_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(dir.path(), r#"["f32", "f16", "int8-pc-sym"]"#, 50);
    let out = dir.path().join("out");
    let args = ["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"];
    let o = qbench(dir.path(), &args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = stable_records(&run_dirs(&out)[0]);
    assert_eq!(whole.len(), 6);
    assert!(whole[0].len() > 60, "most fields are compared: {:?}", whole[0].keys());
    // Seeded points: record n about to be written, or half of its line written (".5").
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut points: Vec<String> = Vec::new();
    while points.len() < 4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = 1 + seed % 6;
        let p = if (seed >> 8).is_multiple_of(2) { format!("{n}") } else { format!("{n}.5") };
        if !points.contains(&p) {
            points.push(p);
        }
    }
    points.push("1.5".into());
    for point in &points {
        let before = run_dirs(&out).len();
        let o = qbench(dir.path(), &args, &[("QBENCH_TEST_KILL_AT", point)]);
        assert_eq!(o.status.signal(), Some(9), "killed at {point}: {}", stderr(&o));
        let run_dir = run_dirs(&out)[before].clone();
        let text = std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap();
        let n: usize = point.trim_end_matches(".5").parse().unwrap();
        assert_eq!(text.matches('\n').count(), n - 1, "{point}");
        assert_eq!(text.ends_with('\n') || text.is_empty(), !point.ends_with(".5"), "{point}: a torn line");
        let o = qbench(dir.path(), &["run", "--resume", run_dir.to_str().unwrap(), "--quiet"], &[]);
        assert!(o.status.success(), "{point}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("{} case(s) already recorded, {} left", n - 1, 7 - n)), "{}", stderr(&o));
        assert_same(&stable_records(&run_dir), &whole, point);
        // Resuming a complete run measures nothing and duplicates nothing.
        let o = qbench(dir.path(), &["run", "--resume", run_dir.to_str().unwrap(), "--quiet"], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same(&stable_records(&run_dir), &whole, point);
        let o = qbench(dir.path(), &["check", run_dir.to_str().unwrap()], &[]);
        assert!(!String::from_utf8_lossy(&o.stdout).contains("INCOMPLETE"), "{}", String::from_utf8_lossy(&o.stdout));
    }
    // Started with a relative suite path, resumed from elsewhere; its last record lost its
    // newline; and a resume while another process holds the run folder is refused.
    let rel = ["run", "suite.toml", "--out", "out", "--quiet"];
    let o = qbench(dir.path(), &rel, &[("QBENCH_TEST_KILL_AT", "3")]);
    assert_eq!(o.status.signal(), Some(9));
    let run_dir = run_dirs(&out).pop().unwrap();
    let records = run_dir.join("records.jsonl");
    let text = std::fs::read_to_string(&records).unwrap();
    std::fs::write(&records, text.trim_end_matches('\n')).unwrap();
    let held = std::fs::OpenOptions::new().write(true).open(run_dir.join("run.lock")).unwrap();
    held.try_lock().unwrap();
    let o = qbench(Path::new("/"), &["run", "--resume", run_dir.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another qbench process is writing this run folder"), "{}", stderr(&o));
    drop(held);
    let o = qbench(Path::new("/"), &["run", "--resume", run_dir.to_str().unwrap(), "--quiet"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same(&stable_records(&run_dir), &whole, "3, relative suite path, newline lost");

    // A run whose suite or model file changed is not resumed.
    let o = qbench(dir.path(), &args, &[("QBENCH_TEST_KILL_AT", "2")]);
    assert_eq!(o.status.signal(), Some(9));
    let run_dir = run_dirs(&out).pop().unwrap();
    let resume = || qbench(dir.path(), &["run", "--resume", run_dir.to_str().unwrap()], &[]);
    let text = std::fs::read_to_string(&suite).unwrap();
    std::fs::write(&suite, text.replace("max_time_ms = 50", "max_time_ms = 51")).unwrap();
    let o = resume();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the suite file") && stderr(&o).contains("changed since the run started"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&suite, &text).unwrap();
    let mut weights = std::fs::read(dir.path().join("mlp.safetensors")).unwrap();
    let last = weights.len() - 1;
    weights[last] ^= 1;
    std::fs::write(dir.path().join("mlp.safetensors"), &weights).unwrap();
    let o = resume();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("model \"mlp\" weights") && stderr(&o).contains("changed since the run started"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap().lines().count(), 1, "nothing added");
}

#[test]
fn sigint_and_sigterm_stop_after_the_current_case_with_reports_and_how_to_resume() {
    for (signal, name, code) in [("-INT", "SIGINT", 130), ("-TERM", "SIGTERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let suite = suite(dir.path(), r#"["f32", "f16", "bf16", "int8-pc-sym", "int8-pt-sym", "q8_0"]"#, 300);
        let text = std::fs::read_to_string(&suite).unwrap();
        std::fs::write(&suite, format!("{text}\n[[gates]]\nname = \"accuracy\"\nmin_top1 = 0.5\n")).unwrap();
        let out = dir.path().join("out");
        let summary = dir.path().join("summary.md");
        let child = Command::new(env!("CARGO_BIN_EXE_qbench"))
            .args(["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"])
            .env("GITHUB_STEP_SUMMARY", &summary)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the first case is recorded, the signal.
        let records = loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let Some(run_dir) = out.join("t").read_dir().ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path())
            else {
                continue;
            };
            if std::fs::read_to_string(run_dir.join("records.jsonl")).is_ok_and(|t| t.lines().count() >= 1) {
                break run_dir.join("records.jsonl");
            }
        };
        let pid = child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{name}: {err}");
        let recorded = std::fs::read_to_string(&records).unwrap().lines().count();
        assert!((1..12).contains(&recorded), "{name}: {recorded} records");
        let run_dir = records.parent().unwrap();
        assert!(
            err.contains(&format!(
                "RUN ENDED EARLY ({name}): {recorded} case(s) recorded, {} not measured",
                12 - recorded
            )),
            "{err}"
        );
        assert!(err.contains(&format!("Resume with: qbench run --resume {}", run_dir.display())), "{err}");
        assert!(std::fs::read_to_string(&summary).unwrap().contains("RUN ENDED EARLY"));
        let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
        assert!(html.contains("Incomplete run: it ended early"), "{name}");
        assert!(html.contains(&format!("{} planned case(s) have no record", 12 - recorded)), "{name}");
        let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
        assert!(md.starts_with("> **INCOMPLETE RUN**"), "{md}");
        // `check` agrees, and the resumed run completes it.
        let o = qbench(dir.path(), &["check", run_dir.to_str().unwrap()], &[]);
        assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
        assert!(String::from_utf8_lossy(&o.stdout).contains("INCOMPLETE RUN"));
        let o = qbench(dir.path(), &["run", "--resume", run_dir.to_str().unwrap(), "--quiet"], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&records).unwrap().lines().count(), 12);
        let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
        assert!(!html.contains("Incomplete run"), "{name}: the resumed run is complete");
    }
}
