//! A BERT checkpoint's config.json.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = qbench::model::bert::parse_config(text);
    }
});
