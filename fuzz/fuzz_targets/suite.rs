//! The suite parser and validator on arbitrary text (paths resolve against the scratch folder).
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = qbench::suite::Suite::from_str(&common::scratch().join("suite.toml"), text);
    }
});
