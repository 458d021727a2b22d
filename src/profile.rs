//! `qbench profile`: where a measured case's time goes, op by op (layer by layer on candle's
//! zoo models), on the case's own backend, batch and threads.
//!
//! The case is rebuilt from its record (as `explain` rebuilds it), its variant prepared on its
//! backend, and the first batch of the evaluation split run `runs` times through the engine's
//! per-op timing ([`crate::backend::Session::profile_run`]: tract's evaluation of each plan
//! node, candle's layers each synchronized), interleaved with as many plain runs. Each op's
//! figure is its median; their sum is set against the plain runs' median, so a profile whose
//! parts do not add up to the whole says so. Where `explain` already localized the case's error
//! (`charts/layers-case-N.json`), each layer's SQNR stands beside its time.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::{BackendError, OpTime};
use crate::explain::{rebuild, ExplainError};
use crate::report::chart::{Bar, Chart, Plot};

/// Why a case cannot be profiled.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Rebuild(#[from] ExplainError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Variant(#[from] crate::quant::VariantError),
    #[error("{backend} does not expose per-op times for this model; profile it on tract-cpu (any ONNX graph) or on candle (the zoo models)")]
    NotExposed { backend: String },
    #[error("the engine ran {got} ops in one run and {want} in another; its plan is not fixed, so per-op medians would mix ops")]
    Unstable { got: usize, want: usize },
    #[error("--runs must be at least 1")]
    NoRuns,
}

/// One op's median share of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRow {
    pub name: String,
    pub op: String,
    pub median_ns: f64,
}

/// SQNR of a layer's output against fp32 with the whole plan, and with it alone quantized
/// (`explain`'s); `None` is an output identical to fp32.
pub type LayerSqnr = (Option<f64>, Option<f64>);

/// The layer an op belongs to: its name up to the first `.` (tract names a layer's ops
/// `conv1.im2col`, `conv1.matmatmul`); candle's ops between layers (`relu@conv1`) are their own.
pub fn layer_of(op_name: &str) -> &str {
    op_name.split('.').next().unwrap_or(op_name)
}

/// A case's profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub case_index: usize,
    pub what: String,
    pub backend: String,
    pub threads: usize,
    pub runs: usize,
    pub ops: Vec<OpRow>,
    /// `explain`'s per-layer SQNR of this case, when it ran on it.
    pub sqnr: Vec<(String, LayerSqnr)>,
    /// Median of the plain (untimed per op) runs, interleaved with the profiled ones.
    pub run_median_ns: f64,
    /// The run's own median latency in its record.
    pub record_median_ns: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Profiles case `index` of the run in `run_dir` over `runs` runs, reading the model into `work`.
pub fn profile(run_dir: &Path, index: usize, runs: usize, work: &Path) -> Result<Profile, ProfileError> {
    if runs == 0 {
        return Err(ProfileError::NoRuns);
    }
    let rebuilt = rebuild(run_dir, index, work)?;
    let record = &rebuilt.record;
    crate::backend::configure_threads(record.threads.max(1));
    let variant = rebuilt.variant(&work.join("variant"))?;
    let mut session = rebuilt.backend.create(rebuilt.suite.cuda_device).prepare(&variant, record.batch)?.session;
    let input = rebuilt.eval.batch_f32(0, record.batch, record.batch);
    session.set_input(&input)?;
    for _ in 0..5 {
        session.run()?;
    }
    let mut per_run: Vec<Vec<OpTime>> = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..runs {
        let ops = match session.profile_run() {
            Some(ops) => ops?,
            None => return Err(ProfileError::NotExposed { backend: record.backend.clone() }),
        };
        if let Some(first) = per_run.first().filter(|f| f.len() != ops.len()) {
            return Err(ProfileError::Unstable { got: ops.len(), want: first.len() });
        }
        per_run.push(ops);
        let started = Instant::now();
        session.run()?;
        plain.push(started.elapsed().as_nanos() as f64);
    }
    let ops = (0..per_run[0].len())
        .map(|k| OpRow {
            name: per_run[0][k].name.clone(),
            op: per_run[0][k].op.clone(),
            median_ns: median(per_run.iter().map(|r| r[k].ns as f64).collect()),
        })
        .collect();
    Ok(Profile {
        case_index: index,
        what: record.case_name(),
        backend: record.backend.clone(),
        threads: record.threads,
        runs,
        ops,
        sqnr: explain_sqnr(&run_dir.join("charts"), index),
        run_median_ns: median(plain),
        record_median_ns: record.latency_median_ns,
    })
}

/// `explain`'s per-layer SQNRs of case `index` (cumulative, alone), from its chart data.
fn explain_sqnr(charts: &Path, index: usize) -> Vec<(String, LayerSqnr)> {
    let Ok(bytes) = crate::files::read_bounded(
        &charts.join(format!("layers-case-{index}.json")),
        crate::files::MAX_SIDE_FILE_BYTES,
        "chart data",
    ) else {
        return Vec::new();
    };
    let Ok(chart) = serde_json::from_slice::<Chart>(&bytes) else { return Vec::new() };
    let Plot::Bars { bars } = chart.plot else { return Vec::new() };
    let mut out: Vec<(String, LayerSqnr)> = Vec::new();
    for b in bars {
        // Labels are `layer (its scheme) · cumulative` and `… · alone`.
        let Some((layer, which)) = b.label.rsplit_once(" · ") else { continue };
        let layer = layer.split(" (").next().unwrap_or(layer);
        let at = match out.iter().position(|(l, _)| l == layer) {
            Some(i) => i,
            None => {
                out.push((layer.to_string(), (None, None)));
                out.len() - 1
            }
        };
        let entry = &mut out[at];
        match which {
            "cumulative" => entry.1 .0 = b.value,
            _ => entry.1 .1 = b.value,
        }
    }
    out
}

