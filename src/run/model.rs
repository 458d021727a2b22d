//! Per-model state of a run: the reference model, read once; its f32 outputs on the evaluation
//! split, computed once on its reference engine; its variants, one per scheme; its calibration;
//! and, for a language model, its reference scores. Every case of the model reads from here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lm::LmState;
use super::{guarded, root_cause, CaseError, Event, RunOptions};
use crate::backend::{reference_backend, BackendError, BackendId, Capture, ModelQuery, Prepared, Realization, Session};
use crate::data::Dataset;
use crate::measure::outputs::{format_shape, OutputKind, OutputValues};
use crate::measure::{calibration, eval};
use crate::model::{Content, LoadedModel};
use crate::quant::{self, Calibration, Plan, SchemeId, Variant};
use crate::record::{CaseStatus, Record};
use crate::suite::{Case, ModelEntry, Suite};

/// Items per batch of a transformer's reference pass at most: bounds the attention's memory.
const TRANSFORMER_BATCH: usize = 32;

/// The f32 reference's outputs on the evaluation split.
pub(super) struct ReferenceOutputs {
    /// Each output the model returns, over the evaluation split.
    pub outputs: Vec<OutputValues>,
    /// Items per batch of the pass ([`pass_batch`]).
    pub batch: usize,
    /// Peak heap the pass held, prepare included (`None`: not counted).
    pub peak_heap_bytes: Option<u64>,
    /// The engine that computed them: the fastest exact one.
    pub backend: BackendId,
    /// Each candidate engine's time on one batch, and the one chosen.
    pub choice: String,
}

pub(super) struct ModelState<'s> {
    suite: &'s Suite,
    index: usize,
    entry: &'s ModelEntry,
    artifacts: PathBuf,
    /// The evaluation split (after the calibration items).
    data: Dataset,
    calibration_data: Dataset,
    calibration_items: usize,
    loaded: Result<LoadedModel, Arc<CaseError>>,
    /// The weighted layers: from the loaded file, or the architecture when it did not load.
    layers: Vec<(String, usize)>,
    /// The engine that computes the reference, or why none can run the model: then every
    /// case fails with that reason (the model is broken for this build, not the case).
    reference_backend: Result<BackendId, Arc<CaseError>>,
    reference: Option<Result<ReferenceOutputs, Arc<CaseError>>>,
    variants: HashMap<SchemeId, Result<Variant, Arc<CaseError>>>,
    calibration: Option<Result<Calibration, Arc<CaseError>>>,
    lm: LmState,
    /// The f32 variant prepared on each (backend, batch), which the quantized cases there are
    /// measured against in alternating rounds; kept for the model's cases, or why it could not.
    paired_f32: HashMap<(BackendId, usize), Result<Prepared, String>>,
    /// Each (variant, backend)'s evaluation over the split, shared by its cases.
    evals: super::classify::EvalCache,
    /// The process runs this one case (`--only-case`): no f32 session is kept beside it.
    only_case: bool,
    /// `[calibration] repeats`: the calibration subsets and each static case's spread.
    spread: super::spread::Spread,
}

