//! A BERT checkpoint (safetensors + config.json) on candle-transformers: a 2-layer BERT with
//! random weights, built by the test, against an independent forward pass written here in f64
//! (embeddings, LayerNorm, multi-head attention with the padding mask, erf GELU, mean pooling),
//! for f32 and for int8 weights dequantized by the test's own formula.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use qbench::backend::BackendId;
use qbench::data::{encode_npy_f32, load_npy};
use qbench::measure::{eval, fidelity};
use qbench::model::bert::BertCheckpoint;
use qbench::quant::{self, Plan, SchemeId};
use qbench::record::CaseStatus;
use qbench::report::jsonl::read_records;

const CONFIG: &str = r#"{
  "model_type": "bert", "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1, "max_position_embeddings": 16, "type_vocab_size": 2,
  "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0
}"#;
const ITEMS: usize = 24;
const SEQ: usize = 8;

/// Writes the checkpoint (random weights, as candle-nn initializes them) and token-id rows
/// with trailing padding; returns (checkpoint, dataset).
fn write_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let config: candle_transformers::models::bert::Config = serde_json::from_str(CONFIG).unwrap();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    candle_transformers::models::bert::BertModel::load(vb, &config).unwrap();
    // Random weights from a fixed seed (candle-nn's initializers draw from an unseeded RNG),
    // so every run tests the same model: uniform ±1/√fan-in for matrices, ±1 for embeddings,
    // LayerNorms perturbed around 1 and 0 so their parameters matter.
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let (center, half) = match (name.contains("LayerNorm"), name.ends_with(".weight"), name.contains("embeddings"))
        {
            (true, true, _) => (1.0, 0.1),
            (true, false, _) => (0.0, 0.1),
            (false, _, true) => (0.0, 1.0),
            (false, true, false) => (0.0, 1.0 / (dims[dims.len() - 1] as f32).sqrt()),
            (false, false, false) => (0.0, 0.02),
        };
        let values: Vec<f32> = (0..n).map(|_| center + rng.random_range(-half..half)).collect();
        var.set(&Tensor::from_vec(values, dims, &Device::Cpu).unwrap()).unwrap();
    }
    drop(data);
    let model = dir.join("model.safetensors");
    varmap.save(&model).unwrap();
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    let mut ids = Vec::new();
    for i in 0..ITEMS {
        let len = 3 + i % (SEQ - 2);
        ids.extend((0..SEQ).map(|t| if t < len { (1 + (i * 7 + t * 13) % 49) as f32 } else { 0.0 }));
    }
    let data = dir.join("ids.npy");
    std::fs::write(&data, encode_npy_f32(&[ITEMS, SEQ], &ids)).unwrap();
    (model, data)
}

