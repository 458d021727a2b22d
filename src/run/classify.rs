//! The workload of every model that is not a language model: its outputs over the whole
//! evaluation split, each scored as its kind says (`measure::outputs`) against the labels and
//! the f32 reference's outputs, then the latency of one batch.

use std::collections::HashMap;

use super::{case, CaseError};
use crate::backend::{BackendError, BackendId, Realization, Session};
use crate::data::Dataset;
use crate::measure::outputs::{self, Labels, OutputKind, OutputValues};
use crate::measure::{eval, fidelity};
use crate::quant::SchemeId;
use crate::quant::Variant;
use crate::record::Record;
use crate::suite::{Case, Suite};

/// Prepare (untimed), evaluate on the whole dataset, then sample latency. `kinds`: each
/// output's kind and where it came from, in the order the model returns them. `paired`: the
/// f32 session the latency is also compared with in alternating rounds, or why there is none
/// (`None`: not asked).
#[allow(clippy::too_many_arguments)]
pub(super) fn measure(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    kinds: &[(OutputKind, String)],
    reference: Option<&[OutputValues]>,
    paired: Option<Result<&mut dyn crate::backend::Session, String>>,
    record: &mut Record,
    shared: Option<(&mut EvalCache, usize)>,
) -> Result<(), CaseError> {
    let mut prepared = case::prepare(suite, case, variant, data, record)?;
    let session = prepared.session.as_mut();
    let latency_batch = data.batch_f32(0, case.batch, case.batch);
    let outputs = match shared {
        Some((cache, eval_batch)) => {
            shared_outputs(suite, case, variant, data, session, cache, eval_batch, reference, record)?
        }
        None => {
            record.eval_batch = Some(case.batch);
            evaluate(suite, case, variant, data, session, case.batch)?
        }
    };
    if outputs.len() != kinds.len() {
        return Err(BackendError::engine(
            case.backend,
            "reading the output",
            format!("{} outputs, but the f32 reference had {}", outputs.len(), kinds.len()),
        )
        .into());
    }
    record.eval_items = Some(data.len());
    score_outputs(&outputs, kinds, reference, data, record);

    let sampling_peak = case::sample_latency(session, &latency_batch, &case.point(suite).sampler, case.batch, record)?;
    record.run_peak_rss_bytes = [record.run_peak_rss_bytes, sampling_peak].into_iter().flatten().max();
    if let Some(f32) = paired {
        case::sample_paired(session, f32, &latency_batch, &case.point(suite).sampler, record)?;
    }
    super::load::measure(suite, case, variant, session, &latency_batch, record)?;
    Ok(())
}

/// One evaluation of a (variant, backend) over the whole split, shared by its cases at every
/// batch size (MLPerf's accuracy mode): the outputs and the batch they were computed at.
pub(super) struct SharedEval {
    outputs: Vec<OutputValues>,
    batch: usize,
    /// Where the outputs came from, for the record's `eval_note`.
    source: &'static str,
}

/// A (variant, backend)'s evaluation over the split, or why its cases evaluate at their own
/// batch: the engine's outputs depend on the batch, or the shared one could not be made.
pub(super) type Shared = Result<SharedEval, String>;

/// The shared evaluations of a model, by scheme and backend.
pub(super) type EvalCache = HashMap<(SchemeId, BackendId), Shared>;

/// Largest relative difference (to the slice's largest magnitude) at which a case's own outputs
/// count as the shared evaluation's: kernels blocked differently at another batch size round
/// differently, in the last bits; a batch-dependent computation (dynamic quantization's
/// per-tensor scale over the batch) differs by far more.
const SHARED_TOLERANCE: f64 = 1e-4;

/// How far apart two sessions' outputs on the same items are: the largest difference relative
/// to the first's largest magnitude, or `None` when their outputs do not have the same shapes.
fn distance(a: &[OutputValues], b: &[OutputValues]) -> Option<f64> {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.item_shape != y.item_shape) {
        return None;
    }
    let mut worst = 0f64;
    for (m, s) in a.iter().zip(b) {
        let scale = m.values.iter().fold(0f64, |acc, v| acc.max(v.abs() as f64)).max(f64::MIN_POSITIVE);
        let diff = m.values.iter().zip(&s.values).fold(0f64, |acc, (x, y)| acc.max((x - y).abs() as f64));
        worst = worst.max(diff / scale);
    }
    Some(worst)
}

