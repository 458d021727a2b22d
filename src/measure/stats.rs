//! Summary statistics of latency samples, and intervals that hold when samples are dependent.
//!
//! Percentiles interpolate linearly between order statistics (numpy's default, Hyndman–Fan
//! type 7). A percentile is reported only when the sample reaches past it: p99 needs 100
//! samples, p95 20, p90 10; below that its column reads "≈ max" (see [`LatencyStats`]).
//!
//! **The median's 95% interval** assumes nothing about the latency distribution (skewed, often
//! multi-modal) and does not assume the samples are independent: consecutive runs on a real
//! machine are autocorrelated (caches, frequency scaling, other processes), and an interval
//! that treats 400 correlated samples as 400 independent ones is far too narrow. qbench takes
//! the distribution-free order-statistic interval (ranks `n/2 ∓ q·√n/2`, Conover) at the
//! *effective* sample size `n_eff = n / τ`, where τ is the integrated autocorrelation time of
//! the samples' ranks, estimated with Sokal's automatic window (the first lag `M ≥ 4·τ(M)`;
//! Sokal 1997, *Monte Carlo Methods in Statistical Mechanics*; the estimator emcee uses), and
//! `q` is Student's t quantile at `n_eff − 1` degrees of freedom. τ plays the role of a block
//! length: runs closer than about τ samples carry one sample's worth of information. Ranks
//! make τ robust to the long upper tail of latencies. Simulated coverage (1000 runs of 400
//! samples, fixed seeds, in this module's tests): AR(1) with φ = 0.9 about 93%, independent
//! samples about 95%, the iid order-statistic interval on the same AR(1) data under 50%.
//!
//! **Ratios.** A ratio measured in alternating rounds (paired) is the median of the per-round
//! ratios, with the same interval over the series of ratios: a drift of the machine's speed
//! that slows both sides of a round cancels in its ratio. A ratio of two medians measured
//! apart (two runs) combines the two medians' intervals on the log scale.
//!
//! Outliers are counted with Tukey's fences: below Q1 − 1.5·IQR or above Q3 + 1.5·IQR.
//! MAD is the raw median absolute deviation from the median (not scaled by 1.4826).

use serde::{Deserialize, Serialize};

/// The name of the interval method, as records state it.
pub const CI_METHOD: &str =
    "order statistics at n_eff = n/τ (τ: autocorrelation time of the ranks, Sokal window 4τ), t quantile";

/// Sokal's window constant: autocorrelations are summed up to the first lag `M ≥ c·τ(M)`.
const SOKAL_WINDOW: f64 = 4.0;
/// Autocorrelations are summed over at most this many lags: keeps a check of 100 000 samples
/// cheap; a series correlated beyond it has an effective size of a few samples anyway.
const MAX_LAG: usize = 2_000;

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
    /// Percentiles; `None` where the sample is too small to reach past them (the maximum is
    /// then the best figure, and reports say "≈ max").
    pub p90_ns: Option<f64>,
    pub p95_ns: Option<f64>,
    pub p99_ns: Option<f64>,
    /// The median's 95% interval, valid for dependent samples (module docs).
    pub median_ci: MedianInterval,
    /// Samples outside Tukey's fences (low, high).
    pub outliers_low: usize,
    pub outliers_high: usize,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

