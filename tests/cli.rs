//! The binary end to end: bad input gets a one-line error naming the file and the
//! fix (exit 1, no panic); failing cases are recorded and the suite goes on.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qbench::record::{CaseStatus, Record};
use qbench::report::jsonl::read_records;

fn qbench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbench")).args(args).current_dir(dir).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1, an `Error:` line containing every `needles`, no panic.
fn assert_clean_error(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.lines().last().is_some_and(|l| l.starts_with("Error: ")), "{e}");
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in: {e}");
    }
}

fn run_suite(dir: &Path, suite: &Path) -> Output {
    qbench(dir, &["run", suite.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
}

fn only_run_dir(dir: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("out/t")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

#[test]
fn version_and_help_for_every_command() {
    let dir = common::repo();
    let v = qbench(&dir, &["--version"]);
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("qbench {}", env!("CARGO_PKG_VERSION")));
    for cmd in
        [&["--help"][..], &["run", "--help"], &["list", "--help"], &["validate", "--help"], &["export", "--help"]]
    {
        let o = qbench(&dir, cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: qbench"), "{cmd:?}");
    }
}

#[test]
fn list_names_every_backend_model_scheme_and_dataset_format() {
    let o = qbench(&common::repo(), &["list"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["candle-cpu", "tract-cpu", "mlp", "cnn", "f32", "idx", "fashion-mnist-test"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    // What a published model may need: input declarations, the GGUF layouts and tokenizers read,
    // and the calibration split choices.
    for what in [
        "[[models.inputs]]",
        "batch_axis",
        "qwen3",
        "gemma3 refused",
        "tokenizer.ggml.model gpt2, llama",
        "random, first, stratified",
    ] {
        assert!(out.contains(what), "{what} missing from:\n{out}");
    }
    let o = qbench(&common::repo(), &["list", "backends"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("tract-cpu") && !out.contains("mlp"), "{out}");
}

#[test]
fn unknown_backend_names_file_line_and_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "trac-cpu"]"#, "[1]", &["mlp"], "");
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(
        &o,
        &[&format!("{}:3:27:", suite.display()), r#"unknown backend "trac-cpu" — did you mean "tract-cpu"?"#],
    );
    assert!(!dir.path().join("out").exists(), "nothing is written for an invalid suite");
}

#[test]
fn unknown_key_is_named_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[1]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite).unwrap().replace("warmup_iters = 2", "warmup_iter = 2");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(
        &o,
        &[&format!("{}:7:", suite.display()), r#"unknown key "warmup_iter" — did you mean "warmup_iters"?"#],
    );
}

#[test]
fn missing_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[1]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite).unwrap().replace("schemes = [\"f32\"]\n", "");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(&o, &[&suite.display().to_string(), "missing field `schemes`"]);
}

#[test]
fn missing_model_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "\n[[models]]\nname = \"ghost\"\nzoo = \"mlp\"\nweights = \"models/ghost.safetensors\"\n";
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[1]", &["mlp"], extra);
    let text = std::fs::read_to_string(&suite).unwrap();
    let line = 1 + text.lines().position(|l| l.contains("ghost.safetensors")).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(
        &o,
        &[
            &format!("{}:{line}:11:", suite.display()),
            "weights file \"models/ghost.safetensors\" does not exist",
            "relative to the suite file",
        ],
    );
}

#[test]
fn dataset_of_the_wrong_image_size_is_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    // 8×8 digits-like images: valid IDX, wrong size for the 28×28 zoo models.
    let pixels: Vec<u8> = (0..20 * 64).map(|i| (i % 256) as u8).collect();
    std::fs::write(dir.path().join("small-images.idx"), qbench::data::encode_idx_images(8, 8, &pixels)).unwrap();
    std::fs::write(dir.path().join("small-labels.idx"), qbench::data::encode_idx_labels(&[3; 20])).unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[1]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite).unwrap();
    let text = text
        .replace(&format!("{:?}", common::fashion_images()), "\"small-images.idx\"")
        .replace(&format!("{:?}", common::fashion_labels()), "\"small-labels.idx\"");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(&o, &["small-images.idx", "has items of shape 1×8×8", "model \"mlp\"", "takes 1×28×28 inputs"]);
    assert!(!dir.path().join("out").exists());
}

#[test]
fn corrupt_gzip_dataset_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(common::fashion_labels()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..].iter_mut().for_each(|b| *b = b.wrapping_add(17));
    std::fs::write(dir.path().join("labels.gz"), bytes).unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[1]", &["mlp"], "");
    let text =
        std::fs::read_to_string(&suite).unwrap().replace(&format!("{:?}", common::fashion_labels()), "\"labels.gz\"");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(&o, &["labels.gz", "is not valid gzip", "corrupt or truncated"]);
}

#[test]
fn a_failing_model_is_recorded_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.safetensors"), b"this is not a safetensors file").unwrap();
    // NaN weights: a valid file whose numbers are unusable.
    let mut t = candle_core::safetensors::load(common::weights("mlp"), &candle_core::Device::Cpu).unwrap();
    let nan = candle_core::Tensor::full(f32::NAN, (10,), &candle_core::Device::Cpu).unwrap();
    t.insert("fc3.bias".into(), nan);
    candle_core::safetensors::save(&t, dir.path().join("nan.safetensors")).unwrap();
    let extra = "\n[[models]]\nname = \"broken\"\nzoo = \"cnn\"\nweights = \"broken.safetensors\"\n\n[[models]]\nname = \"nan\"\nzoo = \"mlp\"\nweights = \"nan.safetensors\"\n";
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cpu"]"#, "[4]", &["mlp"], extra);
    // With backtraces on, candle's errors carry one; records and report.html must not.
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", suite.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_clean_error(&o, &["4 of 6 cases failed"]);
    let run_dir = only_run_dir(dir.path());
    for file in ["records.jsonl", "report.html"] {
        let text = std::fs::read_to_string(run_dir.join(file)).unwrap();
        assert!(!text.contains("stack backtrace") && !text.contains("rust_begin_unwind"), "{file}");
    }
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 6);
    let status: Vec<(&str, CaseStatus)> = records.iter().map(|r| (r.model.as_str(), r.status)).collect();
    assert_eq!(
        status,
        vec![
            ("mlp", CaseStatus::Ok),
            ("mlp", CaseStatus::Ok),
            ("broken", CaseStatus::Failed),
            ("broken", CaseStatus::Failed),
            ("nan", CaseStatus::Failed),
            ("nan", CaseStatus::Failed)
        ]
    );
    let broken = records[2].error.as_deref().unwrap();
    assert!(broken.contains("broken.safetensors") && broken.contains("not a valid safetensors file"), "{broken}");
    let nan = records[4].error.as_deref().unwrap();
    assert!(nan.contains("fc3.bias") && nan.contains("NaN"), "{nan}");
    assert!(records[0].top1_accuracy.unwrap() > 0.87);
    // The table still shows the measured cases and lists the failures.
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| mlp   | f32    | candle-cpu ") && table.contains("4 failed case(s)"), "{table}");
}

