//! `qbench bundle`: measured cases of a run, packed for a target device.
//!
//! Each chosen case is rebuilt from its record (`explain::rebuild_record`: the suite and model
//! as they were, the same plan and calibration), its artifact checked against the sha256 the
//! record carries (the bytes that were measured, or an error), and run on this machine over the
//! first `items` items of the run's evaluation split: its outputs are the golden outputs a device
//! must reproduce, the fp32 reference's on the same items give the variant's own error, and the
//! tolerances follow from both ([`crate::bundle::TOLERANCE_RULE`]). The folder holds everything
//! the device needs, hashed in its manifest; a `.tar` of it is written beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::backend::{BackendError, BackendId};
use crate::bundle::{
    self, BundleCase, BundleInputs, BundleOutput, CaseOutput, Manifest, Sampling, Tolerances, FORMAT, FORMAT_VERSION,
};
use crate::data::Dataset;
use crate::explain::{rebuild_record, ExplainError, Rebuilt};
use crate::measure::outputs::OutputValues;
use crate::record::{CaseStatus, Record};
use crate::suite::CaseFilter;

/// The cases to pack and how.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// `field=glob[,glob…][,field=…]` over model, scheme, backend, device, batch, threads:
    /// `scheme=int8-*,q4k` packs every measured case whose scheme matches either. `None`: every
    /// measured case.
    pub cases: Option<String>,
    /// Evaluation items fed to each case (the first ones of the run's evaluation split).
    pub items: usize,
    /// The bundle folder to create; `<out>.tar` is written beside it.
    pub out: PathBuf,
    /// Each one given replaces the suite's `[bundle]` value.
    pub floor_rel: Option<f64>,
    pub factor: Option<f64>,
    pub min_top1_agreement: Option<f64>,
}

impl PackOptions {
    /// The suite's tolerances with this command's replacements.
    pub fn tolerances(&self, suite: Tolerances) -> Tolerances {
        Tolerances {
            floor_rel: self.floor_rel.unwrap_or(suite.floor_rel),
            factor: self.factor.unwrap_or(suite.factor),
            min_top1_agreement: self.min_top1_agreement.unwrap_or(suite.min_top1_agreement),
        }
    }
}

/// A written bundle.
#[derive(Debug)]
pub struct Packed {
    pub dir: PathBuf,
    pub tar: PathBuf,
    pub manifest: Manifest,
    pub tar_bytes: u64,
}

/// Why a bundle cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0} has no records.jsonl; pass the run folder `qbench run` printed (reports/<suite>/<run id>)")]
    NoRecords(PathBuf),
    #[error("--cases {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("no measured case matches --cases {filter:?}; the run's measured cases: {available}")]
    NoMatch { filter: String, available: String },
    #[error("{0} already exists; choose another output (a bundle is never written over)")]
    Exists(PathBuf),
    #[error(
        "case {case} ({what}) has no artifact sha256: its run predates them; run the suite again with this qbench"
    )]
    NoArtifactHash { case: usize, what: String },
    #[error("case {case} ({what}): {reason}")]
    NotBundlable { case: usize, what: String, reason: String },
    #[error("case {case} ({what}): the artifact rebuilt here ({file}, sha256 {rebuilt}) is not the one measured (sha256 {measured} in the record); the quantization did not reproduce, so the bundle would not hold what was measured")]
    ArtifactDiffers { case: usize, what: String, file: PathBuf, rebuilt: String, measured: String },
    #[error("case {case}: rebuilding it failed")]
    Rebuild {
        case: usize,
        #[source]
        source: Box<ExplainError>,
    },
    #[error("case {case}: building its variant failed")]
    Variant {
        case: usize,
        #[source]
        source: crate::quant::VariantError,
    },
    #[error("case {case}: running it on this machine failed")]
    Backend {
        case: usize,
        #[source]
        source: BackendError,
    },
    #[error("invalid tolerances: {0}")]
    Tolerances(String),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Records(#[from] crate::record::RecordError),
}

