//! Per-layer error localization: where in the network a quantized variant departs from fp32.
//!
//! Each weighted layer's output (after its bias, before activation) is captured by the backend
//! itself, in the fp32 model and in the quantized one, on the same images:
//! - **cumulative**: the whole plan quantized, so a layer's SQNR includes the error every layer
//!   before it passed on;
//! - **isolated**: only that layer quantized (every other layer f32), so its own SQNR, and the
//!   logits' SQNR, show what that layer alone costs;
//! - **kept in float**: the whole plan but that layer, which is what an override keeping it in
//!   f32 gives. Its top-1 accuracy on the same images ranks the suggestions, so the suggested
//!   override is the one that measurably buys back the most.
//!
//! SQNR pools each layer's output over the images (Σ ref² / Σ (ref − x)²).

use std::path::Path;

use crate::backend::{BackendError, BackendId, Capture};
use crate::quant::{Plan, SchemeId, Variant, VariantError};

/// Why a case could not be localized.
#[derive(Debug, thiserror::Error)]
pub enum LocalizeError {
    #[error(transparent)]
    Variant(#[from] VariantError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot create {path}; check that the run folder is writable")]
    Folder {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One weighted layer's error against fp32.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    pub layer: String,
    /// The layer's scheme in the plan.
    pub scheme: SchemeId,
    /// The type the variant really stores the layer in: the plan's, or f32 where the scheme
    /// has no kernel for the layer (a conv under a GGML scheme stays f32).
    pub stored: SchemeId,
    /// SQNR (dB) of this layer's output with the whole plan quantized; `None` when identical.
    pub cumulative_sqnr_db: Option<f64>,
    /// SQNR (dB) of this layer's output with only this layer quantized.
    pub isolated_sqnr_db: Option<f64>,
    /// SQNR (dB) of the logits with only this layer quantized.
    pub isolated_logits_sqnr_db: Option<f64>,
    /// The plan with this one layer kept in f32 (what an override would give): logits SQNR
    /// and top-1 accuracy on the same images. `None` for layers already f32.
    pub kept_float_logits_sqnr_db: Option<f64>,
    pub kept_float_top1_accuracy: Option<f64>,
    /// Top-1 with this layer kept f32 minus the plan's, on the same items, with its paired
    /// 95% interval (Agresti–Min): `(Δ, low, high)`.
    pub kept_float_top1_gain: Option<(f64, f64, f64)>,
}

/// Why a layer is suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Keeping it in float raises top-1, with a paired interval above zero.
    Top1,
    /// Top-1 cannot tell on these items (no layer's interval is above zero), but the logits'
    /// SQNR rises by at least [`MIN_SQNR_GAIN_DB`] and top-1 is not measurably worse.
    Sqnr,
}

/// The least rise of the logits' SQNR that suggests a layer when top-1 cannot tell: 3 dB, half
/// the noise power.
pub const MIN_SQNR_GAIN_DB: f64 = 3.0;

/// A plan whose logits are this close to fp32 (noise power a millionth of the signal: f16
/// rounding territory) has nothing left to buy back, so no layer is suggested by SQNR alone.
pub const NEGLIGIBLE_ERROR_SQNR_DB: f64 = 60.0;

/// Per-layer errors of a plan, and the plan's own figures on the same images.
#[derive(Debug, Clone, PartialEq)]
pub struct Localization {
    pub items: usize,
    pub layers: Vec<LayerError>,
    pub fp32_top1_accuracy: f64,
    pub plan_top1_accuracy: f64,
    pub plan_logits_sqnr_db: Option<f64>,
    /// Whether top-1 is against labels; without labels it is agreement with fp32's top-1.
    pub against_labels: bool,
}

/// Images per batch while localizing.
pub const CHUNK: usize = 250;

/// Sums for one variant: per layer Σ ref² and Σ (ref − x)², and its logits.
struct Acc {
    signal: Vec<f64>,
    noise: Vec<f64>,
    logits: Vec<f32>,
}

impl Acc {
    fn sqnr(&self, layer: usize) -> Option<f64> {
        let (s, n) = (self.signal[layer], self.noise[layer]);
        (s > 0.0 && n > 0.0).then(|| 10.0 * (s / n).log10())
    }
}

/// Builds the variant of a plan (the reference model quantized by it) with its artifacts in a
/// folder: how [`localize`] gets each variant, whatever the kind of model.
pub type ApplyPlan<'a> = dyn Fn(&Plan, &Path) -> Result<Variant, VariantError> + 'a;

/// Runs the localization of `plan` on `backend` (on `cuda_device` for a GPU backend) over the
/// first `items` items of `data`.
/// Artifacts of the variants it builds go under `work_dir`. Scores are against the model's
/// output (logits for a classifier; top-1 against the labels when the data has them).
pub fn localize(
    apply: &ApplyPlan,
    plan: &Plan,
    backend: BackendId,
    cuda_device: usize,
    data: &crate::data::Dataset,
    items: usize,
    work_dir: &Path,
) -> Result<Localization, LocalizeError> {
    let engine = backend.create(cuda_device);
    let stored = std::cell::RefCell::new(Vec::new());
    let session = |plan: &Plan, dir: String| -> Result<Box<dyn crate::backend::LayerSession>, LocalizeError> {
        let dir = work_dir.join(dir.replace(['/', '\\', ':'], "_"));
        std::fs::create_dir_all(&dir).map_err(|source| LocalizeError::Folder { path: dir.clone(), source })?;
        let variant = apply(plan, &dir)?;
        if stored.borrow().is_empty() {
            // The first variant is the plan's: what each layer is really stored as.
            *stored.borrow_mut() = plan.layers.iter().map(|(l, _)| variant.layer_scheme(l)).collect();
        }
        Ok(engine.layer_session(&variant, CHUNK, Capture::Outputs)?)
    };
    let mut f32_plan = plan.clone();
    f32_plan.layers.iter_mut().for_each(|(_, s)| *s = SchemeId::F32);
    let quantized: Vec<usize> = (0..plan.layers.len()).filter(|&i| plan.layers[i].1 != SchemeId::F32).collect();
    // Variants: the plan; each quantized layer alone; the plan with each quantized layer kept f32.
    let mut variants = vec![session(plan, "plan".into())?];
    for &i in &quantized {
        let mut alone = f32_plan.clone();
        alone.scheme = plan.scheme;
        alone.layers[i].1 = plan.layers[i].1;
        variants.push(session(&alone, format!("alone-{}", plan.layers[i].0))?);
        let mut kept = plan.clone();
        kept.layers[i].1 = SchemeId::F32;
        variants.push(session(&kept, format!("kept-float-{}", plan.layers[i].0))?);
    }
    let mut fp32 = session(&f32_plan, "f32".into())?;
    let layers = plan.layers.len();
    let mut classes = 0;
    let new_acc = || Acc { signal: vec![0.0; layers + 1], noise: vec![0.0; layers + 1], logits: Vec::new() };
    let mut fp32_logits = Vec::new();
    let mut accs: Vec<Acc> = variants.iter().map(|_| new_acc()).collect();
    let n = items.clamp(1, data.len());
    for start in (0..n).step_by(CHUNK) {
        let count = CHUNK.min(n - start);
        let input = data.batch_f32(start, count, CHUNK);
        let reference_out = fp32.run(&input)?;
        let keep = |v: &[f32]| v[..v.len() / CHUNK * count].to_vec();
        // After the layers comes the model's output: `classes` values an item.
        classes = reference_out[layers].1.len() / CHUNK;
        fp32_logits.extend(keep(&reference_out[layers].1));
        for (variant, acc) in variants.iter_mut().zip(&mut accs) {
            let out = variant.run(&input)?;
            for (l, ((_, r), (_, x))) in reference_out.iter().zip(&out).enumerate() {
                let (r, x) = (keep(r), keep(x));
                acc.signal[l] += r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
                acc.noise[l] += r.iter().zip(&x).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>();
            }
            acc.logits.extend(keep(&out[layers].1));
        }
    }
    // Without labels, top-1 is scored against the fp32 model's own top-1 (agreement).
    let fp32_top1: Vec<u32> = super::eval::top1(&fp32_logits, classes).into_iter().map(|c| c as u32).collect();
    let labels = match &data.labels {
        Some(l) => &l[..n],
        None => fp32_top1.as_slice(),
    };
    let accuracy = |logits: &[f32]| super::eval::accuracy(&super::eval::top1(logits, classes), labels);
    let correct = |logits: &[f32]| -> Vec<bool> {
        super::eval::top1(logits, classes).iter().zip(labels).map(|(p, l)| *p == *l as usize).collect()
    };
    let whole = &accs[0];
    let plan_correct = correct(&whole.logits);
    let stored = stored.into_inner();
    let mut out = Vec::new();
    for (i, (layer, scheme)) in plan.layers.iter().enumerate() {
        let k = quantized.iter().position(|&q| q == i);
        let (alone, kept) = match k {
            Some(k) => (Some(&accs[1 + 2 * k]), Some(&accs[2 + 2 * k])),
            None => (None, None),
        };
        out.push(LayerError {
            layer: layer.clone(),
            scheme: *scheme,
            stored: stored.get(i).copied().unwrap_or(*scheme),
            cumulative_sqnr_db: whole.sqnr(i),
            isolated_sqnr_db: alone.and_then(|a| a.sqnr(i)),
            isolated_logits_sqnr_db: alone.and_then(|a| a.sqnr(layers)),
            kept_float_logits_sqnr_db: kept.and_then(|a| a.sqnr(layers)),
            kept_float_top1_accuracy: kept.map(|a| accuracy(&a.logits)),
            kept_float_top1_gain: kept
                .and_then(|a| super::fidelity::matched_difference(&correct(&a.logits), &plan_correct)),
        });
    }
    Ok(Localization {
        items: n,
        layers: out,
        fp32_top1_accuracy: accuracy(&fp32_logits),
        plan_top1_accuracy: accuracy(&whole.logits),
        plan_logits_sqnr_db: whole.sqnr(layers),
        against_labels: data.labels.is_some(),
    })
}

impl Localization {
    /// The layers worth keeping in float, best first, and on what basis. Only a layer whose
    /// quantization changed something (a GGML conv that stayed f32 did not) and whose kept-f32
    /// top-1 is not measurably worse than the plan's can be suggested:
    /// - by top-1, when keeping it f32 raises top-1 with a paired interval above zero; ranked by
    ///   the gain, then by the interval's lower end;
    /// - only when no layer qualifies so, and the plan's logits are not already within
    ///   [`NEGLIGIBLE_ERROR_SQNR_DB`] of fp32, by the logits' SQNR: a rise of at least
    ///   [`MIN_SQNR_GAIN_DB`] (infinite when the layer alone made the difference), ranked by it.
    pub fn ranked(&self) -> (Vec<&LayerError>, Basis) {
        let candidates: Vec<&LayerError> = self
            .layers
            .iter()
            .filter(|e| e.kept_float_top1_accuracy.is_some() && e.isolated_sqnr_db.is_some())
            .filter(|e| e.kept_float_top1_gain.is_none_or(|(_, _, hi)| hi >= 0.0))
            .collect();
        let gain = |e: &LayerError| e.kept_float_top1_gain.unwrap_or((0.0, 0.0, 0.0));
        let mut by_top1: Vec<&LayerError> = candidates.iter().copied().filter(|e| gain(e).1 > 0.0).collect();
        if !by_top1.is_empty() {
            by_top1.sort_by(|a, b| gain(b).0.total_cmp(&gain(a).0).then(gain(b).1.total_cmp(&gain(a).1)));
            return (by_top1, Basis::Top1);
        }
        let plan_db = self.plan_logits_sqnr_db.unwrap_or(f64::INFINITY);
        if plan_db >= NEGLIGIBLE_ERROR_SQNR_DB {
            return (Vec::new(), Basis::Sqnr);
        }
        let sqnr_gain = |e: &LayerError| e.kept_float_logits_sqnr_db.unwrap_or(f64::INFINITY) - plan_db;
        let mut by_sqnr: Vec<&LayerError> =
            candidates.into_iter().filter(|e| sqnr_gain(e) >= MIN_SQNR_GAIN_DB).collect();
        by_sqnr.sort_by(|a, b| sqnr_gain(b).total_cmp(&sqnr_gain(a)));
        (by_sqnr, Basis::Sqnr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, gain: Option<(f64, f64, f64)>, kept_db: Option<f64>) -> LayerError {
        LayerError {
            layer: name.into(),
            scheme: SchemeId::F16,
            stored: SchemeId::F16,
            cumulative_sqnr_db: Some(20.0),
            isolated_sqnr_db: Some(25.0),
            isolated_logits_sqnr_db: Some(30.0),
            kept_float_logits_sqnr_db: kept_db,
            kept_float_top1_accuracy: gain.map(|(d, _, _)| 0.8 + d),
            kept_float_top1_gain: gain,
        }
    }

    fn localization(layers: Vec<LayerError>) -> Localization {
        Localization {
            items: 500,
            layers,
            fp32_top1_accuracy: 0.85,
            plan_top1_accuracy: 0.8,
            plan_logits_sqnr_db: Some(20.0),
            against_labels: true,
        }
    }

    #[test]
    fn only_layers_that_measurably_help_are_suggested_best_first() {
        // b's interval is above zero and larger than c's; a's straddles zero; d's is below zero
        // even though its SQNR rises most: never suggested.
        let l = localization(vec![
            layer("a", Some((0.004, -0.002, 0.010)), Some(22.0)),
            layer("b", Some((0.030, 0.015, 0.045)), Some(28.0)),
            layer("c", Some((0.010, 0.002, 0.018)), Some(40.0)),
            layer("d", Some((-0.004, -0.008, -0.001)), Some(60.0)),
        ]);
        let (ranked, basis) = l.ranked();
        assert_eq!(basis, Basis::Top1);
        assert_eq!(ranked.iter().map(|e| e.layer.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        // No interval above zero: by SQNR, at least 3 dB, never one measurably worse.
        let l = localization(vec![
            layer("a", Some((0.004, -0.002, 0.010)), Some(22.0)),
            layer("b", Some((0.002, -0.004, 0.008)), Some(35.0)),
            layer("c", Some((0.0, -0.006, 0.006)), Some(24.0)),
            layer("d", Some((-0.004, -0.008, -0.001)), Some(60.0)),
        ]);
        let (ranked, basis) = l.ranked();
        assert_eq!(basis, Basis::Sqnr);
        assert_eq!(ranked.iter().map(|e| e.layer.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        // Nothing helps: nothing suggested.
        let l = localization(vec![layer("a", Some((0.0, -0.004, 0.004)), Some(21.0))]);
        assert!(l.ranked().0.is_empty());
        // A plan already within 60 dB of fp32 (f16): a higher SQNR buys nothing to suggest.
        let mut l = localization(vec![layer("a", Some((0.0, -0.004, 0.004)), Some(86.0))]);
        l.plan_logits_sqnr_db = Some(75.0);
        assert!(l.ranked().0.is_empty());
    }
}
