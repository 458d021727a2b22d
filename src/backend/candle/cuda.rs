//! candle on a CUDA GPU: the same modules as on the CPU, built on the process's CUDA device. f32,
//! f16 and bf16 layers run on cuBLAS and candle's CUDA kernels; GGML weights stay in their blocks
//! on the GPU and run on candle's quantized kernels. Every run ends with a device synchronize.

use std::sync::OnceLock;

/// The candle device for the process's GPU, created once: each candle CUDA device has its own
/// stream and loads its kernel modules on first use, which every case would otherwise pay.
pub(super) fn device() -> Result<candle_core::Device, String> {
    static DEVICE: OnceLock<Result<candle_core::Device, String>> = OnceLock::new();
    let (ordinal, _) = crate::backend::gpu::current()?;
    DEVICE.get_or_init(|| candle_core::Device::new_cuda(ordinal).map_err(|e| e.to_string())).clone()
}
