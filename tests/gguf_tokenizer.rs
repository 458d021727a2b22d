//! The tokenizer a GGUF carries (`tokenizer.ggml.*`, written by llama.cpp's gguf-py in
//! scripts/make-gguf-tokenizer-fixtures.py) against a Hugging Face tokenizer.json of the same
//! vocabulary: the same ids for the same text, the same text back.

mod common;

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use qbench::model::gguf_tokenizer::from_metadata;
use tokenizers::Tokenizer;

fn metadata(name: &str) -> HashMap<String, Value> {
    let path = common::repo().join("tests/reference").join(name);
    let mut f = std::fs::File::open(&path).unwrap();
    Content::read(&mut f).unwrap().metadata
}

/// Texts neither tokenizer was trained on: a license, code-like lines, accents, CJK, emoji
/// (byte fallback), runs of spaces and newlines.
fn texts() -> Vec<String> {
    let apache = std::fs::read_to_string(common::repo().join("suites/data/apache-2.0.txt")).unwrap();
    vec![
        apache,
        "fn main() {\n    println!(\"héllo, wörld\");  // 名前 🙂\n}\n\n\n".to_string(),
        "  leading spaces, trailing  \t tabs\r\nand CRLF's won't 1234567 matter".to_string(),
    ]
}

#[test]
fn a_ggufs_own_tokenizer_gives_the_ids_its_tokenizer_json_gives() {
    for (gguf, json) in
        [("tok-gpt2.gguf", "suites/models/tiny-llama/tokenizer.json"), ("tok-spm.gguf", "tests/reference/tok-spm.json")]
    {
        let built = from_metadata(&metadata(gguf)).unwrap();
        let reference = Tokenizer::from_file(common::repo().join(json)).unwrap();
        assert_eq!(built.get_vocab_size(false), reference.get_vocab_size(false), "{gguf}");
        let mut compared = 0;
        for text in texts() {
            let want = reference.encode(text.as_str(), false).unwrap();
            let got = built.encode(text.as_str(), false).unwrap();
            let first_diff = got.get_ids().iter().zip(want.get_ids()).position(|(a, b)| a != b);
            assert_eq!(
                got.get_ids(),
                want.get_ids(),
                "{gguf}: first difference at token {first_diff:?}: {:?} vs {:?}",
                first_diff.map(|i| &got.get_tokens()[i..(i + 5).min(got.get_tokens().len())]),
                first_diff.map(|i| &want.get_tokens()[i..(i + 5).min(want.get_tokens().len())])
            );
            let back = built.decode(got.get_ids(), false).unwrap();
            assert_eq!(back, reference.decode(want.get_ids(), false).unwrap(), "{gguf}");
            compared += want.get_ids().len();
        }
        // The license alone is thousands of tokens: the comparison is not vacuous.
        assert!(compared > 2000, "{gguf}: {compared} tokens compared");
    }
    // A user-defined token (type 4, as Qwen3 marks <think>) is kept whole, never merged.
    let mut md = metadata("tok-gpt2.gguf");
    if let (Some(Value::Array(tokens)), Some(Value::Array(types))) =
        (md.get("tokenizer.ggml.tokens").cloned(), md.get("tokenizer.ggml.token_type").cloned())
    {
        let (mut tokens, mut types) = (tokens, types);
        tokens.push(Value::String("<think>".into()));
        types.push(Value::I32(4));
        md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens));
        md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    }
    let user = from_metadata(&md).unwrap();
    let e = user.encode("a<think>b", false).unwrap();
    assert!(e.get_tokens().contains(&"<think>".to_string()), "{:?}", e.get_tokens());
    assert_eq!(e.get_ids().iter().filter(|&&id| id == 512).count(), 1);
    // The SentencePiece tokenizer falls back to bytes for what its vocabulary lacks.
    let spm = from_metadata(&metadata("tok-spm.gguf")).unwrap();
    let e = spm.encode("🙂", false).unwrap();
    // (After the "▁" SentencePiece prepends: the four UTF-8 bytes of the emoji.)
    assert_eq!(e.get_tokens(), ["▁", "<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]);
    assert_eq!(spm.decode(e.get_ids(), false).unwrap(), "🙂");
}

#[test]
fn a_gguf_without_a_usable_tokenizer_says_what_is_missing() {
    let mut md = metadata("tok-gpt2.gguf");
    md.insert("tokenizer.ggml.pre".into(), Value::String("deepseek-coder".into()));
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("tokenizer.ggml.pre = \"deepseek-coder\"") && e.contains("tokenizer.json"), "{e}");
    md.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("tokenizer.ggml.model = \"bert\"") && e.contains("gpt2, llama"), "{e}");
    md.remove("tokenizer.ggml.model");
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("carries no tokenizer"), "{e}");
    // llama.cpp's own "default" pre-tokenizer (or none named) is not guessed at.
    let mut md = metadata("tok-gpt2.gguf");
    md.remove("tokenizer.ggml.pre");
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("default (none given)"), "{e}");
    // A repeated token, which llama.cpp refuses too.
    let mut md = metadata("tok-spm.gguf");
    if let Some(Value::Array(tokens)) = md.get_mut("tokenizer.ggml.tokens") {
        tokens[300] = tokens[299].clone();
    }
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("twice (ids 299 and 300)"), "{e}");
    let mut md = metadata("tok-spm.gguf");
    md.remove("tokenizer.ggml.scores");
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("needs tokenizer.ggml.scores"), "{e}");
    let mut md = metadata("tok-spm.gguf");
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(vec![Value::I32(1)]));
    let e = from_metadata(&md).err().unwrap();
    assert!(e.contains("token_type has 1 entries for 700 tokens"), "{e}");
}

