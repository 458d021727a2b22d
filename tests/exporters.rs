//! Snapshot tests of every exporter, on fixed records: the Markdown table, CSV, JSON, JSONL,
//! the HTML page, a chart's SVG, the gates' Markdown and JUnit XML, and `compare`. A change in
//! any output shows up as a diff to review (`cargo insta review`, or delete the snapshot and
//! run again). Parquet is checked by reading it back into the same frame.

use std::path::Path;

use qbench::record::{CaseStatus, Record};

/// Latency samples around `median_ns`, deterministic (an LCG), with a 2% spread.
fn samples(median_ns: u64, n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let jitter = (s >> 40) % (median_ns / 25).max(1);
            median_ns - median_ns / 50 + jitter
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn case(
    index: usize,
    model: &str,
    scheme: &str,
    backend: &str,
    median_ns: u64,
    top1: f64,
    bytes: u64,
    bits: f64,
) -> Record {
    let mut r = Record {
        run_id: "20261127T120000Z".into(),
        case_index: index,
        suite: "snapshot <suite>".into(),
        suite_sha256: "ab".repeat(32),
        suite_file: "/suites/snapshot.toml".into(),
        model: model.into(),
        zoo: model.into(),
        model_sha256: Some("cd".repeat(32)),
        dataset: "fashion-mnist-test".into(),
        dataset_sha256: "ef".repeat(32),
        scheme: scheme.into(),
        backend: backend.into(),
        device: "cpu".into(),
        threads: 1,
        batch: 32,
        status: CaseStatus::Ok,
        artifact: Some(format!("artifacts/{model}-{scheme}.onnx")),
        artifact_bytes: Some(bytes),
        bits_per_weight: Some(bits),
        realization: if scheme == "f32" { "native".into() } else { "emulated".into() },
        expected_realization: if scheme == "f32" { "native".into() } else { "emulated".into() },
        layer_evidence: vec![qbench::backend::LayerEvidence::observed(
            "fc1",
            qbench::quant::SchemeId::from_name(scheme).unwrap(),
            qbench::backend::StoredWeight::named(if scheme == "f32" { "f32" } else { "i8" }),
            qbench::backend::Compute::F32,
            if backend == "tract-cpu" { "OptMatMul avx512_mmm_f32_16x12" } else { "Linear F32" },
            "cpu",
            true,
            None,
            "snapshot",
        )],
        parameters: 206_922,
        prepare_ns: Some(2_500_000),
        first_run_ns: Some(900_000),
        cold_start_ns: Some(3_400_000),
        noise_probe_ns: Some(1_000_000.0 + 5_000.0 * index as f64),
        prepare_peak_rss_bytes: Some(9 << 20),
        run_peak_rss_bytes: Some(1 << 19),
        weights_bytes: Some(bytes),
        warmup_iters: 10,
        latency_ci_target_pct: 1.0,
        latency_ci_target_met: Some(index != 3),
        eval_items: Some(10_000),
        top1_accuracy: Some(top1),
        top1_ci_low: Some(top1 - 0.006),
        top1_ci_high: Some(top1 + 0.0055),
        reference_backend: "candle-cpu".into(),
        ref_top1_agreement: Some(if scheme == "f32" { 1.0 } else { 0.9975 }),
        ref_max_abs_logit_diff: Some(if scheme == "f32" { 0.0 } else { 0.25 }),
        ref_sqnr_db: if scheme == "f32" { None } else { Some(31.5) },
        ref_kl_mean: Some(if scheme == "f32" { 0.0 } else { 2.5e-4 }),
        timestamp: format!("2026-11-27T12:00:{:02}Z", index),
        qbench_version: "0.1.0".into(),
        git_commit: "0123456789abcdef0123".into(),
        git_dirty: "false".into(),
        candle_version: "0.11.1".into(),
        tract_version: "0.23.9".into(),
        engine_version: if backend == "tract-cpu" { "tract-onnx 0.23.9".into() } else { "candle-core 0.11.1".into() },
        rustc_version: "rustc 1.95.0".into(),
        cpu_model: "Test CPU".into(),
        cpu_flags: vec!["avx2".into(), "fma".into()],
        logical_cores: 2,
        ..Default::default()
    };
    r.set_latency(samples(median_ns, 200, index as u64 + 1), 32);
    r
}

fn fixture() -> Vec<Record> {
    let mut records = vec![
        case(0, "cnn", "f32", "candle-cpu", 5_800_000, 0.9052, 828_280, 32.0),
        case(1, "cnn", "f32", "tract-cpu", 4_800_000, 0.9052, 828_820, 32.0),
        case(2, "cnn", "int8-pc-sym", "candle-cpu", 6_600_000, 0.9051, 209_152, 8.05),
        case(3, "cnn", "int8-pc-sym", "tract-cpu", 4_460_000, 0.9051, 210_260, 8.05),
    ];
    let skipped = Record {
        status: CaseStatus::Skipped,
        error: Some("tract 0.23 has no bfloat16 datum type, so it cannot load BFLOAT16 ONNX tensors".into()),
        realization: "unsupported".into(),
        ..Default::default()
    }
    .with_identity_of(&case(4, "cnn", "bf16", "tract-cpu", 1, 0.0, 0, 0.0));
    let failed = Record {
        status: CaseStatus::Failed,
        error: Some("weights file <broken>.safetensors is not a valid safetensors file & cannot load".into()),
        ..Default::default()
    }
    .with_identity_of(&case(5, "broken <model>", "f32", "candle-cpu", 1, 0.0, 0, 0.0));
    records.push(skipped);
    records.push(failed);
    records
}

/// Copies the identity and provenance fields, leaving the measurements of `self`.
trait WithIdentity {
    fn with_identity_of(self, other: &Record) -> Record;
}

impl WithIdentity for Record {
    fn with_identity_of(self, o: &Record) -> Record {
        Record {
            run_id: o.run_id.clone(),
            case_index: o.case_index,
            suite: o.suite.clone(),
            suite_sha256: o.suite_sha256.clone(),
            suite_file: o.suite_file.clone(),
            model: o.model.clone(),
            zoo: o.zoo.clone(),
            dataset: o.dataset.clone(),
            dataset_sha256: o.dataset_sha256.clone(),
            scheme: o.scheme.clone(),
            backend: o.backend.clone(),
            device: o.device.clone(),
            threads: o.threads,
            batch: o.batch,
            reference_backend: o.reference_backend.clone(),
            timestamp: o.timestamp.clone(),
            qbench_version: o.qbench_version.clone(),
            git_commit: o.git_commit.clone(),
            git_dirty: o.git_dirty.clone(),
            candle_version: o.candle_version.clone(),
            tract_version: o.tract_version.clone(),
            rustc_version: o.rustc_version.clone(),
            cpu_model: o.cpu_model.clone(),
            cpu_flags: o.cpu_flags.clone(),
            logical_cores: o.logical_cores,
            ..self
        }
    }
}

fn write_run(dir: &Path, records: &[Record]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut sink = qbench::report::jsonl::RecordSink::open(&dir.join("records.jsonl")).unwrap();
    for r in records {
        sink.append(r).unwrap();
    }
    let env = serde_json::json!({"qbench_version": "0.1.0", "cpu_model": "Test CPU", "threads": records[0].threads});
    std::fs::write(dir.join("environment.json"), serde_json::to_vec_pretty(&env).unwrap()).unwrap();
    std::fs::write(dir.join("suite.toml"), "name = \"snapshot\"\ndescription = \"fixture <records> & more\"\n")
        .unwrap();
}

#[test]
fn markdown_table() {
    insta::assert_snapshot!("markdown", qbench::report::markdown::render(&fixture()));
}

/// A run with more threads than cores says so in the provenance line, with the fix; one
/// within the cores does not.
#[test]
fn markdown_flags_oversubscribed_threads() {
    let plain = qbench::report::markdown::render(&fixture());
    assert!(!plain.contains("OVERSUBSCRIBED"), "{plain}");
    let mut records = fixture();
    for r in &mut records {
        r.threads = 8;
    }
    let text = qbench::report::markdown::render(&records);
    let line = text.lines().find(|l| l.starts_with("qbench ")).expect("a provenance line");
    assert!(line.contains("threads: 8."), "{line}");
    assert!(
        line.contains("OVERSUBSCRIBED: 8 threads on 2 logical cores") && line.contains("threads to at most 2."),
        "{line}"
    );
}

/// Without labels there is no top-1: the note says what the rows were scored on instead.
#[test]
fn markdown_says_when_outputs_have_no_labels() {
    assert!(qbench::report::markdown::render(&fixture()).contains("Top-1 on fashion-mnist-test (10000 items), ±"));
    let mut records = fixture();
    for r in &mut records {
        (r.top1_accuracy, r.top1_ci_low, r.top1_ci_high) = (None, None, None);
    }
    let text = qbench::report::markdown::render(&records);
    assert!(!text.contains("Top-1 on"), "{text}");
    assert!(
        text.contains("Outputs of fashion-mnist-test (10000 items) (no labels: scored against the reference only); latency median"),
        "{text}"
    );
}

#[test]
fn csv_json_jsonl_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture();
    write_run(dir.path(), &records);
    qbench::report::table::write_all(dir.path(), &records).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    insta::assert_snapshot!("records_csv", read("records.csv"));
    insta::assert_snapshot!("records_json", read("records.json"));
    insta::assert_snapshot!("records_jsonl", read("records.jsonl"));
    // Parquet is binary: it must read back into exactly the frame that was written.
    let back = qbench::report::table::read_parquet(&dir.path().join("records.parquet")).unwrap();
    let frame = qbench::report::table::frame(&records).unwrap();
    assert_eq!((back.height(), back.columns.len()), (6, frame.columns.len()));
    assert_eq!(back, frame, "parquet read back differs");
    // CSV and JSON hold the same cells: every CSV field parses back to the table's value.
    let mut csv = csv::Reader::from_path(dir.path().join("records.csv")).unwrap();
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, frame.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
    let json: Vec<serde_json::Value> = serde_json::from_str(&read("records.json")).unwrap();
    for (i, row) in csv.records().enumerate() {
        let row = row.unwrap();
        for (c, cell) in frame.columns.iter().zip(row.iter()) {
            use qbench::report::table::Values;
            let ok = match &c.values {
                Values::Int(v) => v[i] == cell.parse().ok() && json[i][&c.name].as_i64() == v[i],
                Values::Float(v) => v[i] == cell.parse().ok() && json[i][&c.name].as_f64() == v[i],
                Values::Bool(v) => v[i] == cell.parse().ok() && json[i][&c.name].as_bool() == v[i],
                Values::Text(v) => {
                    v[i].as_deref().unwrap_or_default() == cell && json[i][&c.name].as_str() == v[i].as_deref()
                }
            };
            assert!(ok, "row {i}, column {}: CSV {cell:?}, JSON {}, table {:?}", c.name, json[i][&c.name], c.values);
        }
    }
}

