//! candle, for GGUF language models: candle-transformers' quantized llama/qwen2/qwen3 over the
//! variant's GGUF, on the CPU (candle-cpu) or a GPU (candle-cuda: the blocks are read into GPU
//! memory and run on llama.cpp's CUDA kernels). GGML weights run through `QMatMul` on the GGML
//! blocks (activations are quantized to q8 blocks for the dot products, as in llama.cpp); f16,
//! bf16 and f32 weights are widened to f32 at load, and the token embedding is a lookup table
//! candle-transformers dequantizes at load.
//!
//! [`Session::run`] is prompt processing: one window of token ids per item, from position 0.
//! [`Decoder`] feeds tokens at later positions through the KV cache: generation, and the
//! position-by-position logits that perplexity needs (the models return only the last
//! position's logits).
//!
//! The evidence is read from the built model: candle-transformers keeps its layers private but
//! derives `Debug` for them, which names each `QMatMul`'s variant (GGML blocks of a type, or the
//! tensor candle dequantized them to) and the embedding table's dtype.

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3};

use super::{location, stored_of, stored_types};
use crate::backend::{BackendError, BackendId, Compute, Decoder, LayerEvidence, Prepared, Realization, Session};
use crate::model::gguf_lm::{dtype_name, LmArch};
use crate::quant::{Plan, SchemeId, Variant};

/// What candle-transformers' quantized models can make of a plan at `batch` rows per prompt.
pub(super) fn capability(plan: &Plan, batch: usize, arch: Option<LmArch>, on_gpu: bool) -> Realization {
    if batch > 1 && arch == Some(LmArch::Qwen3) && !on_gpu {
        // Its CPU attention handles one row: at two it unwraps a cache built only on GPUs.
        return Realization::Unsupported("candle-transformers 0.11's quantized qwen3 runs one row at a time on the CPU (at batch 2 it panics: its CPU path keeps a cache for a single row); run qwen3 at batch 1 on candle-cpu".into());
    }
    if plan.quantizes_activations() {
        return Realization::Unsupported("candle-transformers' quantized models have no hook on each layer's input, so dynamic and static int8 cannot run on them; weight-only schemes and GGML types can".into());
    }
    // The output layer (the token embedding when the file ties them).
    let output =
        plan.layers.iter().find(|(l, _)| l == "output").or_else(|| plan.layers.iter().find(|(l, _)| l == "token_embd"));
    if batch > 1 && output.is_some_and(|(_, s)| s.is_ggml()) {
        return Realization::Unsupported("candle-transformers 0.11's quantized llama/qwen2/qwen3 cannot process a prompt of several rows when the output layer is a GGML type: it hands QMatMul the last position as a non-contiguous slice, which QMatMul refuses; run GGUF language models at batch 1, or keep the output layer in f16 with an [[overrides]] entry (layers = [\"output\"])".into());
    }
    plan.layers.iter().fold(Realization::Native, |acc, (layer, s)| {
        acc.weaker(match s {
            SchemeId::F32 => Realization::Native,
            // The embedding is a lookup in a table dequantized at load.
            _ if layer == "token_embd" => Realization::Emulated,
            // QMatMul runs GGML blocks; it widens f16/bf16 to f32 at load, and integer schemes
            // are stored dequantized (see quant/gguf_lm.rs).
            SchemeId::Ggml(_) => Realization::Native,
            _ => Realization::Emulated,
        })
    })
}

/// A built model of one of the [`LmArch`]s.
enum LmWeights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
}

