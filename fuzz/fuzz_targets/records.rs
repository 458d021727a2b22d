//! The records reader (records.jsonl) and the gate, report-table and completeness code that
//! reads what it returns.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = qbench::record::parse_records(std::path::Path::new("records.jsonl"), data) {
        let _ = qbench::report::markdown::render(&file.records);
        let _ = qbench::report::chart::from_records(&file.records);
    }
});
