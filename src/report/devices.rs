//! Target devices beside the workstation: for each bundled case, each device run's verdict
//! (`qbench-device verify`), the worst output's deviation against its tolerance, top-1
//! agreement, and the latency ratio device / workstation (marked when the device's timing was
//! an emulator's).
//!
//! A device run is a folder `qbench-device verify` wrote: its records carry `bundle_case`, and
//! `workstation.jsonl` holds the workstation's records of the bundled cases.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::record::Record;
use crate::report::markdown::escape;

/// The workstation's records of the bundled cases, in a device run folder.
pub const WORKSTATION_RECORDS: &str = "workstation.jsonl";

/// A device run: its folder, records, and the machine in words.
#[derive(Debug, Clone)]
pub struct DeviceRun {
    pub dir: PathBuf,
    pub machine: String,
    pub records: Vec<Record>,
    /// The workstation run whose bundle it verified (`workstation.jsonl`'s run id), when known.
    pub source_run_id: Option<String>,
}

impl DeviceRun {
    /// The device run in `dir` (its source run read from `workstation.jsonl` there).
    pub fn new(dir: &Path, records: Vec<Record>) -> DeviceRun {
        let machine = records.first().map_or_else(|| "?".to_string(), machine);
        let source_run_id = crate::record::read_records(&dir.join(WORKSTATION_RECORDS))
            .ok()
            .and_then(|ws| ws.first().map(|r| r.run_id.clone()));
        DeviceRun { dir: dir.to_path_buf(), machine, records, source_run_id }
    }
}

/// The machine a record ran on, in words: CPU, threads, GPU, and "emulated" when the timing
/// was an emulator's.
pub fn machine(r: &Record) -> String {
    let gpu = r.gpu_name.as_ref().map_or(String::new(), |g| format!(", {g}"));
    let emulated = if r.timing_emulated.is_some() { ", emulated" } else { "" };
    let arch = r.cpu_flags.iter().any(|f| f == "asimd" || f == "neon");
    let arch = if arch { " (arm64)" } else { "" };
    format!("{}{arch}, {} thread(s){gpu}{emulated}", r.cpu_model, r.threads)
}

/// Whether these records are a device run's.
pub fn is_device_run(records: &[Record]) -> bool {
    !records.is_empty() && records.iter().all(|r| r.bundle_case.is_some())
}

/// One bundled case on one device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceRow {
    pub case: String,
    pub machine: String,
    /// `pass`, `fail`, `unsupported`, `error`.
    pub verdict: String,
    /// `output: max |Δ| / tolerance`, when it ran.
    pub worst: String,
    pub top1_agreement: Option<f64>,
    pub workstation_median_ns: Option<f64>,
    pub device_median_ns: Option<f64>,
    /// device / workstation.
    pub ratio: Option<f64>,
    pub emulated: bool,
    /// Why it did not pass.
    pub reason: String,
}

fn key(r: &Record) -> (&str, &str, &str, usize, &str) {
    (r.model.as_str(), r.scheme.as_str(), r.backend.as_str(), r.batch, r.sweep.as_str())
}

/// A row per device record, joined with the workstation's record of the same case (model,
/// scheme, backend, batch) for the latency ratio.
pub fn rows(workstation: &[Record], devices: &[DeviceRun]) -> Vec<DeviceRow> {
    let mut out = Vec::new();
    for d in devices {
        for r in &d.records {
            let ws = workstation.iter().find(|w| key(w) == key(r) && w.bundle_case.is_none());
            let ws_median = ws.and_then(|w| w.latency_median_ns);
            let worst = match (&r.device_worst_output, r.device_max_abs_diff, r.device_tolerance_abs) {
                (Some(o), Some(d), Some(t)) => format!("{o}: {d:.2e} / {t:.2e}"),
                _ => "—".into(),
            };
            let verdict = r.device_verdict.clone().unwrap_or_else(|| "error".into());
            out.push(DeviceRow {
                case: r.case_name(),
                // The run too: two device runs on alike machines stay apart.
                machine: format!("{} · {}", d.machine, r.run_id),
                reason: if verdict == "pass" { String::new() } else { r.error.clone().unwrap_or_default() },
                verdict,
                worst,
                top1_agreement: r.device_top1_agreement,
                workstation_median_ns: ws_median,
                device_median_ns: r.latency_median_ns,
                ratio: ws_median.zip(r.latency_median_ns).filter(|(w, _)| *w > 0.0).map(|(w, d)| d / w),
                emulated: r.timing_emulated.is_some(),
            });
        }
    }
    out
}

