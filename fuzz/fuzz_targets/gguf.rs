//! A GGUF language model: the header walk, then candle's reader and qbench's checks, and the
//! tokenizer qbench builds from its `tokenizer.ggml.*` metadata.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let _ = qbench::model::gguf_check::check(data);
    let path = common::file("m.gguf", data);
    let _ = qbench::model::gguf_lm::GgufLm::load("m", &path);
    if let Ok(tok) = qbench::model::gguf_tokenizer::from_file(&path) {
        let _ = tok.encode("a few words, ünïcode and <s> specials", false);
    }
});
