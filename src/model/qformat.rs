//! Integer weight formats: how an artifact stores a weight as integers (type, scale and zero
//! point per block, granularity) and ONNX's `QuantizeLinear`/`DequantizeLinear` semantics, which
//! every reader and writer of those files shares. How the parameters are chosen (onnxruntime's
//! rules) is `quant::int`'s.

use std::mem::MaybeUninit;

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
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have one layout, and the callee only writes
    // initialized bytes through it.
    let out = unsafe { &mut *(out as *mut [u8] as *mut [MaybeUninit<u8>]) };
    quantize_block_into(xs, p, qmin, qmax, out);
}

/// [`quantize_block`] into bytes not yet written (a weight's freshly allocated storage): it
/// writes every one of `out`, so the caller skips zero-filling a large output first.
pub fn quantize_block_into(xs: &[f32], p: QParams, qmin: i32, qmax: i32, out: &mut [MaybeUninit<u8>]) {
    debug_assert_eq!(xs.len(), out.len());
    let zp = p.zero_point;
    if !(qmin..=qmax).contains(&zp) || !(-256..=256).contains(&qmin) || !(-256..=256).contains(&qmax) {
        // Parameters no scheme makes (a zero point outside the range): the scalar definition.
        for (o, &x) in out.iter_mut().zip(xs) {
            o.write(quantize_linear(x, p, qmin, qmax) as u8);
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

/// [`quantize_lanes`] in AVX2 intrinsics, 32 values a step: `vdivps` (the same IEEE division),
/// `vminps`/`vmaxps` for the clamp, `vcvtps2dq` for the rounding (round half to even, the
/// default MXCSR mode Rust code always runs under), integer clamp, then two saturating packs
/// into bytes, exact because the values already lie in `[qmin, qmax]` ⊂ the byte type. The
/// same bits as [`quantize_lanes`] (the property test compares them). Needs `qmin..=qmax`
/// within `-128..=127` or within `0..=255`; other ranges take [`quantize_lanes`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_lanes_avx2(xs: &[f32], scale: f32, zp: i32, qmin: i32, qmax: i32, out: &mut [MaybeUninit<u8>]) {
    use std::arch::x86_64::*;
    let signed = qmin < 0;
    if !((signed && qmin >= -128 && qmax <= 127) || (!signed && qmax <= 255)) {
        quantize_lanes(xs, scale, zp, qmin, qmax, out);
        return;
    }
    let n = xs.len().min(out.len());
    let (lo, hi) = quotient_bounds(qmin, qmax, zp);
    let (vscale, vlo, vhi) = (_mm256_set1_ps(scale), _mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let (vzp, vqmin, vqmax) = (_mm256_set1_epi32(zp), _mm256_set1_epi32(qmin), _mm256_set1_epi32(qmax));
    // The packs interleave 128-bit lanes; this puts the four groups of four back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let src = xs.as_ptr();
    let dst = out.as_mut_ptr() as *mut u8;
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 ≤ n, so every load reads within xs and the store writes within out.
        let ints = |k: usize| {
            let y = _mm256_div_ps(_mm256_loadu_ps(src.add(i + 8 * k)), vscale);
            let q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(y, vlo), vhi)), vzp);
            _mm256_min_epi32(_mm256_max_epi32(q, vqmin), vqmax)
        };
        let (a, b, c, d) = (ints(0), ints(1), ints(2), ints(3));
        let (ab, cd) = (_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        let bytes = if signed { _mm256_packs_epi16(ab, cd) } else { _mm256_packus_epi16(ab, cd) };
        _mm256_storeu_si256(dst.add(i) as *mut __m256i, _mm256_permutevar8x32_epi32(bytes, order));
        i += 32;
    }
    quantize_lanes(&xs[i..n], scale, zp, qmin, qmax, &mut out[i..n]);
}

/// The quotients `x / scale` worth telling apart: one past the range that can still land in
/// `[qmin, qmax]` after adding the zero point; beyond them every value saturates the same.
fn quotient_bounds(qmin: i32, qmax: i32, zp: i32) -> (f32, f32) {
    ((qmin as i64 - zp as i64 - 1) as f32, (qmax as i64 - zp as i64 + 1) as f32)
}

/// The block kernel of [`quantize_block`], for parameters it has checked; inlined into each
/// instruction-set version.
#[inline(always)]
pub(crate) fn quantize_lanes(xs: &[f32], scale: f32, zp: i32, qmin: i32, qmax: i32, out: &mut [MaybeUninit<u8>]) {
    let (lo, hi) = quotient_bounds(qmin, qmax, zp);
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
        o.write(q as u8);
    }
}

/// The smallest and largest value, or `None` when any value is NaN or infinite: one pass over
/// the data (a quantizer reads each block once from memory for its range, then quantizes it
/// from cache), dispatched to AVX2 where the CPU has it.
pub fn finite_range(xs: &[f32]) -> Option<(f32, f32)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { finite_range_avx2(xs) };
    }
    finite_range_lanes(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn finite_range_avx2(xs: &[f32]) -> Option<(f32, f32)> {
    finite_range_lanes(xs)
}

/// [`finite_range`]'s kernel in sixteen lanes the compiler vectorizes: a running minimum and
/// maximum, and whether every `|x|` was below infinity (false for NaN), without early exits.
#[inline(always)]
fn finite_range_lanes(xs: &[f32]) -> Option<(f32, f32)> {
    const L: usize = 16;
    let (mut lo, mut hi, mut ok) = ([f32::INFINITY; L], [f32::NEG_INFINITY; L], [true; L]);
    let chunks = xs.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..L {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
            ok[i] &= c[i].abs() < f32::INFINITY;
        }
    }
    let mut l = lo.iter().fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    let mut h = hi.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let mut finite = ok.iter().all(|&o| o);
    for &x in rest {
        l = if x < l { x } else { l };
        h = if x > h { x } else { h };
        finite &= x.abs() < f32::INFINITY;
    }
    finite.then_some((l, h))
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

/// A static layer's bias as `QLinearConv` and onnxruntime's QDQ form hold it: int32 at the scale
/// input scale × weight scale (per output channel), saturating; every form writes these values
/// (their f32 dequantization where the form takes f32), so engines compute the same thing.
pub(crate) fn static_bias(bias: &[f32], input: QParams, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let per = |c: usize| input.scale * weight_scales[c.min(weight_scales.len() - 1)];
    let q: Vec<i32> = bias
        .iter()
        .enumerate()
        .map(|(c, &b)| (b / per(c)).round_ties_even().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
        .collect();
    let f = q.iter().enumerate().map(|(c, &v)| v as f32 * per(c)).collect();
    (q, f)
}
