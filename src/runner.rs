//! Running a suite: datasets and models are loaded once, every case is measured
//! and its record appended before the next case starts. A failing case is
//! recorded as failed and the suite goes on.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::{configure_threads, BackendId};
use crate::data::{load_idx, DataError, Dataset, DatasetFormat};
use crate::measure::{eval, fidelity, latency, lm, memory};
use crate::model::bert::BertCheckpoint;
use crate::model::gguf_lm::GgufLm;
use crate::model::onnx_file::OnnxModel;
use crate::model::Reference;
use crate::quant::{self, Variant};
use crate::record::{CaseStatus, Environment, Record};
use crate::report::jsonl::RecordSink;
use crate::suite::{expand, Case, ModelEntry, ModelSource, Suite};
use crate::{Error, Result};

/// The engine and batch size that compute each zoo model's fp32 reference logits (a user's
/// ONNX model's are computed by tract, the engine that runs it).
pub const REFERENCE_BACKEND: BackendId = BackendId::CandleCpu;
pub const ONNX_REFERENCE_BACKEND: BackendId = BackendId::TractCpu;
const REFERENCE_BATCH: usize = 500;
const BERT_BATCH: usize = 32;

/// Where the run goes and how chatty it is.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the suite's output folder.
    pub out_dir: Option<PathBuf>,
    /// Runs only this shard of the cases (`--shard k/n`).
    pub shard: Option<crate::suite::Shard>,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub records: Vec<Record>,
}

impl RunSummary {
    pub fn failed(&self) -> usize {
        self.records.iter().filter(|r| r.status == CaseStatus::Failed).count()
    }
}

