//! What every workload shares for one case: its record, started from the environment and the
//! case; and its preparation: the engine loads the variant (timed apart, with the memory it
//! adds), says what it made of each layer (the observed realization), and runs once (the cold
//! start). A prepared case owns its session, so a workload can keep several alive at once.

use std::time::Instant;

use super::{CaseError, RunOptions};
use crate::backend::realization::{first_not_native, observed};
use crate::backend::{Prepared, Realization, Session};
use crate::data::Dataset;
use crate::measure::latency::{self, SamplerSettings};
use crate::measure::{alloc, memory};
use crate::quant::Variant;
use crate::record::{Environment, Record};
use crate::suite::{Case, Suite};

/// A case's record before it runs: the environment's provenance, the case's identity, and the
/// run's latest machine check.
#[allow(clippy::too_many_arguments)]
pub(super) fn new_record(
    suite: &Suite,
    env: &Environment,
    run_id: &str,
    case_index: usize,
    case: &Case,
    data: &Dataset,
    options: &RunOptions,
    noise_probe_ns: Option<f64>,
) -> Record {
    let model = &suite.models[case.model];
    Record {
        run_id: run_id.to_string(),
        case_index,
        shard: options.shard.map(|s| s.name()).unwrap_or_default(),
        suite: suite.name.clone(),
        suite_sha256: suite.sha256.clone(),
        suite_file: std::fs::canonicalize(&suite.file).unwrap_or_else(|_| suite.file.clone()).display().to_string(),
        suite_sets: suite.sets.clone(),
        model: model.name.clone(),
        zoo: model.zoo().map(|z| z.name().to_string()).unwrap_or_default(),
        dataset: data.name.clone(),
        dataset_sha256: data.sha256.clone(),
        scheme: case.scheme.name(),
        backend: case.backend.name().to_string(),
        device: case.backend.device_name(suite.cuda_device),
        engine_version: case.backend.engine_version(),
        batch: case.batch,
        sweep: case.point(suite).label.clone(),
        threads: case.point(suite).threads,
        // Until the engine says what it made of the variant.
        realization: Realization::NotObserved.name().to_string(),
        parameters: model.zoo().map_or(0, |z| z.parameter_count()),
        noise_probe_ns,
        process_id: std::process::id(),
        ..Record::from_environment(env, case.backend.is_cuda())
    }
}

/// Everything before evaluation: prepare (timed apart, with the memory it adds), the artifact's
/// figures, what the engine made of each layer (the record's realization, and `require_native`'s
/// check, which names the first layer that is not native), and the cold start (the first run
/// on the latency batch).
pub(super) fn prepare(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    record: &mut Record,
) -> Result<Prepared, CaseError> {
    let backend = case.backend.create(suite.cuda_device);
    let gpu_before = if case.backend.is_cuda() { crate::backend::gpu::memory_used_bytes() } else { None };
    // Timed inside the memory measurement, so resetting the OS's peak is not counted.
    let (((prepared, prepare_ns), heap), prepare_peak) = memory::peak_added(|| {
        alloc::measure(|| {
            let started = Instant::now();
            (backend.prepare(variant, case.batch), started.elapsed().as_nanos() as u64)
        })
    });
    let mut prepared = prepared?;
    record.prepare_ns = Some(prepare_ns);
    record.prepare_peak_rss_bytes = prepare_peak;
    record.prepare_heap_peak_bytes = heap.map(|h| h.peak_bytes);
    record.prepare_heap_allocated_bytes = heap.map(|h| h.total_bytes);
    if let Some(not_covered) = prepared.heap_not_covered {
        record.heap_not_covered = not_covered.into();
    } else if case.backend.is_cuda() {
        record.heap_not_covered = "GPU memory (the driver's figure is gpu_memory_used_bytes)".into();
    }
    record.weights_bytes = prepared.weights_bytes;
    record.artifact = Some(prepared.artifact.display().to_string());
    record.artifact_bytes = Some(prepared.artifact_bytes);
    record.artifact_sha256 = crate::hash::sha256_file(&prepared.artifact).ok();
    record.bits_per_weight = Some(variant.bits_per_weight);
    record.weight_storage = Some(variant.weight_storage.clone());
    record.activation_quant = (!variant.activation_quant.is_empty()).then(|| variant.activation_quant.clone());
    // The realization is what the engine made of the layers, not what was expected of it; read
    // after the measured preparation (it may read the artifact's header, walk a plan, or run a
    // profiled session).
    prepared.observe();
    record.evidence = Some(prepared.evidence.clone());
    let planned: Vec<&str> = variant.plan.layers.iter().map(|(l, _)| l.as_str()).collect();
    let realization = observed(&prepared.layers, &planned);
    record.realization = realization.name().to_string();
    record.layer_evidence = prepared.layers.clone();
    if suite.require_native && realization != Realization::Native {
        let layer = first_not_native(&prepared.layers)
            .map_or_else(|| "the engine reported no layer".to_string(), |l| l.describe());
        return Err(CaseError::NotNativeObserved {
            scheme: case.scheme.name(),
            backend: case.backend.name(),
            realization: realization.name().to_string(),
            layer,
        });
    }

    // Cold start: the first run right after prepare, on the latency batch.
    let session = prepared.session.as_mut();
    session.set_input(&data.batch_f32(0, case.batch, case.batch))?;
    let ((first_run, first_run_ns), first_peak) = memory::peak_added(|| {
        let first = Instant::now();
        (session.run(), first.elapsed().as_nanos() as u64)
    });
    first_run?;
    if let (Some(before), Some(after)) = (gpu_before, crate::backend::gpu::memory_used_bytes()) {
        record.gpu_memory_used_bytes = Some(after.saturating_sub(before));
    }
    record.first_run_ns = Some(first_run_ns);
    record.cold_start_ns = Some(prepare_ns + first_run_ns);
    record.run_peak_rss_bytes = first_peak;
    Ok(prepared)
}

