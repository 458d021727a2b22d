//! Gates: pass/fail thresholds over a run's records, for regression suites in CI.
//!
//! Three kinds, all in a suite's `[[gates]]` tables:
//! - absolute: `min_top1`, `max_size_bytes`, `max_p99_ms`;
//! - relative to the fp32 reference: `max_delta_top1_pts` (against the same model, backend and
//!   batch's f32 case), `min_sqnr_db`, `min_top1_agreement` and `max_kl` (against the reference
//!   outputs; a language model's reference is its most precise variant), and
//!   `max_perplexity_increase_pct` (a language model's perplexity over that variant's);
//! - relative to a baseline run: `max_latency_regression_pct`, judged by the one speed verdict
//!   `qbench compare` uses (`measure::verdict::judge`, the limit as its threshold): *slower*
//!   fails, *same*, *faster* and an inconclusive interval that cannot reach above the limit
//!   pass, an interval that may reach above it is inconclusive (too noisy to judge).
//!
//! Every (case, threshold) pair is one [`Check`]; the run's verdict is the worst of them.

pub mod junit;

use std::fmt::Write;

use crate::measure::stats::median_ratio_ci;
use crate::measure::verdict::{judge, Change};
use crate::record::{CaseStatus, Record, RecordError};

/// The gates' files could not be written, or a baseline read.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot write {path}; check that the run folder is writable")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the JUnit report {path}")]
    Junit {
        path: std::path::PathBuf,
        #[source]
        source: quick_junit::SerializeError,
    },
    #[error("cannot read the baseline")]
    Baseline(#[source] RecordError),
}

/// One `[[gates]]` table, resolved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gate {
    pub name: String,
    pub schemes: Option<Vec<glob::Pattern>>,
    pub models: Option<Vec<glob::Pattern>>,
    pub backends: Option<Vec<glob::Pattern>>,
    pub min_top1: Option<f64>,
    pub max_size_bytes: Option<u64>,
    pub max_p99_ms: Option<f64>,
    pub max_delta_top1_pts: Option<f64>,
    pub min_sqnr_db: Option<f64>,
    pub min_top1_agreement: Option<f64>,
    pub max_kl: Option<f64>,
    pub max_perplexity_increase_pct: Option<f64>,
    pub max_latency_regression_pct: Option<f64>,
    /// Offline items/s, else single-stream items/s.
    pub min_items_per_s: Option<f64>,
    /// The server scenario's percentile at its target rate, ms.
    pub max_p99_ms_at_rate: Option<f64>,
}

/// Outcome of one check, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    /// Too noisy (or nothing to compare with) to judge.
    Inconclusive,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "FAIL",
        }
    }

    /// The documented exit code: 0 pass, 2 gate failed, 3 inconclusive.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 2,
            Verdict::Inconclusive => 3,
        }
    }
}

/// One threshold applied to one case.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub gate: String,
    /// `model / scheme / backend / batch N`.
    pub case: String,
    /// The threshold's key, e.g. `min_top1`.
    pub metric: &'static str,
    pub verdict: Verdict,
    /// The numbers: measured value, limit, and for baselines the ratio and its interval.
    pub message: String,
}

impl Gate {
    fn selects(&self, r: &Record) -> bool {
        let any =
            |globs: &Option<Vec<glob::Pattern>>, v: &str| globs.as_ref().is_none_or(|g| g.iter().any(|p| p.matches(v)));
        any(&self.schemes, &r.scheme) && any(&self.models, &r.model) && any(&self.backends, &r.backend)
    }

    /// Whether any threshold needs a baseline run.
    pub fn needs_baseline(&self) -> bool {
        self.max_latency_regression_pct.is_some()
    }
}

fn case_name(r: &Record) -> String {
    r.case_name()
}

/// The baseline case for `r`: same model, scheme, backend, batch and measurement point.
fn counterpart<'a>(r: &Record, others: &'a [Record]) -> Option<&'a Record> {
    let same = |b: &&Record| b.same_case_as(r);
    // A measured one first: a failed duplicate must not hide it.
    others.iter().filter(same).find(|b| b.status == CaseStatus::Ok).or_else(|| others.iter().find(same))
}