impl LmWeights {
    /// Builds the model from a GGUF's content (tensors read from `reader`) on `device`: the
    /// GGML blocks are read straight into the device's memory.
    fn build<R: std::io::Read + std::io::Seek>(
        arch: LmArch,
        content: gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> candle_core::Result<LmWeights> {
        Ok(match arch {
            LmArch::Llama => LmWeights::Llama(quantized_llama::ModelWeights::from_gguf(content, reader, device)?),
            LmArch::Qwen2 => LmWeights::Qwen2(quantized_qwen2::ModelWeights::from_gguf(content, reader, device)?),
            LmArch::Qwen3 => LmWeights::Qwen3(quantized_qwen3::ModelWeights::from_gguf(content, reader, device)?),
            // Without flash attention (a CUDA kernel crate qbench does not build).
            LmArch::Phi3 => LmWeights::Phi3(quantized_phi3::ModelWeights::from_gguf(false, content, reader, device)?),
        })
    }

    /// Feeds `tokens` (`[batch, n]`) at positions `index_pos..index_pos + n`, extending the KV
    /// cache (position 0 starts a new one); returns the last position's logits, `[batch, vocab]`.
    fn forward(&mut self, tokens: &Tensor, index_pos: usize) -> candle_core::Result<Tensor> {
        match self {
            LmWeights::Llama(m) => m.forward(tokens, index_pos),
            LmWeights::Qwen2(m) => m.forward(tokens, index_pos),
            LmWeights::Qwen3(m) => m.forward(tokens, index_pos),
            LmWeights::Phi3(m) => m.forward(tokens, index_pos),
        }
    }

    fn clear_kv_cache(&mut self) {
        match self {
            LmWeights::Llama(m) => m.clear_kv_cache(),
            LmWeights::Qwen2(m) => m.clear_kv_cache(),
            LmWeights::Qwen3(m) => m.clear_kv_cache(),
            // Its cache starts again at position 0 by itself: every prompt is fed from there.
            LmWeights::Phi3(_) => {}
        }
    }
}

pub(super) fn prepare(
    variant: &Variant,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Prepared, BackendError> {
    let path = &variant.candle_artifact;
    let bytes = std::fs::read(path).map_err(|e| BackendError::engine(id, "reading the GGUF", e))?;
    let mut reader = Cursor::new(bytes.as_slice());
    let content = gguf_file::Content::read(&mut reader).map_err(|e| BackendError::engine(id, "reading the GGUF", e))?;
    let arch_name =
        content.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let arch = LmArch::ALL.into_iter().find(|a| a.name() == arch_name).ok_or_else(|| {
        BackendError::engine(
            id,
            "reading the GGUF",
            format!(
                "candle-transformers builds {}, not \"{arch_name}\"",
                LmArch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let vocab = content.tensor_infos.get("token_embd.weight").map_or(0, |i| i.shape.dims()[0]);
    let context = content
        .metadata
        .get(&format!("{}.context_length", arch.name()))
        .and_then(|v| v.to_u32().ok())
        .map_or(usize::MAX, |c| c as usize);
    let context = match arch {
        // The rotary table candle-transformers' llama builds.
        LmArch::Llama => context.min(quantized_llama::MAX_SEQ_LEN),
        LmArch::Qwen2 => context,
        LmArch::Qwen3 | LmArch::Phi3 => context,
    };
    let one_d_bytes: u64 =
        content.tensor_infos.values().filter(|i| i.shape.rank() != 2).map(|i| 4 * i.shape.elem_count() as u64).sum();
    let two_d: Vec<(String, GgmlDType, u64)> = content
        .tensor_infos
        .iter()
        .filter(|(_, i)| i.shape.rank() == 2)
        .map(|(n, i)| (n.clone(), i.ggml_dtype, i.shape.elem_count() as u64))
        .collect();
    let blocks =
        content.metadata.get(&format!("{}.block_count", arch.name())).and_then(|v| v.to_u32().ok()).unwrap_or(0);
    let weights = LmWeights::build(arch, content, &mut reader, device).map_err(|e| {
        BackendError::engine(
            id,
            "building the model",
            format!("candle-transformers cannot build a {} from it: {e}", arch.name()),
        )
    })?;
    let (built, source) = match &weights {
        LmWeights::Llama(m) => (observe(&format!("{m:?}")), DEBUG_SOURCE),
        LmWeights::Qwen2(_) | LmWeights::Qwen3(_) | LmWeights::Phi3(_) => {
            (probe(&two_d).map_err(|e| BackendError::engine(id, "reading what candle built", e))?, PROBE_SOURCE)
        }
    };
    let on = location(device);
    let weights_bytes = one_d_bytes + built.values().map(|m| m.bytes).sum::<u64>();
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for (layer, _) in &variant.layer_schemes {
        let kernel = built.get(layer).map_or("not found", |h| h.kernel.as_str());
        match kinds.iter_mut().find(|(k, _)| *k == kernel) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kernel.to_string(), 1)),
        }
    }
    let mut evidence = format!("candle-transformers quantized_{} ({blocks} blocks, vocab {vocab})", arch.name());
    if !device.is_cpu() {
        evidence += &format!(" on {on}");
    }
    for (k, n) in kinds {
        evidence += &format!("; {k} ×{n}");
    }
    Ok(Prepared {
        session: Box::new(LmSession {
            id,
            device: device.clone(),
            variant: variant.clone(),
            built,
            source,
            weights,
            batch,
            vocab,
            context,
            input: None,
            input_copy_ns: None,
            output: None,
        }),
        artifact: path.clone(),
        artifact_bytes: bytes.len() as u64,
        evidence,
        layers: Vec::new(),
        weights_bytes: Some(weights_bytes),
        heap_not_covered: None,
    })
}

/// A weight as the built model holds it.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    compute: Compute,
    kernel: String,
    /// Where the tensor lives, when its `Debug` says (a dequantized tensor does; GGML blocks
    /// live where the model was built).
    device: Option<String>,
    bytes: u64,
}

/// Where llama's evidence is read: the built model's own fields.
const DEBUG_SOURCE: &str = "the built model's layers (candle-transformers' Debug of its QMatMul and Embedding fields)";
/// Where qwen2's is: quantized_qwen2 keeps its layers private and has no Debug.
const PROBE_SOURCE: &str =
    "candle's QMatMul::from_qtensor on the preparing thread, per stored type (quantized_qwen2's, quantized_qwen3's and quantized_phi3's layers are private)";

/// What candle makes of each 2-D weight, asked of `QMatMul::from_qtensor` on this thread (the
/// thread the model was built on, so the same `CANDLE_DEQUANTIZE_ALL` setting) with one block of
/// each stored type. The embedding table is a lookup candle-transformers dequantizes at load,
/// which nothing in the built model says: not observable.
fn probe(weights: &[(String, GgmlDType, u64)]) -> candle_core::Result<HashMap<String, Held>> {
    let mut out = HashMap::new();
    let mut by_type: HashMap<GgmlDType, (Compute, String, bool)> = HashMap::new();
    for (name, dtype, n) in weights {
        let Some(layer) = name.strip_suffix(".weight") else { continue };
        if layer == "token_embd" {
            out.insert(
                layer.to_string(),
                Held {
                    compute: Compute::NotObservable,
                    kernel: "Embedding lookup (its table's type is not observable)".into(),
                    device: None,
                    bytes: 4 * n,
                },
            );
            continue;
        }
        if !by_type.contains_key(dtype) {
            let block = Tensor::zeros((1, dtype.block_size().max(32)), candle_core::DType::F32, &Device::Cpu)?;
            let q = candle_core::quantized::QTensor::quantize(&block, *dtype)?;
            let m = candle_core::quantized::QMatMul::from_qtensor(q)?;
            let (compute, kernel) = super::qmatmul_compute(&m);
            let keeps_blocks = matches!(m, candle_core::quantized::QMatMul::QTensor(_));
            by_type.insert(*dtype, (compute, kernel, keeps_blocks));
        }
        let (compute, kernel, keeps_blocks) = by_type[dtype].clone();
        let bytes = if keeps_blocks { n / dtype.block_size() as u64 * dtype.type_size() as u64 } else { 4 * n };
        out.insert(layer.to_string(), Held { compute, kernel, device: None, bytes });
    }
    Ok(out)
}

/// candle-transformers' field names for the weights of a block, and the GGUF tensors they hold.
const BLOCK_FIELDS: &[(&str, &str)] = &[
    ("attention_wq", "attn_q"),
    ("attention_wk", "attn_k"),
    ("attention_wv", "attn_v"),
    ("attention_wo", "attn_output"),
    ("feed_forward_w1", "ffn_gate"),
    ("feed_forward_w2", "ffn_down"),
    ("feed_forward_w3", "ffn_up"),
];

/// Every weight the built model holds, by GGUF layer name (`blk.0.attn_q`, `output`,
/// `token_embd`), read from the model's `Debug` text: `QMatMul { inner: QTensor(QTensor[[r, c];
/// Q4K]) .. }` keeps GGML blocks, `QMatMul { inner: Tensor(Tensor[dims r, c; f32]) .. }` a
/// dequantized tensor, `Embedding { embeddings: Tensor[dims v, d; f32] .. }` the lookup table.
fn observe(debug: &str) -> HashMap<String, Held> {
    let mut out = HashMap::new();
    for (field, layer) in BLOCK_FIELDS {
        let pattern = format!("{field}: QMatMul {{ inner: ");
        for (block, (at, _)) in debug.match_indices(&pattern).enumerate() {
            if let Some(held) = parse_qmatmul(&debug[at + pattern.len()..]) {
                out.insert(format!("blk.{block}.{layer}"), held);
            }
        }
    }
    let output = "output: QMatMul { inner: ";
    // `output:` also ends `attention_output:`-like names in other models: take the field that
    // starts a name (preceded by a space or a brace).
    if let Some(at) = debug
        .match_indices(output)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || matches!(&debug[at - 1..at], " " | "{" | "("))
    {
        if let Some(held) = parse_qmatmul(&debug[at + output.len()..]) {
            out.insert("output".into(), held);
        }
    }
    let table = "tok_embeddings: Embedding { embeddings: ";
    if let Some(at) = debug.find(table) {
        if let Some((dtype, dims, device)) = parse_tensor(&debug[at + table.len()..]) {
            let n: u64 = dims.iter().product();
            out.insert(
                "token_embd".into(),
                Held {
                    compute: compute_named(&dtype),
                    kernel: format!("Embedding lookup in a {dtype} table (dequantized at load)"),
                    device,
                    bytes: n * dtype_bytes(&dtype),
                },
            );
        }
    }
    out
}

/// `QTensor(QTensor[[r, c]; Q4K])…`, `Tensor(Tensor[dims r, c; f32, cuda:0])…` or
/// `TensorF16(…)`.
fn parse_qmatmul(s: &str) -> Option<Held> {
    if let Some(rest) = s.strip_prefix("QTensor(QTensor[[") {
        let (dims, rest) = rest.split_once("]; ")?;
        let dtype = rest.split(']').next()?;
        let dims: Vec<u64> = dims.split(", ").map(|d| d.trim().parse().ok()).collect::<Option<_>>()?;
        let d = ggml_dtype(dtype)?;
        let n: u64 = dims.iter().product();
        let name = dtype_name(d);
        let compute = match crate::quant::ggml::GgmlType::ALL.iter().find(|g| g.dtype() == d) {
            Some(g) => Compute::Ggml(g.name().to_string()),
            None => compute_named(&name),
        };
        return Some(Held {
            compute,
            kernel: format!("QMatMul on {name} blocks"),
            device: None,
            bytes: n / d.block_size() as u64 * d.type_size() as u64,
        });
    }
    let rest = s.strip_prefix("TensorF16(").or_else(|| s.strip_prefix("Tensor("))?;
    let (dtype, dims, device) = parse_tensor(rest)?;
    let n: u64 = dims.iter().product();
    Some(Held {
        compute: compute_named(&dtype),
        kernel: format!("QMatMul dequantized to a {dtype} tensor (matmul)"),
        device,
        bytes: n * dtype_bytes(&dtype),
    })
}

/// `Tensor[dims r, c; f32]` or `Tensor[dims r, c; f32, cuda:0]`: dtype, dims, device.
fn parse_tensor(s: &str) -> Option<(String, Vec<u64>, Option<String>)> {
    let rest = s.strip_prefix("Tensor[dims ")?;
    let (dims, rest) = rest.split_once("; ")?;
    let inside = rest.split(']').next()?;
    let (dtype, device) = match inside.split_once(", ") {
        Some((d, dev)) => (d.to_string(), Some(dev.to_string())),
        None => (inside.to_string(), Some("cpu".to_string())),
    };
    let dims: Vec<u64> = dims.split(", ").map(|d| d.trim().parse().ok()).collect::<Option<_>>()?;
    Some((dtype, dims, device))
}

fn ggml_dtype(debug_name: &str) -> Option<GgmlDType> {
    use GgmlDType::*;
    [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2K, Q3K, Q4K, Q5K, Q6K, Q8K]
        .into_iter()
        .find(|d| format!("{d:?}") == debug_name)
}

fn compute_named(dtype: &str) -> Compute {
    match dtype {
        "f32" => Compute::F32,
        "f16" => Compute::F16,
        "bf16" => Compute::Bf16,
        _ => Compute::NotObservable,
    }
}

fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "f16" | "bf16" => 2,
        "f64" => 8,
        _ => 4,
    }
}