/// The latency of the session's run on `input` (set first, then copied apart to time the
/// copy), sampled as the suite's `[measure]` says, into `record`'s latency fields; returns
/// the peak memory the sampling added. Both workloads time their runs through this.
pub(super) fn sample_latency(
    session: &mut dyn Session,
    input: &[f32],
    measure: &SamplerSettings,
    batch: usize,
    record: &mut Record,
) -> Result<Option<u64>, CaseError> {
    session.set_input(input)?;
    let (((sampled, heap), peak), busy) = crate::measure::cpu::busy_cores(|| {
        memory::peak_added(|| alloc::measure(|| latency::sample(measure, || session.run())))
    });
    let sampled = sampled?;
    record.sampling_busy_cores = busy;
    record.run_heap_peak_bytes = heap.map(|h| h.peak_bytes);
    let per_run = |total: u64| (sampled.calls > 0).then(|| total as f64 / sampled.calls as f64);
    record.run_heap_allocated_bytes_per_run = heap.and_then(|h| per_run(h.total_bytes));
    record.run_heap_allocations_per_run = heap.and_then(|h| per_run(h.allocations));
    record.input_copy_median_ns = input_copy_median_ns(session, input)?;
    record.warmup_iters = measure.warmup_iters;
    record.latency_ci_target_pct = measure.target_rel_ci * 100.0;
    record.latency_ci_target_met = sampled.target_met;
    record.set_latency(sampled.samples_ns, batch);
    Ok(peak)
}

/// The case against its backend's f32 at the same batch, in alternating rounds on `input`
/// (`measure::latency::sample_paired`), into the record's `speedup_vs_f32` fields. `f32` is
/// the f32 session, or why there is none (the record's note).
pub(super) fn sample_paired(
    session: &mut dyn Session,
    f32: Result<&mut dyn Session, String>,
    input: &[f32],
    measure: &SamplerSettings,
    record: &mut Record,
) -> Result<(), CaseError> {
    let f32 = match f32 {
        Ok(s) => s,
        Err(why) => {
            record.speedup_vs_f32_note = Some(why);
            return Ok(());
        }
    };
    session.set_input(input)?;
    // The case's own measurements are done: a failure of the rounds (the f32 session's, most
    // likely) is the column's note, not the case's failure.
    let rounds = f32.set_input(input).and_then(|()| {
        let mut clock = latency::MonotonicClock::default();
        latency::sample_paired(measure, &mut clock, || session.run(), || f32.run())
    });
    match rounds {
        Ok(paired) => record.set_paired(paired.a_ns, paired.b_ns, paired.target_met),
        Err(e) => {
            record.speedup_vs_f32_note = Some(format!("the rounds against f32 failed: {}", super::root_cause(&e)))
        }
    }
    Ok(())
}

/// How many input copies [`input_copy_median_ns`] times.
const INPUT_COPIES: usize = 21;

/// Copies of the input to the device, timed apart from the runs: the median of
/// [`INPUT_COPIES`] copies of the latency batch, for sessions that copy it on their own.
fn input_copy_median_ns(session: &mut dyn Session, batch: &[f32]) -> Result<Option<f64>, CaseError> {
    if session.input_copy_ns().is_none() {
        return Ok(None);
    }
    let mut copies = Vec::with_capacity(INPUT_COPIES);
    for _ in 0..INPUT_COPIES {
        session.set_input(batch)?;
        copies.extend(session.input_copy_ns());
    }
    copies.sort_unstable();
    Ok(copies.get(copies.len() / 2).map(|&ns| ns as f64))
}
