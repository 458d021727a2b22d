//! qbench: benchmark and validate quantized neural-network models on real engines.
//!
//! The data flow is one straight line (see `docs/ARCHITECTURE.md`):
//! suite file → [`suite::Suite`] → cases → model load → scheme → backend session →
//! measurements → [`record::Record`] appended to `records.jsonl` → reports.
//!
//! The modules form layers, each using only those before it (a test checks every path):
//! files → hash → data → zoo → model → quant → backend → measure → record → report → gate → suite →
//! run → explain → merge → error.

pub mod backend;
pub mod data;
pub mod error;
pub mod explain;
pub mod files;
pub mod gate;
pub mod hash;
pub mod measure;
pub mod merge;
pub mod model;
pub mod quant;
pub mod record;
pub mod report;
pub mod run;
pub mod suite;
pub mod zoo;

pub use error::{Error, Result};

/// Every allocation in a process that links qbench is counted (`measure::alloc`), so a case's
/// memory is exact, not the OS's resident-set growth.
#[global_allocator]
static ALLOCATOR: measure::alloc::CountingAllocator = measure::alloc::CountingAllocator;