impl<'s> ModelState<'s> {
    /// Reads model `index` of the suite and computes what every case shares.
    pub fn load(
        suite: &'s Suite,
        index: usize,
        full: &Dataset,
        artifacts: &Path,
        progress: &mut dyn FnMut(&Event),
    ) -> ModelState<'s> {
        let entry = &suite.models[index];
        // With a calibration split, every case evaluates on the items after it.
        let calibration_items = super::calibration_items(suite, index);
        // `load_datasets` checked the split can be made; were it not, nothing is held out and
        // the static cases fail on an empty calibration set.
        let (held, data) =
            super::calibration_split(suite, index, full).unwrap_or_else(|_| (full.slice(0..0), full.clone()));
        // With [calibration] repeats, the run calibrates on the first of the held-out subsets.
        let subsets = super::calibration_subsets(suite, &held);
        let calibration_data = subsets[0].clone();
        let loaded = guarded(|| {
            let m =
                LoadedModel::load(&entry.name, &entry.kind, artifacts).map_err(|e| CaseError::Model(Arc::new(e)))?;
            let tokenizer = suite.datasets[entry.dataset].tokenizer.as_deref();
            m.check_dataset(&entry.name, full, tokenizer).map_err(|e| CaseError::Model(Arc::new(e)))?;
            Ok(m)
        })
        .map_err(Arc::new);
        let layers = match &loaded {
            Ok(m) => m.layers.clone(),
            Err(_) => entry.known_layers().unwrap_or_default(),
        };
        let f32_plan = Plan::uniform(layers.as_slice(), SchemeId::F32);
        let reference_backend = match &loaded {
            Ok(m) => {
                reference_backend(ModelQuery::loaded(m), &f32_plan, pass_batch(m, suite, &data)).map_err(|reasons| {
                    Arc::new(CaseError::NoEngine {
                        model: entry.name.clone(),
                        file: entry.file().to_path_buf(),
                        reasons: reasons.to_string(),
                    })
                })
            }
            Err(e) => Err(e.clone()),
        };
        let reference = match (&loaded, &reference_backend) {
            (Ok(m), Ok(backend)) if !m.kind.is_language_model() => {
                let batch = pass_batch(m, suite, &data);
                let outputs = guarded(|| reference_outputs(m, *backend, suite, &data, batch, artifacts))
                    .map_err(|e| Arc::new(CaseError::Reference { backend: backend.name(), source: Arc::new(e) }));
                if let Err(e) = &outputs {
                    progress(&Event::Note(format!(
                        "{}: reference outputs failed: {}; agreement columns stay empty",
                        entry.name,
                        root_cause(e.as_ref())
                    )));
                }
                Some(outputs)
            }
            _ => None,
        };
        // The engine that computed the reference: the fastest exact one.
        let reference_backend = match &reference {
            Some(Ok(r)) => Ok(r.backend),
            _ => reference_backend,
        };
        // Text labels only score a CTC output with an alphabet, which only a declaration makes.
        let reads_texts = entry
            .output_kinds
            .iter()
            .flatten()
            .any(|k| matches!(k, OutputKind::Sequence { ctc: Some(c), .. } if c.alphabet.is_some()));
        if data.texts.is_some() && !reads_texts {
            progress(&Event::Warning(format!(
                "dataset \"{}\" has text_labels, but no output of model \"{}\" reads text: declare its sequence output with ctc_blank and an alphabet in [[models.outputs]] to score exact match and CER",
                data.name, entry.name
            )));
        }
        // Overrides are checked against a model file's layers once it is read.
        if entry.known_layers().is_none() && !layers.is_empty() {
            for (k, o) in suite.overrides.iter().enumerate() {
                let for_model = o.models.as_ref().is_none_or(|m| m.contains(&index));
                if for_model && !o.matches_any(&layers) {
                    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
                    progress(&Event::Warning(format!(
                        "[[overrides]] entry {} matches no layer of model \"{}\"; its layers are: {}",
                        k + 1,
                        entry.name,
                        names.join(", ")
                    )));
                }
            }
        }
        ModelState {
            suite,
            index,
            entry,
            artifacts: artifacts.to_path_buf(),
            data,
            calibration_data,
            calibration_items,
            loaded,
            layers,
            reference_backend,
            reference,
            variants: HashMap::new(),
            calibration: None,
            lm: LmState::default(),
            paired_f32: HashMap::new(),
            evals: HashMap::new(),
            only_case: false,
            spread: super::spread::Spread::new(subsets),
        }
    }

    /// Marks the process as running one case alone (`RunOptions::only_case`).
    pub fn alone(mut self, alone: bool) -> Self {
        self.only_case = alone;
        self
    }

    /// The evaluation split every case of the model runs on.
    pub fn data(&self) -> &Dataset {
        &self.data
    }

    /// Runs one case into `record`: skipped when its backend cannot run it (the backend's
    /// answer), failed with the root cause, or measured.
    pub fn run_case(&mut self, case: &Case, record: &mut Record, options: &RunOptions) {
        let query = match &self.loaded {
            Ok(m) => ModelQuery::loaded(m),
            Err(_) => ModelQuery::declared(&self.entry.kind),
        };
        let (plan, expected) = if options.assume_native {
            (self.suite.plan(case.model, case.scheme, &self.layers), Realization::Native)
        } else {
            super::expectation(self.suite, case, query, &self.layers)
        };
        record.layer_overrides = plan.describe_overrides();
        record.calibration_items = self.calibration_items;
        if self.calibration_items > 0 {
            record.calibration_selection = self.suite.calibration.as_ref().map(|c| c.selection.describe());
        }
        record.eval_split = self.suite.tuning.as_ref().map(|t| t.describe());
        if let (Ok(m), Ok(backend)) = (&self.loaded, &self.reference_backend) {
            record.parameters = m.parameters;
            record.reference_backend = backend.name().to_string();
        }
        if let Some(Ok(r)) = &self.reference {
            record.reference_batch = Some(r.batch);
            record.reference_peak_heap_bytes = r.peak_heap_bytes;
            record.reference_choice = Some(r.choice.clone());
        }
        record.expected_realization = expected.name().to_string();
        // A model no reference engine can run fails every case, whatever the backend.
        if let (Ok(_), Err(e)) = (&self.loaded, &self.reference_backend) {
            return fail(record, CaseError::Shared(e.clone()), self.entry.file());
        }
        if let Realization::Unsupported(why) = expected {
            record.status = CaseStatus::Skipped;
            record.realization = Realization::Unsupported(String::new()).name().to_string();
            record.error = Some(why);
            return;
        }
        if let Err(e) = self.measure(case, &plan, &expected, record) {
            fail(record, e, self.entry.file());
        }
    }

    fn measure(
        &mut self,
        case: &Case,
        plan: &Plan,
        expected: &Realization,
        record: &mut Record,
    ) -> Result<(), CaseError> {
        let model = self.loaded.as_ref().map_err(|e| CaseError::Shared(e.clone()))?;
        record.model_sha256 = Some(model.sha256.clone());
        if let crate::model::Content::Zoo(r) = &model.content {
            record.model_training = r.training.clone();
        }
        if self.suite.require_native && *expected != Realization::Native {
            return Err(CaseError::NotNativeExpected {
                scheme: case.scheme.name(),
                backend: case.backend.name(),
                realization: expected.name().to_string(),
            });
        }
        // A language model's reference is built (and scored) before its variants.
        let lm_reference = if model.kind.is_language_model() {
            let reference_backend = self.reference_backend.clone().map_err(CaseError::Shared)?;
            let (suite, index, layers, data, artifacts) =
                (self.suite, self.index, &self.layers, &self.data, &self.artifacts);
            let variants = &mut self.variants;
            Some(self.lm.reference(|| {
                super::lm::score_reference(suite, index, model, reference_backend, layers, data, artifacts, variants)
            })?)
        } else {
            None
        };
        let variant = variant(
            &mut self.variants,
            &mut self.calibration,
            model,
            plan,
            &self.artifacts,
            &self.calibration_data,
            self.suite,
        )?;
        // Alone in its process (`--only-case`), a case keeps no f32 session beside it: its memory
        // would not be its own.
        let alone = self.only_case;
        let paired = match (
            case.point(self.suite).paired && case.scheme != SchemeId::F32 && !alone,
            self.suite.schemes_of(self.index).contains(&SchemeId::F32),
        ) {
            // Why a quantized case has no speedup against f32, when it has none.
            (false, _) if case.scheme == SchemeId::F32 => None,
            (false, _) if alone => Some(Err(
                "not measured: a case alone in its process (--isolate, --only-case) keeps no f32 session beside it"
                    .to_string(),
            )),
            (false, _) => Some(Err("not measured: [measure] paired = false at this measurement point".to_string())),
            (true, false) => Some(Err("the suite has no f32 scheme to compare with".to_string())),
            (true, true) => Some(paired_f32(
                &mut self.paired_f32,
                &mut self.variants,
                &mut self.calibration,
                model,
                &self.layers,
                &self.artifacts,
                &self.calibration_data,
                self.suite,
                case,
            )),
        };
        if let Some(reference) = lm_reference {
            return super::lm::measure(
                self.suite,
                case,
                &variant,
                &self.data,
                &reference,
                &mut self.lm,
                paired,
                record,
            );
        }
        // Without reference outputs a zoo model still has its known classes; a model file's
        // outputs are learned from its reference run.
        let reference = match &self.reference {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) if variant.zoo().is_none() => return Err(CaseError::Shared(e.clone())),
            _ => None,
        };
        let kinds = match (variant.zoo(), reference) {
            (_, Some(r)) => output_kinds(self.entry, &model.kind, &r.outputs)?,
            (Some(_), None) => vec![(OutputKind::Classes, ZOO_KIND.to_string())],
            (None, None) => {
                return Err(CaseError::NoEngine {
                    model: self.entry.name.clone(),
                    file: self.entry.file().to_path_buf(),
                    reasons: "its reference outputs were not computed".into(),
                })
            }
        };
        // A model file's labels are checked against what the output they score can hold.
        if variant.zoo().is_none() {
            if let Some(r) = reference {
                let shapes: Vec<Vec<usize>> = r.outputs.iter().map(|o| o.item_shape.clone()).collect();
                if let (Some(i), Some(labels)) = (super::classify::label_targets(&kinds, &shapes).0, &self.data.labels)
                {
                    if kinds[i].0 == OutputKind::Classes {
                        super::datasets::check_labels(&self.data, self.entry, r.outputs[i].per_item())?;
                    } else if let Some(&l) = labels.iter().find(|&&l| l > 1) {
                        return Err(CaseError::Output {
                            model: self.entry.name.clone(),
                            reason: format!(
                                "output \"{}\" is a single score, judged at its threshold against 0/1 labels, but dataset \"{}\" has label {l}; use 0/1 labels (1: at or above the threshold), or declare the output's kind",
                                r.outputs[i].name, self.data.name
                            ),
                        });
                    }
                }
            }
        }
        let values = reference.map(|r| r.outputs.as_slice());
        // One evaluation per (variant, backend), at the batch the reference pass ran, shared by
        // the cases at every batch size.
        let eval_batch = pass_batch(model, self.suite, &self.data);
        // A case alone in its process (--isolate) has no other case to share with, and its
        // memory figures are its own: it evaluates with its own session.
        let shared = (!self.only_case).then_some((&mut self.evals, eval_batch));
        let measured = guarded(|| {
            super::classify::measure(self.suite, case, &variant, &self.data, &kinds, values, paired, record, shared)
        });
        if measured.is_ok() {
            record.calibration_spread =
                self.spread.measure(self.suite, case, model, plan, &self.artifacts, &self.data, &kinds, values, record);
        }
        // A built-in model's one output has no name of its own (the engines call it "logits"
        // or nothing): the record leaves it empty rather than show each engine's.
        if matches!(model.kind, crate::model::ModelKind::Zoo { .. } | crate::model::ModelKind::Bert { .. }) {
            record.output_name.clear();
            record.outputs.iter_mut().for_each(|o| o.name.clear());
        }
        measured
    }
}

