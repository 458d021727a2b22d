//! The case matrix: each model's schemes × backends × batch sizes (its own lists, else the
//! suite's), less the cases of the `[[exclude]]` rules, plus those of the `[[include]]` rules.
//! Structurally impossible pairs (a BERT checkpoint on tract) are then never generated, instead
//! of being generated and reported skipped.

use toml::Spanned;

use super::diagnostic::Locator;
use super::spec::{MatrixRuleSpec, SuiteSpec};
use super::{Case, Suite, SuiteError};
use crate::backend::BackendId;
use crate::quant::SchemeId;

/// One `[[exclude]]` rule: a case is left out when it matches every list the rule gives.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    pub models: Option<Vec<glob::Pattern>>,
    pub schemes: Option<Vec<glob::Pattern>>,
    pub backends: Option<Vec<glob::Pattern>>,
    pub batch_sizes: Option<Vec<usize>>,
    pub reason: Option<String>,
}

/// One `[[include]]` rule: every combination of its lists is added for each model it names; a
/// list left out takes the model's own.
#[derive(Debug, Clone, Default)]
pub struct Include {
    pub models: Option<Vec<glob::Pattern>>,
    pub schemes: Option<Vec<SchemeId>>,
    pub backends: Option<Vec<BackendId>>,
    pub batch_sizes: Option<Vec<usize>>,
}

fn any(globs: &Option<Vec<glob::Pattern>>, value: &str) -> bool {
    globs.as_ref().is_none_or(|g| g.iter().any(|p| p.matches(value)))
}

impl Exclude {
    pub fn matches(&self, model: &str, c: &Case) -> bool {
        any(&self.models, model)
            && any(&self.schemes, &c.scheme.name())
            && any(&self.backends, c.backend.name())
            && self.batch_sizes.as_ref().is_none_or(|b| b.contains(&c.batch))
    }
}

impl Include {
    pub fn applies_to(&self, model: &str) -> bool {
        any(&self.models, model)
    }
}

