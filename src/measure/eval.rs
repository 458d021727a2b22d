//! Evaluation: run a session over a whole dataset, then score its logits against
//! the labels (task accuracy) and against the reference's logits (agreement).

use super::outputs::OutputValues;
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

/// Runs `session` over every item of `data` in batches of `batch` (the last batch padded as
/// [`run_dataset`] pads it) and collects every output the session returns, each with its
/// per-item shape: the engine's shape without its first axis, which must be the batch. An
/// output whose shape changes between batches, or that holds NaN or infinite values, is an
/// error.
pub fn run_outputs(
    session: &mut dyn Session,
    backend: BackendId,
    data: &Dataset,
    batch: usize,
) -> Result<Vec<OutputValues>, BackendError> {
    let bad = |m: String| BackendError::engine(backend, "reading the output", m);
    let mut collected: Vec<OutputValues> = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let n = batch.min(data.len() - start);
        session.set_input(&data.batch_f32(start, n, batch))?;
        session.run()?;
        let outputs = session.outputs()?;
        if start == 0 {
            collected = outputs
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let name = if o.name.is_empty() { format!("output {i}") } else { o.name.clone() };
                    let item_shape = match &o.shape {
                        Some(s) if s.first() == Some(&batch) => s[1..].to_vec(),
                        Some(s) => {
                            return Err(bad(format!(
                                "output \"{name}\" has shape {} for a batch of {batch}; qbench reads outputs whose first axis is the batch",
                                super::outputs::format_shape(s)
                            )))
                        }
                        None if o.values.len() % batch == 0 => vec![o.values.len() / batch],
                        None => return Err(bad(format!("{} output values for a batch of {batch}", o.values.len()))),
                    };
                    Ok(OutputValues { name, item_shape, values: Vec::with_capacity(data.len() * o.values.len() / batch) })
                })
                .collect::<Result<_, _>>()?;
        } else if outputs.len() != collected.len() {
            return Err(bad(format!("{} outputs after {} in the first batch", outputs.len(), collected.len())));
        }
        for (o, c) in outputs.iter().zip(&mut collected) {
            let per_item = c.item_shape.iter().product::<usize>();
            let same_shape = o.shape.as_ref().is_none_or(|s| s.first() == Some(&batch) && s[1..] == c.item_shape[..]);
            if !same_shape || o.values.len() != batch * per_item {
                return Err(bad(format!(
                    "output \"{}\" changed shape between batches (items of {} values at first, now {} values for {batch} items); qbench scores outputs of one shape",
                    c.name, per_item, o.values.len()
                )));
            }
            c.values.extend_from_slice(&o.values[..n * per_item]);
        }
        start += n;
    }
    for c in &collected {
        let per_item = c.per_item();
        let bad: Vec<usize> =
            c.values.iter().enumerate().filter(|(_, v)| !v.is_finite()).map(|(i, _)| i / per_item).collect();
        if let Some(&item) = bad.first() {
            return Err(BackendError::NonFinite { backend: backend.name(), item, count: bad.len() });
        }
    }
    Ok(collected)
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

/// Sessions that evaluate at once at most: each holds its own copy of the model.
const MAX_EVAL_WORKERS: usize = 4;

/// Threads that evaluate at once: the cores beyond each engine's own `threads` (an evaluation
/// is MLPerf's accuracy mode, which uses the whole machine; no latency is sampled meanwhile).
pub fn eval_workers(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / threads.max(1)).clamp(1, MAX_EVAL_WORKERS)
}

/// [`run_outputs`] over `data` split at batch boundaries across up to `workers` threads: this
/// thread runs the first part on `session`; each other part runs on a session that `prepare`
/// makes on its own thread (sessions stay on the thread that made them). The outputs are the
/// same as one session's over the whole split, in item order: the same batches, the same
/// padding of the last one.
pub fn run_outputs_parallel<F>(
    session: &mut dyn Session,
    backend: BackendId,
    data: &Dataset,
    batch: usize,
    workers: usize,
    prepare: F,
) -> Result<Vec<OutputValues>, BackendError>
where
    F: Fn() -> Result<Box<dyn Session>, BackendError> + Sync,
{
    let batches = data.len().div_ceil(batch.max(1));
    let workers = workers.min(batches);
    if workers < 2 {
        return run_outputs(session, backend, data, batch);
    }
    let per = batches.div_ceil(workers) * batch;
    let parts: Vec<std::ops::Range<usize>> =
        (0..data.len()).step_by(per).map(|start| start..(start + per).min(data.len())).collect();
    let (mine, others) = std::thread::scope(|scope| {
        let handles: Vec<_> = parts[1..]
            .iter()
            .map(|range| {
                let part = data.slice(range.clone());
                let prepare = &prepare;
                scope.spawn(move || prepare().and_then(|mut s| run_outputs(s.as_mut(), backend, &part, batch)))
            })
            .collect();
        let mine = run_outputs(session, backend, &data.slice(parts[0].clone()), batch);
        let others: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BackendError::engine(backend, "evaluating", "an evaluation thread panicked"))
                })
            })
            .collect();
        (mine, others)
    });
    let mut collected = mine?;
    for (range, part) in parts[1..].iter().zip(others) {
        let part = part.map_err(|e| match e {
            BackendError::NonFinite { backend, item, count } => {
                BackendError::NonFinite { backend, item: item + range.start, count }
            }
            other => other,
        })?;
        if part.len() != collected.len()
            || part.iter().zip(&collected).any(|(p, c)| p.name != c.name || p.item_shape != c.item_shape)
        {
            return Err(BackendError::engine(
                backend,
                "reading the output",
                "a second session of the same model returned other outputs or shapes",
            ));
        }
        for (c, p) in collected.iter_mut().zip(part) {
            c.values.extend(p.values);
        }
    }
    Ok(collected)
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