/// The acceptance figures of the spine, on the whole 10k test set.
#[test]
fn both_models_on_both_backends_meet_accuracy_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cpu"]"#, "[1, 32]", &["mlp", "cnn"], "");
    let o = run_suite(dir.path(), &suite);
    assert!(o.status.success(), "{}", stderr(&o));
    // Not a terminal: progress comes as plain lines, one per case.
    let progress = stderr(&o);
    assert!(progress.contains("[1/8] mlp f32 candle-cpu batch 1: median"), "{progress}");
    assert!(progress.contains("[8/8] cnn f32 tract-cpu batch 32: median"), "{progress}");
    let run_dir = only_run_dir(dir.path());
    // Records parse back into their type.
    let records: Vec<Record> = read_records(&run_dir.join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 8);
    let env: qbench::record::Environment =
        serde_json::from_slice(&std::fs::read(run_dir.join("environment.json")).unwrap()).unwrap();
    assert_eq!(env.threads, 1);

    let images = std::fs::read(common::fashion_images()).unwrap();
    let labels = std::fs::read(common::fashion_labels()).unwrap();
    let dataset_sha = qbench::hash::sha256_hex(&[images, labels].concat());
    for r in &records {
        let what = format!("{} {} batch {}", r.model, r.backend, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        let floor = if r.model == "cnn" { 0.90 } else { 0.87 };
        assert!(r.top1_accuracy.unwrap() >= floor, "{what}: top-1 {:?}", r.top1_accuracy);
        assert_eq!(r.eval_items, Some(10_000));
        assert!(r.ref_top1_agreement.unwrap() >= 0.999, "{what}: agreement {:?}", r.ref_top1_agreement);
        assert!(r.ref_max_abs_logit_diff.unwrap() < 1e-3, "{what}");
        // Provenance: hashes of the real files, the artifact's real size.
        assert_eq!(
            r.model_sha256.as_deref(),
            Some(qbench::hash::sha256_hex(&std::fs::read(common::weights(&r.model)).unwrap()).as_str())
        );
        assert_eq!(r.dataset_sha256, dataset_sha);
        let artifact = std::fs::metadata(r.artifact.as_ref().unwrap()).unwrap();
        assert_eq!(r.artifact_bytes, Some(artifact.len()));
        // The artifact's hash, against coreutils' sha256sum of the file the record names.
        let sum = std::process::Command::new("sha256sum").arg(r.artifact.as_ref().unwrap()).output().unwrap();
        let sum = String::from_utf8(sum.stdout).unwrap();
        assert_eq!(r.artifact_sha256.as_deref(), sum.split_whitespace().next(), "{what}");
        // Latency statistics are consistent with the raw samples kept.
        let n = r.samples_ns.len();
        assert!(n >= 5, "{what}: {n} samples");
        let (min, max) = (*r.samples_ns.iter().min().unwrap() as f64, *r.samples_ns.iter().max().unwrap() as f64);
        assert_eq!((r.latency_min_ns, r.latency_max_ns), (Some(min), Some(max)));
        let med = r.latency_median_ns.unwrap();
        // A 95% interval only where the samples allow one (enough effective samples).
        let series: Vec<f64> = r.samples_ns.iter().map(|&x| x as f64).collect();
        let ci = qbench::measure::stats::median_interval(&series).unwrap();
        assert_eq!(r.latency_median_ci_low_ns.is_some(), ci.bounded, "{what}");
        if let (Some(lo), Some(hi)) = (r.latency_median_ci_low_ns, r.latency_median_ci_high_ns) {
            assert!(lo <= med && med <= hi, "{what}");
        }
        // Percentiles only where the sample reaches past them (p99: 100 samples, p95: 20);
        // the report then shows the maximum, marked.
        assert_eq!(r.latency_p90_ns.is_some(), n >= 10, "{what}: {n} samples");
        assert_eq!(r.latency_p95_ns.is_some(), n >= 20, "{what}: {n} samples");
        assert_eq!(r.latency_p99_ns.is_some(), n >= 100, "{what}: {n} samples");
        let tail = [Some(med), r.latency_p90_ns, r.latency_p95_ns, r.latency_p99_ns, Some(max)];
        let tail: Vec<f64> = tail.into_iter().flatten().collect();
        assert!(tail.windows(2).all(|w| w[0] <= w[1]), "{what}: {tail:?}");
        // Items per second at the mean run time, recomputed from the raw samples.
        let mean = r.samples_ns.iter().sum::<u64>() as f64 / n as f64;
        assert!((r.throughput_items_per_s.unwrap() / (r.batch as f64 * 1e9 / mean) - 1.0).abs() < 1e-9);
        assert_eq!(r.debug_build, cfg!(debug_assertions));
        // The interval is the dependent-sample one, and says how it was made.
        assert_eq!(r.latency_ci_method, qbench::measure::stats::CI_METHOD);
        let (tau, n_eff) = (r.latency_ci_tau.unwrap(), r.latency_n_eff.unwrap());
        assert!(tau >= 1.0 && (n_eff * tau - n as f64).abs() < 1e-6, "{what}: τ {tau}, n_eff {n_eff}");
        assert_eq!(r.latency_median_boot_ci_low_ns, None, "{what}: the iid bootstrap is gone");
        assert!(r.latency_outliers.unwrap() <= n && r.latency_mad_ns.unwrap() <= max - min, "{what}");
        assert_eq!(r.latency_ci_target_pct, 1.0);
        assert!(r.latency_ci_target_met.is_some(), "{what}");
        // Heap counted by qbench's allocator: prepare allocated at least the weights the engine
        // reports holding (an independent figure: its tensors' sizes), and every run allocates
        // something (candle and tract allocate their activations).
        let weights = r.weights_bytes.unwrap();
        assert!(r.prepare_heap_allocated_bytes.unwrap() >= weights, "{what}: {r:?}");
        assert!(r.prepare_heap_peak_bytes.unwrap() > 0 && r.run_heap_allocated_bytes_per_run.unwrap() > 0.0, "{what}");
        assert!(r.heap_not_covered.is_empty(), "{what}: a CPU engine allocates through Rust");
        // Cold start is prepare plus the first run; both were measured.
        assert_eq!(r.cold_start_ns, Some(r.prepare_ns.unwrap() + r.first_run_ns.unwrap()));
        // candle holds exactly the f32 parameters; tract its (possibly packed) constants.
        let params = r.parameters as u64 * 4;
        let weights = r.weights_bytes.unwrap();
        if r.backend == "candle-cpu" {
            assert_eq!(weights, params, "{what}");
        } else {
            assert!(weights >= params * 9 / 10 && weights <= params * 2, "{what}: {weights} vs {params}");
        }
        // Task metrics: Wilson interval around top-1, top-5 above it, confusion matrix that adds up.
        let top1 = r.top1_accuracy.unwrap();
        let correct = (top1 * 10_000.0).round() as usize;
        let (lo, hi) = qbench::measure::fidelity::wilson_interval(correct, 10_000);
        // (JSON keeps floats to within an ulp.)
        assert!((r.top1_ci_low.unwrap() - lo).abs() < 1e-12 && (r.top1_ci_high.unwrap() - hi).abs() < 1e-12);
        assert!(lo < top1 && top1 < hi, "{what}");
        // Per-item correctness is kept, and counts to the same accuracy.
        assert_eq!(r.top1_correct().unwrap().iter().filter(|c| **c).count(), correct, "{what}");
        assert!(r.top5_accuracy.unwrap() >= top1 && r.top5_accuracy.unwrap() > 0.99, "{what}");
        let total: u32 = r.confusion.iter().flatten().sum();
        let diagonal: u32 = (0..10).map(|c| r.confusion[c][c]).sum();
        assert_eq!((total, diagonal as usize), (10_000, correct), "{what}");
        for (c, acc) in r.per_class_accuracy.iter().enumerate() {
            let row: u32 = r.confusion[c].iter().sum();
            assert_eq!(row, 1000, "Fashion-MNIST's test set has 1000 images a class");
            assert!((acc.unwrap() - r.confusion[c][c] as f64 / 1000.0).abs() < 1e-12);
        }
        // Fidelity of f32 against the f32 reference: essentially exact.
        assert!(r.ref_cosine_mean.unwrap() > 0.999_999, "{what}");
        assert!(r.ref_kl_mean.unwrap() < 1e-9, "{what}");
        assert!(r.ref_sqnr_db.is_none_or(|db| db > 100.0), "{what}: {:?}", r.ref_sqnr_db);
        assert_eq!(r.ref_top5_agreement, Some(1.0));
    }
    // Backend agreement per model: the two backends' predictions agree; accuracy differs by < 0.1 point.
    for model in ["mlp", "cnn"] {
        let acc: Vec<f64> = records.iter().filter(|r| r.model == model).map(|r| r.top1_accuracy.unwrap()).collect();
        let spread = acc.iter().cloned().fold(f64::MIN, f64::max) - acc.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread <= 0.001, "{model}: {acc:?}");
    }
    assert!(run_dir.join("report.md").is_file());

    // The tabular files hold the same rows: parquet read back, CSV and JSON parsed.
    use qbench::report::table::Values;
    let table = qbench::report::table::read_parquet(&run_dir.join("records.parquet")).unwrap();
    assert_eq!(table.height(), 8);
    let (Some(Values::Float(top1)), Some(Values::Float(medians)), Some(Values::Text(models))) =
        (table.column("top1_accuracy"), table.column("latency_median_ns"), table.column("model"))
    else {
        panic!("columns typed as written: {:?}", table.columns.iter().map(|c| &c.name).collect::<Vec<_>>())
    };
    for (i, r) in records.iter().enumerate() {
        assert_eq!(top1[i], r.top1_accuracy);
        assert_eq!(medians[i], r.latency_median_ns);
        assert_eq!(models[i].as_deref(), Some(r.model.as_str()));
    }
    let Some(Values::Text(samples)) = table.column("samples_ns") else { panic!("samples_ns is JSON text") };
    let first: Vec<u64> = serde_json::from_str(samples[0].as_deref().unwrap()).unwrap();
    assert_eq!(first, records[0].samples_ns, "raw samples survive as JSON text");
    let csv = std::fs::read_to_string(run_dir.join("records.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(csv.lines().next().unwrap().starts_with("run_id,case_index,shard,suite,"), "{}", &csv[..200]);
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(run_dir.join("records.json")).unwrap()).unwrap();
    assert_eq!(json.len(), 8);
    assert_eq!(json[3]["backend"], records[3].backend.as_str());

    // `qbench report` regenerates every output from the records alone.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let chart = std::fs::read(run_dir.join("charts/tradeoff-cnn-b32.png")).unwrap();
    for f in ["report.md", "report.html", "records.parquet", "records.csv", "records.json"] {
        std::fs::remove_file(run_dir.join(f)).unwrap();
    }
    std::fs::remove_dir_all(run_dir.join("charts")).unwrap();
    let o = qbench(dir.path(), &["report", run_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(run_dir.join("report.md")).unwrap(), md);
    // (Exactly: serde_json's float_roundtrip makes the records read back bit for bit.)
    assert!(std::fs::read_to_string(run_dir.join("report.html")).unwrap() == html, "report.html differs");
    assert!(std::fs::read(run_dir.join("charts/tradeoff-cnn-b32.png")).unwrap() == chart, "the chart differs");
    assert_eq!(qbench::report::table::read_parquet(&run_dir.join("records.parquet")).unwrap().height(), 8);
    assert!(run_dir.join("records.csv").is_file() && run_dir.join("records.json").is_file());
}

#[test]
fn unknown_scheme_gets_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[1]", &["mlp"], "");
    let text =
        std::fs::read_to_string(&suite).unwrap().replace(r#"schemes = ["f32"]"#, r#"schemes = ["f32", "int8-pc-sim"]"#);
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(
        &o,
        &[&format!("{}:2:19:", suite.display()), r#"unknown scheme "int8-pc-sim" — did you mean "int8-pc-sym"?"#],
    );
}

#[test]
fn require_native_fails_emulated_cases_and_runs_native_ones() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cpu"]"#, "[8]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace(r#"schemes = ["f32"]"#, "schemes = [\"int8-dynamic\"]\nrequire_native = true");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(&o, &["1 of 2 cases failed"]);
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    let by_backend = |b: &str| records.iter().find(|r| r.backend == b).unwrap();
    // candle only emulates dynamic int8: refused, with the reason.
    let candle = by_backend("candle-cpu");
    assert_eq!(candle.status, CaseStatus::Failed);
    assert!(
        candle.error.as_deref().unwrap().contains("would run int8-dynamic emulated, not native"),
        "{:?}",
        candle.error
    );
    assert!(candle.samples_ns.is_empty());
    // tract runs it on its int8 kernels: measured.
    let tract = by_backend("tract-cpu");
    assert_eq!((tract.status, tract.realization.as_str()), (CaseStatus::Ok, "native"));
    assert!(tract.evidence.as_deref().unwrap().contains("mmm_i32"));
}

#[test]
fn unsupported_pairs_are_skipped_with_the_reason_and_do_not_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cpu"]"#, "[8]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite).unwrap().replace(r#"schemes = ["f32"]"#, r#"schemes = ["bf16"]"#);
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    let statuses: Vec<(&str, CaseStatus)> = records.iter().map(|r| (r.backend.as_str(), r.status)).collect();
    assert_eq!(statuses, vec![("candle-cpu", CaseStatus::Ok), ("tract-cpu", CaseStatus::Skipped)]);
    assert_eq!(records[1].realization, "unsupported");
    assert!(records[1].error.as_deref().unwrap().contains("no bfloat16 datum type"));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("1 skipped (unsupported on that backend) case(s)"), "{table}");
}

/// A build without the `cuda` feature refuses a suite naming a CUDA backend before running
/// anything, pointing at the backend and saying how to build one that runs it.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_backend_without_the_feature_is_refused_with_how_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cuda"]"#, "[8]", &["mlp"], "");
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(
        &o,
        &[
            &format!("{}:3:27:", suite.display()),
            r#"backend "tract-cuda" runs on a GPU"#,
            "--features cuda",
            "scripts/cuda-env.sh",
        ],
    );
    assert!(!dir.path().join("out").exists(), "nothing is written for a suite this build cannot run");
    let listed = String::from_utf8_lossy(&qbench(dir.path(), &["list", "backends"]).stdout).into_owned();
    let cuda_lines: Vec<&str> = listed.lines().filter(|l| l.contains("-cuda ")).collect();
    assert_eq!(cuda_lines.len(), 2, "{listed}");
    assert!(cuda_lines.iter().all(|l| l.contains("not in this build")), "{listed}");
}

