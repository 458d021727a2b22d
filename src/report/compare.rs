//! `qbench compare`: runs joined on case identity (model, scheme, backend, batch).
//!
//! For each case present in the first run and another, the ratio of medians (other / first)
//! gets a 95% interval valid for autocorrelated samples (`measure::stats`), and the verdict is
//! `measure::verdict::judge`'s: faster, slower, same, or inconclusive, against a practical
//! threshold (default 2%). The gate's latency check calls the same function, so `compare` and
//! a gated run never disagree on the same two runs. The machine check's ratio between the two
//! cases is printed beside the verdict as context, never as a veto.
//!
//! Runs from different machines (or thread counts, builds) make a hardware comparison: one
//! column per run, and the environment fields that differ listed first.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::measure::probe::drift;
use crate::measure::stats::median_ratio_ci;
pub use crate::measure::verdict::Change;
use crate::measure::verdict::{judge, SpeedVerdict};
use crate::record::{CaseStatus, Environment, Record};
use crate::report::markdown::escape;

/// One loaded run.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub records: Vec<Record>,
    pub environment: Option<Environment>,
}

/// Why runs cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("compare needs at least two run folders")]
    TooFew,
    #[error("{case}: {detail}; these are not the same case. Pass --allow-different-inputs to compare anyway")]
    NotComparable { case: String, detail: String },
    #[error("no case of {a} is in {b}: nothing to compare (cases are joined on model, scheme, backend and batch)")]
    Disjoint { a: String, b: String },
}

/// A case in a later run against the same case in the first.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseComparison {
    pub case: String,
    pub first_median_ns: f64,
    pub other_median_ns: f64,
    /// The speed verdict, with the ratio (other / first) and its interval.
    pub verdict: SpeedVerdict,
    /// Top-1 change in points (other − first).
    pub delta_top1_pts: Option<f64>,
    /// What each engine made of the case (first, other).
    pub realization: (String, String),
    /// Top-1 of each (first, other), when measured.
    pub top1: (Option<f64>, Option<f64>),
}

impl CaseComparison {
    pub fn change(&self) -> Change {
        self.verdict.change
    }
}

/// Loads a run folder: its records and environment.
pub fn load_run(dir: &Path) -> Result<Run, super::ReportError> {
    let records = crate::report::jsonl::read_records(&dir.join("records.jsonl"))?;
    let environment =
        crate::files::read_side_file(&dir.join("environment.json")).and_then(|b| serde_json::from_slice(&b).ok());
    Ok(Run { dir: dir.to_path_buf(), records, environment })
}

fn key(r: &Record) -> (String, String, String, usize, String) {
    (r.model.clone(), r.scheme.clone(), r.backend.clone(), r.batch, r.sweep.clone())
}

fn case_name(r: &Record) -> String {
    r.case_name()
}

/// Compares `other` against `first`, case by case. `threshold` is the practical change below
/// which a significant ratio still counts as the same (0.02 = 2%).
pub fn compare_pair(
    first: &Run,
    other: &Run,
    threshold: f64,
    allow_different_inputs: bool,
) -> Result<Vec<CaseComparison>, CompareError> {
    let mut out = Vec::new();
    for a in first.records.iter().filter(|r| r.status == CaseStatus::Ok) {
        let Some(b) = other.records.iter().find(|b| key(b) == key(a) && b.status == CaseStatus::Ok) else { continue };
        // An emulator's timing (a target device's run under qemu) is never judged.
        if a.timing_emulated.is_some() || b.timing_emulated.is_some() {
            continue;
        }
        if !allow_different_inputs {
            for (what, x, y) in [
                ("the model", a.model_sha256.clone().unwrap_or_default(), b.model_sha256.clone().unwrap_or_default()),
                ("the dataset", a.dataset_sha256.clone(), b.dataset_sha256.clone()),
                ("the evaluation split", split_of(a), split_of(b)),
            ] {
                if x != y && what == "the evaluation split" {
                    return Err(CompareError::NotComparable {
                        case: case_name(a),
                        detail: format!(
                            "{what} differs between {} ({x}) and {} ({y}): accuracy would be compared on other items",
                            first.dir.display(),
                            other.dir.display()
                        ),
                    });
                }
                if x != y {
                    let short = |h: &str| h.chars().take(12).collect::<String>();
                    return Err(CompareError::NotComparable {
                        case: case_name(a),
                        detail: format!(
                            "{what} differs between {} and {} (sha256 {} vs {})",
                            first.dir.display(),
                            other.dir.display(),
                            short(&x),
                            short(&y)
                        ),
                    });
                }
            }
        }
        let Some(ratio) = median_ratio_ci(&b.samples_ns, &a.samples_ns) else { continue };
        out.push(CaseComparison {
            case: case_name(a),
            first_median_ns: a.latency_median_ns.unwrap_or(f64::NAN),
            other_median_ns: b.latency_median_ns.unwrap_or(f64::NAN),
            verdict: judge(ratio, threshold, machine_ratio(a, b)),
            // Accuracy on other items (a device verifies a bundle's few) is no difference.
            delta_top1_pts: a
                .top1_accuracy
                .zip(b.top1_accuracy)
                .filter(|_| a.eval_items == b.eval_items)
                .map(|(x, y)| 100.0 * (y - x)),
            realization: (a.realization.clone(), b.realization.clone()),
            top1: (a.top1_accuracy, b.top1_accuracy),
        });
    }
    if out.is_empty() {
        return Err(CompareError::Disjoint { a: first.dir.display().to_string(), b: other.dir.display().to_string() });
    }
    Ok(out)
}

