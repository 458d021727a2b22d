//! Case filters: `model=cnn,scheme=int8-*,q4k` picks the cases whose fields match. The same
//! syntax selects the cases of a run (`qbench run --filter`) and the records of a finished run
//! (`qbench bundle --cases`).

use super::{Case, Suite};
use crate::record::Record;

/// A case filter: each field's globs (any may match), every field must match.
#[derive(Debug, Clone)]
pub struct CaseFilter {
    /// As written: a run keeps it in its `run.json`, so a resumed run selects the same cases.
    text: String,
    fields: Vec<(String, Vec<glob::Pattern>)>,
}

/// The case fields a filter can name.
pub const FILTER_FIELDS: &[&str] = &["model", "scheme", "backend", "device", "batch", "threads"];

impl PartialEq for CaseFilter {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl CaseFilter {
    /// `field=glob[,glob…]` groups separated by commas: a piece without `=` is one more glob for
    /// the field before it (`scheme=int8-*,q4k`).
    pub fn parse(text: &str) -> Result<CaseFilter, String> {
        let mut fields: Vec<(String, Vec<glob::Pattern>)> = Vec::new();
        for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, pattern) = match piece.split_once('=') {
                Some((f, p)) => {
                    let f = f.trim();
                    if !FILTER_FIELDS.contains(&f) {
                        return Err(format!("unknown field \"{f}\"; use {}", FILTER_FIELDS.join(", ")));
                    }
                    if fields.iter().any(|(g, _)| g == f) {
                        return Err(format!(
                            "{f} is named twice, and a case has one {f}: list the alternatives after one {f}= (e.g. {f}=a,b)"
                        ));
                    }
                    fields.push((f.to_string(), Vec::new()));
                    (f.to_string(), p.trim())
                }
                None => match fields.last() {
                    Some((f, _)) => (f.clone(), piece),
                    None => {
                        return Err(format!("\"{piece}\" names no field; write field=pattern, e.g. scheme={piece}"))
                    }
                },
            };
            if pattern.is_empty() {
                return Err(format!("{field}= has no pattern; write e.g. {field}=*"));
            }
            let glob = glob::Pattern::new(pattern).map_err(|e| format!("{field}={pattern}: {e}"))?;
            if let Some((_, globs)) = fields.last_mut() {
                globs.push(glob);
            }
        }
        if fields.is_empty() {
            return Err("it is empty; write field=pattern, e.g. scheme=int8-*".into());
        }
        Ok(CaseFilter { text: text.trim().to_string(), fields })
    }

    /// The filter as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn matches_with(&self, value: impl Fn(&str) -> String) -> bool {
        self.fields.iter().all(|(field, globs)| {
            let value = value(field);
            globs.iter().any(|g| g.matches(&value))
        })
    }

    /// Whether a finished run's record matches.
    pub fn matches(&self, r: &Record) -> bool {
        self.matches_with(|field| record_field(r, field))
    }

    /// Whether a case of `suite` matches.
    pub fn matches_case(&self, suite: &Suite, case: &Case) -> bool {
        self.matches_with(|field| case_field(suite, case, field))
    }

    /// Which of the suite's `cases` match. A pattern that matches no value of its field among
    /// the cases is an error naming the values there are (a typo would otherwise select
    /// nothing, or, beside another pattern, silently less than meant); so is a filter that
    /// selects no case.
    pub fn select(&self, suite: &Suite, cases: &[Case]) -> Result<Vec<bool>, String> {
        for (field, globs) in &self.fields {
            let mut values: Vec<String> = cases.iter().map(|c| case_field(suite, c, field)).collect();
            values.dedup();
            let mut distinct: Vec<String> = Vec::new();
            for v in values {
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            if let Some(g) = globs.iter().find(|g| !distinct.iter().any(|v| g.matches(v))) {
                return Err(format!(
                    "{field}={} matches none of the suite's {field} values ({})",
                    g.as_str(),
                    distinct.join(", ")
                ));
            }
        }
        let selected: Vec<bool> = cases.iter().map(|c| self.matches_case(suite, c)).collect();
        if !selected.contains(&true) {
            return Err(format!(
                "it selects none of the suite's {} cases (each field's patterns match some case, but no case matches all of them); `qbench run <suite> --dry-run` lists the cases",
                cases.len()
            ));
        }
        Ok(selected)
    }
}

fn record_field(r: &Record, field: &str) -> String {
    match field {
        "model" => r.model.clone(),
        "scheme" => r.scheme.clone(),
        "backend" => r.backend.clone(),
        "device" => r.device.clone(),
        "batch" => r.batch.to_string(),
        "threads" => r.threads.to_string(),
        _ => String::new(),
    }
}

fn case_field(suite: &Suite, c: &Case, field: &str) -> String {
    match field {
        "model" => suite.models[c.model].name.clone(),
        "scheme" => c.scheme.name(),
        "backend" => c.backend.name().to_string(),
        "device" => c.backend.device_name(suite.cuda_device),
        "batch" => c.batch.to_string(),
        "threads" => c.point(suite).threads.to_string(),
        _ => String::new(),
    }
}

impl std::str::FromStr for CaseFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CaseFilter::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(model: &str, scheme: &str, backend: &str, batch: usize) -> Record {
        Record { model: model.into(), scheme: scheme.into(), backend: backend.into(), batch, ..Default::default() }
    }

    #[test]
    fn a_filter_takes_alternatives_per_field_and_every_field() {
        let f = CaseFilter::parse("scheme=int8-*,q4k").unwrap();
        assert!(f.matches(&rec("mlp", "int8-pc-sym", "tract-cpu", 1)));
        assert!(f.matches(&rec("cnn", "q4k", "candle-cpu", 32)));
        assert!(!f.matches(&rec("cnn", "f32", "candle-cpu", 32)));
        let f = CaseFilter::parse("model=cnn, scheme=int8-*,batch=1").unwrap();
        assert!(f.matches(&rec("cnn", "int8-pc-sym", "tract-cpu", 1)));
        assert!(!f.matches(&rec("mlp", "int8-pc-sym", "tract-cpu", 1)));
        assert!(!f.matches(&rec("cnn", "int8-pc-sym", "tract-cpu", 32)));
        for bad in ["q4k", "colour=red", "", "scheme=["] {
            assert!(CaseFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
