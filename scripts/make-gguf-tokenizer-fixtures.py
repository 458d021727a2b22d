#!/usr/bin/env python3
"""Writes GGUF files that carry their tokenizer inside (`tokenizer.ggml.*`), as most published
GGUF files do, each beside a Hugging Face tokenizer.json of the same vocabulary.

    pip install gguf tokenizers && python3 scripts/make-gguf-tokenizer-fixtures.py

The outputs are committed; CI and the tests only read them (no Python needed there). The GGUF
files are written by llama.cpp's own Python writer (gguf-py), the way its converters write a
vocabulary, so the tests check qbench's reading of `tokenizer.ggml.*` against another
implementation; the tokenizer.json files are written by Hugging Face tokenizers.

- tests/reference/tok-gpt2.gguf: tokenizer.ggml.model = "gpt2" (byte-level BPE), the vocabulary
  and merges of suites/models/tiny-llama/tokenizer.json (512 tokens), pre-tokenizer "gpt-2".
  Metadata only, no tensors.
- tests/reference/tok-spm.json and tok-spm.gguf: a SentencePiece-style BPE as Llama and Gemma
  files have it: "▁" for spaces (prepended to the text), byte fallback to <0x00>…<0xFF>, <unk>
  <s> </s>, trained on the GNU FDL 1.3 text (/usr/share/common-licenses/GFDL-1.3) to 700 tokens.
  The GGUF holds tokenizer.ggml.model = "llama": tokens, scores (a merged token's score is minus
  the rank of the merge that makes it, as SentencePiece ranks them) and token types (normal,
  unknown, control, byte), and no merges: a reader derives them from the scores, as llama.cpp
  does.
"""

import json
from pathlib import Path

import gguf
from tokenizers import Tokenizer, decoders, models, normalizers, trainers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/reference"
TRAIN = Path("/usr/share/common-licenses/GFDL-1.3")


def write_gguf(path, fill):
    w = gguf.GGUFWriter(str(path), "llama")
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gpt2():
    tok = json.loads((ROOT / "suites/models/tiny-llama/tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    def fill(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        w.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
        w.add_token_merges(merges)

    write_gguf(OUT / "tok-gpt2.gguf", fill)


def spm():
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=700 - len(byte_tokens), special_tokens=specials, show_progress=False)
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.train([str(TRAIN)], trainer)
    trained = json.loads(tok.to_str())
    learned = trained["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in trained["model"]["merges"]]
    # Llama's layout: <unk> <s> </s>, the 256 byte tokens, then the rest in the trainer's order.
    rest = [t for t, _ in sorted(learned.items(), key=lambda kv: kv[1]) if t not in specials]
    tokens = specials + byte_tokens + rest
    vocab = {t: i for i, t in enumerate(tokens)}
    made_by = {a + b: rank for rank, (a, b) in enumerate(m.split(" ") for m in merges)}
    model = models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], unk_token="<unk>", byte_fallback=True)
    out = Tokenizer(model)
    out.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    out.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    out.save(str(OUT / "tok-spm.json"))
    scores, types = [], []
    for t in tokens:
        if t == "<unk>":
            scores.append(0.0)
            types.append(gguf.TokenType.UNKNOWN)
        elif t in specials:
            scores.append(0.0)
            types.append(gguf.TokenType.CONTROL)
        elif t in byte_tokens:
            scores.append(0.0)
            types.append(gguf.TokenType.BYTE)
        else:
            scores.append(-float(made_by[t]) if t in made_by else 0.0)
            types.append(gguf.TokenType.NORMAL)

    def fill(w):
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_add_space_prefix(True)

    write_gguf(OUT / "tok-spm.gguf", fill)


if __name__ == "__main__":
    gpt2()
    spm()
