//! candle, for BERT checkpoints: candle-transformers' `BertModel` over the variant's
//! safetensors (f32, f16, bf16 widened, integers dequantized) or GGUF (GGML blocks dequantized),
//! on the CPU (candle-cpu) or a GPU (candle-cuda: the same f32 model on cuBLAS). Each run embeds
//! a batch of token-id rows (mean-pooled last hidden states).
//!
//! The evidence is what candle-transformers took: the model is built through a `VarBuilder`
//! backend that records every tensor the model asks for, with the dtype it asks for it in
//! (its `Linear` layers compute in that dtype) and the device it goes to.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Shape, Tensor};
use candle_transformers::models::bert::{BertModel, Config};

use super::{compute_of, location, stored_of, stored_types};
use crate::backend::{BackendError, BackendId, LayerEvidence, Prepared, Session};
use crate::quant::Variant;

pub(super) fn prepare(
    variant: &Variant,
    config_path: &Path,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Prepared, BackendError> {
    let path = &variant.candle_artifact;
    let err = |stage: &'static str| move |e: candle_core::Error| BackendError::engine(id, stage, e);
    let config = read_config(config_path, id)?;
    let is_gguf = path.extension().is_some_and(|e| e == "gguf");
    let tensors = if is_gguf {
        load_gguf(path).map_err(err("loading the GGUF checkpoint"))?
    } else {
        crate::model::stored::load_all(path)
            .map_err(|e| BackendError::engine(id, "loading the checkpoint", crate::backend::chain(&e)))?
    };
    // Always f32 compute: candle-transformers' BERT builds its attention mask from f32::MIN,
    // which is -inf in f16 and turns every masked score into NaN; bf16 has no CPU matmul in
    // candle 0.11. Half weights are widened at load (observed: the layers compute in f32). On a
    // GPU too, so that candle-cpu and candle-cuda run the same model.
    let dtype = DType::F32;
    let weights_bytes: u64 = tensors.values().map(|t| (t.elem_count() * dtype.size_in_bytes()) as u64).sum();
    let taken = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder { tensors, taken: taken.clone() };
    let vb = candle_nn::VarBuilder::from_backend(Box::new(recorder), dtype, device.clone());
    let model = BertModel::load(vb, &config).map_err(|e| {
        BackendError::engine(id, "building the BERT", format!("candle-transformers cannot build a BERT from it: {e}"))
    })?;
    let taken = taken.lock().map(|t| t.clone()).unwrap_or_default();
    let on = if device.is_cpu() { String::new() } else { format!(" on {}", location(device)) };
    let evidence = format!(
        "candle-transformers BertModel ({} layers, hidden {}), {dtype:?} compute, {} tensors taken{on}",
        config.num_hidden_layers,
        config.hidden_size,
        taken.len()
    );
    let artifact_bytes = crate::backend::artifact_bytes(id, path)?;
    Ok(Prepared {
        session: Box::new(BertSession {
            id,
            device: device.clone(),
            variant: variant.clone(),
            taken,
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
        layers: Vec::new(),
        weights_bytes: Some(weights_bytes),
        heap_not_covered: None,
    })
}

/// `config.json` as candle-transformers reads it.
fn read_config(path: &Path, id: BackendId) -> Result<Config, BackendError> {
    let fail = |e: &dyn std::fmt::Display| {
        BackendError::engine(id, "reading the BERT config", format!("{}: {e}", path.display()))
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
    serde_json::from_str(&text).map_err(|e| fail(&e))
}

/// A tensor the model took: its name, the dtype it asked for, and where it put it.
#[derive(Debug, Clone)]
struct Taken {
    name: String,
    dtype: DType,
    device: String,
}

/// The checkpoint's tensors, handed to candle-transformers through `VarBuilder`, recording each
/// one it takes.
struct Recorder {
    tensors: HashMap<String, Tensor>,
    taken: Arc<Mutex<Vec<Taken>>>,
}

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "shape mismatch for {name}: the checkpoint holds {:?}, the model expects {s:?}",
                t.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.to_string() }.bt())?
            .to_dtype(dtype)?
            .to_device(dev)?;
        if let Ok(mut taken) = self.taken.lock() {
            taken.push(Taken { name: name.to_string(), dtype: t.dtype(), device: location(t.device()) });
        }
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Each planned linear layer as the model took its weight: a `candle_nn::Linear` computing in the
/// dtype it asked for.
fn evidence(variant: &Variant, taken: &[Taken], device: &Device) -> Vec<LayerEvidence> {
    let stored = stored_types(&variant.candle_artifact);
    let on = location(device);
    variant
        .layer_schemes
        .iter()
        .map(|(layer, _)| {
            let scheme = variant.layer_scheme(layer);
            let weight = format!("{layer}.weight");
            let stored_type = stored_of(&stored, &weight);
            match taken.iter().find(|t| t.name == weight) {
                Some(t) => LayerEvidence::observed(
                    layer,
                    scheme,
                    stored_type,
                    compute_of(t.dtype),
                    format!("candle_nn::Linear ({:?} matmul)", t.dtype),
                    t.device.clone(),
                    t.device == on,
                    None,
                    "the tensors candle-transformers took to build the model",
                ),
                None => LayerEvidence::observed(
                    layer,
                    scheme,
                    stored_type,
                    crate::backend::Compute::NotObservable,
                    "not taken by the model",
                    on.clone(),
                    true,
                    None,
                    "the tensors candle-transformers took to build the model",
                ),
            }
        })
        .collect()
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
    variant: Variant,
    /// The tensors the model took as it was built.
    taken: Vec<Taken>,
    /// The last input's copy to the GPU (ids, token types, mask), synchronized.
    input_copy_ns: Option<u64>,
    model: BertModel,
    batch: usize,
    pad: usize,
    vocab: usize,
    max_len: usize,
    input: Option<BertInput>,
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
        let (tensors, copy_ns) = super::copy_timed(id, &self.device, || {
            BertInput::new(input, self.batch, self.pad, &self.device)
                .map_err(|e| BackendError::engine(id, "copying the input", e))
        })?;
        self.input_copy_ns = copy_ns;
        self.input = Some(tensors);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let model = &self.model;
        self.output = Some(super::run_synchronized(self.id, &self.device, self.input.as_ref(), |x| embed(model, x))?);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::output_values(self.id, self.output.as_ref())
    }

    fn input_copy_ns(&self) -> Option<u64> {
        self.input_copy_ns
    }

    fn layer_evidence(&self) -> Vec<LayerEvidence> {
        evidence(&self.variant, &self.taken, &self.device)
    }
}

/// A batch of token-id rows as the model takes it: ids, token types (all 0) and the attention
/// mask (tokens that are not `pad_token_id`). Built outside the timed run.
struct BertInput {
    ids: Tensor,
    types: Tensor,
    mask: Tensor,
}

impl BertInput {
    /// `ids` as f32 (exact integers), `batch` rows, on `device`.
    fn new(ids: &[f32], batch: usize, pad_token_id: usize, device: &Device) -> candle_core::Result<BertInput> {
        let seq = ids.len() / batch.max(1);
        let ids_u32: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
        let input = Tensor::from_vec(ids_u32, (batch, seq), device)?;
        let mask_values: Vec<u32> = ids.iter().map(|&v| u32::from(v as usize != pad_token_id)).collect();
        let mask = Tensor::from_vec(mask_values, (batch, seq), device)?;
        Ok(BertInput { types: input.zeros_like()?, ids: input, mask })
    }
}

/// Sentence embeddings of a batch: the last hidden states averaged over the tokens that are
/// not padding.
fn embed(model: &BertModel, input: &BertInput) -> candle_core::Result<Tensor> {
    let (mask, types) = (&input.mask, &input.types);
    let hidden = model.forward(&input.ids, types, Some(mask))?.to_dtype(DType::F32)?;
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    // An all-padding row averages nothing: divide by at least 1.
    let counts = m.sum(1)?.clamp(1f32, f32::MAX)?;
    summed.broadcast_div(&counts)
}
