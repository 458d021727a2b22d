//! candle on the CPU: the zoo model as candle-nn modules over the variant's safetensors.
//! candle-cuda builds the same modules on the GPU through [`prepare_zoo`] and [`zoo_layers`].

use candle_core::{Device, Tensor};
use candle_nn::Module;

use super::{Backend, BackendError, BackendId, LayerSession, Prepared, Session};
use crate::model::stored::load_model;
use crate::quant::Variant;
use crate::zoo::Net;

pub struct CandleCpu;

const ID: BackendId = BackendId::CandleCpu;

impl Backend for CandleCpu {
    fn id(&self) -> BackendId {
        ID
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        match &variant.arch {
            crate::quant::Arch::Bert(config) => {
                return super::candle_bert::prepare(variant, config, batch, ID, &Device::Cpu)
            }
            crate::quant::Arch::Gguf(arch) => {
                return super::candle_lm::prepare(variant, *arch, batch, ID, &Device::Cpu)
            }
            #[cfg(feature = "candle-onnx")]
            crate::quant::Arch::OnnxGraph => return super::candle_onnx::prepare(variant, batch),
            _ => {}
        }
        prepare_zoo(variant, batch, ID, &Device::Cpu)
    }

    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        zoo_layers(variant, batch, ID, &Device::Cpu)
    }
}

/// A zoo model's session on `device`: candle-nn modules over the variant's file.
pub(super) fn prepare_zoo(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Prepared, BackendError> {
    let (net, is_gguf) = load_net(variant, id, device)?;
    let artifact_bytes = std::fs::metadata(&variant.candle_artifact)
        .map(|m| m.len())
        .map_err(|e| BackendError::engine(id, "reading the artifact size", e))?;
    let storage = &variant.weight_storage;
    let conversion = if is_gguf {
        ""
    } else if ["=i8", "=i4", "=u4"].iter().any(|t| storage.contains(t)) {
        " (dequantized at load from the stored integers)"
    } else if storage.contains("=bf16") && device.is_cpu() {
        " (widened at load from the stored bf16)"
    } else {
        ""
    };
    let on = if device.is_cpu() { String::new() } else { format!(" on {}", super::candle_device_name(device)) };
    let evidence = format!("{}{conversion}{on}", net.kernels());
    let weights_bytes = Some(net.weights_bytes());
    let [c, h, w] = zoo(variant, id)?.input_shape();
    Ok(Prepared {
        session: Box::new(CandleSession {
            id,
            device: device.clone(),
            net,
            shape: (batch, c, h, w),
            input: None,
            input_copy_ns: None,
            output: None,
        }),
        artifact: variant.candle_artifact.clone(),
        artifact_bytes,
        evidence,
        weights_bytes,
    })
}

/// A zoo model on `device` whose runs return every weighted layer's output.
pub(super) fn zoo_layers(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Box<dyn LayerSession>, BackendError> {
    let (net, _) = load_net(variant, id, device)?;
    let [c, h, w] = zoo(variant, id)?.input_shape();
    Ok(Box::new(CandleLayers { id, device: device.clone(), net, shape: (batch, c, h, w) }))
}

struct CandleLayers {
    id: BackendId,
    device: Device,
    net: Net,
    shape: (usize, usize, usize, usize),
}

impl LayerSession for CandleLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let id = self.id;
        let err = |e: candle_core::Error| BackendError::engine(id, "capturing layer outputs", e);
        let x = Tensor::from_slice(input, self.shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(self.net.dtype()))
            .and_then(|t| t.to_device(&self.device))
            .map_err(err)?;
        let mut out = self
            .net
            .layer_outputs(&x)
            .map_err(err)?
            .into_iter()
            .map(|(name, t)| {
                let v = t.flatten_all().and_then(|t| t.to_dtype(candle_core::DType::F32)).and_then(|t| t.to_vec1());
                v.map(|v| (name.to_string(), v)).map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A zoo model ends in its last weighted layer: that output is the model's.
        if let Some((_, last)) = out.last() {
            out.push((super::MODEL_OUTPUT.to_string(), last.clone()));
        }
        Ok(out)
    }
}

/// The zoo architecture candle builds layer by layer; other models have none.
fn zoo(variant: &Variant, id: BackendId) -> Result<crate::zoo::ZooModelId, BackendError> {
    variant.zoo().ok_or_else(|| {
        BackendError::engine(
            id,
            "loading the model",
            "candle builds zoo models layer by layer; a user's ONNX model is localized through its tract-cpu case (tract reads intermediate values), and candle-transformers' BERT and quantized llama/qwen2 expose no layer outputs (a language model's error shows in its perplexity and KL columns)",
        )
    })
}

/// Loads the variant from its file onto `device`, as a user of the artifact would, not from
/// memory. Off the CPU, bf16-stored layers are narrowed back to bf16 after loading (exactly:
/// the CPU load widened them), so a GPU runs them in bf16.
fn load_net(variant: &Variant, id: BackendId, device: &Device) -> Result<(Net, bool), BackendError> {
    let zoo = zoo(variant, id)?;
    let is_gguf = variant.candle_artifact.extension().is_some_and(|e| e == "gguf");
    let net = if is_gguf {
        Net::from_gguf(zoo, &variant.candle_artifact, device)
            .map_err(|e| BackendError::engine(id, "loading the GGUF model", e))?
    } else {
        let (tensors, inputs) =
            load_model(&variant.candle_artifact, zoo).map_err(|e| BackendError::engine(id, "loading weights", e))?;
        let tensors = if device.is_cpu() {
            tensors
        } else {
            let bf16: Vec<&str> = variant
                .weight_storage
                .split(", ")
                .filter_map(|entry| entry.split_once('='))
                .filter(|(_, storage)| storage.starts_with("bf16"))
                .map(|(name, _)| name)
                .collect();
            tensors
                .into_iter()
                .map(|(name, t)| {
                    let t = if bf16.contains(&name.as_str()) { t.to_dtype(candle_core::DType::BF16)? } else { t };
                    Ok((name, t.to_device(device)?))
                })
                .collect::<candle_core::Result<_>>()
                .map_err(|e| BackendError::engine(id, "copying the weights to the device", e))?
        };
        Net::new(zoo, &tensors)
            .map_err(|e| BackendError::engine(id, "building the model", e))?
            .with_input_quant(&inputs)
    };
    Ok((net, is_gguf))
}

struct CandleSession {
    id: BackendId,
    device: Device,
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
        let (t, copy_ns) = super::candle_copy_timed(self.id, &self.device, || t.to_device(&self.device).map_err(err))?;
        self.input_copy_ns = copy_ns;
        self.input = Some(t);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let id = self.id;
        let input = self.input.as_ref().ok_or_else(|| BackendError::engine(id, "running", "no input was set"))?;
        let output = self.net.forward(input).map_err(|e| BackendError::engine(id, "running", e))?;
        // A GPU runs kernels asynchronously: the run ends when the device is done, not when the
        // last kernel is queued. (A no-op on the CPU.)
        self.device.synchronize().map_err(|e| BackendError::engine(id, "running", e))?;
        self.output = Some(output);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::candle_output(self.id, self.output.as_ref())
    }

    fn input_copy_ns(&self) -> Option<u64> {
        self.input_copy_ns
    }
}
