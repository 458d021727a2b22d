//! ONNX Runtime (feature `ort`) as a third engine and an independent reference: its f32 logits
//! against tract's and candle's on every test image, what it ran as its own profile reports it
//! (integer kernels only where the artifact asks for integers, and ONNX Runtime's own fusions,
//! which no artifact names), its intermediate values against tract's, and a missing or wrong
//! library refused with how to get it. Needs ONNX Runtime's library: `scripts/test` sources
//! `scripts/ort-env.sh`, which fetches the pinned wheel and sets ORT_DYLIB_PATH.
#![cfg(feature = "ort")]

mod common;

use std::process::Command;

use qbench::backend::{BackendId, Capture, MODEL_OUTPUT};
use qbench::data::load_idx;
use qbench::measure::eval;
use qbench::model::{onnx, Reference};
use qbench::quant::Variant;
use qbench::record::{read_records, CaseStatus, Record};
use qbench::zoo::ZooModelId;

/// The library the tests use; a test run without it fails here, saying how to get it (a check
/// with nothing to check is not a pass).
fn library() -> std::path::PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH is not set: run the tests through `bash scripts/test`, or `. scripts/ort-env.sh` first",
    );
    std::path::PathBuf::from(path)
}

/// Logits of `variant` on `backend` for all `n` items of `input`, in batches of `batch`.
fn all_logits(backend: BackendId, variant: &Variant, input: &[f32], n: usize, batch: usize) -> Vec<f32> {
    let mut p = backend.create(0).prepare(variant, batch).unwrap_or_else(|e| panic!("{backend}: {e}"));
    let per_item = input.len() / n;
    let mut out = Vec::new();
    for chunk in input.chunks(per_item * batch) {
        p.session.set_input(chunk).unwrap();
        p.session.run().unwrap();
        out.extend(p.session.output().unwrap());
    }
    out
}

#[test]
fn f32_on_ort_matches_tract_and_candle_on_all_10k_images_for_both_zoo_models() {
    library();
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let n = data.len();
    assert_eq!(n, 10_000);
    let input = data.batch_f32(0, n, n);
    let dir = tempfile::tempdir().unwrap();
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let path = dir.path().join(format!("{}.onnx", zoo.name()));
        std::fs::write(&path, onnx::export(zoo.name(), zoo, &reference.tensors).unwrap()).unwrap();
        let variant = Variant::f32_reference(&reference, path);
        let ort = all_logits(BackendId::ORT_CPU, &variant, &input, n, 500);
        let tract = all_logits(BackendId::TRACT_CPU, &variant, &input, n, 500);
        let candle = all_logits(BackendId::CANDLE_CPU, &variant, &input, n, 500);
        assert_eq!(ort.len(), n * 10);
        let (ort_top1, tract_top1) = (eval::top1(&ort, 10), eval::top1(&tract, 10));
        let differ = ort_top1.iter().zip(&tract_top1).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{}: ort and tract disagree on {differ} of {n} top-1 classes", zoo.name());
        for (other, logits) in [("tract-cpu", &tract), ("candle-cpu", &candle)] {
            let ag = eval::agreement(&ort, logits, 10);
            assert!(ag.max_abs_diff <= 1e-4, "{}: ort vs {other}: max |Δlogit| {}", zoo.name(), ag.max_abs_diff);
        }
        // Not trivially equal (all zeros): the predictions are a trained model's.
        let acc = eval::accuracy(&ort_top1, data.labels());
        assert!(acc > 0.85, "{}: ort top-1 {acc}", zoo.name());
    }
}

