//! `report.html`: one self-contained page (no network, no external asset) with a summary, the
//! sortable results table, the charts inline as SVG, failed and skipped cases with their
//! reasons, and the environment.
//!
//! The page is an askama template (`html/report.html`), checked at compile time; askama
//! escapes every value unless the template marks it `safe`, and only our own CSS, script and
//! the SVG plotters drew (which escapes its text) are.

use askama::Template;

use super::chart::{pareto_front, Chart};
use super::results::{self, Notes, ResultsTable};
use crate::record::{CaseStatus, Record};

/// Why the page could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("cannot render report.html: {0}")]
    Render(String),
}

struct Card {
    label: String,
    value: String,
    /// CSS class: "", "warn" or "bad".
    class: &'static str,
}

struct HtmlCell {
    text: String,
    sort: Option<f64>,
    numeric: bool,
}

/// A row of a results table: its cells, and the engine's evidence (shown on demand).
struct HtmlRow {
    cells: Vec<HtmlCell>,
    evidence: String,
}

struct Problem {
    status: &'static str,
    model: String,
    scheme: String,
    backend: String,
    batch: usize,
    reason: String,
}

/// One gate check as `gates.json` stores it (written by `gate::check_run`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateRow {
    pub gate: String,
    pub case: String,
    pub metric: String,
    /// `pass`, `inconclusive` or `FAIL`.
    pub verdict: String,
    pub message: String,
}

/// One bundled case on one target device, as the page shows it.
struct DeviceView {
    case: String,
    machine: String,
    verdict: String,
    worst: String,
    agreement: String,
    workstation_us: String,
    device_us: String,
    ratio: String,
    reason: String,
}

struct ChartView {
    id: String,
    title: String,
    svg: String,
}

/// The results of one more kind of output.
struct KindTable {
    heading: String,
    table: ResultsTable,
    rows: Vec<HtmlRow>,
}

#[derive(Template)]
#[template(path = "report.html", config = "src/report/html/askama.toml")]
struct Page {
    qbench_version: String,
    /// How the records fall short of the cases the run planned (it ended early); empty when
    /// complete or unknown.
    incomplete: Vec<String>,
    suite: String,
    description: String,
    run_id: String,
    started: String,
    cases: usize,
    cards: Vec<Card>,
    highlights: Vec<String>,
    /// Measured cases, over every table.
    measured: usize,
    /// The first kind of output's table (its heading empty when it is the only kind), then
    /// one table for each other kind.
    first_heading: String,
    table: ResultsTable,
    rows: Vec<HtmlRow>,
    more_tables: Vec<KindTable>,
    notes: Notes,
    charts: Vec<ChartView>,
    problems: Vec<Problem>,
    gates: Vec<GateRow>,
    /// The worst verdict of the gates, when there are any.
    gates_verdict: String,
    gates_passed: usize,
    environment: Vec<(String, String)>,
    /// Target devices' verdicts on bundled cases (`qbench-device verify`).
    devices: Vec<DeviceView>,
    devices_passed: usize,
    css: &'static str,
    js: &'static str,
}

