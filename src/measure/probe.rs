//! A machine check: a fixed CPU workload timed before the cases (at most every [`MAX_AGE`]). Its median should not move
//! during a run; when it does, the machine's speed changed (another process, throttling, a
//! noisy neighbour) and medians measured at different times are not comparable.

use std::hint::black_box;
use std::time::Instant;

/// Side of the square matrices the workload multiplies (about 0.3 ms at a few GFLOP/s).
const N: usize = 64;
/// Timed repetitions per probe.
pub const PROBE_SAMPLES: usize = 31;

/// One run of the workload: a 64×64 f32 matrix product, naive loops, fixed data.
fn workload(a: &[f32], b: &[f32], c: &mut [f32]) {
    for i in 0..N {
        for j in 0..N {
            let mut s = 0f32;
            for k in 0..N {
                s += a[i * N + k] * b[k * N + j];
            }
            c[i * N + j] = s;
        }
    }
}

/// Pause before probing, so that worker threads of the previous case (rayon's spin before they
/// park) do not compete with the probe and make a steady machine look slow.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

/// Median nanoseconds of the workload over [`PROBE_SAMPLES`] runs (after a pause to let other
/// threads settle, and one warm-up run).
pub fn probe_ns() -> f64 {
    std::thread::sleep(SETTLE);
    let a: Vec<f32> = (0..N * N).map(|i| (i % 17) as f32 * 0.25).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 13) as f32 * 0.5).collect();
    let mut c = vec![0f32; N * N];
    workload(black_box(&a), black_box(&b), &mut c);
    let mut times: Vec<u64> = (0..PROBE_SAMPLES)
        .map(|_| {
            let t = Instant::now();
            workload(black_box(&a), black_box(&b), black_box(&mut c));
            t.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    times[PROBE_SAMPLES / 2] as f64
}

/// How old a machine check may be for a case to use it: the check (with its pause) runs at most
/// this often, not before every case, so short cases do not each pay ~25 ms for it.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// The machine check of a run: [`probe_ns`] again only when the last one is older than
/// [`MAX_AGE`].
#[derive(Debug, Default)]
pub struct Prober {
    last: Option<(Instant, f64)>,
}

impl Prober {
    pub fn probe(&mut self) -> f64 {
        match self.last {
            Some((at, ns)) if at.elapsed() < MAX_AGE => ns,
            _ => {
                let ns = probe_ns();
                self.last = Some((Instant::now(), ns));
                ns
            }
        }
    }
}

/// Relative spread of probe medians over a run: `max / min − 1`.
pub fn drift(probes_ns: &[f64]) -> Option<f64> {
    let (lo, hi) = probes_ns.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    (probes_ns.len() > 1 && lo > 0.0).then(|| hi / lo - 1.0)
}

/// Above this drift the report calls the run noisy.
pub const NOISY_DRIFT: f64 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_a_real_matrix_product_and_drift_is_max_over_min() {
        // c[0][0] = Σ_k a[0][k]·b[k][0], computed by hand from the fixed data.
        let a: Vec<f32> = (0..N * N).map(|i| (i % 17) as f32 * 0.25).collect();
        let b: Vec<f32> = (0..N * N).map(|i| (i % 13) as f32 * 0.5).collect();
        let mut c = vec![0f32; N * N];
        workload(&a, &b, &mut c);
        let want: f32 = (0..N).map(|k| ((k % 17) as f32 * 0.25) * (((k * N) % 13) as f32 * 0.5)).sum();
        assert_eq!(c[0], want);
        assert!(probe_ns() > 0.0);
        assert_eq!(drift(&[100.0, 110.0, 105.0]), Some(0.10000000000000009));
        assert_eq!(drift(&[100.0]), None);
    }

    #[test]
    fn the_prober_checks_again_only_when_its_last_check_is_too_old() {
        let mut p = Prober::default();
        let first = p.probe();
        assert!(first > 0.0);
        // Within MAX_AGE: the same check, not a new one.
        assert_eq!(p.probe().to_bits(), first.to_bits());
        // An old check (a sentinel no workload can time) is replaced by a new one.
        p.last = Some((Instant::now() - MAX_AGE - std::time::Duration::from_millis(1), -1.0));
        assert!(p.probe() > 0.0);
    }
}