/// Applies every gate to every case it selects.
pub fn evaluate(gates: &[Gate], records: &[Record], baseline: Option<&[Record]>) -> Vec<Check> {
    let mut checks = Vec::new();
    for gate in gates {
        for r in records.iter().filter(|r| gate.selects(r) && r.status != CaseStatus::Skipped) {
            let mut push = |metric: &'static str, verdict: Verdict, message: String| {
                checks.push(Check { gate: gate.name.clone(), case: case_name(r), metric, verdict, message })
            };
            if r.status == CaseStatus::Failed {
                let why = r.error.clone().unwrap_or_default();
                push("status", Verdict::Fail, format!("the case failed, so no threshold can hold: {why}"));
                continue;
            }
            // Each number with the decimals its unit needs (`digits`), the limit alike.
            let min = |v: Option<f64>, limit: f64, what: &str, scale: f64, unit: &str, digits: usize| match v {
                Some(v) if v >= limit => {
                    (Verdict::Pass, format!("{what} {:.digits$}{unit} ≥ {:.digits$}{unit}", v * scale, limit * scale))
                }
                Some(v) => (
                    Verdict::Fail,
                    format!("{what} {:.digits$}{unit} < minimum {:.digits$}{unit}", v * scale, limit * scale),
                ),
                None => (Verdict::Inconclusive, format!("{what} was not measured")),
            };
            let max = |v: Option<f64>, limit: f64, what: &str, unit: &str, digits: usize| match v {
                Some(v) if v <= limit => (Verdict::Pass, format!("{what} {v:.digits$}{unit} ≤ {limit:.digits$}{unit}")),
                Some(v) => (Verdict::Fail, format!("{what} {v:.digits$}{unit} > maximum {limit:.digits$}{unit}")),
                None => (Verdict::Inconclusive, format!("{what} was not measured")),
            };
            if let Some(limit) = gate.min_top1 {
                let (v, m) = interval_min(
                    r.top1_accuracy.map(|a| (a, r.top1_ci_low.zip(r.top1_ci_high))),
                    limit,
                    "top-1",
                    "Wilson",
                );
                push("min_top1", v, m);
            }
            if let Some(limit) = gate.max_size_bytes {
                let (v, m) = max(r.artifact_bytes.map(|b| b as f64), limit as f64, "size", " bytes", 0);
                push("max_size_bytes", v, m);
            }
            if let Some(limit) = gate.max_p99_ms {
                let (v, m) = match (r.latency_p99_ns, r.latency_max_ns) {
                    // An emulator's timing (a target device's run under qemu) says nothing of
                    // the target's: never a pass, never a failure.
                    _ if r.timing_emulated.is_some() => (
                        Verdict::Inconclusive,
                        format!(
                            "the latency was measured under an emulator ({}), so it is not the target's",
                            r.timing_emulated.as_deref().unwrap_or_default()
                        ),
                    ),
                    // Too few samples for a p99: the slowest run bounds it from above.
                    // Too few samples for a p99; the slowest of n runs is not a bound on it either
                    // (the true p99 is above the sample maximum with probability 0.99ⁿ).
                    (None, Some(worst)) => (
                        Verdict::Inconclusive,
                        format!(
                            "{} samples are too few for a p99 (100 needed; the slowest run took {:.3} ms)",
                            r.samples_ns.len(),
                            worst / 1e6
                        ),
                    ),
                    (p99, _) => max(p99.map(|n| n / 1e6), limit, "p99", " ms", 3),
                };
                push("max_p99_ms", v, m);
            }
            if let Some(limit) = gate.min_items_per_s {
                let (v, m) = match (r.offline_items_per_s, r.throughput_items_per_s) {
                    _ if r.timing_emulated.is_some() => {
                        (Verdict::Inconclusive, "the throughput was measured under an emulator".to_string())
                    }
                    (Some(offline), _) => min(
                        Some(offline),
                        limit,
                        &format!("offline ({} stream(s)) items/s", r.offline_streams.unwrap_or(1)),
                        1.0,
                        "",
                        0,
                    ),
                    (None, single) => min(single, limit, "single-stream items/s (no offline scenario)", 1.0, "", 0),
                };
                push("min_items_per_s", v, m);
            }
            if let Some(limit) = gate.max_p99_ms_at_rate {
                let (v, m) = match (r.server_latency_at_target_ns, r.server_target_qps) {
                    _ if r.timing_emulated.is_some() => {
                        (Verdict::Inconclusive, "the latency was measured under an emulator".to_string())
                    }
                    // A p99 from fewer than 100 queries is the slowest of them, not a p99; and the
                    // scenario may measure another percentile than the gate's name says.
                    (Some(_), Some(_)) if r.server_percentile.is_some_and(|p| p != 99.0) => (
                        Verdict::Inconclusive,
                        format!(
                            "the server scenario measured p{}, not p99; set [scenario] percentile = 99",
                            r.server_percentile.unwrap_or_default()
                        ),
                    ),
                    (Some(_), Some(_)) if r.server_queries.unwrap_or(0) < 100 => (
                        Verdict::Inconclusive,
                        format!(
                            "{} queries are too few for a p99 (100 needed); raise [scenario] min_queries",
                            r.server_queries.unwrap_or(0)
                        ),
                    ),
                    (Some(at), Some(rate)) => max(
                        Some(at as f64 / 1e6),
                        limit,
                        &format!(
                            "p{} at {rate} qps ({} queries)",
                            r.server_percentile.unwrap_or(99.0),
                            r.server_queries.unwrap_or(0)
                        ),
                        " ms",
                        3,
                    ),
                    _ => (
                        Verdict::Inconclusive,
                        "no server scenario was measured for this case; set [scenario] kind = \"server\"".to_string(),
                    ),
                };
                push("max_p99_ms_at_rate", v, m);
            }
            if let Some(limit) = gate.max_delta_top1_pts {
                let f32_case = records.iter().find(|b| {
                    b.scheme == "f32"
                        && b.model == r.model
                        && b.backend == r.backend
                        && b.batch == r.batch
                        && b.sweep == r.sweep
                        && b.status == CaseStatus::Ok
                });
                let (v, m) = top1_drop_verdict(f32_case, r, limit);
                push("max_delta_top1_pts", v, m);
            }
            if let Some(limit) = gate.min_sqnr_db {
                // No SQNR with a zero difference means identical outputs: infinite SQNR.
                let sqnr = r.ref_sqnr_db.or(r.ref_max_abs_logit_diff.filter(|d| *d == 0.0).map(|_| f64::INFINITY));
                let (v, m) = min(sqnr, limit, "logits SQNR vs reference", 1.0, " dB", 2);
                push("min_sqnr_db", v, m);
            }
            if let Some(limit) = gate.min_top1_agreement {
                let agreement = r.ref_top1_agreement.map(|a| {
                    // Items scored: a language model's agreement is per predicted token.
                    let n = r.scored_tokens.or(r.eval_items);
                    let ci = n.map(|n| crate::measure::fidelity::wilson_interval((a * n as f64).round() as usize, n));
                    (a, ci)
                });
                let (v, m) = interval_min(agreement, limit, "top-1 agreement vs reference", "Wilson");
                push("min_top1_agreement", v, m);
            }
            if let Some(limit) = gate.max_kl {
                let infinite = r.ref_kl_infinite_items.filter(|n| *n > 0).map(|_| f64::INFINITY);
                let (v, m) = max(infinite.or(r.ref_kl_mean), limit, "KL vs reference", " nats", 6);
                push("max_kl", v, m);
            }
            if let Some(limit) = gate.max_perplexity_increase_pct {
                // Perplexity does not depend on the batch: any measured case of the reference
                // variant on this backend will do.
                let base = records.iter().find(|b| {
                    b.model == r.model
                        && b.backend == r.backend
                        && b.scheme == r.reference_scheme
                        && b.status == CaseStatus::Ok
                        && b.perplexity.is_some()
                });
                let increase = match (base.and_then(|b| b.perplexity), r.perplexity) {
                    (Some(b), Some(p)) => Some(100.0 * (p / b - 1.0)),
                    _ => None,
                };
                let what = format!(
                    "perplexity increase vs {}",
                    if r.reference_scheme.is_empty() { "the reference" } else { &r.reference_scheme }
                );
                let (v, m) = max(increase, limit, &what, "%", 3);
                push("max_perplexity_increase_pct", v, m);
            }
            if let Some(pct) = gate.max_latency_regression_pct {
                let (v, m) = regression(r, baseline, pct);
                push("max_latency_regression_pct", v, m);
            }
        }
    }
    checks
}

