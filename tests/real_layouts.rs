//! Models laid out as people publish them (fixtures from scripts/make-layout-fixtures.py): long
//! audio items under a bounded reference pass, and an opset-11 graph whose one weight three
//! layers share.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use qbench::record::{read_records, CaseStatus, Record};

fn reference(name: &str) -> PathBuf {
    common::repo().join("tests/reference").join(name)
}

fn qbench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbench")).args(args).current_dir(dir).output().unwrap()
}

const MEASURE: &str = "[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 30\n";

/// The engines of this build that load an ONNX artifact.
fn onnx_backends() -> &'static str {
    if cfg!(feature = "ort") {
        "[\"tract-cpu\", \"ort-cpu\"]"
    } else {
        "[\"tract-cpu\"]"
    }
}

/// Runs `suite` (written to `dir`) and returns its records; the run must exit 0.
fn run_suite(dir: &Path, suite: &str) -> Vec<Record> {
    let path = dir.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = qbench(dir, &["run", path.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.join("out/t")).unwrap().next().unwrap().unwrap().path();
    read_records(&run.join("records.jsonl")).unwrap()
}

/// The f32 graph qbench normalizes from `suite`'s first model computes `want`'s values (numpy's
/// forward pass) from `x`'s items, on tract and (with the feature) ONNX Runtime, at each batch.
fn assert_f32_matches_numpy(
    dir: &Path,
    suite: &str,
    x: &str,
    want: &str,
    per_item: usize,
    batches: &[usize],
    tolerance: f32,
) {
    let path = dir.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let s = qbench::suite::Suite::load(&path).unwrap();
    let loaded = qbench::model::LoadedModel::load(&s.models[0].name, &s.models[0].kind, dir).unwrap();
    let variant = qbench::quant::f32_variant(&loaded);
    let data = qbench::data::load_npy("x", &reference(x), None, None).unwrap();
    let want = qbench::data::load_npy("y", &reference(want), None, None).unwrap();
    let mut engines = vec![qbench::backend::BackendId::TRACT_CPU];
    if cfg!(feature = "ort") {
        engines.push(qbench::backend::BackendId::from_name("ort-cpu").unwrap());
    }
    for b in engines {
        for &batch in batches {
            let mut p = b.create(0).prepare(&variant, batch).unwrap();
            let got = qbench::measure::eval::run_dataset(p.session.as_mut(), b, &data, batch, per_item).unwrap();
            let worst = got.iter().zip(&want.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < tolerance, "{} batch {batch} vs numpy: {worst}", b.name());
        }
    }
}

/// Peak resident set of the largest child process this test waited for, from the kernel's own
/// accounting (`getrusage(RUSAGE_CHILDREN)`), in bytes.
fn children_peak_rss_bytes() -> u64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed value it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn sixteen_long_audio_items_run_under_a_bounded_reference_batch_and_1_gb_resident() {
    let dir = tempfile::tempdir().unwrap();
    // One second at 44.1 kHz per item: tones of 16 pitches, so the classes differ.
    let samples = 44_100;
    let values: Vec<f32> = (0..16 * samples)
        .map(|i| {
            let (item, t) = (i / samples, (i % samples) as f32 / 44_100.0);
            (2.0 * std::f32::consts::PI * (110.0 + 55.0 * item as f32) * t).sin() * 0.5
        })
        .collect();
    let npy = dir.path().join("audio.npy");
    std::fs::write(&npy, qbench::data::encode_npy_f32(&[16, 1, samples], &values)).unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-dynamic\", \"int8-static-minmax\"]\nbackends = {}\nbatch_sizes = [1, 4]\n{MEASURE}\n[calibration]\nitems = 4\n\n[[datasets]]\nname = \"audio\"\nformat = \"npy\"\ninputs = {npy:?}\n\n[[models]]\nname = \"audio\"\npath = {:?}\ndataset = \"audio\"\n[[models.inputs]]\nname = \"audio\"\nshape = [\"batch\", 1, {samples}]\n",
        onnx_backends(),
        reference("audio-long.onnx"),
    );
    let records = run_suite(dir.path(), &suite);
    // The whole run, measured by the kernel: under 1 GB resident.
    let rss = children_peak_rss_bytes();
    eprintln!("peak resident set of the run: {} MiB", rss >> 20);
    assert!(rss < 1 << 30, "peak resident set of the run: {} MiB", rss >> 20);
    assert!(rss > 16 << 20, "a run that loads engines is not {rss} bytes: the figure is not the run's");
    // Every case, on every engine and batch, measured.
    let engines = if cfg!(feature = "ort") { 2 } else { 1 };
    assert_eq!(records.len(), 3 * 2 * engines);
    for r in &records {
        let what = format!("{} {} batch {}", r.scheme, r.backend, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        assert_eq!(r.eval_items, Some(12), "{what}");
        // The pass ran within 1 MiB of input (5 items of 176,400 bytes: more than the suite's
        // largest batch, 4), not at a fixed 500 padded from 12 items.
        let peak = r.reference_peak_heap_bytes.expect("the reference pass's heap is counted");
        eprintln!("{what}: reference pass batch {:?}, peak heap {} MiB", r.reference_batch, peak >> 20);
        assert!(peak < 512 << 20, "{what}: reference pass held {peak} bytes");
        assert_eq!(r.reference_batch, Some(5), "{what}");
    }
    // The report states the pass.
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let by = format!("computed by {} (batch 5, peak heap ", records[0].reference_backend);
    assert!(md.contains(&by), "{md}");
}

/// Initializers of an ONNX file: (name, data type, bytes).
fn initializers(path: &Path) -> Vec<(String, i32, usize)> {
    let proto = tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let opset = proto.opset_import.iter().find(|o| o.domain.is_empty()).map(|o| o.version);
    assert!(opset.is_some(), "{}", path.display());
    let g = proto.graph.unwrap();
    g.initializer.iter().map(|t| (t.name.clone(), t.data_type, t.raw_data.len())).collect()
}

fn opset(path: &Path) -> i64 {
    let proto = tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    proto.opset_import.iter().find(|o| o.domain.is_empty()).unwrap().version
}

#[test]
fn a_weight_three_layers_share_is_written_once_and_an_opset_11_graph_is_upgraded_where_a_scheme_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    // The engines read the opset-11 file as opset 11 means it (Softmax over every value after
    // its axis): their f32 outputs equal the numpy forward pass's. The quantized variants below
    // are then compared with this reference, so an upgrade that changed a meaning shows there.
    use qbench::backend::BackendId;
    use qbench::model::onnx_file::InputDecl;
    use qbench::model::{LoadedModel, ModelKind};
    let decl = InputDecl {
        name: "x".into(),
        item_shape: vec![32],
        fixed_batch: None,
        bound: Default::default(),
        dtype: None,
        constant: None,
        batch_axis: 0,
    };
    let kind = ModelKind::Onnx { path: reference("shared-opset11.onnx"), inputs: vec![decl], outputs: vec![] };
    let loaded = LoadedModel::load("tied", &kind, dir.path()).unwrap();
    let variant = qbench::quant::f32_variant(&loaded);
    let data = qbench::data::load_npy("x", &reference("shared-opset11.x.npy"), None, None).unwrap();
    let want = qbench::data::load_npy("scores", &reference("shared-opset11.scores.npy"), None, None).unwrap();
    let mut engines = vec![BackendId::TRACT_CPU];
    if cfg!(feature = "ort") {
        engines.push(BackendId::from_name("ort-cpu").unwrap());
    }
    for b in engines {
        let mut p = b.create(0).prepare(&variant, 8).unwrap();
        let got = qbench::measure::eval::run_dataset(p.session.as_mut(), b, &data, 8, 10).unwrap();
        let worst = got.iter().zip(&want.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{} f32 vs numpy: {worst}", b.name());
    }
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"f16\", \"bf16\", \"int8-pt-sym\", \"int8-pc-sym\", \"int8-dynamic\", \"int8-static-minmax\", \"int4-g16-sym\"]\nbackends = {}\nbatch_sizes = [8]\n{MEASURE}\n[calibration]\nitems = 8\n\n[[datasets]]\nname = \"x\"\nformat = \"npy\"\ninputs = {:?}\n\n[[models]]\nname = \"tied\"\npath = {:?}\ndataset = \"x\"\n[[models.inputs]]\nname = \"x\"\nshape = [\"batch\", 32]\n",
        onnx_backends(),
        reference("shared-opset11.x.npy"),
        reference("shared-opset11.onnx"),
    );
    let records = run_suite(dir.path(), &suite);
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let artifact = |scheme: &str| run.join("artifacts").join(format!("tied.{scheme}.onnx"));
    let f32_bytes = std::fs::metadata(artifact("f32")).unwrap().len();
    for r in &records {
        let what = format!("{} {}", r.scheme, r.backend);
        if r.scheme == "bf16" && r.backend == "tract-cpu" {
            // tract has no bfloat16 type: said, not failed (ONNX Runtime runs it below).
            assert_eq!(r.status, CaseStatus::Skipped, "{what}");
            assert!(r.error.as_deref().unwrap().contains("no bfloat16"), "{what}: {:?}", r.error);
            continue;
        }
        // Every artifact loads and runs in each engine of the build (ONNX Runtime included).
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        assert_eq!(r.eval_items, Some(16), "{what}");
        if r.scheme == "f32" {
            assert!(r.ref_sqnr_db.unwrap_or(f64::INFINITY) > 90.0, "{what}: {:?}", r.ref_sqnr_db);
            continue;
        }
        // The shared weight is stored once: the bytes the file's initializers hold are what the
        // record's bits per weight claim for the model's 1354 parameters (plus zero points and
        // the few int64 constants the graph needs), not three copies more.
        let stored: usize = initializers(&artifact(&r.scheme)).iter().map(|(_, _, b)| b).sum();
        let bits = r.bits_per_weight.unwrap();
        let claimed = bits * 1354.0 / 8.0;
        assert!(bits < 17.0, "{what}: {bits} bits per weight");
        assert!(
            (stored as f64) < claimed * 1.25 + 128.0 && stored as f64 > claimed * 0.8,
            "{what}: initializers hold {stored} bytes, {bits:.2} bits per weight claims {claimed:.0}"
        );
        assert!(std::fs::metadata(artifact(&r.scheme)).unwrap().len() < f32_bytes, "{what}");
        // The probabilities stay close to f32's.
        assert!(r.ref_sqnr_db.unwrap() > 15.0, "{what}: SQNR {:?}", r.ref_sqnr_db);
    }
    // One integer copy of the 32×32 weight three MatMuls read, plus the head's.
    for scheme in ["int8-pt-sym", "int8-pc-sym", "int8-dynamic", "int8-static-minmax"] {
        // (Zero points are int8 too: one byte, or one per channel.)
        let int8: Vec<(String, i32, usize)> =
            initializers(&artifact(scheme)).into_iter().filter(|(_, ty, b)| *ty == 3 && *b > 64).collect();
        assert_eq!(int8.len(), 2, "{scheme}: {int8:?}");
        assert_eq!(int8.iter().map(|(_, _, b)| b).sum::<usize>(), 32 * 32 + 10 * 32, "{scheme}");
    }
    let halves: Vec<(String, i32, usize)> =
        initializers(&artifact("f16")).into_iter().filter(|(_, ty, _)| *ty == 10).collect();
    assert_eq!(halves.iter().filter(|(_, _, b)| *b == 32 * 32 * 2).count(), 1, "f16: {halves:?}");
    // Per-channel DequantizeLinear and the bfloat16 Cast need opset 13: upgraded, and said.
    // The others keep the file's opset 11.
    for (scheme, want) in
        [("f32", 11), ("f16", 11), ("int8-pt-sym", 11), ("int8-dynamic", 11), ("int8-pc-sym", 13), ("bf16", 13)]
    {
        assert_eq!(opset(&artifact(scheme)), want, "{scheme}");
        let r = records.iter().find(|r| r.scheme == scheme && r.status == CaseStatus::Ok).unwrap();
        let said = r.weight_storage.as_deref().unwrap_or_default().contains("graph upgraded from ONNX opset 11 to 13");
        assert_eq!(said, want == 13, "{scheme}: {:?}", r.weight_storage);
    }
}

