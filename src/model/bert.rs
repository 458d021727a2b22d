//! BERT-family encoders from a Hugging Face checkpoint: `model.safetensors` + `config.json`
//! (the candle backend runs them with candle-transformers' `BertModel`).
//!
//! The model's output for an item (a row of token ids) is its sentence embedding: the last
//! hidden states averaged over the non-padding tokens, the usual pooling of sentence encoders.
//! Schemes apply to the encoder's linear layers (attention query/key/value/output, the feed-forward
//! pair); the embedding tables and LayerNorms stay float except under f16/bf16, which round
//! every parameter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::ModelError;
use crate::hash::sha256_hex;

/// A loaded checkpoint, f32.
pub struct BertCheckpoint {
    pub path: PathBuf,
    pub config_path: PathBuf,
    pub config: BertConfig,
    pub sha256: String,
    /// Every tensor of the checkpoint, f32 on the CPU.
    pub tensors: HashMap<String, Tensor>,
    /// The linear layers (name without `.weight`) and their input widths, in encoder order.
    pub layers: Vec<(String, usize)>,
}

impl BertCheckpoint {
    /// Reads the checkpoint and its config and checks that they fit each other: the embedding
    /// table's shape against the config's vocabulary and width, the encoder's layer count.
    pub fn load(model: &str, path: &Path, config_path: &Path) -> Result<BertCheckpoint, ModelError> {
        let bad =
            |reason: String| ModelError::Checkpoint { model: model.to_string(), path: path.to_path_buf(), reason };
        let text = crate::files::read_text_bounded(config_path, 16 << 20, "a model config")?;
        let config = parse_config(&text)
            .map_err(|e| bad(format!("its config {} cannot be used: {e}", config_path.display())))?;
        let bytes = crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file")?;
        super::safetensors_check::check(&bytes)
            .map_err(|e| bad(format!("it is not a valid safetensors file ({e})")))?;
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
        check_fits(&config, &tensors).map_err(|e| bad(format!("{e} (config: {})", config_path.display())))?;
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

/// What qbench reads of a BERT `config.json` (the engine reads the whole file itself).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub pad_token_id: usize,
    /// The feed-forward activation candle-transformers' BERT runs (`gelu` when absent).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_type_vocab() -> usize {
    2
}

/// The activations candle-transformers' BERT implements (its `HiddenAct`).
const ACTIVATIONS: [&str; 3] = ["gelu", "gelu_approximate", "relu"];

/// Why a `config.json` is not a BERT's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not JSON ({0})")]
    NotJson(String),
    #[error("{0}")]
    Invalid(String),
    #[error("model_type is \"{0}\"; qbench runs BERT encoders (model_type \"bert\") from safetensors")]
    NotBert(String),
    #[error("it is not a BERT config (field `{field}`: {reason})")]
    Fields { field: String, reason: String },
}

/// A BERT `config.json`; the model type must be a BERT, and the fields every BERT has present.
pub fn parse_config(text: &str) -> Result<BertConfig, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // The line at fault, so its key is named (a number too large for JSON, a stray comma).
        let line = text.lines().nth(e.line().saturating_sub(1)).unwrap_or("").trim();
        let line: String = line.chars().take(80).collect();
        ConfigError::NotJson(format!("{e}: `{line}`"))
    })?;
    let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    if !model_type.is_empty() && model_type != "bert" {
        return Err(ConfigError::NotBert(model_type.to_string()));
    }
    let config: BertConfig = serde_path_to_error::deserialize(value)
        .map_err(|e| ConfigError::Fields { field: e.path().to_string(), reason: e.into_inner().to_string() })?;
    check_config(&config).map_err(ConfigError::Invalid)?;
    Ok(config)
}

/// The sizes an engine divides by or allocates from, checked before any engine sees them.
fn check_config(c: &BertConfig) -> Result<(), String> {
    for (field, v) in [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("num_attention_heads", c.num_attention_heads),
        ("intermediate_size", c.intermediate_size),
        ("max_position_embeddings", c.max_position_embeddings),
        ("type_vocab_size", c.type_vocab_size),
    ] {
        if v == 0 || v > 1 << 24 {
            return Err(format!("field `{field}` is {v}; it must be from 1 to {}", 1 << 24));
        }
    }
    if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        return Err(format!(
            "field `num_attention_heads` ({}) does not divide `hidden_size` ({}); every head must have the same width",
            c.num_attention_heads, c.hidden_size
        ));
    }
    if c.pad_token_id >= c.vocab_size {
        return Err(format!("field `pad_token_id` ({}) is not below `vocab_size` ({})", c.pad_token_id, c.vocab_size));
    }
    if !ACTIVATIONS.contains(&c.hidden_act.as_str()) {
        return Err(format!(
            "field `hidden_act` is \"{}\"; candle's BERT runs {}",
            c.hidden_act,
            ACTIVATIONS.join(", ")
        ));
    }
    Ok(())
}

/// The config must describe these weights: the word embedding table is `[vocab_size,
/// hidden_size]`, and the encoder has `num_hidden_layers` layers.
fn check_fits(config: &BertConfig, tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let table = tensors
        .iter()
        .find(|(n, _)| n.ends_with("embeddings.word_embeddings.weight"))
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .ok_or("it has no embeddings.word_embeddings.weight tensor; it is not a BERT checkpoint")?;
    let want = [config.vocab_size, config.hidden_size];
    if table.1 != want {
        return Err(format!(
            "its config says vocab_size {} and hidden_size {}, but {} has shape {:?}; the config belongs to another model",
            config.vocab_size, config.hidden_size, table.0, table.1
        ));
    }
    let layers = (0..config.num_hidden_layers)
        .filter(|i| tensors.keys().any(|n| n.contains(&format!("encoder.layer.{i}."))))
        .count();
    if layers != config.num_hidden_layers {
        return Err(format!(
            "its config says num_hidden_layers {}, but the checkpoint holds encoder layers for {layers}; the config belongs to another model",
            config.num_hidden_layers
        ));
    }
    // Every other table the engine builds from the config must match the weights too.
    for (suffix, want) in [
        ("embeddings.position_embeddings.weight", vec![config.max_position_embeddings, config.hidden_size]),
        ("embeddings.token_type_embeddings.weight", vec![config.type_vocab_size, config.hidden_size]),
        ("encoder.layer.0.intermediate.dense.weight", vec![config.intermediate_size, config.hidden_size]),
    ] {
        let found = tensors.iter().find(|(n, _)| n.ends_with(suffix));
        match found {
            Some((n, t)) if t.dims() != want.as_slice() => {
                return Err(format!(
                    "its config gives {n} the shape {want:?}, but the checkpoint's is {:?}; the config belongs to another model",
                    t.dims()
                ))
            }
            Some(_) => {}
            None => return Err(format!("it has no {suffix} tensor; it is not a BERT checkpoint")),
        }
    }
    Ok(())
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
