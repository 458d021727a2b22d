//! The language-model workload: a GGUF model's cases are scored by perplexity and by their
//! agreement with the reference variant (the suite's most precise scheme, on the reference
//! engine), then timed on prompt processing (the run) and generation (decoder steps).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{case, guarded, CaseError};
use crate::backend::{BackendError, BackendId};
use crate::data::Dataset;
use crate::measure::{latency, lm, memory};
use crate::model::LoadedModel;
use crate::quant::{self, SchemeId, Variant};
use crate::record::Record;
use crate::suite::{Case, Suite};

/// Tokens generated per generation sample (at most the window's length).
const TG_TOKENS: usize = 128;

/// A language model's reference: its highest-precision variant's scores on the reference
/// engine, with the top-k next-token log-probabilities every other variant is compared with.
pub(super) struct LmReference {
    scheme: SchemeId,
    backend: BackendId,
    score: lm::LmScore,
}

/// What a language model's cases share: the reference, scored at the first case, and each
/// (scheme, backend)'s score, reused by its other batch sizes (scoring does not depend on the
/// batch; it does on the engine: a GPU's perplexity is measured on the GPU).
#[derive(Default)]
pub(super) struct LmState {
    reference: Option<Result<Arc<LmReference>, Arc<CaseError>>>,
    scores: HashMap<(SchemeId, BackendId), lm::LmScore>,
}

impl LmState {
    /// The reference, built and scored by `score` (see [`score_reference`]) the first time a
    /// case asks. Its top-k are written to `artifacts/<model>.reference-top<k>.safetensors`.
    pub fn reference(
        &mut self,
        score: impl FnOnce() -> Result<LmReference, CaseError>,
    ) -> Result<Arc<LmReference>, CaseError> {
        if self.reference.is_none() {
            let scored = score();
            if let Ok(r) = &scored {
                self.scores.insert((r.scheme, r.backend), r.score.clone());
            }
            self.reference = Some(scored.map(Arc::new).map_err(Arc::new));
        }
        match self.reference.as_ref().expect("set above") {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err(CaseError::Shared(e.clone())),
        }
    }
}

/// Builds and scores the reference variant: the suite's scheme that stores weights most
/// precisely (activation schemes cannot run), on the model's reference engine.
#[allow(clippy::too_many_arguments)]
pub(super) fn score_reference(
    suite: &Suite,
    model_index: usize,
    model: &LoadedModel,
    backend: BackendId,
    layers: &[(String, usize)],
    data: &Dataset,
    artifacts: &Path,
    variants: &mut HashMap<SchemeId, Result<Variant, Arc<CaseError>>>,
) -> Result<LmReference, CaseError> {
    let scheme = suite
        .schemes_of(model_index)
        .iter()
        .filter_map(|s| s.weight_precision().map(|p| (*s, p)))
        .fold(None, |best: Option<(SchemeId, f64)>, (s, p)| match best {
            Some((_, bp)) if bp >= p => best,
            _ => Some((s, p)),
        })
        .map(|(s, _)| s)
        .ok_or(CaseError::NoLmReference)?;
    let plan = suite.plan(model_index, scheme, layers);
    let fail = |e: CaseError| CaseError::LmReference { scheme: scheme.name(), source: Arc::new(e) };
    let variant = variants
        .entry(scheme)
        .or_insert_with(|| guarded(|| Ok(quant::apply_model(model, &plan, artifacts, None)?)).map_err(Arc::new))
        .clone()
        .map_err(|e| fail(CaseError::Shared(e)))?;
    let score = guarded(|| {
        let mut prepared = backend.create(suite.cuda_device).prepare(&variant, 1)?;
        let decoder = prepared
            .session
            .decoder()
            .ok_or_else(|| BackendError::engine(backend, "scoring the text", "the session is not a decoder"))?;
        Ok(lm::score(decoder, backend, data, None)?)
    })
    .map_err(fail)?;
    let path = artifacts.join(format!("{}.reference-top{}.safetensors", model.name, score.top.k));
    lm::write_top_k(&path, &score.top, &scheme.name())?;
    Ok(LmReference { scheme, backend, score })
}

