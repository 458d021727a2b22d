//! Plans: which scheme each weighted layer of a model gets.
//!
//! A suite scheme applies to every layer unless an `[[overrides]]` entry gives some layers
//! another one (mixed precision, or keeping the first and last layers in f32). The plan is
//! what gets quantized, checked and recorded; the suite's scheme name stays the case's name.

use std::collections::BTreeMap;

use super::{ActivationQuant, SchemeId};
use crate::zoo::ZooModelId;

/// A model's weighted layers with their row widths, in order: a zoo architecture's, or the
/// quantizable nodes of an ONNX graph.
pub trait LayerWidths {
    fn layer_widths(&self) -> Vec<(String, usize)>;
}

impl LayerWidths for ZooModelId {
    fn layer_widths(&self) -> Vec<(String, usize)> {
        self.weighted_layers().into_iter().map(|(n, w)| (n.to_string(), w)).collect()
    }
}

impl LayerWidths for &[(String, usize)] {
    fn layer_widths(&self) -> Vec<(String, usize)> {
        self.to_vec()
    }
}

/// One scheme per weighted layer, in layer order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The suite's scheme: the case's name, and what every layer gets unless overridden.
    pub scheme: SchemeId,
    pub layers: Vec<(String, SchemeId)>,
}

/// Why a plan cannot be built for a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{scheme}: group size {group} does not divide the row width {width} of layer {layer}; use a group size that divides {width}, or give {layer} another scheme with an [[overrides]] entry")]
    GroupSize { scheme: String, layer: String, width: usize, group: u32 },
    #[error("layer {layer} would be {other} inside a {ggml} model: GGML types live in a GGUF file, which holds only GGML types and f32; override {layer} with f32 or a GGML type")]
    Mixed { layer: String, other: String, ggml: String },
}

impl Plan {
    /// Every layer gets `scheme`.
    pub fn uniform(model: impl LayerWidths, scheme: SchemeId) -> Plan {
        Plan { scheme, layers: model.layer_widths().into_iter().map(|(n, _)| (n, scheme)).collect() }
    }

    /// The layers whose scheme differs from the suite's.
    pub fn overrides(&self) -> impl Iterator<Item = (&str, SchemeId)> {
        self.layers.iter().filter(|(_, s)| *s != self.scheme).map(|(l, s)| (l.as_str(), *s))
    }

    /// `layer=scheme` for each override, joined; empty when there are none.
    pub fn describe_overrides(&self) -> String {
        self.overrides().map(|(l, s)| format!("{l}={}", s.name())).collect::<Vec<_>>().join(", ")
    }

    /// The schemes the model's layers get; the suite's scheme alone when the model's layers are
    /// not known (a file not read, or that could not be).
    pub fn layer_schemes(&self) -> Vec<SchemeId> {
        match self.layers.is_empty() {
            true => vec![self.scheme],
            false => self.layers.iter().map(|(_, s)| *s).collect(),
        }
    }

    /// Whether the artifact is GGUF: some layer has a GGML type.
    pub fn is_ggml(&self) -> bool {
        self.layers.iter().any(|(_, s)| s.is_ggml())
    }

    /// Whether the plan quantizes some layer's input (dynamic or static int8), counting the
    /// suite's scheme, so a model whose layers are unknown (it failed to load) still counts.
    pub fn quantizes_activations(&self) -> bool {
        self.layers.iter().map(|(_, s)| s).chain([&self.scheme]).any(|s| s.activations() != ActivationQuant::None)
    }

    pub fn needs_calibration(&self) -> bool {
        self.layers.iter().any(|(_, s)| matches!(s, SchemeId::Int8Static(_)))
    }

    /// Checks the plan against the model's layers: int4 groups must divide row widths, and
    /// GGML types mix only with f32.
    pub fn check(&self, model: impl LayerWidths) -> Result<(), PlanError> {
        let widths: BTreeMap<String, usize> = model.layer_widths().into_iter().collect();
        for (layer, scheme) in &self.layers {
            if let SchemeId::Int4Group { group, .. } = scheme {
                let width = widths.get(layer.as_str()).copied().unwrap_or(0);
                if width % *group as usize != 0 {
                    return Err(PlanError::GroupSize {
                        scheme: scheme.name(),
                        layer: layer.clone(),
                        width,
                        group: *group,
                    });
                }
            }
        }
        if let Some((_, ggml)) = self.layers.iter().find(|(_, s)| s.is_ggml()) {
            if let Some((layer, other)) = self.layers.iter().find(|(_, s)| !s.is_ggml() && *s != SchemeId::F32) {
                return Err(PlanError::Mixed { layer: layer.clone(), other: other.name(), ggml: ggml.name() });
            }
        }
        Ok(())
    }
}

/// The fp32 input (or output) of each weighted layer over the calibration split, flattened.
pub type LayerInputs = BTreeMap<String, Vec<f32>>;

/// What static schemes calibrate on.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Images in the calibration split.
    pub items: usize,
    /// `p` of the percentile calibrator.
    pub percentile: f64,
    pub inputs: LayerInputs,
    /// Each weighted layer's fp32 output: its node's (a Conv's or Gemm's bias included, a
    /// MatMul's separate bias Add not), before any activation.
    pub outputs: LayerInputs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::calibrate::Calibrator;
    use crate::quant::ggml::GgmlType;

    #[test]
    fn overrides_are_the_layers_that_differ_from_the_suite_scheme() {
        let mut p = Plan::uniform(ZooModelId::Mlp, SchemeId::Int8Static(Calibrator::MinMax));
        assert_eq!(p.describe_overrides(), "");
        p.layers[0].1 = SchemeId::F32;
        p.layers[1].1 = SchemeId::Int8Weights { per_channel: true, symmetric: true };
        p.layers[2].1 = SchemeId::Bf16;
        assert_eq!(p.describe_overrides(), "fc1=f32, fc2=int8-pc-sym, fc3=bf16");
        assert!(p.quantizes_activations() && !p.needs_calibration());
    }

    #[test]
    fn check_rejects_groups_that_do_not_divide_and_mixed_gguf() {
        let g32 = SchemeId::Int4Group { group: 32, symmetric: true };
        let e = Plan::uniform(ZooModelId::Mlp, g32).check(ZooModelId::Mlp).unwrap_err();
        assert_eq!(
            e,
            PlanError::GroupSize { scheme: "int4-g32-sym".into(), layer: "fc1".into(), width: 784, group: 32 }
        );
        assert!(e.to_string().contains("does not divide the row width 784 of layer fc1"), "{e}");
        let mut p = Plan::uniform(ZooModelId::Mlp, g32);
        p.layers[0].1 = SchemeId::Int8Weights { per_channel: true, symmetric: true };
        assert_eq!(p.check(ZooModelId::Mlp), Ok(()));
        let mut q = Plan::uniform(ZooModelId::Cnn, SchemeId::Ggml(GgmlType::Q4K));
        q.layers[0].1 = SchemeId::F32;
        assert_eq!(q.check(ZooModelId::Cnn), Ok(()));
        q.layers[1].1 = SchemeId::F16;
        assert!(matches!(q.check(ZooModelId::Cnn), Err(PlanError::Mixed { .. })));
    }
}
