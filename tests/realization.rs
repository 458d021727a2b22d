//! The record's realization is observed from the engine, not looked up: each test makes an
//! engine do something other than what is expected of it, and checks the record against an
//! independent observation (the bytes the engine holds, the numbers it computes, the kernels
//! its plan names), never against a table of ours.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use qbench::backend::{BackendId, Compute, LayerRealization, ModelQuery, Realization};
use qbench::model::onnx_file::InputDecl;
use qbench::model::{LoadedModel, ModelKind};
use qbench::quant::{self, Plan, SchemeId};
use qbench::record::{read_records, CaseStatus, Record};
use tract_onnx::pb::{
    tensor_proto::DataType, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

fn npz() -> PathBuf {
    common::repo().join("suites/data/fashion-mnist-1k.npz")
}

fn labels_csv() -> PathBuf {
    common::repo().join("suites/data/fashion-mnist-1k-labels.csv")
}

/// A suite over the shipped 1,000 Fashion-MNIST items with the zoo MLP and `models` appended.
fn suite(dir: &Path, file: &str, schemes: &str, backends: &str, require_native: bool, models: &str) -> PathBuf {
    let text = format!(
        "name = \"t\"\nschemes = {schemes}\nbackends = {backends}\nbatch_sizes = [1]\nrequire_native = {require_native}\n\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 20\n\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = {:?}\narray = \"x\"\nlabels = {:?}\n{models}",
        npz(),
        labels_csv(),
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn zoo_mlp() -> String {
    format!("\n[[models]]\nname = \"mlp\"\nzoo = \"mlp\"\nweights = {:?}\n", common::weights("mlp"))
}

/// Runs `qbench run` in a child process with `env` set; its records.
fn run_child(suite: &Path, out: &Path, env: &[(&str, &str)]) -> Vec<Record> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbench"));
    cmd.args(["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = std::fs::read_dir(out.join("t")).unwrap().next().unwrap().unwrap().path();
    read_records(&run.join("records.jsonl")).unwrap()
}

fn case<'a>(records: &'a [Record], scheme: &str, backend: &str) -> &'a Record {
    records.iter().find(|r| r.scheme == scheme && r.backend == backend).unwrap()
}

/// candle reads `CANDLE_DEQUANTIZE_ALL` once per thread, and then `QMatMul` dequantizes GGML
/// blocks to f32 tensors. The expectation stays `native`; the record says `emulated`, naming
/// what each layer computes in; `require_native` fails exactly those cases, naming the layer.
#[test]
fn candle_dequantize_all_is_observed_as_emulated_and_require_native_names_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let schemes = r#"["f32", "q4_0", "q4k"]"#;
    let backends = r#"["candle-cpu", "tract-cpu"]"#;
    let plain = suite(dir.path(), "plain.toml", schemes, backends, false, &zoo_mlp());
    let normal = run_child(&plain, &dir.path().join("a"), &[]);
    let dequantized = run_child(&plain, &dir.path().join("b"), &[("CANDLE_DEQUANTIZE_ALL", "1")]);
    for scheme in ["q4_0", "q4k"] {
        let (n, d) = (case(&normal, scheme, "candle-cpu"), case(&dequantized, scheme, "candle-cpu"));
        assert_eq!((n.status, d.status), (CaseStatus::Ok, CaseStatus::Ok), "{scheme}: {:?} {:?}", n.error, d.error);
        // What candle was expected to do, and did without the switch: its GGML kernels.
        assert_eq!((n.expected_realization.as_str(), n.realization.as_str()), ("native", "native"), "{scheme}");
        assert!(n.layer_evidence.iter().all(|l| l.compute == Compute::Ggml(scheme.into())), "{:?}", n.layer_evidence);
        // With the switch: the same expectation, but candle says it computes in f32.
        assert_eq!((d.expected_realization.as_str(), d.realization.as_str()), ("native", "emulated"), "{scheme}");
        for l in &d.layer_evidence {
            assert_eq!((l.compute.clone(), l.realization), (Compute::F32, LayerRealization::Emulated), "{l:?}");
            assert_eq!(l.stored.to_string(), scheme, "the file still holds {scheme} blocks: {l:?}");
        }
        // Independently of what candle says: the weights it holds grew to f32 (about 7× the
        // blocks for 4.5 bits a weight)...
        let (held_n, held_d) = (n.weights_bytes.unwrap(), d.weights_bytes.unwrap());
        assert!(held_d > 5 * held_n, "{scheme}: {held_n} → {held_d} bytes held");
        // ...and it computes what tract computes on the same dequantized weights (f32 math,
        // no 8-bit activations inside QMatMul): the same error against f32, to 0.05 dB, where
        // the native kernels' differs more.
        let err = |r: &Record| (r.ref_sqnr_db.unwrap(), r.ref_max_abs_logit_diff.unwrap());
        let (tract_d, tract_n) =
            (err(case(&dequantized, scheme, "tract-cpu")), err(case(&normal, scheme, "tract-cpu")));
        assert!(
            (err(d).0 - tract_d.0).abs() < 1e-3 && (err(d).1 - tract_d.1).abs() < 1e-4,
            "{scheme}: {:?} vs tract {tract_d:?}",
            err(d)
        );
        assert!(
            (err(n).0 - tract_n.0).abs() > 1e-3 || (err(n).1 - tract_n.1).abs() > 1e-3,
            "{scheme}: the native kernels should differ from f32 math: {:?} vs {tract_n:?}",
            err(n)
        );
    }
    // The f32 layers are kept float either way.
    assert_eq!(case(&dequantized, "f32", "candle-cpu").realization, "native");
    // The report says which rows ran otherwise than expected, and names the layer.
    let run = std::fs::read_dir(dir.path().join("b/t")).unwrap().next().unwrap().unwrap().path();
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    for scheme in ["q4_0", "q4k"] {
        let line = format!("- mlp / {scheme} / candle-cpu / batch 1: expected native, observed emulated; fc1: {scheme} stored {scheme}, computed in f32");
        assert!(report.contains(&line), "{line}\n{report}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("Realized otherwise than expected"), "report.html lists the mismatches too");
    // environment.json records the switch that changed what candle ran.
    let env = std::fs::read_to_string(run.join("environment.json")).unwrap();
    assert!(env.contains("CANDLE_DEQUANTIZE_ALL=1"), "{env}");

    // require_native: the cases observed non-native fail, naming the layer; no other does.
    let strict = suite(dir.path(), "strict.toml", schemes, r#"["candle-cpu"]"#, true, &zoo_mlp());
    let ok = run_child(&strict, &dir.path().join("c"), &[]);
    assert!(ok.iter().all(|r| r.status == CaseStatus::Ok), "{:?}", ok.iter().map(|r| &r.error).collect::<Vec<_>>());
    let refused = run_child(&strict, &dir.path().join("d"), &[("CANDLE_DEQUANTIZE_ALL", "1")]);
    for r in &refused {
        if r.scheme == "f32" {
            assert_eq!(r.status, CaseStatus::Ok, "{:?}", r.error);
        } else {
            let e = r.error.as_deref().unwrap_or_default();
            assert_eq!(r.status, CaseStatus::Failed, "{}: {e}", r.scheme);
            assert!(e.contains("require_native") && e.contains("fc1:") && e.contains("emulated"), "{e}");
            assert_eq!(r.realization, "emulated");
        }
    }
}

/// `qbench validate` says, before anything runs, which cases will be skipped and which
/// `require_native` will refuse, as the backends answer; and refuses a model file that cannot be
/// read, as a run would fail its cases.
#[test]
fn validate_reports_what_the_backends_expect_and_reads_the_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let strict = suite(
        dir.path(),
        "strict.toml",
        r#"["f32", "q4_0", "bf16"]"#,
        r#"["candle-cpu", "tract-cpu"]"#,
        true,
        &zoo_mlp(),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_qbench")).args(["validate", strict.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("1 will be skipped: tract-cpu: tract 0.23 has no bfloat16 datum type"), "{out}");
    assert!(out.contains("1 will fail (require_native): tract-cpu expects q4_0 to run emulated"), "{out}");
    assert!(out.contains("1 will fail (require_native): candle-cpu expects bf16 to run emulated"), "{out}");
    assert!(!out.contains("candle-cpu expects q4_0"), "candle runs q4_0 natively: {out}");
    // A truncated model file: validate fails, naming it.
    let bytes = std::fs::read(common::weights("mlp")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let models = format!("\n[[models]]\nname = \"cut\"\nzoo = \"mlp\"\nweights = {cut:?}\n");
    let broken = suite(dir.path(), "broken.toml", r#"["f32"]"#, r#"["candle-cpu"]"#, false, &models);
    let o = Command::new(env!("CARGO_BIN_EXE_qbench")).args(["validate", broken.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cut.safetensors") && err.contains("not a valid safetensors file"), "{err}");
}

/// The test-only switch that makes every backend expect `native` changes what runs (nothing
/// is skipped) but no realization: they are observed.
#[test]
fn forcing_every_expectation_to_native_changes_no_realization() {
    let dir = tempfile::tempdir().unwrap();
    let path = suite(
        dir.path(),
        "forced.toml",
        r#"["f32", "f16", "bf16", "int8-pc-sym", "int8-dynamic", "q4_0"]"#,
        r#"["candle-cpu", "tract-cpu"]"#,
        false,
        &zoo_mlp(),
    );
    let s = qbench::suite::Suite::load(&path).unwrap();
    let run = |assume_native: bool, out: &str| {
        let options =
            qbench::run::RunOptions { out_dir: Some(dir.path().join(out)), assume_native, ..Default::default() };
        qbench::run::run(&s, &options, &mut |_| {}).unwrap().records
    };
    let (normal, forced) = (run(false, "normal"), run(true, "forced"));
    assert_eq!(normal.len(), forced.len());
    let mut compared = 0;
    for (a, b) in normal.iter().zip(&forced) {
        let what = format!("{} {}", a.scheme, a.backend);
        assert_eq!(b.expected_realization, "native", "{what}");
        match (a.status, b.status) {
            (CaseStatus::Ok, CaseStatus::Ok) => {
                compared += 1;
                assert_eq!(a.realization, b.realization, "{what}");
                let layers = |r: &Record| r.layer_evidence.iter().map(|l| l.realization).collect::<Vec<_>>();
                assert_eq!(layers(a), layers(b), "{what}");
            }
            // Skipped by its backend's answer (tract has no bf16): forced to run, it fails in
            // the engine and claims nothing.
            (CaseStatus::Skipped, CaseStatus::Failed) => {
                assert_eq!(a.realization, "unsupported", "{what}");
                assert_eq!(b.realization, "not-observed", "{what}: {:?}", b.error);
            }
            other => panic!("{what}: {other:?} {:?} {:?}", a.error, b.error),
        }
    }
    assert_eq!(compared, normal.len() - 1, "every case but tract's bf16 runs in both");
    // Some of them differ from native: the comparison had something to compare.
    assert!(normal.iter().any(|r| r.realization == "emulated") && normal.iter().any(|r| r.realization == "native"));
}

/// Weights of a `widths[0]`-…-`widths[n]` MLP, seeded (uniform ±1/√fan-in).
fn mlp_weights(widths: &[usize]) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    widths
        .windows(2)
        .map(|w| {
            let bound = 1.0 / (w[0] as f32).sqrt();
            let weight = (0..w[0] * w[1]).map(|_| next() * bound).collect();
            let bias = (0..w[1]).map(|_| next() * bound).collect();
            (weight, bias)
        })
        .collect()
}

fn tensor(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn f32s(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    tensor(name, dims, DataType::Float, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn value(name: &str, dims: Option<&[i64]>) -> ValueInfoProto {
    use tract_onnx::pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
    let shape = dims.map(|d| TensorShapeProto {
        dim: std::iter::once(Dimension { value: Some(Dim::DimParam("N".into())), ..Default::default() })
            .chain(d.iter().map(|&x| Dimension { value: Some(Dim::DimValue(x)), ..Default::default() }))
            .collect(),
    });
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: DataType::Float as i32, shape })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An MLP as an ONNX file: `MatMul` (weights `[in, out]`) + `Add` + `Relu` per layer, layers
/// named `fc1`, `fc2`…. With `qdq`, written as a quantized model is published (onnxruntime's
/// QDQ format): every weight an i8 constant (one scale per output column) behind a
/// `DequantizeLinear`, and every layer input quantized and dequantized to u8.
fn mlp_onnx(widths: &[usize], qdq: bool) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut x = "x".to_string();
    let layers = mlp_weights(widths);
    for (i, (w, b)) in layers.iter().enumerate() {
        let (fan_in, fan_out) = (widths[i], widths[i + 1]);
        let l = format!("fc{}", i + 1);
        let weight = if qdq {
            // Per output column (axis 1 of [in, out]): scale = max |w| / 127.
            let scales: Vec<f32> = (0..fan_out)
                .map(|c| (0..fan_in).map(|r| w[r * fan_out + c].abs()).fold(0.0f32, f32::max) / 127.0)
                .collect();
            let q: Vec<u8> = (0..fan_in * fan_out)
                .map(|k| ((w[k] / scales[k % fan_out]).round_ties_even().clamp(-127.0, 127.0) as i8) as u8)
                .collect();
            inits.push(tensor(&format!("{l}.wq"), &[fan_in, fan_out], DataType::Int8, q));
            inits.push(f32s(&format!("{l}.ws"), &[fan_out], &scales));
            inits.push(tensor(&format!("{l}.wz"), &[fan_out], DataType::Int8, vec![0; fan_out]));
            let mut dq = node(
                "DequantizeLinear",
                &format!("{l}.w_dq"),
                &[&format!("{l}.wq"), &format!("{l}.ws"), &format!("{l}.wz")],
                &format!("{l}.w"),
            );
            dq.attribute.push(tract_onnx::pb::AttributeProto {
                name: "axis".into(),
                i: 1,
                r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
                ..Default::default()
            });
            nodes.push(dq);
            // The layer's input, through u8 with a fixed scale (inputs are in [0, 1] or ReLU'd).
            inits.push(f32s(&format!("{l}.xs"), &[], &[4.0 / 255.0]));
            inits.push(tensor(&format!("{l}.xz"), &[], DataType::Uint8, vec![0]));
            let args = [x.as_str(), &format!("{l}.xs"), &format!("{l}.xz")].map(|s| s.to_string());
            nodes.push(node(
                "QuantizeLinear",
                &format!("{l}.x_q"),
                &[&args[0], &args[1], &args[2]],
                &format!("{l}.xq"),
            ));
            nodes.push(node(
                "DequantizeLinear",
                &format!("{l}.x_dq"),
                &[&format!("{l}.xq"), &args[1], &args[2]],
                &format!("{l}.xdq"),
            ));
            x = format!("{l}.xdq");
            format!("{l}.w")
        } else {
            inits.push(f32s(&format!("{l}.w"), &[fan_in, fan_out], w));
            format!("{l}.w")
        };
        inits.push(f32s(&format!("{l}.b"), &[fan_out], b));
        nodes.push(node("MatMul", &l, &[&x, &weight], &format!("{l}.mm")));
        let last = i + 1 == layers.len();
        let added = if last { "logits".to_string() } else { format!("{l}.add") };
        nodes.push(node("Add", &format!("{l}.bias"), &[&format!("{l}.mm"), &format!("{l}.b")], &added));
        x = if last {
            added
        } else {
            nodes.push(node("Relu", &format!("relu{}", i + 1), &[&added], &format!("relu{}", i + 1)));
            format!("relu{}", i + 1)
        };
    }
    let graph = GraphProto {
        name: "mlp".into(),
        node: nodes,
        initializer: inits,
        input: vec![value("x", Some(&[widths[0] as i64]))],
        output: vec![value("logits", None)],
        ..Default::default()
    };
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn onnx_kind(path: &Path, width: usize) -> ModelKind {
    let decl = InputDecl {
        name: "x".into(),
        item_shape: vec![width],
        fixed_batch: None,
        bound: Default::default(),
        dtype: Default::default(),
        constant: None,
        batch_axis: 0,
    };
    ModelKind::Onnx { path: path.to_path_buf(), inputs: vec![decl], outputs: vec![] }
}

/// A model published already quantized (QDQ int8, activations too) is an int8 graph whose
/// matrix products tract runs on its f32 kernels: asked for as is (the f32 scheme), tract is
/// expected to run it natively, and the record says it ran emulated, layer by layer, as tract's
/// plan shows (f32 kernels, no i32 one). The same model quantized by qbench's int8-dynamic runs
/// tract's int8 kernels: native.
#[test]
fn a_quantized_graph_that_tract_runs_on_float_kernels_is_observed_emulated() {
    let dir = tempfile::tempdir().unwrap();
    let widths = [784, 64, 32, 10];
    let path = dir.path().join("mlp-qdq.onnx");
    std::fs::write(&path, mlp_onnx(&widths, true)).unwrap();
    let model = LoadedModel::load("qdq", &onnx_kind(&path, 784), dir.path()).unwrap();
    let quant::Variant { layer_schemes, .. } = quant::f32_variant(&model);
    let names: Vec<&str> = layer_schemes.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(names, ["fc1", "fc2", "fc3"], "the file's quantized products are its layers too");
    // What tract-cpu expects of the plan (f32: nothing to quantize), and what it does.
    let plan = Plan::uniform(model.layers.as_slice(), SchemeId::F32);
    let tract = BackendId::TRACT_CPU.create(0);
    assert_eq!(tract.capability(ModelQuery::loaded(&model), &plan, 1), Realization::Native);
    let mut p = tract.prepare(&quant::f32_variant(&model), 4).unwrap();
    p.observe();
    assert_eq!(common::int8_kernels(&p.evidence), 0, "{}", p.evidence);
    assert!(p.evidence.contains("mmm_f32"), "{}", p.evidence);
    for l in &p.layers {
        assert!(l.stored.to_string().starts_with("i8 → DequantizeLinear"), "{l:?}");
        assert_eq!((l.compute.clone(), l.realization), (Compute::F32, LayerRealization::Emulated), "{l:?}");
    }

    // Through a run: the record carries both answers.
    let models = format!(
        "\n[[models]]\nname = \"qdq\"\npath = {path:?}\n[[models.inputs]]\nname = \"x\"\nshape = [\"N\", 784]\n"
    );
    let npy = suite_for_flat_inputs(dir.path(), &models);
    let records = run_child(&npy, &dir.path().join("out"), &[]);
    let r = case(&records, "f32", "tract-cpu");
    assert_eq!(r.status, CaseStatus::Ok, "{:?}", r.error);
    assert_eq!((r.expected_realization.as_str(), r.realization.as_str()), ("native", "emulated"));
    assert_eq!(r.layer_evidence.len(), 3);

    // The f32 model quantized by int8-dynamic: tract's int8 kernels, native, as its plan names.
    let f32_path = dir.path().join("mlp.onnx");
    std::fs::write(&f32_path, mlp_onnx(&widths, false)).unwrap();
    let model = LoadedModel::load("mlp", &onnx_kind(&f32_path, 784), dir.path()).unwrap();
    let plan = Plan::uniform(model.layers.as_slice(), SchemeId::Int8Dynamic);
    let v = quant::apply_model(&model, &plan, dir.path(), None).unwrap();
    let mut p = tract.prepare(&v, 4).unwrap();
    p.observe();
    assert_eq!(common::int8_kernels(&p.evidence), 3, "{}", p.evidence);
    for l in &p.layers {
        assert_eq!((l.compute.clone(), l.realization), (Compute::Int8, LayerRealization::Native), "{l:?}");
    }
}

/// The same published QDQ model on ONNX Runtime: its QDQ fusion turns each
/// `DequantizeLinear → MatMul → QuantizeLinear` into an integer op (`QGemm`) that the file does
/// not name, and its profile shows it ran: fc1 and fc2 are observed native, layer by layer,
/// where tract's plan showed f32 kernels. The last layer's output is not quantized, so there is
/// nothing to fuse: ONNX Runtime runs a float `Gemm` and dequantizes its weight on every run,
/// and the record says emulated. The logits agree with tract's.
#[test]
#[cfg(feature = "ort")]
fn a_published_qdq_graph_runs_on_onnx_runtime_integer_kernels_where_its_fusion_applies() {
    let dir = tempfile::tempdir().unwrap();
    let widths = [784, 64, 32, 10];
    let path = dir.path().join("mlp-qdq.onnx");
    std::fs::write(&path, mlp_onnx(&widths, true)).unwrap();
    let file = std::fs::read(&path).unwrap();
    let model = LoadedModel::load("qdq", &onnx_kind(&path, 784), dir.path()).unwrap();
    let variant = quant::f32_variant(&model);
    let ort = BackendId::ORT_CPU.create(0);
    let plan = Plan::uniform(model.layers.as_slice(), SchemeId::F32);
    assert_eq!(ort.capability(ModelQuery::loaded(&model), &plan, 1), Realization::Native);
    let mut p = ort.prepare(&variant, 4).unwrap();
    p.observe();
    assert_eq!(p.layers.len(), 3);
    for (l, name) in p.layers.iter().zip(["fc1", "fc2", "fc3"]) {
        // Each layer is its own node of ONNX Runtime's graph, named after it.
        assert!(l.kernel.contains(&format!("(node \"{name}")), "{l:?}");
        assert!(l.stored.to_string().starts_with("i8 → DequantizeLinear"), "{l:?}");
        let op = l.kernel.split(' ').next().unwrap();
        if name == "fc3" {
            assert_eq!((l.compute.clone(), l.realization), (Compute::F32, LayerRealization::Emulated), "{l:?}");
            assert!(l.per_call.as_deref().is_some_and(|w| w.contains("DequantizeLinear")), "{l:?}");
        } else {
            assert_eq!((l.compute.clone(), l.realization), (Compute::Int8, LayerRealization::Native), "{l:?}");
            // Not an op of the file: ONNX Runtime's fused one.
            assert!(!file.windows(op.len()).any(|w| w == op.as_bytes()), "{op} is in the file");
        }
    }
    let planned: Vec<&str> = variant.plan.layers.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(qbench::backend::realization::observed(&p.layers, &planned), Realization::Emulated);
    let input: Vec<f32> = (0..4 * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let logits = |p: &mut qbench::backend::Prepared| {
        p.session.set_input(&input).unwrap();
        p.session.run().unwrap();
        p.session.output().unwrap()
    };
    let a = logits(&mut p);
    let b = logits(&mut BackendId::TRACT_CPU.create(0).prepare(&variant, 4).unwrap());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff <= 0.02 * scale, "ort vs tract on the QDQ model: max |Δ| {diff} of {scale}");
}

/// Weight-only int8 on a `MatMul` layer with no bias to fuse (the embedding-bag model's head):
/// ONNX Runtime fuses `DequantizeLinear → MatMul` into `MatMulNBits` with 8-bit weights at
/// accuracy level 4, which quantizes the activation and runs an int8 dot product: the int8
/// weights' own kernel, observed native (and the kernel says the activation is quantized),
/// where tract computes the same file in f32 (emulated).
#[test]
#[cfg(feature = "ort")]
fn weight_only_int8_matmuls_run_onnx_runtime_8_bit_matmulnbits_natively() {
    let dir = tempfile::tempdir().unwrap();
    let decl = InputDecl {
        name: "ids".into(),
        item_shape: vec![8],
        fixed_batch: None,
        bound: Default::default(),
        dtype: Some(qbench::model::onnx_file::InputDtype::I64),
        constant: None,
        batch_axis: 0,
    };
    let path = common::repo().join("tests/reference/embedding-bag.onnx");
    let kind = ModelKind::Onnx { path, inputs: vec![decl], outputs: vec![] };
    let model = LoadedModel::load("bag", &kind, dir.path()).unwrap();
    let plan = Plan::uniform(model.layers.as_slice(), SchemeId::Int8Weights { per_channel: true, symmetric: true });
    let v = quant::apply_model(&model, &plan, dir.path(), None).unwrap();
    let mut ort = BackendId::ORT_CPU.create(0).prepare(&v, 4).unwrap();
    ort.observe();
    let mut tract = BackendId::TRACT_CPU.create(0).prepare(&v, 4).unwrap();
    tract.observe();
    assert_eq!(ort.layers.len(), 1);
    let (o, t) = (&ort.layers[0], &tract.layers[0]);
    assert_eq!(o.layer, "head");
    assert!(o.kernel.starts_with("MatMulNBits (8-bit weights, accuracy level 4"), "{o:?}");
    assert_eq!((o.compute.clone(), o.realization), (Compute::Int8, LayerRealization::Native), "{o:?}");
    assert_eq!((t.compute.clone(), t.realization), (Compute::F32, LayerRealization::Emulated), "{t:?}");
}

/// Two convolutions, each followed by a ReLU, whose weights ONNX Runtime re-lays out under new
/// names (its NCHWc transform) and whose fused nodes it names after the ReLUs (`r1_nchwc`): no
/// name and no bias tells the layers apart. With `shared`, both read one weight; otherwise the
/// second's weights are the first's reversed (the same values, another order).
#[cfg(feature = "ort")]
fn twin_convs(shared: bool) -> Vec<u8> {
    let c = 16usize;
    let w1: Vec<f32> = (0..c * c * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0).collect();
    let w2: Vec<f32> = w1.iter().rev().copied().collect();
    let mut inits = vec![f32s("w1", &[c, c, 3, 3], &w1)];
    if !shared {
        inits.push(f32s("w2", &[c, c, 3, 3], &w2));
    }
    let pads = tract_onnx::pb::AttributeProto {
        name: "pads".into(),
        ints: vec![1, 1, 1, 1],
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ..Default::default()
    };
    let mut c1 = node("Conv", "c1", &["x", "w1"], "c1.y");
    c1.attribute.push(pads.clone());
    let mut c2 = node("Conv", "c2", &["r1", if shared { "w1" } else { "w2" }], "c2.y");
    c2.attribute.push(pads);
    let nodes = vec![c1, node("Relu", "r1", &["c1.y"], "r1"), c2, node("Relu", "r2", &["c2.y"], "y")];
    let graph = GraphProto {
        name: "twins".into(),
        node: nodes,
        initializer: inits,
        input: vec![value("x", Some(&[c as i64, 6, 6]))],
        output: vec![value("y", None)],
        ..Default::default()
    };
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Two branches of one net, `left` and `right`, that share a weight and differ in their biases,
/// each followed by a ReLU whose output names ONNX Runtime's fused node (`rl_nchwc`,
/// `rr_nchwc`), then added.
#[cfg(feature = "ort")]
fn siamese_convs() -> Vec<u8> {
    let c = 16usize;
    let w: Vec<f32> = (0..c * c * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0).collect();
    let bias = |k: f32| (0..c).map(|i| k * (i as f32 + 1.0) / 100.0).collect::<Vec<f32>>();
    let inits = vec![f32s("w", &[c, c, 3, 3], &w), f32s("bl", &[c], &bias(1.0)), f32s("br", &[c], &bias(-2.0))];
    let pads = tract_onnx::pb::AttributeProto {
        name: "pads".into(),
        ints: vec![1, 1, 1, 1],
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ..Default::default()
    };
    let mut left = node("Conv", "left", &["x", "w", "bl"], "left.y");
    left.attribute.push(pads.clone());
    let mut right = node("Conv", "right", &["x", "w", "br"], "right.y");
    right.attribute.push(pads);
    let nodes = vec![
        left,
        right,
        node("Relu", "relu_l", &["left.y"], "rl"),
        node("Relu", "relu_r", &["right.y"], "rr"),
        node("Add", "sum", &["rl", "rr"], "y"),
    ];
    let graph = GraphProto {
        name: "siamese".into(),
        node: nodes,
        initializer: inits,
        input: vec![value("x", Some(&[c as i64, 6, 6]))],
        output: vec![value("y", None)],
        ..Default::default()
    };
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Each layer gets its own node of ONNX Runtime's graph even when its weight is shared with, or
/// a permutation of, another layer's: both are observed, on different nodes.
#[test]
#[cfg(feature = "ort")]
fn layers_with_shared_or_permuted_weights_are_each_found_on_their_own_onnx_runtime_node() {
    let dir = tempfile::tempdir().unwrap();
    for shared in [false, true] {
        let path = dir.path().join(format!("twins-{shared}.onnx"));
        std::fs::write(&path, twin_convs(shared)).unwrap();
        let decl = InputDecl {
            name: "x".into(),
            item_shape: vec![16, 6, 6],
            fixed_batch: None,
            bound: Default::default(),
            dtype: Default::default(),
            constant: None,
            batch_axis: 0,
        };
        let kind = ModelKind::Onnx { path: path.clone(), inputs: vec![decl], outputs: vec![] };
        let model = LoadedModel::load("twins", &kind, dir.path()).unwrap();
        let mut p = BackendId::ORT_CPU.create(0).prepare(&quant::f32_variant(&model), 2).unwrap();
        p.observe();
        let kernels: Vec<&str> = p.layers.iter().map(|l| l.kernel.as_str()).collect();
        assert_eq!(p.layers.len(), 2, "{kernels:?}");
        assert_ne!(kernels[0], kernels[1], "shared {shared}: one node for two layers");
        for l in &p.layers {
            assert_eq!((l.compute.clone(), l.realization), (Compute::F32, LayerRealization::KeptFloat), "{l:?}");
        }
        // In graph order: the first convolution's node comes first (ONNX Runtime names a fused
        // node after the ReLU's output: `r1_nchwc`, then `y_nchwc`).
        assert!(
            kernels[0].contains("\"r1_nchwc\"") && kernels[1].contains("\"y_nchwc\""),
            "shared {shared}: {kernels:?}"
        );
    }
    // Parallel branches sharing the weight: each is found by its own bias, whatever order
    // ONNX Runtime puts the branches in.
    let path = dir.path().join("siamese.onnx");
    std::fs::write(&path, siamese_convs()).unwrap();
    let decl = InputDecl {
        name: "x".into(),
        item_shape: vec![16, 6, 6],
        fixed_batch: None,
        bound: Default::default(),
        dtype: Default::default(),
        constant: None,
        batch_axis: 0,
    };
    let kind = ModelKind::Onnx { path, inputs: vec![decl], outputs: vec![] };
    let model = LoadedModel::load("siamese", &kind, dir.path()).unwrap();
    let mut p = BackendId::ORT_CPU.create(0).prepare(&quant::f32_variant(&model), 2).unwrap();
    p.observe();
    let found: Vec<(&str, &str)> = p.layers.iter().map(|l| (l.layer.as_str(), l.kernel.as_str())).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    let of = |layer: &str| found.iter().find(|(l, _)| *l == layer).unwrap().1;
    assert!(of("left").contains("\"rl_nchwc\"") && of("right").contains("\"rr_nchwc\""), "{found:?}");
}

/// A suite whose dataset is the shipped items flattened to 784 values.
fn suite_for_flat_inputs(dir: &Path, models: &str) -> PathBuf {
    let data = qbench::data::load_npy("fm", &npz(), Some("x"), None).unwrap().slice(0..64);
    let flat = dir.join("flat.npy");
    std::fs::write(&flat, qbench::data::encode_npy_f32(&[data.len(), 784], &data.values)).unwrap();
    let text = format!(
        "name = \"t\"\nschemes = [\"f32\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [4]\n\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 20\n\n[[datasets]]\nname = \"flat\"\nformat = \"npy\"\ninputs = {flat:?}\n{models}"
    );
    let path = dir.join("flat-suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// tract folds a dequantization into f32 constants only within a memory budget (4 MiB of
/// output, or no more than the input it reads): the int8 weights of a 784-4096-4096-10 MLP are
/// too big, and stay i8 constants dequantized on every run, which the evidence says. The last
/// layer's (4096×10) is folded.
#[test]
fn weights_tract_does_not_fold_are_dequantized_on_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let widths = [784, 4096, 4096, 10];
    let path = dir.path().join("wide.onnx");
    std::fs::write(&path, mlp_onnx(&widths, false)).unwrap();
    let model = LoadedModel::load("wide", &onnx_kind(&path, 784), dir.path()).unwrap();
    let plan = Plan::uniform(model.layers.as_slice(), SchemeId::Int8Weights { per_channel: true, symmetric: true });
    let v = quant::apply_model(&model, &plan, dir.path(), None).unwrap();
    let mut p = BackendId::TRACT_CPU.create(0).prepare(&v, 1).unwrap();
    p.observe();
    let by_layer = |name: &str| p.layers.iter().find(|l| l.layer == name).unwrap();
    for big in ["fc1", "fc2"] {
        let l = by_layer(big);
        let per_call = l.per_call.as_deref().unwrap_or_else(|| panic!("{big}: no per-call work in {l:?}"));
        assert!(per_call.contains("recompute the weight"), "{per_call}");
        assert_eq!((l.compute.clone(), l.realization), (Compute::F32, LayerRealization::Emulated), "{l:?}");
    }
    assert_eq!(by_layer("fc3").per_call, None, "the small weight is folded into a constant");
    // Independently: the constants tract holds are the i8 weights, not their f32 expansion.
    let f32_bytes: u64 = widths.windows(2).map(|w| 4 * (w[0] * w[1]) as u64).sum();
    let held = p.weights_bytes.unwrap();
    assert!(held < f32_bytes / 3, "tract holds {held} bytes against {f32_bytes} for f32 weights");
}

/// The pipeline can hold a group of prepared sessions at once (a scheme and its f32 row,
/// measured in alternating rounds): four sessions on two engines, alive together and run in
/// turns, each give exactly what the same variant gives in a session of its own, and each keeps
/// its own observation.
#[test]
fn prepared_sessions_alive_together_run_in_alternating_rounds_as_alone() {
    use qbench::backend::Prepared;
    use qbench::data::load_idx;
    use qbench::model::Reference;
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = Reference::load("mlp", qbench::zoo::ZooModelId::Mlp, &common::weights("mlp")).unwrap();
    let batch = 16;
    let cases = [
        (SchemeId::F32, BackendId::CANDLE_CPU),
        (SchemeId::from_name("q8_0").unwrap(), BackendId::CANDLE_CPU),
        (SchemeId::F32, BackendId::TRACT_CPU),
        (SchemeId::Int8Dynamic, BackendId::TRACT_CPU),
    ];
    let variants: Vec<_> = cases
        .iter()
        .map(|(s, _)| quant::apply(&Plan::uniform(reference.zoo, *s), &reference, dir.path(), None).unwrap())
        .collect();
    let prepare = |i: usize| -> Prepared {
        let mut p = cases[i].1.create(0).prepare(&variants[i], batch).unwrap();
        p.observe();
        p
    };
    let run = |p: &mut Prepared, round: usize| -> Vec<f32> {
        p.session.set_input(&data.batch_f32(round * batch, batch, batch)).unwrap();
        p.session.run().unwrap();
        p.session.output().unwrap()
    };
    // Each variant alone: a session of its own, dropped before the next is made.
    let alone: Vec<Vec<Vec<f32>>> = (0..cases.len())
        .map(|i| {
            let mut p = prepare(i);
            (0..3).map(|round| run(&mut p, round)).collect()
        })
        .collect();
    // All four alive at once, run in turns, round by round.
    let mut group: Vec<Prepared> = (0..cases.len()).map(prepare).collect();
    for round in [0, 1, 2] {
        for (i, p) in group.iter_mut().enumerate() {
            let (scheme, backend) = cases[i];
            assert_eq!(run(p, round), alone[i][round], "{} on {}, round {round}", scheme.name(), backend.name());
        }
    }
    // The sessions are distinct: the quantized rows differ from their f32 rows, and each kept the
    // observation of its own variant (f32 is kept float, the quantized layers computed in their
    // format's kernels: GGML blocks on candle, tract's integer kernels for dynamic int8).
    for (q, f) in [(1, 0), (3, 2)] {
        assert_ne!(alone[q][0], alone[f][0], "{} gave the f32 logits", cases[q].0.name());
    }
    let computes = |p: &Prepared| p.layers.iter().map(|l| l.compute.clone()).collect::<Vec<_>>();
    assert!(group[0].layers.iter().all(|l| l.realization == LayerRealization::KeptFloat), "{:?}", group[0].layers);
    assert!(computes(&group[1]).iter().all(|c| *c == Compute::Ggml("q8_0".into())), "{:?}", group[1].layers);
    assert!(group[2].layers.iter().all(|l| l.realization == LayerRealization::KeptFloat), "{:?}", group[2].layers);
    assert!(computes(&group[3]).iter().all(|c| *c == Compute::Int8), "{:?}", group[3].layers);
}
