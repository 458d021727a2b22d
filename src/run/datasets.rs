//! The suite's datasets, loaded and checked against the models that use them before anything
//! runs.

use std::path::Path;

use crate::data::split::{self, Selection};
use crate::data::{load_idx, DataError, Dataset, DatasetFormat};
use crate::suite::{ModelEntry, Suite};

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
            (DatasetFormat::Text, labels) => {
                let tokenizer = d.tokenizer.as_deref().unwrap_or(Path::new("tokenizer.json"));
                let labels = labels.as_deref().map(|l| (l, d.label_column.as_deref()));
                if crate::model::gguf_tokenizer::is_gguf(tokenizer) {
                    // A GGUF language model's own tokenizer (`tokenizer.ggml.*`).
                    let tok = crate::model::gguf_tokenizer::from_file(tokenizer).map_err(|reason| DataError::Text {
                        path: tokenizer.to_path_buf(),
                        reason: format!("its own tokenizer cannot be used: {reason}"),
                    })?;
                    let identity = tok.to_string(false).unwrap_or_default();
                    crate::data::load_text_with(
                        &d.name,
                        &d.inputs,
                        &tok,
                        identity.as_bytes(),
                        d.seq_len,
                        d.windows,
                        labels,
                    )
                } else {
                    crate::data::load_text(&d.name, &d.inputs, tokenizer, d.seq_len, d.windows, labels)
                }
            }
        })
        .zip(&suite.datasets)
        .map(|(loaded, d)| match (&d.text_labels, loaded) {
            (Some(path), Ok(data)) => crate::data::attach_texts(data, path),
            (_, loaded) => loaded,
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(d) = datasets.iter().find(|d| d.is_empty()) {
        return Err(DataError::Empty { dataset: d.name.clone(), path: d.inputs_path.clone() });
    }
    for (mi, m) in suite.models.iter().enumerate() {
        let d = &datasets[m.dataset];
        let fits = match m.input_parts() {
            // A model file whose inputs could not be read: its load says why.
            Some(want) if want.is_empty() => true,
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
        if let (Some(c), true) = (&suite.calibration, calibration_items(suite, mi) > 0) {
            if c.items * c.repeats >= d.len() {
                return Err(DataError::CalibrationSplit {
                    at: c.items_at.clone(),
                    items: c.items,
                    repeats: c.repeats,
                    dataset: d.name.clone(),
                    len: d.len(),
                });
            }
            if matches!(c.selection, Selection::Stratified { .. }) && d.labels.is_none() {
                return Err(DataError::StratifiedWithoutLabels {
                    table: "calibration",
                    at: c.items_at.clone(),
                    dataset: d.name.clone(),
                });
            }
        }
        if let Some(t) = &suite.tuning {
            let len = d.len() - calibration_items(suite, mi);
            if t.items >= len {
                return Err(DataError::TuningSplit {
                    at: t.items_at.clone(),
                    items: t.items,
                    dataset: d.name.clone(),
                    len,
                });
            }
            if matches!(t.selection, Selection::Stratified { .. }) && d.labels.is_none() {
                return Err(DataError::StratifiedWithoutLabels {
                    table: "tuning",
                    at: t.items_at.clone(),
                    dataset: d.name.clone(),
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
pub(super) fn check_labels(d: &Dataset, m: &ModelEntry, classes: usize) -> Result<(), DataError> {
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

/// Items of model `model`'s dataset held out to calibrate: `[calibration] items` when one of the
/// model's schemes (or overrides) is static and some CPU engine can run a static scheme on a
/// model of its kind (the engines' capability says so), else 0, so a model with nothing to
/// calibrate is evaluated on its whole dataset. CPU engines only: the split must not depend on
/// whether this machine has a GPU.
pub fn calibration_items(suite: &Suite, model: usize) -> usize {
    use crate::backend::{BackendId, ModelQuery, Realization};
    use crate::quant::{calibrate::Calibrator, ActivationQuant, Plan, SchemeId};
    let Some(c) = &suite.calibration else { return 0 };
    let is_static = |s: &SchemeId| matches!(s.activations(), ActivationQuant::Static(_));
    let suite_static = suite.schemes_of(model).iter().any(is_static);
    let override_static =
        suite.overrides.iter().any(|o| is_static(&o.scheme) && o.models.as_ref().is_none_or(|m| m.contains(&model)));
    if !suite_static && !override_static {
        return 0;
    }
    let kind = &suite.models[model].kind;
    let layers = kind.known_layers().unwrap_or_default();
    let static_plan = Plan::uniform(layers.as_slice(), SchemeId::Int8Static(Calibrator::MinMax));
    let runs_static = BackendId::all().filter(|b| !b.is_cuda()).any(|b| {
        !matches!(b.create(0).capability(ModelQuery::declared(kind), &static_plan, 1), Realization::Unsupported(_))
    });
    if runs_static {
        c.items * c.repeats
    } else {
        0
    }
}

/// Model `model`'s calibration items and evaluation items of its dataset `full`, chosen as
/// `[calibration] select` says ([`split`]); with nothing to calibrate, no item is held out. With
/// a `[tuning]` split, the evaluation items are its `evaluate` part ([`tuning_split`]). Every
/// command that evaluates or calibrates a model splits through here.
pub fn calibration_split(suite: &Suite, model: usize, full: &Dataset) -> Result<(Dataset, Dataset), DataError> {
    let (held, eval) = held_out(suite, model, full)?;
    let eval = match &suite.tuning {
        None => eval,
        Some(t) => {
            let (tune, test) = tuning_split(suite, &eval)?;
            match t.evaluate {
                crate::suite::SplitPart::Tune => tune,
                crate::suite::SplitPart::Test => test,
            }
        }
    };
    Ok((held, eval))
}

/// The calibration items and all the others.
fn held_out(suite: &Suite, model: usize, full: &Dataset) -> Result<(Dataset, Dataset), DataError> {
    let held = calibration_items(suite, model);
    let (Some(c), true) = (&suite.calibration, held > 0) else {
        return Ok((full.slice(0..0), full.clone()));
    };
    let labels = full.labels.as_deref();
    let s = split::split(full.len(), held, labels, c.selection).map_err(|e| match e {
        split::SplitError::NoLabels => DataError::StratifiedWithoutLabels {
            table: "calibration",
            at: c.items_at.clone(),
            dataset: full.name.clone(),
        },
        split::SplitError::TooMany { .. } => DataError::CalibrationSplit {
            at: c.items_at.clone(),
            items: c.items,
            repeats: c.repeats,
            dataset: full.name.clone(),
            len: full.len(),
        },
    })?;
    Ok((full.select(&s.held), full.select(&s.rest)))
}

/// The `[calibration] repeats` disjoint subsets of `items` items each that the held-out items
/// `held` (from [`calibration_split`]) are cut into, each chosen as `select` says: the first is
/// what the run calibrates on, the others measure how much the result depends on which items
/// calibrated. One subset (the held items) without repeats.
pub fn calibration_subsets(suite: &Suite, held: &Dataset) -> Vec<Dataset> {
    let Some(c) = suite.calibration.as_ref().filter(|c| c.repeats > 1 && held.len() >= c.items * c.repeats) else {
        return vec![held.clone()];
    };
    let mut subsets = Vec::with_capacity(c.repeats);
    let mut rest = held.clone();
    for _ in 1..c.repeats {
        match split::split(rest.len(), c.items, rest.labels.as_deref(), c.selection) {
            Ok(s) => {
                subsets.push(rest.select(&s.held));
                rest = rest.select(&s.rest);
            }
            Err(_) => break,
        }
    }
    subsets.push(rest);
    subsets
}

/// The tuning and test splits of the evaluation items `eval` (what is left after calibration):
/// `[tuning] items` of them chosen as its `select` says, and the rest. Both empty-free; the
/// same seed gives the same items, so a tuning decision and its test verdict never share one.
pub fn tuning_split(suite: &Suite, eval: &Dataset) -> Result<(Dataset, Dataset), DataError> {
    let Some(t) = &suite.tuning else { return Ok((eval.slice(0..0), eval.clone())) };
    let s = split::split(eval.len(), t.items, eval.labels.as_deref(), t.selection).map_err(|e| match e {
        split::SplitError::NoLabels => {
            DataError::StratifiedWithoutLabels { table: "tuning", at: t.items_at.clone(), dataset: eval.name.clone() }
        }
        split::SplitError::TooMany { .. } => DataError::TuningSplit {
            at: t.items_at.clone(),
            items: t.items,
            dataset: eval.name.clone(),
            len: eval.len(),
        },
    })?;
    Ok((eval.select(&s.held), eval.select(&s.rest)))
}