/// The ratio cell: `×1.23`, `×41.0 (emulated)`, or `—`.
pub fn ratio_text(row: &DeviceRow) -> String {
    match (row.ratio, row.emulated) {
        (Some(x), false) => format!("×{x:.2}"),
        (Some(x), true) => format!("×{x:.1} (emulated timing)"),
        (None, _) => "—".into(),
    }
}

/// The rows as a Markdown section.
pub fn markdown(rows: &[DeviceRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Target devices\n\n");
    let passed = rows.iter().filter(|r| r.verdict == "pass").count();
    let _ = writeln!(
        out,
        "{passed} of {} bundled case(s) passed on their device. worst output: max |device − workstation| / its tolerance over the bundled items; latency ratio: device median / workstation median (an emulator's timing is marked, and never gated).\n",
        rows.len()
    );
    out.push_str("| case | device | verdict | worst output: max abs Δ / tolerance | top-1 agreement | workstation median (µs) | device median (µs) | device / workstation |\n");
    out.push_str("| --- | --- | --- | --- | --: | --: | --: | --: |\n");
    let us = |v: Option<f64>| v.map_or("—".into(), |ns| format!("{:.1}", ns / 1e3));
    for r in rows {
        let verdict =
            if r.verdict == "pass" { "pass".to_string() } else { format!("**{}**", r.verdict.to_uppercase()) };
        let _ = writeln!(
            out,
            "| {} | {} | {verdict} | {} | {} | {} | {} | {} |",
            escape(&r.case),
            escape(&r.machine),
            escape(&r.worst),
            r.top1_agreement.map_or("—".into(), |a| format!("{:.2}%", 100.0 * a)),
            us(r.workstation_median_ns),
            us(r.device_median_ns),
            ratio_text(r)
        );
    }
    let failing: Vec<&DeviceRow> = rows.iter().filter(|r| r.verdict != "pass").collect();
    if !failing.is_empty() {
        out.push('\n');
        for r in failing {
            let _ = writeln!(out, "- {} on {}: {}", escape(&r.case), escape(&r.machine), escape(&r.reason));
        }
    }
    out.push('\n');
    out
}

/// For a device run folder: its workstation's records (`workstation.jsonl`) and the run itself
/// as a device; `None` for any other folder.
pub fn own_devices(dir: &Path, records: &[Record]) -> Option<(Vec<Record>, Vec<DeviceRun>)> {
    if !is_device_run(records) {
        return None;
    }
    let ws = crate::record::read_records(&dir.join(WORKSTATION_RECORDS)).ok()?;
    Some((ws, vec![DeviceRun::new(dir, records.to_vec())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scheme: &str, median: f64) -> Record {
        Record {
            model: "cnn".into(),
            scheme: scheme.into(),
            backend: "tract-cpu".into(),
            batch: 1,
            latency_median_ns: Some(median),
            cpu_model: "X".into(),
            threads: 1,
            ..Default::default()
        }
    }

    #[test]
    fn rows_join_on_the_case_and_mark_emulated_timing() {
        let ws = vec![rec("f32", 100_000.0), rec("int8-dynamic", 50_000.0)];
        let mut pass = rec("f32", 250_000.0);
        pass.bundle_case = Some("cnn.f32.tract-cpu.b1".into());
        pass.device_verdict = Some("pass".into());
        pass.device_worst_output = Some("output 0".into());
        pass.device_max_abs_diff = Some(1e-6);
        pass.device_tolerance_abs = Some(1e-2);
        pass.timing_emulated = Some("qemu".into());
        let mut fail = rec("int8-dynamic", 40_000.0);
        fail.bundle_case = Some("x".into());
        fail.device_verdict = Some("fail".into());
        fail.error = Some("output 0 beyond".into());
        let rows = rows(&ws, &[DeviceRun::new(Path::new("d"), vec![pass, fail])]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ratio, Some(2.5));
        assert!(rows[0].emulated && ratio_text(&rows[0]).contains("emulated"));
        assert_eq!(rows[1].ratio, Some(0.8));
        assert_eq!(ratio_text(&rows[1]), "×0.80");
        let md = markdown(&rows);
        assert!(md.contains("1 of 2 bundled case(s) passed"), "{md}");
        assert!(md.contains("**FAIL**") && md.contains("output 0 beyond"), "{md}");
        assert!(md.contains("output 0: 1.00e-6 / 1.00e-2"), "{md}");
    }
}