/// A CUDA build on a machine without a usable GPU skips the CUDA cases with the probe's reason
/// and runs the CPU ones (a machine with a GPU runs them all: scripts/gpu-check.sh).
#[cfg(feature = "cuda")]
#[test]
fn cuda_cases_without_a_gpu_are_skipped_with_the_reason_and_cpu_cases_run() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cuda", "candle-cpu", "tract-cuda"]"#, "[8]", &["mlp"], "");
    let o = run_suite(dir.path(), &suite);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    let gpu = qbench::backend::gpu::probe(0);
    for r in &records {
        match (r.backend.as_str(), gpu) {
            ("candle-cpu", _) => assert_eq!((r.status, r.device.as_str()), (CaseStatus::Ok, "cpu")),
            (_, Err(why)) => {
                assert_eq!((r.status, r.device.as_str()), (CaseStatus::Skipped, "cuda:0"));
                assert_eq!(r.error.as_deref(), Some(why));
            }
            (_, Ok(info)) => {
                assert_eq!(r.status, CaseStatus::Ok, "{:?}", r.error);
                assert_eq!(r.gpu_name.as_deref(), Some(info.name.as_str()));
            }
        }
    }
    assert_eq!(records.len(), 3);
    // `list backends` says the same of each CUDA backend before any suite is written.
    let listed = String::from_utf8_lossy(&qbench(dir.path(), &["list", "backends"]).stdout).into_owned();
    let cuda_lines: Vec<&str> = listed.lines().filter(|l| l.contains("-cuda ")).collect();
    assert_eq!(cuda_lines.len(), 2, "{listed}");
    for line in cuda_lines {
        match gpu {
            Err(why) => assert!(line.ends_with(&format!("[not available here on cuda:0: {why}]")), "{line}"),
            Ok(info) if line.starts_with("  candle-cuda") => {
                assert!(line.ends_with(&format!("[ready on cuda:0: {}]", info.name)), "{line}")
            }
            // tract-cuda can still lack cuDNN where candle-cuda runs.
            Ok(info) => assert!(line.contains(&info.name) || line.contains("[not available here"), "{line}"),
        }
    }
}

