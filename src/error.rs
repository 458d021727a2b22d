//! The library's error type: every layer's own error, gathered here for the commands.
//!
//! Each layer returns its own error type, with the cause it wraps kept as a `#[source]`, so a
//! message names the file or item at fault and says what to do next, and the chain says why.
//! `main` prints it with `Error: {:#}` (the whole chain on one line).

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
    Variant(#[from] crate::quant::VariantError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Localize(#[from] crate::measure::layers::LocalizeError),
    #[error(transparent)]
    Records(#[from] crate::record::RecordError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Chart(#[from] crate::report::chart::ChartError),
    #[error(transparent)]
    Compare(#[from] crate::report::compare::CompareError),
    #[error(transparent)]
    Gate(#[from] crate::gate::GateError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Case(#[from] crate::run::CaseError),
    #[error(transparent)]
    Explain(#[from] crate::explain::ExplainError),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    #[error("cannot write {path}; check that the directory is writable, or choose another with --out <dir>")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