fn erf(x: f64) -> f64 {
    // Numerical Recipes erfc, Chebyshev fit, |error| < 1.2e-7.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

/// The independent forward: mean-pooled embeddings of every row, f64.
fn reference_embeddings(w: &HashMap<String, Vec<f64>>, ids: &[f32]) -> Vec<f32> {
    let (h, heads, inter) = (32usize, 4usize, 64usize);
    let dh = h / heads;
    let get = |k: &str| w.get(k).unwrap_or_else(|| panic!("{k}"));
    let linear = |x: &[f64], name: &str, out: usize| -> Vec<f64> {
        let (wt, b) = (get(&format!("{name}.weight")), get(&format!("{name}.bias")));
        let inp = wt.len() / out;
        x.chunks(inp)
            .flat_map(|row| (0..out).map(move |o| b[o] + (0..inp).map(|i| row[i] * wt[o * inp + i]).sum::<f64>()))
            .collect()
    };
    let layer_norm = |x: &[f64], name: &str| -> Vec<f64> {
        let (g, b) = (get(&format!("{name}.weight")), get(&format!("{name}.bias")));
        x.chunks(h)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / h as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
                (0..h).map(move |i| (row[i] - mean) / (var + 1e-12).sqrt() * g[i] + b[i])
            })
            .collect()
    };
    let mut out = Vec::new();
    for row in ids.chunks(SEQ) {
        let tokens: Vec<usize> = row.iter().map(|&v| v as usize).collect();
        let keep: Vec<bool> = tokens.iter().map(|&t| t != 0).collect();
        let (we, pe, te) = (
            get("embeddings.word_embeddings.weight"),
            get("embeddings.position_embeddings.weight"),
            get("embeddings.token_type_embeddings.weight"),
        );
        let emb: Vec<f64> = (0..SEQ)
            .flat_map(|t| {
                let tok = tokens[t];
                (0..h).map(move |i| we[tok * h + i] + pe[t * h + i] + te[i])
            })
            .collect();
        let mut x = layer_norm(&emb, "embeddings.LayerNorm");
        for l in 0..2 {
            let p = |s: &str| format!("encoder.layer.{l}.{s}");
            let (q, k, v) = (
                linear(&x, &p("attention.self.query"), h),
                linear(&x, &p("attention.self.key"), h),
                linear(&x, &p("attention.self.value"), h),
            );
            let mut ctx = vec![0.0; SEQ * h];
            for head in 0..heads {
                for a in 0..SEQ {
                    let scores: Vec<f64> = (0..SEQ)
                        .map(|b| {
                            let s: f64 =
                                (0..dh).map(|d| q[a * h + head * dh + d] * k[b * h + head * dh + d]).sum::<f64>()
                                    / (dh as f64).sqrt();
                            if keep[b] {
                                s
                            } else {
                                f64::NEG_INFINITY
                            }
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..dh {
                        ctx[a * h + head * dh + d] = (0..SEQ).map(|b| e[b] / z * v[b * h + head * dh + d]).sum();
                    }
                }
            }
            let attn = linear(&ctx, &p("attention.output.dense"), h);
            let x1 = layer_norm(
                &attn.iter().zip(&x).map(|(a, b)| a + b).collect::<Vec<_>>(),
                &p("attention.output.LayerNorm"),
            );
            let mid: Vec<f64> = linear(&x1, &p("intermediate.dense"), inter)
                .iter()
                .map(|&u| 0.5 * u * (1.0 + erf(u / 2f64.sqrt())))
                .collect();
            let o = linear(&mid, &p("output.dense"), h);
            x = layer_norm(&o.iter().zip(&x1).map(|(a, b)| a + b).collect::<Vec<_>>(), &p("output.LayerNorm"));
        }
        let n = keep.iter().filter(|k| **k).count() as f64;
        out.extend((0..h).map(|i| ((0..SEQ).filter(|&t| keep[t]).map(|t| x[t * h + i]).sum::<f64>() / n) as f32));
    }
    out
}

fn weights_f64(ckpt: &BertCheckpoint) -> HashMap<String, Vec<f64>> {
    ckpt.tensors
        .iter()
        .map(|(k, t)| {
            (k.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|&v| v as f64).collect())
        })
        .collect()
}

fn embeddings(v: &quant::Variant, data: &qbench::data::Dataset) -> (Vec<f32>, String) {
    let (values, p) = embeddings_prepared(v, data);
    (values, p.evidence)
}

fn embeddings_prepared(v: &quant::Variant, data: &qbench::data::Dataset) -> (Vec<f32>, qbench::backend::Prepared) {
    let mut p = BackendId::CANDLE_CPU.create(0).prepare(v, 8).unwrap();
    p.observe();
    (eval::run_dataset(p.session.as_mut(), BackendId::CANDLE_CPU, data, 8, 32).unwrap(), p)
}