/// Renders the page from the records, the run's environment (`environment.json`, if any), the
/// charts, the suite's description, and the gate checks (`gates.json`, if the run was gated).
pub fn render(
    records: &[Record],
    environment: Option<&serde_json::Value>,
    charts: &[Chart],
    description: &str,
    gates: &[GateRow],
    incomplete: &[String],
    devices: &[super::devices::DeviceRow],
) -> Result<String, HtmlError> {
    let html_rows = |table: &ResultsTable| -> Vec<HtmlRow> {
        (0..table.rows)
            .map(|i| HtmlRow {
                cells: table
                    .columns
                    .iter()
                    .map(|c| HtmlCell { text: c.cells[i].text.clone(), sort: c.cells[i].sort, numeric: c.numeric })
                    .collect(),
                evidence: table.evidence.get(i).cloned().unwrap_or_default(),
            })
            .collect()
    };
    let mut tables = results::tables(records).into_iter();
    let (first_heading, table) = tables.next().unwrap_or_default();
    let rows = html_rows(&table);
    let more_tables: Vec<KindTable> =
        tables.map(|(heading, table)| KindTable { heading, rows: html_rows(&table), table }).collect();
    let measured = table.rows + more_tables.iter().map(|t| t.table.rows).sum::<usize>();
    let charts = charts
        .iter()
        .map(|c| {
            Ok(ChartView {
                id: c.id.clone(),
                title: c.title.clone(),
                svg: c.svg().map_err(|e| HtmlError::Render(e.to_string()))?,
            })
        })
        .collect::<Result<_, HtmlError>>()?;
    let problems = records
        .iter()
        .filter(|r| r.status != CaseStatus::Ok)
        .map(|r| Problem {
            status: if r.status == CaseStatus::Failed { "failed" } else { "skipped" },
            model: r.model.clone(),
            scheme: r.scheme.clone(),
            backend: r.backend.clone(),
            batch: r.batch,
            reason: r.error.clone().unwrap_or_else(|| "unknown reason".into()),
        })
        .collect();
    let first = records.first();
    let page = Page {
        qbench_version: env!("CARGO_PKG_VERSION").into(),
        incomplete: incomplete.to_vec(),
        suite: first.map_or("run".into(), |r| r.suite.clone()),
        description: description.into(),
        run_id: first.map_or(String::new(), |r| r.run_id.clone()),
        started: records.iter().map(|r| r.timestamp.as_str()).min().unwrap_or_default().into(),
        cases: records.len(),
        cards: cards(records),
        highlights: highlights(records),
        measured,
        first_heading,
        table,
        more_tables,
        rows,
        notes: results::notes(records),
        charts,
        problems,
        gates_verdict: ["FAIL", "inconclusive", "pass"]
            .into_iter()
            .find(|v| gates.iter().any(|g| g.verdict == *v))
            .unwrap_or_default()
            .to_string(),
        gates_passed: gates.iter().filter(|g| g.verdict == "pass").count(),
        gates: gates.iter().filter(|g| g.verdict != "pass").cloned().collect(),
        environment: environment.map(flatten).unwrap_or_default(),
        devices_passed: devices.iter().filter(|d| d.verdict == "pass").count(),
        devices: devices
            .iter()
            .map(|d| {
                let us = |v: Option<f64>| v.map_or("—".into(), |ns| format!("{:.1}", ns / 1e3));
                DeviceView {
                    case: d.case.clone(),
                    machine: d.machine.clone(),
                    verdict: d.verdict.clone(),
                    worst: d.worst.clone(),
                    agreement: d.top1_agreement.map_or("—".into(), |a| format!("{:.2}%", 100.0 * a)),
                    workstation_us: us(d.workstation_median_ns),
                    device_us: us(d.device_median_ns),
                    ratio: super::devices::ratio_text(d),
                    reason: d.reason.clone(),
                }
            })
            .collect(),
        css: include_str!("html/report.css"),
        js: include_str!("html/report.js"),
    };
    page.render().map_err(|e| HtmlError::Render(e.to_string()))
}

/// The headline numbers.
fn cards(records: &[Record]) -> Vec<Card> {
    let count = |s: CaseStatus| records.iter().filter(|r| r.status == s).count();
    let distinct = |f: fn(&Record) -> &str| {
        let mut v: Vec<&str> = records.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.len()
    };
    let failed = count(CaseStatus::Failed);
    let noisy = records.iter().filter(|r| r.latency_ci_target_met == Some(false)).count();
    let slower = records.iter().filter(|r| r.status == CaseStatus::Ok && r.slower_than_f32).count();
    let card =
        |label: &str, value: usize, class: &'static str| Card { label: label.into(), value: value.to_string(), class };
    vec![
        card("measured", count(CaseStatus::Ok), ""),
        card("failed", failed, if failed > 0 { "bad" } else { "" }),
        card("skipped (unsupported)", count(CaseStatus::Skipped), ""),
        card("models", distinct(|r| &r.model), ""),
        card("schemes", distinct(|r| &r.scheme), ""),
        card("backends", distinct(|r| &r.backend), ""),
        card("latency CI target missed", noisy, if noisy > 0 { "warn" } else { "" }),
        card("quantized, slower than f32", slower, if slower > 0 { "warn" } else { "" }),
    ]
}