/// A minimum on a proportion known with a 95% interval (shown in percent): pass when the
/// whole interval is at or above the limit, fail when it is all below, inconclusive when it
/// straddles it (more items would tell). Without an interval, the point estimate decides and
/// the message says so.
fn interval_min(value: Option<(f64, Option<(f64, f64)>)>, limit: f64, what: &str, method: &str) -> (Verdict, String) {
    let pct = |v: f64| format!("{:.2}%", 100.0 * v);
    match value {
        None => (Verdict::Inconclusive, format!("{what} was not measured")),
        Some((v, Some((lo, hi)))) => {
            let numbers =
                format!("{what} {} [{}, {}] ({method} 95% interval), minimum {}", pct(v), pct(lo), pct(hi), pct(limit));
            // Every item (agreement 100%): nothing more can be asked of these items.
            if lo >= limit || (v == 1.0 && limit <= 1.0) {
                (Verdict::Pass, numbers)
            } else if hi < limit {
                (Verdict::Fail, format!("below the minimum: {numbers}"))
            } else {
                (Verdict::Inconclusive, format!("the interval straddles the minimum: {numbers}"))
            }
        }
        Some((v, None)) if v >= limit => {
            (Verdict::Pass, format!("{what} {} ≥ {} (point estimate: no interval)", pct(v), pct(limit)))
        }
        Some((v, None)) => {
            (Verdict::Fail, format!("{what} {} < minimum {} (point estimate: no interval)", pct(v), pct(limit)))
        }
    }
}

