//! Outputs derived from records: reading the JSONL records, the results table (Markdown and
//! HTML), the charts, the records tables (Parquet, CSV, JSON) and run comparisons.

pub mod chart;
pub mod compare;
pub mod devices;
pub mod html;
pub mod jsonl;
pub mod markdown;
pub mod results;
pub mod table;

use std::path::{Path, PathBuf};

use crate::record::{Record, RecordError};

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}; check that the run folder is writable")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error(transparent)]
    Table(#[from] table::TableError),
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error(transparent)]
    Html(#[from] html::HtmlError),
    #[error(transparent)]
    Compare(#[from] compare::CompareError),
}

/// Writes `report.html` alone (the charts drawn again as SVG, in memory): after gating, so the
/// page shows the verdicts without redrawing every PNG.
pub fn write_html(run_dir: &Path, records: &[Record]) -> Result<PathBuf, ReportError> {
    let mut charts = chart::from_records(records);
    charts.extend(chart::read_layer_charts(&run_dir.join("charts"))?);
    let environment = crate::files::read_side_file(&run_dir.join("environment.json"))
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let description = crate::files::read_side_file(&run_dir.join("suite.toml"))
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("description").and_then(|d| d.as_str().map(str::to_string)))
        .unwrap_or_default();
    let gates: Vec<html::GateRow> = crate::files::read_side_file(&run_dir.join("gates.json"))
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let devices = device_rows(run_dir, records);
    let page = html::render(
        records,
        environment.as_ref(),
        &charts,
        &description,
        &gates,
        &incomplete(run_dir, records),
        &devices,
    )?;
    let path = run_dir.join("report.html");
    std::fs::write(&path, page.as_bytes()).map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Device runs' records kept beside a workstation run (`qbench report <run> <device run>…`).
pub const TARGET_DEVICES: &str = "target-devices.jsonl";

/// The target-device rows of a run folder: a device run's own (against the workstation records
/// it carries), or a workstation run's device runs (`target-devices.jsonl`); none otherwise.
pub fn device_rows(run_dir: &Path, records: &[Record]) -> Vec<devices::DeviceRow> {
    if let Some((workstation, own)) = devices::own_devices(run_dir, records) {
        return devices::rows(&workstation, &own);
    }
    let path = run_dir.join(TARGET_DEVICES);
    let Ok(attached) = crate::record::read_records(&path) else { return Vec::new() };
    let mut runs: Vec<devices::DeviceRun> = Vec::new();
    for r in attached {
        match runs.iter_mut().find(|d| d.records.first().is_some_and(|f| f.run_id == r.run_id)) {
            Some(d) => d.records.push(r),
            None => runs.push(devices::DeviceRun::new(Path::new(&r.run_id.clone()), vec![r])),
        }
    }
    devices::rows(records, &runs)
}

/// Keeps device runs' records beside the workstation run in `run_dir` (`target-devices.jsonl`),
/// replacing earlier records of the same device runs, so its reports show them.
pub fn attach_devices(run_dir: &Path, runs: &[devices::DeviceRun]) -> Result<(), ReportError> {
    let path = run_dir.join(TARGET_DEVICES);
    let own = crate::record::read_records(&run_dir.join("records.jsonl"))?;
    let own_id = own.first().map(|r| r.run_id.clone()).unwrap_or_default();
    // Only the device runs of this run's bundles: another run's medians would make false ratios.
    let runs: Vec<&devices::DeviceRun> =
        runs.iter().filter(|d| d.source_run_id.as_deref().is_none_or(|s| s == own_id)).collect();
    let ids: Vec<&str> = runs.iter().flat_map(|d| d.records.iter().map(|r| r.run_id.as_str())).collect();
    let mut kept: Vec<Record> = crate::record::read_records(&path)
        .map(|rs| rs.into_iter().filter(|r| !ids.contains(&r.run_id.as_str())).collect())
        .unwrap_or_default();
    if runs.is_empty() {
        return Ok(());
    }
    kept.extend(runs.iter().flat_map(|d| d.records.iter().cloned()));
    let mut text = String::new();
    for r in &kept {
        let line = serde_json::to_string(r)
            .map_err(|e| ReportError::Write { path: path.clone(), source: std::io::Error::other(e) })?;
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(|source| ReportError::Write { path, source })
}

/// How `records` fall short of the cases the run in `run_dir` planned (`cases.json`).
fn incomplete(run_dir: &Path, records: &[Record]) -> Vec<String> {
    crate::record::completeness(run_dir, records).map(|c| c.describe()).unwrap_or_default()
}

/// What [`write_outputs`] wrote, for the closing lines of `run` and `report`.
#[derive(Debug)]
pub struct Outputs {
    pub markdown: String,
    pub files: Vec<PathBuf>,
}

/// Writes every output derived from the records into `run_dir`: `report.md`, the records
/// tables, `charts/` (SVG and PNG) and `report.html`. The records are the only input, plus
/// `environment.json`, the suite copy's description, the gate checks (`gates.json`) and the layer
/// charts `qbench explain` left,
/// where present; so `qbench report` gives the same files as the run did.
pub fn write_outputs(run_dir: &Path, records: &[Record]) -> Result<Outputs, ReportError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = run_dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Write { path: path.clone(), source })?;
        Ok::<PathBuf, ReportError>(path)
    };
    let mut markdown = markdown::render(records);
    let gaps = incomplete(run_dir, records);
    if !gaps.is_empty() {
        let lines: Vec<String> = gaps.iter().map(|g| format!("> - {g}")).collect();
        markdown = format!(
            "> **INCOMPLETE RUN** (it ended early): the tables cover only what was recorded.\n{}\n\n{markdown}",
            lines.join("\n")
        );
    }
    markdown.push_str(&devices::markdown(&device_rows(run_dir, records)));
    let mut files = vec![write("report.md", markdown.as_bytes())?];
    files.extend(table::write_all(run_dir, records)?);
    let chart_dir = run_dir.join("charts");
    for c in chart::from_records(records) {
        c.write(&chart_dir)?;
        files.push(chart_dir.join(format!("{}.svg", c.id)));
        files.push(chart_dir.join(format!("{}.png", c.id)));
    }
    files.push(write_html(run_dir, records)?);
    Ok(Outputs { markdown, files })
}
