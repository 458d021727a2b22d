//! qbench: benchmark and validate quantized neural-network models on real engines.
//!
//! The data flow is one straight line (see `docs/ARCHITECTURE.md`):
//! suite file → [`suite::Suite`] → cases → model load → scheme → backend session →
//! measurements → [`record::Record`] appended to `records.jsonl` → reports.
//!
//! The modules form layers, each using only those before it (a test checks every path):
//! files → hash → data → zoo → model → quant → backend → measure → record → bundle → report → gate →
//! suite → run → explain → pack → merge → error.
//!
//! Everything from `report` on is the `harness` feature (on by default): a target device's
//! runner (the qbench-device crate) builds the layers up to `bundle` only, without the
//! reporting stack.

pub mod backend;
pub mod bundle;
pub mod data;
#[cfg(feature = "harness")]
pub mod error;
#[cfg(feature = "harness")]
pub mod explain;
pub mod files;
#[cfg(feature = "harness")]
pub mod gate;
pub mod hash;
pub mod measure;
#[cfg(feature = "harness")]
pub mod merge;
pub mod model;
#[cfg(feature = "harness")]
pub mod pack;
#[cfg(feature = "harness")]
pub mod profile;
pub mod quant;
pub mod record;
#[cfg(feature = "harness")]
pub mod report;
#[cfg(feature = "harness")]
pub mod run;
#[cfg(feature = "harness")]
pub mod suite;
#[cfg(feature = "harness")]
pub mod tune;
pub mod zoo;

#[cfg(feature = "harness")]
pub use error::{Error, Result};

/// Every allocation in a process that links qbench is counted (`measure::alloc`), so a case's
/// memory is exact, not the OS's resident-set growth.
#[global_allocator]
static ALLOCATOR: measure::alloc::CountingAllocator = measure::alloc::CountingAllocator;
