//! Measurement: latency sampling and its statistics, and evaluation of outputs
//! against labels and against the fp32 reference.

pub mod alloc;
pub mod calibration;
pub mod cpu;
pub mod eval;
pub mod fidelity;
pub mod latency;
pub mod layers;
pub mod lm;
pub mod memory;
pub mod outputs;
pub mod probe;
pub mod scenario;
pub mod stats;
pub mod verdict;