/// A maximum on a difference known with a 95% interval: pass when the whole interval is at or
/// below the limit, fail when it is all above, inconclusive otherwise.
/// Items on which identical answers count as no drop at all, whatever the interval says.
const IDENTICAL_MIN_ITEMS: usize = 100;

/// Whether `r`'s top-1 drop against `f32_case` (its f32 on the same items) is at most `limit`
/// points, judged on the paired Agresti–Min interval: pass only when the whole interval is
/// within the limit. What the `max_delta_top1_pts` gate and `qbench tune`'s budget both say.
pub fn top1_drop_verdict(f32_case: Option<&Record>, r: &Record, limit: f64) -> (Verdict, String) {
    // The drop is f32 − this case, on the same items: a paired difference.
    let identical = f32_case.and_then(|b| Some(b.top1_correct()? == r.top1_correct()?)).unwrap_or(false);
    let drop = f32_case
        .and_then(|b| b.top1_difference(r))
        .map(|(d, ci)| (100.0 * d, ci.map(|(lo, hi)| (100.0 * lo, 100.0 * hi))));
    match drop {
        // Right and wrong on exactly the same items, and enough of them: no drop on any of them.
        // On a handful of items identical answers say nothing; the interval judges those.
        Some((d, _)) if identical && d <= limit && r.eval_items.unwrap_or(0) >= IDENTICAL_MIN_ITEMS => (
            Verdict::Pass,
            format!(
                "top-1 drop vs f32 {d:+.2} points ≤ {limit:.2} points: right on exactly the same {} items",
                r.eval_items.unwrap_or(0)
            ),
        ),
        _ => interval_max(drop, limit, "top-1 drop vs f32", "paired Agresti–Min", " points"),
    }
}

fn interval_max(
    value: Option<(f64, Option<(f64, f64)>)>,
    limit: f64,
    what: &str,
    method: &str,
    unit: &str,
) -> (Verdict, String) {
    match value {
        None => (Verdict::Inconclusive, format!("{what} was not measured")),
        Some((v, Some((lo, hi)))) => {
            let numbers =
                format!("{what} {v:+.2} [{lo:+.2}, {hi:+.2}]{unit} ({method} 95% interval), maximum {limit:.2}{unit}");
            if hi <= limit {
                (Verdict::Pass, numbers)
            } else if lo > limit {
                (Verdict::Fail, format!("above the maximum: {numbers}"))
            } else {
                (Verdict::Inconclusive, format!("the interval straddles the maximum: {numbers}"))
            }
        }
        Some((v, None)) if v <= limit => {
            (Verdict::Pass, format!("{what} {v:+.2}{unit} ≤ {limit:.2}{unit} (point estimate: no per-item results)"))
        }
        Some((v, None)) => (
            Verdict::Fail,
            format!("{what} {v:+.2}{unit} > maximum {limit:.2}{unit} (point estimate: no per-item results)"),
        ),
    }
}

