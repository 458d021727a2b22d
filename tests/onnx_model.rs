//! A user's ONNX model, end to end: the shipped TensorFlow-style CNN (Constant-node weights,
//! a symbolic batch, contradicting shape hints; written by onnx's Python helpers, see
//! scripts/make-byom-fixtures.py) loads, runs on tract as onnx's own reference evaluator
//! computes it, and every scheme applied to its graph gives what the same scheme gives the zoo
//! CNN with the same weights (a separately written path: zoo export vs graph rewrite).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use qbench::backend::BackendId;
use qbench::data::load_npy;
use qbench::measure::eval;
use qbench::model::onnx_file::{InputDecl, LayerOp, OnnxModel};
use qbench::model::Reference;
use qbench::quant::{self, Plan, SchemeId, Variant};
use qbench::record::CaseStatus;
use qbench::report::jsonl::read_records;
use qbench::zoo::ZooModelId;

fn model_path() -> PathBuf {
    common::repo().join("suites/models/cnn-tf-style.onnx")
}

fn npz() -> PathBuf {
    common::repo().join("suites/data/fashion-mnist-1k.npz")
}

fn labels_csv() -> PathBuf {
    common::repo().join("suites/data/fashion-mnist-1k-labels.csv")
}

fn decl() -> InputDecl {
    InputDecl {
        name: "images".into(),
        item_shape: vec![1, 28, 28],
        fixed_batch: None,
        bound: Default::default(),
        dtype: Default::default(),
        constant: None,
        batch_axis: 0,
    }
}

fn load() -> OnnxModel {
    OnnxModel::load("tf", &model_path(), &[decl()], &[]).unwrap()
}

/// The f32 variant of the normalized model, written under `dir`.
fn f32_variant(m: &OnnxModel, dir: &Path) -> Variant {
    let path = dir.join("tf.f32.onnx");
    std::fs::write(&path, m.to_bytes()).unwrap();
    Variant {
        model: "tf".into(),
        kind: qbench::model::ModelKind::Onnx { path: model_path(), inputs: vec![decl()], outputs: vec![] },
        input_shape: m.inputs[0].item_shape.clone(),
        layer_schemes: Plan::uniform(m.weighted_layers().as_slice(), SchemeId::F32).layers,
        plan: Plan::uniform(m.weighted_layers().as_slice(), SchemeId::F32),
        candle_artifact: path.clone(),
        onnx: path,
        onnx_qdq: None,
        weight_storage: "f32".into(),
        activation_quant: String::new(),
        bits_per_weight: 32.0,
    }
}

fn tract_outputs(v: &Variant, data: &qbench::data::Dataset, batch: usize) -> (Vec<f32>, String) {
    let mut p = BackendId::TRACT_CPU.create(0).prepare(v, batch).unwrap();
    (eval::run_dataset(p.session.as_mut(), BackendId::TRACT_CPU, data, batch, 10).unwrap(), p.evidence)
}

#[test]
fn tf_style_model_is_normalized_and_runs_as_onnx_reference_evaluator_computes_it() {
    let m = load();
    // Weights were Constant nodes: they are initializers now, and the layers are found.
    let graph = m.proto.graph.as_ref().unwrap();
    assert!(graph.node.iter().all(|n| n.op_type != "Constant"));
    assert!(graph.value_info.is_empty(), "the batch-1 shape hints are dropped");
    let layers: Vec<(&str, &LayerOp, usize, usize)> =
        m.layers.iter().map(|l| (l.name.as_str(), &l.op, l.out_channels, l.width)).collect();
    assert_eq!(
        layers,
        vec![
            ("conv1/out", &LayerOp::Conv, 16, 9),
            ("conv2", &LayerOp::Conv, 32, 144),
            ("dense1", &LayerOp::MatMul, 128, 1568),
            ("dense2", &LayerOp::MatMulTransposed, 10, 128),
        ]
    );
    assert_eq!(m.parameters, ZooModelId::Cnn.parameter_count());
    assert!(m.float_nodes.is_empty(), "{:?}", m.float_nodes);

    // tract at batch 32 (the hints said 1) against onnx.reference's logits for 64 images.
    let dir = tempfile::tempdir().unwrap();
    let data = load_npy("fm1k", &npz(), Some("x"), Some((&labels_csv(), None))).unwrap().slice(0..64);
    let (logits, _) = tract_outputs(&f32_variant(&m, dir.path()), &data, 32);
    let reference = std::fs::read(common::repo().join("tests/reference/cnn-tf-style.logits.npy")).unwrap();
    let reference = load_npy_values(&reference);
    assert_eq!(reference.len(), 64 * 10);
    let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "tract vs onnx.reference: max |Δlogit| {worst}");
    // And the labels came through the CSV: the model is a trained classifier.
    let acc = eval::accuracy(&eval::top1(&logits, 10), data.labels());
    assert!(acc > 0.8, "top-1 {acc}");
}

