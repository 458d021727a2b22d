//! Schemes applied to a GGUF language model: every 2-D weight is dequantized from the source
//! and quantized anew (llama.cpp's `llama-quantize --allow-requantize`), so a variant is never
//! more precise than the source file: an f32 variant of an f16 file is that f16, widened.
//!
//! GGML types, f16 and bf16 are written as such and run by candle's `QMatMul` (GGML blocks
//! natively; f16/bf16 widened to f32 at load). Integer weight-only schemes have no GGML type: the
//! weight is quantized with the scheme's rules and stored dequantized as f32 (emulated), and the
//! bits per weight are the scheme's. Activation schemes need a hook on each layer's input that
//! candle-transformers' models do not have; the runner skips them.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::{int, Plan, PlanError, SchemeId, Variant, VariantError};
use crate::model::gguf_lm::{dtype_name, GgufLm};
use crate::model::ModelKind;

/// Applies `plan` to the model, writing `<name>.<scheme>.gguf`.
pub fn apply(plan: &Plan, lm: &GgufLm, name: &str, artifacts_dir: &Path) -> Result<Variant, VariantError> {
    let err = |reason: String| VariantError::Quantize { model: name.to_string(), reason };
    match plan.check(lm.layers.as_slice()) {
        // A GGUF holds every type side by side.
        Ok(()) | Err(PlanError::Mixed { .. }) => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let mut written: Vec<(String, QTensor)> = Vec::new();
    let mut kept: Vec<&str> = Vec::new();
    // (storage, tensors) in first-seen order, for the record.
    let mut storage: Vec<(String, usize)> = Vec::new();
    let (mut bits, mut count) = (0.0, 0usize);
    for (tensor, q) in &lm.tensors {
        let n = q.shape().elem_count();
        count += n;
        let scheme = tensor
            .strip_suffix(".weight")
            .and_then(|layer| plan.layers.iter().find(|(l, _)| l == layer))
            .map(|(_, s)| *s);
        let Some(scheme) = scheme else {
            bits += ggml_bits(q.dtype()) * n as f64;
            note(&mut storage, format!("{} (as stored)", dtype_name(q.dtype())));
            kept.push(tensor);
            continue;
        };
        let w = q.dequantize(&Device::Cpu).map_err(|e| err(format!("{tensor}: {e}")))?;
        let (out, stored_bits, how) = requantize(name, tensor, &w, scheme)?;
        bits += stored_bits * n as f64;
        note(&mut storage, how);
        written.push((tensor.clone(), out));
    }
    let mut metadata: Vec<(&str, &gguf_file::Value)> =
        lm.metadata.iter().filter(|(k, _)| k != "general.file_type").map(|(k, v)| (k.as_str(), v)).collect();
    let scheme_value = gguf_file::Value::String(plan.scheme.name());
    metadata.push(("qbench.scheme", &scheme_value));
    // candle-transformers' quantized qwen3 builds its rotary table in f16 unless general.dtype
    // is 0, and published files do not set it: at position 2047 its angles are off by 0.5 rad.
    // The variants are qbench's own files, so they ask for f32 tables (tests/gguf_lm.rs checks
    // the logits against an exact forward pass over a whole context).
    let f32_tables = gguf_file::Value::U32(0);
    if lm.arch == crate::model::gguf_lm::LmArch::Qwen3 && !lm.metadata.iter().any(|(k, _)| k == "general.dtype") {
        metadata.push(("general.dtype", &f32_tables));
    }
    let mut refs: Vec<(&str, &QTensor)> = Vec::with_capacity(lm.tensors.len());
    for (tensor, q) in &lm.tensors {
        match written.iter().find(|(n, _)| n == tensor) {
            Some((n, t)) => refs.push((n.as_str(), t)),
            None => refs.push((tensor.as_str(), q)),
        }
    }
    let mut gguf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut gguf, &metadata, &refs).map_err(|e| err(e.to_string()))?;
    let path = super::write_artifact(
        artifacts_dir,
        format!("{}.{}.gguf", crate::files::file_stem(name), plan.scheme.name()),
        gguf.get_ref(),
    )?;
    let described: Vec<String> = storage.iter().map(|(s, k)| format!("{s} ×{k}")).collect();
    Ok(Variant {
        model: name.to_string(),
        kind: ModelKind::GgufLm { path: lm.path.clone() },
        input_shape: Vec::new(),
        plan: plan.clone(),
        layer_schemes: plan.layers.clone(),
        candle_artifact: path,
        onnx: std::path::PathBuf::new(),
        onnx_qdq: None,
        weight_storage: format!("{}; requantized from the source's {}", described.join(", "), lm.source_precision()),
        activation_quant: String::new(),
        bits_per_weight: bits / count.max(1) as f64,
    })
}

fn note(storage: &mut Vec<(String, usize)>, how: String) {
    match storage.iter_mut().find(|(s, _)| *s == how) {
        Some((_, k)) => *k += 1,
        None => storage.push((how, 1)),
    }
}

/// Bits per weight of a GGML type, block scales included.
fn ggml_bits(d: GgmlDType) -> f64 {
    d.type_size() as f64 * 8.0 / d.block_size() as f64
}

/// One weight under `scheme`: the tensor to write, its bits per weight, and how it is stored.
fn requantize(model: &str, tensor: &str, w: &Tensor, scheme: SchemeId) -> Result<(QTensor, f64, String), VariantError> {
    let fail = |reason: String| VariantError::Quantize { model: model.to_string(), reason };
    let ce = |e: candle_core::Error| fail(format!("{tensor}: {e}"));
    let ggml = |d: GgmlDType| -> Result<(QTensor, f64, String), VariantError> {
        let q = QTensor::quantize(w, d).map_err(ce)?;
        Ok((q, ggml_bits(d), dtype_name(d)))
    };
    match scheme {
        SchemeId::F32 => ggml(GgmlDType::F32),
        SchemeId::F16 => ggml(GgmlDType::F16),
        SchemeId::Bf16 => ggml(GgmlDType::BF16),
        SchemeId::Ggml(ty) => {
            let width = w.dims().last().copied().unwrap_or(0);
            if !width.is_multiple_of(ty.pad_unit()) {
                return Err(fail(format!(
                    "{tensor}: its rows hold {width} values, not a multiple of {} ({} blocks), and a GGUF weight cannot be padded; give it another type with an [[overrides]] entry (q8_0 and q4_0 take multiples of 32)",
                    ty.pad_unit(),
                    ty.name()
                )));
            }
            let (q, bits, _) = ggml(ty.dtype())?;
            Ok((q, bits, ty.name().to_string()))
        }
        SchemeId::Int8Weights { .. } | SchemeId::Int4Group { .. } => {
            let Some((ty, symmetric, g)) = scheme.weight_format() else { unreachable!("integer weight schemes") };
            let values = w.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(ce)?;
            let q = int::quantize_weight(&values, w.dims(), ty, symmetric, g)
                .map_err(|e| fail(format!("{tensor}: {e}")))?;
            let back = Tensor::from_vec(q.dequantize(), w.dims(), &Device::Cpu).map_err(ce)?;
            let out = QTensor::quantize(&back, GgmlDType::F32).map_err(ce)?;
            Ok((
                out,
                q.bits_per_weight(),
                format!("{} (stored dequantized as f32: GGUF has no such type)", scheme.name()),
            ))
        }
        SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => Err(fail(format!(
            "{tensor}: {} quantizes each layer's input, and a GGUF file has no place for input scales; use a weight-only scheme or a GGML type",
            scheme.name()
        ))),
    }
}
