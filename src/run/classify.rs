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
        Some((cache, eval_batch)) => shared_outputs(suite, case, variant, data, session, cache, eval_batch, record)?,
        None => {
            record.eval_batch = Some(case.batch);
            eval::run_outputs(session, case.backend, data, case.batch)?
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

    let sampling_peak = case::sample_latency(session, &latency_batch, &suite.measure, case.batch, record)?;
    record.run_peak_rss_bytes = [record.run_peak_rss_bytes, sampling_peak].into_iter().flatten().max();
    if let Some(f32) = paired {
        case::sample_paired(session, f32, &latency_batch, &suite.measure, record)?;
    }
    Ok(())
}

/// One evaluation of a (variant, backend) over the whole split, shared by its cases at every
/// batch size (MLPerf's accuracy mode): the outputs and the batch they were computed at.
pub(super) struct SharedEval {
    outputs: Vec<OutputValues>,
    batch: usize,
}

/// The shared evaluations of a model, by scheme and backend.
pub(super) type EvalCache = HashMap<(SchemeId, BackendId), Result<SharedEval, String>>;

/// Largest relative difference (to the slice's largest magnitude) at which a case's own outputs
/// count as the shared evaluation's: kernels blocked differently at another batch size round
/// differently, in the last bits; a batch-dependent computation (dynamic quantization's
/// per-tensor scale over the batch) differs by far more.
const SHARED_TOLERANCE: f64 = 1e-4;

/// The case's outputs over the split from the (variant, backend)'s shared evaluation, made at
/// `eval_batch` on first use (with the case's own session when its batch is that, else with a
/// session prepared for it). A case at another batch first checks that its own session gives
/// the same outputs on one batch of items; where it does not, the outputs depend on the batch,
/// and the case evaluates at its own batch (the record says which, and why).
#[allow(clippy::too_many_arguments)]
fn shared_outputs(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    session: &mut dyn Session,
    cache: &mut EvalCache,
    eval_batch: usize,
    record: &mut Record,
) -> Result<Vec<OutputValues>, CaseError> {
    let key = (case.scheme, case.backend);
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(key) {
        let made = if case.batch == eval_batch {
            eval::run_outputs(session, case.backend, data, eval_batch).map_err(|e| e.to_string())
        } else {
            let backend = case.backend.create(suite.cuda_device);
            match backend.capability(crate::backend::ModelQuery::declared(&variant.kind), &variant.plan, eval_batch) {
                Realization::Unsupported(why) => {
                    Err(format!("{} cannot run batch {eval_batch}: {why}", case.backend.name()))
                }
                _ => backend
                    .prepare(variant, eval_batch)
                    .and_then(|mut p| eval::run_outputs(p.session.as_mut(), case.backend, data, eval_batch))
                    .map_err(|e| e.to_string()),
            }
        };
        slot.insert(made.map(|outputs| SharedEval { outputs, batch: eval_batch }));
    }
    let own = |record: &mut Record, note: String, session: &mut dyn Session| {
        record.eval_batch = Some(case.batch);
        record.eval_note = Some(note);
        eval::run_outputs(session, case.backend, data, case.batch)
    };
    let shared = match &cache[&key] {
        Ok(s) => s,
        Err(why) => {
            return Ok(own(record, format!("evaluated at its own batch: no shared evaluation ({why})"), session)?)
        }
    };
    if case.batch == shared.batch {
        record.eval_batch = Some(shared.batch);
        record.eval_note = Some(format!("the (variant, backend)'s evaluation at batch {}", shared.batch));
        return Ok(shared.outputs.clone());
    }
    // This case's own outputs on its first batch of items against the shared ones.
    let n = case.batch.min(data.len());
    let slice = data.slice(0..n);
    let mine = eval::run_outputs(session, case.backend, &slice, case.batch)?;
    let mut worst = 0f64;
    for (m, s) in mine.iter().zip(&shared.outputs) {
        let scale = m.values.iter().fold(0f64, |a, v| a.max(v.abs() as f64)).max(f64::MIN_POSITIVE);
        let diff = m.values.iter().zip(&s.values).fold(0f64, |a, (x, y)| a.max((x - y).abs() as f64));
        worst = worst.max(diff / scale);
    }
    let same_shapes = mine.len() == shared.outputs.len()
        && mine.iter().zip(&shared.outputs).all(|(m, s)| m.item_shape == s.item_shape);
    if !same_shapes || worst > SHARED_TOLERANCE {
        let why = if same_shapes {
            format!("{worst:.1e} of the range apart on the first {n} items")
        } else {
            "other output shapes".to_string()
        };
        return Ok(own(
            record,
            format!(
                "outputs depend on the batch (batch {} and batch {} are {why}): evaluated at batch {}",
                case.batch, shared.batch, case.batch
            ),
            session,
        )?);
    }
    record.eval_batch = Some(shared.batch);
    record.eval_note = Some(format!(
        "shared: the (variant, backend)'s evaluation at batch {}; this case's outputs on the first {n} items match it within {worst:.1e} of their range",
        shared.batch
    ));
    Ok(shared.outputs.clone())
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
fn score_outputs(
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
