//! The records as one table, written as `records.parquet`, `records.csv` and `records.json`
//! next to `records.jsonl`.
//!
//! One row per record, one column per record field, typed from the values: integers as Int64,
//! other numbers as Double, booleans, strings; lists (raw samples, confusion matrix, per-class
//! accuracy, CPU flags) as their JSON text, so every format, CSV included, holds every field.
//!
//! Parquet through Apache Arrow's `parquet` crate (its column writers, without Arrow and
//! without compression codecs), CSV through the `csv` crate. A run holds a few hundred rows;
//! polars, which wrote these files before, was 30% of a fresh release build's compile time
//! (514 of 1,694 crate-seconds, plus its codecs' C builds) for three small files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::types::Type;
use serde_json::Value;

use crate::record::Record;

/// Why the tabular files could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot write {path}: {reason}; check that the run folder is writable")]
    Write { path: PathBuf, reason: String },
    #[error("cannot build the records table: {0}")]
    Frame(String),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

/// One column's values, a row each (`None`: null).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }

    /// Row `i` as JSON (what CSV and JSON write; text stays text).
    fn json(&self, i: usize) -> Value {
        match self {
            Values::Int(v) => v[i].map_or(Value::Null, Value::from),
            Values::Float(v) => v[i].map_or(Value::Null, Value::from),
            Values::Bool(v) => v[i].map_or(Value::Null, Value::from),
            Values::Text(v) => v[i].clone().map_or(Value::Null, Value::from),
        }
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// The records as columns, in the record's field order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
}

impl Table {
    /// Rows in the table.
    pub fn height(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    pub fn column(&self, name: &str) -> Option<&Values> {
        self.columns.iter().find(|c| c.name == name).map(|c| &c.values)
    }
}

/// The records as a table, columns in the record's field order.
pub fn frame(records: &[Record]) -> Result<Table, TableError> {
    let rows: Vec<serde_json::Map<String, Value>> = records
        .iter()
        .map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(m)) => Ok(m),
            other => Err(TableError::Frame(format!("a record did not serialize to an object: {other:?}"))),
        })
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = rows.first().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let values: Vec<&Value> = rows.iter().map(|m| m.get(&name).unwrap_or(&Value::Null)).collect();
        let present = || values.iter().filter(|v| !v.is_null());
        let any = present().count() > 0;
        let values = if any && present().all(|v| v.is_i64() || v.is_u64()) {
            Values::Int(values.iter().map(|v| v.as_i64()).collect())
        } else if any && present().all(|v| v.is_number()) {
            Values::Float(values.iter().map(|v| v.as_f64()).collect())
        } else if any && present().all(|v| v.is_boolean()) {
            Values::Bool(values.iter().map(|v| v.as_bool()).collect())
        } else {
            let text = |v: &Value| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            Values::Text(values.iter().map(|v| text(v)).collect())
        };
        columns.push(Column { name, values });
    }
    Ok(Table { columns })
}

/// Writes `records.parquet`, `records.csv` and `records.json` into `dir`.
pub fn write_all(dir: &Path, records: &[Record]) -> Result<Vec<PathBuf>, TableError> {
    let table = frame(records)?;
    let write = |name: &str, bytes: Result<Vec<u8>, String>| {
        let path = dir.join(name);
        bytes
            .and_then(|b| std::fs::write(&path, b).map_err(|e| e.to_string()))
            .map(|()| path.clone())
            .map_err(|reason| TableError::Write { path, reason })
    };
    Ok(vec![
        write("records.parquet", parquet_bytes(&table).map_err(|e| e.to_string()))?,
        write("records.csv", csv_bytes(&table))?,
        write("records.json", json_bytes(&table))?,
    ])
}