/// Each planned weight as the built model holds it. A file without `output.weight` ties the
/// output layer to the embedding: `token_embd` is then both the lookup table and a `QMatMul`.
fn evidence(variant: &Variant, built: &HashMap<String, Held>, on: &str, source: &str) -> Vec<LayerEvidence> {
    let stored = stored_types(&variant.candle_artifact);
    let tied = !variant.layer_schemes.iter().any(|(l, _)| l == "output");
    variant
        .layer_schemes
        .iter()
        .map(|(layer, _)| {
            let scheme = variant.layer_scheme(layer);
            let stored_type = stored_of(&stored, &format!("{layer}.weight"));
            match built.get(layer.as_str()) {
                Some(h) => {
                    let mut kernel = h.kernel.clone();
                    if layer == "token_embd" && tied {
                        if let Some(o) = built.get("output") {
                            kernel += &format!("; as the tied output layer: {}", o.kernel);
                        }
                    }
                    let device = h.device.clone().unwrap_or_else(|| on.to_string());
                    let on_device = device == on;
                    LayerEvidence::observed(
                        layer,
                        scheme,
                        stored_type,
                        h.compute.clone(),
                        kernel,
                        device,
                        on_device,
                        None,
                        source,
                    )
                }
                None => LayerEvidence::observed(
                    layer,
                    scheme,
                    stored_type,
                    Compute::NotObservable,
                    "not found among the built model's layers",
                    on,
                    true,
                    None,
                    source,
                ),
            }
        })
        .collect()
}

