//! Quantization schemes: the closed set of ways a reference model is turned into
//! a variant, and the realization of each for the backends.
//!
//! Only `f32` (the reference itself) exists so far; the list is real so suites
//! and records already carry the scheme as a dimension.

pub mod budget;
pub mod int;

use serde::{Deserialize, Serialize};

/// A quantization scheme, as named in suites and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeId {
    /// The fp32 reference, unchanged.
    F32,
}

impl SchemeId {
    pub const ALL: &'static [SchemeId] = &[SchemeId::F32];

    pub fn name(self) -> &'static str {
        match self {
            SchemeId::F32 => "f32",
        }
    }

    pub fn from_name(s: &str) -> Option<SchemeId> {
        Self::ALL.iter().copied().find(|x| x.name() == s)
    }

    pub fn names() -> &'static [&'static str] {
        &["f32"]
    }

    /// What is quantized, at which granularity, with which bits and calibration.
    pub fn description(self) -> &'static str {
        match self {
            SchemeId::F32 => "reference: weights and activations in IEEE fp32, nothing quantized (32 bits per weight)",
        }
    }

    /// Effective bits per stored weight, scales and zero points included.
    pub fn bits_per_weight(self) -> f64 {
        match self {
            SchemeId::F32 => 32.0,
        }
    }
}

/// A reference model after a scheme: the artifact each backend loads.
#[derive(Debug, Clone)]
pub struct Variant {
    pub model: String,
    pub zoo: crate::zoo::ZooModelId,
    pub scheme: SchemeId,
    /// safetensors weights: what candle loads.
    pub safetensors: std::path::PathBuf,
    /// ONNX model: what tract loads.
    pub onnx: std::path::PathBuf,
}

/// Applies `scheme` to `reference`, writing its artifacts under `artifacts_dir`.
pub fn apply(
    scheme: SchemeId,
    reference: &crate::model::Reference,
    artifacts_dir: &std::path::Path,
) -> Result<Variant, crate::Error> {
    match scheme {
        SchemeId::F32 => {
            let bytes = crate::model::onnx::export(&reference.name, reference.zoo, &reference.tensors)?;
            let onnx = artifacts_dir.join(format!("{}.{}.onnx", reference.name, scheme.name()));
            std::fs::write(&onnx, bytes).map_err(|source| crate::Error::Output {
                path: onnx.clone(),
                source,
            })?;
            Ok(Variant {
                model: reference.name.clone(),
                zoo: reference.zoo,
                scheme,
                safetensors: reference.weights_path.clone(),
                onnx,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(SchemeId::names().len(), SchemeId::ALL.len());
        for s in SchemeId::ALL {
            assert_eq!(SchemeId::from_name(s.name()), Some(*s));
        }
        assert_eq!(SchemeId::from_name("int3"), None);
    }
}
