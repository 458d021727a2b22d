//! Load scenarios beside single-stream latency, as MLPerf's LoadGen defines them:
//!
//! - **offline**: every item is available at once; `streams` sessions (each on the engine's
//!   `threads`) run batches back to back for at least a minimum duration; the figure is total
//!   items per second.
//! - **server**: queries (one batch each) arrive as a Poisson process at a target rate and are
//!   served in arrival order by one session; a query's latency is its completion time less its
//!   arrival time, queueing included. The figure is a latency percentile at that rate, and the
//!   highest rate whose percentile meets a bound, found by bisection.
//!
//! The logic is written against a [`Clock`], so tests drive it with a mock clock and a mock
//! service whose queueing has a known answer (M/D/1); runs use the real clock.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// Time as the scenario sees it.
pub trait Clock {
    /// Time since the clock's start.
    fn now(&self) -> Duration;
    /// Returns once `now() >= t` (at once when it already is).
    fn wait_until(&self, t: Duration);
}

/// The machine's monotonic clock; waits sleep while more than 2 ms are left, then spin: a
/// sleep's wake-up can be late by more than a short query takes, and a query issued late would
/// count the harness's lateness as the engine's latency.
pub struct RealClock {
    start: Instant,
}

impl Default for RealClock {
    fn default() -> Self {
        RealClock { start: Instant::now() }
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn wait_until(&self, t: Duration) {
        loop {
            let now = self.now();
            if now >= t {
                return;
            }
            let left = t - now;
            if left > Duration::from_millis(2) {
                std::thread::sleep(left - Duration::from_millis(1));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// A clock that moves only when told: waiting jumps to the time waited for, and a mock service
/// advances it by its service time.
#[derive(Default)]
pub struct MockClock {
    now: Cell<Duration>,
}

impl MockClock {
    pub fn advance(&self, d: Duration) {
        self.now.set(self.now.get() + d);
    }
}

impl Clock for MockClock {
    fn now(&self) -> Duration {
        self.now.get()
    }

    fn wait_until(&self, t: Duration) {
        if t > self.now.get() {
            self.now.set(t);
        }
    }
}

/// Poisson arrivals at `rate_qps`: exponential gaps of mean 1/rate, from a seeded generator
/// (the same seed, the same arrival times on any machine).
pub struct Arrivals {
    rate_qps: f64,
    next: Duration,
    rng: rand::rngs::StdRng,
}

impl Arrivals {
    pub fn new(rate_qps: f64, seed: u64) -> Arrivals {
        let mut a = Arrivals { rate_qps, next: Duration::ZERO, rng: rand::rngs::StdRng::seed_from_u64(seed) };
        a.next = a.gap();
        a
    }

    fn gap(&mut self) -> Duration {
        // Inverse transform: -ln(1 - u) / λ with u in [0, 1).
        let u: f64 = self.rng.random();
        // Saturated at a day: a rate the suite refuses (below 1e-3/s) cannot make it panic.
        Duration::try_from_secs_f64(-(1.0 - u).ln() / self.rate_qps).unwrap_or(Duration::from_secs(86_400))
    }
}

impl Iterator for Arrivals {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let t = self.next;
        self.next = t + self.gap();
        Some(t)
    }
}

/// How long a server or offline measurement lasts: at least `min_queries` queries and at least
/// `min_duration` of arrivals (LoadGen's minimums), at most `max_queries`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub min_queries: usize,
    pub min_duration: Duration,
    pub max_queries: usize,
}

/// One server measurement at one rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRun {
    pub target_qps: f64,
    /// Queries served.
    pub queries: usize,
    /// Each query's latency (completion − arrival), in arrival order.
    pub latencies_ns: Vec<u64>,
    /// Queries over the span from the first arrival to the last completion.
    pub achieved_qps: f64,
}

impl ServerRun {
    /// Latency percentile `p` (0–100), nearest rank (LoadGen's): the latency that fraction `p`
    /// of the queries did not exceed.
    pub fn percentile_ns(&self, p: f64) -> Option<u64> {
        nearest_rank(&self.latencies_ns, p)
    }
}

/// Nearest-rank percentile `p` (0–100) of `values`.
pub fn nearest_rank(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// Serves Poisson arrivals at `rate_qps` with `serve` (one query each, in arrival order, one at a
/// time) until the span is covered.
pub fn server<E>(
    clock: &dyn Clock,
    rate_qps: f64,
    seed: u64,
    span: Span,
    serve: &mut dyn FnMut() -> Result<(), E>,
) -> Result<ServerRun, E> {
    let start = clock.now();
    let mut latencies_ns = Vec::new();
    let mut last_done = start;
    for arrival in Arrivals::new(rate_qps, seed) {
        let n = latencies_ns.len();
        let covered = n >= span.min_queries && arrival >= span.min_duration;
        if covered || n >= span.max_queries {
            break;
        }
        let at = start + arrival;
        clock.wait_until(at);
        serve()?;
        last_done = clock.now();
        latencies_ns.push(last_done.saturating_sub(at).as_nanos() as u64);
    }
    let elapsed = last_done.saturating_sub(start).as_secs_f64();
    let queries = latencies_ns.len();
    Ok(ServerRun {
        target_qps: rate_qps,
        queries,
        latencies_ns,
        achieved_qps: if elapsed > 0.0 { queries as f64 / elapsed } else { 0.0 },
    })
}

/// What a rate search found.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSearch {
    /// The highest rate probed whose percentile met the bound; `None` when even the lowest did
    /// not (the bound is below what one query takes).
    pub max_qps: Option<f64>,
    /// Every probe: rate, its percentile, whether it met the bound.
    pub probes: Vec<(f64, u64, bool)>,
}

/// Bisects rates in (0, `ceiling_qps`] for the highest whose percentile `p` is within
/// `bound_ns`, with `steps` probes after the ceiling; `probe` measures one rate. Latency grows
/// with the rate (a queue that is busier waits longer), which is what makes bisection valid; a
/// probe that contradicts it (noise) only narrows the search where it landed.
pub fn search_max_rate<E>(
    ceiling_qps: f64,
    bound_ns: u64,
    p: f64,
    steps: usize,
    probe: &mut dyn FnMut(f64) -> Result<ServerRun, E>,
) -> Result<RateSearch, E> {
    let mut probes = Vec::new();
    let mut judge = |rate: f64, probes: &mut Vec<(f64, u64, bool)>| -> Result<bool, E> {
        let run = probe(rate)?;
        let at = run.percentile_ns(p).unwrap_or(u64::MAX);
        let ok = at <= bound_ns;
        probes.push((rate, at, ok));
        Ok(ok)
    };
    if judge(ceiling_qps, &mut probes)? {
        return Ok(RateSearch { max_qps: Some(ceiling_qps), probes });
    }
    let (mut lo, mut hi) = (0.0, ceiling_qps);
    for _ in 0..steps {
        let mid = (lo + hi) / 2.0;
        if judge(mid, &mut probes)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(RateSearch { max_qps: (lo > 0.0).then_some(lo), probes })
}

/// One stream of an offline run: `serve` back to back until `deadline`; returns how many ran.
pub fn offline_stream<E>(
    clock: &dyn Clock,
    deadline: Duration,
    serve: &mut dyn FnMut() -> Result<(), E>,
) -> Result<usize, E> {
    let mut done = 0;
    while clock.now() < deadline {
        serve()?;
        done += 1;
    }
    Ok(done)
}

/// An offline measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineRun {
    pub streams: usize,
    /// Batches each stream ran.
    pub runs_per_stream: Vec<usize>,
    pub items: usize,
    pub elapsed: Duration,
    pub items_per_s: f64,
}

/// `streams` threads, each with its own session from `make` (made on its thread: sessions stay
/// where they were made), run batches of `batch` items back to back from a common start for
/// `duration`; items per second over the time the last stream took. The sessions are made
/// before the clock starts.
pub fn offline<S, E: Send>(
    streams: usize,
    batch: usize,
    duration: Duration,
    make: &(dyn Fn() -> Result<S, E> + Sync),
    serve: &(dyn Fn(&mut S) -> Result<(), E> + Sync),
) -> Result<OfflineRun, E> {
    let ready = std::sync::Barrier::new(streams + 1);
    let go = std::sync::Barrier::new(streams + 1);
    let results: Vec<Result<(usize, Duration), E>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|_| {
                let (ready, go) = (&ready, &go);
                s.spawn(move || {
                    let made = make();
                    ready.wait();
                    go.wait();
                    let mut session = made?;
                    let clock = RealClock::default();
                    let n = offline_stream(&clock, duration, &mut || serve(&mut session))?;
                    Ok((n, clock.now()))
                })
            })
            .collect();
        ready.wait();
        go.wait();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut runs_per_stream = Vec::new();
    let mut elapsed = Duration::ZERO;
    for r in results {
        let (n, took) = r?;
        runs_per_stream.push(n);
        elapsed = elapsed.max(took);
    }
    let items = runs_per_stream.iter().sum::<usize>() * batch;
    let items_per_s = if elapsed.is_zero() { 0.0 } else { items as f64 / elapsed.as_secs_f64() };
    Ok(OfflineRun { streams, runs_per_stream, items, elapsed, items_per_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_poisson_at_the_rate_and_repeat_with_the_seed() {
        let times: Vec<Duration> = Arrivals::new(200.0, 7).take(20_000).collect();
        // Mean gap 1/λ = 5 ms; the count in 100 s is ≈ λ·t (here 20,000 gaps take ≈ 100 s).
        let mean_gap = times.last().unwrap().as_secs_f64() / times.len() as f64;
        assert!((mean_gap - 0.005).abs() < 0.005 * 0.03, "{mean_gap}");
        // Exponential gaps: their standard deviation equals their mean; P(gap > mean) = e^-1.
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - m).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((sd / m - 1.0).abs() < 0.03, "cv {}", sd / m);
        let above = gaps.iter().filter(|g| **g > m).count() as f64 / gaps.len() as f64;
        assert!((above - (-1f64).exp()).abs() < 0.01, "{above}");
        assert_eq!(Arrivals::new(200.0, 7).take(5).collect::<Vec<_>>(), times[..5]);
        assert_ne!(Arrivals::new(200.0, 8).take(5).collect::<Vec<_>>(), times[..5]);
    }

    /// A server of deterministic service time `service` on the mock clock.
    fn run_at(rate: f64, service: Duration, queries: usize) -> ServerRun {
        let clock = MockClock::default();
        let span = Span { min_queries: queries, min_duration: Duration::ZERO, max_queries: queries };
        server(&clock, rate, 1, span, &mut || -> Result<(), ()> {
            clock.advance(service);
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn a_server_queue_waits_as_m_d_1_says() {
        // M/D/1 (Poisson arrivals, deterministic service 1/μ): mean wait ρ / (2μ(1 − ρ)), so a
        // query's mean latency is 1/μ + that. Service 1 ms (μ = 1000/s) at 700 queries/s.
        let service = Duration::from_millis(1);
        let run = run_at(700.0, service, 200_000);
        let mean = run.latencies_ns.iter().sum::<u64>() as f64 / run.queries as f64 / 1e9;
        let (mu, rho) = (1000.0, 0.7);
        let expected = 1.0 / mu + rho / (2.0 * mu * (1.0 - rho));
        assert!((mean - expected).abs() < expected * 0.03, "mean {mean} vs M/D/1 {expected}");
        // No query is faster than its service; served at the rate that arrived.
        assert!(run.latencies_ns.iter().all(|&l| l >= 1_000_000));
        assert!((run.achieved_qps - 700.0).abs() < 700.0 * 0.02, "{}", run.achieved_qps);
        // Nearly idle: latency is the service time.
        let idle = run_at(1.0, service, 1000);
        assert_eq!(idle.percentile_ns(99.0), Some(1_000_000));
    }

    #[test]
    fn the_span_sets_how_many_queries_run() {
        let clock = MockClock::default();
        // At 100/s, 2 s of arrivals is ≈ 200 queries, more than the minimum of 50: exactly the
        // arrivals before 2 s are served.
        let span = Span { min_queries: 50, min_duration: Duration::from_secs(2), max_queries: 10_000 };
        let run = server(&clock, 100.0, 3, span, &mut || -> Result<(), ()> { Ok(()) }).unwrap();
        let before = Arrivals::new(100.0, 3).take_while(|t| *t < Duration::from_secs(2)).count();
        assert_eq!(run.queries, before);
        assert!((140..=260).contains(&run.queries), "{}", run.queries);
        // A minimum count above what the duration brings: the count wins.
        let span_n = Span { min_queries: 500, ..span };
        assert_eq!(server(&clock, 100.0, 3, span_n, &mut || -> Result<(), ()> { Ok(()) }).unwrap().queries, 500);
        // The cap wins over the duration.
        let span = Span { max_queries: 40, ..span };
        assert_eq!(server(&clock, 100.0, 3, span, &mut || -> Result<(), ()> { Ok(()) }).unwrap().queries, 40);
        // A failing query ends the run with its error.
        let mut n = 0;
        let e = server(&clock, 100.0, 3, span, &mut || {
            n += 1;
            if n == 3 {
                Err("engine failed")
            } else {
                Ok(())
            }
        });
        assert_eq!(e, Err("engine failed"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 99.0), Some(99));
        assert_eq!(nearest_rank(&v, 50.0), Some(50));
        assert_eq!(nearest_rank(&v, 100.0), Some(100));
        assert_eq!(nearest_rank(&[7], 99.0), Some(7));
        assert_eq!(nearest_rank(&[], 99.0), None);
    }

    #[test]
    fn the_rate_search_finds_where_the_percentile_crosses_the_bound() {
        // Service 1 ms; bound on p99: 5 ms. The M/D/1 queue's p99 grows with ρ and crosses 5 ms
        // somewhere below saturation: the search must land where a direct scan says it does.
        let service = Duration::from_millis(1);
        let p99 = |rate: f64| run_at(rate, service, 20_000).percentile_ns(99.0).unwrap();
        let bound = 5_000_000;
        let found = search_max_rate(1000.0, bound, 99.0, 10, &mut |r| -> Result<ServerRun, ()> {
            Ok(run_at(r, service, 20_000))
        })
        .unwrap();
        let max = found.max_qps.unwrap();
        assert!(p99(max) <= bound, "the rate found meets the bound");
        // Within the search's resolution (1000 / 2^10 ≈ 1/s) of where it stops meeting it.
        assert!(p99(max + 3.0) > bound || p99(max + 6.0) > bound, "{max}: p99 {} at +6", p99(max + 6.0));
        assert_eq!(found.probes.len(), 11);
        assert!(found.probes.iter().all(|(r, at, ok)| *ok == (*at <= bound) && *r > 0.0));
        // A bound below the service time: no rate meets it.
        let none = search_max_rate(1000.0, 500_000, 99.0, 6, &mut |r| -> Result<ServerRun, ()> {
            Ok(run_at(r, service, 2_000))
        })
        .unwrap();
        assert_eq!(none.max_qps, None);
        // A ceiling that already meets it is the answer, in one probe.
        let easy =
            search_max_rate(100.0, bound, 99.0, 6, &mut |r| -> Result<ServerRun, ()> { Ok(run_at(r, service, 2_000)) })
                .unwrap();
        assert_eq!((easy.max_qps, easy.probes.len()), (Some(100.0), 1));
    }

    #[test]
    fn an_offline_stream_runs_back_to_back_until_the_deadline() {
        let clock = MockClock::default();
        let n = offline_stream(&clock, Duration::from_secs(1), &mut || -> Result<(), ()> {
            clock.advance(Duration::from_millis(3));
            Ok(())
        })
        .unwrap();
        // Runs start while now < 1 s: at 0, 3, …, 999 ms.
        assert_eq!(n, 334);
    }

    #[test]
    fn offline_streams_run_at_once_each_on_its_own_session() {
        // A mock session that takes 2 ms a batch (sleeping, so streams overlap on any machine).
        let made = std::sync::atomic::AtomicUsize::new(0);
        let make = || -> Result<usize, ()> { Ok(made.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) };
        let serve = |_: &mut usize| -> Result<(), ()> {
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        };
        let one = offline(1, 4, Duration::from_millis(200), &make, &serve).unwrap();
        let three = offline(3, 4, Duration::from_millis(200), &make, &serve).unwrap();
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 4, "a session per stream");
        assert_eq!(three.runs_per_stream.len(), 3);
        assert_eq!(three.items, three.runs_per_stream.iter().sum::<usize>() * 4);
        // Sleeping streams overlap: three give clearly more than one (≈3×, a loaded machine
        // oversleeps, so only "more than 2×" is asserted).
        assert!(three.items_per_s > 2.0 * one.items_per_s, "{} vs {}", three.items_per_s, one.items_per_s);
        // A session that cannot be made fails the run.
        let fail =
            offline(2, 4, Duration::from_millis(50), &|| -> Result<usize, &str> { Err("no session") }, &|_| Ok(()));
        assert_eq!(fail.map(|r| r.items), Err("no session"));
    }
}