/// Loads every dataset the suite names and checks it fits the models that use it.
/// Any problem here stops the run before anything is measured.
pub fn load_datasets(suite: &Suite) -> Result<Vec<Dataset>, DataError> {
    let datasets = suite
        .datasets
        .iter()
        .map(|d| match (d.format, &d.labels) {
            (DatasetFormat::Idx, Some(labels)) => load_idx(&d.name, &d.inputs, labels),
            (DatasetFormat::Idx, None) => unreachable!("the suite requires IDX labels"),
            (DatasetFormat::Npy, labels) => {
                let arrays: Vec<&str> = d.arrays.iter().map(String::as_str).chain(d.array.as_deref()).collect();
                crate::data::load_npy_arrays(
                    &d.name,
                    &d.inputs,
                    &arrays,
                    labels.as_deref().map(|l| (l, d.label_column.as_deref())),
                )
            }
            (DatasetFormat::Raw, labels) => crate::data::load_raw(
                &d.name,
                &d.inputs,
                d.length,
                labels.as_deref().map(|l| (l, d.label_column.as_deref())),
            ),
            (DatasetFormat::Images, labels) => crate::data::load_images(
                &d.name,
                &d.inputs,
                d.image.as_ref().ok_or_else(|| DataError::Folder {
                    path: d.inputs.clone(),
                    reason: "no image preprocessing".into(),
                })?,
                labels.as_deref().map(|l| (l, d.label_column.as_deref())),
            ),
            (DatasetFormat::Text, labels) => crate::data::load_text(
                &d.name,
                &d.inputs,
                d.tokenizer.as_deref().unwrap_or(Path::new("tokenizer.json")),
                d.seq_len,
                d.windows,
                labels.as_deref().map(|l| (l, d.label_column.as_deref())),
            ),
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (mi, m) in suite.models.iter().enumerate() {
        let d = &datasets[m.dataset];
        let fits = match m.input_parts() {
            Some(want) => d.item_parts() == want,
            // A checkpoint takes rows of token ids.
            None => d.item_shape.len() == 1 && d.parts.is_empty(),
        };
        if !fits {
            return Err(DataError::ShapeMismatch {
                dataset: format!("\"{}\" ({})", d.name, d.inputs_path.display()),
                found: crate::data::parts(&d.item_parts()),
                model: m.name.clone(),
                want: m.input_parts().map_or("token-id row".into(), |p| crate::data::parts(&p)),
            });
        }
        if let (Some(c), true) = (&suite.calibration, suite.calibration_items(mi) > 0) {
            if c.items >= d.len() {
                return Err(DataError::CalibrationSplit {
                    at: c.items_at.clone(),
                    items: c.items,
                    dataset: d.name.clone(),
                    len: d.len(),
                });
            }
        }
        // A model file's class count is known once it has run (checked per case then).
        if let Some(zoo) = m.zoo() {
            check_labels(d, m, zoo.num_classes())?;
        }
    }
    Ok(datasets)
}

/// Every label must be a class the model outputs.
fn check_labels(d: &Dataset, m: &ModelEntry, classes: usize) -> Result<(), DataError> {
    match d.labels().iter().find(|&&l| l as usize >= classes) {
        Some(&label) => Err(DataError::LabelRange {
            dataset: d.name.clone(),
            path: d.labels_path.clone().unwrap_or_default(),
            label,
            model: m.name.clone(),
            classes,
        }),
        None => Ok(()),
    }
}

/// A reference model as loaded for a run (or for `explain`).
pub(crate) enum Loaded {
    Zoo(Reference),
    /// A user's ONNX model and its normalized f32 file (the f32 artifact).
    Onnx(Box<OnnxModel>, PathBuf),
    /// A BERT checkpoint (its file is the f32 artifact).
    Bert(Box<BertCheckpoint>),
    /// A GGUF language model (every variant, f32 included, is requantized from it).
    Gguf(Box<GgufLm>),
}

impl Loaded {
    pub(crate) fn load(model: &ModelEntry, artifacts: &Path) -> Result<Loaded> {
        match &model.source {
            ModelSource::Zoo { zoo, weights } => Ok(Loaded::Zoo(Reference::load(&model.name, *zoo, weights)?)),
            ModelSource::Onnx { path, inputs, output } => {
                let onnx = OnnxModel::load(&model.name, path, inputs, output.as_deref())?;
                let f32_path =
                    quant::write_artifact(artifacts.join(format!("{}.f32.onnx", model.name)), &onnx.to_bytes())?;
                Ok(Loaded::Onnx(Box::new(onnx), f32_path))
            }
            ModelSource::Bert { path, config } => {
                Ok(Loaded::Bert(Box::new(BertCheckpoint::load(&model.name, path, config)?)))
            }
            ModelSource::Gguf { path } => Ok(Loaded::Gguf(Box::new(GgufLm::load(&model.name, path)?))),
        }
    }

    pub(crate) fn sha256(&self) -> &str {
        match self {
            Loaded::Zoo(r) => &r.sha256,
            Loaded::Onnx(m, _) => &m.sha256,
            Loaded::Bert(b) => &b.sha256,
            Loaded::Gguf(g) => &g.sha256,
        }
    }

    pub(crate) fn layers(&self) -> Vec<(String, usize)> {
        match self {
            Loaded::Zoo(r) => quant::LayerWidths::layer_widths(&r.zoo),
            Loaded::Onnx(m, _) => m.weighted_layers(),
            Loaded::Bert(b) => b.layers.clone(),
            Loaded::Gguf(g) => g.layers.clone(),
        }
    }

    fn parameters(&self) -> usize {
        match self {
            Loaded::Zoo(r) => r.zoo.parameter_count(),
            Loaded::Onnx(m, _) => m.parameters,
            Loaded::Bert(b) => b.parameters(),
            Loaded::Gguf(g) => g.parameters(),
        }
    }

    fn reference_backend(&self) -> BackendId {
        match self {
            Loaded::Zoo(_) | Loaded::Bert(_) | Loaded::Gguf(_) => REFERENCE_BACKEND,
            Loaded::Onnx(..) => ONNX_REFERENCE_BACKEND,
        }
    }

    /// The f32 model as a variant (what the f32 cases run).
    fn f32_variant(&self, name: &str) -> Variant {
        match self {
            Loaded::Zoo(r) => Variant::f32_reference(r, PathBuf::new()),
            Loaded::Onnx(m, path) => Variant {
                model: name.to_string(),
                arch: quant::Arch::OnnxGraph,
                input_shape: m.inputs[0].item_shape.clone(),
                plan: quant::Plan::uniform(m.weighted_layers().as_slice(), quant::SchemeId::F32),
                candle_artifact: path.clone(),
                onnx: path.clone(),
                weight_storage: "f32".into(),
                activation_quant: String::new(),
                bits_per_weight: 32.0,
            },
            Loaded::Bert(b) => Variant {
                model: name.to_string(),
                arch: quant::Arch::Bert(Box::new(b.config.clone())),
                input_shape: Vec::new(),
                plan: quant::Plan::uniform(b.layers.as_slice(), quant::SchemeId::F32),
                candle_artifact: b.path.clone(),
                onnx: PathBuf::new(),
                weight_storage: "f32".into(),
                activation_quant: String::new(),
                bits_per_weight: 32.0,
            },
            // The source file as it is; the cases run requantized variants (see `apply`).
            Loaded::Gguf(g) => Variant {
                model: name.to_string(),
                arch: quant::Arch::Gguf(g.arch),
                input_shape: Vec::new(),
                plan: quant::Plan::uniform(g.layers.as_slice(), quant::SchemeId::F32),
                candle_artifact: g.path.clone(),
                onnx: PathBuf::new(),
                weight_storage: format!("{} as stored", g.source_precision()),
                activation_quant: String::new(),
                bits_per_weight: 32.0,
            },
        }
    }

    pub(crate) fn calibrate(&self, data: &Dataset, percentile: f64) -> Result<quant::Calibration> {
        match self {
            Loaded::Zoo(r) => quant::calibration_inputs(r, data, percentile),
            Loaded::Onnx(m, path) => quant::calibration_inputs_onnx(m, path, data, percentile),
            Loaded::Bert(b) => Err(Error::Model(crate::model::ModelError::Checkpoint {
                model: "bert".into(),
                path: b.path.clone(),
                reason: "static schemes need each layer's input, which candle-transformers' BERT does not expose"
                    .into(),
            })),
            Loaded::Gguf(g) => Err(Error::Model(crate::model::ModelError::Checkpoint {
                model: g.arch.name().into(),
                path: g.path.clone(),
                reason:
                    "static schemes need each layer's input, which candle-transformers' quantized models do not expose"
                        .into(),
            })),
        }
    }

    pub(crate) fn apply(
        &self,
        name: &str,
        plan: &quant::Plan,
        artifacts: &Path,
        cal: Option<&quant::Calibration>,
    ) -> Result<Variant> {
        match self {
            Loaded::Zoo(r) => quant::apply(plan, r, artifacts, cal),
            Loaded::Gguf(g) => quant::gguf_lm::apply(plan, g, name, artifacts),
            Loaded::Onnx(..) | Loaded::Bert(_) if plan.layers.iter().all(|(_, s)| *s == quant::SchemeId::F32) => {
                Ok(Variant { plan: plan.clone(), ..self.f32_variant(name) })
            }
            Loaded::Onnx(m, _) => quant::onnx_graph::apply(plan, m, name, artifacts, cal),
            Loaded::Bert(b) => quant::checkpoint::apply(plan, b, name, artifacts),
        }
    }
}

/// Runs every case of `suite`; `progress` receives one line per step.
pub fn run(suite: &Suite, options: &RunOptions, progress: &mut dyn FnMut(&str)) -> Result<RunSummary> {
    let cases = expand(suite);
    let selected = options.shard.map_or_else(|| vec![true; cases.len()], |s| s.selects(&cases));
    let total = selected.iter().filter(|s| **s).count();
    if let (Some(shard), 0) = (options.shard, total) {
        return Err(Error::EmptyShard { shard: shard.name(), cases: cases.len() });
    }
    let datasets = load_datasets(suite)?;
    configure_threads(suite.threads);
    let uses_gpu = suite.backends.iter().any(|b| b.is_cuda());
    let env = Environment::capture(suite.threads, uses_gpu.then_some(suite.cuda_device));
    let out_root = options.out_dir.clone().unwrap_or_else(|| suite.output_dir.clone());
    let (run_id, run_dir) = create_run_dir(&out_root.join(&suite.name))?;
    let artifacts = run_dir.join("artifacts");
    create_dir(&artifacts)?;
    write_file(&run_dir.join("environment.json"), &serde_json::to_vec_pretty(&env).expect("Environment serializes"))?;
    if let Ok(text) = std::fs::read(&suite.file) {
        write_file(&run_dir.join("suite.toml"), &text)?;
    }
    let mut sink = RecordSink::open(&run_dir.join("records.jsonl"))?;
    progress(&format!("run {run_id}: writing to {}", run_dir.display()));
    if suite.threads > env.logical_cores {
        progress(&format!(
            "WARNING: measure.threads = {} exceeds the {} logical cores here; threads will contend and timings overstate latency",
            suite.threads, env.logical_cores
        ));
    }
    if env.debug_build {
        progress("WARNING: this is a debug build; timings are 10-100× slower than release and are not representative. Use cargo run --release.");
    }

    if let Some(shard) = options.shard {
        progress(&format!("shard {}: {total} of the suite's {} cases", shard.name(), cases.len()));
    }
    let mut records = Vec::with_capacity(total);
    // `index` counts every case of the suite (the records' case_index, the same in every
    // shard); `done` counts the cases this run measures.
    let mut index = 0;
    let mut done = 0;
    for (model_idx, model) in suite.models.iter().enumerate() {
        let first_case = index;
        let count = cases.iter().filter(|c| c.model == model_idx).count();
        if !selected[first_case..first_case + count].iter().any(|s| *s) {
            index += count;
            continue;
        }
        // With a calibration split, every case evaluates on the images after it.
        let calibration_items = suite.calibration_items(model_idx);
        let full = &datasets[model.dataset];
        let (calibration_data, data) = if calibration_items > 0 {
            (full.slice(0..calibration_items), full.slice(calibration_items..full.len()))
        } else {
            (full.slice(0..0), full.clone())
        };
        let data = &data;
        let model_cases: Vec<&Case> = cases.iter().filter(|c| c.model == model_idx).collect();
        let reference = guarded(|| Loaded::load(model, &artifacts));
        let is_lm = matches!(model.source, ModelSource::Gguf { .. });
        let reference_outputs =
            reference.as_ref().ok().filter(|_| !is_lm).map(|r| guarded(|| reference_outputs(r, &model.name, data)));
        // A language model's reference is its best variant, scored at its first case.
        let mut lm_reference: Option<Result<LmReference, String>> = None;
        // Scores per (scheme, backend): a batch size's case reuses its engine's score, never
        // another engine's (candle-cuda's perplexity is measured on the GPU).
        let mut lm_scores: HashMap<(quant::SchemeId, BackendId), lm::LmScore> = HashMap::new();
        let mut calibration: Option<Result<quant::Calibration, String>> = None;
        if let Some(Err(e)) = &reference_outputs {
            progress(&format!("{}: reference outputs failed: {e:#}; agreement columns stay empty", model.name));
        }
        let reference_outputs = reference_outputs.and_then(|r| r.ok());
        // The model's weighted layers: from the architecture, or from the loaded file.
        let layers = match &reference {
            Ok(r) => r.layers(),
            Err(_) => model.known_layers().unwrap_or_default(),
        };
        if model.known_layers().is_none() && !layers.is_empty() {
            for (k, o) in suite.overrides.iter().enumerate() {
                let for_model = o.models.as_ref().is_none_or(|m| m.contains(&model_idx));
                if for_model && !o.matches_any(&layers) {
                    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
                    progress(&format!(
                        "WARNING: [[overrides]] entry {} matches no layer of model \"{}\"; its layers are: {}",
                        k + 1,
                        model.name,
                        names.join(", ")
                    ));
                }
            }
        }
        let mut variants: HashMap<quant::SchemeId, Result<Variant, String>> = HashMap::new();
        for case in model_cases {
            index += 1;
            if !selected[index - 1] {
                continue;
            }
            done += 1;
            let plan = suite.plan(case.model, case.scheme, &layers);
            let mut record = base_record(suite, &env, &run_id, index - 1, case, &plan, data);
            record.shard = options.shard.map(|s| s.name()).unwrap_or_default();
            record.noise_probe_ns = Some(crate::measure::probe::probe_ns());
            record.calibration_items = calibration_items;
            if let Ok(r) = &reference {
                record.parameters = r.parameters();
                record.reference_backend = r.reference_backend().name().to_string();
            }
            // No usable GPU (or CUDA library) skips the CUDA cases, with the probe's reason.
            let realization = match crate::backend::gpu::unavailable(case.backend, suite.cuda_device) {
                Some(why) => crate::quant::Realization::Unsupported(why),
                None => realization(model, &plan, case.backend, case.batch),
            };
            record.realization = realization.name().to_string();
            let unsupported = match realization {
                crate::quant::Realization::Unsupported(why) => Some(why),
                _ => None,
            };
            if let Some(why) = unsupported {
                record.status = CaseStatus::Skipped;
                record.error = Some(why.to_string());
                sink.append(&record)?;
                records.push(record);
                progress(&format!(
                    "[{done}/{total}] {} {} {} batch {}: skipped: {why}",
                    model.name,
                    case.scheme.name(),
                    case.backend.name(),
                    case.batch
                ));
                continue;
            }
            let outcome = match &reference {
                Err(e) => Err(e.to_string()),
                Ok(reference) => {
                    record.model_sha256 = Some(reference.sha256().to_string());
                    if plan.needs_calibration() && calibration.is_none() {
                        let percentile = suite.calibration.as_ref().map_or(0.0, |c| c.percentile);
                        calibration = Some(
                            guarded(|| reference.calibrate(&calibration_data, percentile))
                                .map_err(|e| format!("calibration failed: {e}")),
                        );
                    }
                    if is_lm && lm_reference.is_none() {
                        lm_reference = Some(lm_reference_scores(
                            suite,
                            case.model,
                            &layers,
                            reference,
                            data,
                            &artifacts,
                            &mut variants,
                        ));
                        if let Some(Ok(r)) = &lm_reference {
                            lm_scores.insert((r.scheme, REFERENCE_BACKEND), r.score.clone());
                        }
                    }
                    variants.entry(case.scheme).or_insert_with(|| {
                        let cal = match &calibration {
                            Some(Err(e)) if plan.needs_calibration() => return Err(e.clone()),
                            Some(Ok(c)) => Some(c),
                            _ => None,
                        };
                        guarded(|| reference.apply(&model.name, &plan, &artifacts, cal)).map_err(|e| e.to_string())
                    });
                    let variant = &variants[&case.scheme];
                    if is_lm {
                        let cached = lm_scores.get(&(case.scheme, case.backend)).cloned();
                        match (variant, &lm_reference) {
                            (Err(e), _) => Err(e.clone()),
                            (_, Some(Err(e))) => Err(format!("the reference variant failed: {e}")),
                            (_, None) => Err("no reference variant".to_string()),
                            (Ok(v), Some(Ok(lm_ref))) => {
                                guarded(|| measure_lm_case(suite, case, v, data, lm_ref, cached, &mut record))
                                    .map(|score| {
                                        lm_scores.entry((case.scheme, case.backend)).or_insert(score);
                                    })
                                    .map_err(|e| e.to_string())
                            }
                        }
                    } else {
                        // Without reference outputs a zoo model still has its known classes; a model
                        // file's output size is learned from its reference run.
                        let classes = match &variant {
                            Ok(v) => {
                                v.zoo().map(|z| z.num_classes()).or(reference_outputs.as_ref().map(|r| r.per_item))
                            }
                            Err(_) => None,
                        };
                        match (variant, classes) {
                        (Err(e), _) => Err(e.clone()),
                        (Ok(_), None) => Err("the f32 reference could not run, so this model's outputs cannot be scored; see the reference error above".into()),
                        // A model file's labels are checked against the classes it outputs.
                        (Ok(v), Some(classes)) => match check_labels(data, model, classes) {
                            Err(e) if v.zoo().is_none() => Err(e.to_string()),
                            _ => {
                                let reference = reference_outputs.as_ref().map(|r| r.values.as_slice());
                                guarded(|| measure_case(suite, case, v, data, classes, reference, &mut record))
                                    .map_err(|e| e.to_string())
                            }
                        },
                    }
                    }
                }
            };
            let line = match outcome {
                Ok(()) => format!(
                    "[{done}/{total}] {} {} {} batch {}: median {:.1} µs, {}",
                    model.name,
                    case.scheme.name(),
                    case.backend.name(),
                    case.batch,
                    record.latency_median_ns.unwrap_or(f64::NAN) / 1e3,
                    quality(&record)
                ),
                Err(e) => {
                    record.status = CaseStatus::Failed;
                    record.error = Some(e.clone());
                    format!(
                        "[{done}/{total}] {} {} {} batch {}: FAILED: {e}",
                        model.name,
                        case.scheme.name(),
                        case.backend.name(),
                        case.batch
                    )
                }
            };
            sink.append(&record)?;
            records.push(record);
            progress(&line);
        }
    }
    Ok(RunSummary { run_dir, records })
}

/// Prepare (untimed), evaluate on the whole dataset, then sample latency.
fn measure_case(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    classes: usize,
    reference: Option<&[f32]>,
    record: &mut Record,
) -> Result<()> {
    let mut prepared = prepare_case(suite, case, variant, data, record)?;
    let session = prepared.session.as_mut();
    let latency_batch = data.batch_f32(0, case.batch, case.batch);
    let logits = eval::run_dataset(session, case.backend, data, case.batch, classes)?;
    record.eval_items = Some(data.len());
    // An encoder's output is an embedding: no classes to score against labels or to agree on.
    let embedding = matches!(variant.arch, quant::Arch::Bert(_));
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

    session.set_input(&latency_batch)?;
    let (sampled, sampling_peak) = memory::peak_added(|| latency::sample(&suite.measure, || session.run()));
    let sampled = sampled?;
    record.input_copy_median_ns = input_copy_median_ns(session, &latency_batch)?;
    record.run_peak_rss_bytes = [record.run_peak_rss_bytes, sampling_peak].into_iter().flatten().max();
    record.warmup_iters = suite.measure.warmup_iters;
    record.latency_ci_target_pct = suite.measure.target_rel_ci * 100.0;
    record.latency_ci_target_met = sampled.target_met;
    record.set_latency(sampled.samples_ns, case.batch);
    Ok(())
}

/// Copies of the input to the device, timed apart from the runs: the median of
/// [`INPUT_COPIES`] copies of the latency batch, for sessions that copy it on their own.
fn input_copy_median_ns(session: &mut dyn crate::backend::Session, batch: &[f32]) -> Result<Option<f64>> {
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

/// How many input copies [`input_copy_median_ns`] times.
const INPUT_COPIES: usize = 21;

/// Everything before evaluation: the native requirement, prepare (timed apart, with the memory
/// it adds), the artifact's figures, and the cold start (the first run on the latency batch).
fn prepare_case(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    record: &mut Record,
) -> Result<crate::backend::Prepared> {
    if suite.require_native && record.realization != crate::quant::Realization::Native.name() {
        return Err(Error::NotNative {
            scheme: case.scheme.name(),
            backend: case.backend.name(),
            realization: record.realization.clone(),
        });
    }
    let backend = case.backend.create();
    let gpu_before = if case.backend.is_cuda() { crate::backend::gpu::memory_used_bytes() } else { None };
    // Timed inside the memory measurement, so resetting the OS's peak is not counted.
    let ((prepared, prepare_ns), prepare_peak) = memory::peak_added(|| {
        let started = Instant::now();
        (backend.prepare(variant, case.batch), started.elapsed().as_nanos() as u64)
    });
    let mut prepared = prepared?;
    record.prepare_ns = Some(prepare_ns);
    record.prepare_peak_rss_bytes = prepare_peak;
    record.weights_bytes = prepared.weights_bytes;
    record.artifact = Some(prepared.artifact.display().to_string());
    record.artifact_bytes = Some(prepared.artifact_bytes);
    record.bits_per_weight = Some(variant.bits_per_weight);
    record.weight_storage = Some(variant.weight_storage.clone());
    record.activation_quant = (!variant.activation_quant.is_empty()).then(|| variant.activation_quant.clone());
    record.evidence = Some(prepared.evidence.clone());

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

/// A language model's reference: its highest-precision variant's scores, with the top-k
/// next-token log-probabilities every other variant is compared with.
struct LmReference {
    scheme: quant::SchemeId,
    score: lm::LmScore,
}

/// Builds and scores the language model's reference variant: the suite's scheme that stores
/// weights most precisely (activation schemes cannot run), on candle. Its top-k log-probabilities
/// are written to `artifacts/<model>.reference-top<k>.safetensors`.
fn lm_reference_scores(
    suite: &Suite,
    model: usize,
    layers: &[(String, usize)],
    reference: &Loaded,
    data: &Dataset,
    artifacts: &Path,
    variants: &mut HashMap<quant::SchemeId, Result<Variant, String>>,
) -> Result<LmReference, String> {
    let name = &suite.models[model].name;
    let scheme = suite
        .schemes
        .iter()
        .filter_map(|s| s.weight_precision().map(|p| (*s, p)))
        .fold(None, |best: Option<(quant::SchemeId, f64)>, (s, p)| match best {
            Some((_, bp)) if bp >= p => best,
            _ => Some((s, p)),
        })
        .map(|(s, _)| s)
        .ok_or("the suite has no weight scheme a language model can run (f32, f16, bf16, GGML types, weight-only int8/int4)")?;
    let plan = suite.plan(model, scheme, layers);
    let variant = variants
        .entry(scheme)
        .or_insert_with(|| guarded(|| reference.apply(name, &plan, artifacts, None)).map_err(|e| e.to_string()))
        .clone()?;
    let score = guarded(|| {
        let mut prepared = REFERENCE_BACKEND.create().prepare(&variant, 1)?;
        let decoder = prepared.session.decoder().ok_or_else(|| {
            crate::backend::BackendError::engine(REFERENCE_BACKEND, "scoring the text", "the session is not a decoder")
        })?;
        Ok(lm::score(decoder, REFERENCE_BACKEND, data, None)?)
    })
    .map_err(|e| format!("{} variant: {e}", scheme.name()))?;
    let path = artifacts.join(format!("{name}.reference-top{}.safetensors", score.top.k));
    lm::write_top_k(&path, &score.top, &scheme.name()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(LmReference { scheme, score })
}

/// A language model's case: prepare (untimed) and cold start as for any model, then perplexity
/// and agreement with the reference over every window (reused from an earlier batch size's case
/// of the same scheme: scoring does not depend on the batch), then the latency of prompt
/// processing (the run) and of generation.
fn measure_lm_case(
    suite: &Suite,
    case: &Case,
    variant: &Variant,
    data: &Dataset,
    reference: &LmReference,
    cached: Option<lm::LmScore>,
    record: &mut Record,
) -> Result<lm::LmScore> {
    let mut prepared = prepare_case(suite, case, variant, data, record)?;
    let session = prepared.session.as_mut();
    let bad = |m: &str| crate::backend::BackendError::engine(case.backend, "scoring the text", m);
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
    // The reference itself on its own engine agrees by definition; on another engine (a GPU)
    // it is compared like any variant.
    if case.scheme == reference.scheme && case.backend == REFERENCE_BACKEND {
        (record.ref_top1_agreement, record.ref_kl_mean, record.ref_kl_stderr) = (Some(1.0), Some(0.0), Some(0.0));
    } else if let Some(v) = &score.vs_reference {
        record.ref_top1_agreement = Some(v.top1_agreement);
        (record.ref_kl_mean, record.ref_kl_stderr) = (Some(v.kl.mean), Some(v.kl.stderr));
    }

    // Prompt processing: the run, on the first `batch` windows.
    let seq = data.item_shape.iter().product::<usize>();
    let batch_ids = data.batch_f32(0, case.batch, case.batch);
    session.set_input(&batch_ids)?;
    let (sampled, pp_peak) = memory::peak_added(|| latency::sample(&suite.measure, || session.run()));
    let sampled = sampled?;
    record.input_copy_median_ns = input_copy_median_ns(session, &batch_ids)?;
    record.warmup_iters = suite.measure.warmup_iters;
    record.latency_ci_target_pct = suite.measure.target_rel_ci * 100.0;
    record.latency_ci_target_met = sampled.target_met;
    record.set_latency(sampled.samples_ns, case.batch);
    record.pp_tokens_per_s = record.latency_median_ns.map(|m| (case.batch * seq) as f64 * 1e9 / m);

    // Generation: up to 128 tokens (llama-bench's tg128), one position at a time, from an empty
    // cache; the windows' own tokens stand in for sampled ones (the same work).
    let tg = seq.min(TG_TOKENS);
    let columns: Vec<Vec<u32>> =
        (0..tg).map(|p| (0..case.batch).map(|b| batch_ids[b * seq + p] as u32).collect()).collect();
    let decoder = session.decoder().ok_or_else(|| bad("the session is not a decoder"))?;
    let (tg_sampled, tg_peak) = memory::peak_added(|| {
        latency::sample(&suite.measure, || {
            decoder.reset();
            for (p, ids) in columns.iter().enumerate() {
                decoder.step(ids, case.batch, p)?;
            }
            Ok::<(), crate::backend::BackendError>(())
        })
    });
    let tg_samples = tg_sampled?.samples_ns;
    if let Some(s) = crate::measure::stats::LatencyStats::from_samples(&tg_samples) {
        record.tg_tokens_per_s = Some((case.batch * tg) as f64 * 1e9 / s.median_ns);
    }
    record.tg_tokens = Some(tg);
    record.tg_samples_ns = tg_samples;
    record.run_peak_rss_bytes = [record.run_peak_rss_bytes, pp_peak, tg_peak].into_iter().flatten().max();
    Ok(score)
}

/// Tokens generated per generation sample (at most the window's length).
const TG_TOKENS: usize = 128;

/// The progress line's quality figure: top-1 when there are labels, else agreement with the
/// f32 reference (cosine for embeddings).
fn quality(r: &Record) -> String {
    if let Some(ppl) = r.perplexity {
        let kl = r.ref_kl_mean.map_or(String::new(), |kl| format!(", KL vs {} {kl:.2e}", r.reference_scheme));
        let speed = match (r.pp_tokens_per_s, r.tg_tokens_per_s) {
            (Some(pp), Some(tg)) => format!(", pp {pp:.0} t/s, tg {tg:.0} t/s"),
            _ => String::new(),
        };
        return format!("perplexity {ppl:.3}{kl}{speed}");
    }
    match (r.top1_accuracy, r.ref_top1_agreement, r.ref_cosine_mean) {
        (Some(t), _, _) => format!("top-1 {:.2}%", 100.0 * t),
        (None, Some(a), _) => format!("top-1 agreement with f32 {:.2}%", 100.0 * a),
        (None, None, Some(c)) => format!("cosine to f32 {c:.6}"),
        _ => "no quality figure".into(),
    }
}

/// How `backend` runs `plan` on this model at `batch` items per run: the schemes' realization,
/// narrowed by what the model's path through the engine allows.
fn realization(model: &ModelEntry, plan: &quant::Plan, backend: BackendId, batch: usize) -> quant::Realization {
    use quant::Realization;
    if let Some(why) = model.unsupported_on(backend) {
        return Realization::Unsupported(why);
    }
    let scheme = plan.realization(backend);
    match &model.source {
        ModelSource::Bert { .. } => {
            if plan.quantizes_activations() {
                Realization::Unsupported("candle-transformers' BERT has no hook on each layer's input, so dynamic and static int8 cannot run on it; weight-only schemes and GGML types can")
            } else if scheme == Realization::Native && plan.layers.iter().any(|(_, s)| *s != quant::SchemeId::F32) {
                // Its linear layers are candle_nn::Linear in f32: GGML weights are dequantized
                // and f16 ones widened at load (see backend/candle_bert.rs).
                Realization::Emulated
            } else {
                scheme
            }
        }
        // candle-onnx interprets float graphs: no QDQ or integer ops, no bfloat16 tensors.
        ModelSource::Onnx { .. } if backend == BackendId::CandleCpu => {
            let schemes: Vec<quant::SchemeId> = plan.layers.iter().map(|(_, s)| *s).chain([plan.scheme]).collect();
            if schemes.iter().any(|s| s.weight_format().is_some()) {
                Realization::Unsupported("candle-onnx 0.11 implements no DequantizeLinear, QuantizeLinear, MatMulInteger or ConvInteger, so integer ONNX graphs run on tract only; f32, f16 and GGML variants run on both")
            } else if schemes.contains(&quant::SchemeId::Bf16) {
                Realization::Unsupported("candle-onnx 0.11 reads no bfloat16 tensors")
            } else if plan.layers.iter().any(|(_, s)| *s != quant::SchemeId::F32) {
                // f16 is cast to f32 by the graph, GGML weights are stored dequantized.
                Realization::Emulated
            } else {
                Realization::Native
            }
        }
        ModelSource::Gguf { .. } => {
            if plan.quantizes_activations() {
                return Realization::Unsupported("candle-transformers' quantized models have no hook on each layer's input, so dynamic and static int8 cannot run on them; weight-only schemes and GGML types can");
            }
            // The output layer (the token embedding when the file ties them).
            let output = plan
                .layers
                .iter()
                .find(|(l, _)| l == "output")
                .or_else(|| plan.layers.iter().find(|(l, _)| l == "token_embd"));
            if batch > 1 && output.is_some_and(|(_, s)| s.is_ggml()) {
                return Realization::Unsupported("candle-transformers 0.11's quantized llama/qwen2 cannot process a prompt of several rows when the output layer is a GGML type: it hands QMatMul the last position as a non-contiguous slice, which QMatMul refuses; run GGUF language models at batch 1, or keep the output layer in f16 with an [[overrides]] entry (layers = [\"output\"])");
            }
            // QMatMul runs GGML blocks; it widens f16/bf16 to f32 at load, and integer schemes
            // are stored dequantized (see quant/gguf_lm.rs).
            let emulated =
                plan.layers.iter().any(|(_, s)| !matches!(s, quant::SchemeId::F32 | quant::SchemeId::Ggml(_)));
            if emulated {
                Realization::Emulated
            } else {
                Realization::Native
            }
        }
        _ => scheme,
    }
}

/// The f32 reference's outputs on the whole dataset, computed once per model.
struct ReferenceOutputs {
    /// `len × per_item` values.
    values: Vec<f32>,
    /// Output values per item (classes, for a classifier).
    per_item: usize,
}

fn reference_outputs(reference: &Loaded, name: &str, data: &Dataset) -> Result<ReferenceOutputs> {
    let backend = reference.reference_backend();
    let variant = reference.f32_variant(name);
    let batch = match reference {
        Loaded::Onnx(m, _) => m.inputs[0].fixed_batch.unwrap_or(REFERENCE_BATCH),
        Loaded::Zoo(_) => REFERENCE_BATCH,
        // Transformers: a smaller batch bounds the attention's memory.
        Loaded::Bert(_) | Loaded::Gguf(_) => BERT_BATCH,
    };
    let mut prepared = backend.create().prepare(&variant, batch)?;
    let session = prepared.session.as_mut();
    let per_item = match variant.zoo() {
        Some(zoo) => zoo.num_classes(),
        None => {
            // A model file's output size is what it outputs for one batch.
            session.set_input(&data.batch_f32(0, batch.min(data.len()), batch))?;
            session.run()?;
            let n = session.output()?.len();
            if n == 0 || n % batch != 0 {
                return Err(crate::backend::BackendError::engine(
                    backend,
                    "reading the output",
                    format!("{n} output values for a batch of {batch}; the output's first axis must be the batch"),
                )
                .into());
            }
            n / batch
        }
    };
    let values = eval::run_dataset(session, backend, data, batch, per_item)?;
    Ok(ReferenceOutputs { values, per_item })
}

/// Runs `f`, turning a panic inside an engine into an error so one case cannot abort the suite.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Panic(msg))
        }
    }
}

fn base_record(
    suite: &Suite,
    env: &Environment,
    run_id: &str,
    case_index: usize,
    case: &Case,
    plan: &quant::Plan,
    data: &Dataset,
) -> Record {
    let model = &suite.models[case.model];
    let gpu = env.gpu.as_ref().filter(|_| case.backend.is_cuda());
    Record {
        run_id: run_id.to_string(),
        case_index,
        suite: suite.name.clone(),
        suite_sha256: suite.sha256.clone(),
        suite_file: std::fs::canonicalize(&suite.file).unwrap_or_else(|_| suite.file.clone()).display().to_string(),
        model: model.name.clone(),
        zoo: model.zoo().map(|z| z.name().to_string()).unwrap_or_default(),
        model_sha256: None,
        dataset: data.name.clone(),
        dataset_sha256: data.sha256.clone(),
        scheme: case.scheme.name(),
        backend: case.backend.name().to_string(),
        device: if case.backend.is_cuda() { format!("cuda:{}", suite.cuda_device) } else { "cpu".to_string() },
        threads: suite.threads,
        batch: case.batch,
        status: CaseStatus::Ok,
        error: None,
        artifact: None,
        artifact_bytes: None,
        bits_per_weight: None,
        realization: plan.realization(case.backend).name().to_string(),
        weight_storage: None,
        layer_overrides: plan.describe_overrides(),
        activation_quant: None,
        calibration_items: 0,
        evidence: None,
        parameters: model.zoo().map_or(0, |z| z.parameter_count()),
        prepare_ns: None,
        warmup_iters: 0,
        samples_ns: Vec::new(),
        latency_min_ns: None,
        latency_max_ns: None,
        latency_mean_ns: None,
        latency_stddev_ns: None,
        latency_median_ns: None,
        latency_p90_ns: None,
        latency_p99_ns: None,
        latency_median_ci_low_ns: None,
        latency_median_ci_high_ns: None,
        throughput_items_per_s: None,
        eval_items: None,
        top1_accuracy: None,
        reference_backend: REFERENCE_BACKEND.name().to_string(),
        ref_top1_agreement: None,
        ref_max_abs_logit_diff: None,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        qbench_version: env.qbench_version.clone(),
        git_commit: env.git_commit.clone(),
        git_dirty: env.git_dirty.clone(),
        candle_version: env.candle_version.clone(),
        tract_version: env.tract_version.clone(),
        rustc_version: env.rustc_version.clone(),
        cargo_features: env.cargo_features.clone(),
        debug_build: env.debug_build,
        os: env.os.clone(),
        cpu_model: env.cpu_model.clone(),
        cpu_flags: env.cpu_flags.clone(),
        logical_cores: env.logical_cores,
        gpu_name: gpu.map(|g| g.name.clone()),
        gpu_total_memory_bytes: gpu.map(|g| g.memory_bytes),
        gpu_compute_capability: gpu.map(|g| g.compute_capability.clone()),
        gpu_driver_version: gpu.and_then(|g| g.driver_version.clone()),
        cuda_driver_version: gpu.map(|g| g.driver_cuda_version.clone()),
        cuda_build_version: gpu.map(|g| g.build_cuda_version.clone()),
        ..Default::default()
    }
}

/// `<root>/<UTC timestamp>`, with a numeric suffix if two runs start in the same second.
fn create_run_dir(root: &Path) -> Result<(String, PathBuf)> {
    create_dir(root)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    for n in 1.. {
        let id = if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") };
        let dir = root.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::Output { path: dir, source }),
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Output { path: dir.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Output { path: path.to_path_buf(), source })
}