/// Static int8 is one arithmetic in three forms: tract runs the integer form (QuantizeLinear,
/// ConvInteger/MatMulInteger, output quantize-dequantize), ONNX Runtime the QDQ form it fuses
/// into QLinearConv/QGemm, candle fake-quantizes in f32. Their logits land on the same output
/// grid: they may differ where a requantization rounds a value that sits on a half step
/// differently (int32 bias added before or after the scaling), never by more.
#[test]
fn static_int8_is_the_same_arithmetic_on_ort_tract_and_candle() {
    library();
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let (calibration, test) = (data.slice(0..500), data.slice(500..2500));
    let n = test.len();
    let input = test.batch_f32(0, n, n);
    let dir = tempfile::tempdir().unwrap();
    for zoo in ZooModelId::ALL.iter().copied() {
        let kind = qbench::model::ModelKind::Zoo { zoo, weights: common::weights(zoo.name()) };
        let model = qbench::model::LoadedModel::load(zoo.name(), &kind, dir.path()).unwrap();
        let cal = qbench::run::calibrate(&model, &calibration, 99.99, 0, 100).unwrap();
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let plan = qbench::quant::Plan::uniform(
            zoo,
            qbench::quant::SchemeId::Int8Static(qbench::quant::calibrate::Calibrator::MinMax),
        );
        let variant = qbench::quant::apply(&plan, &reference, dir.path(), Some(&cal)).unwrap();
        assert!(variant.onnx_qdq.is_some(), "{}: a static variant has a QDQ form", zoo.name());
        let (_, params) = qbench::model::stored::load_model(&variant.candle_artifact, zoo).unwrap();
        let (last, _) = *zoo.weighted_layers().last().unwrap();
        let qbench::model::stored::InputQuant::Static { output, .. } = params[last] else {
            panic!("{}: {last} is not static", zoo.name())
        };
        let ort = all_logits(BackendId::ORT_CPU, &variant, &input, n, 100);
        let tract = all_logits(BackendId::TRACT_CPU, &variant, &input, n, 100);
        let candle = all_logits(BackendId::CANDLE_CPU, &variant, &input, n, 100);
        for (name, logits) in [("ort", &ort), ("tract", &tract), ("candle", &candle)] {
            // Every logit is on the last layer's output grid.
            let off = logits.iter().map(|v| (v / output.scale - (v / output.scale).round()).abs()).fold(0f32, f32::max);
            assert!(off < 1e-3, "{} {name}: a logit {off} steps off the output grid", zoo.name());
        }
        for (a, b, x, y) in [("ort", "tract", &ort, &tract), ("candle", "tract", &candle, &tract)] {
            let steps: Vec<f32> = x.iter().zip(y.iter()).map(|(p, q)| ((p - q) / output.scale).abs().round()).collect();
            let differing = steps.iter().filter(|&&s| s > 0.0).count() as f64 / steps.len() as f64;
            let ag = eval::agreement(x, y, 10);
            assert!(
                differing <= 0.005 && ag.top1 >= 0.995,
                "{}: {a} vs {b}: {:.2}% of logits differ (at most {} steps), top-1 agreement {}",
                zoo.name(),
                100.0 * differing,
                steps.iter().fold(0f32, |m, &s| m.max(s)),
                ag.top1
            );
        }
        let acc = eval::accuracy(&eval::top1(&ort, 10), test.labels());
        assert!(acc > 0.85, "{}: static int8 top-1 on ort {acc}", zoo.name());
    }
}

#[test]
fn intermediate_values_on_ort_match_tract_layer_by_layer() {
    library();
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zoo = ZooModelId::Cnn;
    let reference = Reference::load("cnn", zoo, &common::weights("cnn")).unwrap();
    let path = dir.path().join("cnn.onnx");
    std::fs::write(&path, onnx::export("cnn", zoo, &reference.tensors).unwrap()).unwrap();
    let variant = Variant::f32_reference(&reference, path);
    let input = data.batch_f32(0, 8, 8);
    for capture in [Capture::Outputs, Capture::Inputs] {
        let ort = BackendId::ORT_CPU.create(0).layer_session(&variant, 8, capture).unwrap().run(&input).unwrap();
        let tract = BackendId::TRACT_CPU.create(0).layer_session(&variant, 8, capture).unwrap().run(&input).unwrap();
        let names: Vec<&str> = ort.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = tract.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, want, "{capture:?}");
        assert_eq!(names.len(), if capture == Capture::Outputs { 5 } else { 4 }, "{names:?}");
        for ((name, a), (_, b)) in ort.iter().zip(&tract) {
            assert_eq!(a.len(), b.len(), "{capture:?} {name}");
            let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-4, "{capture:?} {name}: max |Δ| {diff}");
            assert!(a.iter().any(|v| *v != 0.0), "{capture:?} {name}: all zero");
        }
        if capture == Capture::Outputs {
            // The last value is the model's output: the timed session's logits.
            assert_eq!(ort.last().unwrap().0, MODEL_OUTPUT);
            let logits = all_logits(BackendId::ORT_CPU, &variant, &input, 8, 8);
            assert_eq!(ort.last().unwrap().1, logits);
        }
    }
}

