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

    /// The integer a stored byte holds: two's complement for the signed types.
    pub fn decode(self, byte: u8) -> i32 {
        match self {
            IntType::I8 | IntType::I4 => byte as i8 as i32,
            IntType::U8 | IntType::U4 => byte as i32,
        }
    }

    /// Integers of this type (within its range) as stored bytes.
    pub fn encode(self, ints: &[i32]) -> Vec<u8> {
        ints.iter().map(|&v| v as u8).collect()
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
    let q = ((x / p.scale).round_ties_even() as i64).saturating_add(p.zero_point as i64);
    q.clamp(qmin as i64, qmax as i64) as i32
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude below 2²² to the nearest
/// integer, ties to even, in the default rounding mode — `round_ties_even` without a call.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// [`quantize_linear`] over a block of finite values, each stored as a byte (two's complement
/// for signed types), written so the compiler vectorizes it: the division by the scale as
/// `QuantizeLinear` defines it, the quotient clamped to one past the range that can still land
/// in `[qmin, qmax]` (so it is small enough for the rounding trick), rounded with
/// [`ROUND_MAGIC`], then shifted by the zero point and saturated. Bit-identical to
/// [`quantize_linear`] for finite inputs (the tests compare them on ties and extremes).
pub fn quantize_block(xs: &[f32], p: QParams, qmin: i32, qmax: i32, out: &mut [u8]) {
    debug_assert_eq!(xs.len(), out.len());
    let zp = p.zero_point;
    if !(qmin..=qmax).contains(&zp) || !(-256..=256).contains(&qmin) || !(-256..=256).contains(&qmax) {
        // Parameters no scheme makes (a zero point outside the range): the scalar definition.
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = quantize_linear(x, p, qmin, qmax) as u8;
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { quantize_lanes_avx2(xs, p.scale, zp, qmin, qmax, out) };
        return;
    }
    quantize_lanes(xs, p.scale, zp, qmin, qmax, out);
}

/// [`quantize_lanes`] compiled for AVX2: eight lanes a vector instead of SSE2's four. The same
/// IEEE operations in the same order (Rust never contracts them into FMAs), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_lanes_avx2(xs: &[f32], scale: f32, zp: i32, qmin: i32, qmax: i32, out: &mut [u8]) {
    quantize_lanes(xs, scale, zp, qmin, qmax, out);
}

/// The block kernel of [`quantize_block`], for parameters it has checked; inlined into each
/// instruction-set version.
#[inline(always)]
pub(crate) fn quantize_lanes(xs: &[f32], scale: f32, zp: i32, qmin: i32, qmax: i32, out: &mut [u8]) {
    let lo = (qmin as i64 - zp as i64 - 1) as f32;
    let hi = (qmax as i64 - zp as i64 + 1) as f32;
    for (o, &x) in out.iter_mut().zip(xs) {
        let y = x / scale;
        let y = if y < lo {
            lo
        } else if y > hi {
            hi
        } else {
            y
        };
        let r = (y + ROUND_MAGIC) - ROUND_MAGIC;
        // SAFETY: r is a whole number in [lo, hi], a few hundred at most (qmin, qmax and zp are
        // within ±256, checked by `quantize_block`), so it fits an i32; the unchecked
        // conversion skips `as`'s saturation, which blocks vectorization (3× slower measured).
        let q = unsafe { r.to_int_unchecked::<i32>() } + zp;
        let q = if q < qmin {
            qmin
        } else if q > qmax {
            qmax
        } else {
            q
        };
        *o = q as u8;
    }
}

/// The smallest and largest of finite values, in eight lanes the compiler vectorizes (no NaN
/// handling: the caller rejects NaN and infinities first).
pub fn finite_range(xs: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([f32::INFINITY; 8], [f32::NEG_INFINITY; 8]);
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let mut l = lo.iter().fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    let mut h = hi.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    for &x in rest {
        l = if x < l { x } else { l };
        h = if x > h { x } else { h };
    }
    (l, h)
}

/// Whether every value is finite, without an early exit (so it vectorizes).
pub fn all_finite(xs: &[f32]) -> bool {
    xs.iter().fold(true, |ok, x| ok & (x.abs() < f32::INFINITY))
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
    /// One integer per element, in the float tensor's order, each as a byte (two's
    /// complement for signed types: [`IntType::decode`]); the 4-bit types are packed only
    /// when written.
    pub values: Vec<u8>,
    /// One per block, in order (tensor; channels; or channels × groups).
    pub params: Vec<QParams>,
}

impl QuantizedWeight {
    /// Elements that share one block's parameters.
    pub fn block_len(&self) -> usize {
        let n: usize = self.shape.iter().product();
        n / self.params.len()
    }

    /// The integers, in order.
    pub fn ints(&self) -> impl Iterator<Item = i32> + '_ {
        self.values.iter().map(|&b| self.ty.decode(b))
    }

    /// The float tensor this stands for.
    pub fn dequantize(&self) -> Vec<f32> {
        let block = self.block_len();
        self.ints().enumerate().map(|(i, q)| dequantize_linear(q, self.params[i / block])).collect()
    }

    /// Stored bits per weight: the integers, plus an f32 scale per block, plus a one-byte
    /// zero point per block when asymmetric (symmetric needs none; 4-bit zero points are
    /// stored a byte each too, as the artifacts write them).
    pub fn bits_per_weight(&self) -> f64 {
        let per_block = 32 + if self.symmetric { 0 } else { 8 };
        self.ty.bits() as f64 + per_block as f64 / self.block_len() as f64
    }
}
