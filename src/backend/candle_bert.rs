//! candle, for BERT checkpoints: candle-transformers' `BertModel` over the variant's
//! safetensors (f32, f16, bf16 widened, integers dequantized) or GGUF (GGML blocks dequantized),
//! on the CPU (candle-cpu) or a GPU (candle-cuda: the same f32 model on cuBLAS). Each run embeds
//! a batch of token-id rows (mean-pooled last hidden states).

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};

use super::{BackendError, BackendId, Prepared, Session};
use crate::quant::Variant;

pub(super) fn prepare(
    variant: &Variant,
    config: &Config,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Prepared, BackendError> {
    let path = &variant.candle_artifact;
    let err = |stage: &'static str| move |e: candle_core::Error| BackendError::engine(id, stage, e);
    let is_gguf = path.extension().is_some_and(|e| e == "gguf");
    let tensors = if is_gguf {
        load_gguf(path).map_err(err("loading the GGUF checkpoint"))?
    } else {
        crate::model::stored::load_all(path).map_err(|e| BackendError::engine(id, "loading the checkpoint", e))?
    };
    // Always f32 compute: candle-transformers' BERT builds its attention mask from f32::MIN,
    // which is -inf in f16 and turns every masked score into NaN; bf16 has no CPU matmul in
    // candle 0.11. Half weights are widened at load (the realization says emulated). On a GPU
    // too, so that candle-cpu and candle-cuda run the same model.
    let dtype = DType::F32;
    let half = tensors.values().any(|t| t.dtype() == DType::F16);
    let weights_bytes: u64 = tensors.values().map(|t| (t.elem_count() * dtype.size_in_bytes()) as u64).sum();
    let model = crate::model::bert::build(&tensors, config, dtype, device).map_err(err("building the BERT"))?;
    let storage = &variant.weight_storage;
    let conversion = if is_gguf && storage.contains("=q") {
        ", GGML weights dequantized to f32 at load (candle-transformers' BERT uses Linear, not QMatMul)"
    } else if ["=i8", "=i4", "=u4"].iter().any(|t| storage.contains(t)) {
        ", weights dequantized at load from the stored integers"
    } else if storage.contains("bf16") {
        ", widened at load from the stored bf16"
    } else if half || storage.contains("f16") {
        ", widened at load from the stored f16 (f16 compute would turn the attention mask into NaN)"
    } else {
        ""
    };
    let on = if device.is_cpu() { String::new() } else { format!(" on {}", super::candle_device_name(device)) };
    let evidence = format!(
        "candle-transformers BertModel ({} layers, hidden {}), {dtype:?} compute{conversion}{on}",
        config.num_hidden_layers, config.hidden_size
    );
    let artifact_bytes = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| BackendError::engine(id, "reading the artifact size", e))?;
    Ok(Prepared {
        session: Box::new(BertSession {
            id,
            device: device.clone(),
            input_copy_ns: None,
            model,
            batch,
            pad: config.pad_token_id,
            vocab: config.vocab_size,
            max_len: config.max_position_embeddings,
            input: None,
            output: None,
        }),
        artifact: path.clone(),
        artifact_bytes,
        evidence,
        weights_bytes: Some(weights_bytes),
    })
}

/// Every tensor of a GGUF written by `quant::checkpoint`, dequantized, padding removed.
fn load_gguf(path: &std::path::Path) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut file = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut out = HashMap::new();
    for name in content.tensor_infos.keys() {
        let t = content.tensor(&mut file, name, &Device::Cpu)?.dequantize(&Device::Cpu)?;
        let key = format!("{}{name}", crate::quant::checkpoint::WIDTH_KEY);
        let t = match content.metadata.get(&key) {
            Some(w) => t.narrow(1, 0, w.to_u32()? as usize)?,
            None => t,
        };
        out.insert(name.clone(), t);
    }
    Ok(out)
}

struct BertSession {
    id: BackendId,
    device: Device,
    /// The last input's copy to the GPU (ids, token types, mask), synchronized.
    input_copy_ns: Option<u64>,
    model: BertModel,
    batch: usize,
    pad: usize,
    vocab: usize,
    max_len: usize,
    input: Option<crate::model::bert::BertInput>,
    output: Option<Tensor>,
}

impl Session for BertSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        let id = self.id;
        let bad = |m: String| BackendError::engine(id, "copying the input", m);
        let seq = input.len() / self.batch.max(1);
        if seq > self.max_len {
            return Err(bad(format!(
                "rows of {seq} tokens exceed the model's max_position_embeddings ({})",
                self.max_len
            )));
        }
        if let Some((i, v)) =
            input.iter().enumerate().find(|(_, v)| !(v.fract() == 0.0 && **v >= 0.0 && (**v as usize) < self.vocab))
        {
            return Err(bad(format!(
                "item {} holds token id {v}, outside the vocabulary (vocab_size {}); the token ids do not belong to this model",
                i / seq.max(1),
                self.vocab
            )));
        }
        let (tensors, copy_ns) = super::candle_copy_timed(id, &self.device, || {
            crate::model::bert::BertInput::new(input, self.batch, self.pad, &self.device)
                .map_err(|e| BackendError::engine(id, "copying the input", e))
        })?;
        self.input_copy_ns = copy_ns;
        self.input = Some(tensors);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let id = self.id;
        let input = self.input.as_ref().ok_or_else(|| BackendError::engine(id, "running", "no input was set"))?;
        let out = crate::model::bert::embed(&self.model, input).map_err(|e| BackendError::engine(id, "running", e))?;
        // A GPU's kernels run asynchronously: the run ends when the device is done.
        self.device.synchronize().map_err(|e| BackendError::engine(id, "running", e))?;
        self.output = Some(out);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::candle_output(self.id, self.output.as_ref())
    }

    fn input_copy_ns(&self) -> Option<u64> {
        self.input_copy_ns
    }
}
