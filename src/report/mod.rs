//! Outputs derived from records: the append-only JSONL sink and the Markdown table.

pub mod compare;
pub mod jsonl;
pub mod markdown;
pub mod table;
