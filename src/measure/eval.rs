//! Evaluation: run a session over a whole dataset, then score its logits against
//! the labels (task accuracy) and against the reference's logits (agreement).

use crate::backend::{BackendError, BackendId, Session};
use crate::data::Dataset;

/// Runs `session` over every item of `data` in batches of `batch` (the last batch is
/// padded with copies of its last item, whose outputs are dropped). Returns `[len, classes]` logits.
/// Non-finite logits are an error: a model that outputs NaN has no accuracy.
pub fn run_dataset(
    session: &mut dyn Session,
    backend: BackendId,
    data: &Dataset,
    batch: usize,
    classes: usize,
) -> Result<Vec<f32>, BackendError> {
    let mut logits = Vec::with_capacity(data.len() * classes);
    let mut start = 0;
    while start < data.len() {
        let n = batch.min(data.len() - start);
        session.set_input(&data.batch_f32(start, n, batch))?;
        session.run()?;
        let out = session.output()?;
        if out.len() != batch * classes {
            return Err(BackendError::engine(
                backend,
                "reading the output",
                format!("expected {batch}×{classes} logits, got {} values", out.len()),
            ));
        }
        logits.extend_from_slice(&out[..n * classes]);
        start += n;
    }
    let bad: Vec<usize> = logits.iter().enumerate().filter(|(_, v)| !v.is_finite()).map(|(i, _)| i / classes).collect();
    if let Some(&item) = bad.first() {
        return Err(BackendError::NonFinite { backend: backend.name(), item, count: bad.len() });
    }
    Ok(logits)
}

/// Index of the largest logit of each row (first one on ties).
pub fn top1(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best }))
        .collect()
}

/// Share of predictions equal to their label.
pub fn accuracy(predictions: &[usize], labels: &[u32]) -> f64 {
    let correct = predictions.iter().zip(labels).filter(|(p, l)| **p == **l as usize).count();
    correct as f64 / labels.len().max(1) as f64
}

/// How closely two sets of logits for the same items agree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Share of items with the same top-1 class.
    pub top1: f64,
    /// Largest absolute difference between corresponding logits.
    pub max_abs_diff: f64,
}

pub fn agreement(a: &[f32], b: &[f32], classes: usize) -> Agreement {
    let (pa, pb) = (top1(a, classes), top1(b, classes));
    let same = pa.iter().zip(&pb).filter(|(x, y)| x == y).count();
    let max_abs_diff = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
    Agreement { top1: same as f64 / pa.len().max(1) as f64, max_abs_diff }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_accuracy_and_agreement_by_hand() {
        let a = [0.1, 0.9, 0.0, /**/ 2.0, 1.0, 3.0, /**/ 5.0, 5.0, 1.0];
        assert_eq!(top1(&a, 3), vec![1, 2, 0]);
        assert!((accuracy(&[1, 2, 0], &[1, 0, 0]) - 2.0 / 3.0).abs() < 1e-12);
        let b = [0.1, 0.9, 0.0, /**/ 2.0, 3.5, 3.0, /**/ 5.0, 5.0, 1.25];
        let ag = agreement(&a, &b, 3);
        assert!((ag.top1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((ag.max_abs_diff - 2.5).abs() < 1e-6);
    }
}
