//! The latency sampler: warm-up by count and by time, then timed runs until the median's
//! confidence interval is as tight as asked, or the sample or time budget runs out.

use std::time::{Duration, Instant};

use super::stats::median_interval;

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
    /// Every call of the workload: warm-up and timed.
    pub calls: u64,
    /// `None` when no target was set.
    pub target_met: Option<bool>,
}

/// Half-width of the median's 95% interval relative to the median: the interval the records
/// report, valid for dependent samples (`stats::median_interval`), so the stop and the record
/// agree. Infinite for no sample.
pub fn relative_ci_half_width(samples_ns: &[u64]) -> f64 {
    let series: Vec<f64> = samples_ns.iter().map(|&x| x as f64).collect();
    median_interval(&series).filter(|ci| ci.bounded).map_or(f64::INFINITY, |ci| ci.relative_half_width())
}

/// The interval of the median of `samples_ns` (`stats::median_interval`).
fn interval(samples_ns: &[u64]) -> Option<super::stats::MedianInterval> {
    let series: Vec<f64> = samples_ns.iter().map(|&x| x as f64).collect();
    median_interval(&series)
}

/// Whether an interval is a 95% interval within `target` of its median (what records report
/// as the target met).
fn within(ci: Option<super::stats::MedianInterval>, target: f64) -> bool {
    ci.is_some_and(|ci| ci.bounded && ci.relative_half_width() <= target)
}

/// When to stop sampling for a CI target: Stein's two-stage rule. One look, at a pilot of
/// `max(min_samples, stats::STOP_MIN_SAMPLES)` samples: if the target is met there
/// (`stats::stop_target_met`), stop; otherwise the samples the target needs are planned from the
/// pilot's interval (the width shrinks as 1/√n; at least `stats::STOP_MIN_EFFECTIVE` effective
/// samples) and sampling stops there, without another look. Looking again and again and
/// stopping the first time an interval looks tight picks intervals that are narrow by chance
/// (with correlated samples, τ underestimated by chance): their coverage falls well below 95%.
struct TwoStage {
    pilot: usize,
    planned: Option<usize>,
    target: f64,
    max: usize,
}

impl TwoStage {
    fn new(settings: &SamplerSettings) -> TwoStage {
        let pilot = settings.min_samples.max(super::stats::STOP_MIN_SAMPLES).min(settings.max_samples);
        TwoStage { pilot, planned: None, target: settings.target_rel_ci, max: settings.max_samples }
    }

    /// Whether to stop at `n` samples; `interval` gives the interval when it is needed.
    fn stop(&mut self, n: usize, interval: impl FnOnce() -> Option<super::stats::MedianInterval>) -> bool {
        match self.planned {
            Some(planned) => n >= planned,
            None if n >= self.pilot => {
                let ci = interval();
                if ci.is_some_and(|ci| super::stats::stop_target_met(&ci, n, self.target)) {
                    return true;
                }
                let need = match ci.filter(|ci| ci.bounded && ci.n_eff > 0.0) {
                    Some(ci) => {
                        let by_width = n as f64 * (ci.relative_half_width() * STOP_MARGIN / self.target).powi(2);
                        let by_blocks = n as f64 * super::stats::STOP_MIN_EFFECTIVE / ci.n_eff;
                        by_width.max(by_blocks).ceil().min(self.max as f64) as usize
                    }
                    None => self.max,
                };
                self.planned = Some(need.max(n + 1));
                false
            }
            None => false,
        }
    }
}

/// The planned sample count asks for an interval this much tighter than the target: its width
/// from the pilot is itself an estimate.
const STOP_MARGIN: f64 = 1.2;

/// Warms up (at least `warmup_iters` calls and `warmup_time`), then times each call of `f`
/// until the CI target is met (`TwoStage`: one look at a pilot, then the samples it plans),
/// `max_samples` calls, or `max_time`; never fewer than `min_samples`. Returns raw nanoseconds.
pub fn sample<E>(settings: &SamplerSettings, f: impl FnMut() -> Result<(), E>) -> Result<Sampled, E> {
    sample_with(settings, &mut MonotonicClock::default(), f)
}