fn describe(r: &Record) -> String {
    r.case_name()
}

/// Packs the chosen cases of the run in `run_dir`; `progress` hears a line per case.
pub fn pack(run_dir: &Path, options: &PackOptions, progress: &mut dyn FnMut(&str)) -> Result<Packed, PackError> {
    let records_path = run_dir.join("records.jsonl");
    if std::fs::symlink_metadata(&records_path).is_err() {
        return Err(PackError::NoRecords(run_dir.to_path_buf()));
    }
    let records = crate::record::read_records(&records_path)?;
    let filter_text = options.cases.clone().unwrap_or_else(|| "(all)".into());
    let filter = options
        .cases
        .as_deref()
        .map(CaseFilter::parse)
        .transpose()
        .map_err(|reason| PackError::Filter { filter: filter_text.clone(), reason })?;
    let measured: Vec<&Record> = records.iter().filter(|r| r.status == CaseStatus::Ok).collect();
    let mut chosen: Vec<&Record> =
        measured.iter().copied().filter(|r| filter.as_ref().is_none_or(|f| f.matches(r))).collect();
    // A language model is scored by perplexity over token windows, which a bundle does not carry.
    chosen.retain(|r| {
        let lm = r.perplexity.is_some() || r.scored_tokens.is_some();
        if lm {
            progress(&format!(
                "leaving out case {} ({}): a language model's perplexity over token windows is not bundled yet",
                r.case_index,
                describe(r)
            ));
        }
        !lm
    });
    if chosen.is_empty() {
        let available: Vec<String> = measured.iter().map(|r| describe(r)).collect();
        let available = if available.is_empty() { "none".to_string() } else { available.join("; ") };
        return Err(PackError::NoMatch { filter: filter_text, available });
    }
    if options.items == 0 {
        return Err(PackError::Filter { filter: filter_text, reason: "--items must be at least 1".into() });
    }
    // The command's own tolerances, checked before minutes of rebuilding.
    options.tolerances(Tolerances::default()).check().map_err(PackError::Tolerances)?;
    for r in &chosen {
        if r.artifact_sha256.is_none() {
            return Err(PackError::NoArtifactHash { case: r.case_index, what: describe(r) });
        }
    }
    let out = &options.out;
    if out.exists() {
        return Err(PackError::Exists(out.clone()));
    }
    let tar_path = tar_path(out);
    if tar_path.exists() {
        return Err(PackError::Exists(tar_path));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let work = out.join(".work");
    let result = write_bundle(run_dir, &chosen, options, out, &work, progress);
    let _ = std::fs::remove_dir_all(&work);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            // Nothing half-written is left to be mistaken for a bundle.
            let _ = std::fs::remove_dir_all(out);
            return Err(e);
        }
    };
    if let Err(e) = write_tar(out, &tar_path) {
        let _ = std::fs::remove_file(&tar_path);
        let _ = std::fs::remove_dir_all(out);
        return Err(e);
    }
    let tar_bytes = std::fs::metadata(&tar_path).map(|m| m.len()).unwrap_or(0);
    Ok(Packed { dir: out.clone(), tar: tar_path, manifest, tar_bytes })
}

/// `<out>.tar` beside the folder.
pub fn tar_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tar");
    out.with_file_name(name)
}

/// Per model: the rebuilt reference state the model's cases share.
struct ModelFiles {
    inputs: BundleInputs,
    data: Dataset,
    reference: Vec<OutputValues>,
}