struct LmSession {
    id: BackendId,
    device: Device,
    variant: Variant,
    /// Each weight as the built model holds it, and where that was read.
    built: HashMap<String, Held>,
    source: &'static str,
    weights: LmWeights,
    batch: usize,
    vocab: usize,
    context: usize,
    input: Option<Tensor>,
    /// The last prompt's copy to the GPU, synchronized.
    input_copy_ns: Option<u64>,
    output: Option<Tensor>,
}

impl LmSession {
    /// Token ids as a `[batch, n]` tensor on the session's device, checked against the
    /// vocabulary and the context.
    fn tokens(&self, ids: &[u32], batch: usize, index_pos: usize) -> Result<Tensor, BackendError> {
        let id = self.id;
        let bad = |m: String| BackendError::engine(id, "copying the input", m);
        let n = ids.len() / batch.max(1);
        if n == 0 || n * batch != ids.len() {
            return Err(bad(format!("{} token ids do not make {batch} equal rows", ids.len())));
        }
        if index_pos + n > self.context {
            return Err(bad(format!(
                "positions up to {} exceed the model's context of {} tokens; use a smaller seq_len",
                index_pos + n,
                self.context
            )));
        }
        if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(bad(format!(
                "token id {id} is outside the vocabulary ({} tokens); the token ids do not belong to this model (check the dataset's tokenizer)",
                self.vocab
            )));
        }
        Tensor::from_slice(ids, (batch, n), &self.device).map_err(|e| bad(e.to_string()))
    }
}