/// Where a zoo model's output kind comes from.
const ZOO_KIND: &str = "a built-in classifier";

/// Each output's kind, as the suite declares it or as its shape implies (a zoo model's is
/// classes, a BERT checkpoint's an embedding), checked against the shape the reference run
/// gave it: a declaration that does not fit the output is the case's error, naming both.
pub(super) fn output_kinds(
    entry: &ModelEntry,
    kind: &crate::model::ModelKind,
    outputs: &[OutputValues],
) -> Result<Vec<(OutputKind, String)>, CaseError> {
    use crate::model::ModelKind;
    let bad = |reason: String| CaseError::Output { model: entry.name.clone(), reason };
    outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let shape = format_shape(&o.item_shape);
            let (k, source) = match (kind, entry.output_kinds.get(i).cloned().flatten()) {
                (ModelKind::Zoo { .. }, _) => (OutputKind::Classes, ZOO_KIND.to_string()),
                (ModelKind::Bert { .. }, _) => (
                    OutputKind::Embedding { k: crate::measure::outputs::DEFAULT_RETRIEVAL_K },
                    "a BERT encoder's mean-pooled embedding".to_string(),
                ),
                (_, Some(k)) => (k, "declared".to_string()),
                (_, None) => OutputKind::infer(&o.item_shape).ok_or_else(|| {
                    bad(format!("output \"{}\" has items of shape {shape}, which fit no output kind", o.name))
                })?,
            };
            let long = o.item_shape.iter().filter(|&&d| d != 1).count();
            match &k {
                OutputKind::Classes if long > 1 => {
                    return Err(bad(format!("output \"{}\" is declared classes, but its items have shape {shape}: classes are one axis; declare kind = \"sequence\" (positions × classes) or \"scores\"", o.name)))
                }
                OutputKind::Sequence { ctc, .. } => {
                    if long != 2 {
                        return Err(bad(format!("output \"{}\" is declared a sequence, but its items have shape {shape}: a sequence has two axes longer than 1 (positions and classes)", o.name)));
                    }
                    let dims: Vec<usize> = o.item_shape.iter().copied().filter(|&d| d != 1).collect();
                    let position_axis = match &k { OutputKind::Sequence { position_axis, .. } => *position_axis, _ => 0 };
                    let classes = dims[1 - position_axis];
                    if let Some(c) = ctc {
                        if c.blank >= classes {
                            return Err(bad(format!("output \"{}\" has {classes} classes per position (items of shape {shape}), so ctc_blank = {} is not one of them", o.name, c.blank)));
                        }
                        if let Some(a) = c.alphabet.as_ref().filter(|a| a.len() != classes) {
                            return Err(bad(format!("output \"{}\" has {classes} classes per position (items of shape {shape}) but the alphabet lists {} symbols; list one per class, the blank's included", o.name, a.len())));
                        }
                    }
                }
                _ => {}
            }
            Ok((k, source))
        })
        .collect()
}

