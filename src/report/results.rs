//! The results table as data, shared by the Markdown and HTML reports so they cannot disagree.
//!
//! llama-bench style: a parameter column (model, scheme, backend, batch, bits/w, realization)
//! whose value is the same on every row is taken out of the table and stated once above it; a
//! measurement column that no row has (top-1 without labels) is dropped. Intervals are written
//! `value ± half-width` of the 95% CI; the exact bounds stay in the records.

use crate::measure::probe;
use crate::record::{CaseStatus, Record};

/// One cell: its text, and the number it sorts by in the HTML table.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub sort: Option<f64>,
}

/// One column of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub header: String,
    /// Right-aligned (numbers).
    pub numeric: bool,
    pub cells: Vec<Cell>,
}

/// The measured cases as a table, plus the parameters every row shares.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultsTable {
    /// Parameter columns with one value on every row: (header, value).
    pub constants: Vec<(String, String)>,
    pub columns: Vec<Column>,
    pub rows: usize,
    /// Per row: what the engine made of the variant (its own summary, then each weighted
    /// layer's evidence), for the HTML's expandable evidence.
    pub evidence: Vec<String>,
}

/// Plain-text notes that go under the table (no markup: each report formats them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notes {
    /// Cases whose latency CI missed the target, and the target.
    pub noisy: Option<(usize, f64)>,
    /// The machine check over the run.
    pub machine: Option<String>,
    /// (model, scheme, overridden layers).
    pub overrides: Vec<(String, String, String)>,
    /// Cases the engine realized otherwise than its backend expected: (case, expected,
    /// observed, the first layer that is not native).
    pub realization_mismatches: Vec<(String, String, String, String)>,
    /// Artifacts made bigger by padding: rows zero-padded to a GGML block, per (model, scheme),
    /// and, where that leaves the artifact larger than a scheme of more bits per weight on the
    /// same model and backend, which.
    pub padding: Vec<String>,
    /// How models' weights were trained, where their files say (model, how).
    pub training: Vec<(String, String)>,
    /// `[calibration] repeats`: each static (model, scheme, backend)'s spread over the subsets.
    pub calibration_spread: Vec<SpreadRow>,
    /// What the accuracy and fidelity columns are measured on.
    pub method: Option<String>,
    /// qbench commit, engines, compiler, CPU, threads.
    pub provenance: Option<String>,
}

/// One static case's results over its calibration subsets: min / median / max, as text.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadRow {
    /// model / scheme / backend.
    pub case: String,
    /// Subsets, and items in each.
    pub subsets: usize,
    pub items: usize,
    pub top1: String,
    pub sqnr_db: String,
    /// Subsets that gave no figures, and why.
    pub failed: String,
}

/// min / median / max of the values, or "not measured".
fn spread_text(mut v: Vec<f64>, show: impl Fn(f64) -> String) -> String {
    if v.is_empty() {
        return "not measured".into();
    }
    v.sort_by(f64::total_cmp);
    let median = crate::measure::stats::percentile_sorted(&v, 50.0);
    format!("{} / {} / {}", show(v[0]), show(median), show(v[v.len() - 1]))
}

/// The table of the measured (`ok`) records, in record order.
pub fn table(records: &[Record]) -> ResultsTable {
    table_of(records, |_| true)
}

/// One table per kind of scored output (a classifier's columns are not a recognizer's), in the
/// order the kinds first appear, each with its heading (`classes`, `sequence (CTC)`, …); one
/// table with an empty heading when every measured case has the same kind.
///
/// A case whose model has several outputs gives one row per output: the first output's row is
/// the case's, each other output's row (in its kind's table) holds that output's scores only.
pub fn tables(records: &[Record]) -> Vec<(String, ResultsTable)> {
    let mut rows: Vec<Record> = Vec::with_capacity(records.len());
    for r in records {
        rows.push(r.clone());
        if r.status == CaseStatus::Ok {
            rows.extend((1..r.outputs.len()).map(|i| output_row(r, i)));
        }
    }
    let mut kinds: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.status == CaseStatus::Ok) {
        if !kinds.contains(&r.output_kind) {
            kinds.push(r.output_kind.clone());
        }
    }
    if kinds.len() <= 1 {
        return vec![(String::new(), table(&rows))];
    }
    kinds
        .into_iter()
        .map(|k| {
            let heading = if k.is_empty() { "language models".to_string() } else { format!("{k} outputs") };
            (heading, table_of(&rows, |r| r.output_kind == k))
        })
        .collect()
}