#[test]
fn candle_transformers_bert_matches_an_independent_forward_in_f32_and_int8() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ids) = write_fixture(dir.path());
    let ckpt = BertCheckpoint::load("tiny", &model, &dir.path().join("config.json")).unwrap();
    // 2 layers × (query, key, value, attention output, intermediate, output), in encoder order.
    let names: Vec<&str> = ckpt.layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 12);
    assert_eq!(
        names[..6],
        [
            "encoder.layer.0.attention.self.query",
            "encoder.layer.0.attention.self.key",
            "encoder.layer.0.attention.self.value",
            "encoder.layer.0.attention.output.dense",
            "encoder.layer.0.intermediate.dense",
            "encoder.layer.0.output.dense"
        ]
    );
    assert_eq!(ckpt.layers[5].1, 64, "output.dense reads the 64-wide intermediate");
    let data = load_npy("ids", &ids, None, None).unwrap();
    let w = weights_f64(&ckpt);
    let want = reference_embeddings(&w, &data.values);

    let f32_plan = Plan::uniform(ckpt.layers.as_slice(), SchemeId::F32);
    let f32_variant = quant::Variant {
        model: "tiny".into(),
        kind: qbench::model::ModelKind::Bert { path: ckpt.path.clone(), config: ckpt.config_path.clone() },
        input_shape: vec![],
        layer_schemes: Plan::uniform(ckpt.layers.as_slice(), SchemeId::F32).layers,
        plan: f32_plan,
        candle_artifact: model.clone(),
        onnx: PathBuf::new(),
        onnx_qdq: None,
        weight_storage: "f32".into(),
        activation_quant: String::new(),
        bits_per_weight: 32.0,
    };
    let (got, evidence) = embeddings(&f32_variant, &data);
    assert!(evidence.contains("BertModel (2 layers, hidden 32), F32"), "{evidence}");
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "f32: candle-transformers vs the independent forward, max |Δ| {worst}");

    // int8 per-channel symmetric: the test dequantizes by its own formula (scale = max|w|/127 per row).
    let int8 = SchemeId::Int8Weights { per_channel: true, symmetric: true };
    let v = quant::checkpoint::apply(&Plan::uniform(ckpt.layers.as_slice(), int8), &ckpt, "tiny", dir.path()).unwrap();
    let mut wq = w.clone();
    for (layer, width) in &ckpt.layers {
        let key = format!("{layer}.weight");
        let row_len = *width;
        let q: Vec<f64> = w[&key]
            .chunks(row_len)
            .flat_map(|row| {
                // In f32, as ONNX QuantizeLinear is defined: x / scale, rounded half to even.
                let s = row.iter().fold(0f64, |a, b| a.max(b.abs())) as f32 / 127.0;
                row.iter().map(move |&x| (((x as f32) / s).round_ties_even().clamp(-127.0, 127.0) * s) as f64)
            })
            .collect();
        wq.insert(key, q);
    }
    let want_q = reference_embeddings(&wq, &data.values);
    let (got_q, prepared) = embeddings_prepared(&v, &data);
    // What candle-transformers took for each linear layer: an f32 tensor (it computes in f32)
    // of a weight the file stores as i8: emulated, layer by layer.
    assert_eq!(prepared.layers.len(), ckpt.layers.len());
    for l in &prepared.layers {
        assert_eq!(
            (l.stored.to_string().as_str(), l.compute.clone(), l.realization),
            ("i8", qbench::backend::Compute::F32, qbench::backend::LayerRealization::Emulated),
            "{l:?}"
        );
    }
    let worst = got_q.iter().zip(&want_q).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "int8: max |Δ| {worst}");
    // The artifact stores i8: about a quarter of the f32 checkpoint's linear bytes.
    assert!(
        v.weight_storage.contains("encoder.layer.1.output.dense.weight=i8 per-channel sym"),
        "{}",
        v.weight_storage
    );
    let sqnr = fidelity::sqnr_db(&want, &want_q).unwrap();
    assert!(sqnr > 20.0 && sqnr < 70.0, "{sqnr}");
}

