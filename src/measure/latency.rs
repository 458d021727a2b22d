//! The latency sampler: warm-up, then timed runs until enough samples or time.

use std::time::{Duration, Instant};

/// How long and how often to sample (the suite's `[measure]` table, resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    /// Untimed runs before sampling, to fill caches and let lazy init happen.
    pub warmup_iters: u32,
    /// Always take at least this many samples, whatever the time.
    pub min_samples: usize,
    /// Stop after this many samples.
    pub max_samples: usize,
    /// Stop once this much time has been spent sampling (after `min_samples`).
    pub max_time: Duration,
}

/// Runs `f` `warmup_iters` times untimed, then times each call until `max_samples`
/// calls or `max_time` (never fewer than `min_samples`). Returns raw nanoseconds.
pub fn sample<E>(settings: &SamplerSettings, mut f: impl FnMut() -> Result<(), E>) -> Result<Vec<u64>, E> {
    for _ in 0..settings.warmup_iters {
        f()?;
    }
    let mut samples = Vec::with_capacity(settings.max_samples.min(100_000));
    let started = Instant::now();
    while samples.len() < settings.max_samples
        && (samples.len() < settings.min_samples || started.elapsed() < settings.max_time)
    {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_warmup_apart_and_respects_bounds() {
        let mut calls = 0;
        let s =
            SamplerSettings { warmup_iters: 3, min_samples: 5, max_samples: 7, max_time: Duration::from_secs(3600) };
        let samples = sample::<()>(&s, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(samples.len(), 7);
        assert_eq!(calls, 10);
        // With no time at all, min_samples still holds.
        let s = SamplerSettings { warmup_iters: 0, min_samples: 4, max_samples: 100, max_time: Duration::ZERO };
        assert_eq!(sample::<()>(&s, || Ok(())).unwrap().len(), 4);
    }

    #[test]
    fn an_error_stops_sampling() {
        let s = SamplerSettings { warmup_iters: 1, min_samples: 1, max_samples: 10, max_time: Duration::from_secs(1) };
        let mut n = 0;
        let r = sample(&s, || {
            n += 1;
            if n == 3 {
                Err("boom")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("boom"));
    }
}
