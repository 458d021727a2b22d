//! The tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata, as a Hugging Face
//! `tokenizers` tokenizer: most published GGUF files have no tokenizer.json beside them, and
//! neither candle-transformers nor `tokenizers` reads the GGUF's own.
//!
//! The keys are llama.cpp's (gguf-py's `Keys.Tokenizer`):
//! - `tokenizer.ggml.model`: `gpt2` (byte-level BPE: Qwen, Llama 3, GPT-2 style files) or
//!   `llama` (SentencePiece BPE: Llama 1/2, Mistral, Gemma);
//! - `tokenizer.ggml.tokens` (the vocabulary, by id), `tokenizer.ggml.token_type` (1 normal,
//!   2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte);
//! - `gpt2`: `tokenizer.ggml.merges` ("a b", by rank) and `tokenizer.ggml.pre` (which
//!   pre-tokenizer regex);
//! - `llama`: `tokenizer.ggml.scores`, from which the merges are derived as llama.cpp's SPM
//!   tokenizer ranks them (a pair merges by the score of the token it makes), and
//!   `tokenizer.ggml.add_space_prefix` (default true).
//!
//! The result is checked against a tokenizer.json of the same vocabulary (`tests/gguf_tokenizer.rs`),
//! token id for token id.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// The largest vocabulary qbench builds (published ones reach about 262k tokens).
const MAX_TOKENS: usize = 1 << 20;
/// Tokens longer than this (bytes) are kept whole but not split into merges: deriving merges is
/// quadratic in a token's length, and real vocabularies' longest tokens are a few hundred bytes.
const MAX_MERGE_TOKEN_BYTES: usize = 1024;

/// The pre-tokenizer regexes of the byte-level BPE families (`tokenizer.ggml.pre`), as
/// llama.cpp's `llama-vocab.cpp` lists them.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.*` families this module builds.
pub const MODELS: &[&str] = &["gpt2", "llama"];
/// The `tokenizer.ggml.pre` values a `gpt2` tokenizer may name, with llama.cpp's aliases.
pub const PRE_TOKENIZERS: &[&str] =
    &["gpt-2", "llama3", "llama-v3", "llama-bpe", "falcon3", "qwen2", "deepseek-r1-qwen"];

/// Whether `path` is a GGUF file (its first four bytes are the magic), so a dataset's tokenizer
/// comes from its metadata.
pub fn is_gguf(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF"
}

/// The tokenizer of the GGUF file at `path`: its header checked before anything is read from it
/// (`gguf_check`), then its metadata.
pub fn from_file(path: &std::path::Path) -> Result<Tokenizer, String> {
    let bytes =
        crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file").map_err(|e| e.to_string())?;
    super::gguf_check::check(&bytes)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&bytes))
        .map_err(|e| format!("its metadata cannot be read: {e}"))?;
    // The tokenizers crate panics on some inputs it cannot build from (as for tokenizer.json
    // files, `data::text`): a panic here is this file's error, not the run's end.
    std::panic::catch_unwind(|| from_metadata(&content.metadata))
        .unwrap_or_else(|_| Err("the tokenizers crate could not build a tokenizer from its metadata".into()))
}

/// Whether the metadata carries a tokenizer at all.
pub fn has_tokenizer(metadata: &HashMap<String, Value>) -> bool {
    metadata.contains_key("tokenizer.ggml.model")
}

/// Builds the tokenizer `metadata` describes; the error says what is missing or unsupported.
pub fn from_metadata(metadata: &HashMap<String, Value>) -> Result<Tokenizer, String> {
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_string().ok()).cloned();
    let model = text("tokenizer.ggml.model").ok_or(
        "the GGUF carries no tokenizer (no tokenizer.ggml.model); give the dataset a tokenizer = \"tokenizer.json\"",
    )?;
    let tokens = strings(metadata, "tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err("tokenizer.ggml.tokens is empty".into());
    }
    if tokens.len() > MAX_TOKENS {
        return Err(format!(
            "tokenizer.ggml.tokens holds {} tokens; qbench builds vocabularies of at most {MAX_TOKENS}",
            tokens.len()
        ));
    }
    let types = match metadata.get("tokenizer.ggml.token_type") {
        None => vec![NORMAL; tokens.len()],
        Some(v) => ints(v, "tokenizer.ggml.token_type")?,
    };
    if types.len() != tokens.len() {
        return Err(format!("tokenizer.ggml.token_type has {} entries for {} tokens", types.len(), tokens.len()));
    }
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        // llama.cpp refuses a vocabulary with a repeated token (its lookup would lose an id).
        if let Some(first) = vocab.insert(t.clone(), id as u32) {
            return Err(format!(
                "tokenizer.ggml.tokens holds {t:?} twice (ids {first} and {id}); llama.cpp refuses such a file too: convert it again"
            ));
        }
    }
    let mut tokenizer = match model.as_str() {
        "gpt2" => byte_level_bpe(metadata, &vocab)?,
        "llama" => sentencepiece_bpe(metadata, &tokens, &types, &vocab)?,
        other => {
            return Err(format!(
                "its tokenizer is tokenizer.ggml.model = \"{other}\", which qbench does not build (it builds {}); give the dataset a tokenizer = \"tokenizer.json\"",
                MODELS.join(", ")
            ))
        }
    };
    // Control tokens (<s>, <|im_start|>, …) and user-defined ones (<think>, <tool_call>) are
    // kept whole, never merged from pieces: added tokens, as in the model's tokenizer.json.
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(t, &ty)| ty == CONTROL && !t.is_empty())
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer.add_special_tokens(control).map_err(|e| format!("its control tokens cannot be added: {e}"))?;
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(t, &ty)| ty == USER_DEFINED && !t.is_empty())
        .map(|(t, _)| AddedToken::from(t.clone(), false))
        .collect();
    tokenizer.add_tokens(user).map_err(|e| format!("its user-defined tokens cannot be added: {e}"))?;
    Ok(tokenizer)
}