/// The input lines of a suite for tests/reference/stateful.onnx: data "x", the state and the
/// sample rate fed constants.
const STATEFUL_INPUTS: &str = "[[models.inputs]]\nname = \"x\"\nshape = [\"batch\", 8]\n[[models.inputs]]\nname = \"state\"\nshape = [2, \"batch\", 8]\nbatch_axis = 1\nvalue = 0.5\n[[models.inputs]]\nname = \"sr\"\nshape = []\nvalue = 16000\n";

#[test]
fn a_recurrent_state_and_a_scalar_input_are_fed_constants_and_the_data_input_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-pc-sym\", \"int8-dynamic\"]\nbackends = {}\nbatch_sizes = [1, 8]\n{MEASURE}\n[[datasets]]\nname = \"x\"\nformat = \"npy\"\ninputs = {:?}\n\n[[models]]\nname = \"stateful\"\npath = {:?}\n{STATEFUL_INPUTS}",
        onnx_backends(),
        reference("stateful.x.npy"),
        reference("stateful.onnx"),
    );
    // The f32 graph, with the constants baked in, computes what numpy computed for state 0.5 and
    // sr 16000, at any batch.
    assert_f32_matches_numpy(dir.path(), &suite, "stateful.x.npy", "stateful.scores.npy", 4, &[1, 8], 1e-5);
    let path = dir.path().join("suite.toml");
    // Through a run: every case measured, the dataset feeding only "x".
    let records = run_suite(dir.path(), &suite);
    let engines = if cfg!(feature = "ort") { 2 } else { 1 };
    assert_eq!(records.len(), 3 * 2 * engines);
    for r in &records {
        let what = format!("{} {} batch {}", r.scheme, r.backend, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        assert_eq!(r.eval_items, Some(20), "{what}");
        assert!(r.ref_sqnr_db.unwrap_or(f64::INFINITY) > 20.0, "{what}: {:?}", r.ref_sqnr_db);
        // The constants are inputs, not parameters: 8 × 4 weights, 4 biases and the 16000.
        assert_eq!(r.parameters, 8 * 4 + 4 + 1, "{what}");
    }
    // Mistakes, each with the declaration to write.
    let check = |inputs: &str, want: &[&str]| {
        let text = suite.replace(STATEFUL_INPUTS, inputs);
        std::fs::write(&path, text).unwrap();
        let o = qbench(dir.path(), &["validate", path.to_str().unwrap()]);
        let e = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{inputs}");
        for w in want {
            assert!(e.contains(w), "{inputs}: {e}");
        }
    };
    // The state left undeclared.
    check(
        "[[models.inputs]]\nname = \"x\"\nshape = [\"batch\", 8]\n[[models.inputs]]\nname = \"sr\"\nshape = []\nvalue = 16000\n",
        &["input \"state\" is not declared"],
    );
    // A data input's batch_axis pointing past its batch, and a fractional sample rate for an
    // int64 input.
    check(
        &STATEFUL_INPUTS.replace(
            "shape = [\"batch\", 8]\n[[models.inputs]]",
            "shape = [\"batch\", 8]\nbatch_axis = 1\n[[models.inputs]]",
        ),
        &["symbol \"batch\" at axis 0 is not bound: if it is the batch, set batch_axis = 0"],
    );
    check(
        &STATEFUL_INPUTS.replace("value = 16000", "value = 16000.5"),
        &["\"sr\" is i64 in the model", "16000.5 is not a whole number"],
    );
    // The state's shape with the batch on the wrong axis.
    check(
        &STATEFUL_INPUTS.replace("batch_axis = 1", "batch_axis = 0"),
        &["symbol \"batch\" at axis 1 is not bound: if it is the batch, set batch_axis = 1"],
    );
    // Or with the batch left out of the shape altogether: the file's shape says it differs.
    check(
        &STATEFUL_INPUTS.replace("shape = [2, \"batch\", 8]\nbatch_axis = 1", "shape = [2, 8]"),
        &["input \"state\" has shape [2, batch, 8] in the model, but the suite declares [2, 8]"],
    );
}

