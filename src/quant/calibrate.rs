//! Calibrators: the activation range `[rmin, rmax]` a static int8 scheme quantizes a layer's
//! input into, chosen from that input's values on the calibration split.
//!
//! Activations are quantized as onnxruntime's static quantization does (u8, asymmetric, one
//! scale and zero point per tensor, [`super::int::scale_zero_point`]); calibrators differ only
//! in the range they hand to it:
//! - **minmax**: the smallest and largest value seen.
//! - **percentile** `p`: cuts `(100 − p) / 2` percent of the values off each side (onnxruntime's
//!   asymmetric percentile), with exact order statistics (numpy's default linear interpolation)
//!   instead of a histogram.
//! - **entropy**: TensorRT's KL-divergence threshold (2048-bin histogram of `|x|`, candidate
//!   thresholds from bin 128 on, 128 quantized levels, the last minimum wins), clipped to the
//!   values' own range.
//! - **mse**: the range `α·[min, max]` whose u8 quantization has the least mean squared error
//!   on the values, searched on a grid of α in (0, 1] and refined around the best point.

use serde::{Deserialize, Serialize};

use super::int::{dequantize_linear, quantize_linear, scale_zero_point, QParams};

/// How a static scheme picks each activation range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Calibrator {
    MinMax,
    Percentile,
    Entropy,
    Mse,
}

/// The u8 range activations are quantized into.
pub const ACT_QMIN: i32 = 0;
pub const ACT_QMAX: i32 = 255;

/// Histogram bins of TensorRT's entropy calibrator, and the bin its threshold search starts at.
pub const ENTROPY_BINS: usize = 2048;
pub const ENTROPY_START_BIN: usize = 128;
/// Levels the entropy calibrator merges the histogram into (8 bits, signed: 2⁷).
pub const ENTROPY_LEVELS: usize = 128;

/// At most this many values (taken with an even stride) enter the MSE search.
pub const MSE_MAX_VALUES: usize = 1 << 16;

impl Calibrator {
    pub const ALL: [Calibrator; 4] = [Calibrator::MinMax, Calibrator::Percentile, Calibrator::Entropy, Calibrator::Mse];

    pub fn name(self) -> &'static str {
        match self {
            Calibrator::MinMax => "minmax",
            Calibrator::Percentile => "percentile",
            Calibrator::Entropy => "entropy",
            Calibrator::Mse => "mse",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Calibrator::MinMax => "range = [min, max] of the calibration activations",
            Calibrator::Percentile => {
                "range = the central p% of the calibration activations ([calibration] percentile, default 99.99)"
            }
            Calibrator::Entropy => "range clipped at TensorRT's KL-divergence threshold (2048-bin |x| histogram)",
            Calibrator::Mse => "range = α·[min, max] minimizing the u8 quantization MSE of the calibration activations",
        }
    }

    /// The range for `values` (NaN-free; the caller checks). `percentile` is used by
    /// [`Calibrator::Percentile`] only. An empty slice gives `(0, 0)`.
    pub fn range(self, values: &[f32], percentile: f64) -> (f32, f32) {
        if values.is_empty() {
            return (0.0, 0.0);
        }
        match self {
            Calibrator::MinMax => min_max(values),
            Calibrator::Percentile => percentile_range(values, percentile),
            Calibrator::Entropy => {
                let (lo, hi) = min_max(values);
                let t = entropy_threshold(values);
                (lo.max(-t), hi.min(t))
            }
            Calibrator::Mse => mse_range(values),
        }
    }
}

/// u8 asymmetric parameters for a calibrated range (onnxruntime's rules).
pub fn activation_params(range: (f32, f32)) -> QParams {
    scale_zero_point(range.0, range.1, ACT_QMIN, ACT_QMAX, false)
}

pub fn min_max(values: &[f32]) -> (f32, f32) {
    values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// The `q`-quantile (0 ≤ q ≤ 1) by linear interpolation between order statistics
/// (Hyndman–Fan type 7, numpy's default). Reorders `values`.
fn quantile(values: &mut [f32], q: f64) -> f32 {
    let n = values.len();
    let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let (_, &mut a, rest) = values.select_nth_unstable_by(lo, f32::total_cmp);
    if lo + 1 >= n || h == lo as f64 {
        return a;
    }
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min);
    (a as f64 + (h - lo as f64) * (b as f64 - a as f64)) as f32
}