/// The page with our fixed CSS/JS and the SVG bodies cut out (the chart has its own snapshot).
#[test]
fn html_page() {
    let records = fixture();
    let charts = qbench::report::chart::from_records(&records);
    let env = serde_json::json!({"qbench_version": "0.1.0", "cpu_flags": ["avx2", "fma"], "memory_bytes": null});
    let gates = [qbench::report::html::GateRow {
        gate: "size <gate>".into(),
        case: "cnn / f32 / candle-cpu / batch 32".into(),
        metric: "max_size_bytes".into(),
        verdict: "FAIL".into(),
        message: "size 828280 bytes > maximum 500000 bytes".into(),
    }];
    let page =
        qbench::report::html::render(&records, Some(&env), &charts, "fixture <records> & more", &gates, &[], &[])
            .unwrap();
    let cut = |text: &str, open: &str, close: &str| {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(open) {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            let end = after.find(close).unwrap() + close.len();
            out.push_str(&format!("{open}…{close}"));
            rest = &after[end..];
        }
        out + rest
    };
    let page = cut(&cut(&cut(&page, "<style>", "</style>"), "<script>", "</script>"), "<svg", "</svg>");
    insta::assert_snapshot!("report_html", page);
}

#[test]
fn tradeoff_chart_svg() {
    let charts = qbench::report::chart::from_records(&fixture());
    let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["tradeoff-cnn-b32", "latency-cnn-b32", "size-cnn"]);
    insta::assert_snapshot!("chart_tradeoff_svg", charts[0].svg().unwrap());
}

