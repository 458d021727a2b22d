//! candle on the CPU: the zoo model as candle-nn modules over the variant's safetensors.

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
            crate::quant::Arch::Bert(config) => return super::candle_bert::prepare(variant, config, batch),
            crate::quant::Arch::Gguf(arch) => return super::candle_lm::prepare(variant, *arch, batch),
            #[cfg(feature = "candle-onnx")]
            crate::quant::Arch::OnnxGraph => return super::candle_onnx::prepare(variant, batch),
            _ => {}
        }
        let (net, is_gguf) = load_net(variant)?;
        let artifact_bytes = std::fs::metadata(&variant.candle_artifact)
            .map(|m| m.len())
            .map_err(|e| BackendError::engine(ID, "reading the artifact size", e))?;
        let storage = &variant.weight_storage;
        let conversion = if is_gguf {
            ""
        } else if ["=i8", "=i4", "=u4"].iter().any(|t| storage.contains(t)) {
            " (dequantized at load from the stored integers)"
        } else if storage.contains("=bf16") {
            " (widened at load from the stored bf16)"
        } else {
            ""
        };
        let evidence = format!("{}{conversion}", net.kernels());
        let weights_bytes = Some(net.weights_bytes());
        let [c, h, w] = zoo(variant)?.input_shape();
        Ok(Prepared {
            session: Box::new(CandleSession { net, shape: (batch, c, h, w), input: None, output: None }),
            artifact: variant.candle_artifact.clone(),
            artifact_bytes,
            evidence,
            weights_bytes,
        })
    }

    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        let (net, _) = load_net(variant)?;
        let [c, h, w] = zoo(variant)?.input_shape();
        Ok(Box::new(CandleLayers { net, shape: (batch, c, h, w) }))
    }
}

struct CandleLayers {
    net: Net,
    shape: (usize, usize, usize, usize),
}

impl LayerSession for CandleLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let err = |e: candle_core::Error| BackendError::engine(ID, "capturing layer outputs", e);
        let x = Tensor::from_slice(input, self.shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(self.net.dtype()))
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
fn zoo(variant: &Variant) -> Result<crate::zoo::ZooModelId, BackendError> {
    variant.zoo().ok_or_else(|| {
        BackendError::engine(
            ID,
            "loading the model",
            "candle builds zoo models layer by layer; a user's ONNX model is localized through its tract-cpu case (tract reads intermediate values), and candle-transformers' BERT and quantized llama/qwen2 expose no layer outputs (a language model's error shows in its perplexity and KL columns)",
        )
    })
}

/// Loads the variant from its file, as a user of the artifact would, not from memory.
fn load_net(variant: &Variant) -> Result<(Net, bool), BackendError> {
    let zoo = zoo(variant)?;
    let is_gguf = variant.candle_artifact.extension().is_some_and(|e| e == "gguf");
    let net = if is_gguf {
        Net::from_gguf(zoo, &variant.candle_artifact)
            .map_err(|e| BackendError::engine(ID, "loading the GGUF model", e))?
    } else {
        let (tensors, inputs) =
            load_model(&variant.candle_artifact, zoo).map_err(|e| BackendError::engine(ID, "loading weights", e))?;
        Net::new(zoo, &tensors)
            .map_err(|e| BackendError::engine(ID, "building the model", e))?
            .with_input_quant(&inputs)
    };
    Ok((net, is_gguf))
}

struct CandleSession {
    net: Net,
    shape: (usize, usize, usize, usize),
    input: Option<Tensor>,
    output: Option<Tensor>,
}

impl Session for CandleSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        // Converted to the network's dtype here, outside the timed run.
        let t = Tensor::from_slice(input, self.shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(self.net.dtype()))
            .map_err(|e| BackendError::engine(ID, "copying the input", e))?;
        self.input = Some(t);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let input = self.input.as_ref().ok_or_else(|| BackendError::engine(ID, "running", "no input was set"))?;
        self.output = Some(self.net.forward(input).map_err(|e| BackendError::engine(ID, "running", e))?);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::candle_output(ID, self.output.as_ref())
    }
}