/// candle-onnx on the normalized graph, against onnx.reference's logits (the same bound as tract).
#[cfg(feature = "candle-onnx")]
#[test]
fn candle_onnx_runs_the_graph_as_onnx_reference_evaluator_computes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = load_npy("fm1k", &npz(), Some("x"), Some((&labels_csv(), None))).unwrap().slice(0..64);
    let v = f32_variant(&load(), dir.path());
    let mut p = BackendId::CANDLE_CPU.create(0).prepare(&v, 16).unwrap();
    assert!(p.evidence.contains("candle-onnx simple_eval"), "{}", p.evidence);
    let logits = eval::run_dataset(p.session.as_mut(), BackendId::CANDLE_CPU, &data, 16, 10).unwrap();
    let reference =
        load_npy_values(&std::fs::read(common::repo().join("tests/reference/cnn-tf-style.logits.npy")).unwrap());
    let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "candle-onnx vs onnx.reference: max |Δlogit| {worst}");
    // A graph with an op candle-onnx lacks (tract has Elu) fails with the op and the node.
    let mut m = load();
    let relu = m.proto.graph.as_mut().unwrap().node.iter_mut().find(|n| n.name == "relu1").unwrap();
    relu.op_type = "Elu".into();
    let path = dir.path().join("elu.onnx");
    std::fs::write(&path, m.proto.encode_to_vec()).unwrap();
    let elu = Variant { onnx: path, ..v.clone() };
    let e = BackendId::CANDLE_CPU.create(0).prepare(&elu, 1).err().unwrap().to_string();
    assert!(e.contains("candle-onnx 0.11 does not implement op Elu (node \"relu1\")"), "{e}");
}

/// The values of an f32 `.npy` (through the dataset loader's reader, items × rest).
fn load_npy_values(bytes: &[u8]) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.npy");
    std::fs::write(&p, bytes).unwrap();
    load_npy("v", &p, None, None).unwrap().values
}

/// The same plan on both models (the zoo's layer names mapped by position), with the layers
/// at positions `keep_f32` in f32.
fn plans(m: &OnnxModel, scheme: SchemeId, keep_f32: &[usize]) -> (Plan, Plan) {
    let mut onnx = Plan::uniform(m.weighted_layers().as_slice(), scheme);
    let mut zoo = Plan::uniform(ZooModelId::Cnn, scheme);
    for &i in keep_f32 {
        onnx.layers[i].1 = SchemeId::F32;
        zoo.layers[i].1 = SchemeId::F32;
    }
    (onnx, zoo)
}

