//! Zoo models on candle: the candle-nn modules of [`Net`] over the variant's safetensors or GGUF,
//! on the CPU or a GPU. The evidence is read from the built modules: each layer's weight tensor
//! (its dtype and device) or `QMatMul` (GGML blocks, or the tensor candle dequantized them to).

use candle_core::{Device, Tensor};
use candle_nn::Module;

use super::net::{describe_input, LayerModule, Net};
use super::{location, qmatmul_compute, stored_of, stored_types};
use crate::backend::{BackendError, BackendId, Capture, LayerEvidence, LayerSession, Prepared, Session, MODEL_OUTPUT};
use crate::model::stored::load_model;
use crate::quant::Variant;
use crate::zoo::ZooModelId;

/// A zoo model's session on `device`.
pub(super) fn prepare(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Prepared, BackendError> {
    let net = load_net(variant, id, device)?;
    let artifact_bytes = crate::backend::artifact_bytes(id, &variant.candle_artifact)?;
    let on = if device.is_cpu() { String::new() } else { format!(" on {}", location(device)) };
    let evidence = format!("{}{on}", net.kernels());
    let weights_bytes = Some(net.weights_bytes());
    let [c, h, w] = zoo(variant, id)?.input_shape();
    Ok(Prepared {
        session: Box::new(CandleSession {
            id,
            device: device.clone(),
            variant: variant.clone(),
            net,
            shape: (batch, c, h, w),
            input: None,
            input_copy_ns: None,
            output: None,
        }),
        artifact: variant.candle_artifact.clone(),
        artifact_bytes,
        evidence,
        layers: Vec::new(),
        weights_bytes,
        heap_not_covered: None,
    })
}

/// What candle made of each weighted layer, read from the built modules.
fn evidence(net: &Net, variant: &Variant, device: &Device) -> Vec<LayerEvidence> {
    let stored = stored_types(&variant.candle_artifact);
    let on = location(device);
    net.layer_modules()
        .into_iter()
        .map(|(name, module)| {
            let scheme = variant.layer_scheme(name);
            let stored_type = stored_of(&stored, &format!("{name}.weight"));
            let (compute, kernel, at) = match module {
                LayerModule::Conv { weight, input } => (
                    super::compute_of(weight.dtype()),
                    format!("Conv2d {:?}{}", weight.dtype(), describe_input(input)),
                    location(weight.device()),
                ),
                LayerModule::Linear { weight, input } => (
                    super::compute_of(weight.dtype()),
                    format!("Linear {:?}{}", weight.dtype(), describe_input(input)),
                    location(weight.device()),
                ),
                LayerModule::QLinear { matmul } => {
                    let (compute, kernel) = qmatmul_compute(matmul);
                    // candle picks its CUDA kernel (MMVQ, MMQ, or its q8_1 fallback) per
                    // call, from the rows and the input's layout; it does not say which ran.
                    let kernel = if device.is_cpu() {
                        kernel
                    } else {
                        format!("{kernel} (CUDA kernel chosen per call by candle: not observable)")
                    };
                    (compute, kernel, super::qmatmul_location(matmul))
                }
            };
            let per_call = match module {
                LayerModule::Conv { input: Some(_), .. } | LayerModule::Linear { input: Some(_), .. } => {
                    Some("u8 quantize-dequantize of the layer's input, in f32".to_string())
                }
                _ => None,
            };
            let on_device = at == on;
            LayerEvidence::observed(
                name,
                scheme,
                stored_type,
                compute,
                kernel,
                at,
                on_device,
                per_call,
                "the built candle-nn modules",
            )
        })
        .collect()
}

/// A zoo model on `device` whose runs return every weighted layer's output or input.
pub(super) fn layers(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    device: &Device,
    capture: Capture,
) -> Result<Box<dyn LayerSession>, BackendError> {
    let net = load_net(variant, id, device)?;
    let [c, h, w] = zoo(variant, id)?.input_shape();
    Ok(Box::new(CandleLayers { id, device: device.clone(), net, shape: (batch, c, h, w), capture }))
}

struct CandleLayers {
    id: BackendId,
    device: Device,
    net: Net,
    shape: (usize, usize, usize, usize),
    capture: Capture,
}

impl LayerSession for CandleLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let id = self.id;
        let err = |e: candle_core::Error| BackendError::engine(id, "capturing layer values", e);
        let x = Tensor::from_slice(input, self.shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(self.net.dtype()))
            .and_then(|t| t.to_device(&self.device))
            .map_err(err)?;
        let values = match self.capture {
            Capture::Outputs => self.net.layer_outputs(&x),
            Capture::Inputs => self.net.layer_inputs(&x),
        };
        let mut out = values
            .map_err(err)?
            .into_iter()
            .map(|(name, t)| {
                let v = t.flatten_all().and_then(|t| t.to_dtype(candle_core::DType::F32)).and_then(|t| t.to_vec1());
                v.map(|v| (name.to_string(), v)).map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A zoo model ends in its last weighted layer: that output is the model's.
        if self.capture == Capture::Outputs {
            if let Some((_, last)) = out.last() {
                out.push((MODEL_OUTPUT.to_string(), last.clone()));
            }
        }
        Ok(out)
    }
}

/// The zoo architecture candle builds layer by layer; other models have none.
fn zoo(variant: &Variant, id: BackendId) -> Result<ZooModelId, BackendError> {
    variant.zoo().ok_or_else(|| {
        BackendError::engine(
            id,
            "loading the model",
            "candle builds zoo models layer by layer; a user's ONNX model is localized through its tract-cpu case (tract reads intermediate values), and candle-transformers' BERT and quantized llama/qwen2/qwen3 expose no layer outputs (a language model's error shows in its perplexity and KL columns)",
        )
    })
}

/// Loads the variant from its file onto `device`, as a user of the artifact would, not from
/// memory. bf16 weights are widened to f32 on the CPU (candle 0.11 has no CPU bf16 matmul) and
/// kept bf16 on a GPU.
fn load_net(variant: &Variant, id: BackendId, device: &Device) -> Result<Net, BackendError> {
    let zoo = zoo(variant, id)?;
    let is_gguf = variant.candle_artifact.extension().is_some_and(|e| e == "gguf");
    if is_gguf {
        return Net::from_gguf(zoo, &variant.candle_artifact, device)
            .map_err(|e| BackendError::engine(id, "loading the GGUF model", e));
    }
    let (tensors, inputs) = load_model(&variant.candle_artifact, zoo)
        .map_err(|e| BackendError::engine(id, "loading weights", crate::backend::chain(&e)))?;
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| {
            let t = if device.is_cpu() && t.dtype() == candle_core::DType::BF16 {
                t.to_dtype(candle_core::DType::F32)?
            } else {
                t
            };
            Ok((name, t.to_device(device)?))
        })
        .collect::<candle_core::Result<_>>()
        .map_err(|e| BackendError::engine(id, "copying the weights to the device", e))?;
    Ok(Net::new(zoo, &tensors)
        .map_err(|e| BackendError::engine(id, "building the model", e))?
        .with_input_quant(&inputs))
}