/// Edit distance in characters (Wagner–Fischer), written here apart from qbench's own.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

const CTC_OUTPUTS: &str = "[[models.outputs]]\nname = \"logits\"\nkind = \"sequence\"\nctc_blank = 0\nalphabet = \"-abcd\"\n[[models.outputs]]\nname = \"confidence\"\n";

fn ctc_suite(outputs: &str) -> String {
    format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-dynamic\", \"int8-pc-sym\"]\nbackends = {}\nbatch_sizes = [1, 8]\n{MEASURE}\n[[datasets]]\nname = \"lines\"\nformat = \"npy\"\ninputs = {:?}\ntext_labels = {:?}\n\n[[models]]\nname = \"ocr\"\npath = {:?}\n[[models.inputs]]\nname = \"image\"\nshape = [\"batch\", 1, 8, 32]\n{outputs}",
        onnx_backends(),
        reference("ctc.x.npy"),
        reference("ctc.labels.txt"),
        reference("ctc.onnx"),
    )
}

#[test]
fn a_ctc_recognizer_is_scored_by_decoded_text_and_its_second_output_as_a_score() {
    let dir = tempfile::tempdir().unwrap();
    let records = run_suite(dir.path(), &ctc_suite(CTC_OUTPUTS));
    // The expected figures from the numpy forward pass's own decoding (ctc.decoded.txt), against
    // the texts the images were rendered from (ctc.labels.txt).
    let read = |n: &str| std::fs::read_to_string(reference(n)).unwrap().lines().map(String::from).collect::<Vec<_>>();
    let (labels, decoded) = (read("ctc.labels.txt"), read("ctc.decoded.txt"));
    assert_eq!(labels.len(), 40);
    let exact = labels.iter().zip(&decoded).filter(|(l, d)| l == d).count() as f64 / 40.0;
    let edits: usize = labels.iter().zip(&decoded).map(|(l, d)| edit_distance(d, l)).sum();
    let chars: usize = labels.iter().map(|l| l.chars().count()).sum();
    let cer = edits as f64 / chars as f64;
    assert!(exact > 0.5 && exact < 1.0, "the fixture's exact match {exact} should be informative");
    let engines = if cfg!(feature = "ort") { 2 } else { 1 };
    assert_eq!(records.len(), 3 * 2 * engines);
    for r in &records {
        let what = format!("{} {} batch {}", r.scheme, r.backend, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        assert_eq!((r.output_name.as_str(), r.output_kind.as_str()), ("logits", "sequence (CTC)"), "{what}");
        assert_eq!(r.output_kind_source, "declared", "{what}");
        assert_eq!(r.output_item_shape, vec![32, 5], "{what}");
        // No top-1 or KL for a sequence: a flattened [32 × 5] item has no class.
        assert_eq!((r.top1_accuracy, r.ref_top1_agreement, r.ref_kl_mean), (None, None, None), "{what}");
        let (em, lo, hi) = (r.exact_match.unwrap(), r.exact_match_ci_low.unwrap(), r.exact_match_ci_high.unwrap());
        assert!(lo <= em && em <= hi && hi - lo > 0.05, "{what}: {em} [{lo}, {hi}]");
        let agree = r.ref_position_agreement.unwrap();
        assert!((0.0..=1.0).contains(&agree), "{what}");
        if r.scheme == "f32" {
            // The engines' f32 reading of every item is numpy's.
            assert_eq!(em, exact, "{what}");
            assert!((r.char_error_rate.unwrap() - cer).abs() < 1e-12, "{what}: {:?} vs {cer}", r.char_error_rate);
            assert_eq!((agree, r.ref_text_agreement), (1.0, Some(1.0)), "{what}");
        } else {
            // Quantized, the positions mostly keep their class, and CER is a share of characters.
            assert!(agree > 0.8, "{what}: {agree}");
            assert!((0.0..=1.0).contains(&r.char_error_rate.unwrap()), "{what}");
        }
        // Both outputs scored: the second, one value per item, as a score at 0.5.
        assert_eq!(r.outputs.len(), 2, "{what}");
        let conf = &r.outputs[1];
        assert_eq!((conf.name.as_str(), conf.kind.as_str()), ("confidence", "scores"), "{what}");
        assert!(conf.kind_source.starts_with("inferred"), "{what}: {}", conf.kind_source);
        assert_eq!(conf.threshold, Some(0.5), "{what}");
        assert_eq!(conf.ref_top1_agreement, None, "{what}");
        let thr = conf.ref_threshold_agreement.unwrap();
        if r.scheme == "f32" {
            assert_eq!(thr, 1.0, "{what}");
        }
        assert!((0.0..=1.0).contains(&thr), "{what}");
    }
    // The report shows the sequence's columns and no top-1 column.
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("exact match ± CI (%)") && md.contains("CER (%)") && md.contains("position agree vs ref"),
        "{md}"
    );
    assert!(!md.contains("top-1"), "{md}");
    assert!(md.contains("logits: sequence (CTC)"), "{md}");
    // The second output has rows of its own, in a table of its kind.
    assert!(md.contains("### scores outputs") && md.contains("confidence: scores"), "{md}");
    assert!(md.contains("agree at threshold vs ref"), "{md}");
    assert!(md.contains("CTC greedy decoding against the text labels"), "{md}");
    // explain ranks its layers by the output's SQNR: no top-1 for a sequence.
    let int8 = records.iter().find(|r| r.scheme == "int8-pc-sym" && r.backend == "tract-cpu").unwrap();
    let o = qbench(dir.path(), &["explain", run.to_str().unwrap(), &int8.case_index.to_string()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("top-1 does not apply") && text.contains("kept f32: output SQNR (dB)"), "{text}");
    assert!(!text.contains("fp32 top-1") && !text.contains("Δtop-1"), "{text}");
    for layer in ["enc", "head", "conf"] {
        assert!(text.contains(&format!("| {layer} |")), "{layer}: {text}");
    }
}

#[test]
fn a_detector_with_one_probability_per_item_is_judged_at_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-pc-sym\"]\nbackends = {}\nbatch_sizes = [8]\n{MEASURE}\n[[datasets]]\nname = \"x\"\nformat = \"npy\"\ninputs = {:?}\nlabels = {:?}\n\n[[models]]\nname = \"detector\"\npath = {:?}\n[[models.inputs]]\nname = \"x\"\nshape = [\"batch\", 16]\n",
        onnx_backends(),
        reference("detector.x.npy"),
        reference("detector.labels.csv"),
        reference("detector.onnx"),
    );
    let records = run_suite(dir.path(), &suite);
    let prob = qbench::data::load_npy("p", &reference("detector.prob.npy"), None, None).unwrap().values;
    let labels: Vec<u32> = std::fs::read_to_string(reference("detector.labels.csv"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!((prob.len(), labels.len()), (48, 48));
    let right = prob.iter().zip(&labels).filter(|(p, l)| (**p >= 0.5) == (**l == 1)).count();
    let accuracy = right as f64 / 48.0;
    assert!(accuracy > 0.5 && accuracy < 1.0, "the fixture's accuracy {accuracy} should be informative");
    for r in &records {
        let what = format!("{} {} batch {}", r.scheme, r.backend, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        assert_eq!(r.output_kind, "scores", "{what}");
        // Top-1 over one value is always 100%: never reported.
        assert_eq!((r.top1_accuracy, r.ref_top1_agreement, r.ref_kl_mean), (None, None, None), "{what}");
        assert_eq!(r.score_threshold, Some(0.5), "{what}");
        let acc = r.threshold_accuracy.unwrap();
        if r.scheme == "f32" {
            assert_eq!(acc, accuracy, "{what}");
            assert_eq!(r.ref_threshold_agreement, Some(1.0), "{what}");
        }
        assert!(r.threshold_accuracy_ci_low.unwrap() <= acc && acc <= r.threshold_accuracy_ci_high.unwrap(), "{what}");
    }
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("accuracy at threshold ± CI (%)") && !md.contains("top-1"), "{md}");
    // One value per item has no direction: no cosine.
    assert!(records.iter().all(|r| r.ref_cosine_mean.is_none()), "{:?}", records[0].ref_cosine_mean);
    assert!(!md.contains("cosine vs ref"), "{md}");
    // A label that is not 0/1 for a single score: the case says what the labels must be.
    let bad_labels = dir.path().join("labels2.csv");
    std::fs::write(&bad_labels, std::fs::read_to_string(reference("detector.labels.csv")).unwrap().replace('1', "2"))
        .unwrap();
    let suite2 = suite.replace(&format!("{:?}", reference("detector.labels.csv")), &format!("{bad_labels:?}"));
    std::fs::write(dir.path().join("suite.toml"), suite2).unwrap();
    let out = dir.path().join("out2");
    qbench(dir.path(), &["run", dir.path().join("suite.toml").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let run = std::fs::read_dir(out.join("t")).unwrap().next().unwrap().unwrap().path();
    for r in read_records(&run.join("records.jsonl")).unwrap() {
        let e = r.error.unwrap_or_default();
        assert!(
            e.contains("is a single score, judged at its threshold against 0/1 labels") && e.contains("has label 2"),
            "{e}"
        );
    }
}

#[test]
fn ctc_logits_laid_out_time_first_are_read_batch_first_at_any_batch() {
    // PyTorch's CTC layout [time, batch, vocab]; at batch 32 (= time) a reader that assumed
    // batch-first would still find the sizes it expects and score the wrong numbers.
    let dir = tempfile::tempdir().unwrap();
    let suite = ctc_suite(CTC_OUTPUTS)
        .replace("ctc.onnx", "ctc-tnc.onnx")
        .replace("batch_sizes = [1, 8]", "batch_sizes = [1, 32]")
        .replace("[\"f32\", \"int8-dynamic\", \"int8-pc-sym\"]", "[\"f32\"]");
    // A byte-order mark before the first text is not part of it.
    let labels = std::fs::read(reference("ctc.labels.txt")).unwrap();
    let bom = dir.path().join("labels-bom.txt");
    std::fs::write(&bom, [b"\xef\xbb\xbf".as_slice(), &labels].concat()).unwrap();
    let suite = suite.replace(&format!("{:?}", reference("ctc.labels.txt")), &format!("{bom:?}"));
    let records = run_suite(dir.path(), &suite);
    let read = |n: &str| std::fs::read_to_string(reference(n)).unwrap().lines().map(String::from).collect::<Vec<_>>();
    let (labels, decoded) = (read("ctc.labels.txt"), read("ctc.decoded.txt"));
    let exact = labels.iter().zip(&decoded).filter(|(l, d)| l == d).count() as f64 / 40.0;
    assert_eq!(records.len(), if cfg!(feature = "ort") { 4 } else { 2 });
    for r in &records {
        assert_eq!(r.status, CaseStatus::Ok, "{} batch {}: {:?}", r.backend, r.batch, r.error);
        assert_eq!(r.output_item_shape, vec![32, 5], "batch {}", r.batch);
        assert_eq!(r.exact_match, Some(exact), "{} batch {}", r.backend, r.batch);
    }
    // A stray blank line at the end of the labels: the count, and why.
    let blank = dir.path().join("labels-blank.txt");
    std::fs::write(&blank, [labels.join("\n").as_bytes(), b"\n\n"].concat()).unwrap();
    std::fs::write(dir.path().join("suite.toml"), suite.replace(&format!("{bom:?}"), &format!("{blank:?}"))).unwrap();
    let o = qbench(dir.path(), &["validate", dir.path().join("suite.toml").to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("holds 41 lines but dataset") && e.contains("its last line is empty"),
        "{e}"
    );
}

#[test]
fn an_output_declared_as_a_kind_its_shape_cannot_be_fails_its_cases_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // The [32, 5] logits declared classes; an alphabet of the wrong length.
    for (outputs, want) in [
        ("[[models.outputs]]\nname = \"logits\"\nkind = \"classes\"\n", "declare kind = \"sequence\""),
        (
            "[[models.outputs]]\nname = \"logits\"\nkind = \"sequence\"\nctc_blank = 0\nalphabet = \"-abc\"\n",
            "the alphabet lists 4 symbols",
        ),
    ] {
        let path = dir.path().join("suite.toml");
        std::fs::write(&path, ctc_suite(outputs)).unwrap();
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let o = qbench(dir.path(), &["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let run = std::fs::read_dir(out.join("t")).unwrap().next().unwrap().unwrap().path();
        let records = read_records(&run.join("records.jsonl")).unwrap();
        assert!(!records.is_empty());
        for r in &records {
            assert_eq!(r.status, CaseStatus::Failed, "{outputs}");
            assert!(r.error.as_deref().unwrap().contains(want), "{outputs}: {:?}", r.error);
        }
        assert!(!o.status.success(), "{outputs}: a run whose every case failed exits non-zero");
    }
}

#[test]
fn a_time_major_input_is_fed_batch_first_and_transposed_into_the_files_layout() {
    let dir = tempfile::tempdir().unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-pc-sym\"]\nbackends = {}\nbatch_sizes = [1, 8]\n{MEASURE}\n[[datasets]]\nname = \"x\"\nformat = \"npy\"\ninputs = {:?}\n\n[[models]]\nname = \"tm\"\npath = {:?}\n[[models.inputs]]\nname = \"frames\"\nshape = [6, \"batch\", 4]\nbatch_axis = 1\n",
        onnx_backends(),
        reference("time-major.x.npy"),
        reference("time-major.onnx"),
    );
    // The dataset's items are [6, 4], item first, as numpy's x[n] is.
    let data = qbench::data::load_npy("x", &reference("time-major.x.npy"), None, None).unwrap();
    assert_eq!(data.item_shape, vec![6, 4]);
    assert_f32_matches_numpy(dir.path(), &suite, "time-major.x.npy", "time-major.y.npy", 3, &[1, 8], 1e-4);
    let path = dir.path().join("suite.toml");
    let records = run_suite(dir.path(), &suite);
    for r in &records {
        let what = format!("{} {} batch {}", r.scheme, r.backend, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        assert!(r.ref_sqnr_db.unwrap_or(f64::INFINITY) > 20.0, "{what}: {:?}", r.ref_sqnr_db);
    }
    // Declared with the batch first, the file's shape says where it is.
    std::fs::write(&path, suite.replace("shape = [6, \"batch\", 4]\nbatch_axis = 1", "shape = [\"batch\", 6, 4]"))
        .unwrap();
    let o = qbench(dir.path(), &["run", path.to_str().unwrap(), "--out", dir.path().join("bad").to_str().unwrap()]);
    let run = std::fs::read_dir(dir.path().join("bad/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    assert!(!o.status.success());
    assert!(records.iter().all(|r| r.error.as_deref().unwrap_or_default().contains("has shape [6, batch, 4] in the model: its batch is at axis 1; declare shape = [6, \"batch\", 4] with batch_axis = 1")), "{:?}", records[0].error);
}

#[test]
fn a_model_files_inputs_are_read_from_it_when_the_suite_leaves_them_out() {
    let dir = tempfile::tempdir().unwrap();
    // The CTC recognizer: "image" ["batch", 1, 8, 32] in the file, nothing declared.
    let suite =
        ctc_suite(CTC_OUTPUTS).replace("[[models.inputs]]\nname = \"image\"\nshape = [\"batch\", 1, 8, 32]\n", "");
    assert!(!suite.contains("models.inputs"));
    let records = run_suite(dir.path(), &suite);
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.status, CaseStatus::Ok, "{} {}: {:?}", r.scheme, r.backend, r.error);
        assert!(r.exact_match.is_some());
    }
    // A file that leaves inputs in doubt: one error each, with the declaration to write.
    let path = dir.path().join("suite.toml");
    let stateful = format!(
        "name = \"t\"\nschemes = [\"f32\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [1]\n[[datasets]]\nname = \"x\"\nformat = \"npy\"\ninputs = {:?}\n\n[[models]]\nname = \"stateful\"\npath = {:?}\n",
        reference("stateful.x.npy"),
        reference("stateful.onnx"),
    );
    std::fs::write(&path, &stateful).unwrap();
    let o = qbench(dir.path(), &["validate", path.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        e.contains("input \"state\" has shape [2, \"batch\", 8], its open axis at 1")
            && e.contains("value = 0, batch_axis = 1"),
        "{e}"
    );
    // A symbol besides the batch: bind it.
    let tm = stateful.replace("stateful.x.npy", "time-major.x.npy").replace("stateful.onnx", "time-major.onnx");
    std::fs::write(&path, &tm).unwrap();
    let o = qbench(dir.path(), &["validate", path.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(e.contains("its open axis at 1"), "{e}");
}

#[test]
fn an_unbatched_input_beside_a_batched_one_is_asked_for_a_constant_and_then_runs() {
    let dir = tempfile::tempdir().unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-pc-sym\"]\nbackends = {}\nbatch_sizes = [1, 4]\n{MEASURE}\n[[datasets]]\nname = \"x\"\nformat = \"npy\"\ninputs = {:?}\n\n[[models]]\nname = \"ctx\"\npath = {:?}\n",
        onnx_backends(),
        reference("context.x.npy"),
        reference("context.onnx"),
    );
    // Read from the file: "ctx" [1, 8] has no open axis beside "x", which takes the batch.
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, &suite).unwrap();
    let o = qbench(dir.path(), &["validate", path.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("input \"ctx\" has shape [1, 8], no open axis, while \"x\" takes the batch")
            && e.contains("value = 0"),
        "{e}"
    );
    assert!(!e.contains("batch is fixed"), "{e}");
    // Declared the same way, with the batch first: the same advice, not "another batch axis".
    let declared =
        "[[models.inputs]]\nname = \"x\"\nshape = [\"batch\", 8]\n[[models.inputs]]\nname = \"ctx\"\nshape = [1, 8]\n";
    std::fs::write(&path, format!("{suite}{declared}")).unwrap();
    let o = qbench(dir.path(), &["validate", path.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is declared with a fixed first axis (1) while \"x\" takes the batch"), "{e}");
    // As the advice says: a constant. Every engine computes numpy's outputs with ctx = 0.5.
    let constant = "[[models.inputs]]\nname = \"x\"\nshape = [\"batch\", 8]\n[[models.inputs]]\nname = \"ctx\"\nshape = [1, 8]\nvalue = 0.5\n";
    let suite = format!("{suite}{constant}");
    assert_f32_matches_numpy(dir.path(), &suite, "context.x.npy", "context.y.npy", 3, &[1, 4], 1e-5);
    for r in run_suite(dir.path(), &suite) {
        assert_eq!(r.status, CaseStatus::Ok, "{} {} {}: {:?}", r.scheme, r.backend, r.batch, r.error);
    }
}
