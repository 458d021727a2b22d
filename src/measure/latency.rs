//! The latency sampler: warm-up by count and by time, then timed runs until the median's
//! confidence interval is as tight as asked, or the sample or time budget runs out.

use std::time::{Duration, Instant};

use super::stats::median_ci_ranks;

/// How long and how often to sample (the suite's `[measure]` table, resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    /// Untimed runs before sampling, to fill caches and let lazy init happen.
    pub warmup_iters: u32,
    /// Warm-up also lasts at least this long (both conditions must hold).
    pub warmup_time: Duration,
    /// Stop once the 95% CI half-width of the median is at most this fraction of the median
    /// (after `min_samples`); 0 disables the target.
    pub target_rel_ci: f64,
    /// Always take at least this many samples, whatever the time.
    pub min_samples: usize,
    /// Stop after this many samples.
    pub max_samples: usize,
    /// Stop once this much time has been spent sampling (after `min_samples`).
    pub max_time: Duration,
}

/// Raw samples and whether the CI target was met.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub samples_ns: Vec<u64>,
    /// `None` when no target was set.
    pub target_met: Option<bool>,
}

/// Half-width of the order-statistic 95% CI of the median, relative to the median.
pub fn relative_ci_half_width(samples_ns: &[u64]) -> f64 {
    let mut s = samples_ns.to_vec();
    s.sort_unstable();
    let (lo, hi) = median_ci_ranks(s.len());
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] as f64 } else { (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0 };
    (s[hi - 1] - s[lo - 1]) as f64 / 2.0 / median.max(1.0)
}

/// Warms up (at least `warmup_iters` calls and `warmup_time`), then times each call of `f`
/// until the CI target is met (checked every tenth of the samples so far), `max_samples`
/// calls, or `max_time`; never fewer than `min_samples`. Returns raw nanoseconds.
pub fn sample<E>(settings: &SamplerSettings, mut f: impl FnMut() -> Result<(), E>) -> Result<Sampled, E> {
    let warm = Instant::now();
    let mut warmed = 0u32;
    while warmed < settings.warmup_iters || warm.elapsed() < settings.warmup_time {
        f()?;
        warmed += 1;
    }
    let mut samples = Vec::with_capacity(settings.max_samples.min(100_000));
    let target = settings.target_rel_ci > 0.0;
    let mut next_check = settings.min_samples.max(10);
    let started = Instant::now();
    let mut met = false;
    while samples.len() < settings.max_samples {
        if samples.len() >= settings.min_samples {
            if target && samples.len() >= next_check {
                next_check = samples.len() + (samples.len() / 10).max(10);
                if relative_ci_half_width(&samples) <= settings.target_rel_ci {
                    met = true;
                    break;
                }
            }
            if started.elapsed() >= settings.max_time {
                break;
            }
        }
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    if target && !met {
        met = relative_ci_half_width(&samples) <= settings.target_rel_ci;
    }
    Ok(Sampled { samples_ns: samples, target_met: target.then_some(met) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_warmup_apart_and_respects_bounds() {
        let mut calls = 0;
        let s = SamplerSettings {
            warmup_iters: 3,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.0,
            min_samples: 5,
            max_samples: 7,
            max_time: Duration::from_secs(3600),
        };
        let sampled = sample::<()>(&s, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((sampled.samples_ns.len(), sampled.target_met), (7, None));
        assert_eq!(calls, 10);
        // With no time at all, min_samples still holds.
        let s = SamplerSettings { min_samples: 4, max_samples: 100, max_time: Duration::ZERO, warmup_iters: 0, ..s };
        assert_eq!(sample::<()>(&s, || Ok(())).unwrap().samples_ns.len(), 4);
    }

    #[test]
    fn warmup_lasts_its_time_and_the_ci_target_stops_sampling() {
        // Warm-up by time: 3 calls are asked for but 30 ms must pass too (1 ms a call).
        let mut calls = 0;
        let s = SamplerSettings {
            warmup_iters: 3,
            warmup_time: Duration::from_millis(30),
            target_rel_ci: 0.0,
            min_samples: 1,
            max_samples: 1,
            max_time: Duration::ZERO,
        };
        sample::<()>(&s, || {
            calls += 1;
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        })
        .unwrap();
        assert!(calls > 10, "{calls} calls");
        // A steady workload meets a 1% target long before 100 000 samples; the CI of what it
        // returns is within the target.
        let steady = SamplerSettings {
            warmup_iters: 0,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.01,
            min_samples: 20,
            max_samples: 100_000,
            max_time: Duration::from_secs(60),
        };
        let r = sample::<()>(&steady, || {
            std::hint::black_box((0..2000u64).sum::<u64>());
            Ok(())
        })
        .unwrap();
        assert_eq!(r.target_met, Some(true));
        assert!(r.samples_ns.len() < 100_000);
        assert!(relative_ci_half_width(&r.samples_ns) <= 0.01);
        // An impossible target with a tiny budget: stops on the budget and says it was missed.
        let tight = SamplerSettings { target_rel_ci: 1e-9, max_samples: 50, ..steady };
        let mut n = 0u64;
        let r = sample::<()>(&tight, || {
            n += 1;
            std::thread::sleep(Duration::from_micros(10 + 500 * (n % 2)));
            Ok(())
        })
        .unwrap();
        assert_eq!((r.samples_ns.len(), r.target_met), (50, Some(false)));
    }

    #[test]
    fn relative_half_width_by_hand() {
        // 1..=100: median 50.5, rank interval (40, 61): half-width 10.5 → 10.5 / 50.5.
        let v: Vec<u64> = (1..=100).collect();
        assert!((relative_ci_half_width(&v) - 10.5 / 50.5).abs() < 1e-12);
    }

    #[test]
    fn an_error_stops_sampling() {
        let s = SamplerSettings {
            warmup_iters: 1,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.0,
            min_samples: 1,
            max_samples: 10,
            max_time: Duration::from_secs(1),
        };
        let mut n = 0;
        let r = sample(&s, || {
            n += 1;
            if n == 3 {
                Err("boom")
            } else {
                Ok(())
            }
        });
        assert_eq!(r.map(|s| s.samples_ns.len()), Err("boom"));
    }
}