fn write_bundle(
    run_dir: &Path,
    chosen: &[&Record],
    options: &PackOptions,
    out: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Manifest, PackError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError::Io { path, source }
    };
    let mut models: BTreeMap<String, ModelFiles> = BTreeMap::new();
    let mut cases = Vec::new();
    // sha256 → the bundle's copy: one copy of the bytes several cases load.
    let mut copied: BTreeMap<String, String> = BTreeMap::new();
    let mut first: Option<Rebuilt> = None;
    let mut tolerances: Option<Tolerances> = None;
    for record in chosen {
        let index = record.case_index;
        let what = describe(record);
        progress(&format!("case {index}: {what}"));
        let case_work = work.join(format!("case-{index}"));
        let rebuilt = rebuild_record((*record).clone(), &case_work.join("model"))
            .map_err(|source| PackError::Rebuild { case: index, source: Box::new(source) })?;
        if rebuilt.reference.kind.is_language_model() {
            return Err(PackError::NotBundlable {
                case: index,
                what,
                reason: "a language model is scored by perplexity over token windows, which a bundle does not carry yet; bundle its classifier or embedding cases".into(),
            });
        }
        let tol = *tolerances.get_or_insert(options.tolerances(rebuilt.suite.bundle));
        tol.check().map_err(PackError::Tolerances)?;
        let variant =
            rebuilt.variant(&case_work.join("variant")).map_err(|source| PackError::Variant { case: index, source })?;
        // The variant's files, copied under files/ (one copy of a file several cases share).
        let model_stem = crate::files::file_stem(&record.model);
        let mut rel_of = BTreeMap::new();
        for path in bundle::variant_paths(&variant) {
            let src = PathBuf::from(path);
            let sha = crate::hash::sha256_file(&src).map_err(io(&src))?;
            let rel = match copied.get(&sha) {
                Some(rel) => rel.clone(),
                None => {
                    let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let mut rel = format!("files/{model_stem}/{}", crate::files::file_stem(&name));
                    if copied.values().any(|r| r == &rel) {
                        rel = format!("files/{model_stem}/{}-{}", &sha[..8], crate::files::file_stem(&name));
                    }
                    let dest = out.join(&rel);
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent).map_err(io(parent))?;
                    }
                    std::fs::copy(&src, &dest).map_err(io(&src))?;
                    copied.insert(sha, rel.clone());
                    rel
                }
            };
            rel_of.insert(src, rel);
        }
        let relative =
            bundle::map_variant_paths(&variant, &mut |p| rel_of.get(p).map(PathBuf::from).unwrap_or_default());
        let in_bundle = bundle::map_variant_paths(&relative, &mut |p| out.join(p));
        // The model's items and its reference outputs, once.
        if !models.contains_key(&record.model) {
            let m = model_files(&rebuilt, record, out, work, options.items, index)?;
            if m.data.len() < options.items {
                progress(&format!(
                    "model {}: {} items bundled, all its evaluation split holds (--items asked {})",
                    record.model,
                    m.data.len(),
                    options.items
                ));
            }
            models.insert(record.model.clone(), m);
        }
        let Some(m) = models.get(&record.model) else { continue };
        // The case itself, from the bundle's own copies, on this machine.
        let backend = rebuilt.backend.create(rebuilt.suite.cuda_device);
        let mut prepared =
            backend.prepare(&in_bundle, record.batch).map_err(|source| PackError::Backend { case: index, source })?;
        let loaded = crate::hash::sha256_file(&prepared.artifact).map_err(io(&prepared.artifact))?;
        let measured = record.artifact_sha256.clone().unwrap_or_default();
        if loaded != measured {
            return Err(PackError::ArtifactDiffers {
                case: index,
                what,
                file: prepared.artifact.clone(),
                rebuilt: loaded,
                measured,
            });
        }
        let artifact =
            prepared.artifact.strip_prefix(out).map(|p| p.to_string_lossy().replace('\\', "/")).map_err(|_| {
                PackError::NotBundlable {
                    case: index,
                    what: what.clone(),
                    reason: format!(
                        "the engine loaded {}, which is not among the variant's files",
                        prepared.artifact.display()
                    ),
                }
            })?;
        let golden =
            crate::measure::eval::run_outputs(prepared.session.as_mut(), rebuilt.backend, &m.data, record.batch)
                .map_err(|source| PackError::Backend { case: index, source })?;
        let id = bundle::case_id(&record.model, &record.scheme, &record.backend, record.batch);
        let case_dir = out.join("cases").join(&id);
        std::fs::create_dir_all(&case_dir).map_err(io(&case_dir))?;
        let mut outputs = Vec::new();
        for (k, g) in golden.iter().enumerate() {
            let reference = m.reference.get(k).filter(|r| r.values.len() == g.values.len());
            let own_error = match reference {
                Some(r) => max_abs_diff(&g.values, &r.values),
                None => {
                    return Err(PackError::NotBundlable {
                        case: index,
                        what,
                        reason: format!("output {k} ({}) has no fp32 reference output of the same shape to measure its own error against", g.name),
                    })
                }
            };
            let output_scale = g.values.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
            let file = format!("cases/{id}/output.{k}.npy");
            write_npy(&out.join(&file), m.data.len(), &g.item_shape, &g.values)?;
            outputs.push(CaseOutput {
                name: g.name.clone(),
                file,
                item_shape: g.item_shape.clone(),
                output_scale,
                own_error,
                max_abs: tol.max_abs(output_scale, own_error),
            });
        }
        cases.push(BundleCase {
            id,
            case_index: index,
            model: record.model.clone(),
            scheme: record.scheme.clone(),
            backend: record.backend.clone(),
            device: record.device.clone(),
            threads: record.threads,
            batch: record.batch,
            variant: relative,
            artifact,
            artifact_sha256: measured,
            outputs,
            min_top1_agreement: record.top1_applies().then_some(tol.min_top1_agreement),
            workstation_latency_median_ns: record.latency_median_ns,
        });
        if first.is_none() {
            first = Some(rebuilt);
        }
    }
    let Some(first) = first else {
        return Err(PackError::NoMatch { filter: String::new(), available: String::new() });
    };
    // The workstation's records of the bundled cases, and its environment.
    let mut lines = String::new();
    for r in chosen {
        let line = serde_json::to_string(r)
            .map_err(|e| PackError::Io { path: out.join("records.jsonl"), source: e.into() })?;
        lines.push_str(&line);
        lines.push('\n');
    }
    std::fs::write(out.join("records.jsonl"), lines).map_err(io(&out.join("records.jsonl")))?;
    let env = run_dir.join("environment.json");
    if env.is_file() {
        std::fs::copy(&env, out.join("environment.json")).map_err(io(&env))?;
    }
    let _ = std::fs::remove_dir_all(work);
    let files = hash_tree(out)?;
    // The sampling of the first case's measurement point (its record names the point).
    let point = first.suite.points.iter().find(|p| p.label == first.record.sweep).unwrap_or(&first.suite.points[0]);
    let m = &point.sampler;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        created_by: format!("qbench {} ({})", env!("CARGO_PKG_VERSION"), env!("QBENCH_GIT_COMMIT")),
        source_run: run_dir.display().to_string(),
        run_id: chosen[0].run_id.clone(),
        suite: chosen[0].suite.clone(),
        tolerances: tolerances.unwrap_or_default(),
        tolerance_rule: bundle::TOLERANCE_RULE.into(),
        sampling: Sampling {
            warmup_iters: m.warmup_iters,
            min_samples: m.min_samples,
            max_samples: m.max_samples,
            max_time_ms: m.max_time.as_millis() as u64,
            target_ci_pct: m.target_rel_ci * 100.0,
        },
        threads: point.threads,
        inputs: models.into_values().map(|m| m.inputs).collect(),
        cases,
        files,
    };
    let path = out.join(bundle::MANIFEST);
    let text =
        serde_json::to_vec_pretty(&manifest).map_err(|e| PackError::Io { path: path.clone(), source: e.into() })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(manifest)
}