impl Profile {
    /// The ops' medians added up.
    pub fn sum_ns(&self) -> f64 {
        self.ops.iter().map(|o| o.median_ns).sum()
    }

    /// Time per layer ([`layer_of`]), in run order.
    pub fn by_layer(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for o in &self.ops {
            let layer = layer_of(&o.name);
            match out.iter_mut().find(|(k, _)| k == layer) {
                Some(e) => e.1 += o.median_ns,
                None => out.push((layer.to_string(), o.median_ns)),
            }
        }
        out
    }

    /// Time per kind of op (`Conv2d`, `OptMatMul`), largest first.
    pub fn by_op(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for o in &self.ops {
            match out.iter_mut().find(|(k, _)| *k == o.op) {
                Some(e) => e.1 += o.median_ns,
                None => out.push((o.op.clone(), o.median_ns)),
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let sum = self.sum_ns();
        let _ = writeln!(
            out,
            "Case {}: {} ({} thread(s)): time per op over {} profiled runs (each op's median), interleaved with {} plain runs.\n",
            self.case_index, self.what, self.threads, self.runs, self.runs
        );
        let _ = writeln!(
            out,
            "The ops add up to {:.1} µs; a plain run's median is {:.1} µs here ({:.0}% of it is in the ops){}.\n",
            sum / 1e3,
            self.run_median_ns / 1e3,
            100.0 * sum / self.run_median_ns,
            self.record_median_ns.map_or(String::new(), |m| format!(", and the run measured {:.1} µs", m / 1e3))
        );
        let _ = writeln!(out, "| # | op | kind | median (µs) | share |");
        let _ = writeln!(out, "| --: | --- | --- | --: | --: |");
        for (i, o) in self.ops.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {i} | {} | {} | {:.1} | {:.1}% |",
                crate::report::markdown::escape(&o.name),
                o.op,
                o.median_ns / 1e3,
                100.0 * o.median_ns / sum
            );
        }
        // Time and error side by side, layer by layer.
        let db = |v: Option<f64>| v.map_or("∞".to_string(), |d| format!("{d:.1}"));
        let _ = writeln!(out, "\nBy layer (its ops together):\n\n| layer | µs | share | SQNR vs fp32, whole plan / alone (dB) |\n| --- | --: | --: | --: |");
        for (layer, ns) in self.by_layer() {
            let sqnr = self
                .sqnr
                .iter()
                .find(|(l, _)| *l == layer)
                .map_or("—".to_string(), |(_, (c, a))| format!("{} / {}", db(*c), db(*a)));
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1}% | {sqnr} |",
                crate::report::markdown::escape(&layer),
                ns / 1e3,
                100.0 * ns / sum
            );
        }
        let _ = writeln!(out, "\nBy kind of op:\n\n| kind | µs | share |\n| --- | --: | --: |");
        for (kind, ns) in self.by_op() {
            let _ = writeln!(out, "| {kind} | {:.1} | {:.1}% |", ns / 1e3, 100.0 * ns / sum);
        }
        if self.backend.starts_with("tract") {
            let _ = writeln!(
                out,
                "\ntract names an op fused from several after the last of them: a layer's matrix product fused with the ReLU after it runs as one op named after the ReLU (`relu2.low`), so that layer's time sits under that name."
            );
        }
        if self.sqnr.is_empty() {
            let _ = writeln!(
                out,
                "\n(`qbench explain <run> {}` adds each layer's error beside its time.)",
                self.case_index
            );
        }
        out
    }

    /// A bar per op, in run order.
    pub fn chart(&self) -> Chart {
        Chart {
            id: format!("profile-case-{}", self.case_index),
            title: format!("case {} ({}): median time per op", self.case_index, self.what),
            x_desc: format!("µs per run, median of {} (the ops sum to {:.0} µs)", self.runs, self.sum_ns() / 1e3),
            y_desc: String::new(),
            plot: Plot::Bars {
                bars: self
                    .ops
                    .iter()
                    .map(|o| Bar {
                        label: format!("{} ({})", o.name, o.op),
                        series: o.op.clone(),
                        value: Some(o.median_ns / 1e3),
                        ci: None,
                    })
                    .collect(),
            },
        }
    }
}

/// Where `qbench profile` writes: `profile-case-N.md` in the run folder.
pub fn report_path(run_dir: &Path, index: usize) -> PathBuf {
    run_dir.join(format!("profile-case-{index}.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_kinds_add_up() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let p = Profile {
            case_index: 0,
            what: "m".into(),
            backend: "b".into(),
            threads: 1,
            runs: 3,
            ops: [("a", "Conv", 30.0), ("b", "Relu", 5.0), ("c", "Conv", 60.0), ("d", "MatMul", 5.0)]
                .iter()
                .map(|(n, o, t)| OpRow { name: n.to_string(), op: o.to_string(), median_ns: *t })
                .collect(),
            sqnr: vec![("a".into(), (Some(30.0), None))],
            run_median_ns: 110.0,
            record_median_ns: None,
        };
        assert_eq!(p.sum_ns(), 100.0);
        // Ties keep run order (a stable sort).
        assert_eq!(p.by_op(), vec![("Conv".to_string(), 90.0), ("Relu".to_string(), 5.0), ("MatMul".to_string(), 5.0)]);
        let text = p.render();
        assert!(text.contains("(91% of it is in the ops)"), "{text}");
        assert!(text.contains("| Conv | 0.1 | 90.0% |"), "{text}");
        assert!(text.contains("| a | 0.0 | 30.0% | 30.0 / ∞ |"), "{text}");
        assert_eq!(layer_of("conv1.im2col"), "conv1");
        assert_eq!(layer_of("relu@conv1"), "relu@conv1");
    }
}