/// Untimed calls of `f` until both `warmup_iters` calls and `warmup_time` have passed; how many.
fn warm_up<E>(
    settings: &SamplerSettings,
    clock: &mut dyn Clock,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<u32, E> {
    let warm = clock.now_ns();
    let mut warmed = 0u32;
    while warmed < settings.warmup_iters || clock.now_ns() - warm < settings.warmup_time.as_nanos() as u64 {
        f()?;
        warmed += 1;
    }
    Ok(warmed)
}

/// [`sample`], reading the time from `clock`.
pub fn sample_with<E>(
    settings: &SamplerSettings,
    clock: &mut dyn Clock,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Sampled, E> {
    let warmed = warm_up(settings, clock, &mut f)?;
    let mut samples = Vec::with_capacity(settings.max_samples.min(100_000));
    let target = settings.target_rel_ci > 0.0;
    let mut stop = TwoStage::new(settings);
    let started = clock.now_ns();
    let budget = settings.max_time.as_nanos() as u64;
    while samples.len() < settings.max_samples {
        if samples.len() >= settings.min_samples {
            if target && stop.stop(samples.len(), || interval(&samples)) {
                break;
            }
            if clock.now_ns() - started >= budget {
                break;
            }
        }
        let t = clock.now_ns();
        f()?;
        samples.push(clock.now_ns() - t);
    }
    let met = target && within(interval(&samples), settings.target_rel_ci);
    let calls = warmed as u64 + samples.len() as u64;
    Ok(Sampled { samples_ns: samples, calls, target_met: target.then_some(met) })
}

/// Where the paired sampler reads the time: the monotonic clock in a run; a simulated clock in
/// tests of the statistics (a mock engine whose speed changes on cue).
pub trait Clock {
    fn now_ns(&mut self) -> u64;
}

/// `std::time::Instant`, as nanoseconds since the sampler started.
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Two workloads timed in alternating rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedSamples {
    /// One timed run of each per round, in round order.
    pub a_ns: Vec<u64>,
    pub b_ns: Vec<u64>,
    /// Whether the interval of the per-round ratio met the target (None: no target).
    pub target_met: Option<bool>,
}

/// Fixed seed of the per-round order, so a run is reproducible.
const ROUND_ORDER_SEED: u64 = 0x0a1b_2c3d;

/// Times `a` and `b` in alternating rounds (the order within each round drawn at random, so
/// neither always runs right after the other), after warming both up as `settings` says. In a
/// round each side runs once untimed, to bring its own weights back into the caches the other
/// evicted, then once timed. Rounds go on until the 95% interval of the per-round ratio
/// `a / b` is within `target_rel_ci` of it (the same two-stage stop as [`sample`]),
/// `max_samples` rounds, or `max_time`; never fewer than `min_samples`.
pub fn sample_paired<E>(
    settings: &SamplerSettings,
    clock: &mut dyn Clock,
    mut a: impl FnMut() -> Result<(), E>,
    mut b: impl FnMut() -> Result<(), E>,
) -> Result<PairedSamples, E> {
    use rand::{Rng, SeedableRng};
    warm_up(settings, clock, || {
        a()?;
        b()
    })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(ROUND_ORDER_SEED);
    let (mut a_ns, mut b_ns) = (Vec::new(), Vec::new());
    let target = settings.target_rel_ci > 0.0;
    let ratio_interval = |a: &[u64], b: &[u64]| super::stats::paired_ratio_ci(a, b).map(|(_, m)| m);
    let mut stop = TwoStage::new(settings);
    let started = clock.now_ns();
    let budget = settings.max_time.as_nanos() as u64;
    while a_ns.len() < settings.max_samples {
        if a_ns.len() >= settings.min_samples {
            if target && stop.stop(a_ns.len(), || ratio_interval(&a_ns, &b_ns)) {
                break;
            }
            if clock.now_ns() - started >= budget {
                break;
            }
        }
        let a_first = rng.random::<bool>();
        for side in [a_first, !a_first] {
            let run: &mut dyn FnMut() -> Result<(), E> = if side { &mut a } else { &mut b };
            run()?;
            let t = clock.now_ns();
            run()?;
            let elapsed = clock.now_ns() - t;
            if side {
                a_ns.push(elapsed)
            } else {
                b_ns.push(elapsed)
            }
        }
    }
    let met = target && within(ratio_interval(&a_ns, &b_ns), settings.target_rel_ci);
    Ok(PairedSamples { a_ns, b_ns, target_met: target.then_some(met) })
}

/// A simulated clock for tests: the workloads advance it by the time they "take".
#[cfg(test)]
struct SimClock<'a>(&'a std::cell::Cell<u64>);

#[cfg(test)]
impl Clock for SimClock<'_> {
    fn now_ns(&mut self) -> u64 {
        self.0.get()
    }
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
        // A steady workload (simulated: 10 µs ± 5%, pseudo-random) meets a 1% target long
        // before 100 000 samples; the CI of what it returns is within the target.
        let steady = SamplerSettings {
            warmup_iters: 0,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.01,
            min_samples: 20,
            max_samples: 100_000,
            max_time: Duration::from_secs(60),
        };
        let cell = std::cell::Cell::new(0u64);
        let mut state = 1u64;
        let r = sample_with::<()>(&steady, &mut SimClock(&cell), || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            cell.set(cell.get() + 9_500 + (state >> 33) % 1_000);
            Ok(())
        })
        .unwrap();
        assert_eq!(r.target_met, Some(true));
        assert!(r.samples_ns.len() < 1_000, "{}", r.samples_ns.len());
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
    fn the_stop_reads_the_records_interval() {
        // The same interval as the record's: a trend (sorted samples) is far less certain than
        // the same values in a shuffled order.
        let sorted: Vec<u64> = (1..=100).collect();
        let shuffled: Vec<u64> = (0..100u64).map(|i| (i * 37) % 100 + 1).collect();
        let ci = crate::measure::stats::LatencyStats::from_samples(&shuffled).unwrap().median_ci;
        assert!((relative_ci_half_width(&shuffled) - (ci.high - ci.low) / 2.0 / 50.5).abs() < 1e-12);
        assert!(relative_ci_half_width(&sorted) > 3.0 * relative_ci_half_width(&shuffled));
        assert_eq!(relative_ci_half_width(&[]), f64::INFINITY);
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

#[cfg(test)]
mod paired_tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use crate::measure::stats::{median_ratio_ci, paired_ratio_ci};

    #[test]
    fn a_machine_that_halves_its_speed_mid_run_fools_the_medians_not_the_pairs() {
        // Two mock engines: A takes 600 µs and B 1000 µs of work (A is 1.667× faster), with
        // ±3% deterministic jitter; from the 200th run of each on, the machine is twice as
        // slow. Measured one after the other (B's 300 runs first, then A's), the ratio of the
        // medians carries the slowdown; measured in alternating rounds, each round's ratio does
        // not.
        let now = Cell::new(0u64);
        let runs = (Cell::new(0u64), Cell::new(0u64));
        let work = |base_ns: u64, count: &Cell<u64>| {
            let i = count.get();
            count.set(i + 1);
            let slow = if i >= 400 { 2 } else { 1 };
            let jitter = 97 + (i * 7919) % 7; // 97..=103 %
            now.set(now.get() + base_ns * slow * jitter / 100);
            Ok::<(), ()>(())
        };
        let settings = SamplerSettings {
            warmup_iters: 0,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.0,
            min_samples: 300,
            max_samples: 300,
            max_time: Duration::from_secs(3600),
        };
        let paired =
            sample_paired(&settings, &mut SimClock(&now), || work(600_000, &runs.0), || work(1_000_000, &runs.1))
                .unwrap();
        assert_eq!((paired.a_ns.len(), paired.b_ns.len()), (300, 300));
        // Each side ran 600 times (an untimed and a timed run a round): the slowdown came at
        // round 200, for both.
        assert_eq!((runs.0.get(), runs.1.get()), (600, 600));
        let (r, _) = paired_ratio_ci(&paired.a_ns, &paired.b_ns).unwrap();
        assert!(r.low <= 0.6 && 0.6 <= r.high && r.high - r.low < 0.05, "paired {r:?}");
        // One after the other: B sampled on the fast machine, A on the slow one.
        let b_apart: Vec<u64> = (0..300).map(|i| 1_000_000 * (97 + (i * 7919) % 7) / 100).collect();
        let a_apart: Vec<u64> = (0..300).map(|i| 600_000 * 2 * (97 + (i * 7919) % 7) / 100).collect();
        let apart = median_ratio_ci(&a_apart, &b_apart).unwrap();
        assert!(apart.low > 1.1, "apart {apart:?} misses 0.6");
    }

    #[test]
    fn paired_rounds_stop_at_the_target_and_propagate_errors() {
        let now = Cell::new(0u64);
        let tick = |ns: u64| {
            now.set(now.get() + ns);
            Ok::<(), &str>(())
        };
        let settings = SamplerSettings {
            warmup_iters: 2,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.01,
            min_samples: 10,
            max_samples: 10_000,
            max_time: Duration::from_secs(3600),
        };
        // Steady engines: the ratio 0.5 is known at once, so the target stops the rounds early.
        let p = sample_paired(&settings, &mut SimClock(&now), || tick(500), || tick(1000)).unwrap();
        assert_eq!(p.target_met, Some(true));
        // (the first look is at the pilot: 200 rounds)
        assert!(p.a_ns.len() == 200 && p.a_ns.iter().all(|&t| t == 500) && p.b_ns.iter().all(|&t| t == 1000));
        let mut n = 0;
        let e = sample_paired(
            &settings,
            &mut SimClock(&now),
            || tick(1),
            || {
                n += 1;
                if n == 5 {
                    Err("boom")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(e.unwrap_err(), "boom");
    }
}

#[cfg(test)]
mod stop_tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn intervals_at_the_adaptive_stop_still_cover_the_median() {
        // Run times from an AR(1) process (φ = 0.9) around 100 µs, innovations 0.5% and 1% of
        // it; a 1% target from as few as 10 samples. Stopping as soon as the interval looks
        // tight is where correlated samples fool an interval most (τ from a few samples looks
        // like 1); the stop waits for enough samples and blocks, and the interval it stops on
        // covers the true median (100 µs) in at least 90% of 300 runs each.
        let settings = SamplerSettings {
            warmup_iters: 0,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.01,
            min_samples: 10,
            max_samples: 20_000,
            max_time: Duration::from_secs(3600),
        };
        let mut results = Vec::new();
        for (seed, sd_pct) in [(11u64, 0.5), (12, 1.0)] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut covered = 0;
            let mut stopped_early = 0;
            for _ in 0..300 {
                let now = Cell::new(0u64);
                let sd = 100_000.0 * sd_pct / 100.0;
                let normal = |rng: &mut rand::rngs::StdRng| {
                    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
                };
                let mut e = normal(&mut rng) * sd / (1.0f64 - 0.81).sqrt();
                let r = sample_with::<()>(&settings, &mut SimClock(&now), || {
                    e = 0.9 * e + sd * normal(&mut rng);
                    now.set(now.get() + (100_000.0 + e) as u64);
                    Ok(())
                })
                .unwrap();
                let series: Vec<f64> = r.samples_ns.iter().map(|&x| x as f64).collect();
                let ci = crate::measure::stats::median_interval(&series).unwrap();
                covered += (ci.bounded && ci.low <= 100_000.0 && 100_000.0 <= ci.high) as usize;
                stopped_early += (r.target_met == Some(true) && r.samples_ns.len() < 20_000) as usize;
            }
            let coverage = covered as f64 / 300.0;
            eprintln!("stop coverage at innovations {sd_pct}%: {coverage} ({stopped_early} of 300 met the target)");
            results.push((coverage, stopped_early));
        }
        for (coverage, stopped_early) in results {
            assert!(coverage >= 0.85, "{coverage}");
            assert!(stopped_early > 200, "the target is reachable: {stopped_early}");
        }
    }
}
