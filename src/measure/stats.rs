//! Summary statistics of latency samples.
//!
//! Percentiles interpolate linearly between order statistics (numpy's default,
//! Hyndman–Fan type 7). The 95% confidence interval of the median is the
//! distribution-free order-statistic interval: ranks `n/2 ∓ 1.96·√n/2`, rounded
//! outwards (Conover, *Practical Nonparametric Statistics*, normal approximation
//! to the binomial). It needs no assumption about the latency distribution,
//! which is skewed and often multi-modal. A percentile-bootstrap interval of the median
//! (2000 resamples, fixed seed, so a sample always gets the same interval) is reported beside it.
//!
//! Outliers are counted with Tukey's fences: below Q1 − 1.5·IQR or above Q3 + 1.5·IQR.
//! MAD is the raw median absolute deviation from the median (not scaled by 1.4826).

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
    /// Median absolute deviation from the median.
    pub mad_ns: f64,
    pub p90_ns: f64,
    pub p95_ns: f64,
    pub p99_ns: f64,
    pub median_ci_low_ns: f64,
    pub median_ci_high_ns: f64,
    /// Percentile-bootstrap 95% interval of the median.
    pub median_boot_ci_low_ns: f64,
    pub median_boot_ci_high_ns: f64,
    /// Samples outside Tukey's fences (low, high).
    pub outliers_low: usize,
    pub outliers_high: usize,
}

/// Bootstrap resamples for the median's interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
const BOOTSTRAP_SEED: u64 = 0x005e_ed0f_b007;

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
        let median = percentile_sorted(&s, 50.0);
        let mut deviations: Vec<f64> = s.iter().map(|x| (x - median).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let (q1, q3) = (percentile_sorted(&s, 25.0), percentile_sorted(&s, 75.0));
        let (fence_lo, fence_hi) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
        let (boot_lo, boot_hi) = bootstrap_median_ci(&s);
        Some(LatencyStats {
            n,
            min_ns: s[0],
            max_ns: s[n - 1],
            mean_ns: mean,
            stddev_ns: var.sqrt(),
            median_ns: median,
            mad_ns: percentile_sorted(&deviations, 50.0),
            p90_ns: percentile_sorted(&s, 90.0),
            p95_ns: percentile_sorted(&s, 95.0),
            p99_ns: percentile_sorted(&s, 99.0),
            median_ci_low_ns: s[lo - 1],
            median_ci_high_ns: s[hi - 1],
            median_boot_ci_low_ns: boot_lo,
            median_boot_ci_high_ns: boot_hi,
            outliers_low: s.iter().filter(|&&x| x < fence_lo).count(),
            outliers_high: s.iter().filter(|&&x| x > fence_hi).count(),
        })
    }

    /// Half-width of the median's CI relative to the median.
    pub fn ci_relative_half_width(&self) -> f64 {
        (self.median_ci_high_ns - self.median_ci_low_ns) / 2.0 / self.median_ns
    }
}

/// Percentile-bootstrap 95% interval of the median of `sorted`: the 2.5th and 97.5th
/// percentiles of the medians of [`BOOTSTRAP_RESAMPLES`] resamples with replacement.
pub fn bootstrap_median_ci(sorted: &[f64]) -> (f64, f64) {
    use rand::{Rng, SeedableRng};
    let n = sorted.len();
    if n < 2 {
        return (sorted[0], sorted[0]);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(BOOTSTRAP_SEED);
    let mut resample = vec![0f64; n];
    let mut medians = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        resample.iter_mut().for_each(|x| *x = sorted[rng.random_range(0..n)]);
        medians.push(median_unsorted(&mut resample));
    }
    medians.sort_by(f64::total_cmp);
    (percentile_sorted(&medians, 2.5), percentile_sorted(&medians, 97.5))
}

/// Ratio of medians `new / base` with a percentile-bootstrap 95% interval: both samples are
/// resampled independently [`BOOTSTRAP_RESAMPLES`] times (fixed seed). `None` if either is empty.
pub fn median_ratio_ci(new_ns: &[u64], base_ns: &[u64]) -> Option<(f64, f64, f64)> {
    use rand::{Rng, SeedableRng};
    if new_ns.is_empty() || base_ns.is_empty() {
        return None;
    }
    let to_f = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (a, b) = (to_f(new_ns), to_f(base_ns));
    let ratio = median_unsorted(&mut a.clone()) / median_unsorted(&mut b.clone());
    let mut rng = rand::rngs::StdRng::seed_from_u64(BOOTSTRAP_SEED ^ 0x7a71);
    let (mut ra, mut rb) = (vec![0f64; a.len()], vec![0f64; b.len()]);
    let mut ratios = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        ra.iter_mut().for_each(|x| *x = a[rng.random_range(0..a.len())]);
        rb.iter_mut().for_each(|x| *x = b[rng.random_range(0..b.len())]);
        ratios.push(median_unsorted(&mut ra) / median_unsorted(&mut rb));
    }
    ratios.sort_by(f64::total_cmp);
    Some((ratio, percentile_sorted(&ratios, 2.5), percentile_sorted(&ratios, 97.5)))
}