/// Evaluates the whole split at `batch` on `session`, with the machine's other cores running
/// further sessions of the variant ([`eval::run_outputs_parallel`]).
pub(super) fn evaluate(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    session: &mut dyn Session,
    batch: usize,
) -> Result<Vec<OutputValues>, BackendError> {
    let workers = eval::eval_workers(crate::backend::configured_threads());
    eval::run_outputs_parallel(session, case.backend, data, batch, workers, || {
        case.backend.create(suite.cuda_device).prepare(variant, batch).map(|p| p.session)
    })
}

/// The case's outputs over the split from the (variant, backend)'s shared evaluation, made at
/// `eval_batch` on first use: the reference pass's outputs when it ran this variant (f32) on
/// this engine at that batch, else an evaluation with the case's own session when its batch is
/// that, else with a session prepared for it, after checking on the first evaluation batch's items
/// that the two batch sizes give the same outputs. A case at another batch than the shared
/// evaluation's checks that too; where they differ, the outputs depend on the batch, and the
/// case evaluates at its own batch (the record says which, and why).
#[allow(clippy::too_many_arguments)]
fn shared_outputs(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    session: &mut dyn Session,
    cache: &mut EvalCache,
    eval_batch: usize,
    reference: Option<&[OutputValues]>,
    record: &mut Record,
) -> Result<Vec<OutputValues>, CaseError> {
    let key = (case.scheme, case.backend);
    // This case's own outputs on the first items, computed once when a check needs them: a whole
    // batch of the shared evaluation's (or the case's, if larger), so that the shared session
    // runs real items only. On fewer, its padding would hide a batch dependence: dynamic
    // quantization's range over one item and its padding is that item's.
    let n = case.batch.max(eval_batch).min(data.len());
    let mut mine: Option<Vec<OutputValues>> = None;
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(key) {
        let from_reference = case.scheme == SchemeId::F32
            && record.reference_backend == case.backend.name()
            && record.reference_batch == Some(eval_batch);
        let made: Shared = match reference {
            Some(r) if from_reference => {
                Ok(SharedEval { outputs: r.to_vec(), batch: eval_batch, source: "the reference pass's" })
            }
            _ if case.batch == eval_batch => evaluate(suite, case, variant, data, session, eval_batch)
                .map(|outputs| SharedEval { outputs, batch: eval_batch, source: "the (variant, backend)'s" })
                .map_err(|e| format!("no shared evaluation ({})", super::root_cause(&e))),
            _ => {
                let backend = case.backend.create(suite.cuda_device);
                match backend.capability(crate::backend::ModelQuery::declared(&variant.kind), &variant.plan, eval_batch)
                {
                    Realization::Unsupported(why) => Err(format!(
                        "no shared evaluation ({} cannot run batch {eval_batch}: {why})",
                        case.backend.name()
                    )),
                    _ => {
                        let own = eval::run_outputs(session, case.backend, &data.slice(0..n), case.batch)?;
                        let made = backend.prepare(variant, eval_batch).and_then(|mut p| {
                            let theirs =
                                eval::run_outputs(p.session.as_mut(), case.backend, &data.slice(0..n), eval_batch)?;
                            match distance(&own, &theirs) {
                                Some(d) if d <= SHARED_TOLERANCE => {
                                    evaluate(suite, case, variant, data, p.session.as_mut(), eval_batch).map(Ok)
                                }
                                d => Ok(Err(depends(case.batch, eval_batch, n, d))),
                            }
                        });
                        mine = Some(own);
                        match made {
                            Ok(Ok(outputs)) => {
                                Ok(SharedEval { outputs, batch: eval_batch, source: "the (variant, backend)'s" })
                            }
                            Ok(Err(why)) => Err(why),
                            Err(e) => Err(format!("no shared evaluation ({})", super::root_cause(&e))),
                        }
                    }
                }
            }
        };
        slot.insert(made);
    }
    let own = |record: &mut Record, why: &str, session: &mut dyn Session| {
        record.eval_batch = Some(case.batch);
        record.eval_note = Some(format!("{why}: evaluated at batch {}", case.batch));
        evaluate(suite, case, variant, data, session, case.batch)
    };
    let shared = match &cache[&key] {
        Ok(s) => s,
        Err(why) => return Ok(own(record, why, session)?),
    };
    if case.batch == shared.batch {
        record.eval_batch = Some(shared.batch);
        record.eval_note = Some(format!("{} evaluation at batch {}", shared.source, shared.batch));
        return Ok(shared.outputs.clone());
    }
    let mine = match mine {
        Some(m) => m,
        None => eval::run_outputs(session, case.backend, &data.slice(0..n), case.batch)?,
    };
    let first: Vec<OutputValues> = shared
        .outputs
        .iter()
        .map(|o| OutputValues { values: o.values[..n * o.per_item()].to_vec(), ..o.clone() })
        .collect();
    match distance(&mine, &first) {
        Some(worst) if worst <= SHARED_TOLERANCE => {
            record.eval_batch = Some(shared.batch);
            record.eval_note = Some(format!(
                "shared: {} evaluation at batch {}; this case's outputs on the first {n} items match it within {worst:.1e} of their range",
                shared.source, shared.batch
            ));
            Ok(shared.outputs.clone())
        }
        d => {
            let batch = shared.batch;
            Ok(own(record, &depends(case.batch, batch, n, d), session)?)
        }
    }
}

