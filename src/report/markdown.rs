//! The Markdown results table (printed by `run` and written to `report.md`).

use std::fmt::Write;

use super::results;
use crate::record::{CaseStatus, Record};

/// A table of measured cases, a list of failed ones, and a provenance footer.
pub fn render(records: &[Record]) -> String {
    let notes = results::notes(records);
    let mut out = String::new();
    for (k, (heading, t)) in results::tables(records).into_iter().enumerate() {
        if !heading.is_empty() {
            let _ = writeln!(out, "{}### {}\n", if k > 0 { "\n" } else { "" }, escape(&heading));
        }
        if !t.constants.is_empty() {
            let shared: Vec<String> = t.constants.iter().map(|(k, v)| format!("{k} **{}**", escape(v))).collect();
            let _ = writeln!(out, "All rows: {}.\n", shared.join(" · "));
        }
        if t.rows > 0 {
            let header: Vec<String> = t.columns.iter().map(|c| c.header.clone()).collect();
            let right: Vec<bool> = t.columns.iter().map(|c| c.numeric).collect();
            let rows: Vec<Vec<String>> =
                (0..t.rows).map(|i| t.columns.iter().map(|c| escape(&c.cells[i].text)).collect()).collect();
            out.push_str(&table(&header, &right, &rows));
        }
    }
    for (status, title) in
        [(CaseStatus::Failed, "failed"), (CaseStatus::Skipped, "skipped (unsupported on that backend)")]
    {
        let listed: Vec<&Record> = records.iter().filter(|r| r.status == status).collect();
        if listed.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n**{} {title} case(s):**\n", listed.len());
        // Skipped cases share their reason per model and backend: one line a reason, listing
        // the schemes and batches, instead of one line a case.
        let mut groups: Vec<CaseGroup> = Vec::new();
        for r in listed {
            let why = r.error.as_deref().unwrap_or("unknown reason");
            let key = (r.model.as_str(), r.backend.as_str(), why);
            let i = match groups.iter().position(|g| status == CaseStatus::Skipped && g.0 == key) {
                Some(i) => i,
                None => {
                    groups.push((key, Vec::new(), Vec::new()));
                    groups.len() - 1
                }
            };
            let g = &mut groups[i];
            if !g.1.contains(&r.scheme.as_str()) {
                g.1.push(&r.scheme);
            }
            if !g.2.contains(&r.batch) {
                g.2.push(r.batch);
            }
        }
        for ((model, backend, why), schemes, batches) in groups {
            let batches: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
            let what = format!("{model} / {} / {backend} / batch {}: {why}", schemes.join(", "), batches.join(", "));
            let _ = writeln!(out, "- {}", escape(&what));
        }
    }
    if let Some((noisy, target)) = notes.noisy {
        let _ = writeln!(
            out,
            "\n\\* {noisy} case(s) did not reach the ±{target}% CI target for the median within the time budget: the machine was noisy, or the budget is short; compare those rows with care."
        );
    }
    if let Some(machine) = &notes.machine {
        let _ = writeln!(out, "\n{machine}");
    }
    if !notes.overrides.is_empty() {
        let _ = writeln!(out, "\n† layers with their own scheme ([[overrides]]):\n");
        for (model, scheme, layers) in &notes.overrides {
            let _ = writeln!(out, "- {}", escape(&format!("{model} / {scheme}: {layers}")));
        }
    }
    if !notes.padding.is_empty() {
        let _ = writeln!(out, "\nPadding (what makes an artifact bigger than its bits suggest):\n");
        for line in &notes.padding {
            let _ = writeln!(out, "- {}", escape(line));
        }
    }
    if !notes.calibration_spread.is_empty() {
        let _ = writeln!(
            out,
            "\nCalibration spread ([calibration] repeats: each static scheme calibrated on every disjoint subset, evaluated on the same items; min / median / max):\n"
        );
        let header: Vec<String> = ["case", "subsets × items", "top-1", "SQNR vs reference (dB)", "failed"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows: Vec<Vec<String>> = notes
            .calibration_spread
            .iter()
            .map(|s| {
                vec![
                    escape(&s.case),
                    format!("{} × {}", s.subsets, s.items),
                    s.top1.clone(),
                    s.sqnr_db.clone(),
                    escape(&s.failed),
                ]
            })
            .collect();
        out.push_str(&table(&header, &[false, true, true, true, false], &rows));
    }
    if !notes.training.is_empty() {
        let _ = writeln!(out, "\nTraining (from the weights files):\n");
        for (model, how) in &notes.training {
            let _ = writeln!(out, "- {}", escape(&format!("{model}: {how}")));
        }
    }
    if !notes.realization_mismatches.is_empty() {
        let _ = writeln!(out, "\nRealized otherwise than expected (the realization column is what the engine did):\n");
        for (case, expected, observed, layer) in &notes.realization_mismatches {
            let _ =
                writeln!(out, "- {}", escape(&format!("{case}: expected {expected}, observed {observed}; {layer}")));
        }
    }
    if let (Some(method), Some(provenance)) = (&notes.method, &notes.provenance) {
        let _ = writeln!(out, "\n{method}\n{provenance}");
    }
    out
}

/// (model, backend, reason), then the schemes and batches sharing them.
type CaseGroup<'a> = ((&'a str, &'a str, &'a str), Vec<&'a str>, Vec<usize>);

/// User text (names, error messages) made inert in Markdown: `|` would split a table cell and
/// `<…>` would be taken for HTML and hidden when the report is pasted into a pull request.
pub fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "\\<").replace('>', "\\>")
}

/// A Markdown table with padded columns; `right[i]` right-aligns column i.
pub(crate) fn table(header: &[String], right: &[bool], rows: &[Vec<String>]) -> String {
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