/// Scheme names, each known and listed once.
pub(super) fn parse_schemes(loc: &Locator, list: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<SchemeId>, SuiteError> {
    let names = SchemeId::names();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    super::parse_list(loc, list, "scheme", SchemeId::from_name, &names)
}

/// Backend names, each known, listed once and, when `built`, in this build (a backend behind a
/// cargo feature is refused with how to build it).
pub(super) fn parse_backends(
    loc: &Locator,
    list: &Spanned<Vec<Spanned<String>>>,
    built: bool,
) -> Result<Vec<BackendId>, SuiteError> {
    let backends = super::parse_list(loc, list, "backend", BackendId::from_name, &BackendId::names())?;
    for item in list.get_ref().iter().filter(|_| built) {
        let Some(id) = BackendId::from_name(item.get_ref()) else { continue };
        if let Err(hint) = id.built() {
            let what = if id.is_cuda() { "runs on a GPU, and" } else { "is not in this build:" };
            return Err(loc.at(item.span(), format!("backend \"{}\" {what} {hint}", item.get_ref())));
        }
    }
    Ok(backends)
}

/// Batch sizes in 1..=65536, each listed once, at least one.
pub(super) fn parse_batches(loc: &Locator, list: &Spanned<Vec<Spanned<i64>>>) -> Result<Vec<usize>, SuiteError> {
    if list.get_ref().is_empty() {
        return Err(loc.at(list.span(), "batch_sizes is empty; write at least one, e.g. batch_sizes = [1, 32]"));
    }
    let mut out = Vec::new();
    for b in list.get_ref() {
        let v = *b.get_ref();
        if !(1..=65536).contains(&v) {
            return Err(loc.at(b.span(), format!("batch size {v} is out of range; use 1 to 65536")));
        }
        if out.contains(&(v as usize)) {
            return Err(loc.at(b.span(), format!("batch size {v} is listed twice; remove one")));
        }
        out.push(v as usize);
    }
    Ok(out)
}

/// Globs that must each match one of `known` (a pattern that matches nothing is a typo):
/// `what` names the table in the message (`gate`, `exclude`).
pub(super) fn matching_globs(
    loc: &Locator,
    list: &Option<Spanned<Vec<Spanned<String>>>>,
    what: &str,
    kind: &str,
    known: &[String],
) -> Result<Option<Vec<glob::Pattern>>, SuiteError> {
    let Some(list) = list else { return Ok(None) };
    if list.get_ref().is_empty() {
        return Err(loc.at(list.span(), format!("{what} {kind} is empty; leave it out to match every one")));
    }
    let mut globs = Vec::new();
    for item in list.get_ref() {
        let p = glob::Pattern::new(item.get_ref())
            .map_err(|e| loc.at(item.span(), format!("\"{}\" is not a valid glob: {e}", item.get_ref())))?;
        if !known.iter().any(|k| p.matches(k)) {
            return Err(loc.at(
                item.span(),
                format!(
                    "{what} {kind} pattern \"{}\" matches none of the suite's {kind} ({})",
                    item.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        globs.push(p);
    }
    Ok(Some(globs))
}

fn has_a_list(r: &MatrixRuleSpec) -> bool {
    r.models.is_some() || r.schemes.is_some() || r.backends.is_some() || r.batch_sizes.is_some()
}

/// The `[[include]]` rules; `models` are the suite's model names.
pub(super) fn resolve_includes(
    spec: &SuiteSpec,
    loc: &Locator,
    models: &[String],
    built: bool,
) -> Result<Vec<Include>, SuiteError> {
    let mut out = Vec::new();
    for rule in &spec.include {
        let r = rule.get_ref();
        if !has_a_list(r) || (r.schemes.is_none() && r.backends.is_none() && r.batch_sizes.is_none()) {
            return Err(loc.at(
                rule.span(),
                "an [[include]] adds combinations: give it schemes, backends or batch_sizes (and models to say whose), e.g. models = [\"cnn\"], backends = [\"tract-cpu\"]",
            ));
        }
        if r.reason.is_some() {
            return Err(loc.at(rule.span(), "reason is for [[exclude]] rules (why a case is left out); remove it here"));
        }
        out.push(Include {
            models: matching_globs(loc, &r.models, "include", "models", models)?,
            schemes: r.schemes.as_ref().map(|l| parse_schemes(loc, l)).transpose()?,
            backends: r.backends.as_ref().map(|l| parse_backends(loc, l, built)).transpose()?,
            batch_sizes: r.batch_sizes.as_ref().map(|l| parse_batches(loc, l)).transpose()?,
        });
    }
    Ok(out)
}

/// The `[[exclude]]` rules, against the suite's models and the schemes, backends and batch
/// sizes its models use.
pub(super) fn resolve_excludes(
    spec: &SuiteSpec,
    loc: &Locator,
    models: &[String],
    schemes: &[SchemeId],
    backends: &[BackendId],
    batches: &[usize],
) -> Result<Vec<Exclude>, SuiteError> {
    let schemes: Vec<String> = schemes.iter().map(|s| s.name()).collect();
    let backends: Vec<String> = backends.iter().map(|b| b.name().to_string()).collect();
    let mut out = Vec::new();
    for rule in &spec.exclude {
        let r = rule.get_ref();
        if !has_a_list(r) {
            return Err(loc.at(
                rule.span(),
                "an [[exclude]] with no list would leave out every case; give it models, schemes, backends or batch_sizes",
            ));
        }
        let batch_sizes = match &r.batch_sizes {
            None => None,
            Some(list) => {
                let sizes = parse_batches(loc, list)?;
                if let Some((i, b)) = sizes.iter().enumerate().find(|(_, b)| !batches.contains(b)) {
                    let listed: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
                    return Err(loc.at(
                        list.get_ref()[i].span(),
                        format!("exclude batch size {b} is none of the suite's batch sizes ({})", listed.join(", ")),
                    ));
                }
                Some(sizes)
            }
        };
        out.push(Exclude {
            models: matching_globs(loc, &r.models, "exclude", "models", models)?,
            schemes: matching_globs(loc, &r.schemes, "exclude", "schemes", &schemes)?,
            backends: matching_globs(loc, &r.backends, "exclude", "backends", &backends)?,
            batch_sizes,
            reason: r.reason.clone(),
        });
    }
    Ok(out)
}

/// Each model's cases before the matrix rules: its schemes × backends × batch sizes.
fn cartesian(suite: &Suite, model: usize) -> Vec<Case> {
    let m = &suite.models[model];
    let mut out = Vec::new();
    for &scheme in &m.schemes {
        for &backend in &m.backends {
            for &batch in &m.batch_sizes {
                for point in 0..suite.points.len() {
                    out.push(Case { model, scheme, backend, batch, point });
                }
            }
        }
    }
    out
}

/// The suite's cases, model-major, then in the order of the suite's scheme, backend and batch
/// lists (so that each model is loaded once and each scheme applied once per model), with the
/// cases the `[[exclude]]` rules left out: each with the index of the first rule that did.
pub(super) fn expand_matrix(suite: &Suite) -> (Vec<Case>, Vec<(Case, usize)>) {
    let mut cases = Vec::new();
    let mut excluded = Vec::new();
    for model in 0..suite.models.len() {
        let name = &suite.models[model].name;
        let mut mine: Vec<Case> = Vec::new();
        for c in cartesian(suite, model) {
            match suite.exclude.iter().position(|e| e.matches(name, &c)) {
                Some(rule) => excluded.push((c, rule)),
                None => mine.push(c),
            }
        }
        let m = &suite.models[model];
        for inc in suite.include.iter().filter(|i| i.applies_to(name)) {
            for &scheme in inc.schemes.as_ref().unwrap_or(&m.schemes) {
                for &backend in inc.backends.as_ref().unwrap_or(&m.backends) {
                    for &batch in inc.batch_sizes.as_ref().unwrap_or(&m.batch_sizes) {
                        for point in 0..suite.points.len() {
                            let c = Case { model, scheme, backend, batch, point };
                            if !mine.contains(&c) {
                                mine.push(c);
                            }
                        }
                    }
                }
            }
        }
        excluded.retain(|(c, _)| !mine.contains(c));
        let pos = |list: &[SchemeId], s: SchemeId| list.iter().position(|x| *x == s).unwrap_or(usize::MAX);
        mine.sort_by_key(|c| {
            (
                pos(&suite.schemes, c.scheme),
                suite.backends.iter().position(|b| *b == c.backend).unwrap_or(usize::MAX),
                suite.batch_sizes.iter().position(|b| *b == c.batch).unwrap_or(usize::MAX),
                c.point,
            )
        });
        cases.extend(mine);
    }
    (cases, excluded)
}

/// Every exclude rule leaves out some case, every include adds one, and every model keeps one:
/// a rule that does nothing, or a model that is never run, is a mistake in the suite.
pub(super) fn check_matrix(suite: &Suite, spec: &SuiteSpec, loc: &Locator) -> Result<(), SuiteError> {
    let (cases, excluded) = expand_matrix(suite);
    for (i, rule) in spec.exclude.iter().enumerate() {
        let hits = (0..suite.models.len())
            .flat_map(|m| cartesian(suite, m))
            .any(|c| suite.exclude[i].matches(&suite.models[c.model].name, &c));
        if !hits {
            return Err(loc.at(
                rule.span(),
                "this [[exclude]] matches no case of the matrix (no model has that scheme, backend and batch together); fix or remove it",
            ));
        }
        if !excluded.iter().any(|(_, r)| *r == i) {
            return Err(loc.at(
                rule.span(),
                "this [[exclude]] leaves out nothing: an earlier [[exclude]] already does, or an [[include]] adds back every case it matches; fix or remove it",
            ));
        }
    }
    for (i, rule) in spec.include.iter().enumerate() {
        let without: Vec<Case> = {
            let mut s = suite.clone();
            s.include.remove(i);
            expand_matrix(&s).0
        };
        if without.len() == cases.len() {
            return Err(loc.at(
                rule.span(),
                "this [[include]] adds no case: each combination it names is in the matrix already; fix or remove it",
            ));
        }
    }
    for (mi, m) in spec.models.get_ref().iter().enumerate() {
        if !cases.iter().any(|c| c.model == mi) {
            return Err(loc.at(
                m.span(),
                format!(
                    "model \"{}\" has no case left: the [[exclude]] rules leave out all of its schemes × backends × batch sizes",
                    suite.models[mi].name
                ),
            ));
        }
    }
    Ok(())
}

/// Appends the values of `more` that `into` lacks, in order.
pub(super) fn union<T: PartialEq + Copy>(into: &mut Vec<T>, more: &[T]) {
    for x in more {
        if !into.contains(x) {
            into.push(*x);
        }
    }
}

/// The suite's lists resolved: every scheme, backend and batch size some case may use (the
/// suite's own first, where some model takes them), each model's own lists, and the includes.
pub(super) struct Lists {
    pub schemes: Vec<SchemeId>,
    pub backends: Vec<BackendId>,
    pub batch_sizes: Vec<usize>,
    /// Per model, in order: its schemes, backends and batch sizes (its own, else the suite's).
    pub models: Vec<(Vec<SchemeId>, Vec<BackendId>, Vec<usize>)>,
    pub include: Vec<Include>,
    pub model_names: Vec<String>,
}

/// `built`: refuse backends this build leaves out (not when only reading a finished run's gates).
pub(super) fn resolve_lists(spec: &SuiteSpec, loc: &Locator, built: bool) -> Result<Lists, SuiteError> {
    let suite_schemes = parse_schemes(loc, &spec.schemes)?;
    let suite_backends = parse_backends(loc, &spec.backends, built)?;
    let suite_batches = parse_batches(loc, &spec.batch_sizes)?;
    let specs: Vec<&super::spec::ModelSpec> = spec.models.get_ref().iter().map(|m| m.get_ref()).collect();
    let model_names: Vec<String> = specs.iter().map(|m| m.name.get_ref().clone()).collect();
    let mut models = Vec::new();
    for m in &specs {
        let s = m.schemes.as_ref().map(|l| parse_schemes(loc, l)).transpose()?;
        let b = m.backends.as_ref().map(|l| parse_backends(loc, l, built)).transpose()?;
        let n = m.batch_sizes.as_ref().map(|l| parse_batches(loc, l)).transpose()?;
        models.push((
            s.unwrap_or_else(|| suite_schemes.clone()),
            b.unwrap_or_else(|| suite_backends.clone()),
            n.unwrap_or_else(|| suite_batches.clone()),
        ));
    }
    let include = resolve_includes(spec, loc, &model_names, built)?;
    let (mut schemes, mut backends, mut batch_sizes) = (Vec::new(), Vec::new(), Vec::new());
    // The suite's own lists count only where some model takes them (first, in their order).
    if specs.iter().any(|m| m.schemes.is_none()) {
        union(&mut schemes, &suite_schemes);
    }
    if specs.iter().any(|m| m.backends.is_none()) {
        union(&mut backends, &suite_backends);
    }
    if specs.iter().any(|m| m.batch_sizes.is_none()) {
        union(&mut batch_sizes, &suite_batches);
    }
    for (s, b, n) in &models {
        union(&mut schemes, s);
        union(&mut backends, b);
        union(&mut batch_sizes, n);
    }
    for inc in &include {
        union(&mut schemes, inc.schemes.as_deref().unwrap_or_default());
        union(&mut backends, inc.backends.as_deref().unwrap_or_default());
        union(&mut batch_sizes, inc.batch_sizes.as_deref().unwrap_or_default());
    }
    Ok(Lists { schemes, backends, batch_sizes, models, include, model_names })
}
