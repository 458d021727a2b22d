//! Text datasets through a tokenizer.json: the input is the tokenizer, a 0 byte, and the text.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let tokenizer = common::file("tokenizer.json", &data[..split]);
    let text = common::file("text.txt", data.get(split + 1..).unwrap_or_default());
    let _ = qbench::data::load_text("d", &text, &tokenizer, 8, false, None);
    let _ = qbench::data::load_text("d", &text, &tokenizer, 8, true, None);
});
