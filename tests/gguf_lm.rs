//! GGUF language models: loading (llama, qwen2, qwen3, phi3), requantizing, running on candle-transformers'
//! quantized models, and the metrics (perplexity, KL and agreement against the reference),
//! checked against numpy's forward pass (fixtures written by llama.cpp's gguf-py, see
//! scripts/make-lm-fixtures.py), against block error bounds, and against the models' own
//! prompt-processing path (no KV cache).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use qbench::backend::BackendId;
use qbench::data::{encode_npy_f32, load_npy, load_text};
use qbench::measure::lm;
use qbench::model::gguf_lm::GgufLm;
use qbench::quant::ggml::GgmlType;
use qbench::quant::{self, Plan, SchemeId};
use qbench::record::CaseStatus;
use qbench::report::jsonl::read_records;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The variant of `lm` under a uniform scheme, written to `dir`.
fn variant(lm: &GgufLm, scheme: SchemeId, dir: &Path) -> quant::Variant {
    quant::gguf_lm::apply(&Plan::uniform(lm.layers.as_slice(), scheme), lm, "m", dir).unwrap()
}

/// A session of the variant on candle, `batch` rows per run.
fn session(v: &quant::Variant, batch: usize) -> qbench::backend::Prepared {
    BackendId::CANDLE_CPU.create(0).prepare(v, batch).unwrap()
}

fn logits_of(prepared: &mut qbench::backend::Prepared, ids: &[u32]) -> Vec<Vec<f32>> {
    let d = prepared.session.decoder().unwrap();
    d.reset();
    ids.iter().enumerate().map(|(p, id)| d.step(&[*id], 1, p).unwrap()).collect()
}

fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn shipped_llama_matches_numpy_logits_and_perplexity() {
    let root = repo();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/reference/tiny-llama.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lm = GgufLm::load("tiny-llama", &root.join("suites/models/tiny-llama/model-f16.gguf")).unwrap();
    assert_eq!((lm.arch.name(), lm.vocab, lm.context_length), ("llama", 512, Some(2048)));
    assert_eq!(lm.source_precision(), "f16");
    // 2 blocks × 7 weights, plus the token embedding and the output.
    assert_eq!(lm.layers.len(), 16);
    assert!(lm.layers.iter().all(|(_, w)| *w == 256 || *w == 512), "{:?}", lm.layers);
    // Python's tokenizer and qbench's windows agree on the ids.
    let data = load_text(
        "apache",
        &root.join("suites/data/apache-2.0.txt"),
        &root.join("suites/models/tiny-llama/tokenizer.json"),
        128,
        true,
        None,
    )
    .unwrap();
    assert_eq!(data.len() as u64, want["windows"].as_u64().unwrap());
    let first: Vec<u32> =
        want["first_window_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let ours: Vec<u32> = data.values[..128].iter().map(|&v| v as u32).collect();
    assert_eq!(ours, first);
    // The f32 variant (the f16 source widened) against numpy's float64 forward pass.
    let v = variant(&lm, SchemeId::F32, dir.path());
    let mut s = session(&v, 1);
    let numpy = load_npy("logits", &root.join("tests/reference/tiny-llama.logits.npy"), None, None).unwrap();
    let got: Vec<f32> = logits_of(&mut s, &first[..16]).concat();
    let diff = max_rel_diff(&got, &numpy.values);
    assert!(diff < 1e-4, "logits differ from numpy's by {diff} of their range");
    // The perplexity over every window.
    let score = lm::score(s.session.decoder().unwrap(), BackendId::CANDLE_CPU, &data, None).unwrap();
    let ppl = want["perplexity"].as_f64().unwrap();
    assert_eq!(score.scored_tokens as u64, want["scored_tokens"].as_u64().unwrap());
    assert!((score.perplexity / ppl - 1.0).abs() < 1e-4, "{} vs numpy {ppl}", score.perplexity);
    let (lo, hi) = score.perplexity_ci.unwrap();
    assert!(lo < score.perplexity && score.perplexity < hi && hi / lo < 1.5, "{lo} {hi}");
    assert_eq!(score.top.positions(), score.scored_tokens);
}

#[test]
fn qwen2_runs_as_numpy_through_the_cache_and_the_prompt_path() {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let lm = GgufLm::load("qwen2", &root.join("tests/reference/qwen2-tiny.gguf")).unwrap();
    assert_eq!(lm.arch.name(), "qwen2");
    let ids = load_npy("ids", &root.join("tests/reference/qwen2-tiny.ids.npy"), None, None).unwrap();
    let ids: Vec<u32> = ids.values.iter().map(|&v| v as u32).collect();
    let numpy = load_npy("logits", &root.join("tests/reference/qwen2-tiny.logits.npy"), None, None).unwrap();
    let v = variant(&lm, SchemeId::F32, dir.path());
    assert_eq!(v.bits_per_weight, 32.0);
    let mut s = session(&v, 1);
    let steps = logits_of(&mut s, &ids);
    let diff = max_rel_diff(&steps.concat(), &numpy.values);
    assert!(diff < 1e-4, "qwen2 logits differ from numpy's by {diff} of their range");
    // Prompt processing of the whole sequence (causal mask, no cache) ends where the steps do.
    s.session.set_input(&ids.iter().map(|&i| i as f32).collect::<Vec<_>>()).unwrap();
    s.session.run().unwrap();
    let last = s.session.output().unwrap();
    assert!(max_rel_diff(&last, &steps[ids.len() - 1]) < 1e-4);
}

/// A fixture's f32 variant against its numpy logits for its ids (`<name>.ids.npy`,
/// `<name>.logits.npy`), step by step through the cache: the session, the ids and the steps' logits.
fn f32_steps_match_numpy(name: &str, dir: &Path) -> (qbench::backend::Prepared, Vec<u32>, Vec<Vec<f32>>) {
    let root = repo();
    let lm = GgufLm::load(name, &root.join(format!("tests/reference/{name}.gguf"))).unwrap();
    let ids = load_npy("ids", &root.join(format!("tests/reference/{name}.ids.npy")), None, None).unwrap();
    let ids: Vec<u32> = ids.values.iter().map(|&v| v as u32).collect();
    let numpy = load_npy("logits", &root.join(format!("tests/reference/{name}.logits.npy")), None, None).unwrap();
    let v = variant(&lm, SchemeId::F32, dir);
    let mut s = session(&v, 1);
    let steps = logits_of(&mut s, &ids);
    let diff = max_rel_diff(&steps.concat(), &numpy.values);
    assert!(diff < 1e-4, "{name} logits differ from numpy's by {diff} of their range");
    (s, ids, steps)
}

/// `gguf` run by a suite (f32, q8_0, q4_0 on candle-cpu at `batches`) whose text dataset names
/// no tokenizer, so the file's own tokenizes it: the run's records.
fn run_with_own_tokenizer(dir: &Path, gguf: &Path, batches: &str) -> Vec<qbench::record::Record> {
    let apache = repo().join("suites/data/apache-2.0.txt");
    let suite = format!(
        "name = \"t\"\nschemes = [\"f32\", \"q8_0\", \"q4_0\"]\nbackends = [\"candle-cpu\"]\nbatch_sizes = {batches}\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 5\nmax_time_ms = 20\n\n[[datasets]]\nname = \"apache\"\nformat = \"text\"\ninputs = {apache:?}\nseq_len = 32\nwindows = true\n\n[[models]]\nname = \"lm\"\npath = {gguf:?}\n"
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", path.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.join("out/t")).unwrap().next().unwrap().unwrap().path();
    qbench::record::read_records(&run.join("records.jsonl")).unwrap()
}

/// A Qwen3 GGUF as published: per-head q/k norms, a head size that is not embedding / heads, a
/// rotary base of 1e6, and its tokenizer in its metadata with no tokenizer.json (written by
/// gguf-py; logits from numpy, scripts/make-lm-fixtures.py).
#[test]
fn qwen3_runs_as_numpy_and_from_a_suite_with_its_own_tokenizer() {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let gguf = root.join("tests/reference/qwen3-tiny.gguf");
    let lm = GgufLm::load("qwen3", &gguf).unwrap();
    assert_eq!((lm.arch.name(), lm.vocab), ("qwen3", 512));
    let v = variant(&lm, SchemeId::F32, dir.path());
    let (mut s, ids, steps) = f32_steps_match_numpy("qwen3-tiny", dir.path());
    s.session.set_input(&ids.iter().map(|&i| i as f32).collect::<Vec<_>>()).unwrap();
    s.session.run().unwrap();
    assert!(max_rel_diff(&s.session.output().unwrap(), &steps[ids.len() - 1]) < 1e-4);
    // A whole context of 256 positions, where candle's default f16 rotary table drifts (1.3e-3
    // of the range here): qbench's variant files ask for f32 tables (general.dtype = 0).
    let long = load_npy("ids", &root.join("tests/reference/qwen3-tiny.long-ids.npy"), None, None).unwrap();
    let last = load_npy("last", &root.join("tests/reference/qwen3-tiny.long-last.npy"), None, None).unwrap();
    let mut s = session(&v, 1);
    s.session.set_input(&long.values).unwrap();
    s.session.run().unwrap();
    let diff = max_rel_diff(&s.session.output().unwrap(), &last.values);
    assert!(diff < 1e-4, "qwen3 at position 255 differs from numpy's by {diff} of the range");
    // From a suite: the text dataset names no tokenizer; the file's own tokenizes it.
    let records = run_with_own_tokenizer(dir.path(), &gguf, "[1, 2]");
    assert_eq!(records.len(), 6);
    // Two rows at a time, candle's CPU qwen3 panics: skipped with the reason, not failed.
    for r in records.iter().filter(|r| r.batch == 2) {
        assert_eq!(r.status, CaseStatus::Skipped, "{}", r.scheme);
        assert!(r.error.as_deref().unwrap().contains("runs one row at a time"), "{:?}", r.error);
    }
    let records: Vec<_> = records.into_iter().filter(|r| r.batch == 1).collect();
    for r in &records {
        assert_eq!(r.status, CaseStatus::Ok, "{} {:?}", r.scheme, r.error);
        assert!(r.perplexity.unwrap().is_finite() && r.scored_tokens.unwrap() > 1000, "{}", r.scheme);
    }
    // q4_0 moves further from f32 than q8_0.
    let kl = |s: &str| records.iter().find(|r| r.scheme == s).unwrap().ref_kl_mean.unwrap();
    assert!(kl("q8_0") < kl("q4_0"), "KL q8_0 {} vs q4_0 {}", kl("q8_0"), kl("q4_0"));
}

/// A Phi-3 GGUF as published: fused q/k/v and gate/up weights, and a SentencePiece tokenizer
/// in its metadata with no tokenizer.json (written by gguf-py; logits from numpy).
#[test]
fn phi3_runs_as_numpy_and_from_a_suite_with_its_own_tokenizer() {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let gguf = root.join("tests/reference/phi3-tiny.gguf");
    let lm = GgufLm::load("phi3", &gguf).unwrap();
    assert_eq!((lm.arch.name(), lm.vocab), ("phi3", 700));
    let (mut s, ids, steps) = f32_steps_match_numpy("phi3-tiny", dir.path());
    // The whole prompt at once ends where the steps do; and again (the cache starts over).
    for _ in 0..2 {
        s.session.set_input(&ids.iter().map(|&i| i as f32).collect::<Vec<_>>()).unwrap();
        s.session.run().unwrap();
        assert!(max_rel_diff(&s.session.output().unwrap(), &steps[ids.len() - 1]) < 1e-4);
    }
    // From a suite whose text dataset names no tokenizer: the file's own tokenizes it.
    let records = run_with_own_tokenizer(dir.path(), &gguf, "[1]");
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r.status, CaseStatus::Ok, "{} {:?}", r.scheme, r.error);
        assert!(r.perplexity.unwrap().is_finite() && r.scored_tokens.unwrap() > 1000, "{}", r.scheme);
        assert!(r.evidence.as_deref().unwrap_or_default().contains("quantized_phi3"), "{:?}", r.evidence);
    }
    let kl = |s: &str| records.iter().find(|r| r.scheme == s).unwrap().ref_kl_mean.unwrap();
    assert!(kl("q8_0") < kl("q4_0"), "KL q8_0 {} vs q4_0 {}", kl("q8_0"), kl("q4_0"));
}