#[test]
fn every_scheme_on_the_graph_matches_the_zoo_path_with_the_same_weights() {
    let m = load();
    let reference = Reference::load("cnn", ZooModelId::Cnn, &common::weights("cnn")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = load_npy("fm1k", &npz(), Some("x"), Some((&labels_csv(), None))).unwrap();
    let (cal_data, data) = (full.slice(0..200), full.slice(200..500));
    use qbench::model::{LoadedModel, ModelKind};
    let onnx_kind = ModelKind::Onnx { path: model_path(), inputs: vec![decl()], outputs: vec![] };
    let onnx_model = LoadedModel::load("tf", &onnx_kind, dir.path()).unwrap();
    let zoo_kind = ModelKind::Zoo { zoo: ZooModelId::Cnn, weights: common::weights("cnn") };
    let zoo_model = LoadedModel::load("cnn", &zoo_kind, dir.path()).unwrap();
    // Each model's reference engine captures its layers' inputs: tract for the graph, candle
    // for the zoo model.
    let onnx_cal = qbench::run::calibrate(&onnx_model, &cal_data, 99.99, 0, 50).unwrap();
    let zoo_cal = qbench::run::calibrate(&zoo_model, &cal_data, 99.99, 0, 50).unwrap();
    // The calibration inputs agree, engine against engine (tract vs candle), layer by layer.
    for ((ol, ov), (zl, zv)) in onnx_cal.inputs.iter().zip(&zoo_cal.inputs) {
        assert_eq!(ov.len(), zv.len(), "{ol} vs {zl}");
    }
    let by_position = |c: &quant::Calibration, names: &[String]| {
        names.iter().map(|n| c.inputs[n].iter().fold(0.0f32, |a, &b| a.max(b))).collect::<Vec<_>>()
    };
    let onnx_names: Vec<String> = m.layers.iter().map(|l| l.name.clone()).collect();
    let zoo_names: Vec<String> = ZooModelId::Cnn.weighted_layers().iter().map(|(n, _)| n.to_string()).collect();
    for (a, b) in by_position(&onnx_cal, &onnx_names).iter().zip(by_position(&zoo_cal, &zoo_names)) {
        assert!((a - b).abs() <= 1e-4 * b.max(1.0), "calibration maxima {a} vs {b}");
    }

    let g16 = SchemeId::Int4Group { group: 16, symmetric: true };
    let cases: [(SchemeId, &[usize], f32, usize); 7] = [
        (SchemeId::F16, &[], 1e-3, 0),
        (SchemeId::Int8Weights { per_channel: true, symmetric: true }, &[], 1e-3, 0),
        (SchemeId::Int8Weights { per_channel: false, symmetric: false }, &[], 1e-3, 0),
        // conv1's rows (9 weights) fit no int4 group: kept f32 on both paths.
        (g16, &[0], 1e-3, 0),
        // The zoo keeps convolutions f32 under GGML types (candle has no GGML conv); the
        // graph path would quantize them too, so both keep them here.
        (SchemeId::Ggml(quant::ggml::GgmlType::Q4_0), &[0, 1], 1e-3, 0),
        (SchemeId::Int8Dynamic, &[], 1e-3, 4),
        // Static int8 quantizes each layer's output: the graph's dense1 is a MatMul whose bias
        // is a separate Add, so its product is quantized before the bias (a layer's output is
        // its node's) where the zoo's Linear quantizes after it; one rounding more.
        (SchemeId::Int8Static(quant::calibrate::Calibrator::MinMax), &[], 0.5, 4),
    ];
    for (scheme, keep_f32, tolerance, kernels) in cases {
        let (onnx_plan, zoo_plan) = plans(&m, scheme, keep_f32);
        let ov = quant::onnx_graph::apply(&onnx_plan, &m, "tf", dir.path(), Some(&onnx_cal)).unwrap();
        let zv = quant::apply(&zoo_plan, &reference, dir.path(), Some(&zoo_cal)).unwrap();
        let (o, evidence) = tract_outputs(&ov, &data, 50);
        let (z, _) = tract_outputs(&zv, &data, 50);
        let worst = o.iter().zip(&z).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let what = scheme.name();
        assert!(worst <= tolerance, "{what}: graph path vs zoo path, max |Δlogit| {worst}");
        let agree = eval::agreement(&o, &z, 10).top1;
        assert!(agree >= 0.99, "{what}: top-1 agreement {agree}");
        // Same weights, same storage: the same bits per weight on both paths, except that
        // dense1's bias sits in its own Add node in the graph, outside the layer, so f16
        // leaves those 128 values f32 there.
        let n = ZooModelId::Cnn.parameter_count() as f64;
        let expected = zv.bits_per_weight + if scheme == SchemeId::F16 { 128.0 * 16.0 / n } else { 0.0 };
        assert!((ov.bits_per_weight - expected).abs() < 1e-9, "{what}: {} vs {expected}", ov.bits_per_weight);
        assert_eq!(common::int8_kernels(&evidence), kernels, "{what}: {evidence}");
        // The artifact really stores the scheme's type.
        let proto = tract_onnx::pb::ModelProto::decode(std::fs::read(&ov.onnx).unwrap().as_slice()).unwrap();
        let types: Vec<i32> = proto.graph.unwrap().initializer.iter().map(|t| t.data_type).collect();
        use tract_onnx::pb::tensor_proto::DataType;
        let has = |d: DataType| types.contains(&(d as i32));
        match scheme {
            SchemeId::F16 => assert!(has(DataType::Float16), "{what}"),
            SchemeId::Int4Group { .. } => assert!(has(DataType::Uint8), "{what}: packed nibbles"),
            SchemeId::Ggml(_) => assert!(ov.weight_storage.contains("q4_0 (dequantized"), "{}", ov.weight_storage),
            _ => assert!(has(DataType::Int8), "{what}"),
        }
    }
    // The same graph importing opset 10, which qbench does not upgrade: static int8's QDQ form
    // (per-channel DequantizeLinear, opset 13) cannot be written, so the variant keeps its
    // integer form alone (what ONNX Runtime then loads too), says so, and computes the same.
    let static_minmax = SchemeId::Int8Static(quant::calibrate::Calibrator::MinMax);
    let mut old = tract_onnx::pb::ModelProto::decode(std::fs::read(model_path()).unwrap().as_slice()).unwrap();
    old.opset_import.iter_mut().filter(|o| o.domain.is_empty()).for_each(|o| o.version = 10);
    let old_path = dir.path().join("opset10.onnx");
    std::fs::write(&old_path, old.encode_to_vec()).unwrap();
    let old_model = OnnxModel::load("tf", &old_path, &[decl()], &[]).unwrap();
    let (plan, _) = plans(&old_model, static_minmax, &[]);
    let ov = quant::onnx_graph::apply(&plan, &old_model, "tf10", dir.path(), Some(&onnx_cal)).unwrap();
    assert!(ov.onnx_qdq.is_none() && ov.weight_storage.contains("no QDQ form"), "{}", ov.weight_storage);
    let (plan, _) = plans(&m, static_minmax, &[]);
    let nv = quant::onnx_graph::apply(&plan, &m, "tf13", dir.path(), Some(&onnx_cal)).unwrap();
    assert!(nv.onnx_qdq.is_some(), "{}", nv.weight_storage);
    let ((o, _), (n, _)) = (tract_outputs(&ov, &data, 50), tract_outputs(&nv, &data, 50));
    assert_eq!(o, n, "the integer form does not depend on the opset");
}

fn qbench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbench")).args(args).current_dir(dir).output().unwrap()
}

