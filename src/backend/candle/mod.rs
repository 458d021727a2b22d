//! candle: zoo models as candle-nn modules, BERT checkpoints and GGUF language models through
//! candle-transformers, ONNX graphs through candle-onnx's interpreter (feature `candle-onnx`);
//! on the CPU (`candle-cpu`) and on a CUDA GPU (`candle-cuda`, feature `cuda`).
//!
//! Everything qbench knows about candle lives in this folder: what it can run (the capability
//! rules below), how each model kind is built (`zoo.rs`, `bert.rs`, `lm.rs`, `onnx.rs`), and what
//! it made of each layer, read from the built modules (`evidence` in each).

mod bert;
#[cfg(feature = "cuda")]
mod cuda;
mod lm;
pub mod net;
#[cfg(feature = "candle-onnx")]
mod onnx;
pub mod train;
mod zoo;

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device};

pub use net::Net;

use super::{
    Backend, BackendError, BackendId, Capture, Compute, DeviceKind, LayerSession, ModelQuery, Prepared, Realization,
    Registration, StoredWeight,
};
use crate::model::ModelKind;
use crate::quant::ggml::GgmlType;
use crate::quant::{Plan, SchemeId, Variant};

impl BackendId {
    pub const CANDLE_CPU: BackendId = BackendId("candle-cpu");
    pub const CANDLE_CUDA: BackendId = BackendId("candle-cuda");
}

pub static CPU: Registration = Registration {
    name: "candle-cpu",
    description: "candle (CPU, gemm crate kernels, GGML QMatMul): zoo models as candle-nn modules (safetensors or GGUF), BERT checkpoints and GGUF language models through candle-transformers, ONNX files through candle-onnx (feature candle-onnx)",
    device: DeviceKind::Cpu,
    create: |_| Ok(Box::new(Candle { id: BackendId::CANDLE_CPU, cuda: None })),
    set_threads,
    engine_crate: "candle-core",
    runtime_version: || None,
};

pub static CUDA: Registration = Registration {
    name: "candle-cuda",
    description: "candle on a CUDA GPU (feature cuda): zoo models as candle-nn modules, BERT checkpoints and GGUF language models through candle-transformers; f16/bf16 on cuBLAS, GGML types on candle's QMatMul CUDA kernels; the device is the suite's `device`",
    device: DeviceKind::Cuda,
    create: create_cuda,
    set_threads,
    engine_crate: "candle-core",
    runtime_version: || None,
};

#[cfg(feature = "cuda")]
fn create_cuda(ordinal: usize) -> Result<Box<dyn Backend>, &'static str> {
    Ok(Box::new(Candle { id: BackendId::CANDLE_CUDA, cuda: Some(ordinal) }))
}

#[cfg(not(feature = "cuda"))]
fn create_cuda(_ordinal: usize) -> Result<Box<dyn Backend>, &'static str> {
    Err(super::gpu::BUILD_HINT)
}

/// candle builds its thread pools once, from these variables, on first use.
fn set_threads(threads: usize) {
    // Edition 2021: set_var is safe; qbench calls this from main's thread before any engine
    // thread pool exists.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
}

/// candle on the CPU (`cuda: None`) or on the process's CUDA device.
struct Candle {
    id: BackendId,
    cuda: Option<usize>,
}

/// Why candle-cuda refuses an ONNX graph.
const CUDA_ONNX: &str = "candle-cuda runs zoo models, BERT checkpoints and GGUF language models, not ONNX graphs (candle-onnx interprets them on the CPU only); run an ONNX file on tract-cuda";

impl Candle {
    /// The device the session builds on: the CPU, or the probed GPU.
    fn device(&self) -> Result<Device, BackendError> {
        match self.cuda {
            None => Ok(Device::Cpu),
            #[cfg(feature = "cuda")]
            Some(_) => cuda::device().map_err(|e| BackendError::engine(self.id, "opening the GPU", e)),
            #[cfg(not(feature = "cuda"))]
            Some(_) => Err(BackendError::engine(self.id, "opening the GPU", super::gpu::BUILD_HINT)),
        }
    }

    fn on_gpu(&self) -> bool {
        self.cuda.is_some()
    }