/// The table as one Parquet row group, every column optional (nulls as definition level 0).
fn parquet_bytes(table: &Table) -> parquet::errors::Result<Vec<u8>> {
    let fields = table
        .columns
        .iter()
        .map(|c| {
            let (physical, logical) = match c.values {
                Values::Int(_) => (PhysicalType::INT64, None),
                Values::Float(_) => (PhysicalType::DOUBLE, None),
                Values::Bool(_) => (PhysicalType::BOOLEAN, None),
                Values::Text(_) => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            };
            Type::primitive_type_builder(&c.name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<parquet::errors::Result<Vec<_>>>()?;
    let schema = Arc::new(Type::group_type_builder("records").with_fields(fields).build()?);
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, Default::default())?;
    let mut group = writer.next_row_group()?;
    let mut columns = table.columns.iter();
    while let Some(mut w) = group.next_column()? {
        let Some(c) = columns.next() else { break };
        fn split<T: Clone>(v: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
            (v.iter().flatten().cloned().collect(), v.iter().map(|x| i16::from(x.is_some())).collect())
        }
        match &c.values {
            Values::Int(v) => {
                let (values, levels) = split(v);
                w.typed::<Int64Type>().write_batch(&values, Some(&levels), None)?;
            }
            Values::Float(v) => {
                let (values, levels) = split(v);
                w.typed::<DoubleType>().write_batch(&values, Some(&levels), None)?;
            }
            Values::Bool(v) => {
                let (values, levels) = split(v);
                w.typed::<BoolType>().write_batch(&values, Some(&levels), None)?;
            }
            Values::Text(v) => {
                let values: Vec<ByteArray> = v.iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
                let levels: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                w.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None)?;
            }
        }
        w.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

/// The table as CSV: a header of column names, then a line per row; nulls empty, text quoted
/// where it must be (RFC 4180), numbers as Rust prints them (the shortest text that reads back
/// to the same value).
fn csv_bytes(table: &Table) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(table.columns.iter().map(|c| c.name.as_str())).map_err(|e| e.to_string())?;
    for i in 0..table.height() {
        let cells = table.columns.iter().map(|c| match &c.values {
            Values::Int(v) => v[i].map(|x| x.to_string()).unwrap_or_default(),
            Values::Float(v) => v[i].map(|x| format!("{x:?}")).unwrap_or_default(),
            Values::Bool(v) => v[i].map(|x| x.to_string()).unwrap_or_default(),
            Values::Text(v) => v[i].clone().unwrap_or_default(),
        });
        w.write_record(cells).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// The table as a JSON array of row objects (columns in order, nulls as null).
fn json_bytes(table: &Table) -> Result<Vec<u8>, String> {
    let rows: Vec<Value> = (0..table.height())
        .map(|i| Value::Object(table.columns.iter().map(|c| (c.name.clone(), c.values.json(i))).collect()))
        .collect();
    serde_json::to_vec(&rows).map_err(|e| e.to_string())
}

/// Reads `records.parquet` back (for tests and tools): every column, typed as written.
pub fn read_parquet(path: &Path) -> Result<Table, TableError> {
    let fail = |reason: String| TableError::Read { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| fail(e.to_string()))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut columns: Vec<Column> = schema
        .columns()
        .iter()
        .map(|c| {
            let values = match c.physical_type() {
                PhysicalType::INT64 => Ok(Values::Int(Vec::new())),
                PhysicalType::DOUBLE => Ok(Values::Float(Vec::new())),
                PhysicalType::BOOLEAN => Ok(Values::Bool(Vec::new())),
                PhysicalType::BYTE_ARRAY => Ok(Values::Text(Vec::new())),
                other => Err(fail(format!("column {} has type {other}, which qbench does not write", c.name()))),
            }?;
            Ok(Column { name: c.name().to_string(), values })
        })
        .collect::<Result<_, TableError>>()?;
    for row in reader.get_row_iter(None).map_err(|e| fail(e.to_string()))? {
        let row = row.map_err(|e| fail(e.to_string()))?;
        for ((_, field), column) in row.get_column_iter().zip(&mut columns) {
            let mismatch = || fail(format!("column {} holds {field:?}", column.name));
            match (&mut column.values, field) {
                (Values::Int(v), Field::Long(x)) => v.push(Some(*x)),
                (Values::Int(v), Field::Null) => v.push(None),
                (Values::Float(v), Field::Double(x)) => v.push(Some(*x)),
                (Values::Float(v), Field::Null) => v.push(None),
                (Values::Bool(v), Field::Bool(x)) => v.push(Some(*x)),
                (Values::Bool(v), Field::Null) => v.push(None),
                (Values::Text(v), Field::Str(x)) => v.push(Some(x.clone())),
                (Values::Text(v), Field::Null) => v.push(None),
                _ => return Err(mismatch()),
            }
        }
    }
    Ok(Table { columns })
}
