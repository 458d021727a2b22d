//! candle on a CUDA GPU: the same modules as on the CPU, built on the process's CUDA device. f32,
//! f16 and bf16 layers run on cuBLAS and candle's CUDA kernels; GGML weights stay in their blocks
//! on the GPU and run on candle's quantized kernels. Every run ends with a device synchronize.

use std::sync::OnceLock;

use crate::backend::gpu::{self, CudaLibrary};

/// The libraries candle's CUDA backend loads through cudarc.
const LIBRARIES: &[CudaLibrary] = &[
    CudaLibrary { name: "cublas", present: cudarc::cublas::sys::is_culib_present, wheel: "nvidia-cublas" },
    CudaLibrary { name: "cublasLt", present: cudarc::cublaslt::sys::is_culib_present, wheel: "nvidia-cublas" },
    CudaLibrary { name: "curand", present: cudarc::curand::sys::is_culib_present, wheel: "nvidia-curand" },
    CudaLibrary { name: "nvrtc", present: cudarc::nvrtc::sys::is_culib_present, wheel: "nvidia-cuda-nvrtc" },
];

/// Why candle-cuda cannot run on `cuda:ordinal` here, if it cannot: no usable GPU (the probe's
/// reason) or a CUDA library candle loads is missing.
pub(super) fn unavailable(ordinal: usize) -> Option<String> {
    if let Err(why) = gpu::probe(ordinal) {
        return Some(why.to_string());
    }
    gpu::missing_library(LIBRARIES)
}

/// The candle device for the process's GPU, created once: each candle CUDA device has its own
/// stream and loads its kernel modules on first use, which every case would otherwise pay.
pub(super) fn device() -> Result<candle_core::Device, String> {
    static DEVICE: OnceLock<Result<candle_core::Device, String>> = OnceLock::new();
    let (ordinal, _) = gpu::current()?;
    DEVICE.get_or_init(|| candle_core::Device::new_cuda(ordinal).map_err(|e| e.to_string())).clone()
}