/// Phi-3 files candle would compute as another model are refused with the reason: a rotary
/// base other than 10000, LongRoPE factors.
#[test]
fn phi3_files_candle_cannot_compute_are_refused() {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root.join("tests/reference/phi3-tiny.gguf")).unwrap();
    let mut reader = std::io::Cursor::new(bytes.as_slice());
    let content = candle_core::quantized::gguf_file::Content::read(&mut reader).unwrap();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), content.tensor(&mut reader, n, &candle_core::Device::Cpu).unwrap()))
        .collect();
    type Metadata = Vec<(String, candle_core::quantized::gguf_file::Value)>;
    type Tensors = Vec<(String, candle_core::quantized::QTensor)>;
    let write = |name: &str, edit: &dyn Fn(&mut Metadata, &mut Tensors)| {
        let mut md: Metadata = content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut ts: Tensors = tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    candle_core::quantized::QTensor::quantize(
                        &t.dequantize(&candle_core::Device::Cpu).unwrap(),
                        t.dtype(),
                    )
                    .unwrap(),
                )
            })
            .collect();
        edit(&mut md, &mut ts);
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let md_refs: Vec<(&str, &candle_core::quantized::gguf_file::Value)> =
            md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &candle_core::quantized::QTensor)> = ts.iter().map(|(k, v)| (k.as_str(), v)).collect();
        candle_core::quantized::gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
        path
    };
    use candle_core::quantized::gguf_file::Value;
    let base = write("base.gguf", &|md, _| {
        for (k, v) in md.iter_mut() {
            if k == "phi3.rope.freq_base" {
                *v = Value::F32(500_000.0);
            }
        }
    });
    let e = GgufLm::load("m", &base).err().unwrap().to_string();
    assert!(e.contains("phi3.rope.freq_base is 500000") && e.contains("candle rotates with 10000"), "{e}");
    let long = write("long.gguf", &|_, ts| {
        let f = candle_core::Tensor::ones(4, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        ts.push((
            "rope_factors_long.weight".into(),
            candle_core::quantized::QTensor::quantize(&f, candle_core::quantized::GgmlDType::F32).unwrap(),
        ));
    });
    let e = GgufLm::load("m", &long).err().unwrap().to_string();
    assert!(e.contains("LongRoPE") && e.contains("rope_factors_long.weight"), "{e}");
}

