//! Schemes applied to a transformer checkpoint's linear layers (BERT on candle-transformers).
//!
//! candle-transformers' BERT is built from plain tensors with `candle_nn::Linear`, so candle runs
//! what the artifact stores as f32 (or f16): integer and GGML weights are dequantized at load
//! (emulated), as the record says. The artifact stores them for real, so its size is the
//! scheme's: safetensors with i8/packed-4-bit/f16 tensors, or a GGUF with GGML blocks.
//! Activation schemes (dynamic/static int8) need a hook on each layer's input, which
//! candle-transformers' BERT does not have: the runner skips them with that reason.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};

use super::{ggml, int, Plan, SchemeId, Variant, VariantError};
use crate::model::bert::BertCheckpoint;
use crate::model::stored::{self, Stored, StoredParams};
use crate::model::ModelKind;

/// GGUF metadata key holding a GGML tensor's width before padding to the block.
pub const WIDTH_KEY: &str = "qbench.width.";

/// Applies `plan` to the checkpoint, writing `<stem>.safetensors` (or `.gguf` for GGML types).
pub fn apply(plan: &Plan, ckpt: &BertCheckpoint, name: &str, artifacts_dir: &Path) -> Result<Variant, VariantError> {
    let err = |reason: String| VariantError::Quantize { model: name.to_string(), reason };
    let ce = |e: candle_core::Error| err(e.to_string());
    plan.check(ckpt.layers.as_slice()).map_err(|e| err(e.to_string()))?;
    let stem = format!("{}.{}", crate::files::file_stem(name), plan.scheme.name());
    let scheme_of = |tensor: &str| {
        let layer = tensor.strip_suffix(".weight")?;
        plan.layers.iter().find(|(l, _)| l == layer).map(|(_, s)| *s)
    };
    // f16/bf16 as the suite scheme round every parameter (as for the zoo), not only the layers.
    let all_half = matches!(plan.scheme, SchemeId::F16 | SchemeId::Bf16);
    let mut names: Vec<&String> = ckpt.tensors.keys().collect();
    names.sort();
    let mut storage = Vec::new();
    let (mut bits, mut count) = (0.0, 0usize);
    let variant = |candle_artifact: std::path::PathBuf, weight_storage: String, bits_per_weight: f64| Variant {
        model: name.to_string(),
        kind: ModelKind::Bert { path: ckpt.path.clone(), config: ckpt.config_path.clone() },
        input_shape: Vec::new(),
        plan: plan.clone(),
        layer_schemes: plan.layers.clone(),
        candle_artifact,
        onnx: std::path::PathBuf::new(),
        onnx_qdq: None,
        weight_storage,
        activation_quant: String::new(),
        bits_per_weight,
    };
    if plan.is_ggml() {
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        let mut metadata: Vec<(String, gguf_file::Value)> =
            vec![("qbench.scheme".into(), gguf_file::Value::String(plan.scheme.name()))];
        for key in names {
            let t = &ckpt.tensors[key];
            let n = t.elem_count();
            count += n;
            match scheme_of(key) {
                Some(SchemeId::Ggml(ty)) => {
                    let q = ggml::quantize_linear_weight(t, ty).map_err(ce)?;
                    bits += q.bits_per_weight() * n as f64;
                    storage.push(format!("{key}={}", ty.name()));
                    metadata.push((format!("{WIDTH_KEY}{key}"), gguf_file::Value::U32(q.in_features as u32)));
                    tensors.push((key.clone(), q.tensor));
                }
                _ => {
                    bits += 32.0 * n as f64;
                    tensors.push((key.clone(), QTensor::quantize(t, GgmlDType::F32).map_err(ce)?));
                }
            }
        }
        let mut gguf = std::io::Cursor::new(Vec::new());
        let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        gguf_file::write(&mut gguf, &md, &refs).map_err(ce)?;
        let path = super::write_artifact(artifacts_dir, format!("{stem}.gguf"), gguf.get_ref())?;
        storage.push("others f32".into());
        return Ok(variant(path, storage.join(", "), bits / count.max(1) as f64));
    }
    let mut params = StoredParams::new();
    for key in names {
        let t = &ckpt.tensors[key];
        let scheme = scheme_of(key).unwrap_or(if all_half { plan.scheme } else { SchemeId::F32 });
        let values = || t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(ce);
        let stored = match scheme {
            SchemeId::F32 => Stored::from_tensor(t).map_err(ce)?,
            SchemeId::F16 | SchemeId::Bf16 => Stored::half(t, scheme == SchemeId::Bf16).map_err(ce)?,
            SchemeId::Int8Weights { .. } | SchemeId::Int4Group { .. } => {
                let Some((ty, symmetric, g)) = scheme.weight_format() else { unreachable!("integer schemes") };
                let q = int::quantize_weight(&values()?, t.dims(), ty, symmetric, g);
                Stored::Int(q.map_err(|e| err(format!("{key}: {e}")))?)
            }
            other => {
                return Err(err(format!(
                    "{key}: {} quantizes each layer's input, and a BERT checkpoint has no place for input scales; use a weight-only scheme or a GGML type",
                    other.name()
                )))
            }
        };
        if scheme_of(key).is_some() {
            storage.push(format!("{key}={}", stored.describe()));
        }
        params.insert(key.clone(), stored);
    }
    let bytes = stored::to_safetensors(&params, &Default::default(), &plan.scheme.name())
        .map_err(|source| VariantError::Serialize { model: name.to_string(), source })?;
    let path = super::write_artifact(artifacts_dir, format!("{stem}.safetensors"), &bytes)?;
    storage.push(if all_half { format!("others {}", plan.scheme.name()) } else { "others f32".into() });
    Ok(variant(path, storage.join(", "), stored::bits_per_weight(&params)))
}