/// Output `i` (not the first) of a case as a row of its own: the case's identity and that
/// output's scores; the case's latency, memory and size stay on its first output's row.
fn output_row(r: &Record, i: usize) -> Record {
    let s = &r.outputs[i];
    let mut row = Record {
        run_id: r.run_id.clone(),
        suite: r.suite.clone(),
        model: r.model.clone(),
        dataset: r.dataset.clone(),
        scheme: r.scheme.clone(),
        backend: r.backend.clone(),
        device: r.device.clone(),
        batch: r.batch,
        status: CaseStatus::Ok,
        realization: r.realization.clone(),
        bits_per_weight: r.bits_per_weight,
        eval_items: r.eval_items,
        ref_sqnr_db: s.ref_sqnr_db,
        ref_cosine_mean: s.ref_cosine_mean,
        ref_mse_mean: s.ref_mse_mean,
        ref_max_abs_logit_diff: s.ref_max_abs_err,
        top1_accuracy: s.top1_accuracy,
        ref_top1_agreement: s.ref_top1_agreement,
        ..Record::default()
    };
    row.set_output(s, s.kind == "classes");
    row
}

/// The table of the measured records `keep` picks (the others still serve as f32 baselines).
fn table_of(records: &[Record], keep: impl Fn(&Record) -> bool) -> ResultsTable {
    let ok: Vec<&Record> = records.iter().filter(|r| r.status == CaseStatus::Ok && keep(r)).collect();
    let any_threads = ok.iter().any(|r| r.threads > 1);
    // One time unit for the whole table, so rows compare at a glance.
    let smallest = ok.iter().filter_map(|r| r.latency_median_ns).fold(f64::INFINITY, f64::min);
    let (unit, div, p99_digits) = if smallest < 1e6 { ("µs", 1e3, 1) } else { ("ms", 1e6, 2) };
    let num = |v: Option<f64>, text: &dyn Fn(f64) -> String| Cell { text: v.map_or("—".into(), text), sort: v };
    // `digits` is the least number of decimals; more are shown until the half-width has two
    // significant digits, so a tight interval never prints as "± 0.0".
    let pm = |v: Option<f64>, lo: Option<f64>, hi: Option<f64>, scale: f64, digits: usize, star: bool| {
        let star = if star { " *" } else { "" };
        match (v, lo, hi) {
            (Some(v), Some(lo), Some(hi)) => {
                let half = (hi - lo) / 2.0 * scale;
                let needed = if half > 0.0 { (1.0 - half.log10().floor()).clamp(0.0, 4.0) as usize } else { 0 };
                let digits = digits.max(needed);
                Cell { text: format!("{:.digits$} ± {half:.digits$}{star}", v * scale), sort: Some(v) }
            }
            (v, _, _) => num(v, &|v| format!("{:.digits$}{star}", v * scale)),
        }
    };
    // (header, is a parameter, numeric, cell of a record)
    type CellOf<'a> = Box<dyn Fn(&Record) -> Cell + 'a>;
    let columns: Vec<(String, bool, bool, CellOf)> = vec![
        ("model".into(), true, false, Box::new(|r: &Record| text(&r.model))),
        (
            "scheme".into(),
            true,
            false,
            Box::new(|r: &Record| {
                text(&if r.layer_overrides.is_empty() { r.scheme.clone() } else { format!("{} †", r.scheme) })
            }),
        ),
        ("backend".into(), true, false, Box::new(|r: &Record| text(&r.backend))),
        (
            "output".into(),
            true,
            false,
            Box::new(|r: &Record| {
                // A built-in model's one output needs no name; a model file's says which it is.
                if r.output_name.is_empty() {
                    text("—")
                } else {
                    text(&format!("{}: {}", r.output_name, r.output_kind))
                }
            }),
        ),
        (
            "batch".into(),
            true,
            true,
            Box::new(|r: &Record| Cell { text: r.batch.to_string(), sort: Some(r.batch as f64) }),
        ),
        // A `[measure]` sweep's point (`threads=2`); dropped when nothing is swept.
        ("sweep".into(), true, false, Box::new(|r: &Record| text(if r.sweep.is_empty() { "—" } else { &r.sweep }))),
        // What the engine made of the variant, then how good it is: before the timings, so a
        // narrow window shows the verdicts that matter first (the model column stays in view).
        ("realization".into(), true, false, Box::new(|r: &Record| text(&r.realization))),
        (
            "top-1 ± CI (%)".into(),
            false,
            true,
            Box::new(move |r: &Record| pm(r.top1_accuracy, r.top1_ci_low, r.top1_ci_high, 100.0, 2, false)),
        ),
        (
            "Δtop-1 vs f32 [CI] (pts)".into(),
            false,
            true,
            Box::new(|r: &Record| match f32_case(r, records).and_then(|b| r.top1_difference(b)) {
                Some((d, Some((lo, hi)))) if r.scheme != "f32" => {
                    Cell { text: format!("{:+.2} [{:+.2}, {:+.2}]", 100.0 * d, 100.0 * lo, 100.0 * hi), sort: Some(d) }
                }
                Some((d, _)) => Cell { text: format!("{:+.2}", 100.0 * d), sort: Some(d) },
                None => text("—"),
            }),
        ),
        (
            "top-1 agree vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.ref_top1_agreement, &|v| format!("{:.2}%", 100.0 * v))),
        ),
        (
            "SQNR vs ref (dB)".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.ref_sqnr_db, r.ref_max_abs_logit_diff) {
                (Some(db), _) => Cell { text: format!("{db:.1}"), sort: Some(db) },
                (None, Some(0.0)) => Cell { text: "∞".into(), sort: Some(f64::INFINITY) },
                _ => text("—"),
            }),
        ),
        (
            "KL vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.ref_kl_mean, r.ref_kl_infinite_items) {
                (_, Some(n)) if n > 0 => Cell { text: format!("∞ ({n} items)"), sort: Some(f64::INFINITY) },
                (v, _) => num(v, &|v| format!("{v:.1e}")),
            }),
        ),
        (
            "exact match ± CI (%)".into(),
            false,
            true,
            Box::new(move |r: &Record| pm(r.exact_match, r.exact_match_ci_low, r.exact_match_ci_high, 100.0, 1, false)),
        ),
        (
            "CER (%)".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.char_error_rate, &|v| format!("{:.2}", 100.0 * v))),
        ),
        (
            "position agree vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.ref_position_agreement, &|v| format!("{:.2}%", 100.0 * v))),
        ),
        (
            "text agree vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.ref_text_agreement, &|v| format!("{:.2}%", 100.0 * v))),
        ),
        (
            "accuracy at threshold ± CI (%)".into(),
            false,
            true,
            Box::new(move |r: &Record| {
                pm(r.threshold_accuracy, r.threshold_accuracy_ci_low, r.threshold_accuracy_ci_high, 100.0, 1, false)
            }),
        ),
        (
            "agree at threshold vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.ref_threshold_agreement, r.score_threshold) {
                (Some(a), Some(t)) => Cell { text: format!("{:.2}% (≥ {t})", 100.0 * a), sort: Some(a) },
                (a, _) => num(a, &|v| format!("{:.2}%", 100.0 * v)),
            }),
        ),
        (
            "retrieval agree vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.ref_retrieval_agreement, r.retrieval_k) {
                (Some(a), Some(k)) => Cell { text: format!("{:.2}% (k = {k})", 100.0 * a), sort: Some(a) },
                (a, _) => num(a, &|v| format!("{:.2}%", 100.0 * v)),
            }),
        ),
        (
            // A classifier's logits are judged by top-k and KL; other outputs by their direction.
            "cosine vs ref".into(),
            false,
            true,
            Box::new(|r: &Record| {
                let shown = !r.output_kind.is_empty() && r.output_kind != "classes";
                num(r.ref_cosine_mean.filter(|_| shown), &|v| format!("{v:.5}"))
            }),
        ),
        (
            "perplexity ± CI".into(),
            false,
            true,
            Box::new(move |r: &Record| {
                // The interval is asymmetric (exp of a symmetric one): half its width is shown.
                pm(r.perplexity, r.perplexity_ci_low, r.perplexity_ci_high, 1.0, 2, false)
            }),
        ),
        // What the engines did with more than one thread: the cores the process kept busy while
        // sampling (shown when some case asked for more than one thread).
        (
            "busy cores".into(),
            false,
            true,
            Box::new(move |r: &Record| match any_threads {
                true => num(r.sampling_busy_cores, &|v| format!("{v:.2}")),
                false => text("—"),
            }),
        ),
        (
            format!("median ± CI ({unit})"),
            false,
            true,
            Box::new(move |r: &Record| {
                pm(
                    r.latency_median_ns,
                    r.latency_median_ci_low_ns,
                    r.latency_median_ci_high_ns,
                    1.0 / div,
                    1,
                    r.latency_ci_target_met == Some(false),
                )
            }),
        ),
        (
            format!("p99 ({unit})"),
            false,
            true,
            Box::new(move |r: &Record| match (r.latency_p99_ns, r.latency_max_ns) {
                (Some(p), _) => Cell { text: format!("{:.p99_digits$}", p / div), sort: Some(p) },
                // Too few samples to reach past the 99th percentile: the maximum, marked.
                (None, Some(m)) => Cell { text: format!("≈ max {:.p99_digits$}", m / div), sort: Some(m) },
                (None, None) => text("—"),
            }),
        ),
        ("items/s".into(), false, true, Box::new(|r: &Record| num(r.throughput_items_per_s, &|v| format!("{v:.0}")))),
        // The load scenario's figures ([scenario]); dropped when no case ran one.
        (
            "offline items/s".into(),
            false,
            true,
            Box::new(|r: &Record| {
                num(r.offline_items_per_s, &|v| format!("{v:.0} ({} stream(s))", r.offline_streams.unwrap_or(1)))
            }),
        ),
        (
            "server p@rate (ms)".into(),
            false,
            true,
            Box::new(|r: &Record| {
                let ms = r.server_latency_at_target_ns.map(|n| n as f64 / 1e6);
                num(ms, &|v| {
                    format!(
                        "p{} {v:.3} at {} qps {}",
                        r.server_percentile.unwrap_or(99.0),
                        r.server_target_qps.unwrap_or(0.0),
                        if r.server_bound_met == Some(true) { "✓" } else { "✗ over bound" }
                    )
                })
            }),
        ),
        (
            "max qps in bound".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.server_max_qps, r.server_search.is_some()) {
                (Some(q), _) => Cell { text: format!("{q:.0}"), sort: Some(q) },
                (None, true) => text("none"),
                (None, false) => text("—"),
            }),
        ),
        (
            "× vs f32 [CI]".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.speedup_vs_f32, r.speedup_vs_f32_ci_low, r.speedup_vs_f32_ci_high) {
                // Measured slower than f32 (the whole interval): said in the cell, not left to a
                // reader to notice that 0.34 is below 1.
                (Some(x), Some(lo), Some(hi)) if r.slower_than_f32 => {
                    Cell { text: format!("{x:.2}× [{lo:.2}, {hi:.2}] SLOWER than f32"), sort: Some(x) }
                }
                (Some(x), Some(lo), Some(hi)) => Cell { text: format!("{x:.2}× [{lo:.2}, {hi:.2}]"), sort: Some(x) },
                (Some(x), _, _) => Cell { text: format!("{x:.2}× [too few rounds]"), sort: Some(x) },
                _ => text("—"),
            }),
        ),
        (
            "cold start (ms)".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.cold_start_ns.map(|v| v as f64 / 1e6), &|v| format!("{v:.1}"))),
        ),
        (
            "heap prepare / per run".into(),
            false,
            true,
            Box::new(|r: &Record| match (r.prepare_heap_peak_bytes, r.run_heap_allocated_bytes_per_run) {
                (None, None) => text("—"),
                (prepare, run) => Cell {
                    text: format!(
                        "{} / {}",
                        prepare.map_or("—".to_string(), |b| bytes(b as f64)),
                        run.map_or("—".to_string(), bytes)
                    ),
                    sort: prepare.map(|v| v as f64),
                },
            }),
        ),
        (
            "fresh-process peak RSS".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.process_peak_rss_bytes.map(|b| b as f64), &bytes)),
        ),
        (
            "GPU mem (MiB)".into(),
            false,
            true,
            Box::new(|r: &Record| {
                num(r.gpu_memory_used_bytes.map(|v| v as f64 / (1 << 20) as f64), &|v| format!("{v:.1}"))
            }),
        ),
        (
            "input copy (µs)".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.input_copy_median_ns.map(|v| v / 1e3), &|v| format!("{v:.1}"))),
        ),
        (
            "size (bytes)".into(),
            false,
            true,
            Box::new(|r: &Record| num(r.artifact_bytes.map(|v| v as f64), &|v| format!("{v:.0}"))),
        ),
        ("bits/w".into(), true, true, Box::new(|r: &Record| num(r.bits_per_weight, &|v| format!("{v:.2}")))),
        ("pp t/s".into(), false, true, Box::new(|r: &Record| num(r.pp_tokens_per_s, &|v| format!("{v:.0}")))),
        ("tg t/s".into(), false, true, Box::new(|r: &Record| num(r.tg_tokens_per_s, &|v| format!("{v:.0}")))),
    ];
    let evidence = ok
        .iter()
        .map(|r| {
            let mut lines: Vec<String> = r.evidence.iter().cloned().collect();
            lines.extend(r.layer_evidence.iter().map(|l| l.describe()));
            lines.join("\n")
        })
        .collect();
    let mut out = ResultsTable { rows: ok.len(), evidence, ..Default::default() };
    for (header, parameter, numeric, cell_of) in columns {
        let cells: Vec<Cell> = ok.iter().map(|r| cell_of(r)).collect();
        let constant = cells.windows(2).all(|w| w[0].text == w[1].text);
        if cells.iter().all(|c| c.text == "—") {
            continue;
        // Model and scheme stay columns even when every row shares them: each row says what it
        // is, and the HTML keeps them in view while the rest scrolls.
        } else if parameter && constant && cells.len() > 1 && header != "model" && header != "scheme" {
            out.constants.push((header, cells[0].text.clone()));
        } else {
            out.columns.push(Column { header, numeric, cells });
        }
    }
    out
}