/// More threads than cores is run as asked, but said even under --quiet, and in the report.
#[test]
fn threads_above_the_cores_are_flagged_even_when_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[8]", &["mlp"], "");
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = cores + 1;
    let text =
        std::fs::read_to_string(&suite).unwrap().replace("[measure]\n", &format!("[measure]\nthreads = {threads}\n"));
    std::fs::write(&suite, text).unwrap();
    let o =
        qbench(dir.path(), &["run", "-q", suite.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let warning = format!("WARNING: measure.threads = {threads} exceeds the {cores} logical cores here");
    assert!(stderr(&o).contains(&warning), "{}", stderr(&o));
    let report = std::fs::read_to_string(only_run_dir(dir.path()).join("report.md")).unwrap();
    assert!(report.contains(&format!("OVERSUBSCRIBED: {threads} threads on {cores} logical cores")), "{report}");
}

#[test]
fn a_device_that_is_not_cuda_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[8]", &["mlp"], "");
    let text =
        std::fs::read_to_string(&suite).unwrap().replace("batch_sizes = [8]", "batch_sizes = [8]\ndevice = \"gpu0\"");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_clean_error(
        &o,
        &[&format!("{}:5:10:", suite.display()), r#"device "gpu0" is not a CUDA device; write device = "cuda:0""#],
    );
}

/// The shipped-data suite with `schemes` instead of f32 and `extra` appended (tables).
fn quant_suite(dir: &Path, schemes: &str, extra: &str) -> PathBuf {
    let suite = common::write_suite(dir, r#"["candle-cpu", "tract-cpu"]"#, "[100]", &["mlp", "cnn"], extra);
    let text =
        std::fs::read_to_string(&suite).unwrap().replace(r#"schemes = ["f32"]"#, &format!("schemes = {schemes}"));
    std::fs::write(&suite, text).unwrap();
    suite
}

#[test]
fn quantization_settings_that_cannot_work_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            r#"["int4-g32-sym"]"#,
            "",
            &[":2:12:", "model mlp: int4-g32-sym: group size 32 does not divide the row width 784 of layer fc1", "[[overrides]]"],
        ),
        (
            r#"["int8-pc-sym"]"#,
            "\n[[overrides]]\nlayers = [\"fc2\"]\nscheme = \"int4-g48-sym\"\n",
            &["group size 48 does not divide the row width 256 of layer fc2"],
        ),
        (r#"["int8-static-mse"]"#, "", &[":2:12:", "int8-static-mse calibrates activation ranges", "[calibration]"]),
        (r#"["int8-static-mse"]"#, "\n[calibration]\nitems = 0\n", &["calibration split is empty"]),
        (r#"["f32"]"#, "\n[bundle]\nfactor = -0.5\n", &["bundle.factor", "must be finite and not negative"]),
        (r#"["f32"]"#, "\n[bundle]\nmin_top1_agreement = 1.5\n", &["bundle.min_top1_agreement", "must lie in 0..=1"]),
        (r#"["f32"]"#, "\n[bundle]\nfloor = 0.1\n", &["bundle.floor: unknown key \"floor\"", "did you mean \"floor_rel\"?"]),
        (
            r#"["int8-static-minmax"]"#,
            "\n[calibration]\nitems = 10000\n",
            &["calibration.items = 10000 leaves no image of dataset \"fm\" (10000 images)", "at most 9999"],
        ),
        (
            r#"["int8-pc-sym"]"#,
            "\n[[overrides]]\nlayers = [\"fc1\", \"fc9\"]\nscheme = \"f32\"\n",
            &["override layer pattern \"fc9\" matches no layer; the layers are mlp: fc1, fc2, fc3; cnn: conv1, conv2, fc1, fc2"],
        ),
        (
            r#"["int8-pc-sym"]"#,
            "\n[[overrides]]\nlayers = [\"conv1\"]\nmodels = [\"mlp\"]\nscheme = \"f32\"\n",
            &["override layer pattern \"conv1\" matches no layer; the layers are mlp: fc1, fc2, fc3"],
        ),
        (
            r#"["int8-pc-sym"]"#,
            "\n[[overrides]]\nlayers = [\"@first\"]\nschemes = [\"q4*\"]\nscheme = \"f32\"\n",
            &["override schemes pattern \"q4*\" matches none of the suite's schemes (int8-pc-sym)"],
        ),
        (
            r#"["int8-pc-sym"]"#,
            "\n[[overrides]]\nlayers = [\"@first\"]\nscheme = \"int4-g33-sym\"\n",
            &["unknown scheme \"int4-g33-sym\""],
        ),
        (
            r#"["q4k"]"#,
            "\n[[overrides]]\nlayers = [\"@last\"]\nscheme = \"int8-pc-sym\"\n",
            &["layer fc3 would be int8-pc-sym inside a q4k model", "override fc3 with f32 or a GGML type"],
        ),
    ];
    for (schemes, extra, needles) in cases {
        let suite = quant_suite(d, schemes, extra);
        let o = qbench(d, &["validate", suite.to_str().unwrap()]);
        let mut needles = needles.to_vec();
        let file = suite.display().to_string();
        needles.push(&file);
        assert_clean_error(&o, &needles);
    }
    // `run` refuses the same way before writing anything.
    let suite = quant_suite(d, r#"["int8-static-minmax"]"#, "\n[calibration]\nitems = 20000\n");
    let o = run_suite(d, &suite);
    assert_clean_error(&o, &["calibration.items = 20000 leaves no image"]);
    assert!(!d.join("out").exists());
}

#[test]
fn static_scheme_with_an_override_records_calibration_and_mixed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "\n[calibration]\nitems = 200\npercentile = 99.9\nselect = \"stratified\"\nseed = 5\n\n[[overrides]]\nlayers = [\"@last\"]\nscheme = \"f32\"\n";
    let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[100]", &["mlp"], extra);
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace(r#"schemes = ["f32"]"#, r#"schemes = ["f32", "int8-static-percentile"]"#);
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert!(o.status.success(), "{}", stderr(&o));
    let run_dir = only_run_dir(dir.path());
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    // Every case, f32 included, is evaluated on the images after the calibration split.
    // Stratified by label: Fashion-MNIST's test set has 1000 images of each class, so 20 of
    // each calibrate and 980 of each are evaluated (the confusion matrix's rows count them).
    let labels = qbench::data::load_idx("t", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let mut per_class = [0u32; 10];
    for &l in labels.labels() {
        per_class[l as usize] += 1;
    }
    assert_eq!(per_class, [1000; 10]);
    for r in &records {
        assert_eq!((r.calibration_items, r.eval_items), (200, Some(9800)), "{}", r.scheme);
        assert_eq!(r.calibration_selection.as_deref(), Some("stratified by label (seed 5)"));
        let rows: Vec<u32> = r.confusion.iter().map(|row| row.iter().sum()).collect();
        assert_eq!(rows, [980; 10], "{}", r.scheme);
    }
    assert_eq!(records[0].layer_overrides, "", "overrides leave the f32 reference alone");
    let r = &records[1];
    assert_eq!(r.layer_overrides, "fc3=f32");
    let aq = r.activation_quant.as_deref().unwrap();
    assert!(aq.contains("fc1=u8 static") && aq.contains("fc2=u8 static") && !aq.contains("fc3"), "{aq}");
    assert!(aq.contains("percentile 99.9, 200 calibration items"), "{aq}");
    // fc1 and fc2 on tract's int8 kernel, fc3 in f32: native overall (f32 layers are native).
    let ev = r.evidence.as_deref().unwrap();
    // (Which i32 tile tract picks, 8x8 or 16x16, varies between runs on the same machine.)
    let int_layers: usize = ev
        .split(", ")
        .filter(|op| op.contains("mmm_i32"))
        .map(|op| op.rsplit('×').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(int_layers == 2 && ev.contains("mmm_f32"), "{ev}");
    assert_eq!(r.realization, "native");
    assert!(r.weight_storage.as_deref().unwrap().contains("fc3.weight=f32"));
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        report.contains("int8-static-percentile †") && report.contains("- mlp / int8-static-percentile: fc3=f32"),
        "{report}"
    );
    assert!(
        report.contains("9800 items; 200 others held out for calibration, chosen stratified by label (seed 5)"),
        "{report}"
    );
}

#[test]
fn two_runs_give_identical_accuracy_fidelity_and_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(
        dir.path(),
        r#"["candle-cpu", "tract-cpu"]"#,
        "[50]",
        &["mlp"],
        "\n[calibration]\nitems = 200\n",
    );
    let schemes = r#"["f32", "int8-static-entropy", "int8-dynamic", "int4-g16-asym", "q4k"]"#;
    let text =
        std::fs::read_to_string(&suite).unwrap().replace(r#"schemes = ["f32"]"#, &format!("schemes = {schemes}"));
    std::fs::write(&suite, text).unwrap();
    let runs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            let o = qbench(dir.path(), &["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap()]);
            assert!(o.status.success(), "{}", stderr(&o));
            let runs: Vec<PathBuf> = std::fs::read_dir(out.join("t")).unwrap().map(|e| e.unwrap().path()).collect();
            runs[0].clone()
        })
        .collect();
    let (a, b) =
        (read_records(&runs[0].join("records.jsonl")).unwrap(), read_records(&runs[1].join("records.jsonl")).unwrap());
    assert_eq!(a.len(), 10);
    for (x, y) in a.iter().zip(&b) {
        let what = format!("{} {}", x.scheme, x.backend);
        assert_eq!(x.status, CaseStatus::Ok, "{what}: {:?}", x.error);
        let task = |r: &Record| (r.top1_accuracy, r.top5_accuracy, r.top1_ci_low, r.confusion.clone(), r.eval_items);
        assert_eq!(task(x), task(y), "{what}");
        let fid = |r: &Record| {
            [r.ref_top1_agreement, r.ref_top5_agreement, r.ref_max_abs_logit_diff, r.ref_cosine_mean, r.ref_sqnr_db]
                .into_iter()
                .chain([r.ref_mse_mean, r.ref_nmse, r.ref_kl_mean, r.ref_kl_stderr])
                .collect::<Vec<_>>()
        };
        assert_eq!(fid(x), fid(y), "{what}");
        assert_eq!(
            (&x.activation_quant, &x.weight_storage, x.bits_per_weight),
            (&y.activation_quant, &y.weight_storage, y.bits_per_weight)
        );
        // The artifacts themselves are byte-identical: export is deterministic.
        let bytes = |r: &Record| std::fs::read(r.artifact.as_ref().unwrap()).unwrap();
        assert!(bytes(x) == bytes(y), "{what}: artifacts differ");
    }
    // Static and dynamic int8 really differ from f32 (the comparison is not vacuous).
    assert!(a.iter().filter(|r| r.scheme != "f32").all(|r| r.ref_max_abs_logit_diff.unwrap() > 1e-3));
}

#[test]
fn explain_names_the_layer_to_keep_in_float_and_its_override_improves_top1() {
    let dir = tempfile::tempdir().unwrap();
    // q2k on candle: keeping fc1 in float buys back top-1 with a paired interval above zero
    // (+0.33 [+0.01, +0.65] points on these 10,000 images); milder schemes (int4-g16) leave no
    // layer whose gain can be told from zero, and explain then suggests none.
    let suite = common::write_suite(dir.path(), r#"["candle-cpu"]"#, "[100]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite).unwrap().replace(r#"schemes = ["f32"]"#, r#"schemes = ["f32", "q2k"]"#);
    std::fs::write(&suite, &text).unwrap();
    assert!(run_suite(dir.path(), &suite).status.success());
    let run_dir = only_run_dir(dir.path());
    let before = read_records(&run_dir.join("records.jsonl")).unwrap();
    let o = qbench(dir.path(), &["explain", run_dir.to_str().unwrap(), "1"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    for layer in ["| fc1 | q2k |", "| fc2 | q2k |", "| fc3 | q2k |"] {
        assert!(out.contains(layer), "{layer} missing:\n{out}");
    }
    assert!(run_dir.join("explain-case-1.md").is_file());
    // The per-layer chart: its bars are the table's SQNRs, it is drawn, and report.html shows it.
    let charts = run_dir.join("charts");
    let chart: qbench::report::chart::Chart =
        serde_json::from_slice(&std::fs::read(charts.join("layers-case-1.json")).unwrap()).unwrap();
    let qbench::report::chart::Plot::Bars { bars } = &chart.plot else { panic!("a bar chart: {chart:?}") };
    for layer in ["fc1", "fc2", "fc3"] {
        let row = out.lines().find(|l| l.starts_with(&format!("| {layer} |"))).unwrap();
        let table: Vec<&str> = row.split('|').map(str::trim).collect();
        let bar = |series: &str| {
            bars.iter()
                .find(|b| b.label.starts_with(&format!("{layer} (")) && b.series.starts_with(series))
                .and_then(|b| b.value)
                .map(|v| format!("{v:.1}"))
                .unwrap()
        };
        assert_eq!((bar("cumulative"), bar("alone")), (table[3].to_string(), table[4].to_string()), "{row}");
    }
    for ext in ["svg", "png"] {
        assert!(std::fs::metadata(charts.join(format!("layers-case-1.{ext}"))).unwrap().len() > 1000);
    }
    assert!(std::fs::read_to_string(run_dir.join("report.html")).unwrap().contains("id=\"chart-layers-case-1\""));
    // The suggestion is a TOML override naming one layer; applied, the run's top-1 rises.
    let toml = out.split("```toml\n").nth(1).and_then(|s| s.split("```").next()).expect("an override block");
    let layer = toml.lines().find_map(|l| l.strip_prefix("layers = [\"")).unwrap().trim_end_matches("\"]");
    assert!(["fc1", "fc2", "fc3"].contains(&layer), "{toml}");
    // Suggested for a gain whose paired interval is above zero, and never one below it.
    let row = out.lines().find(|l| l.starts_with(&format!("| {layer} |"))).unwrap();
    let low: f64 = row.rsplit('[').next().unwrap().split(',').next().unwrap().trim().parse().unwrap();
    assert!(low > 0.0, "{row}");
    assert!(out.contains("raises top-1 with a paired interval above zero"), "{out}");
    assert!(out.contains(&format!("Keeping {layer} in f32 gives top-1 +")), "{out}");
    std::fs::write(&suite, format!("{text}\n{toml}")).unwrap();
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    assert!(run_suite(dir.path(), &suite).status.success());
    let run_dir = only_run_dir(dir.path());
    let after = read_records(&run_dir.join("records.jsonl")).unwrap();
    assert_eq!(after[1].layer_overrides, format!("{layer}=f32"));
    let delta = |r: &[Record]| r[1].top1_accuracy.unwrap() - r[0].top1_accuracy.unwrap();
    assert!(delta(&after) > delta(&before), "Δtop-1 {} with the override vs {} without", delta(&after), delta(&before));
    // explain promised this accuracy on the same 10,000 images (batches differ: ±2 images).
    let promised = out.lines().find(|l| l.starts_with(&format!("| {layer} |"))).unwrap();
    let pct: f64 = promised.rsplit('|').nth(2).unwrap().trim().split('%').next().unwrap().parse().unwrap();
    assert!(
        (pct / 100.0 - after[1].top1_accuracy.unwrap()).abs() <= 0.0002,
        "{promised} vs {:?}",
        after[1].top1_accuracy
    );
    // A case that cannot be explained says why.
    let o = qbench(dir.path(), &["explain", run_dir.to_str().unwrap(), "7"]);
    assert_clean_error(&o, &["case 7 is not in", "cases 0 to 1"]);
    // Records that do not belong to their suite: an error, not a panic.
    let records = std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap();
    std::fs::write(run_dir.join("records.jsonl"), records.replace("\"model\":\"mlp\"", "\"model\":\"nope\"")).unwrap();
    let o = qbench(dir.path(), &["explain", run_dir.to_str().unwrap(), "1"]);
    assert_clean_error(&o, &["case 1 names model \"nope\", which its suite", "do not belong together"]);
}

#[test]
fn a_failing_gate_exits_2_with_junit_numbers_and_a_loosened_one_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let gate = |min: &str| {
        format!("\n[[gates]]\nname = \"accuracy\"\nmodels = [\"mlp\"]\nmin_top1 = {min}\nmax_size_bytes = 2000000\n")
    };
    let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[50]", &["mlp"], &gate("0.95"));
    let o = run_suite(dir.path(), &suite);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let run_dir = only_run_dir(dir.path());
    let xml = std::fs::read_to_string(run_dir.join("gates.xml")).unwrap();
    assert!(xml.contains(r#"name="mlp / f32 / tract-cpu / batch 50 :: min_top1""#), "{xml}");
    // Failed from the Wilson interval of 8860/10000, wholly below the minimum.
    assert!(xml.contains(r#"<failure message="below the minimum: top-1 88.60% [87.96%, 89.21%] (Wilson 95% interval), minimum 95.00%" type="min_top1""#), "{xml}");
    assert!(xml.contains(r#"tests="2" skipped="0" failures="1""#), "{xml}");
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("**Gates: FAIL** — 2 checks: 1 passed, 1 failed, 0 inconclusive."), "{md}");
    // report.html shows the verdict and the failing check with its numbers.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"gates\">") && html.contains("1 check(s) passed; these did not:"));
    assert!(html.contains("top-1 88.60% [87.96%, 89.21%]"), "gate numbers missing from report.html");
    // `check` re-reads the run's copy of the suite and gives the same verdict, and appends its
    // summary to the GitHub step summary when asked.
    let step_summary = dir.path().join("summary.md");
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["check", run_dir.to_str().unwrap()])
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(std::fs::read_to_string(&step_summary)
        .unwrap()
        .contains("| FAIL | accuracy | mlp / f32 / tract-cpu / batch 50 | min_top1 |"));

    // Loosened: exit 0.
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let text = std::fs::read_to_string(&suite).unwrap().replace("min_top1 = 0.95", "min_top1 = 0.85");
    std::fs::write(&suite, text).unwrap();
    let o = run_suite(dir.path(), &suite);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run_dir = only_run_dir(dir.path());
    assert!(std::fs::read_to_string(run_dir.join("gates.xml")).unwrap().contains(r#"failures="0""#));

    // Latency against a baseline: itself passes; a baseline twice as fast fails with the ratio.
    let copy = std::fs::read_to_string(run_dir.join("suite.toml")).unwrap();
    std::fs::write(
        run_dir.join("suite.toml"),
        format!("{copy}\n[[gates]]\nname = \"latency\"\nmax_latency_regression_pct = 50\n"),
    )
    .unwrap();
    let o = qbench(dir.path(), &["check", run_dir.to_str().unwrap(), "--baseline", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // The gate's decision on a known ratio, not on this machine's noise: a noisy CI machine can
    // rightly call a halved copy of its own samples inconclusive, so both sides get a fixed,
    // tightly spread series (the interval arithmetic has its own tests in measure::stats).
    let series = |scale: u64| -> Vec<u64> { (0..200u64).map(|i| scale * (100_000 + (i * 37) % 1000)).collect() };
    let write = |path: &Path, records: &[Record]| {
        std::fs::write(path, records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect::<String>())
            .unwrap()
    };
    let mut current = read_records(&run_dir.join("records.jsonl")).unwrap();
    for r in &mut current {
        r.set_latency(series(2), r.batch);
    }
    write(&run_dir.join("records.jsonl"), &current);
    let mut fast = current.clone();
    for r in &mut fast {
        r.set_latency(series(1), r.batch);
    }
    let base = dir.path().join("fast.jsonl");
    write(&base, &fast);
    let o = qbench(dir.path(), &["check", run_dir.to_str().unwrap(), "--baseline", base.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("slower beyond the limit") && out.contains("ratio 2.0"), "{out}");
    // No baseline for a latency gate: inconclusive, exit 3.
    let o = qbench(dir.path(), &["check", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn gate_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, needle) in [
        ("\n[[gates]]\nname = \"x\"\n", "x has no threshold"),
        ("\n[[gates]]\nmin_top1 = 90\n", "min_top1 = 90 is a fraction"),
        (
            "\n[[gates]]\nschemes = [\"int8*\"]\nmin_top1 = 0.9\n",
            "gate schemes pattern \"int8*\" matches none of the suite's schemes (f32)",
        ),
        ("\n[[gates]]\nmin_top1 = 0.9\nmax_p99 = 3\n", "unknown key \"max_p99\" — did you mean \"max_p99_ms\"?"),
    ] {
        let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[50]", &["mlp"], extra);
        let o = qbench(dir.path(), &["validate", suite.to_str().unwrap()]);
        assert_clean_error(&o, &[needle]);
    }
}

#[test]
fn isolate_runs_each_case_in_its_own_process_and_a_dead_process_fails_only_its_case() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cpu"]"#, "[1]", &["mlp"], "");
    let o = qbench(dir.path(), &["run", suite.to_str().unwrap(), "--out", "out", "--isolate", "--threads", "2", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 2);
    // --threads reached each case's own process (the suite says 1).
    assert!(records.iter().all(|r| r.threads == 2), "{:?}", records.iter().map(|r| r.threads).collect::<Vec<_>>());
    let mut pids: Vec<u32> = records.iter().map(|r| r.process_id).collect();
    pids.dedup();
    assert_eq!(pids.len(), 2, "one process a case: {pids:?}");
    for r in &records {
        assert_eq!((r.status, r.fresh_process, r.run_id == records[0].run_id), (CaseStatus::Ok, true, true));
        // The OS's peak of the whole process holds at least the weights the engine reports,
        // and at least the heap prepare held (two independent counters).
        let peak = r.process_peak_rss_bytes.unwrap();
        assert!(peak >= r.weights_bytes.unwrap() && peak >= r.prepare_heap_peak_bytes.unwrap(), "{r:?}");
    }
    assert_eq!(records.iter().map(|r| r.case_index).collect::<Vec<_>>(), vec![0, 1]);
    // Without --isolate: one process for all, and no whole-process peak claimed for a case.
    let o = qbench(dir.path(), &["run", suite.to_str().unwrap(), "--out", "shared", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shared_dir = std::fs::read_dir(dir.path().join("shared/t")).unwrap().next().unwrap().unwrap().path();
    let shared = read_records(&shared_dir.join("records.jsonl")).unwrap();
    assert!(shared.iter().all(|r| r.process_id == shared[0].process_id && !r.fresh_process));
    assert!(shared.iter().all(|r| r.process_peak_rss_bytes.is_none()));
    // --only-case runs one case, and names the range when the index is not a case.
    let o = qbench(dir.path(), &["run", suite.to_str().unwrap(), "--out", "one", "--only-case", "1", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = qbench(dir.path(), &["run", suite.to_str().unwrap(), "--out", "one", "--only-case", "7"]);
    assert_clean_error(&o, &["no case 7", "0 to 1"]);

    // A case whose process dies without a record fails alone, with what the process said;
    // the run goes on and writes every case.
    let suite = qbench::suite::Suite::load(&suite).unwrap();
    for exe in ["/bin/false", "/nonexistent/qbench"] {
        let options = qbench::run::RunOptions {
            out_dir: Some(dir.path().join(format!("dead{}", exe.len()))),
            isolate: Some(PathBuf::from(exe)),
            ..Default::default()
        };
        let summary = qbench::run::run(&suite, &options, &mut |_| {}).unwrap();
        assert_eq!(summary.records.len(), 2);
        for r in &summary.records {
            assert_eq!(r.status, CaseStatus::Failed);
            let e = r.error.as_deref().unwrap();
            let want = if exe == "/bin/false" { "without writing its record" } else { "cannot start" };
            assert!(e.contains(want), "{e}");
        }
        let written = read_records(&summary.run_dir.join("records.jsonl")).unwrap();
        assert_eq!(written.len(), 2);
    }
}

#[test]
fn quantized_cases_are_paired_with_their_backends_f32_and_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[1]", &["mlp"], "");
    let text = std::fs::read_to_string(&suite).unwrap();
    std::fs::write(&suite, text.replace(r#"schemes = ["f32"]"#, r#"schemes = ["f32", "int8-dynamic"]"#)).unwrap();
    assert!(run_suite(dir.path(), &suite).status.success());
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    let (f32, int8) = (&records[0], &records[1]);
    assert_eq!((f32.speedup_vs_f32, f32.paired_ns.len()), (None, 0), "f32 is not paired with itself");
    // One timed run of each a round, at least min_samples rounds; the speedup is the median of
    // the per-round ratios, recomputed here from the raw rounds.
    let n = int8.paired_ns.len();
    assert!(n >= 5 && n == int8.paired_f32_ns.len(), "{n} rounds");
    let mut ratios: Vec<f64> =
        int8.paired_f32_ns.iter().zip(&int8.paired_ns).map(|(&f, &q)| f as f64 / q as f64).collect();
    ratios.sort_by(f64::total_cmp);
    let median = if n % 2 == 1 { ratios[n / 2] } else { (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0 };
    assert!((int8.speedup_vs_f32.unwrap() - median).abs() < 1e-12);
    if let (Some(lo), Some(hi)) = (int8.speedup_vs_f32_ci_low, int8.speedup_vs_f32_ci_high) {
        assert!(lo <= median && median <= hi);
    }
    // The same two variants measured apart agree with the rounds to within a factor of two
    // (an independent measurement of the same speeds).
    let apart = f32.latency_median_ns.unwrap() / int8.latency_median_ns.unwrap();
    assert!((apart / median).ln().abs() < 2f64.ln(), "paired {median}, apart {apart}");
    // The verdict against f32: "slower" only when most rounds were more than 2% slower (the
    // interval must also clear 1.02, so this is necessary, not sufficient), said in the table
    // and in the HTML summary exactly when it is flagged.
    let verdict = int8.vs_f32_verdict.as_deref().expect("a verdict from the rounds");
    assert_eq!(int8.slower_than_f32, verdict == "slower");
    let slower_rounds =
        int8.paired_f32_ns.iter().zip(&int8.paired_ns).filter(|(&f, &q)| q as f64 > f as f64 * 1.02).count();
    if int8.slower_than_f32 {
        assert!(2 * slower_rounds > n, "{slower_rounds} of {n} rounds slower, yet flagged slower");
    }
    if verdict == "faster" {
        assert!(2 * slower_rounds < n, "{slower_rounds} of {n} rounds slower, yet called faster");
    }
    let run_dir = only_run_dir(dir.path());
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert_eq!(md.contains("SLOWER than f32"), int8.slower_than_f32, "{verdict}: {md}");
    assert_eq!(html.contains("is SLOWER than f32 on the same engine"), int8.slower_than_f32, "{verdict}");
    // Without an f32 scheme in the suite, a quantized case says why it has no speedup.
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(&suite, text.replace(r#"schemes = ["f32"]"#, r#"schemes = ["int8-dynamic"]"#)).unwrap();
    assert!(run_suite(dir.path(), &suite).status.success());
    let records = read_records(&only_run_dir(dir.path()).join("records.jsonl")).unwrap();
    assert_eq!(records[0].speedup_vs_f32, None);
    assert!(records[0].speedup_vs_f32_note.as_deref().unwrap().contains("no f32 scheme"), "{:?}", records[0]);
}

#[test]
fn a_run_stopped_while_writing_a_record_still_reports_its_complete_records() {
    let dir = tempfile::tempdir().unwrap();
    let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[1, 4]", &["mlp"], "");
    assert!(run_suite(dir.path(), &suite).status.success());
    let run_dir = only_run_dir(dir.path());
    let path = run_dir.join("records.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let first_line = text.lines().next().unwrap();
    // A third record cut off half-way (a full disk, a kill while writing).
    std::fs::write(&path, format!("{text}{}", &first_line[..first_line.len() / 2])).unwrap();
    let o = qbench(dir.path(), &["report", run_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 3: incomplete"), "{}", stderr(&o));
    assert!(stderr(&o).contains("regenerated from 2 records"), "{}", stderr(&o));
}

#[test]
fn check_on_an_interrupted_run_or_with_nothing_to_check_is_inconclusive_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let gate = "\n[[gates]]\nname = \"accuracy\"\nmin_top1 = 0.5\n";
    let suite = common::write_suite(dir.path(), r#"["tract-cpu"]"#, "[1, 4]", &["mlp"], gate);
    let o = run_suite(dir.path(), &suite);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run_dir = only_run_dir(dir.path());
    let planned: Vec<qbench::run::PlannedCase> =
        serde_json::from_slice(&std::fs::read(run_dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(planned.len(), 2);
    let path = run_dir.join("records.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let check = || qbench(dir.path(), &["check", run_dir.to_str().unwrap()]);
    let o = check();
    assert_eq!(o.status.code(), Some(0), "the whole run passes: {}", String::from_utf8_lossy(&o.stdout));
    // Killed after the first case: the gate passes on what is there, the run does not.
    std::fs::write(&path, format!("{}\n", text.lines().next().unwrap())).unwrap();
    let o = check();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("INCOMPLETE RUN: 1 planned case(s) have no record") && out.contains("batch 4"), "{out}");
    // A record twice is named too.
    std::fs::write(&path, format!("{text}{}\n", text.lines().next().unwrap())).unwrap();
    let out = String::from_utf8_lossy(&check().stdout).into_owned();
    assert!(out.contains("1 case(s) have more than one record"), "{out}");
    // Planned cases that cannot be read: completeness is unknown, not assumed.
    std::fs::write(&path, format!("{}\n", text.lines().next().unwrap())).unwrap();
    let cases = run_dir.join("cases.json");
    let kept = std::fs::read(&cases).unwrap();
    for broken in [Some(&b"garbage"[..]), None] {
        match broken {
            Some(b) => std::fs::write(&cases, b).unwrap(),
            None => std::fs::remove_file(&cases).unwrap(),
        }
        let o = check();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(out.contains("planned cases cannot be read"), "{out}");
    }
    std::fs::write(&cases, kept).unwrap();
    std::fs::write(&path, &text).unwrap();
    // Nothing recorded: nothing checked is not a pass.
    std::fs::write(&path, "").unwrap();
    let o = check();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    // The only check is the run's completeness: every planned case lacks its record.
    assert!(out.contains("Gates: inconclusive** — 1 checks") && out.contains("incomplete run"), "{out}");
}

/// Every file under `dir`, relative to it (sorted).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_model_names_write_only_inside_the_run_folder_and_keep_their_names_in_records() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("a/b/work");
    std::fs::create_dir_all(&work).unwrap();
    let victim = dir.path().join("victim");
    let long = "ü".repeat(300);
    let names = [
        victim.to_str().unwrap().to_string(),
        "../../../escape".into(),
        "x/y\\z".into(),
        "bell\u{7}tab\t<b>".into(),
        long.clone(),
        "名前".into(),
    ];
    let mut models = String::new();
    for n in &names {
        models.push_str(&format!(
            "\n[[models]]\nname = {}\nzoo = \"mlp\"\nweights = {:?}\n",
            toml::Value::String(n.clone()),
            common::weights("mlp")
        ));
    }
    models.push_str(&format!(
        "\n[[models]]\nname = \"/onnx/../../victim2\"\npath = {:?}\ndataset = \"fm\"\n[[models.inputs]]\nname = \"images\"\nshape = [\"batch\", 1, 28, 28]\ndtype = \"f32\"\n",
        common::repo().join("suites/models/cnn-tf-style.onnx")
    ));
    let suite = common::write_suite(&work, r#"["tract-cpu"]"#, "[1]", &[], &models);
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("schemes = [\"f32\"]", "schemes = [\"f32\", \"f16\", \"q8_0\"]");
    std::fs::write(&suite, text).unwrap();
    let before = files_under(dir.path());
    let o = qbench(&work, &["run", suite.to_str().unwrap(), "--out", work.join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Nothing new outside the output folder.
    let after: Vec<PathBuf> = files_under(dir.path()).into_iter().filter(|p| !p.starts_with("a/b/work/out")).collect();
    assert_eq!(after, before, "files appeared outside the run folder");
    let runs: Vec<PathBuf> = std::fs::read_dir(work.join("out/t")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1);
    let artifacts: Vec<String> =
        files_under(&runs[0].join("artifacts")).iter().map(|p| p.to_string_lossy().into_owned()).collect();
    // Three schemes' files for each of 6 zoo models, and the ONNX model's normalized f32 form.
    assert!(artifacts.iter().all(|a| !a.contains('/') && !a.starts_with('.') && a.len() <= 80), "{artifacts:?}");
    assert!(artifacts.iter().any(|a| a.ends_with("victim2.f32.onnx")), "{artifacts:?}");
    let records = read_records(&runs[0].join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 7 * 3, "{}", stderr(&o));
    for n in names.iter().chain([&"/onnx/../../victim2".to_string()]) {
        assert_eq!(records.iter().filter(|r| &r.model == n && r.status == CaseStatus::Ok).count(), 3, "{n:?}");
    }
    // Two names that become one file name are refused before anything runs.
    let clash =
        format!("{models}\n[[models]]\nname = \"x_y_z\"\nzoo = \"mlp\"\nweights = {:?}\n", common::weights("mlp"));
    let suite = common::write_suite(&work, r#"["tract-cpu"]"#, "[1]", &[], &clash);
    assert_clean_error(
        &qbench(&work, &["validate", suite.to_str().unwrap()]),
        &["would share the file name \"x_y_z\""],
    );
    // A suite name is a folder name: `..` is refused.
    let text = std::fs::read_to_string(&suite).unwrap().replace("name = \"t\"", "name = \"..\"");
    std::fs::write(&suite, text).unwrap();
    assert_clean_error(
        &qbench(&work, &["validate", suite.to_str().unwrap()]),
        &["suite name \"..\" is used as a folder name"],
    );
}

#[test]
fn reading_a_missing_or_corrupt_records_file_is_a_read_error_naming_line_and_field_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let report = || qbench(dir.path(), &["report", run.to_str().unwrap()]);
    let o = report();
    assert_clean_error(&o, &["cannot read", "records.jsonl", "No such file"]);
    assert!(!stderr(&o).contains("cannot write"), "{}", stderr(&o));
    // A wrong type in one field of the second line: the file, the line and the field, once.
    let long = "x".repeat(4000);
    let good = serde_json::to_string(&Record::default()).unwrap();
    let bad = good.replacen("\"case_index\":0", &format!("\"case_index\":\"{long}\""), 1);
    assert_ne!(bad, good);
    std::fs::write(run.join("records.jsonl"), format!("{good}\n{bad}\n{good}\n")).unwrap();
    let o = report();
    assert_clean_error(&o, &["records.jsonl, line 2", "field `case_index`", "invalid type"]);
    let e = stderr(&o);
    assert_eq!(e.matches("invalid type").count(), 1, "{e}");
    assert!(e.len() < 600, "a long value is cut: {} bytes", e.len());
    // A symbolic-link loop and a device are named as what they are.
    std::fs::remove_file(run.join("records.jsonl")).unwrap();
    std::os::unix::fs::symlink(run.join("records.jsonl"), run.join("records.jsonl")).unwrap();
    assert_clean_error(&report(), &["cannot read", "symbolic links"]);
    std::fs::remove_file(run.join("records.jsonl")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", run.join("records.jsonl")).unwrap();
    assert_clean_error(&report(), &["it is a device, not a regular file"]);
    // A FIFO is named as one by every command that reads records (none waits for a writer, and
    // none calls it missing).
    std::fs::remove_file(run.join("records.jsonl")).unwrap();
    let made = std::process::Command::new("mkfifo").arg(run.join("records.jsonl")).status().unwrap();
    assert!(made.success());
    let r = run.to_str().unwrap();
    for args in [vec!["report", r], vec!["merge", r, r], vec!["explain", r, "0"], vec!["compare", r, r]] {
        let o = qbench(dir.path(), &args);
        assert_clean_error(&o, &["records.jsonl", "it is a FIFO (named pipe), not a regular file"]);
        assert!(!stderr(&o).contains("has no records"), "{args:?}: {}", stderr(&o));
    }
}

/// `run --dry-run` lists what the run would do: each case at its case index with the expectation
/// the run then records (`expected_realization`), skips with their reason; it writes nothing.
#[test]
fn a_dry_run_lists_the_cases_the_run_then_measures_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let suite = quant_suite(d, r#"["f32", "q4k", "int8-dynamic"]"#, "");
    let text = std::fs::read_to_string(&suite).unwrap().replace("[100]", "[1]");
    std::fs::write(&suite, text).unwrap();
    let o = qbench(d, &["run", suite.to_str().unwrap(), "--dry-run", "--out", "dry"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!d.join("dry").exists(), "a dry run wrote {}", d.join("dry").display());
    // The same suite, run for real (one case, to stay quick).
    let o = qbench(d, &["run", suite.to_str().unwrap(), "--out", "real", "--only-case", "1", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = std::fs::read_dir(d.join("real/t")).unwrap().next().unwrap().unwrap().path();
    let records = qbench::record::read_records(&run.join("records.jsonl")).unwrap();
    // 2 models × 3 schemes × 2 backends × 1 batch.
    let planned = 2 * 3 * 2;
    let lines: Vec<&str> = listing.lines().filter(|l| l.contains(" / batch ")).collect();
    assert_eq!(lines.len(), planned, "{listing}");
    assert!(listing.contains(&format!("{planned} case(s) selected")), "{listing}");
    let r = &records[0];
    let line = lines.iter().find(|l| l.trim_start().starts_with(&format!("{} ", r.case_index))).unwrap();
    assert!(line.contains(&format!("{} / {} / {} / batch {}", r.model, r.scheme, r.backend, r.batch)), "{line}");
    assert!(line.ends_with(&format!("expected {}", r.expected_realization)), "{line} vs {}", r.expected_realization);
    // --only-case selects the one case.
    let o = qbench(d, &["run", suite.to_str().unwrap(), "--dry-run", "--only-case", "1"]);
    let one = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(one.contains("1 case(s) selected") && one.lines().next().unwrap().trim_start().starts_with("1 "), "{one}");
}

#[test]
fn a_filtered_run_measures_its_cases_is_complete_for_check_and_resumes_with_its_filter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = "\n[[gates]]\nmin_top1 = 0.5\n";
    let suite = quant_suite(d, r#"["f32", "int8-pc-sym", "f16"]"#, gate);
    let s = suite.to_str().unwrap();
    let filter = "model=mlp,scheme=int8-*,f32,backend=tract-cpu";
    // The dry run lists the cases the filter selects: mlp, two schemes, one backend, one batch.
    let o = qbench(d, &["run", s, "--dry-run", "--filter", filter]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let listed: Vec<usize> = listing
        .lines()
        .filter(|l| l.contains(" / batch "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listing}");
    assert!(listing
        .lines()
        .filter(|l| l.contains(" / batch "))
        .all(|l| l.contains("mlp / ") && l.contains("tract-cpu")));
    let o = qbench(d, &["run", s, "--filter", filter, "--out", "out", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run_dir = only_run_dir(d);
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    let mut got: Vec<usize> = records.iter().map(|r| r.case_index).collect();
    got.sort();
    assert_eq!(got, listed, "the run measured the cases the dry run listed, under the suite's case indices");
    assert!(records.iter().all(|r| r.model == "mlp" && r.backend == "tract-cpu" && r.scheme != "f16"));
    let planned: Vec<qbench::record::PlannedCase> =
        serde_json::from_slice(&std::fs::read(run_dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(planned.iter().map(|p| p.case_index).collect::<Vec<_>>(), listed);
    let manifest = qbench::run::RunManifest::read(&run_dir).unwrap();
    assert_eq!(manifest.filter.as_deref(), Some(filter));
    assert_eq!(manifest.suite_cases.len(), 2, "a merge of this run's shards plans the filtered cases");
    // `check` judges the run on its own cases: complete, the gate passes (exit 0, not 3).
    let o = qbench(d, &["check", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // Interrupted after its first case: --resume selects the filter's cases again and measures
    // only the missing one.
    let text = std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap();
    let first = text.lines().next().unwrap().to_string() + "\n";
    std::fs::write(run_dir.join("records.jsonl"), &first).unwrap();
    let o = qbench(d, &["check", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "a run missing a filtered case is not a pass");
    // gates.md and gates.xml say so too, not only the exit code.
    assert!(std::fs::read_to_string(run_dir.join("gates.md")).unwrap().contains("incomplete run"));
    assert!(std::fs::read_to_string(run_dir.join("gates.xml")).unwrap().contains("planned_cases"));
    let o = qbench(d, &["run", "--resume", run_dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = read_records(&run_dir.join("records.jsonl")).unwrap();
    let mut again: Vec<usize> = resumed.iter().map(|r| r.case_index).collect();
    again.sort();
    assert_eq!(again, listed);
    // A filter cannot be changed on resume.
    let o = qbench(d, &["run", "--resume", run_dir.to_str().unwrap(), "--filter", "model=cnn"]);
    assert_eq!(o.status.code(), Some(1));
    // A typo names the values there are; a filter no case meets all of says so; a bad field is
    // named with the fields there are. Nothing is written.
    std::fs::remove_dir_all(d.join("out")).unwrap();
    assert_clean_error(&qbench(d, &["run", s, "--filter", "model=cnnn"]), &["model=cnnn", "(mlp, cnn)"]);
    // --only-case outside the filter: an error, not an empty run.
    let other = (0..12).find(|i| !listed.contains(i)).unwrap().to_string();
    assert_clean_error(&qbench(d, &["run", s, "--filter", filter, "--only-case", &other]), &["does not select case"]);
    assert_clean_error(&qbench(d, &["run", s, "--filter", "scheme=f16,batch=1"]), &["batch=1", "(100)"]);
    let o = qbench(d, &["run", s, "--dry-run", "--filter", "colour=red"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown field \"colour\"; use model, scheme"), "{}", stderr(&o));
    assert!(!d.join("out").exists());
}

/// suites/byom.toml names its models' own backends and schemes and excludes what candle-onnx and
/// candle-transformers' llama cannot run: every case it generates is one its engine expects to
/// run (the expectation `run` records before measuring), and the dry run says what each exclude
/// rule left out.
#[cfg(feature = "candle-onnx")]
#[test]
fn byom_generates_no_case_its_engine_cannot_run() {
    let repo = common::repo();
    let o = qbench(&repo, &["run", "suites/byom.toml", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let cases: Vec<&str> = listing.lines().filter(|l| l.contains(" / batch ")).collect();
    assert!(cases.len() >= 40, "{listing}");
    assert!(cases.iter().all(|l| l.contains(": expected ")), "{listing}");
    assert!(
        listing.contains(&format!(
            "{} case(s) selected: {} to measure, 0 to skip, 0 to refuse",
            cases.len(),
            cases.len()
        )),
        "{listing}"
    );
    // The BERT checkpoint and the GGUF llama run on candle only; the ONNX CNN on both engines.
    for model in ["bert-tiny", "tiny-llama"] {
        assert!(!cases.iter().any(|l| l.contains(&format!("{model} / ")) && l.contains("tract-cpu")), "{listing}");
    }
    assert!(cases.iter().any(|l| l.contains("cnn-tf-style / int8-pc-sym / tract-cpu")));
    assert!(listing.contains("[[exclude]] 1: leaves out 8 combination(s)"), "{listing}");
}

#[test]
fn set_changes_the_suite_for_the_run_which_keeps_the_changed_copy_and_resumes_and_explains_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let suite = common::write_suite(d, r#"["tract-cpu"]"#, "[50]", &["mlp"], "\n[[gates]]\nmin_top1 = 0.99\n");
    let s = suite.to_str().unwrap();
    let original = std::fs::read_to_string(&suite).unwrap();
    let sets = [
        "--set",
        "batch_sizes=[7, 3]",
        "--set",
        "schemes=[\"f32\", \"int8-pc-sym\"]",
        "--set",
        "name=nightly",
        "--set",
        "measure.threads=2",
        "--set",
        "gates.0.min_top1=0.5",
    ];
    let mut args = vec!["run", s, "--out", "out", "-q"];
    args.extend(sets);
    let o = qbench(d, &args);
    // The loosened gate passes: the run used the changed suite.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&suite).unwrap(), original, "the suite file is not touched");
    let runs: Vec<PathBuf> = std::fs::read_dir(d.join("out/nightly")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "the run is filed under the set name");
    let run_dir = &runs[0];
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    let mut got: Vec<(String, usize)> = records.iter().map(|r| (r.scheme.clone(), r.batch)).collect();
    got.sort();
    let want: Vec<(String, usize)> = [("f32", 3), ("f32", 7), ("int8-pc-sym", 3), ("int8-pc-sym", 7)]
        .iter()
        .map(|(s, b)| (s.to_string(), *b))
        .collect();
    assert_eq!(got, want);
    assert!(
        records.iter().all(|r| r.threads == 2 && r.suite == "nightly" && r.suite_sets.len() == 5),
        "{:?}",
        records[0].suite_sets
    );
    // The run's copy of the suite is the changed text, headed by the sets; `check` reads it.
    let copy = std::fs::read_to_string(run_dir.join("suite.toml")).unwrap();
    assert!(
        copy.contains("#   --set batch_sizes=[7, 3]\n") && copy.contains("#   --set gates.0.min_top1=0.5\n"),
        "{copy}"
    );
    let parsed: toml::Table = toml::from_str(&copy).unwrap();
    assert_eq!(parsed["measure"]["threads"].as_integer(), Some(2));
    assert_eq!(parsed["gates"][0]["min_top1"].as_float(), Some(0.5));
    let o = qbench(d, &["check", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // The records' suite hash is of the changed text: explain rebuilds a case by applying the
    // sets again to the unchanged file.
    let int8 = records.iter().find(|r| r.scheme == "int8-pc-sym").unwrap();
    let o = qbench(d, &["explain", run_dir.to_str().unwrap(), &int8.case_index.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Resumed after losing a record: the sets come from run.json, and only that case runs.
    let text = std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap();
    let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(run_dir.join("records.jsonl"), kept).unwrap();
    let o = qbench(d, &["run", "--resume", run_dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_records(&run_dir.join("records.jsonl")).unwrap().len(), 4);
    // Sets that cannot apply, or that make the suite invalid, are refused before anything runs,
    // saying the text is the changed one.
    std::fs::remove_dir_all(d.join("out")).unwrap();
    assert_clean_error(
        &qbench(d, &["run", s, "--set", "measure.thread=2"]),
        &["unknown key \"thread\"", "did you mean \"threads\"", "as changed by --set measure.thread=2"],
    );
    assert_clean_error(&qbench(d, &["run", s, "--set", "measure.threads=0"]), &["measure.threads = 0 is out of range"]);
    assert_clean_error(
        &qbench(d, &["run", s, "--set", "models.resnet.zoo=cnn"]),
        &["--set models.resnet.zoo=cnn", "(\"mlp\")"],
    );
    assert_clean_error(&qbench(d, &["validate", s, "--set", "batch_sizes=[0]"]), &["batch size 0 is out of range"]);
    assert!(!d.join("out").exists());
}

#[test]
fn a_threads_sweep_runs_each_count_in_its_own_process_and_charts_the_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let suite = common::write_suite(d, r#"["tract-cpu", "candle-cpu"]"#, "[32]", &["mlp"], "");
    let text =
        std::fs::read_to_string(&suite).unwrap().replace("max_time_ms = 50\n", "max_time_ms = 50\nthreads = [1, 2]\n");
    std::fs::write(&suite, text).unwrap();
    let s = suite.to_str().unwrap();
    // The dry run lists each case at both thread counts; a filter picks one count; --threads
    // collapses the sweep.
    let listing = String::from_utf8_lossy(&qbench(d, &["run", s, "--dry-run"]).stdout).into_owned();
    assert!(listing.contains("   0  mlp / f32 / tract-cpu / batch 32 / threads=1: expected native"), "{listing}");
    assert!(listing.contains("   1  mlp / f32 / tract-cpu / batch 32 / threads=2: expected native"), "{listing}");
    assert!(listing.contains("4 case(s) selected"), "{listing}");
    let two =
        String::from_utf8_lossy(&qbench(d, &["run", s, "--dry-run", "--filter", "threads=2"]).stdout).into_owned();
    assert!(two.contains("2 case(s) selected") && !two.contains("threads=1"), "{two}");
    let one = String::from_utf8_lossy(&qbench(d, &["run", s, "--dry-run", "--threads", "2"]).stdout).into_owned();
    assert!(one.contains("2 case(s) selected") && !one.contains("threads="), "{one}");

    let o = qbench(d, &["run", s, "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 case(s) at 2 thread(s): measured in a process of their own"), "{}", stderr(&o));
    let run_dir = only_run_dir(d);
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(r.sweep, format!("threads={}", r.threads), "{}", r.case_name());
        assert_eq!(r.status, CaseStatus::Ok, "{}: {:?}", r.case_name(), r.error);
    }
    // Observed, not assumed: the 2-thread cases ran in another process than the 1-thread ones
    // (engines size their pools once per process), and a 1-thread case's process kept at most
    // about one core busy while sampling (the OS's CPU time over the wall time).
    let pid = |t: usize| -> Vec<u32> { records.iter().filter(|r| r.threads == t).map(|r| r.process_id).collect() };
    assert!(pid(1).iter().all(|p| !pid(2).contains(p)), "{:?} vs {:?}", pid(1), pid(2));
    assert_ne!(pid(2)[0], 0);
    for r in records.iter().filter(|r| r.threads == 1) {
        let busy = r.sampling_busy_cores.unwrap();
        assert!(busy > 0.0 && busy < 1.25, "{}: {busy}", r.case_name());
    }
    assert!(records.iter().filter(|r| r.threads == 2).all(|r| r.sampling_busy_cores.is_some_and(|b| b > 0.0)));
    // The report names each case's point, and charts throughput against threads.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("| sweep") && md.contains("threads=2") && md.contains("busy cores"), "{md}");
    let svg = std::fs::read_to_string(run_dir.join("charts/scaling-mlp-b32.svg")).unwrap();
    assert!(svg.contains("throughput against threads") && svg.contains("f32 · candle-cpu"), "scaling chart");
    // cases.json names the points: check sees the run complete.
    let o = qbench(d, &["check", run_dir.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("no record"), "{}", String::from_utf8_lossy(&o.stdout));
    // Resumed without a 2-thread record: that case runs again, in a process of its own.
    let text = std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap();
    let kept: String = text.lines().filter(|l| !l.contains("\"case_index\":3,")).map(|l| format!("{l}\n")).collect();
    std::fs::write(run_dir.join("records.jsonl"), kept).unwrap();
    let o = qbench(d, &["run", "--resume", run_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = read_records(&run_dir.join("records.jsonl")).unwrap();
    let back = again.iter().find(|r| r.case_index == 3).unwrap();
    assert_eq!((back.threads, back.sweep.as_str()), (2, "threads=2"));
    assert!(!pid(1).contains(&back.process_id));
}

#[test]
fn json_outputs_parse_and_say_what_the_text_and_files_say() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // list --json: every backend and scheme by name.
    let o = qbench(d, &["list", "--json"]);
    assert!(o.status.success());
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names = |k: &str| -> Vec<String> {
        list[k]["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
    };
    let backends: Vec<String> = qbench::backend::BackendId::all().map(|b| b.name().to_string()).collect();
    assert_eq!(names("backends"), backends);
    assert!(qbench::quant::SchemeId::ALL.iter().all(|s| names("schemes").contains(&s.name())));
    // validate --json: one object per suite, the case count the suite expands to, and the error
    // of a bad one (exit 1).
    let suite = common::write_suite(d, r#"["tract-cpu"]"#, "[50]", &["mlp"], "\n[[gates]]\nmin_top1 = 0.95\n");
    let s = suite.to_str().unwrap();
    let o = qbench(d, &["validate", s, "missing.toml", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cases = qbench::suite::expand(&qbench::suite::Suite::load(&suite).unwrap()).len();
    assert_eq!((v[0]["ok"].as_bool(), v[0]["cases"].as_u64()), (Some(true), Some(cases as u64)));
    assert_eq!(v[1]["ok"].as_bool(), Some(false));
    assert!(v[1]["error"].as_str().unwrap().contains("missing.toml"));
    // check --json: the verdict, the exit code it exits with, and the checks gates.json holds.
    let o = run_suite(d, &suite);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let run_dir = only_run_dir(d);
    let r = run_dir.to_str().unwrap();
    let summary = d.join("summary.md");
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["check", r, "--json"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((c["verdict"].as_str(), c["exit_code"].as_u64()), (Some("fail"), Some(2)), "{c}");
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("gates.json")).unwrap()).unwrap();
    let checks = c["checks"].as_array().unwrap();
    assert_eq!(checks.len(), rows.as_array().unwrap().len());
    for (a, b) in checks.iter().zip(rows.as_array().unwrap()) {
        assert_eq!((&a["case"], &a["check"], &a["numbers"]), (&b["case"], &b["metric"], &b["message"]));
        assert_eq!(a["verdict"].as_str().unwrap(), b["verdict"].as_str().unwrap().to_lowercase());
    }
    // Each check's step summary starts with a heading naming the suite and the run.
    let _ = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["check", r])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let id = run_dir.file_name().unwrap().to_str().unwrap();
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(text.matches(&format!("### qbench gates: suite `t`, run `{id}`")).count(), 2, "{text}");
    // compare: compare.md (what it prints), compare.json (what --json prints) and compare.html,
    // beside the first run by default; a run against itself is the same, ratio exactly 1.
    let o = qbench(d, &["compare", r, r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = run_dir.parent().unwrap().join(format!("compare-{id}-vs-{id}"));
    assert_eq!(std::fs::read_to_string(out.join("compare.md")).unwrap(), String::from_utf8_lossy(&o.stdout));
    let o = qbench(d, &["compare", r, r, "--json", "--out", "cmp"]);
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("cmp/compare.json")).unwrap()).unwrap();
    assert_eq!(printed, file);
    let compared = file["comparisons"][0]["cases"].as_array().unwrap();
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    assert_eq!(compared.len(), records.iter().filter(|r| r.status == CaseStatus::Ok).count());
    for case in compared {
        assert_eq!((case["ratio"].as_f64(), case["change"].as_str()), (Some(1.0), Some("same")), "{case}");
    }
    let html = std::fs::read_to_string(d.join("cmp/compare.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("<table class=\"comparison\">"));
    assert!(records.iter().all(|r| html.contains(&r.case_name())), "every case is a row");
    assert!(!html.contains("<script src") && !html.contains("<link"), "self-contained");
    // Completions come from the same definitions as the parser.
    let o = qbench(d, &["completions", "bash"]);
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && script.contains("_qbench()") && script.contains("--filter"), "{script}");
}

#[test]
fn offline_and_server_scenarios_are_measured_on_the_engine_recorded_and_gated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two entries of the zoo MLP: one under the suite's offline scenario, one its own server.
    let extra = format!(
        "\n[[models]]\nname = \"mlp-server\"\nzoo = \"mlp\"\nweights = {:?}\nscenario = \"server\"\n\n[scenario]\nkind = \"offline\"\nstreams = 2\nmin_duration_ms = 200\ntarget_qps = 500\nlatency_bound_ms = 100\nmin_queries = 120\n\n[[gates]]\nname = \"load\"\nmin_items_per_s = 1\n\n[[gates]]\nname = \"rate\"\nmodels = [\"mlp-server\"]\nmax_p99_ms_at_rate = 100\n",
        common::weights("mlp")
    );
    let suite = common::write_suite(d, r#"["tract-cpu"]"#, "[16]", &["mlp"], &extra);
    let o = run_suite(d, &suite);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    let run_dir = only_run_dir(d);
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    let offline = records.iter().find(|r| r.model == "mlp").unwrap();
    assert_eq!(
        (offline.scenario.as_str(), offline.offline_streams, offline.offline_duration_ms),
        ("offline", Some(2), Some(200))
    );
    let items = offline.offline_items.unwrap();
    assert!(items > 0 && items % 16 == 0, "whole batches: {items}");
    // Items per second over at least the 200 ms the streams ran: at most items / 0.2 s.
    let per_s = offline.offline_items_per_s.unwrap();
    assert!(per_s > 0.0 && per_s <= items as f64 / 0.2 + 1e-6, "{per_s} from {items}");
    let server = records.iter().find(|r| r.model == "mlp-server").unwrap();
    assert_eq!(server.scenario, "server");
    assert_eq!(
        (server.server_target_qps, server.server_latency_bound_ms, server.server_percentile),
        (Some(500.0), Some(100.0), Some(99.0))
    );
    assert!(server.server_queries.unwrap() >= 120);
    // A query takes at least what a single-stream run takes (the fastest sample).
    let fastest = *server.samples_ns.iter().min().unwrap();
    let at = server.server_latency_at_target_ns.unwrap();
    assert!(at as f64 >= fastest as f64 * 0.5, "p99 {at} ns vs fastest run {fastest} ns");
    assert_eq!(server.server_bound_met, Some(at <= 100_000_000));
    // The search stays below one session's ceiling (1 / median) and names its probes.
    let ceiling = 1e9 / server.latency_median_ns.unwrap();
    let max = server.server_max_qps.unwrap();
    assert!(max > 0.0 && max <= ceiling * (1.0 + 1e-9), "{max} vs ceiling {ceiling}");
    let probes = server.server_search.as_deref().unwrap();
    assert!(probes.contains(" qps: ") && (probes.contains(" ok") || probes.contains(" over")), "{probes}");
    // The report shows the figures; the gates pass on them, and fail when they cannot be met.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        md.contains("offline items/s") && md.contains("server p@rate (ms)") && md.contains("max qps in bound"),
        "{md}"
    );
    let copy = std::fs::read_to_string(run_dir.join("suite.toml")).unwrap();
    std::fs::write(
        run_dir.join("suite.toml"),
        copy.replace("min_items_per_s = 1", "min_items_per_s = 1e12")
            .replace("max_p99_ms_at_rate = 100", "max_p99_ms_at_rate = 0.000001"),
    )
    .unwrap();
    let o = qbench(d, &["check", run_dir.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = c["checks"].as_array().unwrap();
    let verdict = |check: &str, case: &str| {
        checks
            .iter()
            .find(|x| x["check"] == check && x["case"].as_str().unwrap().starts_with(case))
            .map(|x| x["verdict"].as_str().unwrap().to_string())
    };
    assert_eq!(verdict("min_items_per_s", "mlp /").as_deref(), Some("fail"), "{c}");
    assert_eq!(verdict("max_p99_ms_at_rate", "mlp-server").as_deref(), Some("fail"), "{c}");
    let offline_check = checks
        .iter()
        .find(|x| x["check"] == "min_items_per_s" && x["case"].as_str().unwrap().starts_with("mlp /"))
        .unwrap();
    assert!(offline_check["numbers"].as_str().unwrap().contains("offline (2 stream(s)) items/s"), "{offline_check}");
}

/// The conv layers of the zoo CNN do most of its work on either engine; `profile` must say so
/// from the engines' own per-op times, and its parts must add up to about a whole run.
#[test]
fn profile_times_the_cnn_op_by_op_on_both_backends_and_puts_explains_error_beside_each_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let suite = quant_suite(d, r#"["f32", "int8-pc-sym"]"#, "");
    let text = std::fs::read_to_string(&suite).unwrap().replace("[100]", "[32]");
    std::fs::write(&suite, text).unwrap();
    let o = qbench(d, &["run", suite.to_str().unwrap(), "--out", "out", "-q", "--filter", "model=cnn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run_dir = only_run_dir(d);
    let records = read_records(&run_dir.join("records.jsonl")).unwrap();
    for backend in ["tract-cpu", "candle-cpu"] {
        let r = records.iter().find(|r| r.backend == backend && r.scheme == "f32").unwrap();
        let o = qbench(d, &["profile", run_dir.to_str().unwrap(), &r.case_index.to_string(), "--runs", "15"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let md = String::from_utf8_lossy(&o.stdout).into_owned();
        let file = std::fs::read_to_string(run_dir.join(format!("profile-case-{}.md", r.case_index))).unwrap();
        assert_eq!(format!("{file}\n"), md, "printed as written");
        // The by-layer table: conv1 and conv2 together hold most of the time.
        let share = |layer: &str| -> f64 {
            let line = md
                .lines()
                .find(|l| l.starts_with(&format!("| {layer} | ")))
                .unwrap_or_else(|| panic!("{layer} in {md}"));
            line.split('|').nth(3).unwrap().trim().trim_end_matches('%').parse().unwrap()
        };
        assert!(share("conv1") + share("conv2") > 50.0, "{backend}: {md}");
        // The ops' medians add up to within a factor of two of a plain run's median.
        let line = md.lines().find(|l| l.starts_with("The ops add up to")).unwrap();
        let pct: f64 = line.split('(').nth(1).unwrap().split('%').next().unwrap().parse().unwrap();
        assert!((50.0..=200.0).contains(&pct), "{backend}: {line}");
        assert!(run_dir.join(format!("charts/profile-case-{}.svg", r.case_index)).is_file());
    }
    // After explain, the quantized case's profile shows each layer's error beside its time.
    let int8 = records.iter().find(|r| r.backend == "candle-cpu" && r.scheme == "int8-pc-sym").unwrap();
    let i = int8.case_index.to_string();
    assert!(qbench(d, &["explain", run_dir.to_str().unwrap(), &i, "--items", "50"]).status.success());
    let o = qbench(d, &["profile", run_dir.to_str().unwrap(), &i, "--runs", "5"]);
    let md = String::from_utf8_lossy(&o.stdout).into_owned();
    let conv1 = md.lines().find(|l| l.starts_with("| conv1 | ")).unwrap();
    assert!(conv1.matches(" dB").count() == 0 && conv1.split('|').nth(4).unwrap().contains(" / "), "{conv1}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("median time per op"), "report.html shows the profile chart");
    // A case whose engine exposes no per-op times says which do.
    let o = qbench(d, &["profile", run_dir.to_str().unwrap(), "999"]);
    assert_clean_error(&o, &["case 999 is not in"]);
}
