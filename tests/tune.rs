//! `qbench tune` end to end on the real engines, over the shipped 1,000 Fashion-MNIST items:
//! every candidate is a record of a normal run folder, its budget verdict agrees with the
//! records, the overrides it prints give the variant it measured, and a budget nothing meets
//! exits 2 naming the closest candidate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qbench::record::{read_records, CaseStatus, Record};

fn suite(dir: &Path, model: &str, schemes: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"t\"\nschemes = {schemes}\nbackends = [\"candle-cpu\", \"tract-cpu\"]\nbatch_sizes = [50]\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 30\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = \"data/fm.npz\"\narray = \"x\"\nlabels = \"data/fm.csv\"\n[[models]]\nname = \"{model}\"\nzoo = \"{model}\"\nweights = {:?}\n{extra}",
        common::weights(model),
    );
    // The dataset by a path relative to the suite: tune's own suites must resolve it.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(common::repo().join("suites/data/fashion-mnist-1k.npz"), dir.join("data/fm.npz")).unwrap();
    std::fs::copy(common::repo().join("suites/data/fashion-mnist-1k-labels.csv"), dir.join("data/fm.csv")).unwrap();
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn qbench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbench")).args(args).current_dir(dir).output().unwrap()
}

fn only_child(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// The drop f32 − r in points from the two records' per-item correctness, counted here.
fn drop_pts(f32: &Record, r: &Record) -> f64 {
    let (a, b) = (f32.top1_correct().unwrap(), r.top1_correct().unwrap());
    assert_eq!(a.len(), b.len());
    let right = |v: &[bool]| v.iter().filter(|x| **x).count() as f64;
    100.0 * (right(&a) - right(&b)) / a.len() as f64
}

#[test]
fn tune_measures_every_candidate_as_a_record_and_its_overrides_give_the_chosen_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = suite(dir, "cnn", "[\"f32\", \"q2k\"]", "");
    let o = qbench(
        dir,
        &[
            "tune",
            path.to_str().unwrap(),
            "--model",
            "cnn",
            "--backend",
            "candle-cpu",
            "--budget",
            "max_delta_top1_pts=1.5",
            "--objective",
            "size",
            "--out",
            "out",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    // q2k is the model's most aggressive scheme candle runs natively.
    assert!(err.contains("start q2k (native)"), "{err}");
    let tune_dir = only_child(&dir.join("out/t-tune"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(tune_dir.join("tune.json")).unwrap()).unwrap();
    // The exit code is the chosen variant's verdict on the test split (500 items here, so its
    // interval is wide): 0 when it holds there too, 2 when not.
    let test_rows = json["test"].as_array().unwrap();
    let chosen_row = test_rows.iter().find(|t| t["role"].as_str().unwrap().starts_with("chosen")).unwrap();
    let held = chosen_row["verdict"] == "pass";
    assert_eq!(o.status.code(), Some(if held { 0 } else { 2 }), "{err}");
    assert_eq!(err.contains("does not hold the budget on the test split"), !held, "{err}");
    let measured = json["search"]["measured"].as_array().unwrap();
    assert!(!measured.is_empty());
    let search_run = only_child(&tune_dir.join("search"));
    let records = read_records(&search_run.join("records.jsonl")).unwrap();
    // Each candidate and its own f32 (what the paired sampler timed it against), all measured,
    // in one run folder.
    assert_eq!(records.len(), 2 * measured.len(), "{records:#?}");
    assert!(records.iter().all(|r| r.status == CaseStatus::Ok));
    // `check` on the search folder judges the budget gate itself: its verdicts are the search's.
    let o = qbench(dir, &["check", search_run.to_str().unwrap(), "--json"]);
    let check: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    for m in measured {
        let label = m["label"].as_str().unwrap();
        let r = records.iter().find(|r| r.model == label && r.scheme != "f32").unwrap();
        let base = records.iter().find(|r| r.model == label && r.scheme == "f32").unwrap();
        // Decisions on the tuning split: half of the 1,000 items, stratified.
        assert_eq!(base.eval_items, Some(500));
        assert!(base.eval_split.as_deref().unwrap().starts_with("tuning split"), "{:?}", base.eval_split);
        // The drop the search judged is the records' own, counted item by item here.
        let d = m["drop_pts"].as_f64().unwrap();
        assert!((d - drop_pts(base, r)).abs() < 1e-9, "{label}: {d} vs records");
        assert_eq!(m["objective"].as_f64().unwrap(), r.artifact_bytes.unwrap() as f64);
        // Within budget means the whole interval is: its upper end at most 1.5 points.
        let hi = m["drop_ci_pts"][1].as_f64().unwrap();
        assert_eq!(m["verdict"] == "pass", hi <= 1.5, "{m}");
        let gate = check["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"].as_str().unwrap().starts_with(&format!("{label} / q2k")))
            .unwrap();
        assert_eq!(gate["verdict"], m["verdict"], "{gate} vs {m}");
        // Latency with the paired sampler: rounds against its own f32, and a speedup from them.
        assert!(!r.paired_ns.is_empty() && r.paired_ns.len() == r.paired_f32_ns.len(), "{label}");
        assert!(r.speedup_vs_f32.is_some(), "{label}: {:?} ({} rounds)", r.speedup_vs_f32_note, r.paired_ns.len());
    }
    let base = records.iter().find(|r| r.scheme == "f32").unwrap();
    let chosen = &measured[json["search"]["chosen"].as_u64().unwrap() as usize];
    for m in measured.iter().filter(|m| m["verdict"] == "pass") {
        assert!(m["objective"].as_f64() >= chosen["objective"].as_f64(), "a smaller candidate within budget: {m}");
    }
    // The verdict on the other 500 items: a normal run folder of its own.
    let test_run = only_child(&tune_dir.join("test"));
    let test = read_records(&test_run.join("records.jsonl")).unwrap();
    let test_base = test.iter().find(|r| r.scheme == "f32").unwrap();
    assert!(test_base.eval_split.as_deref().unwrap().starts_with("test split"));
    // Tuning and test split partition the items: their correct counts add up to the whole
    // set's, measured by a plain run of f32 on all 1,000.
    std::fs::create_dir_all(dir.join("all")).unwrap();
    let (_, all) = common::run_fm1k(&dir.join("all"), "[\"f32\"]", "[\"candle-cpu\"]", "[50]", "cnn");
    let right = |r: &Record| r.top1_correct().unwrap().iter().filter(|x| **x).count();
    assert_eq!(right(base) + right(test_base), right(&all[0]));
    assert_eq!(test_base.eval_items.unwrap() + base.eval_items.unwrap(), 1000);
    // The start misses the budget here, so the chosen variant has overrides; pasted into the
    // suite, they give the chosen variant: same bytes.
    assert_ne!(chosen["step"], "start");
    let overrides = std::fs::read_to_string(tune_dir.join("overrides.toml")).unwrap();
    assert!(overrides.contains("[[overrides]]"), "{overrides}");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("[\"f32\", \"q2k\"]", "[\"q2k\"]").replace("\"tract-cpu\"", "\"candle-cpu\"");
    text = text.replace("backends = [\"candle-cpu\", \"candle-cpu\"]", "backends = [\"candle-cpu\"]");
    text.push_str(&overrides);
    std::fs::write(dir.join("pasted.toml"), text).unwrap();
    let o = qbench(dir, &["run", "pasted.toml", "--out", "pasted", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pasted = read_records(&only_child(&dir.join("pasted/t")).join("records.jsonl")).unwrap();
    let chosen_record =
        records.iter().find(|r| r.model == chosen["label"].as_str().unwrap() && r.scheme == "q2k").unwrap();
    assert_eq!(pasted[0].artifact_bytes, chosen_record.artifact_bytes);
    assert_eq!(pasted[0].layer_overrides, chosen_record.layer_overrides);
    // report reads the search folder like any run: every candidate is a row.
    let o = qbench(dir, &["report", search_run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(search_run.join("report.md")).unwrap();
    for m in measured {
        assert!(report.contains(m["label"].as_str().unwrap()), "{report}");
    }
}

#[test]
fn a_budget_nothing_meets_exits_2_and_names_the_closest_candidate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = suite(dir, "mlp", "[\"f32\", \"q2k\"]", "");
    // No drop at all, with no f32 rung: only a candidate right on exactly the f32 items could.
    let o = qbench(
        dir,
        &[
            "tune",
            path.to_str().unwrap(),
            "--model",
            "mlp",
            "--backend",
            "tract-cpu",
            "--start",
            "q2k",
            "--ladder",
            "q3k",
            "--budget",
            "max_delta_top1_pts=0",
            "--out",
            "out",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let tune_dir = only_child(&dir.join("out/t-tune"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(tune_dir.join("tune.json")).unwrap()).unwrap();
    assert!(json["search"]["chosen"].is_null());
    let measured = json["search"]["measured"].as_array().unwrap();
    // Start, then each of the three layers promoted to q3k: nothing holds, nothing to demote.
    assert_eq!(measured.len(), 4, "{measured:#?}");
    let closest = &measured[json["search"]["closest"].as_u64().unwrap() as usize];
    let worst = |m: &serde_json::Value| m["drop_ci_pts"][1].as_f64().unwrap();
    assert!(measured.iter().all(|m| worst(m) >= worst(closest)));
    let label = closest["label"].as_str().unwrap();
    assert!(err.contains(&format!("the closest is {label}")), "{err}");
    assert!(!tune_dir.join("overrides.toml").exists());
    // The closest was measured on the test split too.
    let test = read_records(&only_child(&tune_dir.join("test")).join("records.jsonl")).unwrap();
    assert!(test.iter().any(|r| r.model == label && r.scheme == "q2k" && r.status == CaseStatus::Ok));
}

#[test]
fn bad_tune_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = suite(dir, "mlp", "[\"f32\", \"int8-static-minmax\"]", "[calibration]\nitems = 100\n");
    let p = path.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--budget", "max_kl=0.1"], "max_delta_top1_pts"),
        (&["--budget", "max_delta_top1_pts=-1"], "from 0 to 100"),
        (&["--model", "nope"], "model \"nope\" is not in the suite; its models: mlp"),
        (&["--start", "int8-static-minmax"], "quantizes activations"),
        (&["--start", "f32"], "leaves nothing to tune"),
        (&["--start", "q2k", "--batch", "0"], "--batch 0"),
        (&["--start", "q2k", "--ladder", "q8_0,q4k"], "wider than the one before"),
        (&["--start", "q2k", "--tune-items", "3"], "each need at least 100 items"),
    ];
    for &(args, needle) in cases {
        let mut all = vec!["tune", p, "--backend", "tract-cpu"];
        for (key, default) in [("--model", "mlp"), ("--budget", "max_delta_top1_pts=1")] {
            if !args.contains(&key) {
                all.extend([key, default]);
            }
        }
        all.extend_from_slice(args);
        let o = qbench(dir, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn calibration_repeats_record_every_subsets_figures_and_the_report_shows_their_spread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let extra = "[calibration]\nitems = 100\nselect = \"stratified\"\nrepeats = 3\n";
    let path = suite(dir, "mlp", "[\"f32\", \"int8-static-minmax\", \"int8-static-entropy\"]", extra);
    let o = qbench(dir, &["run", path.to_str().unwrap(), "--filter", "backend=tract-cpu", "--out", "out", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = only_child(&dir.join("out/t"));
    let records = read_records(&run.join("records.jsonl")).unwrap();
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    for r in &records {
        if r.scheme == "f32" {
            assert!(r.calibration_spread.is_empty(), "f32 calibrates nothing");
            // 3 × 100 held out; evaluated on the other 700.
            assert_eq!((r.calibration_items, r.eval_items), (300, Some(700)));
            continue;
        }
        let sp = &r.calibration_spread;
        assert_eq!(sp.len(), 3, "{sp:?}");
        assert_eq!(sp.iter().map(|s| (s.subset, s.items)).collect::<Vec<_>>(), [(0, 100), (1, 100), (2, 100)]);
        // Subset 0 is the case's own calibration.
        assert_eq!((sp[0].top1_accuracy, sp[0].ref_sqnr_db), (r.top1_accuracy, r.ref_sqnr_db));
        // Every subset scored on the same 700 items: whole counts of right answers.
        for s in sp {
            let right = s.top1_accuracy.unwrap() * 700.0;
            assert!((right - right.round()).abs() < 1e-6, "{s:?}");
        }
        // Other items calibrate other ranges: the SQNR moves.
        let sqnr: Vec<f64> = sp.iter().map(|s| s.ref_sqnr_db.unwrap()).collect();
        assert!(sqnr.iter().any(|v| (v - sqnr[0]).abs() > 1e-6), "{sqnr:?}");
        // The report's row: min / median / max of the records' own values.
        let mut t: Vec<f64> = sp.iter().map(|s| 100.0 * s.top1_accuracy.unwrap()).collect();
        t.sort_by(f64::total_cmp);
        let row = report.lines().find(|l| l.contains(&format!("mlp / {} / tract-cpu", r.scheme))).unwrap();
        assert!(row.contains(&format!("{:.2}% / {:.2}% / {:.2}%", t[0], t[1], t[2])), "{row}");
        assert!(row.contains("3 × 100"), "{row}");
    }
}
