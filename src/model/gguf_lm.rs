//! Decoder language models from a GGUF file (llama.cpp's format), in the layouts qbench knows:
//! `llama` (general.architecture = "llama", which Mistral-family files use too), `qwen2`,
//! `qwen3` and `phi3`. The
//! candle backend runs them with candle-transformers' quantized models.
//!
//! The file is read once: its metadata (copied into every variant), its tensors as stored (GGML
//! blocks or floats), and the weighted layers the schemes apply to: every 2-D weight (attention,
//! feed-forward, token embedding, output), named as in the file without `.weight`. Norms and
//! biases are 1-D and stay as stored.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use super::ModelError;
use crate::hash::sha256_hex;

/// The architectures (tensor layouts and metadata) qbench reads, from `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmArch {
    Llama,
    Qwen2,
    /// Qwen3: qwen2 without q/k/v biases, with an RMS norm over each head of q and k and a head
    /// size of its own (`attention.key_length`).
    Qwen3,
    /// Phi-3: one fused q/k/v weight (`attn_qkv`), one fused gate/up weight (`ffn_up`, gate
    /// first), NEOX rotation with base 10000 over the whole head.
    Phi3,
}

impl LmArch {
    pub const ALL: [LmArch; 4] = [LmArch::Llama, LmArch::Qwen2, LmArch::Qwen3, LmArch::Phi3];

    pub fn name(self) -> &'static str {
        match self {
            LmArch::Llama => "llama",
            LmArch::Qwen2 => "qwen2",
            LmArch::Qwen3 => "qwen3",
            LmArch::Phi3 => "phi3",
        }
    }

    /// The metadata keys a file of this architecture must have (llama.cpp's converter writes
    /// them; the engines read them without a default).
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            LmArch::Llama => &[
                "attention.head_count",
                "attention.head_count_kv",
                "block_count",
                "embedding_length",
                "rope.dimension_count",
                "attention.layer_norm_rms_epsilon",
            ],
            LmArch::Qwen2 => &[
                "attention.head_count",
                "attention.head_count_kv",
                "embedding_length",
                "context_length",
                "block_count",
                "attention.layer_norm_rms_epsilon",
            ],
            LmArch::Qwen3 => &[
                "attention.head_count",
                "attention.head_count_kv",
                "attention.key_length",
                "embedding_length",
                "context_length",
                "block_count",
                "attention.layer_norm_rms_epsilon",
                "rope.freq_base",
            ],
            LmArch::Phi3 => &[
                "attention.head_count",
                "attention.head_count_kv",
                "embedding_length",
                "context_length",
                "block_count",
                "feed_forward_length",
                "rope.dimension_count",
                "attention.layer_norm_rms_epsilon",
            ],
        }
    }
}

/// The longest context qbench loads: published models reach about a million positions (Qwen2.5-1M:
/// 1,010,000); beyond, a 250 KB file could make the engine's rotary tables take gigabytes.
pub const MAX_CONTEXT: usize = 1 << 20;

/// A GGUF language model as read from its file.
pub struct GgufLm {
    pub path: PathBuf,
    pub sha256: String,
    pub arch: LmArch,
    /// Every metadata entry, sorted by key.
    pub metadata: Vec<(String, gguf_file::Value)>,
    /// Every tensor as stored, in file order.
    pub tensors: Vec<(String, QTensor)>,
    /// The 2-D weights (name without `.weight`) and their row widths, in file order.
    pub layers: Vec<(String, usize)>,
    pub vocab: usize,
    /// The longest window the model takes, from its metadata (`None` when it does not say).
    pub context_length: Option<usize>,
}