impl LatencyStats {
    /// `None` for an empty sample. `samples_ns` in the order they were taken (the interval
    /// reads their autocorrelation).
    pub fn from_samples(samples_ns: &[u64]) -> Option<LatencyStats> {
        let series: Vec<f64> = samples_ns.iter().map(|&x| x as f64).collect();
        let median_ci = median_interval(&series)?;
        let mut s = series;
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let median = median_ci.median;
        let mut deviations: Vec<f64> = s.iter().map(|x| (x - median).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let (q1, q3) = (percentile_sorted(&s, 25.0), percentile_sorted(&s, 75.0));
        let (fence_lo, fence_hi) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
        let tail = |p: f64| reaches_percentile(n, p).then(|| percentile_sorted(&s, p));
        Some(LatencyStats {
            n,
            min_ns: s[0],
            max_ns: s[n - 1],
            mean_ns: mean,
            stddev_ns: var.sqrt(),
            median_ns: median,
            mad_ns: percentile_sorted(&deviations, 50.0),
            p90_ns: tail(90.0),
            p95_ns: tail(95.0),
            p99_ns: tail(99.0),
            median_ci,
            outliers_low: s.iter().filter(|&&x| x < fence_lo).count(),
            outliers_high: s.iter().filter(|&&x| x > fence_hi).count(),
        })
    }
}

/// Whether `n` samples reach past percentile `p`: at least one sample is expected above it
/// (`n·(1 − p/100) ≥ 1`). Below that, the type-7 percentile is an interpolation towards the
/// maximum, not an estimate of the tail.
pub fn reaches_percentile(n: usize, p: f64) -> bool {
    n as f64 * (1.0 - p / 100.0) >= 1.0 - 1e-9
}

/// A median with its 95% interval for dependent samples, and what the interval rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MedianInterval {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// Integrated autocorrelation time of the ranks (1 for independent samples): the block
    /// length within which samples count as one.
    pub tau: f64,
    /// `n / τ`.
    pub n_eff: f64,
    /// The quantile the interval used (Student's t at `n_eff − 1` degrees of freedom).
    pub quantile: f64,
    /// Whether the sample is large enough for a 95% interval at all: with too few effective
    /// samples the ranks it needs fall outside the data, and `low`/`high` are only the sample's
    /// minimum and maximum (not a 95% interval; records then leave the interval empty).
    pub bounded: bool,
}

impl MedianInterval {
    /// Half the interval's width relative to the median.
    pub fn relative_half_width(&self) -> f64 {
        (self.high - self.low) / 2.0 / self.median.abs().max(f64::MIN_POSITIVE)
    }

    /// Standard error of the log of the median, read back from the interval (for ratios);
    /// `None` when the interval is not a 95% interval or not positive.
    fn log_se(&self) -> Option<f64> {
        (self.bounded && self.low > 0.0 && self.high > 0.0 && self.quantile.is_finite())
            .then(|| (self.high / self.low).ln() / (2.0 * self.quantile))
    }
}

/// The median of `series` (in sampling order) and its 95% interval at the effective sample
/// size (module docs). `None` for an empty series; a series with a non-finite value is
/// ordered with it at the top (`f64::total_cmp`).
pub fn median_interval(series: &[f64]) -> Option<MedianInterval> {
    let n = series.len();
    if n == 0 {
        return None;
    }
    let tau = autocorrelation_time(&ranks(series)).clamp(1.0, n as f64);
    let n_eff = n as f64 / tau;
    let quantile = t_quantile_975(n_eff - 1.0);
    let mut s = series.to_vec();
    s.sort_by(f64::total_cmp);
    let half = quantile * (n as f64 * tau).sqrt() / 2.0;
    let (lo_rank, hi_rank) = ((n as f64 / 2.0 - half).floor(), (1.0 + n as f64 / 2.0 + half).ceil());
    let bounded = quantile.is_finite() && lo_rank >= 1.0 && hi_rank <= n as f64;
    let lo = (lo_rank.max(1.0) as usize).min(n);
    let hi = (hi_rank.min(n as f64) as usize).clamp(1, n);
    let median = percentile_sorted(&s, 50.0);
    Some(MedianInterval { median, low: s[lo - 1], high: s[hi - 1], tau, n_eff, quantile, bounded })
}

/// The least samples before an adaptive stop may trust the interval (the pilot of the
/// two-stage stop, `measure::latency`): τ estimated from fewer is biased low (a correlated
/// series looks independent), and a stop on it undercovers (58% for AR(1) φ = 0.9 stopped at
/// 10 samples; about 89% with this pilot, `latency::stop_tests`).
pub const STOP_MIN_SAMPLES: usize = 200;
/// The least effective samples (n / τ) before an adaptive stop: the interval's rank
/// approximation and τ's own estimate need that many blocks.
pub const STOP_MIN_EFFECTIVE: f64 = 30.0;