#[test]
fn a_suite_naming_a_checkpoint_runs_weight_schemes_and_skips_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ids) = write_fixture(dir.path());
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"f16\", \"int8-pc-sym\", \"int4-g16-sym\", \"q8_0\", \"q4k\", \"int8-dynamic\"]\nbackends = [\"candle-cpu\", \"tract-cpu\"]\nbatch_sizes = [8]\n[measure]\nwarmup_iters = 2\nmin_samples = 5\nmax_samples = 30\nmax_time_ms = 30\n\n[[datasets]]\nname = \"ids\"\nformat = \"npy\"\ninputs = {ids:?}\n\n[[models]]\nname = \"tiny-bert\"\npath = {model:?}\n"
    );
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    assert_eq!(records.len(), 14);
    // The independent SQNR and cosine of int8 against f32, over the whole dataset.
    let ckpt = BertCheckpoint::load("tiny", &model, &dir.path().join("config.json")).unwrap();
    let data = load_npy("ids", &ids, None, None).unwrap();
    let f = |r: &qbench::record::Record| format!("{} {} {:?}", r.scheme, r.backend, r.status);
    for r in &records {
        let what = f(r);
        match (r.backend.as_str(), r.scheme.as_str()) {
            ("tract-cpu", _) => {
                assert_eq!(r.status, CaseStatus::Skipped, "{what}");
                assert!(r.error.as_deref().unwrap().contains("runs on candle"), "{what}");
            }
            (_, "int8-dynamic") => {
                assert_eq!(r.status, CaseStatus::Skipped, "{what}");
                assert!(r.error.as_deref().unwrap().contains("no hook on each layer's input"), "{what}");
            }
            (_, scheme) => {
                assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
                assert_eq!(r.eval_items, Some(ITEMS));
                assert_eq!(
                    (r.top1_accuracy, r.ref_top1_agreement, r.ref_kl_mean),
                    (None, None, None),
                    "{what}: an embedding has no classes"
                );
                assert_eq!(r.parameters, ckpt.parameters());
                // Every linear layer computes in f32 whatever the file stores (candle-transformers'
                // BERT is built in f32): the record's realization is the layers' weakest.
                assert_eq!(r.layer_evidence.len(), ckpt.layers.len(), "{what}");
                assert!(r.layer_evidence.iter().all(|l| l.compute == qbench::backend::Compute::F32), "{what}");
                let want = if scheme == "f32" { "native" } else { "emulated" };
                assert_eq!(r.realization, want, "{what}: {:?}", r.layer_evidence);
                let cos = r.ref_cosine_mean.unwrap();
                if scheme == "f32" {
                    assert_eq!(r.ref_sqnr_db, None, "{what}: identical");
                    assert!((cos - 1.0).abs() < 1e-6);
                } else {
                    let sqnr = r.ref_sqnr_db.unwrap();
                    assert!(sqnr > 10.0 && cos > 0.95, "{what}: SQNR {sqnr} dB, cosine {cos}");
                }
            }
        }
    }
    // Sizes: the artifacts really are smaller.
    let size = |scheme: &str| {
        records.iter().find(|r| r.scheme == scheme && r.backend == "candle-cpu").unwrap().artifact_bytes.unwrap() as f64
    };
    assert!(size("f16") / size("f32") < 0.55, "f16 {} vs f32 {}", size("f16"), size("f32"));
    assert!(size("int8-pc-sym") < size("f16"));
    assert!(records.iter().any(|r| r.scheme == "q4k" && r.artifact.as_deref().is_some_and(|a| a.ends_with(".gguf"))));
    // int8: the run's SQNR and cosine are the independent forward's, pooled the same way.
    let w = weights_f64(&ckpt);
    let want = reference_embeddings(&w, &data.values);
    let int8 = records.iter().find(|r| r.scheme == "int8-pc-sym" && r.backend == "candle-cpu").unwrap();
    let v = quant::checkpoint::apply(
        &Plan::uniform(ckpt.layers.as_slice(), SchemeId::Int8Weights { per_channel: true, symmetric: true }),
        &ckpt,
        "tiny",
        dir.path(),
    )
    .unwrap();
    let (got, _) = embeddings(&v, &data);
    let fid = fidelity::fidelity(&want, &got, 32);
    assert!(
        (fid.sqnr_db.unwrap() - int8.ref_sqnr_db.unwrap()).abs() < 0.05,
        "{:?} vs {:?}",
        fid.sqnr_db,
        int8.ref_sqnr_db
    );
    assert!((fid.cosine.mean - int8.ref_cosine_mean.unwrap()).abs() < 1e-5);
}