/// Why a case's outputs at its batch cannot be the shared batch's (the note adds which batch
/// the case then evaluated at).
fn depends(batch: usize, shared: usize, items: usize, distance: Option<f64>) -> String {
    let why = match distance {
        Some(d) => format!("{d:.1e} of the range apart on the first {items} items"),
        None => "other output shapes".to_string(),
    };
    format!("outputs depend on the batch (batch {batch} and batch {shared} are {why})")
}

/// Which output each kind of label scores: class labels the first `classes` output (or, with
/// none, the first single score, as 0/1 labels); text labels the first CTC output that has an
/// alphabet.
pub fn label_targets(kinds: &[(OutputKind, String)], shapes: &[Vec<usize>]) -> (Option<usize>, Option<usize>) {
    let classes = kinds.iter().position(|(k, _)| *k == OutputKind::Classes).or_else(|| {
        kinds
            .iter()
            .zip(shapes)
            .position(|((k, _), s)| matches!(k, OutputKind::Scores { .. }) && s.iter().product::<usize>() == 1)
    });
    let texts =
        kinds.iter().position(|(k, _)| matches!(k, OutputKind::Sequence { ctc: Some(c), .. } if c.alphabet.is_some()));
    (classes, texts)
}

/// Scores every output into `record`: the first one's metrics in the flat columns, all of
/// them in `record.outputs`.
pub(super) fn score_outputs(
    outputs: &[OutputValues],
    kinds: &[(OutputKind, String)],
    reference: Option<&[OutputValues]>,
    data: &Dataset,
    record: &mut Record,
) {
    let shapes: Vec<Vec<usize>> = outputs.iter().map(|o| o.item_shape.clone()).collect();
    let (class_target, text_target) = label_targets(kinds, &shapes);
    let reference_of =
        |i: usize| reference.and_then(|r| r.get(i)).filter(|r| r.values.len() == outputs[i].values.len());
    record.outputs = outputs
        .iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (o, (kind, source)))| {
            let labels = Labels {
                classes: data.labels.as_deref().filter(|_| class_target == Some(i)),
                texts: data.texts.as_deref().filter(|_| text_target == Some(i)),
            };
            outputs::score(kind, source, o, reference_of(i), labels)
        })
        .collect();
    let first = &outputs[0];
    let classes = kinds[0].0 == OutputKind::Classes;
    if classes && class_target == Some(0) {
        if let Some(labels) = data.labels.as_deref() {
            record.set_task(fidelity::task_metrics(&first.values, labels, first.per_item()));
        }
    }
    if let Some(r) = reference_of(0) {
        record.set_fidelity(&fidelity::fidelity(&r.values, &first.values, first.per_item()));
    }
    let first_score = record.outputs[0].clone();
    record.set_output(&first_score, classes);
}
