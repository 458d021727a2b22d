//! Integer weight formats: how an artifact stores a weight as integers (type, scale and zero
//! point per block, granularity) and ONNX's `QuantizeLinear`/`DequantizeLinear` semantics, which
//! every reader and writer of those files shares. How the parameters are chosen (onnxruntime's
//! rules) is `quant::int`'s.

use serde::{Deserialize, Serialize};

/// The integer storage types qbench quantizes weights to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntType {
    I8,
    U8,
    I4,
    U4,
}

impl IntType {
    pub fn bits(self) -> u32 {
        match self {
            IntType::I8 | IntType::U8 => 8,
            IntType::I4 | IntType::U4 => 4,
        }
    }

    /// The full range of the type.
    pub fn range(self) -> (i32, i32) {
        match self {
            IntType::I8 => (-128, 127),
            IntType::U8 => (0, 255),
            IntType::I4 => (-8, 7),
            IntType::U4 => (0, 15),
        }
    }

    /// The range onnxruntime quantizes into: symmetric int8 drops −128 so ±absmax are both exact.
    pub fn quant_range(self, symmetric: bool) -> (i32, i32) {
        match (self, symmetric) {
            (IntType::I8, true) => (-127, 127),
            _ => self.range(),
        }
    }
}

/// Scale and zero point of one quantized block (tensor, channel or group).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// ONNX `QuantizeLinear` of one value into `[qmin, qmax]` (round half to even, saturate).
pub fn quantize_linear(x: f32, p: QParams, qmin: i32, qmax: i32) -> i32 {
    let q = (x / p.scale).round_ties_even() as i64 + p.zero_point as i64;
    q.clamp(qmin as i64, qmax as i64) as i32
}

/// ONNX `DequantizeLinear` of one value.
pub fn dequantize_linear(q: i32, p: QParams) -> f32 {
    (q - p.zero_point) as f32 * p.scale
}

/// Which elements share one scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    PerTensor,
    /// One block per output channel (axis 0).
    PerChannel,
    /// Blocks of this many consecutive elements along each output channel's row.
    Group(usize),
}

/// A weight tensor stored as integers with its quantization parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    /// The float tensor's shape; axis 0 is the output channel.
    pub shape: Vec<usize>,
    pub ty: IntType,
    pub symmetric: bool,
    pub granularity: Granularity,
    /// One integer per element, in the float tensor's order.
    pub values: Vec<i32>,
    /// One per block, in order (tensor; channels; or channels × groups).
    pub params: Vec<QParams>,
}

impl QuantizedWeight {
    /// Elements that share one block's parameters.
    pub fn block_len(&self) -> usize {
        let n: usize = self.shape.iter().product();
        n / self.params.len()
    }

    /// The float tensor this stands for.
    pub fn dequantize(&self) -> Vec<f32> {
        let block = self.block_len();
        self.values.iter().enumerate().map(|(i, &q)| dequantize_linear(q, self.params[i / block])).collect()
    }

    /// Stored bits per weight: the integers, plus an f32 scale per block, plus a one-byte
    /// zero point per block when asymmetric (symmetric needs none; 4-bit zero points are
    /// stored a byte each too, as the artifacts write them).
    pub fn bits_per_weight(&self) -> f64 {
        let per_block = 32 + if self.symmetric { 0 } else { 8 };
        self.ty.bits() as f64 + per_block as f64 / self.block_len() as f64
    }
}
