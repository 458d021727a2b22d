//! Quantization schemes: the closed set of ways a reference model is turned into
//! a variant, and the realization of each for the backends.
//!
//! So far: the f32 reference, weight-only int8 (per tensor or per channel, symmetric or
//! asymmetric) and the GGML block formats, realized on both backends.

pub mod budget;
pub mod calibrate;
pub mod ggml;
pub mod int;

/// A quantization scheme, as named in suites and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemeId {
    /// The fp32 reference, unchanged.
    F32,
    /// Every parameter rounded to IEEE half precision.
    F16,
    /// Every parameter rounded to bfloat16.
    Bf16,
    /// Weight-only int8, round to nearest with onnxruntime's scale/zero-point rules;
    /// biases and activations stay f32.
    Int8Weights { per_channel: bool, symmetric: bool },
    /// A GGML block format on the linear layers (candle's quantizer and QMatMul).
    Ggml(ggml::GgmlType),
    /// Dynamic int8 (onnxruntime's `quantize_dynamic`): weights int8 per-channel symmetric;
    /// linear-layer activations u8 with a per-tensor scale computed from each batch at run time.
    Int8Dynamic,
}

/// How a backend executes a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realization {
    /// The backend's own kernels for that storage type run.
    Native,
    /// Weights are stored quantized but dequantized to float before the kernels run.
    Emulated,
    /// The backend cannot run this scheme at all; cases are skipped with this reason.
    Unsupported(&'static str),
}

impl Realization {
    pub fn name(self) -> &'static str {
        match self {
            Realization::Native => "native",
            Realization::Emulated => "emulated",
            Realization::Unsupported(_) => "unsupported",
        }
    }
}

const INT8: [(bool, bool, &str); 4] = [
    (false, true, "int8-pt-sym"),
    (false, false, "int8-pt-asym"),
    (true, true, "int8-pc-sym"),
    (true, false, "int8-pc-asym"),
];

impl SchemeId {
    pub const ALL: &'static [SchemeId] = &[
        SchemeId::F32,
        SchemeId::F16,
        SchemeId::Bf16,
        SchemeId::Int8Weights { per_channel: false, symmetric: true },
        SchemeId::Int8Weights { per_channel: false, symmetric: false },
        SchemeId::Int8Weights { per_channel: true, symmetric: true },
        SchemeId::Int8Weights { per_channel: true, symmetric: false },
        SchemeId::Int8Dynamic,
        SchemeId::Ggml(ggml::GgmlType::Q4_0),
        SchemeId::Ggml(ggml::GgmlType::Q4_1),
        SchemeId::Ggml(ggml::GgmlType::Q5_0),
        SchemeId::Ggml(ggml::GgmlType::Q5_1),
        SchemeId::Ggml(ggml::GgmlType::Q8_0),
        SchemeId::Ggml(ggml::GgmlType::Q2K),
        SchemeId::Ggml(ggml::GgmlType::Q3K),
        SchemeId::Ggml(ggml::GgmlType::Q4K),
        SchemeId::Ggml(ggml::GgmlType::Q5K),
        SchemeId::Ggml(ggml::GgmlType::Q6K),
    ];

    pub fn name(self) -> &'static str {
        match self {
            SchemeId::F32 => "f32",
            SchemeId::F16 => "f16",
            SchemeId::Bf16 => "bf16",
            SchemeId::Int8Weights { per_channel, symmetric } => {
                INT8.iter().find(|(pc, sym, _)| *pc == per_channel && *sym == symmetric).map_or("int8", |x| x.2)
            }
            SchemeId::Ggml(t) => t.name(),
            SchemeId::Int8Dynamic => "int8-dynamic",
        }
    }

    pub fn from_name(s: &str) -> Option<SchemeId> {
        Self::ALL.iter().copied().find(|x| x.name() == s)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|s| s.name()).collect()
    }

    /// What is quantized, at which granularity, with which bits and calibration.
    pub fn description(self) -> String {
        match self {
            SchemeId::F32 => {
                "reference: weights and activations in IEEE fp32, nothing quantized (32 bits per weight)".into()
            }
            SchemeId::Int8Weights { per_channel, symmetric } => format!(
                "weight-only int8, {}, {} ({}), round to nearest even; biases and activations f32; no calibration",
                if per_channel {
                    "one scale per output channel"
                } else {
                    "one scale per tensor"
                },
                if symmetric { "symmetric" } else { "asymmetric" },
                if symmetric {
                    "range [-127, 127], zero point 0"
                } else {
                    "range [-128, 127], zero point per block"
                },
            ),
            SchemeId::Ggml(t) => t.description(),
            SchemeId::F16 => "every parameter rounded to IEEE f16 (round to nearest even, 16 bits per weight); candle computes in f16, tract casts to f32".into(),
            SchemeId::Bf16 => "every parameter rounded to bfloat16 (round to nearest even, 16 bits per weight); computed in f32 by both (candle 0.11 has no CPU bf16 matmul)".into(),
            SchemeId::Int8Dynamic => "dynamic int8 W8A8 (onnxruntime quantize_dynamic): weights int8 per-channel symmetric; linear-layer inputs u8, one scale per tensor computed from each batch at run time; conv weights int8 QDQ; no calibration".into(),
        }
    }

    /// How `backend` runs this scheme.
    pub fn realization(self, backend: crate::backend::BackendId) -> Realization {
        use crate::backend::BackendId;
        match (self, backend) {
            (SchemeId::F32, _) => Realization::Native,
            // candle runs f16 tensors through its own f16 kernels; bf16 it widens at load.
            (SchemeId::F16, BackendId::CandleCpu) => Realization::Native,
            (SchemeId::Bf16, BackendId::TractCpu) => Realization::Unsupported(
                "tract 0.23 has no bfloat16 datum type, so it cannot load BFLOAT16 ONNX tensors",
            ),
            (SchemeId::F16 | SchemeId::Bf16, _) => Realization::Emulated,
            // candle dequantizes the i8 safetensors at load; tract folds the QDQ weights
            // into f32 constants when optimizing. Neither runs an int8 kernel.
            (SchemeId::Int8Weights { .. }, _) => Realization::Emulated,
            // candle's QMatMul runs the GGML blocks; tract gets the dequantized weights.
            (SchemeId::Ggml(_), BackendId::CandleCpu) => Realization::Native,
            (SchemeId::Ggml(_), BackendId::TractCpu) => Realization::Emulated,
            // tract lowers DynamicQuantizeLinear + MatMulInteger to its int8 matmul kernels;
            // candle has no int8 matmul, so it quantize-dequantizes activations and weights.
            (SchemeId::Int8Dynamic, BackendId::TractCpu) => Realization::Native,
            (SchemeId::Int8Dynamic, BackendId::CandleCpu) => Realization::Emulated,
        }
    }
}

