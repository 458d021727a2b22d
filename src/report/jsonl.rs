//! `records.jsonl`: one JSON object per case, appended and flushed as each case ends,
//! so a crash or a failing case loses nothing measured before it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::record::Record;
use crate::Error;

pub struct RecordSink {
    path: PathBuf,
    file: File,
}

impl RecordSink {
    pub fn open(path: &Path) -> Result<RecordSink, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Output { path: path.to_path_buf(), source })?;
        Ok(RecordSink { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, record: &Record) -> Result<(), Error> {
        let mut line = serde_json::to_vec(record).expect("a Record always serializes");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(|source| Error::Output { path: self.path.clone(), source })
    }
}

/// Reads a `records.jsonl` back; a line that does not parse is an error naming its line.
pub fn read_records(path: &Path) -> Result<Vec<Record>, Error> {
    let io = |source| Error::Output { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1))))?;
        records.push(r);
    }
    Ok(records)
}
