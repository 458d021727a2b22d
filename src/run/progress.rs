//! What a run reports as it goes: typed events, which the command line renders (a progress
//! bar on a terminal, lines in a log) without reading their text.

use std::fmt;
use std::path::Path;

use crate::record::{CaseStatus, Record};

/// One step of a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// The run folder exists; records go there.
    Started { run_id: &'a str, dir: &'a Path },
    /// A problem with how the run is measured (threads above the cores, a debug build): shown
    /// even under `--quiet`.
    Warning(String),
    /// A note about a model (its reference could not run, an override matched nothing).
    Note(String),
    /// The cases a `--shard` and/or `--filter` selected: `name` says which (`shard 2/4`,
    /// `filter "scheme=int8-*"`).
    Shard { name: String, selected: usize, cases: usize },
    /// A case ended (measured, skipped or failed) and its record is written.
    Case { done: usize, total: usize, record: &'a Record },
}

impl Event<'_> {
    pub fn is_warning(&self) -> bool {
        matches!(self, Event::Warning(_))
    }

    /// Whether the event ends a case (what a progress bar counts).
    pub fn ends_case(&self) -> bool {
        matches!(self, Event::Case { .. })
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { run_id, dir } => write!(f, "run {run_id}: writing to {}", dir.display()),
            Event::Warning(w) => write!(f, "WARNING: {w}"),
            Event::Note(n) => f.write_str(n),
            Event::Shard { name, selected, cases } => {
                write!(f, "{name}: {selected} of the suite's {cases} cases")
            }
            Event::Case { done, total, record: r } => {
                write!(f, "[{done}/{total}] {} {} {} batch {}", r.model, r.scheme, r.backend, r.batch)?;
                if !r.sweep.is_empty() {
                    write!(f, " {}", r.sweep)?;
                }
                f.write_str(": ")?;
                match r.status {
                    CaseStatus::Ok => {
                        write!(f, "median {:.1} µs, {}", r.latency_median_ns.unwrap_or(f64::NAN) / 1e3, quality(r))?;
                        if !r.expected_realization.is_empty() && r.expected_realization != r.realization {
                            let layer = crate::backend::realization::first_not_native(&r.layer_evidence)
                                .map_or(String::new(), |l| format!(": {}", l.describe()));
                            write!(f, " [expected {}, observed {}{layer}]", r.expected_realization, r.realization)?;
                        }
                        Ok(())
                    }
                    CaseStatus::Skipped => write!(f, "skipped: {}", r.error.as_deref().unwrap_or("")),
                    CaseStatus::Failed => write!(f, "FAILED: {}", r.error.as_deref().unwrap_or("")),
                }
            }
        }
    }
}

/// The progress line's quality figure: top-1 when there are labels, else agreement with the
/// f32 reference (cosine for embeddings); perplexity for a language model.
fn quality(r: &Record) -> String {
    if let Some(ppl) = r.perplexity {
        let kl = r.ref_kl_mean.map_or(String::new(), |kl| format!(", KL vs {} {kl:.2e}", r.reference_scheme));
        let speed = match (r.pp_tokens_per_s, r.tg_tokens_per_s) {
            (Some(pp), Some(tg)) => format!(", pp {pp:.0} t/s, tg {tg:.0} t/s"),
            _ => String::new(),
        };
        return format!("perplexity {ppl:.3}{kl}{speed}");
    }
    match (r.top1_accuracy, r.ref_top1_agreement, r.ref_cosine_mean) {
        (Some(t), _, _) => format!("top-1 {:.2}%", 100.0 * t),
        (None, Some(a), _) => format!("top-1 agreement with f32 {:.2}%", 100.0 * a),
        (None, None, Some(c)) => format!("cosine to f32 {c:.6}"),
        _ => "no quality figure".into(),
    }
}