/// Marks the case failed with its root cause, naming the model's file when the cause does not
/// (an engine's message names only its own model). A case that failed before the engine said
/// what it made of the variant has no observed realization.
fn fail(record: &mut Record, e: CaseError, file: &std::path::Path) {
    record.status = CaseStatus::Failed;
    let cause = root_cause(&e);
    let file = file.display().to_string();
    record.error = Some(if cause.contains(&file) { cause } else { format!("{cause} (model file: {file})") });
    if record.layer_evidence.is_empty() {
        record.realization = Realization::NotObserved.name().to_string();
    }
}

/// The variant of `plan` (built once per scheme), calibrating first if it needs it.
#[allow(clippy::too_many_arguments)]
fn variant(
    variants: &mut HashMap<SchemeId, Result<Variant, Arc<CaseError>>>,
    calibration: &mut Option<Result<Calibration, Arc<CaseError>>>,
    model: &LoadedModel,
    plan: &Plan,
    artifacts: &Path,
    calibration_data: &Dataset,
    suite: &Suite,
) -> Result<Variant, CaseError> {
    if plan.needs_calibration() && calibration.is_none() {
        let percentile = suite.calibration.as_ref().map_or(0.0, |c| c.percentile);
        let batch = pass_batch(model, suite, calibration_data);
        *calibration = Some(
            guarded(|| calibrate(model, calibration_data, percentile, suite.cuda_device, batch))
                .map_err(|e| Arc::new(CaseError::Calibration(Arc::new(e)))),
        );
    }
    let built = variants.entry(plan.scheme).or_insert_with(|| {
        let cal = match calibration {
            Some(Err(e)) if plan.needs_calibration() => return Err(e.clone()),
            Some(Ok(c)) => Some(&*c),
            _ => None,
        };
        guarded(|| Ok(quant::apply_model(model, plan, artifacts, cal)?)).map_err(Arc::new)
    });
    built.clone().map_err(CaseError::Shared)
}

