//! BERT-family encoders from a Hugging Face checkpoint: `model.safetensors` + `config.json`,
//! run by candle-transformers' `BertModel`.
//!
//! The model's output for an item (a row of token ids) is its sentence embedding: the last
//! hidden states averaged over the non-padding tokens, the usual pooling of sentence encoders.
//! Schemes apply to the encoder's linear layers (attention query/key/value/output, the feed-forward
//! pair); the embedding tables and LayerNorms stay float except under f16/bf16, which round
//! every parameter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};

use super::ModelError;
use crate::hash::sha256_hex;

/// A loaded checkpoint, f32.
pub struct BertCheckpoint {
    pub path: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    pub sha256: String,
    /// Every tensor of the checkpoint, f32 on the CPU.
    pub tensors: HashMap<String, Tensor>,
    /// The linear layers (name without `.weight`) and their input widths, in encoder order.
    pub layers: Vec<(String, usize)>,
}

impl BertCheckpoint {
    /// Reads the checkpoint and its config and checks that candle-transformers can build it.
    pub fn load(model: &str, path: &Path, config_path: &Path) -> Result<BertCheckpoint, ModelError> {
        let bad =
            |reason: String| ModelError::Checkpoint { model: model.to_string(), path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(config_path)
            .map_err(|source| ModelError::Read { path: config_path.to_path_buf(), source })?;
        let config = parse_config(&text)
            .map_err(|e| bad(format!("its config {} cannot be used: {e}", config_path.display())))?;
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read { path: path.to_path_buf(), source })?;
        let raw = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            bad(format!("it is not a valid safetensors file ({e}); the file is truncated or corrupt: download or export it again"))
        })?;
        let mut tensors = HashMap::new();
        for (name, t) in raw {
            if !t.dtype().is_float() {
                continue;
            }
            let t = t.to_dtype(DType::F32).map_err(|e| bad(e.to_string()))?;
            let finite = t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(|e| bad(e.to_string()))?;
            if finite.iter().any(|v| !v.is_finite()) {
                return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor: name });
            }
            tensors.insert(name, t);
        }
        // candle-transformers names what is missing or misshapen.
        build(&tensors, &config, DType::F32, &Device::Cpu)
            .map_err(|e| bad(format!("candle-transformers cannot build a BERT from it: {e}")))?;
        let layers = linear_layers(&tensors);
        if layers.is_empty() {
            return Err(bad("it has no encoder linear layer (encoder.layer.N.…dense/query/key/value)".into()));
        }
        Ok(BertCheckpoint {
            path: path.to_path_buf(),
            config_path: config_path.to_path_buf(),
            config,
            sha256: sha256_hex(&bytes),
            tensors,
            layers,
        })
    }

    /// Elements of all float tensors.
    pub fn parameters(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }
}

/// `config.json` as candle-transformers reads it; the model type must be a BERT.
pub fn parse_config(text: &str) -> Result<Config, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    if !model_type.is_empty() && model_type != "bert" {
        return Err(format!(
            "model_type is \"{model_type}\"; qbench runs BERT encoders (model_type \"bert\") from safetensors"
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("it is not a BERT config ({e})"))
}

/// The model from `tensors` (converted to `dtype`), on `device` (the builder copies each tensor
/// there as the model takes it).
pub fn build(
    tensors: &HashMap<String, Tensor>,
    config: &Config,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<BertModel> {
    let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), dtype, device);
    BertModel::load(vb, config)
}

/// Encoder linear weights: 2-D `.weight` tensors with a `.bias`, inside `encoder.layer.N`.
fn linear_layers(tensors: &HashMap<String, Tensor>) -> Vec<(String, usize)> {
    let mut out: Vec<(Vec<usize>, String, usize)> = tensors
        .iter()
        .filter_map(|(name, t)| {
            let base = name.strip_suffix(".weight")?;
            let dims = t.dims();
            let in_encoder = base.contains("encoder.layer.");
            (dims.len() == 2
                && in_encoder
                && tensors.contains_key(&format!("{base}.bias"))
                && !base.contains("LayerNorm"))
            .then(|| (order_key(base), base.to_string(), dims[1]))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, n, w)| (n, w)).collect()
}

/// Encoder order: layer index, then query, key, value, attention output, intermediate, output.
fn order_key(name: &str) -> Vec<usize> {
    let layer = name
        .split("encoder.layer.")
        .nth(1)
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX);
    let part = ["self.query", "self.key", "self.value", "attention.output", "intermediate", "output.dense"]
        .iter()
        .position(|p| name.contains(p))
        .unwrap_or(9);
    vec![layer, part]
}

/// A batch of token-id rows as the model takes it: ids, token types (all 0) and the attention
/// mask (tokens that are not `pad_token_id`). Built outside the timed run.
pub struct BertInput {
    ids: Tensor,
    types: Tensor,
    mask: Tensor,
}

impl BertInput {
    /// `ids` as f32 (exact integers), `batch` rows, on `device`.
    pub fn new(ids: &[f32], batch: usize, pad_token_id: usize, device: &Device) -> candle_core::Result<BertInput> {
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
pub fn embed(model: &BertModel, input: &BertInput) -> candle_core::Result<Tensor> {
    let (mask, types) = (&input.mask, &input.types);
    let hidden = model.forward(&input.ids, types, Some(mask))?.to_dtype(DType::F32)?;
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    // An all-padding row averages nothing: divide by at least 1.
    let counts = m.sum(1)?.clamp(1f32, f32::MAX)?;
    summed.broadcast_div(&counts)
}