/// Keeps the central `p` percent: cuts `(100 − p) / 2` percent off each side.
pub fn percentile_range(values: &[f32], p: f64) -> (f32, f32) {
    let cut = (100.0 - p.clamp(0.0, 100.0)) / 200.0;
    let mut v = values.to_vec();
    (quantile(&mut v, cut), quantile(&mut v, 1.0 - cut))
}

/// TensorRT's entropy calibration threshold on `|x|` (pytorch-quantization's
/// `HistogramCalibrator` with method "entropy", 8 bits, signed). For each candidate bin count
/// `i`, the reference distribution P is the first `i` bins with the outliers added to the last;
/// Q merges those bins into 128 levels and spreads each level evenly over its non-empty bins.
/// The threshold is the right edge of bin `i` with the least KL(P‖Q), the last one on ties.
/// As TensorRT does, the first bin takes the second's count (ReLU outputs pile up at 0).
pub fn entropy_threshold(values: &[f32]) -> f32 {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    if amax == 0.0 {
        return 0.0;
    }
    let mut bins = vec![0f64; ENTROPY_BINS];
    for v in values {
        let b = ((v.abs() as f64 / amax) * ENTROPY_BINS as f64) as usize;
        bins[b.min(ENTROPY_BINS - 1)] += 1.0;
    }
    bins[0] = bins[1];
    let mut best = (f64::INFINITY, ENTROPY_START_BIN);
    let mut merged = vec![0f64; ENTROPY_LEVELS];
    let mut nonzero = vec![0usize; ENTROPY_LEVELS];
    for i in ENTROPY_START_BIN..=ENTROPY_BINS {
        merged.iter_mut().for_each(|m| *m = 0.0);
        nonzero.iter_mut().for_each(|n| *n = 0);
        let level = |j: usize| j * ENTROPY_LEVELS / i;
        for (j, &c) in bins[..i].iter().enumerate() {
            if c != 0.0 {
                merged[level(j)] += c;
                nonzero[level(j)] += 1;
            }
        }
        let outliers: f64 = bins[i..].iter().sum();
        let p_sum: f64 = bins[..i].iter().sum::<f64>() + outliers;
        let q_sum: f64 = merged.iter().sum();
        let mut kl = 0.0;
        for (j, &c) in bins[..i].iter().enumerate() {
            let p = if j + 1 == i { c + outliers } else { c };
            if p == 0.0 {
                continue;
            }
            let q = if c == 0.0 { 0.0 } else { merged[level(j)] / nonzero[level(j)] as f64 };
            if q == 0.0 {
                kl = f64::INFINITY;
                break;
            }
            let (p, q) = (p / p_sum, q / q_sum);
            kl += p * (p / q).ln();
        }
        if kl <= best.0 {
            best = (kl, i);
        }
    }
    (best.1 as f64 * amax / ENTROPY_BINS as f64) as f32
}

/// Mean squared error of quantizing `values` to u8 with the range `[lo, hi]`.
fn quantization_mse(values: &[f32], lo: f32, hi: f32) -> f64 {
    let p = activation_params((lo, hi));
    let sum: f64 = values
        .iter()
        .map(|&x| {
            let d = x as f64 - dequantize_linear(quantize_linear(x, p, ACT_QMIN, ACT_QMAX), p) as f64;
            d * d
        })
        .sum();
    sum / values.len() as f64
}