/// The f32 session a quantized case is paired with: the model's f32 variant (the suite's f32
/// plan) prepared on the case's backend and batch, once per (backend, batch). Or why there is
/// none: the backend cannot run f32, or preparing it failed.
#[allow(clippy::too_many_arguments)]
fn paired_f32<'p>(
    sessions: &'p mut HashMap<(BackendId, usize), Result<Prepared, String>>,
    variants: &mut HashMap<SchemeId, Result<Variant, Arc<CaseError>>>,
    calibration: &mut Option<Result<Calibration, Arc<CaseError>>>,
    model: &LoadedModel,
    layers: &[(String, usize)],
    artifacts: &Path,
    calibration_data: &Dataset,
    suite: &Suite,
    case: &Case,
) -> Result<&'p mut dyn Session, String> {
    let entry = sessions.entry((case.backend, case.batch)).or_insert_with(|| {
        let plan = suite.plan(case.model, SchemeId::F32, layers);
        let backend = case.backend.create(suite.cuda_device);
        if let Realization::Unsupported(why) = backend.capability(ModelQuery::loaded(model), &plan, case.batch) {
            return Err(format!("{} cannot run f32 here: {why}", case.backend.name()));
        }
        let f32 = variant(variants, calibration, model, &plan, artifacts, calibration_data, suite)
            .map_err(|e| format!("the f32 variant failed: {}", root_cause(&e)))?;
        guarded(|| Ok(backend.prepare(&f32, case.batch)?))
            .map_err(|e| format!("f32 could not be prepared on {}: {}", case.backend.name(), root_cause(&e)))
    });
    match entry {
        Ok(prepared) => Ok(prepared.session.as_mut()),
        Err(why) => Err(why.clone()),
    }
}