impl GgufLm {
    /// Reads the file and checks it: a known architecture, its required metadata, every tensor
    /// whole and readable, a token embedding.
    pub fn load(model: &str, path: &Path) -> Result<GgufLm, ModelError> {
        let bad =
            |reason: String| ModelError::Checkpoint { model: model.to_string(), path: path.to_path_buf(), reason };
        let bytes = crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file")?;
        super::gguf_check::check(&bytes)
            .map_err(|e| bad(format!("it is not a readable GGUF file ({e}); download or convert it again")))?;
        let mut reader = Cursor::new(bytes.as_slice());
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            bad(format!(
                "it is not a readable GGUF file ({e}); the file is truncated or corrupt: download or convert it again"
            ))
        })?;
        let arch_name = match content.metadata.get("general.architecture").map(|v| v.to_string()) {
            Some(Ok(a)) => a.clone(),
            _ => {
                return Err(bad(
                    "it has no general.architecture metadata string; it is not a llama.cpp model file".into()
                ))
            }
        };
        if ["gemma", "gemma2", "gemma3"].contains(&arch_name.as_str()) {
            // candle-transformers 0.11 has a quantized_gemma3, but it is not Gemma: measured with
            // it, every verdict would be about another model.
            return Err(bad(format!(
                "its architecture \"{arch_name}\" is refused: candle-transformers 0.11's quantized_gemma3 gates the feed-forward with SiLU where Gemma uses GELU-tanh (candle issue #3745, open), so its outputs are not the model's; measure it as ONNX, or wait for a candle-transformers with the fix"
            )));
        }
        let arch = LmArch::ALL.into_iter().find(|a| a.name() == arch_name).ok_or_else(|| {
            let known: Vec<&str> = LmArch::ALL.iter().map(|a| a.name()).collect();
            bad(format!(
                "its architecture \"{arch_name}\" (general.architecture) is not a layout qbench reads; it reads {}",
                known.join(", ")
            ))
        })?;
        for key in arch.required_keys() {
            let key = format!("{}.{key}", arch.name());
            if !content.metadata.contains_key(&key) {
                return Err(bad(format!(
                    "it lacks the metadata key {key}, which every {} model carries; convert the model again with llama.cpp's convert_hf_to_gguf.py",
                    arch.name()
                )));
            }
        }
        let mut infos: Vec<(&String, &gguf_file::TensorInfo)> = content.tensor_infos.iter().collect();
        infos.sort_by_key(|(_, i)| i.offset);
        let mut tensors = Vec::with_capacity(infos.len());
        let mut layers = Vec::new();
        for (name, info) in infos {
            let end = content.tensor_data_offset
                + info.offset
                + (info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64;
            if end > bytes.len() as u64 {
                return Err(bad(format!(
                    "tensor {name} ends at byte {end}, past the end of the file ({} bytes): the file is truncated; download or convert it again",
                    bytes.len()
                )));
            }
            let t = info
                .read(&mut reader, content.tensor_data_offset, &Device::Cpu)
                .map_err(|e| bad(format!("tensor {name} cannot be read ({e}); the file is corrupt")))?;
            if let (Some(layer), [_, width]) = (name.strip_suffix(".weight"), info.shape.dims()) {
                layers.push((layer.to_string(), *width));
            }
            tensors.push((name.clone(), t));
        }
        let embedding = tensors
            .iter()
            .find(|(n, _)| n == "token_embd.weight")
            .ok_or_else(|| bad("it has no token_embd.weight tensor; it is not a decoder language model".into()))?;
        let vocab = embedding.1.shape().dims()[0];
        let context_length = content
            .metadata
            .get(&format!("{}.context_length", arch.name()))
            .and_then(|v| v.to_u32().ok())
            .map(|c| c as usize);
        check_shape(arch, &content.metadata, &tensors).map_err(bad)?;
        // The engine builds a rotary table per position of the context before it runs anything.
        if let Some(c) = context_length.filter(|&c| c > MAX_CONTEXT) {
            return Err(bad(format!(
                "metadata {}.context_length is {c}; qbench reads models of at most {MAX_CONTEXT} positions (the engine builds a table per position)",
                arch.name()
            )));
        }
        let mut metadata: Vec<(String, gguf_file::Value)> =
            content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(GgufLm {
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            arch,
            metadata,
            tensors,
            layers,
            vocab,
            context_length,
        })
    }

    pub fn parameters(&self) -> usize {
        self.tensors.iter().map(|(_, t)| t.shape().elem_count()).sum()
    }

    /// How the source stores its weights, e.g. `f16` or `q8_0 (2-D), f32 (1-D)`: the precision
    /// ceiling of every variant requantized from it.
    pub fn source_precision(&self) -> String {
        let of = |two_d: bool| {
            let mut types: Vec<String> = self
                .tensors
                .iter()
                .filter(|(_, t)| (t.shape().rank() == 2) == two_d)
                .map(|(_, t)| dtype_name(t.dtype()))
                .collect();
            types.sort();
            types.dedup();
            types.join("+")
        };
        of(true)
    }
}

