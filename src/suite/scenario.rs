//! `[scenario]`, resolved: the load scenario each model's cases are measured under after their
//! single-stream latency (`measure::scenario` runs them).

use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{unknown, Locator};
use super::spec::SuiteSpec;
use super::SuiteError;
use crate::measure::scenario::Span;

/// A model's load scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Latency of one batch at a time only (what every case measures anyway).
    SingleStream,
    /// `streams` sessions back to back for `duration`: total items per second.
    Offline { streams: usize, duration: Duration },
    /// Poisson arrivals at a rate, served in order: a latency percentile at the rate, and the
    /// highest rate within the bound.
    Server(ServerSettings),
}

/// The server scenario's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub target_qps: f64,
    pub bound: Duration,
    /// 0–100.
    pub percentile: f64,
    pub span: Span,
    pub search: bool,
    pub seed: u64,
}

pub const KINDS: [&str; 3] = ["single-stream", "offline", "server"];
pub const DEFAULT_DURATION_MS: i64 = 1000;
pub const DEFAULT_MIN_QUERIES: i64 = 256;
pub const DEFAULT_PERCENTILE: f64 = 99.0;
/// The arrival rates a server scenario takes: slower than one query in 1000 s measures nothing in
/// a run's time; faster than a million a second, the queue alone decides every latency.
pub const MIN_QPS: f64 = 1e-3;
pub const MAX_QPS: f64 = 1e6;
/// A server run stops after this many queries whatever its span asks.
pub const MAX_QUERIES: usize = 1_000_000;

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::SingleStream => "single-stream",
            Scenario::Offline { .. } => "offline",
            Scenario::Server(_) => "server",
        }
    }
}

/// Each model's scenario, in model order: its own `scenario` kind, else `[scenario] kind`, with
/// the suite's parameters. A parameter no model's kind uses, and a kind missing one it needs,
/// are errors.
pub(super) fn resolve(spec: &SuiteSpec, loc: &Locator) -> Result<Vec<Scenario>, SuiteError> {
    let s = spec.scenario.as_ref().map(|s| s.get_ref());
    let kind_of = |k: &Spanned<String>| -> Result<&'static str, SuiteError> {
        KINDS
            .iter()
            .copied()
            .find(|x| *x == k.get_ref().as_str())
            .ok_or_else(|| loc.at(k.span(), unknown("scenario", k.get_ref(), &KINDS)))
    };
    let default = match s {
        Some(s) => kind_of(&s.kind)?,
        None => "single-stream",
    };
    let kinds: Vec<&'static str> = spec
        .models
        .get_ref()
        .iter()
        .map(|m| m.get_ref().scenario.as_ref().map_or(Ok(default), kind_of))
        .collect::<Result<_, _>>()?;
    let uses = |k: &str| kinds.contains(&k);
    let span = spec.scenario.as_ref().map_or(0..0, |s| s.span());
    let Some(s) = s else {
        // A model asks for a scenario the suite gives no parameters for.
        if let Some(i) = kinds.iter().position(|k| *k != "single-stream") {
            let m = &spec.models.get_ref()[i];
            let at = m.get_ref().scenario.as_ref().map_or(m.span(), |k| k.span());
            return Err(loc.at(at, format!("scenario \"{k}\" needs a [scenario] table with its parameters: [scenario] kind = \"single-stream\" (the other models' kind){}", if kinds[i] == "server" { " and target_qps = …, latency_bound_ms = …" } else { "" }, k = kinds[i])));
        }
        return Ok(kinds.iter().map(|_| Scenario::SingleStream).collect());
    };
    let int = |v: &Option<Spanned<i64>>, key: &str, lo: i64, hi: i64, default: i64| match v {
        None => Ok(default),
        Some(x) if (lo..=hi).contains(x.get_ref()) => Ok(*x.get_ref()),
        Some(x) => Err(loc.at(x.span(), format!("scenario.{key} = {} is out of range; use {lo} to {hi}", x.get_ref()))),
    };
    // Keys of a kind no model runs are a mistake (a server's target_qps on an offline suite).
    let unused = |present: bool, key: &str, needs: &[&str]| -> Result<(), SuiteError> {
        if present && !needs.iter().any(|k| uses(k)) {
            return Err(loc.at(
                span.clone(),
                format!(
                    "scenario.{key} applies to the {} scenario, which no model runs here; remove it or set kind",
                    needs.join(" or ")
                ),
            ));
        }
        Ok(())
    };
    unused(s.streams.is_some(), "streams", &["offline"])?;
    unused(s.min_duration_ms.is_some(), "min_duration_ms", &["offline", "server"])?;
    for (present, key) in [
        (s.min_queries.is_some(), "min_queries"),
        (s.target_qps.is_some(), "target_qps"),
        (s.latency_bound_ms.is_some(), "latency_bound_ms"),
        (s.percentile.is_some(), "percentile"),
        (s.search.is_some(), "search"),
        (s.seed.is_some(), "seed"),
    ] {
        unused(present, key, &["server"])?;
    }
    let streams = int(&s.streams, "streams", 1, 256, 1)? as usize;
    let duration =
        Duration::from_millis(int(&s.min_duration_ms, "min_duration_ms", 1, 3_600_000, DEFAULT_DURATION_MS)? as u64);
    let server = match uses("server") {
        false => None,
        true => {
            let positive = |v: &Option<Spanned<f64>>, key: &str, example: &str| -> Result<f64, SuiteError> {
                match v {
                    None => Err(loc
                        .at(span.clone(), format!("the server scenario needs scenario.{key}, e.g. {key} = {example}"))),
                    Some(x) if x.get_ref().is_finite() && *x.get_ref() > 0.0 => Ok(*x.get_ref()),
                    Some(x) => {
                        Err(loc.at(x.span(), format!("scenario.{key} = {} must be a positive number", x.get_ref())))
                    }
                }
            };
            let target_qps = positive(&s.target_qps, "target_qps", "200")?;
            if !(MIN_QPS..=MAX_QPS).contains(&target_qps) {
                let at = s.target_qps.as_ref().map_or(span.clone(), |x| x.span());
                return Err(loc.at(at, format!("scenario.target_qps = {target_qps} is out of range; use {MIN_QPS} to {MAX_QPS} queries per second")));
            }
            let bound_ms = positive(&s.latency_bound_ms, "latency_bound_ms", "10")?;
            let percentile = match &s.percentile {
                None => DEFAULT_PERCENTILE,
                Some(p) if *p.get_ref() > 0.0 && *p.get_ref() <= 100.0 => *p.get_ref(),
                Some(p) => {
                    return Err(loc.at(
                        p.span(),
                        format!("scenario.percentile = {} is out of range; use (0, 100], e.g. 99", p.get_ref()),
                    ))
                }
            };
            let min_queries = int(&s.min_queries, "min_queries", 1, MAX_QUERIES as i64, DEFAULT_MIN_QUERIES)? as usize;
            let seed = int(&s.seed, "seed", 0, i64::MAX, 0)? as u64;
            Some(ServerSettings {
                target_qps,
                bound: Duration::from_secs_f64(bound_ms / 1e3),
                percentile,
                span: Span { min_queries, min_duration: duration, max_queries: MAX_QUERIES.max(min_queries) },
                search: s.search.unwrap_or(true),
                seed,
            })
        }
    };
    Ok(kinds
        .iter()
        .map(|k| match *k {
            "offline" => Scenario::Offline { streams, duration },
            "server" => server.clone().map_or(Scenario::SingleStream, Scenario::Server),
            _ => Scenario::SingleStream,
        })
        .collect())
}
