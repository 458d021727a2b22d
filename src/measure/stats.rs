//! Summary statistics of latency samples.
//!
//! Percentiles interpolate linearly between order statistics (numpy's default,
//! Hyndman–Fan type 7). The 95% confidence interval of the median is the
//! distribution-free order-statistic interval: ranks `n/2 ∓ 1.96·√n/2`, rounded
//! outwards (Conover, *Practical Nonparametric Statistics*, normal approximation
//! to the binomial). It needs no assumption about the latency distribution,
//! which is skewed and often multi-modal.

use serde::{Deserialize, Serialize};

/// Statistics of one case's samples, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub n: usize,
    pub min_ns: f64,
    pub max_ns: f64,
    pub mean_ns: f64,
    /// Sample standard deviation (n − 1).
    pub stddev_ns: f64,
    pub median_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub median_ci_low_ns: f64,
    pub median_ci_high_ns: f64,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

impl LatencyStats {
    /// `None` for an empty sample.
    pub fn from_samples(samples_ns: &[u64]) -> Option<LatencyStats> {
        if samples_ns.is_empty() {
            return None;
        }
        let mut s: Vec<f64> = samples_ns.iter().map(|&x| x as f64).collect();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let (lo, hi) = median_ci_ranks(n);
        Some(LatencyStats {
            n,
            min_ns: s[0],
            max_ns: s[n - 1],
            mean_ns: mean,
            stddev_ns: var.sqrt(),
            median_ns: percentile_sorted(&s, 50.0),
            p90_ns: percentile_sorted(&s, 90.0),
            p99_ns: percentile_sorted(&s, 99.0),
            median_ci_low_ns: s[lo - 1],
            median_ci_high_ns: s[hi - 1],
        })
    }

    /// Half-width of the median's CI relative to the median.
    pub fn ci_relative_half_width(&self) -> f64 {
        (self.median_ci_high_ns - self.median_ci_low_ns) / 2.0 / self.median_ns
    }
}

/// Percentile `p` (0–100) of sorted data, linear interpolation (type 7).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let (i, frac) = (h.floor() as usize, h - h.floor());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

/// 1-based ranks `(lo, hi)` of the order statistics bounding a 95% CI of the median.
pub fn median_ci_ranks(n: usize) -> (usize, usize) {
    let half = Z95 * (n as f64).sqrt() / 2.0;
    let lo = (n as f64 / 2.0 - half).floor().max(1.0) as usize;
    let hi = ((1.0 + n as f64 / 2.0 + half).ceil() as usize).min(n);
    (lo.min(n), hi.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_type7() {
        // numpy.percentile(np.arange(1, 101), [50, 90, 99]) == [50.5, 90.1, 99.01]
        let s: Vec<u64> = (1..=100).collect();
        let st = LatencyStats::from_samples(&s).unwrap();
        assert!((st.median_ns - 50.5).abs() < 1e-9);
        assert!((st.p90_ns - 90.1).abs() < 1e-9);
        assert!((st.p99_ns - 99.01).abs() < 1e-9);
        assert_eq!((st.min_ns, st.max_ns, st.mean_ns), (1.0, 100.0, 50.5));
        // stddev of 1..=100 with n-1: sqrt(100*101/12) = 29.011491975882016
        assert!((st.stddev_ns - 29.011_491_975_882_016).abs() < 1e-9);
    }

    #[test]
    fn median_ci_ranks_match_conover_table() {
        // n = 100: ⌊(100 − 19.6)/2⌋ = 40 and ⌈1 + (100 + 19.6)/2⌉ = 61, the exact binomial ranks too.
        assert_eq!(median_ci_ranks(100), (40, 61));
        // n = 25: ⌊7.6⌋ = 7 and ⌈18.4⌉ = 19, one rank wider than the exact (8, 18): conservative.
        assert_eq!(median_ci_ranks(25), (7, 19));
        // Tiny samples: the interval is the whole range.
        assert_eq!(median_ci_ranks(1), (1, 1));
        assert_eq!(median_ci_ranks(3), (1, 3));
    }

    #[test]
    fn ci_brackets_the_median_and_is_unordered_input_safe() {
        let s: Vec<u64> = (1..=100).rev().collect();
        let st = LatencyStats::from_samples(&s).unwrap();
        assert_eq!((st.median_ci_low_ns, st.median_ci_high_ns), (40.0, 61.0));
        assert!((st.ci_relative_half_width() - 10.5 / 50.5).abs() < 1e-12);
        assert!(LatencyStats::from_samples(&[]).is_none());
    }
}