/// Bytes in the unit that keeps 3 significant digits: `0 B`, `812 B`, `828.4 KiB`, `3.51 MiB`.
pub fn bytes(b: f64) -> String {
    const KIB: f64 = 1024.0;
    if b < KIB {
        format!("{b:.0} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.2} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

fn text(s: &str) -> Cell {
    Cell { text: s.to_string(), sort: None }
}

/// The measured f32 case of the same model, backend, batch and measurement point.
pub fn f32_case<'a>(r: &Record, records: &'a [Record]) -> Option<&'a Record> {
    records.iter().find(|b| {
        b.scheme == "f32"
            && b.output_name == r.output_name
            && b.model == r.model
            && b.backend == r.backend
            && b.batch == r.batch
            && b.sweep == r.sweep
            && b.status == CaseStatus::Ok
    })
}

/// Top-1 change against the f32 case of the same model, backend and batch.
pub fn delta_vs_f32(r: &Record, records: &[Record]) -> Option<f64> {
    Some(r.top1_accuracy? - f32_case(r, records)?.top1_accuracy?)
}

/// The notes under the table.
pub fn notes(records: &[Record]) -> Notes {
    let ok: Vec<&Record> = records.iter().filter(|r| r.status == CaseStatus::Ok).collect();
    let mut notes = Notes::default();
    let noisy = ok.iter().filter(|r| r.latency_ci_target_met == Some(false)).count();
    if noisy > 0 {
        notes.noisy = Some((noisy, ok.iter().map(|r| r.latency_ci_target_pct).fold(0.0, f64::max)));
    }
    let probes: Vec<f64> = ok.iter().filter_map(|r| r.noise_probe_ns).collect();
    if let Some(drift) = probe::drift(&probes) {
        let (lo, hi) = probes.iter().fold((f64::INFINITY, 0f64), |(l, h), &p| (l.min(p), h.max(p)));
        let paired = ok.iter().any(|r| r.speedup_vs_f32.is_some());
        let verdict = match (drift > probe::NOISY_DRIFT, paired) {
            (true, true) => "the machine's speed changed during the run (noisy): medians measured at different times are not comparable to within their CIs; the × vs f32 column, measured in alternating rounds, is",
            (true, false) => "the machine's speed changed during the run (noisy): medians measured at different times are not comparable to within their CIs",
            (false, _) => "steady",
        };
        notes.machine = Some(format!(
            "Machine check: a fixed workload timed before the cases (at most every 2 s) took {:.1}–{:.1} µs ({:.1}% spread): {verdict}.",
            lo / 1e3,
            hi / 1e3,
            100.0 * drift
        ));
    }
    for r in records.iter().filter(|r| !r.layer_overrides.is_empty()) {
        let entry = (r.model.clone(), r.scheme.clone(), r.layer_overrides.clone());
        if !notes.overrides.contains(&entry) {
            notes.overrides.push(entry);
        }
    }
    for r in ok.iter() {
        let Some(storage) = r.weight_storage.as_deref() else { continue };
        // `fc1.weight=q4k (padded 784→800)`: the layers whose rows were padded.
        let padded: Vec<String> = storage
            .split(", ")
            .filter_map(|part| {
                let (name, rest) = part.split_once('=')?;
                let widths = rest.split("(padded ").nth(1)?.trim_end_matches(')');
                Some(format!("{} {widths}", name.trim_end_matches(".weight")))
            })
            .collect();
        if padded.is_empty() {
            continue;
        }
        let mut line = format!(
            "{} / {}: rows zero-padded to the format's block ({}); the padding is stored, and counted in bits/w",
            r.model,
            r.scheme,
            padded.join(", ")
        );
        // A smaller artifact of more bits per weight on the same model and backend.
        let bigger_than: Vec<String> = ok
            .iter()
            .filter(|o| o.model == r.model && o.backend == r.backend && o.scheme != r.scheme)
            .filter(|o| matches!((o.bits_per_weight, r.bits_per_weight), (Some(a), Some(b)) if a > b))
            .filter(|o| matches!((o.artifact_bytes, r.artifact_bytes), (Some(a), Some(b)) if a < b))
            .map(|o| format!("{} ({} bytes)", o.scheme, o.artifact_bytes.unwrap_or(0)))
            .collect();
        if !bigger_than.is_empty() {
            line.push_str(&format!(
                "; its artifact ({} bytes on {}) is larger than {} although those store more bits per weight",
                r.artifact_bytes.unwrap_or(0),
                r.backend,
                bigger_than.join(", ")
            ));
        }
        if !notes.padding.contains(&line) {
            notes.padding.push(line);
        }
    }
    for r in ok.iter().filter(|r| !r.calibration_spread.is_empty()) {
        let case = format!("{} / {} / {}", r.model, r.scheme, r.backend);
        if notes.calibration_spread.iter().any(|s| s.case == case) {
            continue;
        }
        let sp = &r.calibration_spread;
        let top1: Vec<f64> = sp.iter().filter_map(|s| s.top1_accuracy).collect();
        let sqnr: Vec<f64> = sp.iter().filter_map(|s| s.ref_sqnr_db).collect();
        let failed: Vec<String> =
            sp.iter().filter_map(|s| s.error.as_ref().map(|e| format!("subset {}: {e}", s.subset))).collect();
        notes.calibration_spread.push(SpreadRow {
            case,
            subsets: sp.len(),
            items: sp.first().map_or(0, |s| s.items),
            top1: spread_text(top1, |a| format!("{:.2}%", 100.0 * a)),
            sqnr_db: spread_text(sqnr, |d| format!("{d:.1}")),
            failed: failed.join("; "),
        });
    }
    for r in records {
        if let Some(t) = &r.model_training {
            if !notes.training.iter().any(|(m, _)| *m == r.model) {
                notes.training.push((r.model.clone(), t.clone()));
            }
        }
    }
    for r in ok.iter().filter(|r| !r.expected_realization.is_empty() && r.expected_realization != r.realization) {
        // The layer that made the difference: the weakest, or, where the engine did better than
        // expected, one that ran natively.
        let layer = match (crate::backend::realization::first_not_native(&r.layer_evidence), r.layer_evidence.first()) {
            (Some(l), _) => l.describe(),
            (None, Some(l)) => format!("every layer native, e.g. {}", l.describe()),
            (None, None) => "no layer reported".to_string(),
        };
        notes.realization_mismatches.push((
            r.case_name(),
            r.expected_realization.clone(),
            r.realization.clone(),
            layer,
        ));
    }
    if let Some(r) = records.first() {
        // One clause per (dataset, split, reference engine); the models are named only when
        // the suite has more than one such group (e.g. an ONNX file on tract, a BERT on candle).
        let mut groups: Vec<(EvalSetup, Vec<String>)> = Vec::new();
        for m in records.iter().filter(|m| m.eval_items.is_some() && m.perplexity.is_none()) {
            let key = (
                m.dataset.clone(),
                m.eval_items,
                (m.calibration_items, m.calibration_selection.clone(), m.eval_split.clone()),
                m.reference_backend.clone(),
            );
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) if !g.1.contains(&m.model) => g.1.push(m.model.clone()),
                Some(_) => {}
                None => groups.push((key, vec![m.model.clone()])),
            }
        }
        let only_lm = groups.is_empty() && records.iter().any(|m| m.perplexity.is_some());
        if groups.is_empty() {
            groups.push((
                (
                    r.dataset.clone(),
                    r.eval_items,
                    (r.calibration_items, r.calibration_selection.clone(), r.eval_split.clone()),
                    r.reference_backend.clone(),
                ),
                vec![],
            ));
        }
        let many = groups.len() > 1;
        let data: Vec<String> = groups
            .iter()
            .map(|((dataset, items, (held, how, part), _), models)| {
                let part = part.as_ref().map_or(String::new(), |p| format!("; {p}"));
                let calibration = match (*held, how) {
                    (0, _) => String::new(),
                    (held, Some(how)) => format!("; {held} others held out for calibration, chosen {how}"),
                    // Records from before the choice was recorded held out the first items.
                    (held, None) => format!(", after the first {held} held out for calibration"),
                };
                let who = if many { format!(" for {}", models.join(", ")) } else { String::new() };
                format!("{dataset} ({} items{calibration}{part}){who}", items.map_or("?".into(), |n| n.to_string()))
            })
            .collect();
        let engines: Vec<String> = groups
            .iter()
            .map(|((_, _, _, engine), models)| {
                // No engine when the reference could not run (the model did not load).
                let engine = if engine.is_empty() { "no engine (the reference did not run)" } else { engine };
                // Each model's pass: its batch and the memory it held, as the run measured them.
                let mut passes: Vec<(&str, String)> = Vec::new();
                for m in records
                    .iter()
                    .filter(|m| m.reference_backend == engine && (models.is_empty() || models.contains(&m.model)))
                {
                    let Some(b) = m.reference_batch else { continue };
                    if passes.iter().any(|(model, _)| *model == m.model) {
                        continue;
                    }
                    let heap = m
                        .reference_peak_heap_bytes
                        .map_or("heap not counted".into(), |p| format!("peak heap {}", bytes(p as f64)));
                    passes.push((m.model.as_str(), format!("batch {b}, {heap}")));
                }
                let engine = match passes.as_slice() {
                    [] => engine.to_string(),
                    [(_, pass)] => format!("{engine} ({pass})"),
                    many => {
                        let each: Vec<String> = many.iter().map(|(m, p)| format!("{m}: {p}")).collect();
                        format!("{engine} ({})", each.join("; "))
                    }
                };
                if many {
                    format!("{engine} for {}", models.join(", "))
                } else {
                    engine.to_string()
                }
            })
            .collect();
        let lm: Vec<&Record> = records.iter().filter(|m| m.perplexity.is_some()).collect();
        let mut lm_note = String::new();
        for m in &lm {
            if lm_note.contains(&format!("{}:", m.model)) {
                continue;
            }
            lm_note += &format!(
                " {}: perplexity over {} tokens ({} windows of {}, each token after a window's first predicted from those before it, ± half its 95% interval over windows); \"vs ref\" against its {} variant on candle, the suite's most precise, kept as the top-{} log-probabilities per token (KL over those tokens plus one bucket for the rest: a lower bound on the full KL; agreement of the most probable token). Every variant is requantized from the file's {}, the ceiling of any variant's precision, f32 included. pp t/s: batch × {} tokens of prompt processing per median run (the latency columns); tg t/s: batch × {} tokens generated one at a time through the KV cache, per median time.",
                m.model,
                m.scored_tokens.unwrap_or(0),
                m.eval_items.unwrap_or(0),
                m.scored_tokens.unwrap_or(0) / m.eval_items.unwrap_or(1).max(1) + 1,
                m.reference_scheme,
                crate::measure::lm::TOP_K,
                m.weight_storage.as_deref().and_then(|w| w.split("requantized from the source's ").nth(1)).unwrap_or("source"),
                m.scored_tokens.unwrap_or(0) / m.eval_items.unwrap_or(1).max(1) + 1,
                m.tg_tokens.unwrap_or(0),
            );
        }
        // Outputs-only data (an embedding model's sentences) has no top-1 to explain.
        // What the labels scored: top-1 for classes, exact match and CER for decoded text,
        // accuracy at the threshold for a single score.
        // Any output of any case, not only the first outputs' columns.
        let any =
            |f: &dyn Fn(&crate::measure::outputs::OutputScore) -> bool| records.iter().any(|m| m.outputs.iter().any(f));
        let mut against = Vec::new();
        let top1 = records.iter().any(|m| m.top1_accuracy.is_some()) || any(&|o| o.top1_accuracy.is_some());
        if top1 {
            against.push("top-1 ± the half-width of its Wilson 95% interval");
        }
        if records.iter().any(|m| m.exact_match.is_some()) || any(&|o| o.exact_match.is_some()) {
            against.push("CTC greedy decoding against the text labels: exact match ± the half-width of its Wilson 95% interval, CER = Σ edit distance / Σ label characters");
        }
        if records.iter().any(|m| m.threshold_accuracy.is_some()) || any(&|o| o.threshold_accuracy.is_some()) {
            against.push("a single score's accuracy at its threshold (score ≥ threshold against 0/1 labels) ± its Wilson interval");
        }
        let scored = if against.is_empty() {
            format!("Outputs of {} (no labels: scored against the reference only)", data.join("; "))
        } else if against.len() == 1 && top1 {
            format!("Top-1 on {}, ± the half-width of its Wilson 95% interval", data.join("; "))
        } else {
            format!("Scored on {}: {}", data.join("; "), against.join("; "))
        };
        // Where the accuracy columns come from: one evaluation per (variant, backend).
        let shared = ok.iter().filter(|r| r.eval_batch.is_some_and(|b| b != r.batch)).count();
        let own = ok
            .iter()
            .filter(|r| r.eval_note.as_deref().is_some_and(|n| n.starts_with("outputs depend on the batch")))
            .count();
        let eval_note = match (shared, own) {
            (0, 0) => String::new(),
            (s, 0) => format!(" Accuracy and fidelity come from one evaluation per variant and backend, shared by its cases at every batch size ({s} case(s) checked their own outputs on a batch of items against it)."),
            (s, o) => format!(" Accuracy and fidelity come from one evaluation per variant and backend, shared by its cases at every batch size ({s} case(s) checked their own outputs on a batch of items against it); {o} case(s) whose outputs depend on the batch were evaluated at their own batch (eval_note in the records)."),
        };
        let kinds_note = if records.iter().any(|m| m.outputs.iter().any(|o| o.kind != "classes")) {
            " Each output is scored as its kind says: top-k and KL for classes only; per-position agreement (best class at each position) for sequences; agreement at the threshold for scores; retrieval agreement (shared k nearest neighbours by cosine) for embeddings; SQNR and cosine for all."
        } else {
            ""
        };
        notes.method = Some(format!(
            "{scored}; latency median ± the half-width of its 95% interval (valid for autocorrelated samples); p99 only from 100 samples on, else \"≈ max\"; items/s at the mean run time. × vs f32: speedup over the same backend's f32, measured in alternating rounds (median of the per-round ratios, 95% interval). \"vs ref\": against the fp32 logits computed by {} (SQNR pooled over the dataset; KL of the softmax outputs, mean per item, nats). Cold start = prepare (load + optimize) + first run; heap: peak bytes prepare held / bytes allocated per run, counted by qbench's allocator.{eval_note}{kinds_note}{lm_note}",
            engines.join("; "),
        ));
        if ok.is_empty() {
            notes.method =
                Some("Nothing was measured: every case was skipped or failed (the reasons are listed above).".into());
        } else if only_lm {
            notes.method = Some(format!(
                "Latency median ± the half-width of its 95% interval (valid for autocorrelated samples); p99 only from 100 samples on, else \"≈ max\"; items/s at the mean run time. × vs f32: speedup over the same backend's f32, measured in alternating rounds (median of the per-round ratios, 95% interval). Cold start = prepare (load) + first run; heap: peak bytes prepare held / bytes allocated per run, counted by qbench's allocator.{lm_note}"
            ));
        }
        // What the heap figures cannot see, where a row has such memory (GPU backends, an
        // engine in C++).
        let mut uncovered: Vec<&str> =
            ok.iter().map(|r| r.heap_not_covered.as_str()).filter(|h| !h.is_empty()).collect();
        uncovered.sort_unstable();
        uncovered.dedup();
        // Engines loaded at run time carry their library's version (`ort 2.0.0-rc.15, ONNX
        // Runtime 1.32.0`).
        let mut loaded: Vec<&str> = ok.iter().map(|r| r.engine_version.as_str()).filter(|v| v.contains(", ")).collect();
        loaded.sort_unstable();
        loaded.dedup();
        let loaded: String = loaded.iter().map(|v| format!(", {v}")).collect();
        if let (Some(method), false) = (notes.method.as_mut(), uncovered.is_empty()) {
            method.push_str(&format!(" The heap figures do not see: {}.", uncovered.join("; ")));
        }
        // Every thread count the records ran at (a sweep runs several).
        let mut threads: Vec<usize> = ok.iter().map(|r| r.threads).collect();
        threads.sort_unstable();
        threads.dedup();
        let threads = match threads.len() {
            0 | 1 => r.threads.to_string(),
            _ => format!("{} (swept)", threads.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")),
        };
        notes.provenance = Some(format!(
            "qbench {} (commit {}{}), candle {}, tract {}{}, {}; {} ({}); threads: {}{}.",
            r.qbench_version,
            r.git_commit.chars().take(12).collect::<String>(),
            if r.git_dirty == "true" { ", dirty" } else { "" },
            r.candle_version,
            r.tract_version,
            loaded,
            r.rustc_version,
            r.cpu_model,
            r.cpu_flags.join(" "),
            threads,
            if r.debug_build { "; DEBUG BUILD: timings are not representative" } else { "" },
        ));
        if r.threads > r.logical_cores && r.logical_cores > 0 {
            // Measured on 2 cores: candle's quantized matmuls took 11 ms instead of 15 µs at 8
            // threads; the f32 kernels only ~40% longer. Worth a line a reader cannot miss.
            notes.provenance = notes.provenance.take().map(|p| {
                format!(
                    "{p} OVERSUBSCRIBED: {} threads on {} logical cores, so the CPU backends' threads contend and their latencies are overstated, some by orders of magnitude (candle's quantized matmuls most); set [measure] threads to at most {}.",
                    r.threads, r.logical_cores, r.logical_cores
                )
            });
        }
        if let Some(g) = records.iter().find(|r| r.gpu_name.is_some()) {
            let gpu = format!(
                " GPU: {} ({:.0} GiB, compute capability {}), driver {} (CUDA {}), kernels built for CUDA {}; a GPU run ends with a device synchronize; \"input copy\" is the input's copy to the GPU, timed apart from the run (tract-cuda copies inside the run); \"GPU mem\" is the device memory in use after the first run above what was in use before prepare.",
                g.gpu_name.as_deref().unwrap_or("?"),
                g.gpu_total_memory_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64,
                g.gpu_compute_capability.as_deref().unwrap_or("?"),
                g.gpu_driver_version.as_deref().unwrap_or("?"),
                g.cuda_driver_version.as_deref().unwrap_or("?"),
                g.cuda_build_version.as_deref().unwrap_or("?"),
            );
            if let Some(p) = notes.provenance.as_mut() {
                p.push_str(&gpu);
            }
        }
    }
    notes
}