/// The latency verdict against the baseline's counterpart of `r`.
fn regression(r: &Record, baseline: Option<&[Record]>, pct: f64) -> (Verdict, String) {
    let Some(baseline) = baseline else {
        return (Verdict::Inconclusive, "no baseline given (--baseline <run dir>)".into());
    };
    let Some(b) = counterpart(r, baseline).filter(|b| b.status == CaseStatus::Ok) else {
        return (Verdict::Inconclusive, "the baseline has no measured case like this one".into());
    };
    if b.model_sha256 != r.model_sha256 || b.dataset_sha256 != r.dataset_sha256 {
        return (
            Verdict::Inconclusive,
            "not comparable: the baseline used another model or dataset (sha256 differs)".into(),
        );
    }
    if r.timing_emulated.is_some() || b.timing_emulated.is_some() {
        return (Verdict::Inconclusive, "not comparable: one of the two latencies is an emulator's".into());
    }
    let Some(ratio) = median_ratio_ci(&r.samples_ns, &b.samples_ns) else {
        return (Verdict::Inconclusive, "no raw samples to compare".into());
    };
    let machine = crate::report::compare::machine_ratio(b, r);
    let speed = judge(ratio, pct / 100.0, machine);
    let numbers = format!(
        "median {:.1} µs vs baseline {:.1} µs: ratio {:.3} [95% CI {:.3}, {:.3}], limit {:.3} (+{pct}%): {}{}",
        r.latency_median_ns.unwrap_or(f64::NAN) / 1e3,
        b.latency_median_ns.unwrap_or(f64::NAN) / 1e3,
        ratio.ratio,
        ratio.low,
        ratio.high,
        1.0 + pct / 100.0,
        speed.headline(),
        speed.machine_caveat().map_or(String::new(), |c| format!("; {c}"))
    );
    match gate_verdict(speed.change) {
        Verdict::Fail => (Verdict::Fail, format!("slower beyond the limit: {numbers}")),
        Verdict::Pass => (Verdict::Pass, numbers),
        Verdict::Inconclusive => {
            (Verdict::Inconclusive, format!("too noisy to judge, the interval straddles the limit: {numbers}"))
        }
    }
}

/// The latency gate's verdict from the speed verdict at the gate's limit: a regression fails
/// only when it is certainly beyond the limit, and passes when it certainly is not.
pub fn gate_verdict(change: Change) -> Verdict {
    match change {
        Change::Slower => Verdict::Fail,
        Change::Inconclusive { may_be_slower: true } => Verdict::Inconclusive,
        Change::Same | Change::Faster | Change::Inconclusive { may_be_slower: false } => Verdict::Pass,
    }
}

/// The worst verdict of all checks; inconclusive when there is none (a gate that checked
/// nothing has not passed).
pub fn overall(checks: &[Check]) -> Verdict {
    checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Inconclusive)
}

/// A Markdown summary: counts, then every check that did not pass.
pub fn summary(checks: &[Check]) -> String {
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let mut out = format!(
        "**Gates: {}** — {} checks: {} passed, {} failed, {} inconclusive.\n",
        overall(checks).name(),
        checks.len(),
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Inconclusive)
    );
    if checks.is_empty() {
        out.push_str("\nNothing was checked: no measured or failed case of this run is selected by a gate.\n");
    }
    let bad: Vec<&Check> = checks.iter().filter(|c| c.verdict != Verdict::Pass).collect();
    if !bad.is_empty() {
        out.push_str("\n| verdict | gate | case | check | numbers |\n| --- | --- | --- | --- | --- |\n");
        for c in bad {
            let e = crate::report::markdown::escape;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c.verdict.name(),
                e(&c.gate),
                e(&c.case),
                c.metric,
                e(&c.message)
            );
        }
    }
    out
}

/// Reads a baseline: a run folder (its `records.jsonl`) or a records file.
pub fn read_baseline(path: &std::path::Path) -> Result<Vec<Record>, GateError> {
    let file = if path.is_dir() { path.join("records.jsonl") } else { path.to_path_buf() };
    crate::record::read_records(&file).map_err(GateError::Baseline)
}

