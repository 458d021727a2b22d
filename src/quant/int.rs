//! Integer quantization math: ONNX `QuantizeLinear`/`DequantizeLinear` semantics and
//! onnxruntime's scale/zero-point rules, per tensor, per channel or per group.
//!
//! - Quantize: `q = saturate(round_half_to_even(x / scale) + zero_point)` (ONNX spec).
//! - Dequantize: `x = (q − zero_point) · scale`.
//! - Scale and zero point follow onnxruntime's `compute_scale_zp`: the range is widened to
//!   contain 0; symmetric ranges become `[−absmax, absmax]` and take the zero point
//!   `round((qmin + qmax) / 2)`; asymmetric ones take `round(qmin − rmin / scale)`; the scale
//!   is `(rmax − rmin) / (qmax − qmin)` in f64, stored as f32, and 1 (zero point 0) when it
//!   would underflow. Symmetric int8 uses `[−127, 127]`, as onnxruntime does.

pub use crate::model::qformat::{
    dequantize_linear, finite_range, quantize_block, quantize_block_into, quantize_linear, Granularity, IntType,
    QParams, QuantizedWeight,
};

/// onnxruntime's `compute_scale_zp` for the real range `[rmin, rmax]` and integer range `[qmin, qmax]`.
pub fn scale_zero_point(rmin: f32, rmax: f32, qmin: i32, qmax: i32, symmetric: bool) -> QParams {
    debug_assert!(qmin <= 0 && 0 <= qmax);
    let (mut rmin, mut rmax) = (rmin.min(0.0), rmax.max(0.0));
    if symmetric {
        let absmax = rmin.abs().max(rmax.abs());
        rmin = -absmax;
        rmax = absmax;
    }
    let scale = (rmax as f64 - rmin as f64) / (qmax as f64 - qmin as f64);
    if scale < f32::MIN_POSITIVE as f64 {
        return QParams { scale: 1.0, zero_point: 0 };
    }
    let zero_point = if symmetric {
        ((qmin + qmax) as f64 / 2.0).round_ties_even() as i32
    } else {
        (qmin as f64 - rmin as f64 / scale).round_ties_even() as i32
    };
    QParams { scale: scale as f32, zero_point }
}

/// Why a weight cannot be quantized as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("group size {group} does not divide the layer's row width {width}; use a group size that divides {width}, or keep this layer in float with an override")]
    GroupSize { width: usize, group: usize },
    #[error("the weight holds NaN or infinite values; it cannot be quantized")]
    NonFinite,
}

