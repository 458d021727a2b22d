//! `[[gates]]` tables, resolved against the suite's own schemes, models and backends.

use toml::Spanned;

use super::diagnostic::Locator;
use super::spec::{GateSpec, ModelSpec, SuiteSpec};
use super::SuiteError;
use crate::gate::Gate;

/// Resolves every gate of `spec`, whose filters match among the schemes and backends the
/// suite's cases use. Filters must select something; every gate needs a threshold.
pub fn resolve_gates(
    spec: &SuiteSpec,
    loc: &Locator,
    schemes: &[crate::quant::SchemeId],
    backends: &[crate::backend::BackendId],
) -> Result<Vec<Gate>, SuiteError> {
    let schemes: Vec<String> = schemes.iter().map(|s| s.name()).collect();
    let backends: Vec<String> = backends.iter().map(|b| b.name().to_string()).collect();
    let models: Vec<String> = spec.models.get_ref().iter().map(|m| m.get_ref().name.get_ref().clone()).collect();
    let mut out = Vec::new();
    for (i, g) in spec.gates.iter().enumerate() {
        let span = g.span();
        let g: &GateSpec = g.get_ref();
        let filter = |list: &Option<Spanned<Vec<Spanned<String>>>>, kind: &str, known: &[String]| {
            super::matrix::matching_globs(loc, list, "gate", kind, known)
        };
        let fraction = |v: &Option<Spanned<f64>>, key: &str| match v {
            Some(s) if !(0.0..=1.0).contains(s.get_ref()) => {
                Err(loc.at(s.span(), format!("{key} = {} is a fraction: use 0 to 1, e.g. 0.9 for 90%", s.get_ref())))
            }
            _ => Ok(v.as_ref().map(|s| *s.get_ref())),
        };
        let non_negative = |v: &Option<Spanned<f64>>, key: &str| match v {
            Some(s) if !(s.get_ref().is_finite() && *s.get_ref() >= 0.0) => {
                Err(loc.at(s.span(), format!("{key} = {} must be a number ≥ 0", s.get_ref())))
            }
            _ => Ok(v.as_ref().map(|s| *s.get_ref())),
        };
        let gate = Gate {
            name: g.name.clone().unwrap_or_else(|| format!("gate {}", i + 1)),
            schemes: filter(&g.schemes, "schemes", &schemes)?,
            models: filter(&g.models, "models", &models)?,
            backends: filter(&g.backends, "backends", &backends)?,
            min_top1: fraction(&g.min_top1, "min_top1")?,
            max_size_bytes: match &g.max_size_bytes {
                Some(s) if *s.get_ref() < 0 => {
                    return Err(loc.at(s.span(), format!("max_size_bytes = {} must be ≥ 0", s.get_ref())))
                }
                v => v.as_ref().map(|s| *s.get_ref() as u64),
            },
            max_p99_ms: non_negative(&g.max_p99_ms, "max_p99_ms")?,
            max_delta_top1_pts: non_negative(&g.max_delta_top1_pts, "max_delta_top1_pts")?,
            min_sqnr_db: match &g.min_sqnr_db {
                Some(s) if !s.get_ref().is_finite() => {
                    return Err(loc
                        .at(s.span(), format!("min_sqnr_db = {} must be a finite number of dB, e.g. 30", s.get_ref())))
                }
                v => v.as_ref().map(|s| *s.get_ref()),
            },
            min_top1_agreement: fraction(&g.min_top1_agreement, "min_top1_agreement")?,
            max_kl: non_negative(&g.max_kl, "max_kl")?,
            max_perplexity_increase_pct: non_negative(&g.max_perplexity_increase_pct, "max_perplexity_increase_pct")?,
            max_latency_regression_pct: non_negative(&g.max_latency_regression_pct, "max_latency_regression_pct")?,
            min_items_per_s: non_negative(&g.min_items_per_s, "min_items_per_s")?,
            max_p99_ms_at_rate: non_negative(&g.max_p99_ms_at_rate, "max_p99_ms_at_rate")?,
        };
        let thresholds = [
            gate.min_top1.is_some(),
            gate.max_size_bytes.is_some(),
            gate.max_p99_ms.is_some(),
            gate.max_delta_top1_pts.is_some(),
            gate.min_sqnr_db.is_some(),
            gate.min_top1_agreement.is_some(),
            gate.max_kl.is_some(),
            gate.max_perplexity_increase_pct.is_some(),
            gate.max_latency_regression_pct.is_some(),
            gate.min_items_per_s.is_some(),
            gate.max_p99_ms_at_rate.is_some(),
        ];
        if !thresholds.iter().any(|t| *t) {
            return Err(loc.at(
                span,
                format!("{} has no threshold; set at least one of min_top1, max_size_bytes, max_p99_ms, max_delta_top1_pts, min_sqnr_db, min_top1_agreement, max_latency_regression_pct, min_items_per_s, max_p99_ms_at_rate", gate.name),
            ));
        }
        // Perplexity is measured on language models (GGUF files) only: a gate on it over no such
        // model could never be checked.
        if let Some(p) = &g.max_perplexity_increase_pct {
            let covered: Vec<&ModelSpec> = spec
                .models
                .get_ref()
                .iter()
                .map(|m| m.get_ref())
                .filter(|m| gate.models.as_ref().is_none_or(|globs| globs.iter().any(|g| g.matches(m.name.get_ref()))))
                .collect();
            let lm = |m: &&ModelSpec| m.path.as_ref().is_some_and(|p| p.get_ref().ends_with(".gguf"));
            if !covered.iter().any(lm) {
                return Err(loc.at(
                    p.span(),
                    "max_perplexity_increase_pct applies to language models (.gguf), and this gate covers none; use min_top1, max_kl or min_sqnr_db for other models",
                ));
            }
        }
        if gate.max_delta_top1_pts.is_some() && !schemes.iter().any(|s| s == "f32") {
            let at = g.max_delta_top1_pts.as_ref().map_or(span.clone(), |s| s.span());
            return Err(loc.at(at, "max_delta_top1_pts compares with the f32 case: add \"f32\" to the suite's schemes"));
        }
        out.push(gate);
    }
    Ok(out)
}

/// The gates of a suite file's text, without resolving its paths: for `qbench check` on the
/// copy of the suite a run keeps.
pub fn gates_of(path: &std::path::Path, source: &str) -> Result<Vec<Gate>, SuiteError> {
    let loc = Locator { file: path, source };
    let spec: SuiteSpec = toml::from_str(source)
        .map_err(|e| loc.at(e.span().unwrap_or(0..0), super::diagnostic::improve_serde_message(e.message())))?;
    let lists = super::matrix::resolve_lists(&spec, &loc, false)?;
    resolve_gates(&spec, &loc, &lists.schemes, &lists.backends)
}