/// The metadata an engine sizes its layers from, against the tensors: head counts that divide,
/// an embedding width that is the token table's, a block count that is the blocks' (an engine
/// divides by these, and reserves `block_count` layers, before it reads any tensor).
fn check_shape(
    arch: LmArch,
    metadata: &std::collections::HashMap<String, gguf_file::Value>,
    tensors: &[(String, QTensor)],
) -> Result<(), String> {
    let int = |key: &str| -> Result<u64, String> {
        let full = format!("{}.{key}", arch.name());
        let v = metadata.get(&full).ok_or_else(|| format!("it lacks the metadata key {full}"))?;
        v.to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .or_else(|_| {
                v.to_i32().map_err(|e| e.to_string()).and_then(|i| u64::try_from(i).map_err(|e| e.to_string()))
            })
            .map_err(|_| format!("metadata {full} is not a non-negative integer"))
    };
    let heads = int("attention.head_count")?;
    let kv_heads = int("attention.head_count_kv")?;
    let width = int("embedding_length")?;
    let blocks = int("block_count")?;
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(format!(
            "metadata {0}.attention.head_count ({heads}) and {0}.attention.head_count_kv ({kv_heads}) must be positive, the second dividing the first",
            arch.name()
        ));
    }
    if width % heads != 0 {
        return Err(format!(
            "metadata {0}.attention.head_count ({heads}) does not divide {0}.embedding_length ({width})",
            arch.name()
        ));
    }
    if arch == LmArch::Qwen3 && int("attention.key_length")? == 0 {
        return Err("metadata qwen3.attention.key_length (the head size) must be positive".into());
    }
    if arch == LmArch::Phi3 {
        phi3_fits_candle(metadata, tensors, width / heads)?;
    }
    let table = tensors.iter().find(|(n, _)| n == "token_embd.weight").map(|(_, t)| t.shape().dims().to_vec());
    if let Some(dims) = table {
        if dims.last().map(|&d| d as u64) != Some(width) {
            return Err(format!(
                "metadata {}.embedding_length is {width} but token_embd.weight has shape {dims:?}; the metadata belongs to another model",
                arch.name()
            ));
        }
    }
    let mut found: Vec<u64> =
        tensors.iter().filter_map(|(n, _)| n.strip_prefix("blk.")?.split('.').next()?.parse().ok()).collect();
    found.sort();
    found.dedup();
    if found.len() as u64 != blocks || found.last().is_some_and(|&b| b + 1 != blocks) {
        let first_missing = (0..).find(|i| !found.contains(i)).unwrap_or(0);
        let what = if first_missing < blocks {
            format!("blk.{first_missing} is missing")
        } else {
            format!("blk.{} is one too many", found.last().copied().unwrap_or(0))
        };
        return Err(format!(
            "metadata {}.block_count is {blocks} but the file holds {} blocks of tensors ({what}); the metadata belongs to another model",
            arch.name(),
            found.len()
        ));
    }
    Ok(())
}

/// What candle-transformers 0.11's quantized_phi3 computes, against the file: it rotates with
/// base 10000 over the whole head and knows no LongRoPE, so a file that says otherwise would be
/// measured as another model; it also reads `output.weight` (no tied embedding).
fn phi3_fits_candle(
    metadata: &std::collections::HashMap<String, gguf_file::Value>,
    tensors: &[(String, QTensor)],
    head_dim: u64,
) -> Result<(), String> {
    let refuse = |why: String| {
        Err(format!(
            "{why}; candle-transformers 0.11's quantized_phi3 would compute another model (measure it as ONNX)"
        ))
    };
    if let Some(base) = metadata.get("phi3.rope.freq_base").and_then(|v| v.to_f32().ok()) {
        if base != 10_000.0 {
            return refuse(format!("its rotary base phi3.rope.freq_base is {base}, but candle rotates with 10000"));
        }
    }
    let rope = metadata.get("phi3.rope.dimension_count").and_then(|v| v.to_u32().ok()).unwrap_or(0) as u64;
    if rope != head_dim {
        return refuse(format!("it rotates {rope} of each head's {head_dim} dimensions (phi3.rope.dimension_count), but candle rotates the whole head"));
    }
    if let Some((name, _)) = tensors.iter().find(|(n, _)| n.starts_with("rope_factors")) {
        return refuse(format!("it scales its rotation with LongRoPE factors ({name}), which candle does not apply"));
    }
    if metadata.keys().any(|k| k.starts_with("phi3.rope.scaling")) {
        return refuse("it scales its rotation (phi3.rope.scaling.*), which candle does not apply".into());
    }
    if !tensors.iter().any(|(n, _)| n == "output.weight") {
        return Err("it has no output.weight; candle-transformers' quantized_phi3 reads one (it does not tie the output to the token embedding)".into());
    }
    Ok(())
}

/// A GGML type's name as the suite writes schemes (`q4k`, `f16`).
pub fn dtype_name(d: GgmlDType) -> String {
    format!("{d:?}").to_ascii_lowercase()
}