/// Whether an adaptive stop may end sampling at `n` samples with this interval: enough samples
/// and blocks to trust τ, a real 95% interval, and a half-width within `target` of the median.
pub fn stop_target_met(ci: &MedianInterval, n: usize, target: f64) -> bool {
    n >= STOP_MIN_SAMPLES && ci.n_eff >= STOP_MIN_EFFECTIVE && ci.bounded && ci.relative_half_width() <= target
}

/// Ranks of `x` (0-based, ties get their average rank).
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]].total_cmp(&x[idx[i]]).is_eq() {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0;
        idx[i..=j].iter().for_each(|&k| r[k] = average);
        i = j + 1;
    }
    r
}

/// Integrated autocorrelation time `τ = 1 + 2·Σ_{k=1..M} ρ(k)` of a series, with Sokal's
/// automatic window: `M` is the first lag with `M ≥ 4·τ(M)` (at most [`MAX_LAG`] and `n/2`).
/// 1 for a constant or very short series; never below 1.
pub fn autocorrelation_time(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 4 {
        return 1.0;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let d: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let c0 = d.iter().map(|v| v * v).sum::<f64>();
    if c0 <= 0.0 || !c0.is_finite() {
        return 1.0;
    }
    let mut tau = 1.0;
    for k in 1..(n / 2).min(MAX_LAG) {
        let ck: f64 = d[..n - k].iter().zip(&d[k..]).map(|(a, b)| a * b).sum();
        tau += 2.0 * ck / c0;
        if k as f64 >= SOKAL_WINDOW * tau {
            break;
        }
    }
    tau.max(1.0)
}

/// Student's t 97.5% quantile at `df` degrees of freedom (fractional `df` rounds down; below
/// 1 the interval is unbounded). Exact table to 30, then the Cornish–Fisher expansion
/// (Abramowitz & Stegun 26.7.5), within 0.001 of the exact value there.
pub fn t_quantile_975(df: f64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    if df.is_nan() || df < 1.0 {
        return f64::INFINITY;
    }
    let k = df.floor();
    if k <= 30.0 {
        return TABLE[k as usize - 1];
    }
    let z = Z95;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * k)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * k * k)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * k * k * k)
}

/// A ratio with its 95% interval, and how it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioInterval {
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
}

/// The ratio of medians `new / base` of two sample series measured apart (two runs, two
/// machines): each median's interval (valid for dependent samples) is read as a standard error
/// of its log, and the two combine on the log scale, with Student's t at the smaller effective
/// size. `None` if either is empty or not positive. Two identical series are one measurement
/// read twice (a run compared with itself or its copy): their ratio is exactly 1.
pub fn median_ratio_ci(new_ns: &[u64], base_ns: &[u64]) -> Option<RatioInterval> {
    if !new_ns.is_empty() && new_ns == base_ns && new_ns.iter().any(|&x| x > 0) {
        return Some(RatioInterval { ratio: 1.0, low: 1.0, high: 1.0 });
    }
    let to_f = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (a, b) = (median_interval(&to_f(new_ns))?, median_interval(&to_f(base_ns))?);
    if a.median <= 0.0 || b.median <= 0.0 {
        return None;
    }
    let ratio = a.median / b.median;
    // Too few effective samples on either side: no interval, the ratio is unbounded.
    let (Some(sa), Some(sb)) = (a.log_se(), b.log_se()) else {
        return Some(RatioInterval { ratio, low: 0.0, high: f64::INFINITY });
    };
    let half = t_quantile_975(a.n_eff.min(b.n_eff) - 1.0) * (sa * sa + sb * sb).sqrt();
    if !half.is_finite() {
        return Some(RatioInterval { ratio, low: 0.0, high: f64::INFINITY });
    }
    Some(RatioInterval { ratio, low: ratio * (-half).exp(), high: ratio * half.exp() })
}

