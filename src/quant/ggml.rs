//! GGML block formats, quantized by candle and run by its `QMatMul`.
//!
//! Linear weights `[out, in]` are quantized row by row in blocks along `in` (32 values, or
//! 256 for k-quants). A width that is not a multiple of the block is zero-padded up to one
//! (784 → 800, 1568 → 1792; see [`GgmlType::pad_unit`]); the activation is padded with zeros at run time, so the
//! product is unchanged and only storage grows (counted in bits per weight). Convolution
//! kernels stay f32: candle's conv2d has no GGML path (the record lists them as fallback).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The GGML types a suite can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    pub const ALL: [GgmlType; 10] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2K => "q2k",
            GgmlType::Q3K => "q3k",
            GgmlType::Q4K => "q4k",
            GgmlType::Q5K => "q5k",
            GgmlType::Q6K => "q6k",
        }
    }

    pub fn dtype(self) -> GgmlDType {
        match self {
            GgmlType::Q4_0 => GgmlDType::Q4_0,
            GgmlType::Q4_1 => GgmlDType::Q4_1,
            GgmlType::Q5_0 => GgmlDType::Q5_0,
            GgmlType::Q5_1 => GgmlDType::Q5_1,
            GgmlType::Q8_0 => GgmlDType::Q8_0,
            GgmlType::Q2K => GgmlDType::Q2K,
            GgmlType::Q3K => GgmlDType::Q3K,
            GgmlType::Q4K => GgmlDType::Q4K,
            GgmlType::Q5K => GgmlDType::Q5K,
            GgmlType::Q6K => GgmlDType::Q6K,
        }
    }

    /// The width a row is padded to a multiple of: the block, or two blocks for the types
    /// whose candle dot product asserts an even block count (`vec_dot_q4_1_q8_1`,
    /// `vec_dot_q5_0_q8_0`, `vec_dot_q5_1_q8_1` in candle 0.11: a debug assertion taken from
    /// ggml's paired SIMD loop; the generic loop itself handles any count). Padding to an even
    /// count keeps debug and release builds on the same path.
    pub fn pad_unit(self) -> usize {
        let block = self.dtype().block_size();
        match self {
            GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => 2 * block,
            _ => block,
        }
    }

    /// Bits per weight of the format itself (block scales included), from candle's block layout.
    pub fn format_bits(self) -> f64 {
        let d = self.dtype();
        d.type_size() as f64 * 8.0 / d.block_size() as f64
    }

    /// What the format stores; which kernel runs it is the engine's to say (layer evidence).
    pub fn description(self) -> String {
        format!(
            "GGML {} blocks of {} ({:.4} bits/weight) on linear layers; conv kernels stay f32",
            self.name(),
            self.dtype().block_size(),
            self.format_bits()
        )
    }
}

/// A linear weight quantized to a GGML type, with the padding it needed.
pub struct GgmlWeight {
    pub tensor: QTensor,
    /// Original input width.
    pub in_features: usize,
    /// Width after zero padding to the block size.
    pub padded_in: usize,
}

/// Quantizes a `[out, in]` f32 weight, zero-padding `in` to the block size.
pub fn quantize_linear_weight(w: &Tensor, ty: GgmlType) -> candle_core::Result<GgmlWeight> {
    let (_, in_features) = w.dims2()?;
    let unit = ty.pad_unit();
    let padded_in = in_features.div_ceil(unit) * unit;
    let padded = if padded_in > in_features { w.pad_with_zeros(1, 0, padded_in - in_features)? } else { w.clone() };
    Ok(GgmlWeight { tensor: QTensor::quantize(&padded, ty.dtype())?, in_features, padded_in })
}

impl GgmlWeight {
    /// The f32 weight this stands for, padding removed.
    pub fn dequantize(&self) -> candle_core::Result<Tensor> {
        self.tensor.dequantize(&Device::Cpu)?.narrow(1, 0, self.in_features)
    }

    /// Stored bits per original weight: the format's bits, plus what padding costs.
    pub fn bits_per_weight(&self) -> f64 {
        let n: usize = self.tensor.shape().elem_count() / self.padded_in * self.in_features;
        self.tensor.storage_size_in_bytes() as f64 * 8.0 / n as f64
    }
}