    /// How candle runs one zoo layer of this scheme. A GGML scheme's convs stay f32 in the
    /// GGUF (there is no GGML conv kernel), which is native too.
    fn zoo_layer(&self, scheme: SchemeId) -> Realization {
        match scheme {
            SchemeId::F32 | SchemeId::F16 | SchemeId::Ggml(_) => Realization::Native,
            // The CPU load widens bf16 (candle 0.11 has no CPU bf16 matmul); a GPU keeps it.
            SchemeId::Bf16 if self.on_gpu() => Realization::Native,
            // Integers are dequantized at load; activations are fake-quantized in f32.
            SchemeId::Bf16 | SchemeId::Int8Weights { .. } | SchemeId::Int4Group { .. } => Realization::Emulated,
            SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => Realization::Emulated,
        }
    }
}

impl Backend for Candle {
    fn id(&self) -> BackendId {
        self.id
    }

    fn capability(&self, model: ModelQuery<'_>, plan: &Plan, batch: usize) -> Realization {
        #[cfg(feature = "cuda")]
        if let Some(why) = self.cuda.and_then(cuda::unavailable) {
            return Realization::Unsupported(why);
        }
        let schemes = plan.layer_schemes();
        let any_quantized = schemes.iter().any(|s| *s != SchemeId::F32);
        match model.kind {
            ModelKind::Zoo { .. } => {
                plan.layers.iter().fold(Realization::Native, |acc, (_, s)| acc.weaker(self.zoo_layer(*s)))
            }
            ModelKind::Onnx { .. } if self.on_gpu() => Realization::Unsupported(CUDA_ONNX.into()),
            ModelKind::Onnx { .. } => onnx_capability(model, &schemes, any_quantized),
            ModelKind::Bert { .. } => {
                if plan.quantizes_activations() {
                    Realization::Unsupported("candle-transformers' BERT has no hook on each layer's input, so dynamic and static int8 cannot run on it; weight-only schemes and GGML types can".into())
                } else if any_quantized {
                    // Its linear layers are candle_nn::Linear, built in f32: GGML weights are
                    // dequantized and half ones widened at load (see bert.rs).
                    Realization::Emulated
                } else {
                    Realization::Native
                }
            }
            ModelKind::GgufLm { .. } => {
                // The architecture is known once the file is read.
                let arch = match model.loaded.map(|m| &m.content) {
                    Some(crate::model::Content::GgufLm(g)) => Some(g.arch),
                    _ => None,
                };
                lm::capability(plan, batch, arch, self.on_gpu())
            }
        }
    }

    fn is_reference_for(&self, model: &ModelKind) -> bool {
        !self.on_gpu() && !matches!(model, ModelKind::Onnx { .. })
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        if matches!(variant.kind, ModelKind::Onnx { .. }) && self.on_gpu() {
            return Err(BackendError::Unsupported { backend: self.id.name(), reason: CUDA_ONNX.into() });
        }
        let device = self.device()?;
        match &variant.kind {
            ModelKind::Zoo { .. } => zoo::prepare(variant, batch, self.id, &device),
            ModelKind::Bert { config, .. } => bert::prepare(variant, config, batch, self.id, &device),
            ModelKind::GgufLm { .. } => lm::prepare(variant, batch, self.id, &device),
            #[cfg(feature = "candle-onnx")]
            ModelKind::Onnx { .. } => onnx::prepare(variant, batch),
            #[cfg(not(feature = "candle-onnx"))]
            ModelKind::Onnx { .. } => {
                Err(BackendError::Unsupported { backend: self.id.name(), reason: NO_CANDLE_ONNX.into() })
            }
        }
    }

    fn layer_session(
        &self,
        variant: &Variant,
        batch: usize,
        capture: Capture,
    ) -> Result<Box<dyn LayerSession>, BackendError> {
        zoo::layers(variant, batch, self.id, &self.device()?, capture)
    }
}

/// Why candle-cpu refuses ONNX graphs in a build without candle-onnx.
#[cfg(not(feature = "candle-onnx"))]
const NO_CANDLE_ONNX: &str = "this qbench was built without candle-onnx, so a user's ONNX model runs on tract only; build with `--features candle-onnx` (its build needs protoc: apt install protobuf-compiler)";