/// Quantizes `weights` (shape `shape`, output channel first) with onnxruntime's rules.
pub fn quantize_weight(
    weights: &[f32],
    shape: &[usize],
    ty: IntType,
    symmetric: bool,
    granularity: Granularity,
) -> Result<QuantizedWeight, QuantError> {
    let n = weights.len();
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let width = n / rows;
    let block = match granularity {
        Granularity::PerTensor => n,
        Granularity::PerChannel => width,
        Granularity::Group(g) if g > 0 && width.is_multiple_of(g) => g,
        Granularity::Group(g) => return Err(QuantError::GroupSize { width, group: g }),
    };
    let (qmin, qmax) = ty.quant_range(symmetric);
    // Written block by block into fresh storage, not zero-filled first (a pass over a large
    // output that only costs time).
    let mut values: Vec<u8> = Vec::with_capacity(n);
    let mut params = Vec::with_capacity(n / block.max(1));
    for (chunk, out) in weights.chunks(block.max(1)).zip(values.spare_capacity_mut()[..n].chunks_mut(block.max(1))) {
        let (lo, hi) = finite_range(chunk).ok_or(QuantError::NonFinite)?;
        let p = scale_zero_point(lo, hi, qmin, qmax, symmetric);
        quantize_block_into(chunk, p, qmin, qmax, out);
        params.push(p);
    }
    // SAFETY: the blocks cover all n bytes, and quantize_block_into wrote every one of them.
    unsafe { values.set_len(n) };
    Ok(QuantizedWeight { shape: shape.to_vec(), ty, symmetric, granularity, values, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zp_scale(rmin: f32, rmax: f32, qmin: i32, qmax: i32, sym: bool) -> (i32, f32) {
        let p = scale_zero_point(rmin, rmax, qmin, qmax, sym);
        (p.zero_point, p.scale)
    }

    #[test]
    fn scale_and_zero_point_match_onnxruntime_test_values() {
        // Expected values from onnxruntime's own test_quant_util.py.
        assert_eq!(zp_scale(0.0, 0.0, -127, 127, true), (0, 1.0));
        assert_eq!(zp_scale(1.0, -1.0, -127, 127, true), (0, 1.0));
        assert_eq!(zp_scale(0.0, 0.0, 0, 255, true), (0, 1.0));
        assert_eq!(zp_scale(-1.0, 2.0, -127, 127, true), (0, (2.0f64 / 127.0) as f32));
        assert_eq!(zp_scale(-1.0, 2.0, -127, 127, false), (-42, (3.0f64 / 254.0) as f32));
        assert_eq!(zp_scale(-1.0, 2.0, 0, 255, true), (128, (4.0f64 / 255.0) as f32));
        assert_eq!(zp_scale(-1.0, 2.0, 0, 255, false), (85, (3.0f64 / 255.0) as f32));
        let tiny = f32::MIN_POSITIVE * 0.1;
        assert_eq!(zp_scale(-tiny, tiny, 0, 255, true), (0, 1.0));
    }

    #[test]
    fn quantize_linear_rounds_half_to_even_and_saturates_as_the_onnx_spec() {
        let p = QParams { scale: 1.0, zero_point: 0 };
        let q = |x| quantize_linear(x, p, -128, 127);
        assert_eq!([q(0.5), q(1.5), q(2.5), q(-0.5), q(-1.5), q(-2.5)], [0, 2, 2, 0, -2, -2]);
        assert_eq!([q(300.0), q(-300.0), q(127.49), q(-128.5)], [127, -128, 127, -128]);
        // With a zero point, saturation applies after adding it (uint8 example of the spec).
        let p = QParams { scale: 2.0, zero_point: 128 };
        let u = |x| quantize_linear(x, p, 0, 255);
        assert_eq!([u(0.0), u(2.0), u(3.0), u(5.0), u(-1000.0), u(1000.0)], [128, 129, 130, 130, 0, 255]);
        assert_eq!(dequantize_linear(130, p), 4.0);
    }

    #[test]
    fn per_channel_and_group_blocks_and_errors() {
        // Two channels with very different ranges: per-channel gives each its own scale.
        let w = [1.0, -0.5, 0.25, 100.0, -50.0, 25.0];
        let q = quantize_weight(&w, &[2, 3], IntType::I8, true, Granularity::PerChannel).unwrap();
        assert_eq!(q.params.len(), 2);
        assert_eq!(q.params[0].scale, (2.0f64 / 254.0) as f32);
        assert_eq!(q.params[1].scale, (200.0f64 / 254.0) as f32);
        assert_eq!(&q.ints().take(3).collect::<Vec<_>>(), &[127, -64, 32]); // 0.25/(1/127) = 31.75 → 32; −0.5·127 = −63.5 → −64 (even)
        let t = quantize_weight(&w, &[2, 3], IntType::I8, true, Granularity::PerTensor).unwrap();
        assert_eq!(t.params.len(), 1);
        assert_eq!(&t.ints().take(3).collect::<Vec<_>>(), &[1, -1, 0]); // the small channel collapses at per-tensor scale
        let g = quantize_weight(&[0.0; 8], &[2, 4], IntType::I4, false, Granularity::Group(2)).unwrap();
        assert_eq!(g.params.len(), 4);
        assert_eq!(
            quantize_weight(&[0.0; 9], &[1, 9], IntType::I4, true, Granularity::Group(32)).unwrap_err(),
            QuantError::GroupSize { width: 9, group: 32 }
        );
        assert_eq!(
            quantize_weight(&[f32::NAN], &[1, 1], IntType::I8, true, Granularity::PerTensor).unwrap_err(),
            QuantError::NonFinite
        );
    }

    /// The vectorized block quantizer gives exactly the scalar `QuantizeLinear`'s integers: on
    /// ties (x / scale exactly k + ½, both signs), values far outside the range, signed zeros,
    /// subnormals, and random values, for every type and both symmetries.
    #[test]
    fn the_block_quantizer_is_bit_identical_to_quantize_linear() {
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for ty in [IntType::I8, IntType::U8, IntType::I4, IntType::U4] {
            for symmetric in [true, false] {
                let (qmin, qmax) = ty.quant_range(symmetric);
                for _ in 0..200 {
                    let scale = f32::from_bits((next() as u32 % 0x3f80_0000).max(1)); // (0, 1)
                    let zp = if symmetric {
                        ((qmin + qmax) as f64 / 2.0).round_ties_even() as i32
                    } else {
                        qmin + (next() % (qmax - qmin + 1) as u64) as i32
                    };
                    let p = QParams { scale, zero_point: zp };
                    let mut xs: Vec<f32> = (-600..600).map(|k| (k as f32 + 0.5) * scale).collect();
                    xs.extend((0..2000).map(|_| f32::from_bits(next() as u32)).filter(|x| x.is_finite()));
                    xs.extend([0.0, -0.0, f32::MAX, f32::MIN, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45, -1e-45]);
                    xs.extend((0..500).map(|_| ((next() % 2_000_001) as f32 - 1e6) * 1e-3 * scale * 300.0));
                    // The dispatched kernel (AVX2 where the CPU has it) and the baseline one.
                    let mut out = vec![0u8; xs.len()];
                    quantize_block(&xs, p, qmin, qmax, &mut out);
                    let mut baseline = vec![std::mem::MaybeUninit::new(0u8); xs.len()];
                    crate::model::qformat::quantize_lanes(&xs, p.scale, p.zero_point, qmin, qmax, &mut baseline);
                    // SAFETY: every byte was initialized (to 0, then by the kernel).
                    let baseline: Vec<u8> = baseline.iter().map(|b| unsafe { b.assume_init() }).collect();
                    assert_eq!(out, baseline, "{ty:?} sym {symmetric}: scale {scale:e}, zp {zp}");
                    for (x, b) in xs.iter().zip(&out) {
                        assert_eq!(
                            ty.decode(*b),
                            quantize_linear(*x, p, qmin, qmax),
                            "{ty:?} sym {symmetric}: x {x:e}, scale {scale:e}, zp {zp}"
                        );
                    }
                }
            }
        }
        let xs = [3.0f32, -1.0, 7.5, -0.0, 2.0, 9.0, -4.0, 1.0, 0.5, -8.5];
        assert_eq!(finite_range(&xs), Some((-8.5, 9.0)));
        assert_eq!(finite_range(&xs[..3]), Some((-1.0, 7.5)));
        // NaN or an infinity anywhere, in the vectorized body or the remainder: no range.
        let mut long: Vec<f32> = (0..40).map(|i| i as f32 - 20.0).collect();
        assert_eq!(finite_range(&long), Some((-20.0, 19.0)));
        for (at, bad) in [(3, f32::NAN), (17, f32::INFINITY), (39, f32::NEG_INFINITY), (35, -f32::NAN)] {
            let keep = long[at];
            long[at] = bad;
            assert_eq!(finite_range(&long), None, "{bad} at {at}");
            long[at] = keep;
        }
    }

    #[test]
    fn bits_per_weight_counts_scales_and_zero_points() {
        let q = quantize_weight(&[0.5; 64], &[2, 32], IntType::I4, false, Granularity::Group(32)).unwrap();
        assert_eq!(q.bits_per_weight(), 4.0 + (32.0 + 8.0) / 32.0);
        let s = quantize_weight(&[0.5; 64], &[2, 32], IntType::I8, true, Granularity::PerTensor).unwrap();
        assert_eq!(s.bits_per_weight(), 8.0 + 32.0 / 64.0);
    }
}
