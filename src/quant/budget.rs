//! Named round-trip error budgets: what quantize → dequantize may cost a weight tensor.
//!
//! Two bounds per budget. Every element is within half a quantization step of its
//! original (a property of round-to-nearest that any bug in scale, zero point or
//! rounding breaks), and the tensor's SQNR is at least `min_sqnr_db`. The floors sit
//! 2.5–3.5 dB under the worst layer of the zoo models (measured: int8 per-tensor 29.5 dB on
//! the CNN's fc1, whose outliers stretch the range; per-channel 38.6 dB; int4 g32 18.8 dB).

use super::int::{Granularity, IntType};

/// A named round-trip error budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub name: &'static str,
    pub min_sqnr_db: f64,
}

pub const INT8_PER_TENSOR: Budget = Budget { name: "int8 per-tensor", min_sqnr_db: 27.0 };
pub const INT8_PER_CHANNEL: Budget = Budget { name: "int8 per-channel", min_sqnr_db: 35.0 };
pub const INT4_GROUP: Budget = Budget { name: "int4 group-wise", min_sqnr_db: 16.0 };

/// The budget for a bit width and granularity.
pub fn budget(ty: IntType, granularity: Granularity) -> Budget {
    match (ty.bits(), granularity) {
        (8, Granularity::PerTensor) => INT8_PER_TENSOR,
        (8, _) => INT8_PER_CHANNEL,
        _ => INT4_GROUP,
    }
}
