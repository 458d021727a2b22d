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
}

/// Cases ordered model-major, then scheme, backend and batch, so that each model is
/// loaded once and each scheme applied once per model.
pub fn expand(suite: &Suite) -> Vec<Case> {
    let mut cases = Vec::new();
    for model in 0..suite.models.len() {
        for &scheme in &suite.schemes {
            for &backend in &suite.backends {
                for &batch in &suite.batch_sizes {
                    cases.push(Case { model, scheme, backend, batch });
                }
            }
        }
    }
    cases
}