const MEASURE: &str = "[measure]\nwarmup_iters = 2\nmin_samples = 5\nmax_samples = 30\nmax_time_ms = 30\n";

fn onnx_model_entry(name: &str, path: &Path, shape: &str, dataset: &str) -> String {
    format!(
        "\n[[models]]\nname = \"{name}\"\npath = {path:?}\ndataset = \"{dataset}\"\n[[models.inputs]]\nname = \"images\"\nshape = {shape}\n"
    )
}

#[test]
fn a_suite_of_file_paths_runs_every_scheme_with_labels_and_outputs_only() {
    let dir = tempfile::tempdir().unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"f16\", \"int8-pc-sym\", \"int8-dynamic\", \"int8-static-minmax\", \"int4-g16-sym\", \"q4_0\"]\nbackends = [\"tract-cpu\", \"candle-cpu\"]\nbatch_sizes = [16]\n{MEASURE}\n[calibration]\nitems = 100\n\n[[overrides]]\nlayers = [\"@first\"]\nscheme = \"int8-pc-sym\"\nschemes = [\"int4-*\"]\n\n[[overrides]]\nlayers = [\"fc*\"]\nscheme = \"f32\"\n\n[[datasets]]\nname = \"labelled\"\nformat = \"npy\"\ninputs = {:?}\narray = \"x\"\nlabels = {:?}\n\n[[datasets]]\nname = \"unlabelled\"\nformat = \"npy\"\ninputs = {:?}\n{}{}",
        npz(),
        labels_csv(),
        npz(),
        onnx_model_entry("tf", &model_path(), "[\"batch\", 1, 28, 28]", "labelled"),
        onnx_model_entry("tf-outputs-only", &model_path(), "[\"batch\", 1, 28, 28]", "unlabelled"),
    );
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = qbench(dir.path(), &["run", path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // Zoo layer names do not exist in the graph: said once per model, with the real names.
    let warning = "WARNING: [[overrides]] entry 2 matches no layer of model \"tf\"; its layers are: conv1/out, conv2, dense1, dense2";
    assert!(err.contains(warning), "{err}");
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 2 * 7 * 2);
    for r in &records {
        let what = format!("{} {} {}", r.model, r.scheme, r.backend);
        // candle-onnx runs the float graphs (f32, f16 cast, GGML stored dequantized), not the
        // integer ones; without the feature, none.
        let candle = r.backend == "candle-cpu";
        if candle && !(cfg!(feature = "candle-onnx") && matches!(r.scheme.as_str(), "f32" | "f16" | "q4_0")) {
            assert_eq!(r.status, CaseStatus::Skipped, "{what}");
            let why = if cfg!(feature = "candle-onnx") {
                "integer ONNX graphs run on tract only"
            } else {
                "--features candle-onnx"
            };
            assert!(r.error.as_deref().unwrap().contains(why), "{what}: {:?}", r.error);
            continue;
        }
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        // The fastest engine that runs the file in exact f32: tract, or ONNX Runtime when built.
        let exact: &[&str] = if cfg!(feature = "ort") { &["tract-cpu", "ort-cpu"] } else { &["tract-cpu"] };
        assert!(exact.contains(&r.reference_backend.as_str()), "{what}: {}", r.reference_backend);
        let choice = r.reference_choice.as_deref().unwrap_or_default();
        assert!(choice.starts_with(&format!("{}, the fastest", r.reference_backend)), "{what}: {choice}");
        assert_eq!(r.eval_items, Some(900), "{what}");
        assert_eq!(r.parameters, ZooModelId::Cnn.parameter_count());
        let agreement = r.ref_top1_agreement.unwrap();
        if candle {
            assert!(r.evidence.as_deref().unwrap().contains("candle-onnx simple_eval"), "{what}");
            // The interpreter computes every layer in f32, whatever the file stores.
            assert!(
                !r.layer_evidence.is_empty()
                    && r.layer_evidence.iter().all(|l| l.compute == qbench::backend::Compute::F32),
                "{what}: {:?}",
                r.layer_evidence
            );
            assert_eq!(r.realization, if r.scheme == "f32" { "native" } else { "emulated" }, "{what}");
        }
        if r.scheme == "f32" && candle {
            // Two engines on the same graph: the same classes, logits equal to ~1e-6.
            assert!(agreement >= 0.999 && r.ref_sqnr_db.unwrap() > 100.0, "{what}: {agreement} {:?}", r.ref_sqnr_db);
            assert_eq!(r.bits_per_weight, Some(32.0));
        } else if r.scheme == "f32" {
            assert_eq!(agreement, 1.0, "{what}");
            assert_eq!(r.bits_per_weight, Some(32.0));
        } else {
            assert!(agreement > 0.9, "{what}: agreement {agreement}");
            assert!(r.bits_per_weight.unwrap() < 17.0, "{what}: {:?}", r.bits_per_weight);
        }
        match r.model.as_str() {
            "tf" => assert!(r.top1_accuracy.unwrap() > 0.8, "{what}"),
            _ => assert_eq!(r.top1_accuracy, None, "{what}: outputs-only has no accuracy"),
        }
        if r.scheme == "int8-dynamic" || r.scheme == "int8-static-minmax" {
            assert_eq!(r.realization, "native", "{what}");
            assert!(r.evidence.as_deref().unwrap().contains("mmm_i32"), "{what}: {:?}", r.evidence);
        }
    }
    let int4 = records.iter().find(|r| r.scheme == "int4-g16-sym" && r.backend == "tract-cpu").unwrap();
    assert_eq!(int4.layer_overrides, "conv1/out=int8-pc-sym");
    for f in ["report.md", "report.html", "records.parquet", "records.csv"] {
        assert!(run.join(f).is_file(), "{f}");
    }
    // The method note names each model's data when they differ.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let each = "Top-1 on labelled (900 items; 100 others held out for calibration, chosen at random (seed 0)) for tf; unlabelled (900 items; 100 others held out for calibration, chosen at random (seed 0)) for tf-outputs-only,";
    assert!(md.contains(each), "{md}");
}

