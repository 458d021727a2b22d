//! The workload of every model that is not a language model: its outputs over the whole
//! evaluation split, each scored as its kind says (`measure::outputs`) against the labels and
//! the f32 reference's outputs, then the latency of one batch.

use super::{case, CaseError};
use crate::backend::BackendError;
use crate::data::Dataset;
use crate::measure::outputs::{self, Labels, OutputKind, OutputValues};
use crate::measure::{eval, fidelity};
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
) -> Result<(), CaseError> {
    let mut prepared = case::prepare(suite, case, variant, data, record)?;
    let session = prepared.session.as_mut();
    let latency_batch = data.batch_f32(0, case.batch, case.batch);
    let outputs = eval::run_outputs(session, case.backend, data, case.batch)?;
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