/// Cases measured in `first` that `other` also measured but that have no raw samples on one
/// side, so no ratio (older records, a case that ran no latency): listed, not dropped.
pub fn without_samples(first: &Run, other: &Run) -> Vec<String> {
    first
        .records
        .iter()
        .filter(|a| a.status == CaseStatus::Ok)
        .filter_map(|a| other.records.iter().find(|b| key(b) == key(a) && b.status == CaseStatus::Ok).map(|b| (a, b)))
        .filter(|(a, b)| median_ratio_ci(&b.samples_ns, &a.samples_ns).is_none())
        .map(|(a, _)| case_name(a))
        .collect()
}

/// The machine check of `b` over `a`'s, when both were taken.
pub fn machine_ratio(a: &Record, b: &Record) -> Option<f64> {
    match (a.noise_probe_ns, b.noise_probe_ns) {
        (Some(x), Some(y)) if x > 0.0 && y > 0.0 => Some(y / x),
        _ => None,
    }
}

/// The spread of the machine check within a run (`max / min − 1` over its measured cases), or 0.
pub fn noise_floor(run: &Run) -> f64 {
    let probes: Vec<f64> =
        run.records.iter().filter(|r| r.status == CaseStatus::Ok).filter_map(|r| r.noise_probe_ns).collect();
    drift(&probes).unwrap_or(0.0)
}

/// The machine check's spread within a run as the comparison prints it; "not measured" for a run
/// that took no machine check (a target device's verification).
fn spread_text(run: &Run) -> String {
    match run.records.iter().any(|r| r.noise_probe_ns.is_some()) {
        true => format!("{:.1}%", 100.0 * noise_floor(run)),
        false => "not measured".into(),
    }
}

/// The environment fields that differ between runs: `(field, value per run)`.
pub fn environment_differences(runs: &[Run]) -> Vec<(String, Vec<String>)> {
    let values: Vec<serde_json::Map<String, serde_json::Value>> = runs
        .iter()
        .map(|r| {
            r.environment
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok())
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default()
        })
        .collect();
    let mut fields: Vec<String> = values.iter().flat_map(|m| m.keys().cloned()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|f| {
            let per_run: Vec<String> = values
                .iter()
                .map(|m| m.get(&f).map_or("—".to_string(), |v| v.to_string().trim_matches('"').to_string()))
                .collect();
            per_run.windows(2).any(|w| w[0] != w[1]).then_some((f, per_run))
        })
        .collect()
}