/// The model's bundled items (the first `items` of the run's evaluation split) and the fp32
/// reference's outputs on them, written into the bundle.
fn model_files(
    rebuilt: &Rebuilt,
    record: &Record,
    out: &Path,
    work: &Path,
    items: usize,
    index: usize,
) -> Result<ModelFiles, PackError> {
    let n = items.min(rebuilt.eval.len());
    let data = rebuilt.eval.slice(0..n);
    let stem = crate::files::file_stem(&record.model);
    let item_shape = if data.parts.is_empty() { data.item_shape.clone() } else { vec![data.item_size()] };
    let file = format!("inputs/{stem}.npy");
    write_npy(&out.join(&file), n, &item_shape, &data.values)?;
    // The reference engine the run used, on the f32 variant, at its batch.
    let reference_backend = BackendId::from_name(&record.reference_backend).unwrap_or(rebuilt.backend);
    let f32 = rebuilt
        .f32_variant(&work.join(format!("reference-{stem}")))
        .map_err(|source| PackError::Variant { case: index, source })?;
    let batch = record.reference_batch.unwrap_or(1).min(n).max(1);
    let backend = reference_backend.create(rebuilt.suite.cuda_device);
    let mut prepared = backend.prepare(&f32, batch).map_err(|source| PackError::Backend { case: index, source })?;
    let reference = crate::measure::eval::run_outputs(prepared.session.as_mut(), reference_backend, &data, batch)
        .map_err(|source| PackError::Backend { case: index, source })?;
    let mut outputs = Vec::new();
    for (k, r) in reference.iter().enumerate() {
        let file = format!("reference/{stem}.{k}.npy");
        write_npy(&out.join(&file), n, &r.item_shape, &r.values)?;
        outputs.push(BundleOutput { name: r.name.clone(), file, item_shape: r.item_shape.clone() });
    }
    let inputs = BundleInputs {
        model: record.model.clone(),
        file,
        items: n,
        item_shape,
        labels: data.labels.clone(),
        selection: format!("the first {n} items of the run's evaluation split of {}", data.name),
        reference_backend: reference_backend.name().to_string(),
        reference: outputs,
    };
    Ok(ModelFiles { inputs, data, reference })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
}

