//! Text datasets: one text per line, tokenized by a model's `tokenizer.json` (Hugging Face
//! tokenizers) into rows of `seq_len` token ids, truncated or padded with the tokenizer's pad id;
//! or, for a language model's perplexity, the whole file as one text cut into windows of
//! `seq_len` tokens (as llama-perplexity does; the last partial window is dropped).

use std::path::Path;

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use super::{DataError, Dataset};
use crate::hash::hex;

/// Loads `path` (UTF-8, one item a line; empty lines skipped) tokenized by `tokenizer`.
pub fn load_text(
    name: &str,
    path: &Path,
    tokenizer: &Path,
    seq_len: usize,
    windows: bool,
    labels: Option<(&Path, Option<&str>)>,
) -> Result<Dataset, DataError> {
    let tok_raw = super::read_file(tokenizer)?;
    // The tokenizers crate panics on some malformed files (a decoder it cannot build): a
    // panic there is this file's error, not the run's end.
    let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(&tok_raw))
        .unwrap_or_else(|_| Err("the tokenizers crate could not build it (a malformed section)".into()));
    let tok = parsed.map_err(|e| DataError::Text {
        path: tokenizer.to_path_buf(),
        reason: format!("it is not a Hugging Face tokenizer.json ({e})"),
    })?;
    load_text_with(name, path, &tok, &tok_raw, seq_len, windows, labels)
}

/// Loads `path` tokenized by `tok`, a tokenizer built elsewhere (a GGUF file's own);
/// `tok_identity` (its file's bytes, or its serialization) goes into the dataset's hash.
pub fn load_text_with(
    name: &str,
    path: &Path,
    tok: &Tokenizer,
    tok_identity: &[u8],
    seq_len: usize,
    windows: bool,
    labels: Option<(&Path, Option<&str>)>,
) -> Result<Dataset, DataError> {
    let raw = super::read_file(path)?;
    let bad = |reason: String| DataError::Text { path: path.to_path_buf(), reason };
    let text = std::str::from_utf8(&raw).map_err(|e| bad(format!("it is not UTF-8 text ({e})")))?;
    if let Some(at) = text.find('\0') {
        return Err(bad(format!("it holds a NUL byte (at byte {at}); it is a binary file, not text")));
    }
    let tok_raw = tok_identity;
    let pad = tok
        .get_padding()
        .map(|p| p.pad_id)
        .or_else(|| tok.token_to_id("[PAD]"))
        .or_else(|| tok.token_to_id("<pad>"))
        .unwrap_or(0);
    if windows {
        if labels.is_some() {
            return Err(bad("a windowed text has no items to label; leave labels out".into()));
        }
        let enc = tok.encode(text, false).map_err(|e| bad(format!("it cannot be tokenized: {e}")))?;
        let ids = enc.get_ids();
        let n = ids.len() / seq_len;
        if n == 0 {
            return Err(bad(format!(
                "it holds {} tokens, fewer than one window of seq_len = {seq_len}; use a longer text or a smaller seq_len",
                ids.len()
            )));
        }
        let mut hasher = Sha256::new();
        hasher.update(&raw);
        hasher.update(tok_raw);
        hasher.update(format!("windows of {seq_len}").as_bytes());
        return Ok(Dataset {
            name: name.to_string(),
            item_shape: vec![seq_len],
            values: ids[..n * seq_len].iter().map(|&id| id as f32).collect(),
            labels: None,
            sha256: hex(&hasher.finalize()),
            inputs_path: path.to_path_buf(),
            labels_path: None,
            parts: Vec::new(),
            texts: None,
        });
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err(bad("it holds no text (one item a line)".into()));
    }
    let mut values = Vec::with_capacity(lines.len() * seq_len);
    for (i, line) in lines.iter().enumerate() {
        let enc = tok.encode(*line, true).map_err(|e| bad(format!("line {} cannot be tokenized: {e}", i + 1)))?;
        let ids = enc.get_ids();
        values.extend(ids.iter().take(seq_len).map(|&id| id as f32));
        values.extend(std::iter::repeat_n(pad as f32, seq_len.saturating_sub(ids.len())));
    }
    let mut hasher = Sha256::new();
    hasher.update(&raw);
    hasher.update(tok_raw);
    let (labels_v, labels_path) = match labels {
        Some((lp, column)) => {
            let (l, bytes) = super::load_labels(lp, column)?;
            hasher.update(&bytes);
            if l.len() != lines.len() {
                return Err(DataError::LabelCount {
                    dataset: name.to_string(),
                    inputs: path.to_path_buf(),
                    labels: lp.to_path_buf(),
                    n_items: lines.len(),
                    n_labels: l.len(),
                });
            }
            (Some(l), Some(lp.to_path_buf()))
        }
        None => (None, None),
    };
    Ok(Dataset {
        name: name.to_string(),
        item_shape: vec![seq_len],
        values,
        labels: labels_v,
        sha256: hex(&hasher.finalize()),
        inputs_path: path.to_path_buf(),
        labels_path,
        parts: Vec::new(),
        texts: None,
    })
}
