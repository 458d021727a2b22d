//! A case's load scenario (`[scenario]`), after its single-stream latency: offline throughput
//! with several sessions, or a server's latency percentile under Poisson arrivals and the
//! highest rate within its bound (`measure::scenario` holds the logic; this feeds it the
//! case's engine and records what it measured).

use super::CaseError;
use crate::backend::Session;
use crate::measure::scenario::{offline, search_max_rate, server, RealClock};
use crate::quant::Variant;
use crate::record::Record;
use crate::suite::scenario::Scenario;
use crate::suite::{Case, Suite};

/// Bisection steps of the server's rate search: the rate found is within 1/2^7 of the ceiling
/// of the highest that meets the bound.
const SEARCH_STEPS: usize = 7;

/// Measures the case's scenario on `session` (and, offline, on more sessions of `variant`), all
/// on the latency batch `input`.
pub(super) fn measure(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    session: &mut dyn Session,
    input: &[f32],
    record: &mut Record,
) -> Result<(), CaseError> {
    let scenario = &suite.models[case.model].scenario;
    record.scenario = scenario.name().to_string();
    match scenario {
        Scenario::SingleStream => Ok(()),
        Scenario::Offline { streams, duration } => {
            record.offline_streams = Some(*streams);
            record.offline_duration_ms = Some(duration.as_millis() as u64);
            // Each stream's own session, made on its thread before the clock starts.
            let make = || -> Result<Box<dyn Session>, crate::backend::BackendError> {
                let mut s = case.backend.create(suite.cuda_device).prepare(variant, case.batch)?.session;
                s.set_input(input)?;
                Ok(s)
            };
            let serve = |s: &mut Box<dyn Session>| s.run();
            let run = offline(*streams, case.batch, *duration, &make, &serve)?;
            record.offline_items = Some(run.items as u64);
            record.offline_items_per_s = Some(run.items_per_s);
            Ok(())
        }
        Scenario::Server(set) => {
            record.server_target_qps = Some(set.target_qps);
            record.server_latency_bound_ms = Some(set.bound.as_secs_f64() * 1e3);
            record.server_percentile = Some(set.percentile);
            session.set_input(input)?;
            let bound_ns = set.bound.as_nanos() as u64;
            let mut probe = |rate: f64| {
                let clock = RealClock::default();
                server(&clock, rate, set.seed, set.span, &mut || session.run())
            };
            let at = probe(set.target_qps)?;
            let p = at.percentile_ns(set.percentile);
            record.server_queries = Some(at.queries as u64);
            record.server_latency_at_target_ns = p;
            record.server_achieved_qps = Some(at.achieved_qps);
            record.server_bound_met = p.map(|p| p <= bound_ns);
            if !set.search {
                return Ok(());
            }
            // One session serves one query at a time: it cannot sustain more than 1 / its
            // single-stream median.
            let Some(ceiling) = record.latency_median_ns.filter(|m| *m > 0.0).map(|m| 1e9 / m) else {
                record.scenario_note = Some("no single-stream median to bound the rate search".into());
                return Ok(());
            };
            let found = search_max_rate(ceiling, bound_ns, set.percentile, SEARCH_STEPS, &mut probe)?;
            record.server_max_qps = found.max_qps;
            record.server_search = Some(
                found
                    .probes
                    .iter()
                    .map(|(rate, at, ok)| {
                        format!("{rate:.1} qps: {:.3} ms {}", *at as f64 / 1e6, if *ok { "ok" } else { "over" })
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            if found.max_qps.is_none() {
                record.scenario_note = Some(format!(
                    "no rate met the bound: even at {:.1} qps the p{} latency exceeded {} ms",
                    found.probes.last().map_or(0.0, |p| p.0),
                    set.percentile,
                    set.bound.as_secs_f64() * 1e3
                ));
            }
            Ok(())
        }
    }
}
