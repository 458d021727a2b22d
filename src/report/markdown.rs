//! The Markdown results table (printed by `run` and written to `report.md`).

use std::fmt::Write;

use crate::record::{CaseStatus, Record};

/// A table of measured cases, a list of failed ones, and a provenance footer.
pub fn render(records: &[Record]) -> String {
    let ok: Vec<&Record> = records.iter().filter(|r| r.status == CaseStatus::Ok).collect();
    // One time unit for the whole table, so rows compare at a glance.
    let smallest = ok.iter().filter_map(|r| r.latency_median_ns).fold(f64::INFINITY, f64::min);
    let (unit, div) = if smallest < 1e6 { ("µs", 1e3) } else { ("ms", 1e6) };
    let t = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{:.1}", v / div));
    let pct = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{:.2}%", 100.0 * v));

    let ms = |v: Option<u64>| v.map_or("—".to_string(), |v| format!("{:.1}", v as f64 / 1e6));
    let mib = |v: Option<u64>| v.map_or("—".to_string(), |v| format!("{:.1}", v as f64 / (1 << 20) as f64));
    let header = [
        "model".to_string(),
        "scheme".into(),
        "backend".into(),
        "batch".into(),
        format!("median [95% CI] ({unit})"),
        format!("p99 ({unit})"),
        "items/s".into(),
        "cold start (ms)".into(),
        "peak mem prepare/run (MiB)".into(),
        "size (bytes)".into(),
        "bits/w".into(),
        "realization".into(),
        "top-1 [95% CI]".into(),
        "Δtop-1 vs f32".into(),
        "top-1 agree vs ref".into(),
        "SQNR vs ref (dB)".into(),
        "KL vs ref".into(),
    ];
    let right =
        [false, false, false, true, true, true, true, true, true, true, true, false, true, true, true, true, true];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut noisy = 0;
    for r in &ok {
        let missed = r.latency_ci_target_met == Some(false);
        noisy += missed as usize;
        rows.push(vec![
            r.model.clone(),
            if r.layer_overrides.is_empty() { r.scheme.clone() } else { format!("{} †", r.scheme) },
            r.backend.clone(),
            r.batch.to_string(),
            format!(
                "{} [{}, {}]{}",
                t(r.latency_median_ns),
                t(r.latency_median_ci_low_ns),
                t(r.latency_median_ci_high_ns),
                if missed { " *" } else { "" }
            ),
            t(r.latency_p99_ns),
            r.throughput_items_per_s.map_or("—".into(), |v| format!("{v:.0}")),
            ms(r.cold_start_ns),
            format!("{} / {}", mib(r.prepare_peak_rss_bytes), mib(r.run_peak_rss_bytes)),
            r.artifact_bytes.map_or("—".into(), |v| v.to_string()),
            r.bits_per_weight.map_or("—".into(), |b| format!("{b:.2}")),
            r.realization.clone(),
            match (r.top1_accuracy, r.top1_ci_low, r.top1_ci_high) {
                (Some(a), Some(lo), Some(hi)) => format!("{:.2}% [{:.2}, {:.2}]", 100.0 * a, 100.0 * lo, 100.0 * hi),
                (a, _, _) => pct(a),
            },
            delta_vs_f32(r, records),
            pct(r.ref_top1_agreement),
            match (r.ref_sqnr_db, r.ref_max_abs_logit_diff) {
                (Some(db), _) => format!("{db:.1}"),
                (None, Some(0.0)) => "∞".into(),
                _ => "—".into(),
            },
            r.ref_kl_mean.map_or("—".into(), |v| format!("{v:.1e}")),
        ]);
    }
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&table(&header, &right, &rows));
    }
    for (status, title) in
        [(CaseStatus::Failed, "failed"), (CaseStatus::Skipped, "skipped (unsupported on that backend)")]
    {
        let listed: Vec<&Record> = records.iter().filter(|r| r.status == status).collect();
        if listed.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n**{} {title} case(s):**\n", listed.len());
        for r in listed {
            let why = r.error.as_deref().unwrap_or("unknown reason");
            let _ = writeln!(out, "- {} / {} / {} / batch {}: {why}", r.model, r.scheme, r.backend, r.batch);
        }
    }
    if noisy > 0 {
        let target = ok.iter().map(|r| r.latency_ci_target_pct).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "\n\\* {noisy} case(s) did not reach the ±{target}% CI target for the median within the time budget: the machine was noisy, or the budget is short; compare those rows with care."
        );
    }
    let probes: Vec<f64> = ok.iter().filter_map(|r| r.noise_probe_ns).collect();
    if let Some(drift) = crate::measure::probe::drift(&probes) {
        let (lo, hi) = probes.iter().fold((f64::INFINITY, 0f64), |(l, h), &p| (l.min(p), h.max(p)));
        let verdict = if drift > crate::measure::probe::NOISY_DRIFT {
            "the machine's speed changed during the run (noisy): medians measured at different times are not comparable to within their CIs"
        } else {
            "steady"
        };
        let _ = writeln!(
            out,
            "\nMachine check: a fixed workload timed before each case took {:.1}–{:.1} µs ({:.1}% spread): {verdict}.",
            lo / 1e3,
            hi / 1e3,
            100.0 * drift
        );
    }
    let mut overridden: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| !r.layer_overrides.is_empty())
        .map(|r| (r.model.as_str(), r.scheme.as_str(), r.layer_overrides.as_str()))
        .collect();
    overridden.dedup();
    if !overridden.is_empty() {
        let _ = writeln!(out, "\n† layers with their own scheme ([[overrides]]):\n");
        for (model, scheme, layers) in overridden {
            let _ = writeln!(out, "- {model} / {scheme}: {layers}");
        }
    }
    if let Some(r) = records.first() {
        let calibration = if r.calibration_items > 0 {
            format!(", after the first {} held out for calibration", r.calibration_items)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "\nTop-1 on {} ({} items{calibration}), with its Wilson 95% interval. \"vs ref\": against the fp32 logits computed by {} (SQNR pooled over the dataset; KL of the softmax outputs, mean per item, nats). Cold start = prepare (load + optimize) + first run; peak memory is the resident memory each step added, from the OS.\nqbench {} (commit {}{}), candle {}, tract {}, {}; {} ({}); threads: {}{}.",
            r.dataset,
            r.eval_items.map_or("?".into(), |n| n.to_string()),
            r.reference_backend,
            r.qbench_version,
            &r.git_commit[..r.git_commit.len().min(12)],
            if r.git_dirty == "true" { ", dirty" } else { "" },
            r.candle_version,
            r.tract_version,
            r.rustc_version,
            r.cpu_model,
            r.cpu_flags.join(" "),
            r.threads,
            if r.debug_build { "; DEBUG BUILD: timings are not representative" } else { "" },
        );
    }
    out
}

/// Top-1 change against the f32 case of the same model, backend and batch, in points.
fn delta_vs_f32(r: &Record, records: &[Record]) -> String {
    let base = records.iter().find(|b| {
        b.scheme == "f32"
            && b.model == r.model
            && b.backend == r.backend
            && b.batch == r.batch
            && b.status == CaseStatus::Ok
    });
    match (base.and_then(|b| b.top1_accuracy), r.top1_accuracy) {
        (Some(b), Some(a)) => format!("{:+.2}", 100.0 * (a - b)),
        _ => "—".into(),
    }
}

/// A Markdown table with padded columns; `right[i]` right-aligns column i.
fn table(header: &[String], right: &[bool], rows: &[Vec<String>]) -> String {
    let width =
        |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count(), 3]).max().unwrap_or(3);
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if right[i] {
                let _ = write!(s, " {}{} |", " ".repeat(pad), c);
            } else {
                let _ = write!(s, " {}{} |", c, " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(w - 1);
        if right[i] {
            let _ = write!(out, " {dashes}: |");
        } else {
            let _ = write!(out, " {dashes}- |");
        }
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
    }
    out
}