impl Session for LmSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        if let Some(v) = input.iter().find(|v| !(v.fract() == 0.0 && **v >= 0.0)) {
            return Err(BackendError::engine(
                self.id,
                "copying the input",
                format!("{v} is not a token id; a language model takes rows of token ids (a text dataset with windows = true)"),
            ));
        }
        let ids: Vec<u32> = input.iter().map(|&v| v as u32).collect();
        let (tokens, copy_ns) = super::copy_timed(self.id, &self.device, || self.tokens(&ids, self.batch, 0))?;
        self.input_copy_ns = copy_ns;
        self.input = Some(tokens);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let weights = &mut self.weights;
        self.output =
            Some(super::run_synchronized(self.id, &self.device, self.input.as_ref(), |x| weights.forward(x, 0))?);
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::output_values(self.id, self.output.as_ref())
    }

    fn input_copy_ns(&self) -> Option<u64> {
        self.input_copy_ns
    }

    fn decoder(&mut self) -> Option<&mut dyn Decoder> {
        Some(self)
    }

    fn layer_evidence(&self) -> Vec<LayerEvidence> {
        evidence(&self.variant, &self.built, &location(&self.device), self.source)
    }
}

impl Decoder for LmSession {
    fn reset(&mut self) {
        self.weights.clear_kv_cache();
    }