struct CandleSession {
    id: BackendId,
    device: Device,
    /// What the evidence classifies each layer against.
    variant: Variant,
    net: Net,
    shape: (usize, usize, usize, usize),
    input: Option<Tensor>,
    input_copy_ns: Option<u64>,
    output: Option<Tensor>,
}

impl Session for CandleSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        // Converted to the network's dtype and copied to the device here, outside the timed
        // run; the copy is timed on its own (synchronized: candle's copies are asynchronous).
        let err = |e| BackendError::engine(self.id, "copying the input", e);
        let t = Tensor::from_slice(input, self.shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(self.net.dtype()))
            .map_err(err)?;
        let (t, copy_ns) = super::copy_timed(self.id, &self.device, || t.to_device(&self.device).map_err(err))?;
        self.input_copy_ns = copy_ns;
        self.input = Some(t);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let net = &self.net;
        self.output = Some(super::run_synchronized(self.id, &self.device, self.input.as_ref(), |x| net.forward(x))?);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::output_values(self.id, self.output.as_ref())
    }

    fn input_copy_ns(&self) -> Option<u64> {
        self.input_copy_ns
    }

    fn layer_evidence(&self) -> Vec<LayerEvidence> {
        evidence(&self.net, &self.variant, &self.device)
    }

    /// Each step of the network (its layers and the ops between), each synchronized.
    fn profile_run(&mut self) -> Option<Result<Vec<crate::backend::OpTime>, BackendError>> {
        let Some(input) = self.input.as_ref() else {
            return Some(Err(BackendError::engine(self.id, "profiling", "no input was set")));
        };
        let device = &self.device;
        let profiled = self.net.profile(input, &|| device.synchronize());
        Some(match profiled {
            Ok((out, times)) => {
                self.output = Some(out);
                Ok(times)
            }
            Err(e) => Err(BackendError::engine(self.id, "profiling", e)),
        })
    }
}