#[test]
fn bad_checkpoints_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = write_fixture(dir.path());
    let config = dir.path().join("config.json");
    // Truncated weights.
    let bytes = std::fs::read(&model).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = BertCheckpoint::load("m", &cut, &config).err().unwrap().to_string();
    assert!(e.contains("not a valid safetensors file") && e.contains("truncated"), "{e}");
    // Another architecture's config.
    let gpt = dir.path().join("gpt.json");
    std::fs::write(&gpt, CONFIG.replace("\"bert\"", "\"gpt2\"")).unwrap();
    let e = BertCheckpoint::load("m", &model, &gpt).err().unwrap().to_string();
    assert!(e.contains("model_type is \"gpt2\""), "{e}");
    // A config that does not fit the weights (hidden 48 for 32-wide tensors).
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, CONFIG.replace("\"hidden_size\": 32", "\"hidden_size\": 48")).unwrap();
    let e = BertCheckpoint::load("m", &model, &wrong).err().unwrap().to_string();
    assert!(e.contains("hidden_size 48") && e.contains("has shape [50, 32]"), "{e}");
    // Token ids beyond the vocabulary: the case fails and says so.
    let ckpt = BertCheckpoint::load("tiny", &model, &config).unwrap();
    let v = quant::Variant {
        model: "tiny".into(),
        kind: qbench::model::ModelKind::Bert { path: ckpt.path.clone(), config: ckpt.config_path.clone() },
        input_shape: vec![],
        layer_schemes: Plan::uniform(ckpt.layers.as_slice(), SchemeId::F32).layers,
        plan: Plan::uniform(ckpt.layers.as_slice(), SchemeId::F32),
        candle_artifact: model.clone(),
        onnx: PathBuf::new(),
        onnx_qdq: None,
        weight_storage: "f32".into(),
        activation_quant: String::new(),
        bits_per_weight: 32.0,
    };
    let mut p = BackendId::CANDLE_CPU.create(0).prepare(&v, 1).unwrap();
    let e = p.session.set_input(&[1.0, 2.0, 77.0, 0.0]).err().unwrap().to_string();
    assert!(e.contains("token id 77, outside the vocabulary (vocab_size 50)"), "{e}");
}

#[test]
fn shipped_text_dataset_tokenizes_as_python_tokenizers_and_embeds_as_numpy() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join("suites/models/bert-tiny");
    let data = qbench::data::load_text(
        "sentences",
        &repo.join("suites/data/sentences.txt"),
        &dir.join("tokenizer.json"),
        16,
        false,
        None,
    )
    .unwrap();
    let python_ids = load_npy("ids", &repo.join("tests/reference/bert-tiny.ids.npy"), None, None).unwrap();
    assert_eq!(data.item_shape, vec![16]);
    assert_eq!(data.values, python_ids.values, "[CLS] … [SEP], then [PAD] = 0 up to 16");
    // "the cat sat on the mat": [CLS] six words [SEP], "the" twice, then padding.
    let first = &data.values[..16];
    assert_eq!((first[0], first[7], first[1]), (2.0, 3.0, first[5]));
    assert!(first[8..].iter().all(|&v| v == 0.0), "{first:?}");
    let ckpt = BertCheckpoint::load("bert-tiny", &dir.join("model.safetensors"), &dir.join("config.json")).unwrap();
    let v = quant::Variant {
        model: "bert-tiny".into(),
        kind: qbench::model::ModelKind::Bert { path: ckpt.path.clone(), config: ckpt.config_path.clone() },
        input_shape: vec![],
        layer_schemes: Plan::uniform(ckpt.layers.as_slice(), SchemeId::F32).layers,
        plan: Plan::uniform(ckpt.layers.as_slice(), SchemeId::F32),
        candle_artifact: dir.join("model.safetensors"),
        onnx: PathBuf::new(),
        onnx_qdq: None,
        weight_storage: "f32".into(),
        activation_quant: String::new(),
        bits_per_weight: 32.0,
    };
    let mut p = BackendId::CANDLE_CPU.create(0).prepare(&v, 8).unwrap();
    let got = eval::run_dataset(p.session.as_mut(), BackendId::CANDLE_CPU, &data, 8, 64).unwrap();
    let want = load_npy("emb", &repo.join("tests/reference/bert-tiny.embeddings.npy"), None, None).unwrap().values;
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "candle-transformers vs numpy float64: max |Δ| {worst}");
}
