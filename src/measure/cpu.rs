//! CPU time the process used: how many cores a workload kept busy, as the OS counts it. A
//! case's `threads` is what qbench asked the engines for; the busy cores while its latency was
//! sampled are what they did with it (a thread sweep whose 2-thread case keeps one core busy
//! did not run on two).

use std::time::{Duration, Instant};

/// User plus system CPU time of the whole process so far (`getrusage(RUSAGE_SELF)`); `None`
/// where the OS does not say.
pub fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given, which is valid and
    // sized for one; it is read only when the call succeeds.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return None;
    }
    // SAFETY: initialized by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let time =
        |t: libc::timeval| Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64);
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

/// Runs `f`, and returns its result with the cores the process kept busy meanwhile: CPU time
/// over wall time (`None` when the OS does not report CPU time, or no time passed).
pub fn busy_cores<T>(f: impl FnOnce() -> T) -> (T, Option<f64>) {
    let (cpu0, wall0) = (process_cpu_time(), Instant::now());
    let out = f();
    let wall = wall0.elapsed();
    let busy = match (cpu0, process_cpu_time()) {
        (Some(a), Some(b)) if !wall.is_zero() => Some(b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64()),
        _ => None,
    };
    (out, busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time of the calling thread alone (`RUSAGE_THREAD`): an independent count.
    fn thread_cpu_time() -> Duration {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: as in process_cpu_time.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) }, 0);
        let usage = unsafe { usage.assume_init() };
        let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
        time(usage.ru_utime) + time(usage.ru_stime)
    }

    /// Spins for `ms` milliseconds of wall time; returns the thread's own CPU time meanwhile.
    fn spin(ms: u64) -> Duration {
        let start = thread_cpu_time();
        let until = Instant::now() + Duration::from_millis(ms);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        thread_cpu_time() - start
    }

    #[test]
    fn busy_cores_count_at_least_the_cpu_time_of_the_threads_that_ran_and_no_more_than_the_cores() {
        // Other tests run in this process at the same time, so the figure is bounded, not
        // pinned: below by what the two spinning threads report for themselves, above by the
        // cores there are.
        let wall = Instant::now();
        let (own, busy) = busy_cores(|| {
            std::thread::scope(|s| {
                let other = s.spawn(|| spin(300));
                spin(300) + other.join().unwrap()
            })
        });
        let wall = wall.elapsed().as_secs_f64();
        let busy = busy.unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // Clock ticks round CPU time to a few ms; allow that much.
        assert!(busy * wall + 0.02 >= own.as_secs_f64(), "busy {busy} over {wall} s < the threads' own {own:?}");
        assert!(busy <= cores * 1.05 + 0.1, "busy {busy} cores of {cores}");
        assert!(own.as_secs_f64() > 0.0);
    }
}