/// The range `α·[min, max]` (min ≤ 0 ≤ max) with the least u8 quantization MSE: α on a grid of
/// 1/200 steps in (0, 1], then 1/20000 steps around the best grid point.
pub fn mse_range(values: &[f32]) -> (f32, f32) {
    let stride = values.len().div_ceil(MSE_MAX_VALUES).max(1);
    let sample: Vec<f32> = values.iter().step_by(stride).copied().collect();
    let (lo, hi) = min_max(values);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if lo == hi {
        return (lo, hi);
    }
    let at = |alpha: f64| (lo * alpha as f32, hi * alpha as f32);
    let cost = |alpha: f64| {
        let (a, b) = at(alpha);
        quantization_mse(&sample, a, b)
    };
    let argmin = |alphas: &mut dyn Iterator<Item = f64>| {
        alphas.map(|a| (cost(a), a)).fold((f64::INFINITY, 1.0), |best, c| if c.0 < best.0 { c } else { best })
    };
    let (_, coarse) = argmin(&mut (1..=200).map(|k| k as f64 / 200.0));
    let (_, fine) = argmin(&mut (-100..=100).map(|k| coarse + k as f64 / 20000.0).filter(|a| *a > 0.0 && *a <= 1.0));
    at(fine)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0, 1, …, n − 1 in a scrambled order (multiplication by a unit mod n).
    fn scrambled(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919) % n) as f32).collect()
    }

    #[test]
    fn minmax_and_percentile_are_exact() {
        let v = scrambled(1001); // 0..=1000
        assert_eq!(Calibrator::MinMax.range(&v, 0.0), (0.0, 1000.0));
        // Central 98%: the 1% and 99% quantiles of 0..=1000 are exactly 10 and 990.
        assert_eq!(Calibrator::Percentile.range(&v, 98.0), (10.0, 990.0));
        assert_eq!(Calibrator::Percentile.range(&v, 100.0), (0.0, 1000.0));
        // Between order statistics: 0..=9, the 5% quantile is at h = 0.45 → 0.45.
        let (lo, hi) = percentile_range(&scrambled(10), 90.0);
        assert!((lo - 0.45).abs() < 1e-6 && (hi - 8.55).abs() < 1e-5, "{lo} {hi}");
        let shifted: Vec<f32> = scrambled(1001).iter().map(|x| x - 500.0).collect();
        assert_eq!(Calibrator::MinMax.range(&shifted, 0.0), (-500.0, 500.0));
    }

    #[test]
    fn mse_finds_the_analytic_optimum_of_a_uniform_sample() {
        // Uniform on [0, 1] (evenly spaced), as a ReLU output might be. The range [0, c] gives
        // zero point 0 and scale s = c/255: values below 255s round with error variance s²/12,
        // values above it clip. With density 1, MSE(s) = 255s · s²/12 + (1 − 255s)³/3, whose
        // derivative vanishes at s/2 = 1 − 255s: c* = 255/255.5 (a 0.2% clip, not minmax).
        let n = 1 << 16;
        let v: Vec<f32> = (0..n).map(|i| ((i as f64 + 0.5) / n as f64) as f32).collect();
        let c_star = 255.0 / 255.5;
        let (lo, hi) = Calibrator::Mse.range(&v, 0.0);
        assert_eq!(lo, 0.0);
        assert!((hi as f64 - c_star).abs() < 2e-4, "mse range top {hi}, analytic optimum {c_star}");
        let (_, max) = min_max(&v);
        assert!(max - hi > 1e-3, "the optimum clips: {hi} vs max {max}");
    }

    #[test]
    fn entropy_matches_tensorrt_on_a_gaussian_sample() {
        let v = gaussian(50_000, 42);
        let t = entropy_threshold(&v);
        // pytorch-quantization 2.1's `_compute_amax_entropy` (TensorRT's method), run with numpy
        // on this same sample (SplitMix64 + Box–Muller, seed 42): see the closing note of
        // issue 3. Stated tolerance: one histogram bin (amax / 2048).
        let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let want = TENSORRT_GAUSSIAN_THRESHOLD;
        assert!((t - want).abs() <= amax / 2048.0 + 1e-6, "threshold {t}, TensorRT {want}, bin {}", amax / 2048.0);
        let (lo, hi) = Calibrator::Entropy.range(&v, 0.0);
        assert_eq!((lo, hi), (-t, t));
    }

    /// TensorRT's entropy threshold for `gaussian(50_000, 42)` (|x| max 4.6118364, bin 0.0022519).
    const TENSORRT_GAUSSIAN_THRESHOLD: f32 = 3.715_591;

    /// Standard normal sample: SplitMix64 uniforms, Box–Muller (cosine branch only).
    pub(crate) fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u1, u2) = (next(), next());
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect()
    }
}
