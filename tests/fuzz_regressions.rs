//! Every input the fuzzers (`scripts/fuzz`, `fuzz/fuzz_targets/`) found a crash with, kept in
//! `tests/fuzz-regressions/<target>/` and run again through the same code as its target: each
//! must now give a clean result (a value or an error), never a panic.

mod common;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = common::repo().join("tests/fuzz-regressions").join(target);
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Runs `f` on each of the target's inputs, naming the input that panics.
fn each(target: &str, f: impl Fn(&[u8])) -> usize {
    let found = inputs(target);
    for path in &found {
        let bytes = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&bytes)));
        assert!(outcome.is_ok(), "{} still panics", path.display());
    }
    found.len()
}

#[test]
fn records_inputs_that_crashed_the_report_are_read_and_rendered() {
    let n = each("records", |bytes| {
        let file = qbench::record::parse_records(Path::new("records.jsonl"), bytes).expect("the crash input parses");
        // The report's text and charts over them: a non-ASCII commit field once split a
        // character in two.
        assert!(!qbench::report::markdown::render(&file.records).is_empty());
        let _ = qbench::report::chart::from_records(&file.records);
    });
    assert!(n >= 1, "the corpus of regressions is there");
}

/// Writes `bytes` as `name` in a fresh folder and returns the folder and the path.
fn file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn npy_headers_that_hung_the_parser_are_refused_at_once() {
    let n = each("npy", |bytes| {
        let (_dir, path) = file("x.npy", bytes);
        let e = qbench::data::load_npy("d", &path, None, None).unwrap_err().to_string();
        assert!(e.contains("not a NumPy header"), "{e}");
    });
    assert!(n >= 1);
}

#[test]
fn tokenizer_files_that_panicked_the_tokenizers_crate_are_errors() {
    let n = each("text", |bytes| {
        let split = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let (_d1, tokenizer) = file("tokenizer.json", &bytes[..split]);
        let (_d2, text) = file("text.txt", bytes.get(split + 1..).unwrap_or_default());
        assert!(qbench::data::load_text("d", &text, &tokenizer, 8, false, None).is_err());
    });
    assert!(n >= 1);
}
