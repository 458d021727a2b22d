//! The classifier and embedding workload: a model's outputs over the whole evaluation split,
//! scored against the labels (task accuracy) and the f32 reference's outputs (fidelity), then
//! the latency of one batch.

use super::{case, CaseError};
use crate::data::Dataset;
use crate::measure::{eval, fidelity};
use crate::quant::Variant;
use crate::record::Record;
use crate::suite::{Case, Suite};

/// Prepare (untimed), evaluate on the whole dataset, then sample latency. `paired`: the f32 session the latency is
/// also compared with in alternating rounds, or why there is none (`None`: not asked).
#[allow(clippy::too_many_arguments)]
pub(super) fn measure(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    classes: usize,
    reference: Option<&[f32]>,
    paired: Option<Result<&mut dyn crate::backend::Session, String>>,
    record: &mut Record,
) -> Result<(), CaseError> {
    let mut prepared = case::prepare(suite, case, variant, data, record)?;
    let session = prepared.session.as_mut();
    let latency_batch = data.batch_f32(0, case.batch, case.batch);
    let logits = eval::run_dataset(session, case.backend, data, case.batch, classes)?;
    record.eval_items = Some(data.len());
    // An encoder's output is an embedding: no classes to score against labels or to agree on.
    let embedding = variant.kind.outputs_embeddings();
    if data.labels.is_some() && !embedding {
        record.set_task(fidelity::task_metrics(&logits, data.labels(), classes));
    }
    if let Some(reference) = reference {
        record.set_fidelity(&fidelity::fidelity(reference, &logits, classes));
        if embedding {
            (record.ref_top1_agreement, record.ref_top5_agreement) = (None, None);
            (record.ref_kl_mean, record.ref_kl_stderr) = (None, None);
        }
    }

    let sampling_peak = case::sample_latency(session, &latency_batch, &suite.measure, case.batch, record)?;
    record.run_peak_rss_bytes = [record.run_peak_rss_bytes, sampling_peak].into_iter().flatten().max();
    if let Some(f32) = paired {
        case::sample_paired(session, f32, &latency_batch, &suite.measure, record)?;
    }
    Ok(())
}