/// candle-onnx interprets float graphs: no QDQ or integer ops, no bfloat16 tensors, and only
/// the ops it implements.
fn onnx_capability(model: ModelQuery<'_>, schemes: &[SchemeId], any_quantized: bool) -> Realization {
    #[cfg(not(feature = "candle-onnx"))]
    {
        let _ = (model, schemes, any_quantized);
        Realization::Unsupported(NO_CANDLE_ONNX.into())
    }
    #[cfg(feature = "candle-onnx")]
    {
        if let Some(why) = model.loaded.and_then(|m| m.onnx_ops().iter().find_map(onnx::refusal)) {
            return Realization::Unsupported(why);
        }
        if schemes.iter().any(|s| s.weight_format().is_some()) {
            Realization::Unsupported("candle-onnx 0.11 implements no DequantizeLinear, QuantizeLinear, MatMulInteger or ConvInteger, so integer ONNX graphs run on tract only; f32, f16 and GGML variants run on both".into())
        } else if schemes.contains(&SchemeId::Bf16) {
            Realization::Unsupported("candle-onnx 0.11 reads no bfloat16 tensors".into())
        } else if any_quantized {
            // f16 is cast to f32 by the graph, GGML weights are stored dequantized.
            Realization::Emulated
        } else {
            Realization::Native
        }
    }
}

/// What the engine computes in for a tensor of this dtype.
fn compute_of(dtype: DType) -> Compute {
    match dtype {
        DType::F32 | DType::F64 => Compute::F32,
        DType::F16 => Compute::F16,
        DType::BF16 => Compute::Bf16,
        _ => Compute::NotObservable,
    }
}

/// A GGML type's name as schemes and records write it (`q4k`, `f16`).
fn ggml_name(d: GgmlDType) -> String {
    crate::model::gguf_lm::dtype_name(d)
}

/// What a `QMatMul` computes in: the GGML blocks it keeps, or the float tensor candle
/// dequantized them to (for float types always, for every type with `CANDLE_DEQUANTIZE_ALL`).
fn qmatmul_compute(m: &QMatMul) -> (Compute, String) {
    match m {
        QMatMul::QTensor(t) => {
            let d = t.dtype();
            let compute = match GgmlType::ALL.iter().find(|g| g.dtype() == d) {
                Some(g) => Compute::Ggml(g.name().to_string()),
                None => compute_of(match d {
                    GgmlDType::F16 => DType::F16,
                    GgmlDType::BF16 => DType::BF16,
                    _ => DType::F32,
                }),
            };
            (compute, format!("QMatMul on {} blocks", ggml_name(d)))
        }
        QMatMul::Tensor(w) => {
            (compute_of(w.dtype()), format!("QMatMul dequantized to a {:?} tensor (matmul)", w.dtype()))
        }
        QMatMul::TensorF16(w) => {
            (compute_of(w.dtype()), format!("QMatMul dequantized to a {:?} tensor (matmul)", w.dtype()))
        }
    }
}

/// Where a `QMatMul`'s weight lives: its GGML blocks' device, or its dequantized tensor's.
fn qmatmul_location(m: &QMatMul) -> String {
    match m {
        QMatMul::QTensor(t) => location(&t.device()),
        QMatMul::Tensor(w) | QMatMul::TensorF16(w) => location(w.device()),
    }
}

/// `cpu`, `cuda:N`: where a tensor lives.
fn location(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The last run's output tensor of a candle session as f32 values (any float dtype, any shape).
fn output_values(backend: BackendId, out: Option<&candle_core::Tensor>) -> Result<Vec<f32>, BackendError> {
    let out = out.ok_or_else(|| BackendError::engine(backend, "reading the output", "the model has not run"))?;
    out.flatten_all()
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| BackendError::engine(backend, "reading the output", e))
}

