//! Fake quantization: a weight rounded to what a scheme stores and turned back into f32, by the
//! same quantizers the variants are built with, so that quantization-aware training sees in its
//! forward pass exactly the weights the benchmarked variant will hold.

use candle_core::Tensor;

use super::{int, SchemeId};

/// `w` (a zoo layer's weight, output channel first) as `scheme` stores it, in f32. `linear`:
/// whether the layer is a linear one (GGML types quantize only those; a conv keeps f32, as the
/// variants do). Activation quantization is not simulated: the dynamic and static schemes' weights
/// are int8 per-channel symmetric, which is what this gives them.
pub fn fake_quantize(scheme: SchemeId, linear: bool, w: &Tensor) -> candle_core::Result<Tensor> {
    let err = |e: int::QuantError| candle_core::Error::Msg(e.to_string());
    let int = |ty, symmetric, g| -> candle_core::Result<Tensor> {
        let values = w.flatten_all()?.to_vec1::<f32>()?;
        let q = int::quantize_weight(&values, w.dims(), ty, symmetric, g).map_err(err)?;
        Tensor::from_vec(q.dequantize(), w.dims(), w.device())
    };
    match scheme {
        SchemeId::F32 => Ok(w.clone()),
        SchemeId::F16 => w.to_dtype(candle_core::DType::F16)?.to_dtype(candle_core::DType::F32),
        SchemeId::Bf16 => w.to_dtype(candle_core::DType::BF16)?.to_dtype(candle_core::DType::F32),
        SchemeId::Int8Weights { per_channel, symmetric } => {
            let g = if per_channel { int::Granularity::PerChannel } else { int::Granularity::PerTensor };
            int(int::IntType::I8, symmetric, g)
        }
        SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => int(int::IntType::I8, true, int::Granularity::PerChannel),
        SchemeId::Int4Group { group, symmetric } => {
            let ty = if symmetric { int::IntType::I4 } else { int::IntType::U4 };
            int(ty, symmetric, int::Granularity::Group(group as usize))
        }
        SchemeId::Ggml(ty) if linear => super::ggml::quantize_linear_weight(w, ty)?.dequantize(),
        SchemeId::Ggml(_) => Ok(w.clone()),
    }
}

/// The straight-through estimator: forward, `w` fake-quantized; backward, the gradient of `w`
/// itself (the rounding's derivative, zero almost everywhere, is taken as one).
pub fn straight_through(scheme: SchemeId, linear: bool, w: &Tensor) -> candle_core::Result<Tensor> {
    let q = fake_quantize(scheme, linear, &w.detach())?;
    w.add(&q.sub(w)?.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_forward_is_the_quantized_weight_and_the_gradient_passes_straight_through() {
        let values: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 31.5) / 17.0).collect();
        let w = Var::from_vec(values.clone(), (2, 32), &Device::Cpu).unwrap();
        let scheme = SchemeId::Int4Group { group: 16, symmetric: true };
        let ste = straight_through(scheme, true, w.as_tensor()).unwrap();
        // Forward: the int4 quantizer's own dequantized values.
        let q = int::quantize_weight(&values, &[2, 32], int::IntType::I4, true, int::Granularity::Group(16)).unwrap();
        let forward = ste.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(forward, q.dequantize());
        assert_ne!(forward, values, "int4 must round something");
        // Backward: d/dw Σ c·ste = c, as for the float weight.
        let c: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
        let c = Tensor::from_vec(c.clone(), (2, 32), &Device::Cpu).unwrap();
        let loss = ste.mul(&c).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(w.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, c.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn ggml_types_round_linear_weights_and_leave_convs_in_float() {
        let values: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin()).collect();
        let w = Tensor::from_vec(values.clone(), (2, 128), &Device::Cpu).unwrap();
        let q4 = SchemeId::Ggml(crate::quant::ggml::GgmlType::Q4_0);
        let fq = fake_quantize(q4, true, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // q4_0: 16 levels per block of 32, so at most 16 distinct values in each block.
        for block in fq.chunks(32) {
            let mut distinct: Vec<u32> = block.iter().map(|v| v.to_bits()).collect();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() <= 16, "{}", distinct.len());
        }
        let err: f32 = fq.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err > 0.0 && err < 0.2, "{err}");
        let conv = fake_quantize(q4, false, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(conv, values);
    }
}