#[test]
fn bad_model_files_fail_their_cases_with_the_reason_and_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(model_path()).unwrap();
    // An op tract does not know, in node "dense1/add".
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let node = proto.graph.as_mut().unwrap().node.iter_mut().find(|n| n.name == "dense1/add").unwrap();
    node.op_type = "FancyAdd".into();
    std::fs::write(dir.path().join("unsupported.onnx"), proto.encode_to_vec()).unwrap();
    std::fs::write(dir.path().join("truncated.onnx"), &bytes[..bytes.len() / 3]).unwrap();
    // 32×32 items for a model that takes 28×28.
    let values = vec![0.5f32; 20 * 32 * 32];
    std::fs::write(dir.path().join("big.npy"), qbench::data::encode_npy_f32(&[20, 1, 32, 32], &values)).unwrap();
    let mut suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-dynamic\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [4]\n{MEASURE}\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = {:?}\nlabels = {:?}\n\n[[datasets]]\nname = \"big\"\nformat = \"npy\"\ninputs = \"big.npy\"\n",
        npz(),
        labels_csv()
    );
    suite.push_str(&onnx_model_entry("good", &model_path(), "[\"N\", 1, 28, 28]", "fm"));
    suite.push_str(&onnx_model_entry("unsupported", Path::new("unsupported.onnx"), "[\"N\", 1, 28, 28]", "fm"));
    suite.push_str(&onnx_model_entry("truncated", Path::new("truncated.onnx"), "[\"N\", 1, 28, 28]", "fm"));
    suite.push_str(&onnx_model_entry("wrong-shape", &model_path(), "[\"N\", 1, 32, 32]", "big"));
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = qbench(dir.path(), &["run", path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("6 of 8 cases failed"), "{err}");
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    let error = |model: &str| {
        let rs: Vec<_> = records.iter().filter(|r| r.model == model).collect();
        assert_eq!(rs.len(), 2, "{model}");
        rs.iter().for_each(|r| assert_eq!(r.status, CaseStatus::Failed, "{model}"));
        rs[0].error.clone().unwrap()
    };
    assert!(records.iter().filter(|r| r.model == "good").all(|r| r.status == CaseStatus::Ok));
    let e = error("unsupported");
    assert!(e.contains("node \"dense1/add\" uses op FancyAdd, which tract does not implement"), "{e}");
    let e = error("truncated");
    assert!(e.contains("truncated.onnx") && e.contains("not a valid ONNX protobuf"), "{e}");
    let e = error("wrong-shape");
    assert!(e.contains("input \"images\" has shape [unk__batch, 1, 28, 28] in the model, but the suite declares [batch, 1, 32, 32]"), "{e}");
}