const D: usize = 256;
const VOCAB: usize = 40;
const SEQ: usize = 12;

/// A one-block llama with random weights, written by candle's GGUF writer.
fn write_llama(path: &Path, arch: &str) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut tensor = |dims: &[usize], scale: f32| {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
        QTensor::quantize(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
    };
    let ones = |n: usize| {
        QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
    };
    let tensors = vec![
        ("token_embd.weight", tensor(&[VOCAB, D], 1.0)),
        ("blk.0.attn_norm.weight", ones(D)),
        ("blk.0.attn_q.weight", tensor(&[D, D], 0.1)),
        ("blk.0.attn_k.weight", tensor(&[D / 2, D], 0.1)),
        ("blk.0.attn_v.weight", tensor(&[D / 2, D], 0.1)),
        ("blk.0.attn_output.weight", tensor(&[D, D], 0.1)),
        ("blk.0.ffn_norm.weight", ones(D)),
        ("blk.0.ffn_gate.weight", tensor(&[D, D], 0.1)),
        ("blk.0.ffn_up.weight", tensor(&[D, D], 0.1)),
        ("blk.0.ffn_down.weight", tensor(&[D, D], 0.1)),
        ("output_norm.weight", ones(D)),
        ("output.weight", tensor(&[VOCAB, D], 0.2)),
    ];
    use gguf_file::Value;
    let metadata = [
        ("general.architecture", Value::String(arch.into())),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.block_count", Value::U32(1)),
        ("llama.embedding_length", Value::U32(D as u32)),
        ("llama.rope.dimension_count", Value::U32((D / 4) as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.context_length", Value::U32(64)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &refs).unwrap();
}

fn read_gguf(path: &Path) -> (gguf_file::Content, std::fs::File) {
    let mut f = std::fs::File::open(path).unwrap();
    (gguf_file::Content::read(&mut f).unwrap(), f)
}

#[test]
fn requantized_weights_keep_the_metadata_and_stay_within_their_block_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_llama(&path, "llama");
    let lm = GgufLm::load("tiny", &path).unwrap();
    let names: Vec<&str> = lm.layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "token_embd");
    assert_eq!(names.len(), 9, "{names:?}");
    let source = |name: &str| {
        let (c, mut f) = read_gguf(&path);
        c.tensor(&mut f, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    for (scheme, dtype) in [
        (SchemeId::Ggml(GgmlType::Q8_0), GgmlDType::Q8_0),
        (SchemeId::Ggml(GgmlType::Q4K), GgmlDType::Q4K),
        (SchemeId::F16, GgmlDType::F16),
        (SchemeId::Int8Weights { per_channel: true, symmetric: true }, GgmlDType::F32),
    ] {
        let v = variant(&lm, scheme, dir.path());
        let (c, mut f) = read_gguf(&v.candle_artifact);
        assert_eq!(c.metadata["general.architecture"].to_string().unwrap(), "llama");
        assert_eq!(c.metadata["qbench.scheme"].to_string().unwrap(), &scheme.name());
        assert_eq!(c.metadata["llama.block_count"].to_u32().unwrap(), 1);
        for (name, info) in &c.tensor_infos {
            let want = if info.shape.rank() == 2 { dtype } else { GgmlDType::F32 };
            assert_eq!(info.ggml_dtype, want, "{} {name}", scheme.name());
        }
        // Every weight of attn_q within its format's rounding of the source.
        let w = source("blk.0.attn_q.weight");
        let q = c.tensor(&mut f, "blk.0.attn_q.weight", &Device::Cpu).unwrap();
        let got = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (block, levels) = match scheme {
            SchemeId::Ggml(GgmlType::Q8_0) => (32, 127.0),
            // q4k: 8 sub-blocks of 32 with 6-bit scales and mins; 15 levels over each
            // sub-block's range, loosened for the quantized scales.
            SchemeId::Ggml(_) => (32, 7.5 * 0.8),
            SchemeId::F16 => (1, 1024.0),
            _ => (D, 127.0),
        };
        // Half a level, plus 15% for the block scale's own f16 rounding (q8_0's 127 levels move by
        // up to 127 × 2⁻¹¹ of a level).
        for (b, (ws, gs)) in w.chunks(block).zip(got.chunks(block)).enumerate() {
            let amax = ws.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, g) in ws.iter().zip(gs) {
                assert!((a - g).abs() <= amax / levels * 0.5 * 1.15 + 1e-6, "{} block {b}: {a} vs {g}", scheme.name());
            }
        }
        // Bits per weight: the format's over the 2-D weights, f32 over the norms.
        let (mut two_d, mut one_d) = (0usize, 0usize);
        for info in c.tensor_infos.values() {
            if info.shape.rank() == 2 {
                two_d += info.shape.elem_count()
            } else {
                one_d += info.shape.elem_count()
            }
        }
        let fmt_bits = match scheme {
            SchemeId::Int8Weights { .. } => 8.0 + 32.0 / D as f64,
            _ => dtype.type_size() as f64 * 8.0 / dtype.block_size() as f64,
        };
        let want = (fmt_bits * two_d as f64 + 32.0 * one_d as f64) / (two_d + one_d) as f64;
        assert!((v.bits_per_weight - want).abs() < 1e-9, "{}: {} vs {want}", scheme.name(), v.bits_per_weight);
    }
}

#[test]
fn unknown_architectures_truncated_files_and_missing_metadata_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    write_llama(&path, "gpt2");
    let e = GgufLm::load("m", &path).err().unwrap().to_string();
    assert!(e.contains("\"gpt2\"") && e.contains("llama, qwen2, qwen3, phi3"), "{e}");
    // Gemma is refused with the reason: the engine's Gemma is not Gemma.
    let gemma = dir.path().join("gemma3.gguf");
    write_llama(&gemma, "gemma3");
    let e = GgufLm::load("m", &gemma).err().unwrap().to_string();
    assert!(e.contains("\"gemma3\" is refused") && e.contains("SiLU") && e.contains("#3745"), "{e}");
    // The shipped model cut in half: its tensors run past the end.
    let bytes = std::fs::read(repo().join("suites/models/tiny-llama/model-f16.gguf")).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = GgufLm::load("m", &cut).err().unwrap().to_string();
    assert!(e.contains("truncated") && e.contains("cut.gguf"), "{e}");
    // Cut inside the header.
    std::fs::write(&cut, &bytes[..100]).unwrap();
    let e = GgufLm::load("m", &cut).err().unwrap().to_string();
    assert!(e.contains("not a readable GGUF file"), "{e}");
    // A llama without a key candle-transformers needs.
    let path = dir.path().join("tiny.gguf");
    write_llama(&path, "llama");
    let (c, mut f) = read_gguf(&path);
    let md: Vec<(&str, &gguf_file::Value)> =
        c.metadata.iter().filter(|(k, _)| *k != "llama.block_count").map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(String, QTensor)> =
        c.tensor_infos.keys().map(|n| (n.clone(), c.tensor(&mut f, n, &Device::Cpu).unwrap())).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let broken = dir.path().join("broken.gguf");
    gguf_file::write(&mut std::fs::File::create(&broken).unwrap(), &md, &refs).unwrap();
    let e = GgufLm::load("m", &broken).err().unwrap().to_string();
    assert!(e.contains("llama.block_count"), "{e}");
}

/// Perplexity without the KV cache: each prefix processed as a prompt, its last logits scored.
fn perplexity_by_prompts(v: &quant::Variant, windows: &[Vec<u32>]) -> f64 {
    let (mut nll, mut n) = (0.0, 0usize);
    for w in windows {
        for p in 1..w.len() {
            let mut s = session(v, 1);
            s.session.set_input(&w[..p].iter().map(|&i| i as f32).collect::<Vec<_>>()).unwrap();
            s.session.run().unwrap();
            let logits: Vec<f64> = s.session.output().unwrap().iter().map(|&x| x as f64).collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            nll += lse - logits[w[p] as usize];
            n += 1;
        }
    }
    (nll / n as f64).exp()
}

#[test]
fn a_suite_naming_a_gguf_scores_perplexity_kl_and_speed_and_skips_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_llama(&model, "llama");
    let windows: Vec<Vec<u32>> =
        (0..3).map(|w| (0..SEQ).map(|t| ((w * 11 + t * t * 7 + 3) % VOCAB) as u32).collect()).collect();
    let flat: Vec<f32> = windows.concat().iter().map(|&v| v as f32).collect();
    let ids = dir.path().join("ids.npy");
    std::fs::write(&ids, encode_npy_f32(&[windows.len(), SEQ], &flat)).unwrap();
    // A second model in an architecture qbench does not run: its cases fail, the others run.
    let gpt2 = dir.path().join("gpt2.gguf");
    write_llama(&gpt2, "gpt2");
    let suite = format!(
        "name = \"t\"\nschemes = [\"q4_0\", \"f32\", \"q8_0\", \"int8-dynamic\"]\nbackends = [\"candle-cpu\", \"tract-cpu\"]\nbatch_sizes = [1, 2]\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 20\n\n[[datasets]]\nname = \"ids\"\nformat = \"npy\"\ninputs = {ids:?}\n\n[[models]]\nname = \"other\"\npath = {gpt2:?}\n\n[[models]]\nname = \"tiny\"\npath = {model:?}\n"
    );
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("6 of 32 cases failed"), "{stderr}");
    let run = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let all = read_records(&run.join("records.jsonl")).unwrap();
    let (other, records): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.model == "other");
    assert_eq!((other.len(), records.len()), (16, 16));
    for r in other.iter().filter(|r| r.status != CaseStatus::Skipped) {
        let e = r.error.as_deref().unwrap();
        assert!(
            r.status == CaseStatus::Failed && e.contains("\"gpt2\"") && e.contains("llama, qwen2, qwen3, phi3"),
            "{e}"
        );
    }
    let lm = GgufLm::load("tiny", &model).unwrap();
    let f32_ppl = perplexity_by_prompts(&variant(&lm, SchemeId::F32, dir.path()), &windows);
    let q4_ppl = perplexity_by_prompts(&variant(&lm, SchemeId::Ggml(GgmlType::Q4_0), dir.path()), &windows);
    for r in &records {
        let what = format!("{} {} batch {}", r.scheme, r.backend, r.batch);
        let reason = r.error.as_deref().unwrap_or("");
        match (r.backend.as_str(), r.scheme.as_str(), r.batch) {
            ("tract-cpu", _, _) => {
                assert!(r.status == CaseStatus::Skipped && reason.contains("runs on candle"), "{what}")
            }
            (_, "int8-dynamic", _) => {
                assert!(r.status == CaseStatus::Skipped && reason.contains("no hook on each layer's input"), "{what}")
            }
            (_, "q4_0" | "q8_0", 2) => {
                assert!(r.status == CaseStatus::Skipped && reason.contains("non-contiguous"), "{what}: {reason}")
            }
            (_, scheme, batch) => {
                assert_eq!(r.status, CaseStatus::Ok, "{what}: {reason}");
                // What the built model holds, layer by layer: the matrix products on the GGML
                // blocks (q4_0), or f32 (the f32 variant, kept float); the token embedding a
                // lookup in a table candle-transformers dequantizes at load, which makes a q4_0
                // variant emulated, not native.
                let (table, products): (Vec<_>, Vec<_>) =
                    r.layer_evidence.iter().partition(|l| l.layer == "token_embd");
                assert_eq!((table.len(), products.len()), (1, lm.layers.len() - 1), "{what}: {:?}", r.layer_evidence);
                assert_eq!(table[0].compute, qbench::backend::Compute::F32, "{what}: {:?}", table[0]);
                if scheme != "f32" {
                    for l in &products {
                        assert_eq!(l.compute, qbench::backend::Compute::Ggml(scheme.into()), "{what}: {l:?}");
                        assert_eq!(l.realization, qbench::backend::LayerRealization::Native, "{what}: {l:?}");
                    }
                    assert_eq!(table[0].realization, qbench::backend::LayerRealization::Emulated, "{what}");
                    assert_eq!(r.realization, "emulated", "{what}");
                } else {
                    assert_eq!(r.realization, "native", "{what}: {:?}", r.layer_evidence);
                }
                assert_eq!((r.eval_items, r.scored_tokens), (Some(3), Some(3 * (SEQ - 1))), "{what}");
                assert_eq!(r.reference_scheme, "f32", "{what}: the suite's most precise scheme");
                let ppl = r.perplexity.unwrap();
                let want = if scheme == "q4_0" {
                    q4_ppl
                } else if scheme == "f32" {
                    f32_ppl
                } else {
                    ppl
                };
                assert!((ppl / want - 1.0).abs() < 1e-4, "{what}: {ppl} vs {want} without the cache");
                let (tg, pp) = (r.tg_tokens_per_s.unwrap(), r.pp_tokens_per_s.unwrap());
                assert_eq!(r.tg_tokens, Some(SEQ));
                // Tokens per second at the mean run time.
                let pp_want = (batch * SEQ) as f64 * 1e9 / r.latency_mean_ns.unwrap();
                assert!((pp / pp_want - 1.0).abs() < 1e-9 && tg > 0.0, "{what}");
                assert!(r.evidence.as_deref().unwrap().contains("quantized_llama"), "{what}");
            }
        }
    }
    let ok = |s: &str| records.iter().find(|r| r.scheme == s && r.batch == 1 && r.backend == "candle-cpu").unwrap();
    let (f32r, q8, q4) = (ok("f32"), ok("q8_0"), ok("q4_0"));
    assert_eq!((f32r.ref_kl_mean, f32r.ref_top1_agreement), (Some(0.0), Some(1.0)));
    let (kl8, kl4) = (q8.ref_kl_mean.unwrap(), q4.ref_kl_mean.unwrap());
    assert!(0.0 < kl8 && kl8 < kl4, "KL q8_0 {kl8}, q4_0 {kl4}");
    assert!(q8.ref_top1_agreement.unwrap() >= q4.ref_top1_agreement.unwrap());
    assert!(q8.artifact_bytes.unwrap() < f32r.artifact_bytes.unwrap() / 3);
    // The reference is stored compactly: top-k per scored position.
    let top = lm::read_top_k(&run.join("artifacts/tiny.reference-top32.safetensors")).unwrap();
    assert_eq!((top.k, top.positions()), (32, 3 * (SEQ - 1)));
    // Its KL recomputed here from the stored top-k and q4_0's own distributions.
    let v4 = variant(&lm, SchemeId::Ggml(GgmlType::Q4_0), dir.path());
    let mut s = session(&v4, 1);
    let mut kls = Vec::new();
    for (w, ids) in windows.iter().enumerate() {
        let steps = logits_of(&mut s, &ids[..SEQ - 1]);
        for (p, logits) in steps.iter().enumerate() {
            let at = (w * (SEQ - 1) + p) * 32;
            let lq = lm::log_softmax(logits);
            let (mut kl, mut p_top, mut q_top) = (0.0, 0.0, 0.0);
            for j in at..at + 32 {
                let (lp, l) = (top.logprobs[j] as f64, lq[top.ids[j] as usize]);
                kl += lp.exp() * (lp - l);
                p_top += lp.exp();
                q_top += l.exp();
            }
            if 1.0 - p_top > 0.0 {
                kl += (1.0 - p_top) * ((1.0 - p_top) / (1.0 - q_top)).ln();
            }
            kls.push(kl);
        }
    }
    let mean = kls.iter().sum::<f64>() / kls.len() as f64;
    assert!((mean / kl4 - 1.0).abs() < 1e-3, "KL {mean} vs the record's {kl4}");
    // The report names the reference and the source's precision.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("perplexity ± CI") && md.contains("tg t/s"), "{md}");
    assert!(md.contains("against its f32 variant") && md.contains("requantized from the file's f32"), "{md}");
}