#[test]
fn gates_markdown_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture();
    let suite = "name = \"snapshot\"\nschemes = [\"f32\", \"int8-pc-sym\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [32]\n\n[[datasets]]\nname = \"d\"\nformat = \"idx\"\nimages = \"i\"\nlabels = \"l\"\n\n[[models]]\nname = \"cnn\"\nzoo = \"cnn\"\nweights = \"w\"\n\n[[gates]]\nname = \"int8 keeps accuracy\"\nschemes = [\"int8-*\"]\nmax_delta_top1_pts = 0.5\nmin_sqnr_db = 35.0\n\n[[gates]]\nname = \"size\"\nmax_size_bytes = 500000\n";
    let gates = qbench::suite::gates_of(Path::new("suite.toml"), suite).unwrap();
    let (_, text) = qbench::gate::check_run(dir.path(), "snapshot", &gates, &records, None).unwrap();
    insta::assert_snapshot!("gates_md", text);
    insta::assert_snapshot!("gates_xml", std::fs::read_to_string(dir.path().join("gates.xml")).unwrap());
}

#[test]
fn compare_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = fixture();
    // Run b: the tract int8 case 30% slower, the rest the same samples.
    let b: Vec<Record> = a
        .iter()
        .cloned()
        .map(|mut r| {
            r.run_id = "20261127T130000Z".into();
            if r.case_index == 3 {
                let slower: Vec<u64> = r.samples_ns.iter().map(|s| s * 13 / 10).collect();
                r.set_latency(slower, 32);
            }
            r
        })
        .collect();
    write_run(&dir.path().join("a"), &a);
    write_run(&dir.path().join("b"), &b);
    let runs = [dir.path().join("a"), dir.path().join("b")]
        .iter()
        .map(|d| qbench::report::compare::load_run(d).unwrap())
        .collect::<Vec<_>>();
    let text = qbench::report::compare::render(&runs, 0.02, false).unwrap();
    let text = text.replace(&dir.path().display().to_string(), "<tmp>");
    assert!(text.contains("slower"), "{text}");
    insta::assert_snapshot!("compare", text);
}

/// `qbench report` on a run folder: every output is written, and a damaged layer chart left by
/// `qbench explain` is a clear error naming the file and the fix, not a panic.
#[test]
fn write_outputs_writes_everything_and_names_a_damaged_chart() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture();
    write_run(dir.path(), &records);
    let outputs = qbench::report::write_outputs(dir.path(), &records).unwrap();
    for f in ["report.md", "report.html", "records.parquet", "records.csv", "records.json", "charts/size-cnn.png"] {
        assert!(outputs.files.contains(&dir.path().join(f)), "{f} not reported as written");
        assert!(dir.path().join(f).is_file(), "{f} not written");
    }
    // The PNG is a real image of the chart's size.
    let png = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(dir.path().join("charts/size-cnn.png")).unwrap(),
    ));
    let info = png.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (860, 520));

    std::fs::write(dir.path().join("charts/layers-case-2.json"), b"{ not json").unwrap();
    let e = qbench::report::write_outputs(dir.path(), &records).unwrap_err().to_string();
    assert!(e.contains("layers-case-2.json") && e.contains("run qbench explain again"), "{e}");
}
