//! candle, for GGUF language models: candle-transformers' quantized llama/qwen2 over the
//! variant's GGUF, on the CPU (candle-cpu) or a GPU (candle-cuda: the blocks are read into GPU
//! memory and run on llama.cpp's CUDA kernels). GGML weights run through `QMatMul` on the GGML
//! blocks (activations are quantized to q8 blocks for the dot products, as in llama.cpp); f16,
//! bf16 and f32 weights are widened to f32 at load, and the token embedding is always
//! dequantized (a table lookup).
//!
//! [`Session::run`] is prompt processing: one window of token ids per item, from position 0.
//! [`Decoder`] feeds tokens at later positions through the KV cache: generation, and the
//! position-by-position logits that perplexity needs (the models return only the last
//! position's logits).

use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};

use super::gpu::MMVQ_MAX_ROWS;
use super::{BackendError, BackendId, Decoder, Prepared, Session};
use crate::model::gguf_lm::{dtype_name, LmArch, LmWeights};
use crate::quant::Variant;

pub(super) fn prepare(
    variant: &Variant,
    arch: LmArch,
    batch: usize,
    id: BackendId,
    device: &Device,
) -> Result<Prepared, BackendError> {
    let path = &variant.candle_artifact;
    let bytes = std::fs::read(path).map_err(|e| BackendError::engine(id, "reading the GGUF", e))?;
    let mut reader = Cursor::new(bytes.as_slice());
    let content = gguf_file::Content::read(&mut reader).map_err(|e| BackendError::engine(id, "reading the GGUF", e))?;
    let vocab = content.tensor_infos.get("token_embd.weight").map_or(0, |i| i.shape.dims()[0]);
    let context = content
        .metadata
        .get(&format!("{}.context_length", arch.name()))
        .and_then(|v| v.to_u32().ok())
        .map_or(usize::MAX, |c| c as usize);
    let context = match arch {
        LmArch::Llama => context.min(candle_transformers::models::quantized_llama::MAX_SEQ_LEN),
        LmArch::Qwen2 => context,
    };
    // What QMatMul runs: GGML blocks natively; float types are widened to f32 tensors.
    let (mut native, mut widened, mut weights_bytes) = (Vec::new(), Vec::new(), 0u64);
    for (name, info) in &content.tensor_infos {
        let n = info.shape.elem_count() as u64;
        let float = matches!(info.ggml_dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if float || name == "token_embd.weight" {
            weights_bytes += 4 * n;
        } else {
            weights_bytes += n / info.ggml_dtype.block_size() as u64 * info.ggml_dtype.type_size() as u64;
        }
        if info.shape.rank() == 2 && name != "token_embd.weight" {
            let t = dtype_name(info.ggml_dtype);
            let list = if float { &mut widened } else { &mut native };
            match list.iter_mut().find(|(d, _)| *d == t) {
                Some((_, k)) => *k += 1,
                None => list.push((t, 1usize)),
            }
        }
    }
    let blocks =
        content.metadata.get(&format!("{}.block_count", arch.name())).and_then(|v| v.to_u32().ok()).unwrap_or(0);
    let weights =
        arch.build(content, &mut reader, device).map_err(|e| BackendError::engine(id, "building the model", e))?;
    let list = |l: &[(String, usize)]| l.iter().map(|(t, k)| format!("{t} ×{k}")).collect::<Vec<_>>().join(", ");
    let mut evidence = format!("candle-transformers quantized_{} ({blocks} blocks, vocab {vocab})", arch.name());
    if !device.is_cpu() {
        evidence += &format!(" on {}", super::candle_device_name(device));
    }
    if !native.is_empty() {
        evidence += &format!("; QMatMul on GGML blocks: {}", list(&native));
        if !device.is_cpu() {
            // Prompt processing multiplies batch × window rows; generation one row per item.
            evidence += &format!(
                " (on the GPU: MMVQ kernels up to {MMVQ_MAX_ROWS} rows, so generation at batch ≤ {MMVQ_MAX_ROWS}; MMQ above, so prompt processing; activations quantized to q8_1)"
            );
        }
    }
    if !widened.is_empty() {
        evidence += &format!("; matmul in f32, widened at load: {}", list(&widened));
    }
    Ok(Prepared {
        session: Box::new(LmSession {
            id,
            device: device.clone(),
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
        weights_bytes: Some(weights_bytes),
    })
}

struct LmSession {
    id: BackendId,
    device: Device,
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
        let (tokens, copy_ns) = super::candle_copy_timed(self.id, &self.device, || self.tokens(&ids, self.batch, 0))?;
        self.input_copy_ns = copy_ns;
        self.input = Some(tokens);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let id = self.id;
        let input = self.input.as_ref().ok_or_else(|| BackendError::engine(id, "running", "no input was set"))?;
        let out = self.weights.forward(input, 0).map_err(|e| BackendError::engine(id, "running", e))?;
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

    fn decoder(&mut self) -> Option<&mut dyn Decoder> {
        Some(self)
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