/// Per model and batch: the accuracy/latency Pareto front, and the smallest artifact within
/// one point of f32 top-1.
fn highlights(records: &[Record]) -> Vec<String> {
    let ok: Vec<&Record> = records.iter().filter(|r| r.status == CaseStatus::Ok).collect();
    let mut groups: Vec<(&str, usize, &str)> = Vec::new();
    for r in &ok {
        if !groups.contains(&(r.model.as_str(), r.batch, r.sweep.as_str())) {
            groups.push((r.model.as_str(), r.batch, r.sweep.as_str()));
        }
    }
    let mut out = Vec::new();
    for (model, batch, sweep) in groups {
        let group = match sweep.is_empty() {
            true => format!("{model}, batch {batch}"),
            false => format!("{model}, batch {batch}, {sweep}"),
        };
        let rows: Vec<&Record> = ok
            .iter()
            .copied()
            .filter(|r| r.model == model && r.batch == batch && r.sweep == sweep && r.top1_accuracy.is_some())
            .collect();
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.latency_median_ns.unwrap_or(f64::NAN), r.top1_accuracy.unwrap_or(f64::NAN)))
            .collect();
        let front: Vec<String> = pareto_front(&points)
            .into_iter()
            .map(|i| {
                format!(
                    "{} on {} ({}, {:.2}%)",
                    rows[i].scheme,
                    rows[i].backend,
                    duration(points[i].0),
                    100.0 * points[i].1
                )
            })
            .collect();
        if !front.is_empty() {
            out.push(format!(
                "{group}: best accuracy for the latency (Pareto front, fastest first): {}.",
                front.join(" → ")
            ));
        }
        let smallest = rows
            .iter()
            .filter(|r| r.scheme != "f32" && results::delta_vs_f32(r, records).is_some_and(|d| d >= -0.01))
            .filter_map(|r| Some((r.artifact_bytes?, *r)))
            .min_by_key(|(bytes, _)| *bytes);
        if let Some((bytes, r)) = smallest {
            out.push(format!(
                "{group}: smallest model within 1 point of f32 top-1: {} on {} ({bytes} bytes, {:+.2} points).",
                r.scheme,
                r.backend,
                100.0 * results::delta_vs_f32(r, records).unwrap_or(0.0)
            ));
        }
    }
    // A quantized case measured slower than its own backend's f32: it costs time as well as
    // precision, whatever its realization says.
    for r in ok.iter().filter(|r| r.slower_than_f32) {
        if let (Some(x), Some(lo), Some(hi)) = (r.speedup_vs_f32, r.speedup_vs_f32_ci_low, r.speedup_vs_f32_ci_high) {
            out.push(format!(
                "{}, batch {}: {} on {} is SLOWER than f32 on the same engine: {x:.2}× [{lo:.2}, {hi:.2}] (paired rounds, 95% interval; realization {}).",
                r.model, r.batch, r.scheme, r.backend, r.realization
            ));
        }
    }
    out
}

/// A latency in the unit that reads best: µs under a millisecond, ms above.
fn duration(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// `environment.json` as (key, value) rows; nested values as compact JSON.
fn flatten(value: &serde_json::Value) -> Vec<(String, String)> {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "—".into(),
                    serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => {
                        items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(" ")
                    }
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        other => vec![("environment".into(), other.to_string())],
    }
}
