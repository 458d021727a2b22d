//! Records as a polars DataFrame, written as `records.parquet`, `records.csv` and
//! `records.json` next to `records.jsonl`.
//!
//! One row per record, one column per record field, typed from the values: integers as Int64,
//! other numbers as Float64, booleans, strings; lists (raw samples, confusion matrix, per-class
//! accuracy, CPU flags) as their JSON text, so every format, CSV included, holds every field.

use std::path::Path;

use polars::prelude::*;

use crate::record::Record;

/// Why the tabular files could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot write {path}: {reason}; check that the run folder is writable")]
    Write { path: std::path::PathBuf, reason: String },
    #[error("cannot build the records table: {0}")]
    Frame(String),
}

/// The records as a DataFrame, columns in the record's field order.
pub fn frame(records: &[Record]) -> Result<DataFrame, TableError> {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = records
        .iter()
        .map(|r| match serde_json::to_value(r) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            other => Err(TableError::Frame(format!("a record did not serialize to an object: {other:?}"))),
        })
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = rows.first().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        let values: Vec<&serde_json::Value> =
            rows.iter().map(|m| m.get(name).unwrap_or(&serde_json::Value::Null)).collect();
        let present = || values.iter().filter(|v| !v.is_null());
        let col = if present().all(|v| v.is_i64() || v.is_u64()) && present().count() > 0 {
            Column::new(name.as_str().into(), values.iter().map(|v| v.as_i64()).collect::<Vec<Option<i64>>>())
        } else if present().all(|v| v.is_number()) && present().count() > 0 {
            Column::new(name.as_str().into(), values.iter().map(|v| v.as_f64()).collect::<Vec<Option<f64>>>())
        } else if present().all(|v| v.is_boolean()) && present().count() > 0 {
            Column::new(name.as_str().into(), values.iter().map(|v| v.as_bool()).collect::<Vec<Option<bool>>>())
        } else {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            Column::new(name.as_str().into(), values.iter().map(|v| text(v)).collect::<Vec<Option<String>>>())
        };
        columns.push(col);
    }
    DataFrame::new(records.len(), columns).map_err(|e| TableError::Frame(e.to_string()))
}

/// Writes `records.parquet`, `records.csv` and `records.json` into `dir`.
pub fn write_all(dir: &Path, records: &[Record]) -> Result<Vec<std::path::PathBuf>, TableError> {
    let mut df = frame(records)?;
    let create = |name: &str| {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .map(|f| (f, path.clone()))
            .map_err(|e| TableError::Write { path, reason: e.to_string() })
    };
    let fail = |path: std::path::PathBuf| move |e: PolarsError| TableError::Write { path, reason: e.to_string() };
    let (f, path) = create("records.parquet")?;
    ParquetWriter::new(f).finish(&mut df).map_err(fail(path))?;
    let (mut f, path) = create("records.csv")?;
    CsvWriter::new(&mut f).finish(&mut df).map_err(fail(path))?;
    let (mut f, path) = create("records.json")?;
    JsonWriter::new(&mut f).with_json_format(JsonFormat::Json).finish(&mut df).map_err(fail(path))?;
    Ok(["records.parquet", "records.csv", "records.json"].iter().map(|n| dir.join(n)).collect())
}

/// Reads `records.parquet` back (for tests and tools).
pub fn read_parquet(path: &Path) -> Result<DataFrame, TableError> {
    let f = std::fs::File::open(path).map_err(|e| TableError::Frame(format!("{}: {e}", path.display())))?;
    ParquetReader::new(f).finish().map_err(|e| TableError::Frame(format!("{}: {e}", path.display())))
}
