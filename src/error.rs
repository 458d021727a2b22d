//! The library's error type: one enum per layer, gathered here.
//!
//! Every message names the file or item at fault and says what to do next;
//! `main` prints it with `Error: {:#}` and maps it to an exit code.

use std::path::PathBuf;

pub use crate::backend::BackendError;
pub use crate::data::DataError;
pub use crate::model::ModelError;
pub use crate::suite::SuiteError;

/// Anything qbench's library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot write {path}: {source}; check that the directory is writable, or choose another with --out <dir>")]
    Output { path: PathBuf, source: std::io::Error },
    #[error("{backend} would run {scheme} {realization}, not native, and the suite sets require_native = true; drop the case or the requirement")]
    NotNative { scheme: String, backend: &'static str, realization: String },
    #[error("shard {shard} has no case: cases go to shards by (model, backend, batch) group, and this suite's {cases} case(s) have fewer groups than shards; use fewer shards")]
    EmptyShard { shard: String, cases: usize },
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    #[error("a case panicked inside the engine: {0}")]
    Panic(String),
    #[error(transparent)]
    Explain(#[from] crate::explain::ExplainError),
    #[error(transparent)]
    Compare(#[from] crate::report::compare::CompareError),
    #[error(transparent)]
    Table(#[from] crate::report::table::TableError),
    #[error(transparent)]
    Chart(#[from] crate::report::chart::ChartError),
    #[error(transparent)]
    Html(#[from] crate::report::html::HtmlError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