fn byte_level_bpe(metadata: &HashMap<String, Value>, vocab: &HashMap<String, u32>) -> Result<Tokenizer, String> {
    let merges = strings(metadata, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("tokenizer.ggml.merges holds \"{m}\", not two tokens"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pre = metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map_or("", |s| s.as_str());
    // llama.cpp's names (`llama-vocab.cpp`); "default" (or none) is llama.cpp's own regex set,
    // which no tokenizer.json has, so it is not guessed at.
    let (regex, ignore_merges) = match pre {
        "gpt-2" => (None, false),
        // Llama 3 emits a word the vocabulary holds whole, before any merge (HF: ignore_merges).
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => (Some(LLAMA3_REGEX), true),
        "qwen2" | "deepseek-r1-qwen" => (Some(QWEN2_REGEX), false),
        other => {
            let other = if other.is_empty() { "default (none given)" } else { other };
            return Err(format!(
                "its pre-tokenizer is tokenizer.ggml.pre = \"{other}\", whose rules qbench does not know (it knows {}); give the dataset a tokenizer = \"tokenizer.json\"",
                PRE_TOKENIZERS.join(", ")
            ));
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.clone().into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| format!("the vocabulary and merges do not make a BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    match regex {
        None => tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true))),
        Some(r) => {
            let split = Split::new(SplitPattern::Regex(r.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| format!("the {pre} pre-tokenizer regex: {e}"))?;
            tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])))
        }
    };
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    Ok(tokenizer)
}

fn sentencepiece_bpe(
    metadata: &HashMap<String, Value>,
    tokens: &[String],
    types: &[i32],
    vocab: &HashMap<String, u32>,
) -> Result<Tokenizer, String> {
    let scores = match metadata.get("tokenizer.ggml.scores") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.to_f32().map_err(|_| "tokenizer.ggml.scores holds a value that is not a float".to_string()))
            .collect::<Result<Vec<f32>, _>>()?,
        Some(_) => return Err("tokenizer.ggml.scores is not an array".into()),
        None => return Err("a \"llama\" tokenizer needs tokenizer.ggml.scores, and the GGUF has none".into()),
    };
    if scores.len() != tokens.len() {
        return Err(format!("tokenizer.ggml.scores has {} entries for {} tokens", scores.len(), tokens.len()));
    }
    // Merges from scores, as SentencePiece ranks them: every split of a normal token into two
    // normal tokens, by the made token's score (highest first); the splits of one token in the
    // order of their pieces' ids (Hugging Face's SentencePieceExtractor, which llama.cpp's
    // greedy highest-score merge agrees with).
    let mergeable = |id: u32| types.get(id as usize).is_some_and(|&t| t == NORMAL);
    let mut merges: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        if types[id] != NORMAL || vocab.get(t) != Some(&(id as u32)) || t.len() > MAX_MERGE_TOKEN_BYTES {
            continue;
        }
        let mut local: Vec<(u32, u32)> = Vec::new();
        for (at, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(at);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                if mergeable(li) && mergeable(ri) {
                    local.push((li, ri));
                }
            }
        }
        local.sort_unstable();
        merges.extend(local.into_iter().map(|(l, r)| (scores[id], id as u32, l, r)));
    }
    // Stable: equal scores keep token order.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges: Vec<(String, String)> =
        merges.into_iter().map(|(_, _, l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone())).collect();
    let byte_fallback = types.contains(&BYTE);
    let unk = metadata
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(|v| v.to_u32().ok())
        .and_then(|id| tokens.get(id as usize))
        .or_else(|| tokens.iter().zip(types).find(|(_, &t)| t == UNKNOWN).map(|(t, _)| t))
        .cloned();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab.clone().into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
        .byte_fallback(byte_fallback)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder.build().map_err(|e| format!("the vocabulary and scores do not make a BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let space_prefix = metadata.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(true);
    let replace = Replace::new(" ", "▁").map_err(|e| e.to_string())?;
    if space_prefix {
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace.into()])))
            .map_err(|e| e.to_string())?;
    } else {
        tokenizer.with_normalizer(Some(replace)).map_err(|e| e.to_string())?;
    }
    let spaces = Replace::new("▁", " ").map_err(|e| e.to_string())?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        spaces.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
        Strip::new(' ', usize::from(space_prefix), 0).into(),
    ])));
    Ok(tokenizer)
}

fn strings(metadata: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match metadata.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.to_string().cloned().map_err(|_| format!("{key} holds a value that is not a string")))
            .collect(),
        Some(_) => Err(format!("{key} is not an array")),
        None => Err(format!("the GGUF's tokenizer has no {key}")),
    }
}

fn ints(v: &Value, key: &str) -> Result<Vec<i32>, String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.to_i32()
                    .or_else(|_| v.to_u32().map(|u| u as i32))
                    .map_err(|_| format!("{key} holds a value that is not an integer"))
            })
            .collect(),
        _ => Err(format!("{key} is not an array")),
    }
}
