//! `records.jsonl`, as the reports read it (written by [`crate::record::RecordSink`]).

pub use crate::record::{read_records, RecordError, RecordSink};