/// A reference model after a scheme: the artifact each backend loads.
#[derive(Debug, Clone)]
pub struct Variant {
    pub model: String,
    pub zoo: crate::zoo::ZooModelId,
    pub scheme: SchemeId,
    /// What candle loads: safetensors (f32 or i8 weights) or GGUF (GGML types).
    pub candle_artifact: std::path::PathBuf,
    /// ONNX model: what tract loads.
    pub onnx: std::path::PathBuf,
    /// How each parameter is stored (`name=storage, ...`).
    pub weight_storage: String,
    /// Effective bits per parameter, scales and zero points included.
    pub bits_per_weight: f64,
}

/// Writes an artifact, mapping failure to an output error naming the file.
pub(crate) fn write_artifact(path: std::path::PathBuf, bytes: &[u8]) -> Result<std::path::PathBuf, crate::Error> {
    std::fs::write(&path, bytes).map_err(|source| crate::Error::Output { path: path.clone(), source })?;
    Ok(path)
}

/// Applies `scheme` to `reference`, writing its artifacts under `artifacts_dir`.
pub fn apply(
    scheme: SchemeId,
    reference: &crate::model::Reference,
    artifacts_dir: &std::path::Path,
) -> Result<Variant, crate::Error> {
    use crate::model::stored::{self, Stored, StoredParams};
    use crate::model::ModelError;
    let export_err = |reason: String| ModelError::Export { model: reference.name.clone(), reason };
    let stem = format!("{}.{}", reference.name, scheme.name());
    if let SchemeId::Ggml(t) = scheme {
        return ggml::apply(t, reference, artifacts_dir, &stem);
    }
    let mut params = StoredParams::new();
    for (name, t) in &reference.tensors {
        let f = Stored::from_tensor(t).map_err(|e| export_err(e.to_string()))?;
        let p = match (scheme, &f) {
            (SchemeId::F16 | SchemeId::Bf16, _) => {
                Stored::half(t, scheme == SchemeId::Bf16).map_err(|e| export_err(e.to_string()))?
            }
            (SchemeId::Int8Dynamic, Stored::F32 { shape, values }) if name.ends_with(".weight") => Stored::Int(
                int::quantize_weight(values, shape, int::IntType::I8, true, int::Granularity::PerChannel)
                    .map_err(|e| export_err(format!("{name}: {e}")))?,
            ),
            (SchemeId::Int8Weights { per_channel, symmetric }, Stored::F32 { shape, values })
                if name.ends_with(".weight") =>
            {
                let g = if per_channel { int::Granularity::PerChannel } else { int::Granularity::PerTensor };
                Stored::Int(
                    int::quantize_weight(values, shape, int::IntType::I8, symmetric, g)
                        .map_err(|e| export_err(format!("{name}: {e}")))?,
                )
            }
            _ => f,
        };
        params.insert(name.clone(), p);
    }
    let onnx = write_artifact(
        artifacts_dir.join(format!("{stem}.onnx")),
        &crate::model::onnx::export_stored(&reference.name, reference.zoo, &params, scheme == SchemeId::Int8Dynamic)?,
    )?;
    let candle_artifact = match scheme {
        SchemeId::F32 => reference.weights_path.clone(),
        _ => write_artifact(
            artifacts_dir.join(format!("{stem}.safetensors")),
            &stored::to_safetensors(&params, scheme.name()).map_err(export_err)?,
        )?,
    };
    Ok(Variant {
        model: reference.name.clone(),
        zoo: reference.zoo,
        scheme,
        candle_artifact,
        onnx,
        weight_storage: stored::describe_storage(&params),
        bits_per_weight: stored::bits_per_weight(&params),
    })
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
        assert_eq!(
            SchemeId::from_name("int8-pc-asym"),
            Some(SchemeId::Int8Weights { per_channel: true, symmetric: false })
        );
    }
}