/// Bytes of input a pass batch holds at most when it picks its own batch size
/// ([`pass_batch`]): a batch of small items (Fashion-MNIST's 3 KiB) reaches
/// [`PASS_MAX_BATCH`], one of long items (a second of audio, 176 KiB) stays a few items.
const PASS_INPUT_BYTES: usize = 1 << 20;

/// Items per batch of a pass at most. Past it the engines here run no faster per item, and
/// a convolution's activations leave the caches: tract ran the zoo CNN at 111 µs an item at
/// batch 64 and 159 at 256; candle 204 and 210; the MLP gains 10–15% from 64 to 256 on a pass
/// that takes a twentieth of the CNN's.
const PASS_MAX_BATCH: usize = 64;

/// Items per batch of a model's passes over `data` (reference, calibration, and each (variant,
/// backend)'s shared evaluation): an efficient batch, as MLPerf's accuracy mode runs. It is the
/// batch the model file fixes, if it fixes one; otherwise up to [`PASS_MAX_BATCH`] items within
/// [`PASS_INPUT_BYTES`] of input, never less than the suite's largest batch size (its cases run
/// that anyway) and never more than the items there are, so a short dataset of long items is
/// not padded to a big batch. A transformer's pass also stays within [`TRANSFORMER_BATCH`] (its
/// attention grows with the batch).
pub fn pass_batch(model: &LoadedModel, suite: &Suite, data: &Dataset) -> usize {
    // The largest batch this model's cases run at.
    let largest = match suite.models.iter().position(|m| m.name == model.name) {
        Some(i) => suite.batch_sizes_of(i).into_iter().max().unwrap_or(1),
        None => suite.batch_sizes.iter().copied().max().unwrap_or(1),
    };
    let item_bytes = (data.item_size() * std::mem::size_of::<f32>()).max(1);
    let efficient = (PASS_INPUT_BYTES / item_bytes).clamp(1, PASS_MAX_BATCH);
    let free = largest.max(efficient).min(data.len()).max(1);
    match &model.content {
        Content::Onnx { model, .. } => model.inputs[0].fixed_batch.unwrap_or(free),
        Content::Zoo(_) => free,
        Content::Bert(_) => free.min(TRANSFORMER_BATCH),
        // A language model's reference is scored one window at a time (`run::lm`).
        Content::GgufLm(_) => 1,
    }
}

