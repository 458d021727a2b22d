//! Text datasets through a tokenizer.json: the input is the tokenizer, a 0 byte, and the text.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // qbench catches the tokenizers crate's panics on malformed files (`data::text`), which is
    // the behaviour under test; libFuzzer's panic hook would abort on them before they are
    // caught. A panic that escapes qbench still aborts (libfuzzer-sys's catch_unwind around
    // every input), so it is still a finding.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let tokenizer = common::file("tokenizer.json", &data[..split]);
    let text = common::file("text.txt", data.get(split + 1..).unwrap_or_default());
    let _ = qbench::data::load_text("d", &text, &tokenizer, 8, false, None);
    let _ = qbench::data::load_text("d", &text, &tokenizer, 8, true, None);
});