/// Checks `records` (of the run in `run_dir`) against `gates`; writes `gates.xml` (JUnit) and
/// `gates.md` there, and appends the summary to `$GITHUB_STEP_SUMMARY` when it is set.
pub fn check_run(
    run_dir: &std::path::Path,
    run_name: &str,
    gates: &[Gate],
    records: &[Record],
    baseline: Option<&[Record]>,
) -> Result<(Vec<Check>, String), GateError> {
    let mut checks = evaluate(gates, records, baseline);
    // A run that did not record every case it planned cannot pass: gates.md and gates.xml say so
    // too, not only the exit code.
    if let Some(gaps) = crate::record::completeness(run_dir, records).filter(|c| !c.is_complete()) {
        checks.push(Check {
            gate: "completeness".into(),
            case: "the run".into(),
            metric: "planned_cases",
            verdict: Verdict::Inconclusive,
            message: format!("incomplete run: {}", gaps.describe().join("; ")),
        });
    }
    let text = summary(&checks);
    let write = |name: &str, bytes: &[u8]| {
        let path = run_dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| GateError::Write { path, source })
    };
    let xml = junit::to_xml(run_name, &checks)
        .map_err(|source| GateError::Junit { path: run_dir.join("gates.xml"), source })?;
    write("gates.xml", xml.as_bytes())?;
    write("gates.md", text.as_bytes())?;
    // The checks as data, for report.html's gates section.
    let rows: Vec<crate::report::html::GateRow> = checks
        .iter()
        .map(|c| crate::report::html::GateRow {
            gate: c.gate.clone(),
            case: c.case.clone(),
            metric: c.metric.to_string(),
            verdict: c.verdict.name().to_string(),
            message: c.message.clone(),
        })
        .collect();
    write("gates.json", &serde_json::to_vec_pretty(&rows).unwrap_or_default())?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        let path = std::path::PathBuf::from(path);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            // A heading per check: several runs' summaries in one CI step stay apart.
            .and_then(|mut f| {
                let run = run_dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
                writeln!(f, "### qbench gates: suite `{run_name}`, run `{run}`\n\n{text}")
            })
            .map_err(|source| GateError::Write { path, source })?;
    }
    Ok((checks, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scheme: &str, top1: f64, samples: Vec<u64>) -> Record {
        let mut r = Record {
            model: "m".into(),
            scheme: scheme.into(),
            backend: "b".into(),
            batch: 1,
            status: CaseStatus::Ok,
            artifact_bytes: Some(1000),
            top1_accuracy: Some(top1),
            ref_top1_agreement: Some(0.99),
            ref_sqnr_db: Some(30.0),
            ..Default::default()
        };
        r.set_latency(samples, 1);
        r
    }

    #[test]
    fn language_model_thresholds_compare_with_the_reference_variant() {
        let lm = |scheme: &str, ppl: f64, kl: f64| Record {
            model: "lm".into(),
            scheme: scheme.into(),
            backend: "b".into(),
            batch: 1,
            status: CaseStatus::Ok,
            reference_scheme: "f16".into(),
            perplexity: Some(ppl),
            ref_kl_mean: Some(kl),
            ..Default::default()
        };
        let records = vec![lm("f16", 10.0, 0.0), lm("q8_0", 10.05, 1e-4), lm("q4k", 10.4, 2e-2)];
        let gate = Gate {
            name: "lm".into(),
            max_kl: Some(1e-3),
            max_perplexity_increase_pct: Some(1.0),
            ..Default::default()
        };
        let checks = evaluate(&[gate], &records, None);
        let verdicts: Vec<(&str, &str, Verdict)> =
            checks.iter().map(|c| (c.case.split(" / ").nth(1).unwrap(), c.metric, c.verdict)).collect();
        assert_eq!(
            verdicts,
            vec![
                ("f16", "max_kl", Verdict::Pass),
                ("f16", "max_perplexity_increase_pct", Verdict::Pass),
                ("q8_0", "max_kl", Verdict::Pass),
                ("q8_0", "max_perplexity_increase_pct", Verdict::Pass),
                ("q4k", "max_kl", Verdict::Fail),
                ("q4k", "max_perplexity_increase_pct", Verdict::Fail),
            ]
        );
        // 10.4 / 10.0 − 1 = 4%.
        let q4 = &checks[5];
        assert_eq!(q4.message, "perplexity increase vs f16 4.000% > maximum 1.000%");
        // Without perplexities (a classifier), the check cannot be judged.
        let gate = Gate { name: "x".into(), max_perplexity_increase_pct: Some(1.0), ..Default::default() };
        let checks = evaluate(&[gate], &[record("int8", 0.9, (0..20).collect())], None);
        assert_eq!(checks[0].verdict, Verdict::Inconclusive);
    }

    #[test]
    fn absolute_and_relative_thresholds_with_their_numbers() {
        let base: Vec<u64> = (0..100).map(|i| 1000 + i).collect();
        let records = vec![record("f32", 0.90, base.clone()), record("int8", 0.885, base.clone())];
        let gate = Gate {
            name: "g".into(),
            schemes: Some(vec![glob::Pattern::new("int*").unwrap()]),
            min_top1: Some(0.88),
            max_size_bytes: Some(999),
            max_delta_top1_pts: Some(1.0),
            min_sqnr_db: Some(35.0),
            min_top1_agreement: Some(0.98),
            ..Default::default()
        };
        let checks = evaluate(&[gate], &records, None);
        let by = |m: &str| checks.iter().find(|c| c.metric == m).unwrap();
        assert_eq!(checks.len(), 5, "only the int8 case is selected");
        assert_eq!(by("min_top1").verdict, Verdict::Pass);
        assert_eq!(by("max_size_bytes").verdict, Verdict::Fail);
        assert_eq!(by("max_size_bytes").message, "size 1000 bytes > maximum 999 bytes");
        // 90.0 − 88.5 = 1.5 points > 1.0.
        assert_eq!(by("max_delta_top1_pts").verdict, Verdict::Fail);
        assert!(by("max_delta_top1_pts").message.contains("1.50 points > maximum 1.00"), "{checks:?}");
        assert_eq!(by("min_sqnr_db").verdict, Verdict::Fail);
        assert_eq!(by("min_top1_agreement").verdict, Verdict::Pass);
        assert_eq!(overall(&checks), Verdict::Fail);
        assert_eq!(overall(&checks).exit_code(), 2);
        assert!(summary(&checks).contains("| FAIL | g | m / int8 / b / batch 1 | max_size_bytes |"));
    }

    /// A classifier record scored on `n` items with `right` of them right: the first `right`
    /// and then every item in `also`.
    fn scored(scheme: &str, n: usize, right: usize, agreement: f64) -> Record {
        let mut r = record(scheme, 0.0, (0..100).collect());
        let logits: Vec<f32> = (0..n).flat_map(|i| if i < right { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
        r.eval_items = Some(n);
        r.set_task(crate::measure::fidelity::task_metrics(&logits, &vec![0; n], 2));
        r.ref_top1_agreement = Some(agreement);
        r
    }

    #[test]
    fn accuracy_gates_pass_fail_or_are_inconclusive_from_their_intervals() {
        // 1000 items. f32 right on 900; int8 on the first 880 (20 discordant items, all one
        // way): drop 2.0 points, Agresti–Min interval about [1.1, 2.9].
        let records = vec![scored("f32", 1000, 900, 1.0), scored("int8", 1000, 880, 0.98)];
        let check = |gate: Gate| {
            let checks = evaluate(&[Gate { name: "g".into(), ..gate }], &records[1..], None);
            assert_eq!(checks.len(), 1);
            (checks[0].verdict, checks[0].message.clone())
        };
        let drop = |limit: f64| {
            let checks = evaluate(
                &[Gate { name: "g".into(), max_delta_top1_pts: Some(limit), ..Default::default() }],
                &records,
                None,
            );
            checks.into_iter().find(|c| c.case.contains("int8")).unwrap()
        };
        assert_eq!(drop(3.5).verdict, Verdict::Pass, "{}", drop(3.5).message);
        assert_eq!(drop(0.5).verdict, Verdict::Fail, "{}", drop(0.5).message);
        let straddle = drop(2.0);
        assert_eq!(straddle.verdict, Verdict::Inconclusive, "{}", straddle.message);
        assert!(
            straddle.message.contains("+2.00 [") && straddle.message.contains("Agresti–Min"),
            "{}",
            straddle.message
        );
        // min_top1 from the Wilson interval of 880/1000 ([0.858, 0.899]).
        assert_eq!(check(Gate { min_top1: Some(0.85), ..Default::default() }).0, Verdict::Pass);
        assert_eq!(check(Gate { min_top1: Some(0.90), ..Default::default() }).0, Verdict::Fail);
        assert_eq!(check(Gate { min_top1: Some(0.88), ..Default::default() }).0, Verdict::Inconclusive);
        // Agreement 98% of 1000 (Wilson [0.969, 0.987]).
        assert_eq!(check(Gate { min_top1_agreement: Some(0.96), ..Default::default() }).0, Verdict::Pass);
        assert_eq!(check(Gate { min_top1_agreement: Some(0.98), ..Default::default() }).0, Verdict::Inconclusive);
        assert_eq!(check(Gate { min_top1_agreement: Some(0.99), ..Default::default() }).0, Verdict::Fail);
        // Natural limits can pass: identical predictions against "no drop at all", and full
        // agreement against "agree on every item".
        let same = vec![scored("f32", 1000, 900, 1.0), scored("int8", 1000, 900, 1.0)];
        let checks = evaluate(
            &[Gate {
                name: "g".into(),
                max_delta_top1_pts: Some(0.0),
                min_top1_agreement: Some(1.0),
                schemes: Some(vec![glob::Pattern::new("int8").unwrap()]),
                ..Default::default()
            }],
            &same,
            None,
        );
        assert_eq!(checks.len(), 2);
        assert!(checks.iter().all(|c| c.verdict == Verdict::Pass), "{checks:?}");
    }

    #[test]
    fn identical_answers_on_a_handful_of_items_are_judged_by_their_interval() {
        // Right on the same 4 of 5 items: nothing says the drop is within 0.5 points.
        let few = [scored("f32", 5, 4, 1.0), scored("int8", 5, 4, 1.0)];
        let (v, m) = top1_drop_verdict(Some(&few[0]), &few[1], 0.5);
        assert_eq!(v, Verdict::Inconclusive, "{m}");
        assert!(m.contains("straddles"), "{m}");
        // The same on 1,000 items is no drop at all.
        let many = [scored("f32", 1000, 800, 1.0), scored("int8", 1000, 800, 1.0)];
        assert_eq!(top1_drop_verdict(Some(&many[0]), &many[1], 0.0).0, Verdict::Pass);
    }

    #[test]
    fn p99_needs_a_hundred_samples() {
        // 50 samples of 1..=50 µs: no p99; the slowest run (50 µs) bounds it.
        let r = record("f32", 0.9, (1..=50).map(|us| us * 1000).collect());
        assert_eq!(r.latency_p99_ns, None);
        // Emulated timing is never judged, however fast.
        let mut emulated = r.clone();
        emulated.set_latency(vec![1_000; 200], 1);
        emulated.timing_emulated = Some("qemu".into());
        let checks =
            evaluate(&[Gate { name: "p".into(), max_p99_ms: Some(1000.0), ..Default::default() }], &[emulated], None);
        assert_eq!(checks[0].verdict, Verdict::Inconclusive, "{checks:?}");
        assert!(checks[0].message.contains("emulator"), "{checks:?}");
        let gate = |ms: f64| Gate { name: "p".into(), max_p99_ms: Some(ms), ..Default::default() };
        // The maximum of 50 runs is not a bound on the p99 (0.99⁵⁰ = 60% of the time it is above):
        // inconclusive however loose the limit.
        for ms in [0.06, 0.04] {
            let checks = evaluate(&[gate(ms)], std::slice::from_ref(&r), None);
            assert_eq!(checks[0].verdict, Verdict::Inconclusive, "{}", checks[0].message);
        }
    }

    #[test]
    fn baseline_regression_is_judged_beyond_noise_only() {
        let base: Vec<u64> = (0..200).map(|i| 1000 + (i * 37) % 100).collect();
        let gate = Gate { name: "lat".into(), max_latency_regression_pct: Some(10.0), ..Default::default() };
        let verdict = |new: Vec<u64>| {
            let checks = evaluate(
                std::slice::from_ref(&gate),
                &[record("f32", 0.9, new)],
                Some(&[record("f32", 0.9, base.clone())]),
            );
            checks[0].verdict
        };
        // Unchanged: pass. 30% slower: fail. 10% slower with this spread: the CI straddles 1.10.
        assert_eq!(verdict(base.clone()), Verdict::Pass);
        assert_eq!(verdict(base.iter().map(|x| x * 13 / 10).collect()), Verdict::Fail);
        assert_eq!(verdict(base.iter().map(|x| x * 11 / 10).collect()), Verdict::Inconclusive);
        // No baseline at all: inconclusive, and the exit code says so.
        let checks = evaluate(std::slice::from_ref(&gate), &[record("f32", 0.9, base.clone())], None);
        assert_eq!((checks[0].verdict, overall(&checks).exit_code()), (Verdict::Inconclusive, 3));
    }
}