/// The f32 reference's outputs on the whole dataset, computed once per model at `batch` items
/// per run on the fastest engine that runs the model exactly ([`fastest_exact_engine`]), with
/// the peak heap the choice and the pass held.
fn reference_outputs(
    model: &LoadedModel,
    first: BackendId,
    suite: &Suite,
    data: &Dataset,
    batch: usize,
    artifacts: &Path,
) -> Result<ReferenceOutputs, CaseError> {
    let (outcome, allocated) = crate::measure::alloc::measure(|| {
        // A zoo model's f32 form as every engine loads it: its tensors, and the ONNX graph
        // exported from them (tract and ONNX Runtime run that file).
        let variant = match &model.content {
            Content::Zoo(_) => {
                let plan = Plan::uniform(model.layers.as_slice(), SchemeId::F32);
                quant::apply_model(model, &plan, artifacts, None)?
            }
            _ => quant::f32_variant(model),
        };
        // One engine per model for the whole run: the first pass's choice is kept in the run
        // folder, and a resumed run or an isolated case's process (`--isolate`) takes it.
        let pin_file = artifacts.join(format!("{}.reference.txt", crate::files::file_stem(&model.name)));
        let pinned = std::fs::read_to_string(&pin_file).ok().and_then(|t| BackendId::from_name(t.trim()));
        let kept = pinned.and_then(|id| id.create(suite.cuda_device).prepare(&variant, batch).ok().map(|p| (id, p)));
        let (backend, mut prepared, choice) = match kept {
            Some((id, p)) => {
                let why = format!(
                    "{id}, the engine this run's first reference pass of the model chose ({})",
                    pin_file.display()
                );
                (id, p, why)
            }
            None => {
                let chosen = fastest_exact_engine(&variant, first, suite.cuda_device, data, batch)?;
                // Best effort: without the file, a later process times the engines again.
                let _ = std::fs::write(&pin_file, chosen.0.name());
                chosen
            }
        };
        let workers = eval::eval_workers(crate::backend::configured_threads());
        let outputs = eval::run_outputs_parallel(prepared.session.as_mut(), backend, data, batch, workers, || {
            backend.create(suite.cuda_device).prepare(&variant, batch).map(|p| p.session)
        })?;
        check_reference(&variant, backend, outputs).map(|o| (o, backend, choice))
    });
    let (outputs, backend, choice) = outcome?;
    Ok(ReferenceOutputs { outputs, batch, peak_heap_bytes: allocated.map(|a| a.peak_bytes), backend, choice })
}

/// Runs of one batch each candidate engine is timed on, after one untimed run.
const TRIAL_RUNS: usize = 5;

/// How much faster a later engine must be to become the reference over an earlier one.
const REFERENCE_MARGIN: f64 = 1.25;