/// The ratio measured in alternating rounds: the median of the per-round ratios
/// `numerator[i] / denominator[i]`, with the dependent-sample interval over that series.
/// `None` when there is no round or a time is zero.
pub fn paired_ratio_ci(numerator_ns: &[u64], denominator_ns: &[u64]) -> Option<(RatioInterval, MedianInterval)> {
    if numerator_ns.len() != denominator_ns.len() || denominator_ns.contains(&0) {
        return None;
    }
    let ratios: Vec<f64> = numerator_ns.iter().zip(denominator_ns).map(|(&a, &b)| a as f64 / b as f64).collect();
    let m = median_interval(&ratios)?;
    let (low, high) = if m.bounded { (m.low, m.high) } else { (0.0, f64::INFINITY) };
    Some((RatioInterval { ratio: m.median, low, high }, m))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn percentiles_match_numpy_type7_and_need_enough_samples() {
        // numpy.percentile(np.arange(1, 101), [50, 90, 99]) == [50.5, 90.1, 99.01]
        let s: Vec<u64> = (1..=100).collect();
        let st = LatencyStats::from_samples(&s).unwrap();
        assert!((st.median_ns - 50.5).abs() < 1e-9);
        assert!((st.p90_ns.unwrap() - 90.1).abs() < 1e-9);
        assert!((st.p99_ns.unwrap() - 99.01).abs() < 1e-9);
        assert_eq!((st.min_ns, st.max_ns, st.mean_ns), (1.0, 100.0, 50.5));
        // stddev of 1..=100 with n-1: sqrt(100*101/12) = 29.011491975882016
        assert!((st.stddev_ns - 29.011_491_975_882_016).abs() < 1e-9);
        // 30 samples do not reach p99 (it would be the maximum, interpolated) nor p95 with
        // 19; they do reach p90.
        let short = LatencyStats::from_samples(&s[..30]).unwrap();
        assert_eq!((short.p99_ns, short.p95_ns.is_some(), short.p90_ns.is_some()), (None, true, true));
        assert!(!reaches_percentile(19, 95.0) && reaches_percentile(20, 95.0) && reaches_percentile(100, 99.0));
    }

    #[test]
    fn t_quantiles_match_published_tables() {
        // Student's t, two-sided 95%: df 1 → 12.706, 9 → 2.262, 29 → 2.045 (table); 40 → 2.021,
        // 60 → 2.000, 120 → 1.980 (expansion, against the published tables to 3 decimals).
        for (df, t) in [(1.0, 12.706), (9.0, 2.262), (29.0, 2.045), (40.0, 2.021), (60.0, 2.000), (120.0, 1.980)] {
            assert!((t_quantile_975(df) - t).abs() < 1.5e-3, "df {df}: {}", t_quantile_975(df));
        }
        assert!((t_quantile_975(1e9) - Z95).abs() < 1e-6);
        assert_eq!(t_quantile_975(0.5), f64::INFINITY);
        assert_eq!(t_quantile_975(f64::NAN), f64::INFINITY);
    }

    #[test]
    fn autocorrelation_time_of_known_series() {
        // An alternating series has ρ(1) = −1 (τ clamps to 1); a constant one has no variance.
        let alternating: Vec<f64> = (0..200).map(|i| (i % 2) as f64).collect();
        assert_eq!(autocorrelation_time(&alternating), 1.0);
        assert_eq!(autocorrelation_time(&[5.0; 100]), 1.0);
        // AR(1) with φ = 0.8: τ = (1 + φ)/(1 − φ) = 9. The estimate from 20 000 samples is close.
        let x = ar1(&mut rand::rngs::StdRng::seed_from_u64(3), 20_000, 0.8, 1.0, 0.0);
        let tau = autocorrelation_time(&x);
        assert!((tau - 9.0).abs() < 1.5, "{tau}");
        // Blocks of 10 equal random values: ρ(k) = 1 − k/10, so τ = 1 + 2·Σ(1 − k/10) = 10
        // (each block is one sample's worth).
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let values: Vec<f64> = (0..500).map(|_| rng.random::<f64>()).collect();
        let blocks: Vec<f64> = (0..5000).map(|i| values[i / 10]).collect();
        let tau = autocorrelation_time(&blocks);
        assert!((8.0..12.0).contains(&tau), "{tau}");
        // Ranks: ties share their average rank.
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![2.5, 0.0, 2.5, 1.0]);
    }

    #[test]
    fn independent_samples_get_the_order_statistic_interval() {
        // 1..=100 shuffled deterministically (no autocorrelation to speak of): τ ≈ 1, and the
        // ranks are those of the iid interval, Conover's (40, 61), widened at most by a rank
        // for the t quantile.
        let v: Vec<u64> = (0..100u64).map(|i| (i * 37) % 100 + 1).collect();
        let st = LatencyStats::from_samples(&v).unwrap();
        let ci = st.median_ci;
        assert!(ci.tau < 1.5, "{}", ci.tau);
        assert!((38.0..=40.0).contains(&ci.low) && (61.0..=63.0).contains(&ci.high), "{ci:?}");
        assert!(LatencyStats::from_samples(&[]).is_none());
        // A constant sample: no spread, no outliers, a point interval.
        let c = LatencyStats::from_samples(&[7; 50]).unwrap();
        assert_eq!((c.mad_ns, c.outliers_low + c.outliers_high, c.median_ci.low, c.median_ci.high), (0.0, 0, 7.0, 7.0));
        // The same sorted data is strongly autocorrelated (a trend): a much wider interval.
        let sorted: Vec<u64> = (1..=100).collect();
        let trend = LatencyStats::from_samples(&sorted).unwrap().median_ci;
        assert!(trend.tau > 10.0 && trend.high - trend.low > 3.0 * (ci.high - ci.low), "{trend:?}");
    }

    #[test]
    fn mad_and_tukey_outliers_by_hand() {
        // 1..=20 plus 100 and 200: Q1 = 6.25, Q3 = 16.75 (type 7 on 22 values), IQR = 10.5,
        // fences −9.5 and 32.5: exactly the two large values are outliers.
        let mut v: Vec<u64> = (1..=20).collect();
        v.extend([100, 200]);
        let st = LatencyStats::from_samples(&v).unwrap();
        assert_eq!((st.outliers_low, st.outliers_high), (0, 2));
        assert_eq!(st.median_ns, 11.5);
        // |x − 11.5| for 1..=20 is 0.5..10.5 (each twice), plus 88.5 and 188.5: median 5.5.
        assert_eq!(st.mad_ns, 5.5);
        // 22 samples reach p95: numpy.percentile(.., 95) with h = 21·0.95 = 19.95 → 20 + 0.95·80 = 96.
        assert!((st.p95_ns.unwrap() - 96.0).abs() < 1e-9, "{:?}", st.p95_ns);
    }

    #[test]
    fn ratio_intervals_separate_a_real_change_from_noise() {
        // Same distribution (a permutation): ratio 1, and the interval contains 1.
        let base: Vec<u64> = (0..400).map(|i| 1000 + (i * 37) % 100).collect();
        let same: Vec<u64> = base.iter().rev().copied().collect();
        let r = median_ratio_ci(&same, &base).unwrap();
        assert_eq!(r.ratio, 1.0);
        assert!(r.low < 1.0 && r.high > 1.0, "{r:?}");
        // 20% slower: the interval excludes 1 and brackets 1.2 closely.
        let slower: Vec<u64> = base.iter().map(|x| x * 6 / 5).collect();
        let r = median_ratio_ci(&slower, &base).unwrap();
        assert!((r.ratio - 1.2).abs() < 1e-3 && r.low > 1.15 && r.high < 1.25, "{r:?}");
        assert_eq!(median_ratio_ci(&[], &base), None);
        // The same series twice is one measurement: exactly 1.
        assert_eq!(median_ratio_ci(&base, &base), Some(RatioInterval { ratio: 1.0, low: 1.0, high: 1.0 }));
        // Paired: per-round ratios of exactly 2 whatever the machine's speed in that round.
        let b: Vec<u64> = (0..100).map(|i| 1000 + 3 * i * i).collect();
        let a: Vec<u64> = b.iter().map(|x| 2 * x).collect();
        let (r, m) = paired_ratio_ci(&a, &b).unwrap();
        assert_eq!((r.ratio, r.low, r.high, m.tau), (2.0, 2.0, 2.0, 1.0));
        assert_eq!(paired_ratio_ci(&a, &b[1..]), None);
        // Too few samples for a 95% interval: unbounded, never a point interval.
        let (one, m) = paired_ratio_ci(&[2000], &[1000]).unwrap();
        assert_eq!((one.ratio, one.low, one.high, m.bounded), (2.0, 0.0, f64::INFINITY, false));
        let r = median_ratio_ci(&[3000], &[1000]).unwrap();
        assert_eq!((r.ratio, r.low, r.high), (3.0, 0.0, f64::INFINITY));
        let trend: Vec<f64> = (1..=20).map(|x| x as f64).collect();
        let ci = median_interval(&trend).unwrap();
        assert!(!ci.bounded && ci.n_eff < 6.0, "{ci:?}");
    }

    fn normal(rng: &mut rand::rngs::StdRng) -> f64 {
        // Box–Muller.
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `n` samples of a stationary AR(1) process around `mean`, innovations of s.d. `sd`.
    fn ar1(rng: &mut rand::rngs::StdRng, n: usize, phi: f64, sd: f64, mean: f64) -> Vec<f64> {
        let mut e = normal(rng) * sd / (1.0 - phi * phi).sqrt();
        (0..n)
            .map(|_| {
                e = phi * e + sd * normal(rng);
                mean + e
            })
            .collect()
    }

    /// Share of 1000 runs of 400 samples whose interval covers the truth.
    fn coverage(seed: u64, sample: impl Fn(&mut rand::rngs::StdRng) -> (f64, f64, f64)) -> f64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let covered = (0..1000)
            .filter(|_| {
                let (lo, hi, truth) = sample(&mut rng);
                lo <= truth && truth <= hi
            })
            .count();
        covered as f64 / 1000.0
    }

    #[test]
    fn intervals_cover_the_truth_on_dependent_samples() {
        // AR(1), φ = 0.9, innovations 5% of the median (1000 ns): the stationary median is 1000.
        let ar = coverage(1, |rng| {
            let ci = median_interval(&ar1(rng, 400, 0.9, 50.0, 1000.0)).unwrap();
            (ci.low, ci.high, 1000.0)
        });
        assert!(ar >= 0.90, "AR(1) φ = 0.9: {ar}");
        let iid = coverage(2, |rng| {
            let ci = median_interval(&ar1(rng, 400, 0.0, 50.0, 1000.0)).unwrap();
            (ci.low, ci.high, 1000.0)
        });
        assert!(iid >= 0.93, "independent: {iid}");
        // The interval that assumes independence, on the same AR(1) data, covers far less: what
        // this method replaced.
        let naive = coverage(1, |rng| {
            let mut s = ar1(rng, 400, 0.9, 50.0, 1000.0);
            s.sort_by(f64::total_cmp);
            let half = Z95 * 20.0 / 2.0;
            (s[(200.0 - half).floor() as usize - 1], s[(201.0 + half).ceil() as usize - 1], 1000.0)
        });
        assert!(naive < 0.6, "iid interval on AR(1): {naive}");
        // Paired rounds: A and B (true ratio 0.8) each with their own AR(1) noise, and both 2×
        // slower from half-way: the per-round ratio's interval covers 0.8.
        let paired = coverage(3, |rng| {
            let (a, b) = (ar1(rng, 400, 0.9, 40.0, 800.0), ar1(rng, 400, 0.9, 50.0, 1000.0));
            let step = |i: usize| if i >= 200 { 2.0 } else { 1.0 };
            let a_ns: Vec<u64> = a.iter().enumerate().map(|(i, x)| (x * step(i)) as u64).collect();
            let b_ns: Vec<u64> = b.iter().enumerate().map(|(i, x)| (x * step(i)) as u64).collect();
            let (r, _) = paired_ratio_ci(&a_ns, &b_ns).unwrap();
            (r.low, r.high, 0.8)
        });
        assert!(paired >= 0.90, "paired ratio with a step: {paired}");
        eprintln!("coverage: AR(1) φ=0.9 {ar}, iid {iid}, iid interval on AR(1) {naive}, paired with a step {paired}");
    }
}