/// A language model's case: prepare (untimed) and cold start as for any model, then perplexity
/// and agreement with the reference over every window (reused from an earlier batch size's case
/// of the same scheme and backend), then the latency of prompt processing (the run) and of
/// generation.
#[allow(clippy::too_many_arguments)]
pub(super) fn measure(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    reference: &LmReference,
    state: &mut LmState,
    paired: Option<Result<&mut dyn crate::backend::Session, String>>,
    record: &mut Record,
) -> Result<(), CaseError> {
    let scenario = &suite.models[case.model].scenario;
    record.scenario = scenario.name().to_string();
    if *scenario != crate::suite::scenario::Scenario::SingleStream {
        record.scenario_note = Some(format!(
            "the {} scenario runs batches of items; a language model's is not measured (its pp and tg rates are its throughput)",
            scenario.name()
        ));
    }
    let cached = state.scores.get(&(case.scheme, case.backend)).cloned();
    let score = guarded(|| {
        let mut prepared = case::prepare(suite, case, variant, data, record)?;
        let session = prepared.session.as_mut();
        let bad = |m: &str| BackendError::engine(case.backend, "scoring the text", m);
        let score = match cached {
            Some(s) => s,
            None => {
                let decoder = session.decoder().ok_or_else(|| bad("the session is not a decoder"))?;
                lm::score(decoder, case.backend, data, Some(&reference.score.top))?
            }
        };
        record.eval_items = Some(score.windows);
        record.scored_tokens = Some(score.scored_tokens);
        record.perplexity = Some(score.perplexity);
        (record.perplexity_ci_low, record.perplexity_ci_high) = score.perplexity_ci.unzip();
        record.reference_scheme = reference.scheme.name();
        // The reference itself on its own engine agrees by definition; on another engine (a
        // GPU) it is compared like any variant.
        if case.scheme == reference.scheme && case.backend == reference.backend {
            (record.ref_top1_agreement, record.ref_kl_mean, record.ref_kl_stderr) = (Some(1.0), Some(0.0), Some(0.0));
        } else if let Some(v) = &score.vs_reference {
            record.ref_top1_agreement = Some(v.top1_agreement);
            (record.ref_kl_mean, record.ref_kl_stderr) = (Some(v.kl.mean), Some(v.kl.stderr));
        }

        // Prompt processing: the run, on the first `batch` windows.
        let seq = data.item_shape.iter().product::<usize>();
        let batch_ids = data.batch_f32(0, case.batch, case.batch);
        let pp_peak = case::sample_latency(session, &batch_ids, &case.point(suite).sampler, case.batch, record)?;
        record.pp_tokens_per_s = record.latency_mean_ns.map(|m| (case.batch * seq) as f64 * 1e9 / m);

        // Generation: up to 128 tokens (llama-bench's tg128), one position at a time, from an
        // empty cache; the windows' own tokens stand in for sampled ones (the same work).
        let tg = seq.min(TG_TOKENS);
        let columns: Vec<Vec<u32>> =
            (0..tg).map(|p| (0..case.batch).map(|b| batch_ids[b * seq + p] as u32).collect()).collect();
        let decoder = session.decoder().ok_or_else(|| bad("the session is not a decoder"))?;
        let (tg_sampled, tg_peak) = memory::peak_added(|| {
            latency::sample(&case.point(suite).sampler, || {
                decoder.reset();
                for (p, ids) in columns.iter().enumerate() {
                    decoder.step(ids, case.batch, p)?;
                }
                Ok::<(), BackendError>(())
            })
        });
        let tg_samples = tg_sampled?.samples_ns;
        if let Some(s) = crate::measure::stats::LatencyStats::from_samples(&tg_samples) {
            record.tg_tokens_per_s = Some((case.batch * tg) as f64 * 1e9 / s.mean_ns);
        }
        record.tg_tokens = Some(tg);
        record.tg_samples_ns = tg_samples;
        record.run_peak_rss_bytes = [record.run_peak_rss_bytes, pp_peak, tg_peak].into_iter().flatten().max();
        // Prompt processing against f32 on this backend, in alternating rounds.
        if let Some(f32) = paired {
            case::sample_paired(session, f32, &batch_ids, &case.point(suite).sampler, record)?;
        }
        Ok(score)
    })?;
    state.scores.entry((case.scheme, case.backend)).or_insert(score);
    Ok(())
}