/// Dataset, evaluated items, held-out items and how they were chosen, reference engine: what a
/// row was scored on.
type EvalSetup = (String, Option<usize>, (usize, Option<String>, Option<String>), String);

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scheme: &str, storage: &str, bits: f64, bytes: u64) -> Record {
        Record {
            model: "bert".into(),
            scheme: scheme.into(),
            backend: "candle-cpu".into(),
            status: CaseStatus::Ok,
            weight_storage: Some(storage.into()),
            bits_per_weight: Some(bits),
            artifact_bytes: Some(bytes),
            ..Default::default()
        }
    }

    #[test]
    fn padding_is_named_and_an_artifact_it_makes_bigger_says_than_what() {
        let records = [
            rec("f16", "fc1.weight=f16, fc1.bias=f32", 16.0, 1000),
            rec("q4k", "fc1.weight=q4k (padded 128→256), fc1.bias=f32", 9.0, 1200),
            rec("q8_0", "fc1.weight=q8_0, fc1.bias=f32", 8.5, 700),
        ];
        let notes = notes(&records);
        assert_eq!(notes.padding.len(), 1, "{:?}", notes.padding);
        let line = &notes.padding[0];
        assert!(line.starts_with("bert / q4k: rows zero-padded to the format's block (fc1 128→256)"), "{line}");
        assert!(line.contains("larger than f16 (1000 bytes)") && !line.contains("q8_0"), "{line}");
        // No padding, no note.
        assert!(super::notes(&records[..1]).padding.is_empty());
    }
}