/// The median (type 7), reordering `v`.
fn median_unsorted(v: &mut [f64]) -> f64 {
    let n = v.len();
    let h = (n - 1) as f64 / 2.0;
    let i = h.floor() as usize;
    let (_, &mut a, rest) = v.select_nth_unstable_by(i, f64::total_cmp);
    if h == i as f64 {
        a
    } else {
        let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
        (a + b) / 2.0
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

    #[test]
    fn mad_p95_and_tukey_outliers_by_hand() {
        // 1..=20 plus 100 and 200: Q1 = 6.25, Q3 = 16.75 (type 7 on 22 values), IQR = 10.5,
        // fences −9.5 and 32.5: exactly the two large values are outliers.
        let mut v: Vec<u64> = (1..=20).collect();
        v.extend([100, 200]);
        let st = LatencyStats::from_samples(&v).unwrap();
        assert_eq!((st.outliers_low, st.outliers_high), (0, 2));
        assert_eq!(st.median_ns, 11.5);
        // |x − 11.5| for 1..=20 is 0.5..10.5 (each twice), plus 88.5 and 188.5: median 5.5.
        assert_eq!(st.mad_ns, 5.5);
        // numpy.percentile([1..20, 100, 200], 95) = 19.95 + 0.95·(100 − 20) ... h = 21·0.95 = 19.95
        // → s[19] + 0.95·(s[20] − s[19]) = 20 + 0.95·80 = 96.
        assert!((st.p95_ns - 96.0).abs() < 1e-9, "{}", st.p95_ns);
        // A constant sample has no spread and no outliers.
        let c = LatencyStats::from_samples(&[7; 50]).unwrap();
        assert_eq!((c.mad_ns, c.outliers_low + c.outliers_high, c.median_boot_ci_low_ns), (0.0, 0, 7.0));
    }

    #[test]
    fn median_ratio_interval_separates_a_real_change_from_noise() {
        // Same distribution (a permutation): ratio 1, and the interval contains 1.
        let base: Vec<u64> = (0..400).map(|i| 1000 + (i * 37) % 100).collect();
        let same: Vec<u64> = base.iter().rev().copied().collect();
        let (r, lo, hi) = median_ratio_ci(&same, &base).unwrap();
        assert_eq!(r, 1.0);
        assert!(lo < 1.0 && hi > 1.0, "[{lo}, {hi}]");
        // 20% slower: the interval excludes 1 and brackets 1.2 closely.
        let slower: Vec<u64> = base.iter().map(|x| x * 6 / 5).collect();
        let (r, lo, hi) = median_ratio_ci(&slower, &base).unwrap();
        assert!((r - 1.2).abs() < 1e-3 && lo > 1.15 && hi < 1.25, "{r} [{lo}, {hi}]");
        assert_eq!(median_ratio_ci(&[], &base), None);
    }

    #[test]
    fn bootstrap_interval_brackets_the_median_like_the_rank_interval() {
        // For 1..=401 the rank interval is (180, 222) (⌊180.9⌋, ⌈221.1⌉); the bootstrap's percentiles land within a
        // few ranks of it, and the same sample always gets the same interval (fixed seed).
        let v: Vec<u64> = (1..=401).rev().collect();
        let st = LatencyStats::from_samples(&v).unwrap();
        assert_eq!((st.median_ci_low_ns, st.median_ci_high_ns), (180.0, 222.0));
        let (lo, hi) = (st.median_boot_ci_low_ns, st.median_boot_ci_high_ns);
        assert!(lo < 201.0 && hi > 201.0, "{lo} {hi}");
        assert!((lo - 180.0).abs() <= 6.0 && (hi - 222.0).abs() <= 6.0, "{lo} {hi}");
        assert_eq!(LatencyStats::from_samples(&v).unwrap(), st);
    }
}