fn qbench(args: &[&str], env: &[(&str, Option<&str>)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qbench"));
    c.args(args);
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

fn suite(dir: &std::path::Path, schemes: &str, models: &[&str]) -> std::path::PathBuf {
    let path = common::write_suite(dir, "[\"tract-cpu\", \"ort-cpu\"]", "[1]", models, "[calibration]\nitems = 200\n");
    let text = std::fs::read_to_string(&path).unwrap().replace("schemes = [\"f32\"]", &format!("schemes = {schemes}"));
    std::fs::write(&path, text).unwrap();
    path
}

fn records(out: &std::path::Path) -> Vec<Record> {
    let run = std::fs::read_dir(out.join("t")).unwrap().next().unwrap().unwrap().path();
    read_records(&run.join("records.jsonl")).unwrap()
}

#[test]
fn what_ort_ran_comes_from_its_profile_integers_only_where_the_artifact_has_them() {
    let lib = library();
    let dir = tempfile::tempdir().unwrap();
    let s = suite(dir.path(), "[\"f32\", \"int8-pc-sym\", \"int8-dynamic\", \"int8-static-minmax\"]", &["mlp", "cnn"]);
    let out = dir.path().join("out");
    let o = qbench(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records = records(&out);
    let ort: Vec<&Record> = records.iter().filter(|r| r.backend == "ort-cpu").collect();
    assert_eq!(ort.len(), 8);
    let version = lib.file_name().unwrap().to_string_lossy().rsplit(".so.").next().unwrap().to_string();
    for r in &ort {
        let what = format!("{} {}", r.model, r.scheme);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        // The version the library reports, against the file's own name.
        assert!(r.engine_version.contains(&format!("ONNX Runtime {version}")), "{what}: {}", r.engine_version);
        let evidence = r.evidence.as_deref().unwrap();
        assert!(evidence.contains("ran (profiled): ") && evidence.contains("intra-op threads 1"), "{what}: {evidence}");
        assert!(evidence.contains("graph optimization level all"), "{what}: {evidence}");
        assert!(!r.heap_not_covered.is_empty(), "{what}: ONNX Runtime's C++ heap is not counted");
        let layers = if r.model == "mlp" { 3 } else { 4 };
        assert_eq!(r.layer_evidence.len(), layers, "{what}");
        assert!(r.layer_evidence.iter().all(|l| l.source.contains("ONNX Runtime's profile")), "{what}");
        // Each layer's node is found, and different layers are different nodes.
        let kernels: std::collections::HashSet<&str> = r.layer_evidence.iter().map(|l| l.kernel.as_str()).collect();
        assert_eq!(kernels.len(), layers, "{what}: {kernels:?}");
        // Which ops the artifact itself holds: what the file asks for, not what ran.
        let artifact = std::fs::read(r.artifact.as_deref().unwrap()).unwrap();
        let has = |op: &str| artifact.windows(op.len()).any(|w| w == op.as_bytes());
        let integer_in_file = has("MatMulInteger") || has("ConvInteger");
        let int8_layers = r.layer_evidence.iter().filter(|l| String::from(l.compute.clone()) == "int8").count();
        match r.scheme.as_str() {
            "int8-static-minmax" => {
                // Static int8 reaches ONNX Runtime in the QDQ form its own quantizer writes:
                // float ops between QuantizeLinear/DequantizeLinear, no integer op named in the
                // file, and ONNX Runtime fuses every layer into its int8 kernels.
                assert!(r.artifact.as_deref().unwrap().ends_with(".qdq.onnx"), "{what}: {:?}", r.artifact);
                assert!(!integer_in_file && !has("QLinearConv") && !has("QGemm"), "{what}");
                assert!(has("QuantizeLinear") && has("DequantizeLinear"), "{what}");
                assert_eq!(int8_layers, layers, "{what}: {:?}", r.layer_evidence);
                assert_eq!(r.realization, "native", "{what}");
                for l in &r.layer_evidence {
                    let fused = if l.layer.starts_with("conv") { "QLinearConv" } else { "QGemm" };
                    assert!(l.kernel.starts_with(fused), "{what}: {l:?}");
                }
            }
            "f32" | "int8-pc-sym" => {
                assert!(!integer_in_file, "{what}");
                assert_eq!(int8_layers, 0, "{what}: {:?}", r.layer_evidence);
                let want = if r.scheme == "f32" { "native" } else { "emulated" };
                assert_eq!(r.realization, want, "{what}");
            }
            _ => {
                assert!(integer_in_file, "{what}");
                assert_eq!(int8_layers, layers, "{what}: {:?}", r.layer_evidence);
                assert_eq!(r.realization, "native", "{what}");
                assert!(r.speedup_vs_f32.is_some(), "{what}: the paired speedup vs f32 is measured");
            }
        }
        if r.scheme == "int8-pc-sym" {
            // Weight-only int8: ONNX Runtime keeps the DequantizeLinear and runs it every time.
            for l in &r.layer_evidence {
                assert!(l.per_call.as_deref().is_some_and(|p| p.contains("DequantizeLinear")), "{what}: {l:?}");
            }
        }
        if r.scheme == "int8-dynamic" && r.model == "mlp" {
            // ONNX Runtime fuses the artifact's DynamicQuantizeLinear + MatMulInteger into one op
            // the file does not name: the evidence is the engine's, not the file's.
            assert!(!has("DynamicQuantizeMatMul"), "{what}");
            assert!(r.layer_evidence.iter().all(|l| l.kernel.starts_with("DynamicQuantizeMatMul")), "{what}");
        }
        if r.scheme == "int8-dynamic" && r.model == "cnn" {
            assert!(r.layer_evidence[0].kernel.starts_with("ConvInteger on CPUExecutionProvider"), "{what}");
        }
    }
    // The same artifacts on tract: ONNX Runtime's records are its own.
    for r in records.iter().filter(|r| r.backend == "tract-cpu") {
        assert!(!r.evidence.as_deref().unwrap().contains("ONNX Runtime"), "{} {}", r.model, r.scheme);
    }
}

#[test]
fn without_its_library_ort_cpu_says_how_to_get_it_and_its_cases_are_skipped() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let list = qbench(&["list", "backends"], &[("ORT_DYLIB_PATH", None)]);
    let text = String::from_utf8_lossy(&list.stdout);
    let line = text.lines().find(|l| l.trim_start().starts_with("ort-cpu")).unwrap();
    assert!(line.contains("[not available here:") && line.contains("scripts/ort-env.sh"), "{line}");
    let ready = qbench(&["list", "backends"], &[]);
    let text = String::from_utf8_lossy(&ready.stdout);
    let line = text.lines().find(|l| l.trim_start().starts_with("ort-cpu")).unwrap();
    assert!(line.contains("[ready: ONNX Runtime 1."), "{line}");

    let s = suite(dir.path(), "[\"f32\"]", &["mlp"]);
    // The real library cut to 1 MiB: dlopen would die of SIGBUS mapping it.
    let cut = dir.path().join("libonnxruntime-cut.so");
    std::fs::write(&cut, &std::fs::read(library()).unwrap()[..1 << 20]).unwrap();
    // Another ELF library, which is not ONNX Runtime.
    let libz =
        ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/aarch64-linux-gnu/libz.so.1"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("zlib is on every Debian machine");
    // An ELF library that says it is ONNX Runtime 1.32.0 but whose API table is NULL: the ort
    // crate panics on it, which must be an error.
    let fake_c = dir.path().join("fake.c");
    std::fs::write(
        &fake_c,
        "#include <stddef.h>\n\
         typedef struct { const void *(*GetApi)(unsigned); const char *(*GetVersionString)(void); } OrtApiBase;\n\
         static const void *get_api(unsigned v) { (void)v; return NULL; }\n\
         static const char *version(void) { return \"1.32.0\"; }\n\
         static const OrtApiBase base = { get_api, version };\n\
         const OrtApiBase *OrtGetApiBase(void) { return &base; }\n",
    )
    .unwrap();
    let fake = dir.path().join("libfake-onnxruntime.so");
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&fake).arg(&fake_c).status().unwrap();
    assert!(cc.success(), "cc could not build the fake library");
    for (i, (env, says)) in [
        (None, "ORT_DYLIB_PATH is not set"),
        (Some(""), "ORT_DYLIB_PATH is set but empty"),
        (Some("/etc/passwd"), "it is not an ELF file"),
        (Some(cut.to_str().unwrap()), "it is cut short"),
        (Some(libz), "cannot load ONNX Runtime from"),
        (Some(fake.to_str().unwrap()), "is not a working ONNX Runtime library"),
        (Some("/nonexistent/libonnxruntime.so"), "No such file"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("out-{i}"));
        let o = qbench(
            &["run", s.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"],
            &[("ORT_DYLIB_PATH", env)],
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(o.status.code(), Some(0), "{env:?}: {stderr}");
        let records = records(&out);
        let ort: Vec<&Record> = records.iter().filter(|r| r.backend == "ort-cpu").collect();
        assert_eq!(ort.len(), 1);
        assert_eq!(ort[0].status, CaseStatus::Skipped);
        let why = ort[0].error.as_deref().unwrap();
        assert!(why.contains(says) && why.contains("scripts/ort-env.sh"), "{why}");
        // tract's case still ran.
        assert!(records.iter().any(|r| r.backend == "tract-cpu" && r.status == CaseStatus::Ok));
    }
}
