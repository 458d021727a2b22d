//! `qbench-device verify`: each bundled case on this device's engine, its outputs against the
//! workstation's under the bundle's tolerances, its latency with the run's sampler.
//!
//! Writes `records.jsonl` (one record per case, appended as each ends, in qbench's record format,
//! with the device's verdict) and `environment.json` into the output folder, and for each case
//! that fails, `diff-<case>.json`: which output, which items, by how much.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Bundle, BundleCase, BundleError, BundleInputs};
use crate::backend::{BackendError, BackendId, ModelQuery, Realization};
use crate::data::Dataset;
use crate::measure::outputs::OutputValues;
use crate::record::{CaseStatus, Environment, Record, RecordSink};

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Where records, the environment and diffs go (created; must not hold records already).
    pub out_dir: PathBuf,
    /// The CUDA device for CUDA cases.
    pub cuda_device: usize,
    /// Replaces the bundle's sampling time budget per case (milliseconds), e.g. to keep an
    /// emulated run short.
    pub max_time_ms: Option<u64>,
    /// Only the cases whose id contains this.
    pub only: Option<String>,
}

/// What a verification found.
#[derive(Debug)]
pub struct Verified {
    pub records: Vec<Record>,
    pub out_dir: PathBuf,
    /// Why timings are emulated, when they are.
    pub emulated: Option<String>,
}

impl Verified {
    pub fn count(&self, verdict: &str) -> usize {
        self.records.iter().filter(|r| r.device_verdict.as_deref() == Some(verdict)).count()
    }

    /// Whether every case passed (and there was one).
    pub fn all_passed(&self) -> bool {
        !self.records.is_empty() && self.count("pass") == self.records.len()
    }
}

/// One output's comparison, as `diff-<case>.json` holds it for a failing case.
#[derive(Debug, Clone, Serialize)]
pub struct OutputDiff {
    pub output: String,
    pub max_abs_diff: f64,
    pub tolerance_abs: f64,
    pub within: bool,
    /// Items whose largest deviation exceeds the tolerance (the first 50), with that deviation.
    pub items_over: Vec<(usize, f64)>,
    pub items_over_count: usize,
    /// Where the largest deviation is: item, position in the item, the workstation's value and
    /// the device's.
    pub worst_item: usize,
    pub worst_position: usize,
    pub workstation_value: f32,
    pub device_value: f32,
}

/// The whole comparison of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseDiff {
    pub case: String,
    pub verdict: String,
    pub outputs: Vec<OutputDiff>,
    pub top1_agreement: Option<f64>,
    pub min_top1_agreement: Option<f64>,
    /// Items whose top class differs from the workstation's (the first 50).
    pub top1_disagreeing_items: Vec<usize>,
}

