//! candle on a CUDA GPU: the zoo model as candle-nn modules on the suite's device. f32, f16 and
//! bf16 layers run on cuBLAS and candle's CUDA kernels; GGML weights stay in their blocks on the
//! GPU and run on candle's quantized kernels (llama.cpp's MMVQ for up to 8 rows, the q8_1
//! integer dot products above). BERT checkpoints and GGUF language models run the same
//! candle-transformers models as on the CPU, built on the GPU. Every run ends with a device
//! synchronize.

use super::{Backend, BackendError, BackendId, LayerSession, Prepared};
use crate::quant::Variant;

pub struct CandleCuda;

const ID: BackendId = BackendId::CandleCuda;

impl Backend for CandleCuda {
    fn id(&self) -> BackendId {
        ID
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        let device = device(variant)?;
        match &variant.arch {
            crate::quant::Arch::Bert(config) => {
                return super::candle_bert::prepare(variant, config, batch, ID, &device);
            }
            crate::quant::Arch::Gguf(arch) => return super::candle_lm::prepare(variant, *arch, batch, ID, &device),
            _ => {}
        }
        let mut prepared = super::candle_cpu::prepare_zoo(variant, batch, ID, &device)?;
        if prepared.evidence.contains("QMatMul") {
            let path = if batch <= super::gpu::MMVQ_MAX_ROWS {
                "MMVQ kernels, activations quantized to q8_1"
            } else {
                "MMQ kernels, activations quantized to q8_1"
            };
            prepared.evidence.push_str(&format!(" (QMatMul at batch {batch}: {path})"));
        }
        Ok(prepared)
    }

    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        super::candle_cpu::zoo_layers(variant, batch, ID, &device(variant)?)
    }
}

/// The process's candle CUDA device, for a model candle-cuda builds (all but ONNX graphs).
fn device(variant: &Variant) -> Result<candle_core::Device, BackendError> {
    if matches!(variant.arch, crate::quant::Arch::OnnxGraph) {
        return Err(BackendError::engine(ID, "loading the model", super::gpu::CANDLE_CUDA_MODELS));
    }
    super::gpu::candle_device().map_err(|e| BackendError::engine(ID, "opening the GPU", e))
}