fn write_npy(path: &Path, items: usize, item_shape: &[usize], values: &[f32]) -> Result<(), PackError> {
    let shape: Vec<usize> = std::iter::once(items).chain(item_shape.iter().copied()).collect();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PackError::Io { path: parent.to_path_buf(), source })?;
    }
    std::fs::write(path, crate::data::encode_npy_f32(&shape, values))
        .map_err(|source| PackError::Io { path: path.to_path_buf(), source })
}

/// Every file under `dir` (relative, `/`-separated) with its sha256, the manifest excepted.
fn hash_tree(dir: &Path) -> Result<BTreeMap<String, String>, PackError> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| PackError::Io { path: d.clone(), source })?;
        for entry in entries {
            let path = entry.map_err(|source| PackError::Io { path: d.clone(), source })?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).map(|p| p.to_string_lossy().replace('\\', "/")).unwrap_or_default();
            if rel == bundle::MANIFEST {
                continue;
            }
            let sha = crate::hash::sha256_file(&path).map_err(|source| PackError::Io { path: path.clone(), source })?;
            files.insert(rel, sha);
        }
    }
    Ok(files)
}

/// The folder as `<name>/…` in a `.tar`.
fn write_tar(dir: &Path, tar_path: &Path) -> Result<(), PackError> {
    let io = |source| PackError::Io { path: tar_path.to_path_buf(), source };
    let file = std::fs::File::create(tar_path).map_err(io)?;
    let mut builder = tar::Builder::new(file);
    let name = dir.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("bundle"));
    builder.append_dir_all(&name, dir).map_err(io)?;
    builder.into_inner().map_err(io)?.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_sits_beside_the_folder() {
        assert_eq!(tar_path(Path::new("out/release.qbundle")), PathBuf::from("out/release.qbundle.tar"));
    }
}