/// One run of a candle session: `forward` on the input set before, then a device synchronize (a
/// GPU runs kernels asynchronously: the run ends when the device is done, not when the last
/// kernel is queued; a no-op on the CPU).
fn run_synchronized<I>(
    id: BackendId,
    device: &Device,
    input: Option<&I>,
    forward: impl FnOnce(&I) -> candle_core::Result<candle_core::Tensor>,
) -> Result<candle_core::Tensor, BackendError> {
    let input = input.ok_or_else(|| BackendError::engine(id, "running", "no input was set"))?;
    let out = forward(input).map_err(|e| BackendError::engine(id, "running", e))?;
    device.synchronize().map_err(|e| BackendError::engine(id, "running", e))?;
    Ok(out)
}

/// Runs `copy`, which puts a candle session's input on `device`, and on a GPU times it up to
/// a synchronize (candle's copies are asynchronous): `(value, Some(ns))` there, `(value, None)`
/// on the CPU, where there is no copy to time.
fn copy_timed<T>(
    backend: BackendId,
    device: &Device,
    copy: impl FnOnce() -> Result<T, BackendError>,
) -> Result<(T, Option<u64>), BackendError> {
    let started = std::time::Instant::now();
    let value = copy()?;
    if device.is_cpu() {
        return Ok((value, None));
    }
    device.synchronize().map_err(|e| BackendError::engine(backend, "copying the input", e))?;
    Ok((value, Some(started.elapsed().as_nanos() as u64)))
}

/// The weights' types as an artifact stores them, by tensor name, read from its header only
/// (safetensors' JSON header, or GGUF's tensor table): a 4-bit weight `<name>.int4` as `i4`,
/// or `u4` when it has a zero point. What each layer's `stored` says.
fn stored_types(path: &std::path::Path) -> std::collections::HashMap<String, StoredWeight> {
    use std::io::Read;
    let mut out = std::collections::HashMap::new();
    let Ok(mut file) = std::fs::File::open(path) else { return out };
    if path.extension().is_some_and(|e| e == "gguf") {
        // Buffered: a GGUF's metadata (a tokenizer's arrays) is many small reads.
        if let Ok(content) = candle_core::quantized::gguf_file::Content::read(&mut std::io::BufReader::new(&mut file)) {
            for (name, info) in &content.tensor_infos {
                out.insert(name.clone(), StoredWeight::named(&ggml_name(info.ggml_dtype)));
            }
        }
        return out;
    }
    // safetensors: an 8-byte little-endian length, then that many bytes of JSON.
    let mut len = [0u8; 8];
    if file.read_exact(&mut len).is_err() {
        return out;
    }
    let len = u64::from_le_bytes(len);
    let mut header = vec![0u8; len.min(100 << 20) as usize];
    if file.read_exact(&mut header).is_err() {
        return out;
    }
    let Ok(serde_json::Value::Object(tensors)) = serde_json::from_slice::<serde_json::Value>(&header) else {
        return out;
    };
    for (name, info) in &tensors {
        let Some(dtype) = info.get("dtype").and_then(|d| d.as_str()) else { continue };
        match name.strip_suffix(".int4") {
            Some(base) => {
                let ty = if tensors.contains_key(&format!("{base}.zero_point")) { "u4" } else { "i4" };
                out.insert(base.to_string(), StoredWeight::named(ty));
            }
            None => {
                out.insert(name.clone(), StoredWeight::named(&dtype.to_lowercase()));
            }
        }
    }
    out
}

/// What the artifact stores `weight` as (`not found` when it does not hold it).
fn stored_of(types: &std::collections::HashMap<String, StoredWeight>, weight: &str) -> StoredWeight {
    types.get(weight).cloned().unwrap_or_else(|| StoredWeight::new(crate::backend::WeightType::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmatmul_compute_reads_the_variant_candle_built() {
        let w = candle_core::Tensor::ones((4, 64), DType::F32, &Device::Cpu).unwrap();
        let q = candle_core::quantized::QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let m = QMatMul::QTensor(std::sync::Arc::new(q));
        assert_eq!(qmatmul_compute(&m).0, Compute::Ggml("q8_0".into()));
        assert_eq!(qmatmul_compute(&QMatMul::Tensor(w.clone())).0, Compute::F32);
        let h = w.to_dtype(DType::F16).unwrap();
        assert_eq!(qmatmul_compute(&QMatMul::TensorF16(h)).0, Compute::F16);
    }
}
