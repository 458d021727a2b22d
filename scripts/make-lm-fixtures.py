#!/usr/bin/env python3
"""Writes the GGUF language-model fixtures with tools independent of qbench and candle.

    pip install numpy tokenizers gguf && python3 scripts/make-lm-fixtures.py

The outputs are committed; CI and the tests only read them (no Python needed there).
The GGUF files are written by llama.cpp's own Python writer (gguf-py), so a test that loads them
checks qbench against another implementation of the format, and the logits below come from a
numpy float64 forward pass, not from candle.

- suites/models/tiny-llama/tokenizer.json: a byte-level BPE tokenizer (Hugging Face tokenizers,
  512 tokens) trained on the GNU FDL 1.3 text (/usr/share/common-licenses/GFDL-1.3).
- suites/models/tiny-llama/model-f16.gguf: a 2-block llama (hidden 256, 4 heads, 2 KV heads,
  feed-forward 512, f16 weights, as many published GGUFs are). Its embedding and output matrices
  are a rank-256 factorization of the smoothed log-bigram table of the training text, so it
  predicts the next token like a bigram model and its perplexity means something; the attention
  and MLP weights are small and random (seeded), so every layer's quantization shows.
- suites/data/apache-2.0.txt: the Apache License 2.0 text, the held-out text its perplexity is
  measured on (both license texts permit verbatim copies).
- tests/reference/tiny-llama.json: the numpy forward pass's perplexity on that text in windows of
  128 tokens (every token after the first of a window scored), and the first window's token ids.
- tests/reference/tiny-llama.logits.npy: its logits for the first 16 positions of that window.
- tests/reference/qwen2-tiny.gguf (+ .ids.npy, .logits.npy): a tiny qwen2 (q/k/v biases, NEOX
  rotary layout, f32) with random weights, and its numpy logits for one 12-token sequence.
- tests/reference/qwen3-tiny.gguf (+ .ids.npy, .logits.npy): a tiny qwen3 (per-head q/k norms,
  a head size of its own, rotary base 1e6) carrying its byte-level BPE tokenizer in its metadata,
  and its numpy logits for 12 ids and for the last of 256 (`make_qwen3`;
  `python3 scripts/make-lm-fixtures.py qwen3` writes only it).
- tests/reference/phi3-tiny.gguf (+ .ids.npy, .logits.npy): a tiny phi3 (fused attn_qkv, fused
  gate/up ffn_up, NEOX rotation base 10000) carrying the SentencePiece tokenizer of
  tests/reference/tok-spm.gguf (tokenizer.ggml.model = llama, as Phi-3 GGUF files are
  published), and its numpy logits for 12 ids (`make_phi3`; `... phi3` writes only it).
"""