#[test]
fn suite_errors_for_model_files_name_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let head = format!(
        "name = \"t\"\nschemes = [\"f32\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [4]\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = {:?}\n",
        npz()
    );
    let cases = [
        ("[[models]]\nname = \"m\"\npath = \"x.onnx\"\n", "does not exist"),
        (&format!("[[models]]\nname = \"m\"\npath = {:?}\n", model_path().with_file_name("../../tests/reference/stateful.onnx")), "its open axis at 1"),
        (&format!("[[models]]\nname = \"m\"\npath = {:?}\n[[models.inputs]]\nname = \"images\"\nshape = [\"N\", 1, \"h\", 28]\n", model_path()), "symbol \"h\" is not bound"),
        (&format!("[[models]]\nname = \"m\"\npath = {:?}\n[[models.inputs]]\nname = \"images\"\nshape = [2, 1, 28, 28]\n", model_path()), "batch is fixed to 2, but batch_sizes has 4"),
        (&format!("[[models]]\nname = \"m\"\npath = {:?}\nzoo = \"cnn\"\n", model_path()), "has both zoo and path"),
        ("[[models]]\nname = \"m\"\npath = \"x.tflite\"\n", "reads .onnx model files, BERT .safetensors checkpoints and .gguf language models"),
        ("[[models]]\nname = \"m\"\npath = \"x.gguf\"\n", "does not exist"),
    ];
    for (model, needle) in cases {
        let path = dir.path().join("suite.toml");
        std::fs::write(&path, format!("{head}{model}")).unwrap();
        let o = qbench(dir.path(), &["validate", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{model}: {err}");
        assert!(err.contains(needle) && err.contains("suite.toml:"), "{model}: expected {needle:?} in {err}");
    }
}

#[test]
fn explain_localizes_the_error_of_an_onnx_graph_layer_by_layer() {
    let dir = tempfile::tempdir().unwrap();
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-static-minmax\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [50]\n{MEASURE}\n[calibration]\nitems = 200\n\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = {:?}\nlabels = {:?}\n{}",
        npz(),
        labels_csv(),
        onnx_model_entry("tf", &model_path(), "[\"N\", 1, 28, 28]", "fm"),
    );
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = qbench(dir.path(), &["run", path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    let o = qbench(dir.path(), &["explain", run.to_str().unwrap(), "1", "--items", "800"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = |layer: &str| -> Vec<String> {
        let line =
            out.lines().find(|l| l.starts_with(&format!("| {layer} |"))).unwrap_or_else(|| panic!("{layer}:\n{out}"));
        line.split('|').map(|c| c.trim().to_string()).collect()
    };
    for layer in ["conv1/out", "conv2", "dense1", "dense2"] {
        assert_eq!(row(layer)[2], "int8-static-minmax", "{out}");
    }
    // The first layer's input is exact, so its error is its own: cumulative = alone.
    let first = row("conv1/out");
    assert_eq!(first[3], first[4], "{out}");
    // Errors accumulate: the last layer is worse than the first, cumulatively.
    let db = |s: &str| s.parse::<f64>().unwrap();
    assert!(db(&row("dense2")[3]) < db(&first[3]), "{out}");
    // On the run's 800 evaluation items, the plan's output SQNR is the run's SQNR against the
    // f32 reference (computed separately, by the runner, at another batch size).
    let header = out.lines().next().unwrap();
    let sqnr: f64 = header.split("output SQNR ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let recorded = records[1].ref_sqnr_db.unwrap();
    assert!((sqnr - recorded).abs() < 0.1, "explain {sqnr} dB vs run {recorded} dB");
}

#[test]
fn an_lstm_stays_float_and_is_reported_while_the_layers_around_it_are_quantized() {
    let reference = common::repo().join("tests/reference");
    let decl = InputDecl {
        name: "seq".into(),
        item_shape: vec![6, 5],
        fixed_batch: None,
        bound: Default::default(),
        dtype: Default::default(),
        constant: None,
        batch_axis: 0,
    };
    let m = OnnxModel::load("lstm", &reference.join("lstm-tiny.onnx"), std::slice::from_ref(&decl), &[]).unwrap();
    let layers: Vec<(&str, &LayerOp)> = m.layers.iter().map(|l| (l.name.as_str(), &l.op)).collect();
    assert_eq!(layers, vec![("proj", &LayerOp::MatMul), ("head", &LayerOp::MatMulTransposed)]);
    assert_eq!(m.float_nodes, vec!["lstm (LSTM)".to_string()]);
    // proj 5×5, LSTM W 32×5 + R 32×8 + B 64, head 3×8 + 3.
    assert_eq!(m.parameters, 25 + 160 + 256 + 64 + 24 + 3);

    let data = load_npy("seq", &reference.join("lstm-tiny.input.npy"), None, None).unwrap();
    assert_eq!((data.len(), data.item_shape.as_slice()), (40, &[6, 5][..]));
    let want = load_npy_values(&std::fs::read(reference.join("lstm-tiny.scores.npy")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let run = |v: &Variant| {
        let mut p = BackendId::TRACT_CPU.create(0).prepare(v, 8).unwrap();
        (eval::run_dataset(p.session.as_mut(), BackendId::TRACT_CPU, &data, 8, 3).unwrap(), p.evidence)
    };
    // Five batches of 8 through one session: the LSTM's state must not leak between runs.
    let (f32_out, evidence) = run(&f32_variant(&m, dir.path()));
    let worst = f32_out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "tract vs onnx.reference: {worst}");
    assert!(evidence.contains("a fresh run state per run"), "{evidence}");
    for scheme in [SchemeId::Int8Weights { per_channel: true, symmetric: true }, SchemeId::Int8Dynamic] {
        let plan = Plan::uniform(m.weighted_layers().as_slice(), scheme);
        let v = quant::onnx_graph::apply(&plan, &m, "lstm", dir.path(), None).unwrap();
        assert!(v.weight_storage.ends_with("; kept f32 (no quantized form): lstm (LSTM)"), "{}", v.weight_storage);
        // The weight "proj" shares its name with its node: renamed "proj.value" (tract needs
        // distinct names), the node keeps its name.
        assert!(v.weight_storage.starts_with("proj.value=i8 per-channel sym"), "{}", v.weight_storage);
        // 480 of the 532 parameters are the LSTM's, at 32 bits.
        assert!(v.bits_per_weight > 29.0 && v.bits_per_weight < 30.5, "{}", v.bits_per_weight);
        let (out, evidence) = run(&v);
        let sqnr = qbench::measure::fidelity::sqnr_db(&want, &out).unwrap();
        assert!(sqnr > 25.0, "{}: SQNR {sqnr} dB against the f32 reference", scheme.name());
        if scheme == SchemeId::Int8Dynamic {
            assert_eq!(common::int8_kernels(&evidence), 2, "{evidence}");
        }
    }
}

/// A model whose input is int64 token ids (an embedding table, mean-pooled, a MatMul head;
/// written by onnx's helpers, scored by onnx.reference): the ids reach tract as int64, the head is
/// quantized like any MatMul, and a wrong dtype or a fractional id is an error that says so.
#[test]
fn an_int64_input_takes_token_ids_and_a_wrong_dtype_says_which_to_declare() {
    let reference = common::repo().join("tests/reference");
    let model = reference.join("embedding-bag.onnx");
    let ids = reference.join("embedding-bag.ids.npy");
    let decl = InputDecl {
        name: "ids".into(),
        item_shape: vec![8],
        fixed_batch: None,
        bound: Default::default(),
        dtype: Some(qbench::model::onnx_file::InputDtype::I64),
        constant: None,
        batch_axis: 0,
    };
    let m = OnnxModel::load("bag", &model, std::slice::from_ref(&decl), &[]).unwrap();
    assert_eq!(m.weighted_layers(), vec![("head".to_string(), 16)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bag.f32.onnx");
    std::fs::write(&path, m.to_bytes()).unwrap();
    let v =
        Variant { onnx: path.clone(), candle_artifact: path, input_shape: vec![8], ..f32_variant(&load(), dir.path()) };
    let data = load_npy("ids", &ids, None, None).unwrap();
    let mut p = BackendId::TRACT_CPU.create(0).prepare(&v, 8).unwrap();
    let scores = eval::run_dataset(p.session.as_mut(), BackendId::TRACT_CPU, &data, 8, 4).unwrap();
    let want = load_npy("scores", &reference.join("embedding-bag.scores.npy"), None, None).unwrap();
    let worst = scores.iter().zip(&want.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "tract vs onnx.reference: {worst}");
    // A fractional id is refused, not truncated.
    let mut bad = data.batch_f32(0, 8, 8);
    bad[3] = 2.5;
    let e = p.session.set_input(&bad).err().unwrap().to_string();
    assert!(e.contains("value 2.5 (element 3 of the batch) is not a whole number") && e.contains("i64"), "{e}");
    // Declared f32: the error names the dtype to declare.
    let f32 = Some(qbench::model::onnx_file::InputDtype::F32);
    let e = OnnxModel::load("bag", &model, &[InputDecl { dtype: f32, ..decl.clone() }], &[]).err().unwrap().to_string();
    assert!(e.contains("input \"ids\" is Int64 in the model, but the suite declares f32; set dtype = \"i64\""), "{e}");
    assert!(e.contains("or leave dtype out to take the model's"), "{e}");
    // Left out: the file's own type.
    let undeclared = OnnxModel::load("bag", &model, &[InputDecl { dtype: None, ..decl.clone() }], &[]).unwrap();
    assert_eq!(undeclared.inputs[0].dtype, Some(qbench::model::onnx_file::InputDtype::I64));
    // Through a suite: the head's schemes run on tract (and the float ones on candle-onnx).
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-pc-sym\", \"int8-dynamic\"]\nbackends = [\"tract-cpu\", \"candle-cpu\"]\nbatch_sizes = [8]\n{MEASURE}\n[[datasets]]\nname = \"ids\"\nformat = \"npy\"\ninputs = {ids:?}\n\n[[models]]\nname = \"bag\"\npath = {model:?}\ndataset = \"ids\"\n[[models.inputs]]\nname = \"ids\"\nshape = [\"n\", 8]\n"
    );
    // (No dtype: the file says int64.)
    let suite_path = dir.path().join("suite.toml");
    std::fs::write(&suite_path, suite).unwrap();
    let o =
        qbench(dir.path(), &["run", suite_path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    for r in records.iter().filter(|r| r.backend == "tract-cpu") {
        assert_eq!(r.status, CaseStatus::Ok, "{} {:?}", r.scheme, r.error);
        let agreement = r.ref_top1_agreement.unwrap();
        assert!(agreement > 0.9, "{}: {agreement}", r.scheme);
    }
    let f32_candle = records.iter().find(|r| r.backend == "candle-cpu" && r.scheme == "f32").unwrap();
    if cfg!(feature = "candle-onnx") {
        assert_eq!(f32_candle.status, CaseStatus::Ok, "{:?}", f32_candle.error);
        // Equal to tract's to within float rounding (here bit for bit: no SQNR, "∞").
        assert_eq!(f32_candle.ref_top1_agreement, Some(1.0));
        assert!(f32_candle.ref_sqnr_db.is_none_or(|db| db > 100.0), "{:?}", f32_candle.ref_sqnr_db);
        assert!(f32_candle.ref_max_abs_logit_diff.unwrap() < 1e-5);
    } else {
        assert_eq!(f32_candle.status, CaseStatus::Skipped);
    }
}

/// Two inputs (int64 ids and an f32 mask, a masked mean; onnx.reference's scores): fed from two
/// .npz arrays in declaration order, run on tract (and candle-onnx), calibrated statically through
/// both; an undeclared input and a dataset without the second array are refused with the fix.
#[test]
fn a_model_with_two_inputs_is_fed_from_two_arrays() {
    use qbench::model::onnx_file::InputDtype;
    let reference = common::repo().join("tests/reference");
    let model = reference.join("masked-bag.onnx");
    let npz = reference.join("masked-bag.npz");
    let input = |name: &str, dtype| InputDecl {
        name: name.into(),
        item_shape: vec![8],
        fixed_batch: None,
        bound: Default::default(),
        dtype,
        constant: None,
        batch_axis: 0,
    };
    let decls = [input("ids", Some(InputDtype::I64)), input("mask", Some(InputDtype::F32))];
    let m = OnnxModel::load("mb", &model, &decls, &[]).unwrap();
    let e = OnnxModel::load("mb", &model, &decls[..1], &[]).err().unwrap().to_string();
    assert!(e.contains("its input \"mask\" is not declared"), "{e}");
    let data = qbench::data::load_npy_arrays("mb", &npz, &["ids", "mask"], None).unwrap();
    assert_eq!((data.item_shape.clone(), data.item_parts()), (vec![16], vec![vec![8], vec![8]]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mb.f32.onnx");
    std::fs::write(&path, m.to_bytes()).unwrap();
    let v =
        Variant { onnx: path.clone(), candle_artifact: path, input_shape: vec![8], ..f32_variant(&load(), dir.path()) };
    let want = load_npy("scores", &reference.join("masked-bag.scores.npy"), None, None).unwrap();
    let mut backends = vec![BackendId::TRACT_CPU];
    if cfg!(feature = "candle-onnx") {
        backends.push(BackendId::CANDLE_CPU);
    }
    for b in backends {
        let mut p = b.create(0).prepare(&v, 8).unwrap();
        let scores = eval::run_dataset(p.session.as_mut(), b, &data, 8, 4).unwrap();
        let worst = scores.iter().zip(&want.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{} vs onnx.reference: {worst}", b.name());
    }
    // Through a suite, with a static scheme calibrated on both inputs.
    let suite = |arrays: &str| {
        format!(
            "name = \"t\"\nschemes = [\"f32\", \"int8-dynamic\", \"int8-static-minmax\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [4]\n{MEASURE}\n[calibration]\nitems = 8\n\n[[datasets]]\nname = \"mb\"\nformat = \"npy\"\ninputs = {npz:?}\n{arrays}\n\n[[models]]\nname = \"mb\"\npath = {model:?}\ndataset = \"mb\"\n[[models.inputs]]\nname = \"ids\"\nshape = [\"n\", 8]\ndtype = \"i64\"\n[[models.inputs]]\nname = \"mask\"\nshape = [\"n\", 8]\n"
        )
    };
    let suite_path = dir.path().join("suite.toml");
    std::fs::write(&suite_path, suite("arrays = [\"ids\", \"mask\"]")).unwrap();
    let o =
        qbench(dir.path(), &["run", suite_path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r.status, CaseStatus::Ok, "{} {:?}", r.scheme, r.error);
        assert_eq!(r.eval_items, Some(16), "{}", r.scheme);
        assert!(r.ref_top1_agreement.unwrap() > 0.8, "{} {:?}", r.scheme, r.ref_top1_agreement);
    }
    let fixed = records.iter().find(|r| r.scheme == "int8-static-minmax").unwrap();
    assert!(fixed.activation_quant.as_deref().unwrap().contains("head=u8 static"), "{:?}", fixed.activation_quant);
    // One array for two inputs: the shapes say what is missing.
    std::fs::write(&suite_path, suite("array = \"ids\"")).unwrap();
    let o =
        qbench(dir.path(), &["run", suite_path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has items of shape 8 but model \"mb\" takes 8 + 8 inputs"), "{err}");
}