/// The shipped tiny llama with the tokenizer of its tokenizer.json written into its metadata
/// (the keys llama.cpp's gguf-py wrote into tok-gpt2.gguf), as a GGUF downloaded from a hub is.
fn llama_with_its_tokenizer(out: &std::path::Path) {
    use candle_core::quantized::gguf_file;
    let src = common::repo().join("suites/models/tiny-llama/model-f16.gguf");
    let mut f = std::fs::File::open(&src).unwrap();
    let content = Content::read(&mut f).unwrap();
    assert!(!content.metadata.contains_key("tokenizer.ggml.model"), "the shipped file has no tokenizer of its own");
    let mut metadata: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    metadata.extend(metadata_entries("tok-gpt2.gguf"));
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| (name.clone(), content.tensor(&mut f, name, &candle_core::Device::Cpu).unwrap()))
        .collect();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut w = std::fs::File::create(out).unwrap();
    gguf_file::write(&mut w, &md, &ts).unwrap();
}

fn metadata_entries(name: &str) -> Vec<(String, Value)> {
    metadata(name).into_iter().filter(|(k, _)| k.starts_with("tokenizer.")).collect()
}

#[test]
fn a_gguf_with_its_own_tokenizer_runs_from_a_suite_with_no_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny-llama-with-tokenizer.gguf");
    llama_with_its_tokenizer(&gguf);
    let apache = common::repo().join("suites/data/apache-2.0.txt");
    let tokenizer_json = common::repo().join("suites/models/tiny-llama/tokenizer.json");
    let suite = |tokenizer: &str| {
        format!(
            "name = \"t\"\nschemes = [\"f32\", \"q8_0\"]\nbackends = [\"candle-cpu\"]\nbatch_sizes = [1]\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 5\nmax_time_ms = 20\n\n[[datasets]]\nname = \"apache\"\nformat = \"text\"\ninputs = {apache:?}\nseq_len = 64\nwindows = true\n{tokenizer}\n[[models]]\nname = \"lm\"\npath = {gguf:?}\n"
        )
    };
    let run = |text: String, out: &str| {
        let path = dir.path().join(format!("{out}.toml"));
        std::fs::write(&path, text).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_qbench"))
            .args(["run", path.to_str().unwrap(), "--out", dir.path().join(out).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let run = std::fs::read_dir(dir.path().join(out).join("t")).unwrap().next().unwrap().unwrap().path();
        qbench::record::read_records(&run.join("records.jsonl")).unwrap()
    };
    let own = run(suite(""), "own");
    let json = run(suite(&format!("tokenizer = {tokenizer_json:?}\n")), "json");
    assert_eq!(own.len(), 2);
    for (a, b) in own.iter().zip(&json) {
        assert_eq!(a.status, qbench::record::CaseStatus::Ok, "{:?}", a.error);
        // The same token ids, so the same windows and the same perplexity, to the last bit.
        assert_eq!(a.scored_tokens, b.scored_tokens, "{}", a.scheme);
        assert!(a.scored_tokens.unwrap() > 1000);
        assert_eq!(a.perplexity, b.perplexity, "{}", a.scheme);
    }
    // Without a GGUF to take it from, a text dataset still needs its tokenizer.json.
    let mlp = common::weights("mlp");
    let bad = suite("").replace(&format!("path = {gguf:?}"), &format!("zoo = \"mlp\"\nweights = {mlp:?}"));
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && e.contains("needs tokenizer = \"…/tokenizer.json\"")
            && e.contains("model \"lm\" reads it and is not a GGUF"),
        "{e}"
    );
}