/// Prepares `variant` (a model's f32 form) on every CPU engine of this build that runs it in
/// exact f32 ([`crate::backend::Backend::computes_exact_f32`]) and times each on the data's
/// first batch (the best of [`TRIAL_RUNS`] after a warm-up run); returns the fastest, still
/// prepared, and what was measured, for the record's `reference_choice`. `first`: the
/// reference engine by registration, a candidate whatever it says (it runs the model).
fn fastest_exact_engine(
    variant: &Variant,
    first: BackendId,
    cuda_device: usize,
    data: &Dataset,
    batch: usize,
) -> Result<(BackendId, Prepared, String), CaseError> {
    let input = data.batch_f32(0, batch.min(data.len()), batch);
    let query = ModelQuery::declared(&variant.kind);
    let mut best: Option<(BackendId, Prepared, u128)> = None;
    let mut lines = Vec::new();
    let mut first_error = None;
    for id in BackendId::all().filter(|id| !id.is_cuda()) {
        let backend = id.create(cuda_device);
        if id != first && !backend.computes_exact_f32(&variant.kind) {
            continue;
        }
        if let Realization::Unsupported(why) = backend.capability(query, &variant.plan, batch) {
            if id == first {
                first_error = Some(BackendError::Unsupported { backend: id.name(), reason: why });
            } else {
                lines.push(format!("{id}: not available ({why})"));
            }
            continue;
        }
        let timed = backend.prepare(variant, batch).and_then(|mut p| {
            let mut fastest = u128::MAX;
            for run in 0..=TRIAL_RUNS {
                p.session.set_input(&input)?;
                let start = std::time::Instant::now();
                p.session.run()?;
                let ns = start.elapsed().as_nanos();
                if run > 0 {
                    fastest = fastest.min(ns);
                }
            }
            Ok((p, fastest))
        });
        match timed {
            Ok((p, ns)) => {
                lines.push(format!("{id} {:.3} ms", ns as f64 / 1e6));
                // An engine later in the registry must be clearly faster (by REFERENCE_MARGIN)
                // to replace an earlier one: two runs of a suite then pick the same reference
                // unless the engines truly differ, and their fidelity figures agree.
                if best.as_ref().is_none_or(|(_, _, b)| (ns as f64) * REFERENCE_MARGIN < *b as f64) {
                    best = Some((id, p, ns));
                }
            }
            Err(e) if id == first => first_error = Some(e),
            Err(e) => lines.push(format!("{id}: failed ({})", root_cause(&e))),
        }
    }
    match best {
        Some((id, prepared, _)) => {
            let choice = format!(
                "{id}, the fastest on one batch of {batch} (best of {TRIAL_RUNS} runs after one; a later engine must be {REFERENCE_MARGIN}× faster to replace an earlier one): {}",
                lines.join("; ")
            );
            Ok((id, prepared, choice))
        }
        None => Err(first_error
            .unwrap_or_else(|| BackendError::engine(first, "preparing the reference", lines.join("; ")))
            .into()),
    }
}

/// The reference's outputs, unless a zoo model's do not have its classes.
fn check_reference(
    variant: &Variant,
    backend: BackendId,
    outputs: Vec<OutputValues>,
) -> Result<Vec<OutputValues>, CaseError> {
    if let (Some(zoo), Some(first)) = (variant.zoo(), outputs.first()) {
        if first.per_item() != zoo.num_classes() {
            return Err(crate::backend::BackendError::engine(
                backend,
                "reading the output",
                format!("{} values per item from a {}-class model", first.per_item(), zoo.num_classes()),
            )
            .into());
        }
    }
    Ok(outputs)
}

/// The fp32 input and output of every weighted layer of `model` over `data` (the calibration
/// split), as its reference engine captures them: what static schemes calibrate on.
pub fn calibrate(
    model: &LoadedModel,
    data: &Dataset,
    percentile: f64,
    cuda_device: usize,
    batch: usize,
) -> Result<Calibration, CaseError> {
    let variant = quant::f32_variant(model);
    let backend =
        reference_backend(ModelQuery::loaded(model), &variant.plan, batch).map_err(|reasons| CaseError::NoEngine {
            model: model.name.clone(),
            file: model.kind.file().to_path_buf(),
            reasons: reasons.to_string(),
        })?;
    let engine = backend.create(cuda_device);
    let mut inputs = engine.layer_session(&variant, batch, Capture::Inputs)?;
    let mut outputs = engine.layer_session(&variant, batch, Capture::Outputs)?;
    Ok(calibration::collect(inputs.as_mut(), outputs.as_mut(), backend, batch, data, percentile)?)
}
