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