/// Opens and checks the bundle (`dir`, or a `.tar` of it, unpacked into the output folder),
/// then verifies every case. A case that fails or cannot run here is a record with its verdict,
/// never an abort; a bad bundle is an error before any case runs.
pub fn verify(bundle_path: &Path, options: &VerifyOptions) -> Result<Verified, BundleError> {
    let out = &options.out_dir;
    // A new or empty folder: a verification never mixes with, or writes over, other files.
    if std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BundleError::OutputNotEmpty { path: out.clone() });
    }
    std::fs::create_dir_all(out).map_err(|source| BundleError::Write { path: out.clone(), source })?;
    let records_path = out.join("records.jsonl");
    let dir = if bundle_path.is_file() {
        let dest = out.join("bundle");
        unpack(bundle_path, &dest).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dest);
        })?
    } else {
        bundle_path.to_path_buf()
    };
    let bundle = Bundle::open(&dir)?;
    let workstation = read_workstation_records(&bundle)?;
    for c in &bundle.manifest.cases {
        let manifest_err = |reason: String| BundleError::Manifest { path: bundle.path("records.jsonl"), reason };
        let Some(ws) = workstation.iter().find(|r| r.case_index == c.case_index) else {
            return Err(manifest_err(format!("it has no record of case {} (case_index {})", c.id, c.case_index)));
        };
        if ws.artifact_sha256.as_deref() != Some(c.artifact_sha256.as_str()) {
            return Err(manifest_err(format!("its record of case {} names another artifact than the manifest", c.id)));
        }
        // A class output is held to top-1 agreement: the manifest cannot drop that.
        if ws.top1_applies() && c.min_top1_agreement.is_none() {
            return Err(BundleError::Manifest {
                path: bundle.path(super::MANIFEST),
                reason: format!("case {} has class outputs but no min_top1_agreement", c.id),
            });
        }
    }
    // The device run carries the workstation's records of its cases: its report and `qbench
    // compare` put the two machines side by side from this folder alone.
    let ws_copy = out.join("workstation.jsonl");
    std::fs::copy(bundle.path("records.jsonl"), &ws_copy)
        .map_err(|source| BundleError::Write { path: ws_copy, source })?;
    let m = &bundle.manifest;
    let emulated = super::emulation::detect();
    let gpu = m.cases.iter().any(|c| BackendId::from_name(&c.backend).is_some_and(|b| b.is_cuda()));
    let gpu_info = if gpu { crate::backend::gpu::probe(options.cuda_device).ok().cloned() } else { None };
    crate::backend::configure_threads(m.threads);
    let mut env = Environment::capture(m.threads, gpu_info);
    if emulated.is_some() {
        // /proc/cpuinfo is the host's under an emulator: the CPU the engines see is the emulated
        // one, whose flags their own feature detection reads.
        env.cpu_model = format!("{} CPU emulated on {}", super::emulation::BINARY_ARCH, env.cpu_model);
        if let Some(flags) = super::emulation::detected_cpu_flags() {
            env.cpu_flags = flags;
        }
    }
    let env_path = out.join("environment.json");
    let env_json = serde_json::to_vec_pretty(&env)
        .map_err(|e| BundleError::Write { path: env_path.clone(), source: std::io::Error::other(e) })?;
    std::fs::write(&env_path, env_json).map_err(|source| BundleError::Write { path: env_path, source })?;
    let mut sink = RecordSink::open(&records_path)
        .map_err(|e| BundleError::Write { path: records_path.clone(), source: std::io::Error::other(e.to_string()) })?;
    // Unique per verification: two boards verifying in the same second stay apart.
    let run_id = format!("device-{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), std::process::id());
    let mut sampling = m.sampling;
    if let Some(ms) = options.max_time_ms {
        sampling.max_time_ms = ms;
    }
    let mut records = Vec::new();
    for (index, case) in m.cases.iter().enumerate() {
        if options.only.as_deref().is_some_and(|only| !case.id.contains(only)) {
            continue;
        }
        let Some(inputs) = m.inputs.iter().find(|i| i.model == case.model) else {
            return Err(BundleError::Manifest {
                path: bundle.path(super::MANIFEST),
                reason: format!("case {} has no inputs entry for model {}", case.id, case.model),
            });
        };
        let ws = workstation.iter().find(|r| r.case_index == case.case_index);
        let mut record = identity(&env, case, ws, &run_id, index, emulated.clone());
        let diff = verify_case(&bundle, case, inputs, &sampling.settings(), options.cuda_device, &mut record);
        if let Some(diff) = diff.filter(|d| d.verdict != "pass") {
            // The diff is the detail; the record (appended whatever happens here) is the verdict.
            let path = out.join(format!("diff-{}.json", case.id));
            let written = serde_json::to_vec_pretty(&diff)
                .map_err(std::io::Error::other)
                .and_then(|text| std::fs::write(&path, text));
            if let Err(e) = written {
                let note = format!("; the diff could not be written to {}: {e}", path.display());
                record.error = Some(record.error.take().unwrap_or_default() + &note);
            }
        }
        sink.append(&record).map_err(|e| BundleError::Write {
            path: records_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        records.push(record);
    }
    Ok(Verified { records, out_dir: out.clone(), emulated })
}

/// Unpacks a bundle's `.tar` into `dest` (entries that would land outside it are refused by
/// the tar crate) and returns the bundle folder inside: `dest` itself or its one subfolder.
fn unpack(tar_path: &Path, dest: &Path) -> Result<PathBuf, BundleError> {
    let bad = |reason: String| BundleError::NotABundle { path: tar_path.to_path_buf(), reason };
    let file = std::fs::File::open(tar_path).map_err(|e| bad(format!("it cannot be opened ({e})")))?;
    if dest.exists() {
        return Err(BundleError::Write {
            path: dest.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "an unpacked bundle is already there"),
        });
    }
    std::fs::create_dir_all(dest).map_err(|source| BundleError::Write { path: dest.to_path_buf(), source })?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(false);
    let entries = archive.entries().map_err(|e| bad(format!("it is not a readable .tar ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("it is not a readable .tar ({e})")))?;
        let kind = entry.header().entry_type();
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!(
                "it holds {name:?}, which is not a plain file or folder (a link?); a bundle holds plain files only"
            )));
        }
        // unpack_in refuses a path that would land outside `dest`.
        if !entry.unpack_in(dest).map_err(|e| bad(format!("it is not a readable .tar ({e})")))? {
            return Err(bad(format!("it holds {name:?}, a path outside the bundle folder")));
        }
    }
    if dest.join(super::MANIFEST).is_file() {
        return Ok(dest.to_path_buf());
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(dest)
        .map_err(|e| bad(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(super::MANIFEST).is_file())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(bad(format!("the archive holds no folder with a {}", super::MANIFEST))),
    }
}

/// The workstation's records of the bundled cases (`records.jsonl`, hash-checked with the rest).
fn read_workstation_records(bundle: &Bundle) -> Result<Vec<Record>, BundleError> {
    let path = bundle.path("records.jsonl");
    if !bundle.manifest.files.contains_key("records.jsonl") {
        return Err(BundleError::MissingFile { bundle: bundle.dir.clone(), file: "records.jsonl".into() });
    }
    crate::record::read_records(&path).map_err(|e| BundleError::Read { path, reason: e.to_string() })
}

/// The device's record of `case` before it runs: this machine's provenance, the case's identity
/// from the workstation's record (or the manifest, without one).
fn identity(
    env: &Environment,
    case: &BundleCase,
    ws: Option<&Record>,
    run_id: &str,
    index: usize,
    emulated: Option<String>,
) -> Record {
    let cuda = BackendId::from_name(&case.backend).is_some_and(|b| b.is_cuda());
    let mut r = Record::from_environment(env, cuda);
    if let Some(ws) = ws {
        r.suite = ws.suite.clone();
        r.suite_sha256 = ws.suite_sha256.clone();
        r.suite_file = ws.suite_file.clone();
        r.zoo = ws.zoo.clone();
        r.model_sha256 = ws.model_sha256.clone();
        r.dataset = ws.dataset.clone();
        r.dataset_sha256 = ws.dataset_sha256.clone();
        r.layer_overrides = ws.layer_overrides.clone();
        r.parameters = ws.parameters;
        r.output_name = ws.output_name.clone();
        r.output_kind = ws.output_kind.clone();
        r.output_kind_source = ws.output_kind_source.clone();
        r.output_item_shape = ws.output_item_shape.clone();
        r.expected_realization = ws.expected_realization.clone();
        r.calibration_items = ws.calibration_items;
        r.calibration_selection = ws.calibration_selection.clone();
    }
    r.run_id = run_id.to_string();
    r.case_index = index;
    r.model = case.model.clone();
    r.scheme = case.scheme.clone();
    r.backend = case.backend.clone();
    r.device = case.device.clone();
    r.threads = case.threads;
    r.batch = case.batch;
    r.bundle_case = Some(case.id.clone());
    r.bits_per_weight = Some(case.variant.bits_per_weight);
    r.weight_storage = Some(case.variant.weight_storage.clone());
    r.activation_quant = (!case.variant.activation_quant.is_empty()).then(|| case.variant.activation_quant.clone());
    r.engine_version = BackendId::from_name(&case.backend).map(|b| b.engine_version()).unwrap_or_default();
    r.timing_emulated = emulated;
    r
}

/// Runs one case into `record`; the comparison when the case ran.
fn verify_case(
    bundle: &Bundle,
    case: &BundleCase,
    inputs: &BundleInputs,
    sampling: &crate::measure::latency::SamplerSettings,
    cuda_device: usize,
    record: &mut Record,
) -> Option<CaseDiff> {
    let unsupported = |record: &mut Record, why: String| {
        record.status = CaseStatus::Skipped;
        record.realization = Realization::Unsupported(String::new()).name().to_string();
        record.device_verdict = Some("unsupported".into());
        record.error = Some(format!("unsupported on this device: {why}"));
    };
    let Some(backend_id) = BackendId::from_name(&case.backend) else {
        unsupported(
            record,
            format!(
                "this qbench-device has no backend \"{}\" (it has {})",
                case.backend,
                BackendId::names().join(", ")
            ),
        );
        return None;
    };
    let variant = super::map_variant_paths(&case.variant, &mut |p| bundle.dir.join(p));
    let backend = backend_id.create(cuda_device);
    if let Realization::Unsupported(why) =
        backend.capability(ModelQuery::declared(&variant.kind), &variant.plan, case.batch)
    {
        unsupported(record, why);
        return None;
    }
    let data = match dataset(bundle, inputs) {
        Ok(d) => d,
        Err(e) => {
            record.status = CaseStatus::Failed;
            record.device_verdict = Some("error".into());
            record.error = Some(e.to_string());
            return None;
        }
    };
    match run_case(bundle, case, &variant, backend.as_ref(), &data, sampling, record) {
        Ok(diff) => Some(diff),
        Err(e) => {
            let text = crate::backend::chain(&e);
            if matches!(e, BackendError::Unsupported { .. }) {
                unsupported(record, text);
            } else {
                record.status = CaseStatus::Failed;
                // Outputs that are NaN or infinite are the device's failure to reproduce them.
                let verdict = if matches!(e, BackendError::NonFinite { .. }) { "fail" } else { "error" };
                record.device_verdict = Some(verdict.into());
                record.error = Some(text);
            }
            None
        }
    }
}

/// The bundle's items of a model as a dataset.
fn dataset(bundle: &Bundle, inputs: &BundleInputs) -> Result<Dataset, BundleError> {
    let (shape, values) = bundle.read_npy(&inputs.file)?;
    let expected: Vec<usize> = std::iter::once(inputs.items).chain(inputs.item_shape.iter().copied()).collect();
    if shape != expected {
        return Err(BundleError::Manifest {
            path: bundle.path(&inputs.file),
            reason: format!("its shape is {shape:?}, the manifest says {expected:?}"),
        });
    }
    Ok(Dataset {
        name: format!("bundle inputs of {}", inputs.model),
        item_shape: inputs.item_shape.clone(),
        values,
        labels: inputs.labels.clone(),
        sha256: bundle.manifest.files.get(&inputs.file).cloned().unwrap_or_default(),
        inputs_path: bundle.path(&inputs.file),
        labels_path: None,
        parts: Vec::new(),
        texts: None,
    })
}

fn run_case(
    bundle: &Bundle,
    case: &BundleCase,
    variant: &crate::quant::Variant,
    backend: &dyn crate::backend::Backend,
    data: &Dataset,
    sampling: &crate::measure::latency::SamplerSettings,
    record: &mut Record,
) -> Result<CaseDiff, BackendError> {
    let id = backend.id();
    let started = std::time::Instant::now();
    let mut prepared = backend.prepare(variant, case.batch)?;
    record.prepare_ns = Some(started.elapsed().as_nanos() as u64);
    // The file the engine loaded must be the one the workstation measured.
    let loaded = crate::hash::sha256_file(&prepared.artifact)
        .map_err(|e| BackendError::engine(id, "hashing the artifact", e))?;
    record.artifact = Some(prepared.artifact.display().to_string());
    record.artifact_bytes = Some(prepared.artifact_bytes);
    record.artifact_sha256 = Some(loaded.clone());
    if loaded != case.artifact_sha256 {
        return Err(BackendError::engine(
            id,
            "checking the artifact",
            format!(
                "the engine loaded {} (sha256 {loaded}), not the measured artifact {} (sha256 {})",
                prepared.artifact.display(),
                case.artifact,
                case.artifact_sha256
            ),
        ));
    }
    record.weights_bytes = prepared.weights_bytes;
    prepared.observe();
    record.evidence = Some(prepared.evidence.clone());
    let planned: Vec<&str> = variant.plan.layers.iter().map(|(l, _)| l.as_str()).collect();
    record.realization = crate::backend::realization::observed(&prepared.layers, &planned).name().to_string();
    record.layer_evidence = prepared.layers.clone();
    let session = prepared.session.as_mut();
    let outputs = crate::measure::eval::run_outputs(session, id, data, case.batch)?;
    record.eval_items = Some(data.len());
    record.eval_batch = Some(case.batch);
    let diff =
        compare(bundle, case, &outputs).map_err(|e| BackendError::engine(id, "reading the golden outputs", e))?;
    apply(&diff, case, record);
    // Accuracy on the bundled items, where they have labels: a figure beside the verdict.
    if let (Some(labels), Some(first)) = (&data.labels, outputs.first()) {
        if case.min_top1_agreement.is_some() {
            let classes = first.per_item();
            let top = crate::measure::eval::top1(&first.values, classes);
            record.top1_accuracy = Some(crate::measure::eval::accuracy(&top, labels));
        }
    }
    // Latency with the run's sampler, on the first batch of items.
    session.set_input(&data.batch_f32(0, case.batch.min(data.len()), case.batch))?;
    let sampled = crate::measure::latency::sample(sampling, || session.run())?;
    record.warmup_iters = sampling.warmup_iters;
    record.latency_ci_target_pct = sampling.target_rel_ci * 100.0;
    record.latency_ci_target_met = sampled.target_met;
    record.set_latency(sampled.samples_ns, case.batch);
    Ok(diff)
}

/// The device's outputs against the workstation's, output by output.
fn compare(bundle: &Bundle, case: &BundleCase, outputs: &[OutputValues]) -> Result<CaseDiff, String> {
    if outputs.len() != case.outputs.len() {
        return Err(format!("the engine gave {} outputs, the workstation {}", outputs.len(), case.outputs.len()));
    }
    let mut diffs = Vec::new();
    let mut golden_first = None;
    for (o, g) in outputs.iter().zip(&case.outputs) {
        let (shape, golden) = bundle.read_npy(&g.file).map_err(|e| e.to_string())?;
        if o.item_shape != g.item_shape || golden.len() != o.values.len() {
            return Err(format!(
                "output {:?}: items of shape {:?} here ({} values), {:?} on the workstation ({:?}, {} values)",
                g.name,
                o.item_shape,
                o.values.len(),
                g.item_shape,
                shape,
                golden.len()
            ));
        }
        diffs.push(output_diff(&g.name, &golden, &o.values, o.per_item(), g.max_abs));
        if golden_first.is_none() {
            golden_first = Some(golden);
        }
    }
    let (agreement, disagreeing) = match (case.min_top1_agreement, golden_first, outputs.first()) {
        (Some(_), Some(golden), Some(first)) => {
            let classes = first.per_item();
            let a = crate::measure::eval::top1(&golden, classes);
            let b = crate::measure::eval::top1(&first.values, classes);
            let differ: Vec<usize> =
                a.iter().zip(&b).enumerate().filter(|(_, (x, y))| x != y).map(|(i, _)| i).collect();
            let share = 1.0 - differ.len() as f64 / a.len().max(1) as f64;
            (Some(share), differ.into_iter().take(50).collect())
        }
        _ => (None, Vec::new()),
    };
    let outputs_ok = diffs.iter().all(|d| d.within);
    let top1_ok = match (agreement, case.min_top1_agreement) {
        (Some(a), Some(min)) => a >= min,
        _ => true,
    };
    // Nothing compared is not a pass.
    let verdict = if !diffs.is_empty() && outputs_ok && top1_ok { "pass" } else { "fail" };
    Ok(CaseDiff {
        case: case.id.clone(),
        verdict: verdict.into(),
        outputs: diffs,
        top1_agreement: agreement,
        min_top1_agreement: case.min_top1_agreement,
        top1_disagreeing_items: disagreeing,
    })
}

/// One output's deviation from the workstation's.
pub fn output_diff(name: &str, golden: &[f32], device: &[f32], per_item: usize, tolerance: f64) -> OutputDiff {
    let per_item = per_item.max(1);
    let mut worst = (0usize, 0.0f64);
    let mut items_over = Vec::new();
    let mut over = 0;
    for (item, (g, d)) in golden.chunks(per_item).zip(device.chunks(per_item)).enumerate() {
        let mut item_max = 0.0f64;
        for (k, (a, b)) in g.iter().zip(d).enumerate() {
            let dev = (*a as f64 - *b as f64).abs();
            if dev > item_max {
                item_max = dev;
            }
            if dev > worst.1 || (item == 0 && k == 0) {
                worst = (item * per_item + k, dev);
            }
        }
        if item_max > tolerance {
            over += 1;
            if items_over.len() < 50 {
                items_over.push((item, item_max));
            }
        }
    }
    let max_abs = worst.1;
    OutputDiff {
        output: name.to_string(),
        max_abs_diff: max_abs,
        tolerance_abs: tolerance,
        within: max_abs <= tolerance,
        items_over,
        items_over_count: over,
        worst_item: worst.0 / per_item,
        worst_position: worst.0 % per_item,
        workstation_value: golden.get(worst.0).copied().unwrap_or(f32::NAN),
        device_value: device.get(worst.0).copied().unwrap_or(f32::NAN),
    }
}

/// The comparison into the record: verdict, the output nearest (or farthest beyond) its
/// tolerance, top-1 agreement.
fn apply(diff: &CaseDiff, case: &BundleCase, record: &mut Record) {
    record.device_verdict = Some(diff.verdict.clone());
    if diff.verdict != "pass" {
        // Outputs the device does not reproduce: the case failed there, whatever it measured.
        record.status = CaseStatus::Failed;
    }
    let ratio = |d: &OutputDiff| {
        if d.tolerance_abs > 0.0 {
            d.max_abs_diff / d.tolerance_abs
        } else if d.max_abs_diff > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    if let Some(worst) = diff.outputs.iter().max_by(|a, b| ratio(a).total_cmp(&ratio(b))) {
        record.device_worst_output = Some(worst.output.clone());
        record.device_max_abs_diff = Some(worst.max_abs_diff);
        record.device_tolerance_abs = Some(worst.tolerance_abs);
    }
    record.device_top1_agreement = diff.top1_agreement;
    record.device_min_top1_agreement = case.min_top1_agreement;
    if diff.verdict != "pass" {
        let failing: Vec<String> = diff
            .outputs
            .iter()
            .filter(|d| !d.within)
            .map(|d| {
                format!(
                    "output {:?}: max |device − workstation| {:.3e} > tolerance {:.3e} on {} of the items (worst: item {}, position {}: {} on the workstation, {} here)",
                    d.output, d.max_abs_diff, d.tolerance_abs, d.items_over_count, d.worst_item, d.worst_position, d.workstation_value, d.device_value
                )
            })
            .chain(match (diff.top1_agreement, diff.min_top1_agreement) {
                (Some(a), Some(min)) if a < min => {
                    Some(format!("top-1 agreement with the workstation {a:.4} < {min}"))
                }
                _ => None,
            })
            .collect();
        record.error = Some(format!("case {} failed on this device: {}", case.id, failing.join("; ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_the_worst_item_and_counts_items_over() {
        // Two items of three values; item 1 position 2 is off by 0.5, item 0 by 0.01.
        let golden = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let device = [1.01, 2.0, 3.0, 4.0, 5.0, 6.5];
        let d = output_diff("logits", &golden, &device, 3, 0.1);
        assert!(!d.within);
        assert!((d.max_abs_diff - 0.5).abs() < 1e-6);
        assert_eq!((d.worst_item, d.worst_position), (1, 2));
        assert_eq!((d.workstation_value, d.device_value), (6.0, 6.5));
        assert_eq!(d.items_over_count, 1);
        assert_eq!(d.items_over[0].0, 1);
        let same = output_diff("logits", &golden, &golden, 3, 0.0);
        assert!(same.within && same.max_abs_diff == 0.0 && same.items_over_count == 0);
    }
}