    fn step(&mut self, tokens: &[u32], batch: usize, index_pos: usize) -> Result<Vec<f32>, BackendError> {
        let x = self.tokens(tokens, batch, index_pos)?;
        self.weights
            .forward(&x, index_pos)
            .and_then(|t| t.flatten_all())
            // Reading the logits back waits for the GPU.
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| BackendError::engine(self.id, "running", e))
    }

    fn vocab(&self) -> usize {
        self.vocab
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_debug_text_names_each_weight_as_held() {
        let debug = "ModelWeights { tok_embeddings: Embedding { embeddings: Tensor[dims 50, 8; f32], hidden_size: 8 }, layers: [LayerWeights { attention_wq: QMatMul { inner: QTensor(QTensor[[8, 32]; Q4K]), span: Span { none: true } }, attention_wk: QMatMul { inner: Tensor(Tensor[dims 8, 32; f32, cuda:0]), span: Span { none: true } } }, LayerWeights { attention_wq: QMatMul { inner: QTensor(QTensor[[8, 32]; Q8_0]), span: Span { none: true } } }], norm: RmsNorm, output: QMatMul { inner: QTensor(QTensor[[50, 32]; Q6K]), span: Span { none: true } } }";
        let held = observe(debug);
        assert_eq!(held["blk.0.attn_q"].compute, Compute::Ggml("q4k".into()));
        // One q4k block of 256 weights is 144 bytes.
        assert_eq!(held["blk.0.attn_q"].bytes, 144);
        assert_eq!(held["blk.0.attn_k"].compute, Compute::F32);
        assert_eq!(held["blk.0.attn_k"].device.as_deref(), Some("cuda:0"));
        assert_eq!(held["blk.1.attn_q"].compute, Compute::Ggml("q8_0".into()));
        assert_eq!(held["output"].compute, Compute::Ggml("q6k".into()));
        assert_eq!(held["token_embd"].compute, Compute::F32);
        assert_eq!(held["token_embd"].bytes, 50 * 8 * 4);
        assert!(!held.contains_key("blk.1.attn_k"));
    }
}