import json
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent.parent
TRAIN = Path("/usr/share/common-licenses/GFDL-1.3")
EVAL = Path("/usr/share/common-licenses/Apache-2.0")
SEQ_LEN = 128


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, neox, base=10000.0):
    """x: [T, heads, head_dim], positions 0..T."""
    t, _, hd = x.shape
    inv = 1.0 / base ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(t)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = np.empty_like(x)
    if neox:
        a, b = x[..., : hd // 2], x[..., hd // 2 :]
        out[..., : hd // 2] = a * cos - b * sin
        out[..., hd // 2 :] = a * sin + b * cos
    else:
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
    return out


def forward(w, cfg, ids):
    """Logits [T, vocab] of a llama/qwen2 decoder over one causal window, in float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    eps, heads, kv = cfg["eps"], cfg["heads"], cfg["kv_heads"]
    x = w["token_embd.weight"][ids]
    t, d = x.shape
    hd = d // heads
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(cfg["blocks"]):
        p = f"blk.{layer}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q, k, v = (h @ w[p + f"attn_{n}.weight"].T + w.get(p + f"attn_{n}.bias", 0.0) for n in "qkv")
        q = rope(q.reshape(t, heads, hd), cfg["neox"])
        k = rope(k.reshape(t, kv, hd), cfg["neox"])
        v = v.reshape(t, kv, hd)
        k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(t, d)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        g = h @ w[p + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    return rms_norm(x, w["output_norm.weight"], eps) @ w["output.weight"].T


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def random_blocks(rng, cfg, d, ffn, std, bias):
    w = {}
    hd = d // cfg["heads"]
    for layer in range(cfg["blocks"]):
        p = f"blk.{layer}."
        w[p + "attn_norm.weight"] = np.ones(d, np.float32)
        w[p + "ffn_norm.weight"] = np.ones(d, np.float32)
        for n, rows in [("q", d), ("k", cfg["kv_heads"] * hd), ("v", cfg["kv_heads"] * hd)]:
            w[p + f"attn_{n}.weight"] = rng.normal(0, std, (rows, d)).astype(np.float32)
            if bias:
                w[p + f"attn_{n}.bias"] = rng.normal(0, std, rows).astype(np.float32)
        w[p + "attn_output.weight"] = rng.normal(0, std, (d, d)).astype(np.float32)
        w[p + "ffn_gate.weight"] = rng.normal(0, std, (ffn, d)).astype(np.float32)
        w[p + "ffn_up.weight"] = rng.normal(0, std, (ffn, d)).astype(np.float32)
        w[p + "ffn_down.weight"] = rng.normal(0, std, (d, ffn)).astype(np.float32)
    return w


def write_gguf(path, arch, cfg, d, ffn, context, w, dtype):
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    writer.add_context_length(context)
    writer.add_embedding_length(d)
    writer.add_block_count(cfg["blocks"])
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(cfg["heads"])
    writer.add_head_count_kv(cfg["kv_heads"])
    writer.add_rope_dimension_count(d // cfg["heads"])
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(cfg["eps"])
    for name, t in w.items():
        # Norms and biases stay f32, as llama.cpp's converters write them.
        writer.add_tensor(name, t.astype(dtype) if t.ndim == 2 else t.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # What a reader of the file gets back (f16 rounding included).
    return {k: (v.astype(dtype) if v.ndim == 2 else v).astype(np.float32) for k, v in w.items()}


def make_llama():
    out = ROOT / "suites/models/tiny-llama"
    out.mkdir(parents=True, exist_ok=True)
    train, held_out = TRAIN.read_text(), EVAL.read_text()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [train], trainers.BpeTrainer(vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tok.save(str(out / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    ids = np.array(tok.encode(train).ids)
    counts = np.full((vocab, vocab), 0.05)
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    logp -= logp.mean(1, keepdims=True)
    d, ffn = 256, 512
    u, s, vt = np.linalg.svd(logp)
    a = u[:, :d] * np.sqrt(s[:d])
    b = vt[:d].T * np.sqrt(s[:d])
    scale = np.sqrt((a * a).mean(1)).mean()
    cfg = {"blocks": 2, "heads": 4, "kv_heads": 2, "eps": 1e-5, "neox": False}
    w = {"token_embd.weight": (a / scale).astype(np.float32)}
    w.update(random_blocks(np.random.default_rng(2026), cfg, d, ffn, 0.02, bias=False))
    w["output_norm.weight"] = np.full(d, scale, np.float32)
    w["output.weight"] = b.astype(np.float32)
    w = write_gguf(out / "model-f16.gguf", "llama", cfg, d, ffn, 2048, w, np.float16)
    (ROOT / "suites/data/apache-2.0.txt").write_text(held_out)
    eval_ids = np.array(tok.encode(held_out).ids)
    windows = eval_ids[: len(eval_ids) // SEQ_LEN * SEQ_LEN].reshape(-1, SEQ_LEN)
    nll = []
    for i, win in enumerate(windows):
        logits = forward(w, cfg, win)
        if i == 0:
            np.save(ROOT / "tests/reference/tiny-llama.logits.npy", logits[:16].astype(np.float32))
        nll.append(-log_softmax(logits[:-1])[np.arange(SEQ_LEN - 1), win[1:]])
    nll = np.concatenate(nll)
    summary = {
        "seq_len": SEQ_LEN,
        "windows": int(len(windows)),
        "scored_tokens": int(nll.size),
        "perplexity": float(np.exp(nll.mean())),
        "first_window_ids": windows[0].tolist(),
    }
    (ROOT / "tests/reference/tiny-llama.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"tiny-llama: vocab {vocab}, {len(windows)} windows, perplexity {summary['perplexity']:.3f}")


def make_qwen2():
    cfg = {"blocks": 2, "heads": 4, "kv_heads": 2, "eps": 1e-6, "neox": True}
    rng = np.random.default_rng(99)
    vocab, d, ffn = 48, 32, 64
    w = {"token_embd.weight": rng.normal(0, 1, (vocab, d)).astype(np.float32)}
    w.update(random_blocks(rng, cfg, d, ffn, 0.2, bias=True))
    w["output_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
    w["output.weight"] = rng.normal(0, 0.3, (vocab, d)).astype(np.float32)
    path = ROOT / "tests/reference/qwen2-tiny.gguf"
    w = write_gguf(path, "qwen2", cfg, d, ffn, 64, w, np.float32)
    ids = rng.integers(0, vocab, 12)
    np.save(ROOT / "tests/reference/qwen2-tiny.ids.npy", ids.astype(np.int64))
    np.save(ROOT / "tests/reference/qwen2-tiny.logits.npy", forward(w, cfg, ids).astype(np.float32))


def qwen3_forward(w, cfg, ids):
    """Logits [T, vocab] of a qwen3 decoder in float64: qwen2's layout without q/k/v biases, an
    RMS norm over each head of q and k before the NEOX rotation, a head size of its own
    (attention.key_length, here not embedding / heads), and its own rotary base."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    eps, heads, kv, hd = cfg["eps"], cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    x = w["token_embd.weight"][ids]
    t = x.shape[0]
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(cfg["blocks"]):
        p = f"blk.{layer}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q = (h @ w[p + "attn_q.weight"].T).reshape(t, heads, hd)
        k = (h @ w[p + "attn_k.weight"].T).reshape(t, kv, hd)
        v = (h @ w[p + "attn_v.weight"].T).reshape(t, kv, hd)
        q = rope(rms_norm(q, w[p + "attn_q_norm.weight"], eps), True, cfg["rope_base"])
        k = rope(rms_norm(k, w[p + "attn_k_norm.weight"], eps), True, cfg["rope_base"])
        k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(t, heads * hd)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        g = h @ w[p + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    return rms_norm(x, w["output_norm.weight"], eps) @ w["output.weight"].T


def make_qwen3():
    """tests/reference/qwen3-tiny.gguf: a 2-block qwen3 over the tiny llama's 512-token byte-level
    BPE vocabulary, carrying that tokenizer in its metadata (tokenizer.ggml.model = gpt2, pre
    qwen2) and no tokenizer.json, as Qwen3 GGUF files are published; random weights (seeded),
    f32. Its numpy logits for 12 ids are in qwen3-tiny.logits.npy."""
    cfg = {"blocks": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "eps": 1e-6, "rope_base": 1_000_000.0}
    rng = np.random.default_rng(3)
    tok = json.loads((ROOT / "suites/models/tiny-llama/tokenizer.json").read_text())
    vocab_map = tok["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    vocab, d, ffn, hd = len(tokens), 32, 64, cfg["head_dim"]
    w = {"token_embd.weight": rng.normal(0, 1, (vocab, d)).astype(np.float32)}
    for layer in range(cfg["blocks"]):
        p = f"blk.{layer}."
        w[p + "attn_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
        w[p + "ffn_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
        w[p + "attn_q.weight"] = rng.normal(0, 0.2, (cfg["heads"] * hd, d)).astype(np.float32)
        w[p + "attn_k.weight"] = rng.normal(0, 0.2, (cfg["kv_heads"] * hd, d)).astype(np.float32)
        w[p + "attn_v.weight"] = rng.normal(0, 0.2, (cfg["kv_heads"] * hd, d)).astype(np.float32)
        w[p + "attn_q_norm.weight"] = rng.uniform(0.5, 1.5, hd).astype(np.float32)
        w[p + "attn_k_norm.weight"] = rng.uniform(0.5, 1.5, hd).astype(np.float32)
        w[p + "attn_output.weight"] = rng.normal(0, 0.2, (d, cfg["heads"] * hd)).astype(np.float32)
        w[p + "ffn_gate.weight"] = rng.normal(0, 0.2, (ffn, d)).astype(np.float32)
        w[p + "ffn_up.weight"] = rng.normal(0, 0.2, (ffn, d)).astype(np.float32)
        w[p + "ffn_down.weight"] = rng.normal(0, 0.2, (d, ffn)).astype(np.float32)
    w["output_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
    w["output.weight"] = rng.normal(0, 0.3, (vocab, d)).astype(np.float32)
    path = ROOT / "tests/reference/qwen3-tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_name(path.stem)
    writer.add_context_length(256)
    writer.add_embedding_length(d)
    writer.add_block_count(cfg["blocks"])
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(cfg["heads"])
    writer.add_head_count_kv(cfg["kv_heads"])
    writer.add_key_length(hd)
    writer.add_value_length(hd)
    writer.add_rope_freq_base(cfg["rope_base"])
    writer.add_layer_norm_rms_eps(cfg["eps"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
    writer.add_token_merges(merges)
    for name, t in w.items():
        writer.add_tensor(name, t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ids = rng.integers(0, vocab, 12)
    np.save(ROOT / "tests/reference/qwen3-tiny.ids.npy", ids.astype(np.int64))
    np.save(ROOT / "tests/reference/qwen3-tiny.logits.npy", qwen3_forward(w, cfg, ids).astype(np.float32))
    # A whole context (256 positions), where f16 rotary angles drift: the last position's logits.
    long_ids = rng.integers(0, vocab, 256)
    np.save(ROOT / "tests/reference/qwen3-tiny.long-ids.npy", long_ids.astype(np.int64))
    np.save(ROOT / "tests/reference/qwen3-tiny.long-last.npy", qwen3_forward(w, cfg, long_ids)[-1].astype(np.float32))


def phi3_forward(w, cfg, ids):
    """Logits [T, vocab] of a phi3 decoder in float64: q, k and v from one fused weight, NEOX
    rotation (base 10000) over whole heads, and a SwiGLU whose gate is the first half of the
    fused ffn_up's rows."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    eps, heads, kv, ffn = cfg["eps"], cfg["heads"], cfg["kv_heads"], cfg["ffn"]
    x = w["token_embd.weight"][ids]
    t, d = x.shape
    hd = d // heads
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(cfg["blocks"]):
        p = f"blk.{layer}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        qkv = h @ w[p + "attn_qkv.weight"].T
        q = qkv[:, : heads * hd].reshape(t, heads, hd)
        k = qkv[:, heads * hd : (heads + kv) * hd].reshape(t, kv, hd)
        v = qkv[:, (heads + kv) * hd :].reshape(t, kv, hd)
        q, k = rope(q, True), rope(k, True)
        k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(t, d)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        up = h @ w[p + "ffn_up.weight"].T
        g, u = up[:, :ffn], up[:, ffn:]
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
    return rms_norm(x, w["output_norm.weight"], eps) @ w["output.weight"].T


def make_phi3():
    """tests/reference/phi3-tiny.gguf: a 2-block phi3 over tok-spm.gguf's 700-token SentencePiece
    vocabulary, carrying it in its metadata (no tokenizer.json), random weights (seeded), f32."""
    cfg = {"blocks": 2, "heads": 4, "kv_heads": 2, "eps": 1e-5, "ffn": 64}
    rng = np.random.default_rng(33)
    spm = gguf.GGUFReader(str(ROOT / "tests/reference/tok-spm.gguf"))
    field = lambda name: spm.fields[name]  # noqa: E731
    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode() for i in field("tokenizer.ggml.tokens").data]
    scores = [float(field("tokenizer.ggml.scores").parts[i][0]) for i in field("tokenizer.ggml.scores").data]
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    vocab, d, ffn = len(tokens), 32, cfg["ffn"]
    hd = d // cfg["heads"]
    w = {"token_embd.weight": rng.normal(0, 1, (vocab, d)).astype(np.float32)}
    for layer in range(cfg["blocks"]):
        p = f"blk.{layer}."
        w[p + "attn_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
        w[p + "ffn_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
        w[p + "attn_qkv.weight"] = rng.normal(0, 0.2, ((cfg["heads"] + 2 * cfg["kv_heads"]) * hd, d)).astype(np.float32)
        w[p + "attn_output.weight"] = rng.normal(0, 0.2, (d, d)).astype(np.float32)
        w[p + "ffn_up.weight"] = rng.normal(0, 0.2, (2 * ffn, d)).astype(np.float32)
        w[p + "ffn_down.weight"] = rng.normal(0, 0.2, (d, ffn)).astype(np.float32)
    w["output_norm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
    w["output.weight"] = rng.normal(0, 0.3, (vocab, d)).astype(np.float32)
    path = ROOT / "tests/reference/phi3-tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "phi3")
    writer.add_name(path.stem)
    writer.add_context_length(128)
    writer.add_embedding_length(d)
    writer.add_block_count(cfg["blocks"])
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(cfg["heads"])
    writer.add_head_count_kv(cfg["kv_heads"])
    writer.add_rope_dimension_count(hd)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(cfg["eps"])
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_space_prefix(True)
    for name, t in w.items():
        writer.add_tensor(name, t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ids = rng.integers(0, vocab, 12)
    np.save(ROOT / "tests/reference/phi3-tiny.ids.npy", ids.astype(np.int64))
    np.save(ROOT / "tests/reference/phi3-tiny.logits.npy", phi3_forward(w, cfg, ids).astype(np.float32))


if __name__ == "__main__":
    import sys

    # `qwen3` or `phi3` alone writes only that fixture (the others need the training text).
    if sys.argv[1:] not in (["qwen3"], ["phi3"]):
        make_llama()
        make_qwen2()
    if sys.argv[1:] != ["phi3"]:
        make_qwen3()
    if sys.argv[1:] != ["qwen3"]:
        make_phi3()
