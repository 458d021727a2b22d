//! Expansion of a suite into cases: model × scheme × backend × batch.

use super::Suite;
use crate::backend::BackendId;
use crate::quant::SchemeId;

/// One measured unit: a model variant on a backend at a batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Index into [`Suite::models`].
    pub model: usize,
    pub scheme: SchemeId,
    pub backend: BackendId,
    pub batch: usize,
    /// Index into [`Suite::points`]: the measurement point (threads, sampling) it runs at.
    pub point: usize,
}

impl Case {
    /// The case's measurement point.
    pub fn point<'a>(&self, suite: &'a Suite) -> &'a super::MeasurePoint {
        &suite.points[self.point]
    }
}

/// The suite's cases: each model's schemes × backends × batch sizes, less its `[[exclude]]`
/// rules' cases, plus its `[[include]]` rules'. Ordered model-major, then by the suite's scheme,
/// backend and batch lists, so that each model is loaded once and each scheme applied once per
/// model.
pub fn expand(suite: &Suite) -> Vec<Case> {
    super::matrix::expand_matrix(suite).0
}

/// The cases the `[[exclude]]` rules left out, each with the index of the rule that did.
pub fn excluded(suite: &Suite) -> Vec<(Case, usize)> {
    super::matrix::expand_matrix(suite).1
}

/// Which of `cases` a run selects: those `filter` matches, then `shard`'s part of those (shards
/// deal out the filtered cases, so every shard of a filtered run gets some). An error says why
/// the filter selects nothing.
pub fn select(
    suite: &Suite,
    cases: &[Case],
    filter: Option<&super::CaseFilter>,
    shard: Option<Shard>,
) -> Result<Vec<bool>, String> {
    let mut selected = match filter {
        Some(f) => f.select(suite, cases)?,
        None => vec![true; cases.len()],
    };
    if let Some(shard) = shard {
        let kept: Vec<usize> = (0..cases.len()).filter(|&i| selected[i]).collect();
        let sub: Vec<Case> = kept.iter().map(|&i| cases[i]).collect();
        for (&i, s) in kept.iter().zip(shard.selects(&sub)) {
            selected[i] = s;
        }
    }
    Ok(selected)
}

/// A `--shard` value that is not `k/n` with 1 ≤ k ≤ n.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--shard {0:?}: expected k/n with 1 ≤ k ≤ n, e.g. --shard 2/4 for the second of four")]
pub struct ShardError(pub String);

/// One slice of a suite for a CI matrix: `--shard k/n` runs shard `k` (1-based) of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `k/n` with 1 ≤ k ≤ n.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let fail = || ShardError(text.to_string());
        let (k, n) = text.split_once('/').ok_or_else(fail)?;
        let (index, count) =
            (k.trim().parse::<usize>().map_err(|_| fail())?, n.trim().parse::<usize>().map_err(|_| fail())?);
        if index == 0 || index > count {
            return Err(fail());
        }
        Ok(Shard { index, count })
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }

    /// Which of `cases` this shard runs.
    ///
    /// Cases are dealt out by group (model, backend, batch), round robin in suite order, so a
    /// group's f32 case is always in the same shard as its quantized cases (the gates relative
    /// to f32 need both) and every shard gets a similar mix. The same suite and `n` always give
    /// the same split, on any machine.
    pub fn selects(&self, cases: &[Case]) -> Vec<bool> {
        let mut groups: Vec<(usize, BackendId, usize)> = Vec::new();
        cases
            .iter()
            .map(|c| {
                let key = (c.model, c.backend, c.batch);
                let g = groups.iter().position(|k| *k == key).unwrap_or_else(|| {
                    groups.push(key);
                    groups.len() - 1
                });
                g % self.count + 1 == self.index
            })
            .collect()
    }
}