/// Quantizes each linear layer of `reference` to its GGML type in `plan` (f32 layers stay f32):
/// a GGUF file for candle (what it runs natively) and an ONNX file with the same weights
/// dequantized for tract.
pub fn apply(
    plan: &super::Plan,
    reference: &crate::model::Reference,
    artifacts_dir: &std::path::Path,
    stem: &str,
) -> Result<super::Variant, super::VariantError> {
    use crate::model::stored::{Stored, StoredParams};
    use crate::zoo::Layer;
    let err = |reason: String| super::VariantError::Quantize { model: reference.name.clone(), reason };
    let ce = |e: candle_core::Error| err(e.to_string());
    let get = |key: &str| reference.tensors.get(key).ok_or_else(|| err(format!("missing tensor {key}")));
    let mut gguf_tensors: Vec<(String, QTensor)> = Vec::new();
    let mut onnx_params = StoredParams::new();
    let mut storage = Vec::new();
    // What the GGUF holds each layer in: its GGML type, or f32 (a conv keeps f32).
    let mut layer_schemes = Vec::new();
    let (mut bits, mut count) = (0.0, 0usize);
    for layer in reference.zoo.layers() {
        let name = match layer {
            Layer::Linear { name, .. } | Layer::Conv2d { name, .. } => name,
            _ => continue,
        };
        let ty = match plan.layers.iter().find(|(l, _)| l == name).map(|(_, s)| *s) {
            Some(super::SchemeId::Ggml(t)) => Some(t),
            Some(super::SchemeId::F32) => None,
            other => return Err(err(format!("{name}: {other:?} cannot be written to GGUF"))),
        };
        let (wk, bk) = (format!("{name}.weight"), format!("{name}.bias"));
        let (w, b) = (get(&wk)?, get(&bk)?);
        let n = w.elem_count();
        if let (Layer::Linear { .. }, Some(ty)) = (layer, ty) {
            let q = quantize_linear_weight(w, ty).map_err(ce)?;
            onnx_params.insert(wk.clone(), Stored::from_tensor(&q.dequantize().map_err(ce)?).map_err(ce)?);
            let padding = if q.padded_in > q.in_features {
                format!(" (padded {}→{})", q.in_features, q.padded_in)
            } else {
                String::new()
            };
            storage.push(format!("{wk}={}{padding}", ty.name()));
            layer_schemes.push((name.to_string(), super::SchemeId::Ggml(ty)));
            bits += q.bits_per_weight() * n as f64;
            gguf_tensors.push((wk, q.tensor));
        } else {
            onnx_params.insert(wk.clone(), Stored::from_tensor(w).map_err(ce)?);
            storage.push(match ty {
                Some(_) => format!("{wk}=f32 (fallback: candle's conv2d has no GGML kernel)"),
                None => format!("{wk}=f32"),
            });
            layer_schemes.push((name.to_string(), super::SchemeId::F32));
            bits += 32.0 * n as f64;
            gguf_tensors.push((wk, QTensor::quantize(w, GgmlDType::F32).map_err(ce)?));
        }
        count += n + b.elem_count();
        bits += 32.0 * b.elem_count() as f64;
        storage.push(format!("{bk}=f32"));
        onnx_params.insert(bk.clone(), Stored::from_tensor(b).map_err(ce)?);
        gguf_tensors.push((bk, QTensor::quantize(b, GgmlDType::F32).map_err(ce)?));
    }
    let mut gguf = std::io::Cursor::new(Vec::new());
    let scheme = candle_core::quantized::gguf_file::Value::String(plan.scheme.name());
    let refs: Vec<(&str, &QTensor)> = gguf_tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    candle_core::quantized::gguf_file::write(&mut gguf, &[("qbench.scheme", &scheme)], &refs).map_err(ce)?;
    let candle_artifact = super::write_artifact(artifacts_dir, format!("{stem}.gguf"), gguf.get_ref())?;
    let onnx = super::write_artifact(
        artifacts_dir,
        format!("{stem}.onnx"),
        &crate::model::onnx::export_stored(
            &reference.name,
            reference.zoo,
            &onnx_params,
            &Default::default(),
            crate::model::onnx::IntegerForm::Integer,
        )?,
    )?;
    Ok(super::Variant {
        model: reference.name.clone(),
        kind: crate::model::ModelKind::Zoo { zoo: reference.zoo, weights: reference.weights_path.clone() },
        input_shape: reference.zoo.input_shape().to_vec(),
        plan: plan.clone(),
        layer_schemes,
        candle_artifact,
        onnx,
        onnx_qdq: None,
        weight_storage: storage.join(", "),
        activation_quant: String::new(),
        bits_per_weight: bits / count.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_bits_match_ggml_block_layouts() {
        // llama.cpp's published bits per weight: q4_0 4.5, q4_1 5, q5_0 5.5, q5_1 6, q8_0 8.5,
        // q2_K 2.625, q3_K 3.4375, q4_K 4.5, q5_K 5.5, q6_K 6.5625.
        let want = [4.5, 5.0, 5.5, 6.0, 8.5, 2.625, 3.4375, 4.5, 5.5, 6.5625];
        for (t, w) in GgmlType::ALL.iter().zip(want) {
            assert_eq!(t.format_bits(), w, "{}", t.name());
        }
    }

    #[test]
    fn padding_is_exact_and_counted() {
        let w = Tensor::from_vec(
            (0..4 * 40).map(|i| ((i * 37) % 23) as f32 / 23.0 - 0.5).collect::<Vec<_>>(),
            (4, 40),
            &Device::Cpu,
        )
        .unwrap();
        let q = quantize_linear_weight(&w, GgmlType::Q8_0).unwrap();
        assert_eq!((q.in_features, q.padded_in), (40, 64));
        assert_eq!(q.dequantize().unwrap().dims(), &[4, 40]);
        // 64 padded values in 2 blocks of 34 bytes per row, over 40 real weights.
        assert_eq!(q.bits_per_weight(), 2.0 * 34.0 * 8.0 / 40.0);
        let err = (q.dequantize().unwrap() - &w).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 0.5 / 127.0 + 1e-6, "q8_0 error {err}");
    }
}