/// One column per run (per machine, in a hardware comparison): each case's median and its ratio
/// to the first run's, for every case measured in the first run.
fn overview(runs: &[Run], label: &dyn Fn(usize) -> String) -> String {
    let machine = |run: &Run| {
        let (cpu, threads, gpu) = match (&run.environment, run.records.first()) {
            (Some(e), _) => (e.cpu_model.clone(), e.threads, e.gpu.as_ref().map(|g| g.name.clone())),
            (None, Some(r)) => (r.cpu_model.clone(), r.threads, run.records.iter().find_map(|r| r.gpu_name.clone())),
            (None, None) => ("?".into(), 0, None),
        };
        let gpu = gpu.map_or(String::new(), |g| format!(", {g}"));
        format!("{cpu}, {threads} thread(s){gpu}")
    };
    let mut out = String::from("Median per case, one column per run (ratio to run 1 in brackets):\n\n| case |");
    for (i, run) in runs.iter().enumerate() {
        let _ = write!(out, " {}: {} (µs) |", label(i), machine(run));
    }
    let _ = write!(out, "\n| --- |{}\n", " --: |".repeat(runs.len()));
    for a in runs[0].records.iter().filter(|r| r.status == CaseStatus::Ok) {
        let Some(base) = a.latency_median_ns else { continue };
        let _ = write!(out, "| {} | {:.1} |", escape(&case_name(a)), base / 1e3);
        for run in &runs[1..] {
            let cell = run
                .records
                .iter()
                .find(|b| key(b) == key(a) && b.status == CaseStatus::Ok)
                .and_then(|b| Some((b.latency_median_ns?, b.timing_emulated.is_some())))
                .map_or("—".to_string(), |(m, emulated)| {
                    format!("{:.1} (×{:.2}){}", m / 1e3, m / base, if emulated { " emulated" } else { "" })
                });
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

/// A comparison in the three forms `qbench compare` writes: `compare.md`, `compare.json`, and a
/// self-contained `compare.html`. All three come from the same verdicts.
#[derive(Debug, Clone)]
pub struct CompareReport {
    pub markdown: String,
    pub json: serde_json::Value,
    pub html: String,
}

/// Every later run against the first, as Markdown, JSON and HTML.
pub fn report(runs: &[Run], threshold: f64, allow_different_inputs: bool) -> Result<CompareReport, CompareError> {
    let markdown = render(runs, threshold, allow_different_inputs)?;
    let label = |i: usize| {
        format!(
            "run {} ({})",
            i + 1,
            runs[i].dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned())
        )
    };
    let diffs = environment_differences(runs);
    let mut pairs = Vec::new();
    for (i, other) in runs.iter().enumerate().skip(1) {
        let emulated = !other.records.is_empty() && other.records.iter().all(|r| r.timing_emulated.is_some());
        let cases = match emulated {
            true => Vec::new(),
            false => compare_pair(&runs[0], other, threshold, allow_different_inputs)?,
        };
        pairs.push((i, emulated, cases, without_samples(&runs[0], other)));
    }
    let devices: Vec<super::devices::DeviceRun> = runs[1..]
        .iter()
        .filter(|r| super::devices::is_device_run(&r.records))
        .map(|r| super::devices::DeviceRun::new(&r.dir, r.records.clone()))
        .collect();
    let json = serde_json::json!({
        "threshold_pct": 100.0 * threshold,
        // A target device's verification of a bundle of run 1's cases, case by case.
        "target_devices": super::devices::rows(&runs[0].records, &devices),
        "runs": runs.iter().enumerate().map(|(i, r)| serde_json::json!({
            "label": label(i),
            "dir": r.dir.display().to_string(),
            "run_id": r.records.first().map(|x| x.run_id.clone()),
            "suite": r.records.first().map(|x| x.suite.clone()),
            // The machine check's spread within the run; null when it took none.
            "machine_check_spread_pct": r.records.iter().any(|x| x.noise_probe_ns.is_some()).then(|| 100.0 * noise_floor(r)),
        })).collect::<Vec<_>>(),
        "environment_differences": diffs.iter().map(|(f, v)| serde_json::json!({"field": f, "values": v})).collect::<Vec<_>>(),
        "comparisons": pairs.iter().map(|(i, emulated, cases, unjudged)| serde_json::json!({
            "first": label(0),
            "other": label(*i),
            // An emulator's timing (a target device under qemu) gets no speed verdict.
            "emulated": emulated,
            "without_samples": unjudged,
            "cases": cases.iter().map(|c| serde_json::json!({
                "case": c.case,
                "first_median_ns": c.first_median_ns,
                "other_median_ns": c.other_median_ns,
                "ratio": c.verdict.ratio.ratio,
                "ratio_ci_low": finite(c.verdict.ratio.low),
                "ratio_ci_high": finite(c.verdict.ratio.high),
                "change": c.change().name(),
                "verdict": c.verdict.headline(),
                "machine_check_ratio": c.verdict.machine_ratio,
                "delta_top1_pts": c.delta_top1_pts,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let html = html_page(runs, &label, &diffs, &pairs);
    Ok(CompareReport { markdown, json, html })
}

/// JSON has no infinity: an unbounded interval's end is null.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

type Pair = (usize, bool, Vec<CaseComparison>, Vec<String>);

/// A self-contained page (inline CSS, no script needed to read it): the environment differences
/// and one table per comparison, whose case column stays in view while the rest scrolls.
fn html_page(runs: &[Run], label: &dyn Fn(usize) -> String, diffs: &[(String, Vec<String>)], pairs: &[Pair]) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qbench compare</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\ntable{border-collapse:collapse;font-size:13px;margin:0.5rem 0 1.5rem}\nth,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}\nth:first-child,td:first-child{text-align:left;position:sticky;left:0;background:#fff;z-index:1}\nthead th{background:#f3f3f3;position:sticky;top:0}\n.wrap{overflow-x:auto;max-width:100%}\n.faster{color:#1a7f37;font-weight:600}.slower{color:#c62828;font-weight:600}.inconclusive{color:#8a6d00}\n</style></head><body>\n<h1>qbench compare</h1>\n",
    );
    out.push_str("<p>Runs: ");
    out.push_str(
        &(0..runs.len())
            .map(|i| format!("<b>{}</b> <code>{}</code>", esc(&label(i)), esc(&runs[i].dir.display().to_string())))
            .collect::<Vec<_>>()
            .join("; "),
    );
    out.push_str("</p>\n");
    if !diffs.is_empty() {
        out.push_str(
            "<h2>Environment differences</h2>\n<div class=\"wrap\"><table id=\"environment\"><thead><tr><th>field</th>",
        );
        for i in 0..runs.len() {
            out.push_str(&format!("<th>{}</th>", esc(&label(i))));
        }
        out.push_str("</tr></thead><tbody>\n");
        for (field, values) in diffs {
            out.push_str(&format!("<tr><td>{}</td>", esc(field)));
            for v in values {
                out.push_str(&format!("<td>{}</td>", esc(v)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
    for (i, emulated, cases, unjudged) in pairs {
        out.push_str(&format!("<h2>{} against {}</h2>\n", esc(&label(*i)), esc(&label(0))));
        if *emulated {
            out.push_str("<p>Its latencies are an emulator's (a target device under qemu): no speed verdict.</p>\n");
            continue;
        }
        if !unjudged.is_empty() {
            out.push_str(&format!(
                "<p>No verdict (no raw latency samples on one side): {}.</p>\n",
                esc(&unjudged.join("; "))
            ));
        }
        // What the case is and how good it is first, then the speed verdict.
        out.push_str(&format!(
            "<div class=\"wrap\"><table class=\"comparison\"><thead><tr><th>case</th><th>realization 1 → {n}</th><th>top-1 1 / {n} (%)</th><th>Δtop-1 (pts)</th><th>verdict</th><th>ratio [95% CI]</th><th>median 1 (µs)</th><th>median {n} (µs)</th><th>machine check</th></tr></thead><tbody>\n",
            n = i + 1
        ));
        for c in cases {
            let v = &c.verdict;
            let class = match c.change() {
                Change::Faster => "faster",
                Change::Slower => "slower",
                Change::Same => "same",
                Change::Inconclusive { .. } => "inconclusive",
            };
            let realization = match c.realization.0 == c.realization.1 {
                true => c.realization.0.clone(),
                false => format!("{} → {}", c.realization.0, c.realization.1),
            };
            let pct = |t: Option<f64>| t.map_or("—".to_string(), |t| format!("{:.2}", 100.0 * t));
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td class=\"{class}\">{}</td><td>{:.3} [{:.3}, {:.3}]</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>\n",
                esc(&c.case),
                esc(&realization),
                pct(c.top1.0),
                pct(c.top1.1),
                c.delta_top1_pts.map_or("—".into(), |d| format!("{d:+.2}")),
                esc(&v.headline()),
                v.ratio.ratio,
                v.ratio.low,
                v.ratio.high,
                c.first_median_ns / 1e3,
                c.other_median_ns / 1e3,
                v.machine_ratio.map_or("—".into(), |m| format!("×{m:.2}")),
            ));
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str(&format!(
        "<p style=\"color:#666;font-size:12px\">Written by qbench {}: ratio = other median / first median, with its 95% interval for autocorrelated samples; the verdict is against the practical threshold; the machine check is context, not part of the verdict.</p>\n",
        env!("CARGO_PKG_VERSION")
    ));
    // Opened with #selftest (the browser test): which columns of the first comparison lie
    // inside the window, set on the root element. Nothing else runs, nothing is logged.
    out.push_str("<script>if(location.hash===\"#selftest\"){var t=document.querySelector(\"table.comparison\");var w=window.innerWidth;var v=t?Array.prototype.filter.call(t.tHead.rows[0].cells,function(c){var b=c.getBoundingClientRect();return b.left>=0&&b.right<=w;}).map(function(c){return c.textContent;}):[];document.documentElement.setAttribute(\"data-visible-columns\",v.join(\"|\"));document.documentElement.setAttribute(\"data-window-width\",String(w));}</script>\n</body></html>\n");
    out
}

/// The comparison of every later run against the first, as Markdown.
pub fn render(runs: &[Run], threshold: f64, allow_different_inputs: bool) -> Result<String, CompareError> {
    if runs.len() < 2 {
        return Err(CompareError::TooFew);
    }
    let mut out = String::new();
    let diffs = environment_differences(runs);
    let label = |i: usize| {
        format!(
            "run {} ({})",
            i + 1,
            runs[i].dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned())
        )
    };
    if !diffs.is_empty() {
        let _ = writeln!(out, "Environment differences:\n");
        let _ = writeln!(out, "| field | {} |", (0..runs.len()).map(label).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(out, "| --- |{}", " --- |".repeat(runs.len()));
        for (field, values) in &diffs {
            let _ = writeln!(out, "| {field} | {} |", values.iter().map(|v| escape(v)).collect::<Vec<_>>().join(" | "));
        }
        out.push('\n');
    }
    out.push_str(&overview(runs, &label));
    let devices: Vec<super::devices::DeviceRun> = runs[1..]
        .iter()
        .filter(|r| super::devices::is_device_run(&r.records))
        .map(|r| super::devices::DeviceRun::new(&r.dir, r.records.clone()))
        .collect();
    let first_run = runs[0].records.first().map(|r| r.run_id.as_str()).unwrap_or_default();
    for d in &devices {
        if let Some(source) = d.source_run_id.as_deref().filter(|s| *s != first_run) {
            let _ = writeln!(
                out,
                "Note: {} verified a bundle of run {source}, not of run {first_run}: its ratios are against another run's medians.\n",
                d.dir.display()
            );
        }
    }
    out.push_str(&super::devices::markdown(&super::devices::rows(&runs[0].records, &devices)));
    for (i, other) in runs.iter().enumerate().skip(1) {
        if !other.records.is_empty() && other.records.iter().all(|r| r.timing_emulated.is_some()) {
            let _ = writeln!(
                out,
                "{}: its latencies are an emulator's (a target device's run under qemu): no speed verdict against {}.\n",
                label(i),
                label(0)
            );
            continue;
        }
        let rows = compare_pair(&runs[0], other, threshold, allow_different_inputs)?;
        let unjudged = without_samples(&runs[0], other);
        if !unjudged.is_empty() {
            let _ = writeln!(
                out,
                "No verdict (no raw latency samples on one side): {}.\n",
                unjudged.iter().map(|c| escape(c)).collect::<Vec<_>>().join("; ")
            );
        }
        let _ = writeln!(
            out,
            "{} against {}: ratio = median {} / median {}, 95% interval for autocorrelated samples; verdict against a practical threshold of ±{:.0}% (faster / slower: the whole interval beyond it; same: the whole interval within it; inconclusive: neither). The machine check (a fixed CPU workload timed before the cases, at most every 2 s) is context, not part of the verdict; its spread within the runs: {} and {}.\n",
            label(i),
            label(0),
            i + 1,
            1,
            100.0 * threshold,
            spread_text(&runs[0]),
            spread_text(other),
        );
        let _ = writeln!(
            out,
            "| case | median 1 (µs) | median {} (µs) | ratio [95% CI] | verdict | machine check | Δtop-1 (pts) |",
            i + 1
        );
        let _ = writeln!(out, "| --- | --: | --: | --: | --- | --: | --: |");
        for c in &rows {
            let v = &c.verdict;
            let caveat = v.machine_caveat().map_or(String::new(), |c| format!(" ({c})"));
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:.3} [{:.3}, {:.3}] | {}{caveat} | {} | {} |",
                escape(&c.case),
                c.first_median_ns / 1e3,
                c.other_median_ns / 1e3,
                v.ratio.ratio,
                v.ratio.low,
                v.ratio.high,
                v.headline(),
                v.machine_ratio.map_or("—".into(), |m| format!("×{m:.2}")),
                c.delta_top1_pts.map_or("—".into(), |d| format!("{d:+.2}"))
            );
        }
        out.push('\n');
    }
    Ok(out)
}

/// A record's evaluation split in words: how many items were held out, and how they were chosen.
fn split_of(r: &Record) -> String {
    let held = match (r.calibration_items, &r.calibration_selection) {
        (0, _) => "no items held out".to_string(),
        (n, Some(how)) => format!("{n} items held out, chosen {how}"),
        (n, None) => format!("the first {n} items held out"),
    };
    // A tuning split's two sides are other items too.
    match &r.eval_split {
        Some(part) => format!("{held}; {part}"),
        None => held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dataset: &str, scale: u64) -> Run {
        let mut r = Record {
            model: "m".into(),
            scheme: "f32".into(),
            backend: "b".into(),
            batch: 1,
            status: CaseStatus::Ok,
            model_sha256: Some("aa".into()),
            dataset_sha256: dataset.into(),
            top1_accuracy: Some(0.9),
            noise_probe_ns: Some(100.0),
            ..Default::default()
        };
        r.set_latency((0..200).map(|i| (1000 + (i * 37) % 100) * scale / 10).collect(), 1);
        Run { dir: PathBuf::from(dataset), records: vec![r], environment: None }
    }

    #[test]
    fn verdicts_and_refusal_of_different_inputs() {
        let base = run("d1", 10);
        let change = |other: &Run| compare_pair(&base, other, 0.02, false).unwrap()[0].change();
        assert_eq!(change(&run("d1", 10)), Change::Same);
        assert_eq!(change(&run("d1", 13)), Change::Slower);
        assert_eq!(change(&run("d1", 7)), Change::Faster);
        // The same 30% slowdown while the machine check moved by 20%: still slower (the check
        // is context), and the caveat says the machine moved too.
        let mut moved = run("d1", 13);
        moved.records[0].noise_probe_ns = Some(120.0);
        let c = &compare_pair(&base, &moved, 0.02, false).unwrap()[0];
        assert_eq!((c.change(), c.verdict.machine_ratio), (Change::Slower, Some(1.2)));
        assert!(c.verdict.machine_caveat().is_some());
        // Another dataset: refused unless asked.
        let e = compare_pair(&base, &run("d2", 10), 0.02, false).unwrap_err().to_string();
        assert!(e.contains("the dataset differs") && e.contains("--allow-different-inputs"), "{e}");
        assert!(compare_pair(&base, &run("d2", 10), 0.02, true).is_ok());
    }

    #[test]
    fn spread_within_a_run_is_reported_not_a_veto() {
        // Run 2 has a second case whose machine check read 12% slower than its first: the run's
        // spread is 12%, printed as context; a 30% slowdown is still slower.
        let mut with_spread = run("d1", 13);
        let mut other = with_spread.records[0].clone();
        other.scheme = "int8".into();
        other.noise_probe_ns = Some(112.0);
        with_spread.records.push(other);
        assert!((noise_floor(&with_spread) - 0.12).abs() < 1e-12);
        assert_eq!(noise_floor(&run("d1", 10)), 0.0, "one case has no spread");
        assert_eq!(compare_pair(&run("d1", 10), &with_spread, 0.02, false).unwrap()[0].change(), Change::Slower);
    }
}
