#!/usr/bin/env python3
"""Writes the bring-your-own-model fixtures with tools independent of qbench.

    pip install onnx numpy tokenizers && python3 scripts/make-byom-fixtures.py

The outputs are committed; CI and the tests only read them (no Python needed there).

- suites/models/cnn-tf-style.onnx: the zoo CNN's trained weights (suites/models/cnn.safetensors)
  as an ONNX graph written the way TensorFlow/Paddle exporters write them: every weight a
  Constant node, a symbolic batch axis ("unk__batch"), the flatten as a Reshape whose shape is a
  Constant, fc1 as MatMul + Add with a [in, out] weight, fc2 as Gemm with transB, and value_info
  shape hints from a batch-1 trace (fixed dim 1) that contradict any other batch.
- suites/data/fashion-mnist-1k.npz: the first 1000 Fashion-MNIST test images, float32 in [0, 1],
  shape [1000, 1, 28, 28], array "x" (np.savez_compressed).
- suites/data/fashion-mnist-1k-labels.csv: their labels, with a header (index,label).
- tests/reference/embedding-bag.onnx (+ .ids.npy, .scores.npy): a model whose input is int64
  token ids (Gather from an embedding table, mean over the sequence, a MatMul + Add head), random
  weights, and onnx.reference's outputs for 24 rows of ids.
- tests/reference/masked-bag.onnx (+ .npz with arrays ids and mask, .scores.npy): the same with
  two inputs, int64 ids and an f32 padding mask (a masked mean), as BERT-style exports take them.
- tests/reference/lstm-tiny.onnx (+ .input.npy, .scores.npy): a tiny random-weight sequence model
  with an LSTM between two quantizable layers, and onnx.reference's outputs for its 40 inputs.
- suites/models/bert-tiny/{model.safetensors,config.json,tokenizer.json}: a 2-layer BERT with
  random weights (seeded) and a word-level tokenizer (Hugging Face tokenizers) over the words of
  suites/data/sentences.txt; tests/reference/bert-tiny.ids.npy holds the Python tokenizer's ids
  (16 per sentence, padded with 0) and bert-tiny.embeddings.npy the mean-pooled embeddings a
  numpy float64 forward pass computes for them.
- tests/reference/cnn-tf-style.logits.npy: the model's outputs for the first 64 images computed
  by onnx's own reference evaluator (onnx.reference), the independent engine the tests compare
  tract against.
"""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

ROOT = Path(__file__).resolve().parent.parent


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy()
    return out


def read_idx(path):
    raw = gzip.decompress(path.read_bytes())
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def constant(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name=name + "_value"))


def build_model(w):
    nodes = [
        constant("conv1/kernel", w["conv1.weight"]),
        constant("conv1/bias", w["conv1.bias"]),
        # Unnamed, as some exporters leave them.
        helper.make_node("Conv", ["images", "conv1/kernel", "conv1/bias"], ["conv1/out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1/out"], ["relu1/out"], name="relu1"),
        helper.make_node("MaxPool", ["relu1/out"], ["pool1/out"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        constant("conv2/kernel", w["conv2.weight"]),
        constant("conv2/bias", w["conv2.bias"]),
        helper.make_node("Conv", ["pool1/out", "conv2/kernel", "conv2/bias"], ["conv2/out"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv2/out"], ["relu2/out"], name="relu2"),
        helper.make_node("MaxPool", ["relu2/out"], ["pool2/out"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        constant("flatten/shape", np.array([-1, 32 * 7 * 7], dtype=np.int64)),
        helper.make_node("Reshape", ["pool2/out", "flatten/shape"], ["flatten/out"], name="flatten"),
        # Dense as TensorFlow writes it: x · W with W [in, out], then + b.
        constant("dense1/kernel", np.ascontiguousarray(w["fc1.weight"].T)),
        constant("dense1/bias", w["fc1.bias"]),
        helper.make_node("MatMul", ["flatten/out", "dense1/kernel"], ["dense1/matmul"], name="dense1"),
        helper.make_node("Add", ["dense1/matmul", "dense1/bias"], ["dense1/out"], name="dense1/add"),
        helper.make_node("Relu", ["dense1/out"], ["relu3/out"], name="relu3"),
        constant("dense2/kernel", w["fc2.weight"]),
        constant("dense2/bias", w["fc2.bias"]),
        helper.make_node("Gemm", ["relu3/out", "dense2/kernel", "dense2/bias"], ["logits"], name="dense2", transB=1),
    ]
    batch = "unk__batch"
    graph = helper.make_graph(
        nodes,
        "cnn_tf_style",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        value_info=[
            # Hints from a batch-1 trace: true only at batch 1.
            helper.make_tensor_value_info("conv1/out", TensorProto.FLOAT, [1, 16, 28, 28]),
            helper.make_tensor_value_info("flatten/out", TensorProto.FLOAT, [1, 1568]),
            helper.make_tensor_value_info("dense1/out", TensorProto.FLOAT, ["unk__other", 128]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx-style fixture")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_lstm(rng):
    """A tiny sequence classifier: Gemm-free MatMul projection, an LSTM (no integer form), and a
    Gemm head. Random weights, fixed seed."""
    t, f, h, c = 6, 5, 8, 3
    proj = rng.normal(0, 0.5, (f, f)).astype(np.float32)
    w = rng.normal(0, 0.4, (1, 4 * h, f)).astype(np.float32)
    r = rng.normal(0, 0.4, (1, 4 * h, h)).astype(np.float32)
    b = rng.normal(0, 0.1, (1, 8 * h)).astype(np.float32)
    head = rng.normal(0, 0.5, (c, h)).astype(np.float32)
    head_b = rng.normal(0, 0.1, (c,)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(proj, "proj"), (w, "lstm_w"), (r, "lstm_r"), (b, "lstm_b"), (head, "head_w"), (head_b, "head_b"),
              (np.array([1, 0, 2], dtype=np.int64), "perm_unused")]]
    nodes = [
        helper.make_node("MatMul", ["seq", "proj"], ["projected"], name="proj"),
        # LSTM wants [T, N, F].
        helper.make_node("Transpose", ["projected"], ["time_major"], name="to_time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["time_major", "lstm_w", "lstm_r", "lstm_b"], ["", "y_h"], name="lstm", hidden_size=h),
        helper.make_node("Squeeze", ["y_h", "axes0"], ["last"], name="squeeze"),
        helper.make_node("Gemm", ["last", "head_w", "head_b"], ["scores"], name="head", transB=1),
    ]
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"))
    graph = helper.make_graph(
        nodes, "lstm_tiny",
        [helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["batch", t, f])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", c])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="lstm fixture")
    model.ir_version = 8
    onnx.checker.check_model(model)
    x = rng.normal(0, 1, (40, t, f)).astype(np.float32)
    return model, x


SENTENCES = """the cat sat on the mat
a dog runs in the park
the quick brown fox jumps over the lazy dog
we measure latency and accuracy of quantized models
int8 weights shrink the model by four
the report shows a table and charts
tract runs onnx graphs on the cpu
candle runs transformer checkpoints
a small model fits in the cache
the sun rises in the east
rain falls on the green hills
she reads a book by the window
he writes code late at night
the train leaves at noon
birds sing in the early morning
the river flows to the sea
a cold wind blows from the north
children play games in the yard
the market opens on monday
we cook dinner for our friends
the old house has a red door
music fills the quiet room
the team wins the final game
a bright star shines above the city
the engine needs more fuel
snow covers the mountain road
the doctor visits the patient
the student solves a hard problem
fresh bread smells good
the ship sails across the ocean
a clock ticks on the wall
the garden grows tall flowers
the baby sleeps in the crib
a letter arrives in the mail
the moon lights the dark path
we walk along the beach
the lamp glows in the corner
a farmer plants seeds in spring
the bridge crosses the wide river
the computer computes the answer""".split("\n")


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def build_bert(rng, vocab_size):
    h, layers, heads, inter, max_pos = 64, 2, 4, 128, 32
    config = {
        "model_type": "bert", "architectures": ["BertModel"], "vocab_size": vocab_size, "hidden_size": h,
        "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": inter,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_pos, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }
    n = lambda *shape, s=0.05: rng.normal(0, s, shape).astype(np.float32)
    w = {
        "embeddings.word_embeddings.weight": n(vocab_size, h, s=0.5),
        "embeddings.position_embeddings.weight": n(max_pos, h, s=0.1),
        "embeddings.token_type_embeddings.weight": n(2, h, s=0.1),
        "embeddings.LayerNorm.weight": 1 + n(h, s=0.1),
        "embeddings.LayerNorm.bias": n(h, s=0.1),
    }
    for l in range(layers):
        p = f"encoder.layer.{l}."
        for name, (o, i) in {"attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
                             "attention.output.dense": (h, h), "intermediate.dense": (inter, h), "output.dense": (h, inter)}.items():
            w[p + name + ".weight"] = n(o, i, s=1 / np.sqrt(i))
            w[p + name + ".bias"] = n(o, s=0.02)
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"]:
            w[p + ln + ".weight"] = 1 + n(h, s=0.1)
            w[p + ln + ".bias"] = n(h, s=0.1)
    return config, w


def bert_forward(config, w, ids):
    """Mean-pooled last hidden states over non-padding tokens, numpy float64."""
    from math import erf
    h, heads = config["hidden_size"], config["num_attention_heads"]
    dh = h // heads
    W = {k: v.astype(np.float64) for k, v in w.items()}
    ln = lambda x, p: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12) * W[p + ".weight"] + W[p + ".bias"]
    lin = lambda x, p: x @ W[p + ".weight"].T + W[p + ".bias"]
    gelu = np.vectorize(lambda u: 0.5 * u * (1 + erf(u / np.sqrt(2))))
    out = []
    for row in ids:
        keep = row != 0
        seq = len(row)
        x = W["embeddings.word_embeddings.weight"][row] + W["embeddings.position_embeddings.weight"][:seq] + W["embeddings.token_type_embeddings.weight"][0]
        x = ln(x, "embeddings.LayerNorm")
        for l in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            q, k, v = (lin(x, p + "attention.self." + t).reshape(seq, heads, dh).transpose(1, 0, 2) for t in ["query", "key", "value"])
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
            scores[:, :, ~keep] = -np.inf
            e = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (e / e.sum(-1, keepdims=True)) @ v
            x1 = ln(lin(ctx.transpose(1, 0, 2).reshape(seq, h), p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            x = ln(lin(gelu(lin(x1, p + "intermediate.dense")), p + "output.dense") + x1, p + "output.LayerNorm")
        out.append(x[keep].mean(0))
    return np.array(out, dtype=np.float32)


def build_tokenizer(path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    words = sorted({w for s in SENTENCES for w in s.split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for w in words:
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))
    return tok, len(vocab)


def build_embedding_bag(rng):
    vocab, dim, seq, out = 32, 16, 8, 4
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (vocab, dim)).astype(np.float32), "table"),
        numpy_helper.from_array(rng.normal(0, 0.5, (dim, out)).astype(np.float32), "head_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (out,)).astype(np.float32), "head_b"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["embedded"], name="embed"),
        helper.make_node("ReduceMean", ["embedded"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "head_w"], ["projected"], name="head"),
        helper.make_node("Add", ["projected", "head_b"], ["scores"], name="head/add"),
    ]
    graph = helper.make_graph(
        nodes,
        "embedding_bag",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", seq])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    ids = rng.integers(0, vocab, (24, seq)).astype(np.int64)
    return model, ids


def make_embedding_bag():
    model, ids = build_embedding_bag(np.random.default_rng(5))
    onnx.save(model, ROOT / "tests/reference/embedding-bag.onnx")
    np.save(ROOT / "tests/reference/embedding-bag.ids.npy", ids)
    scores = ReferenceEvaluator(model).run(None, {"ids": ids})[0]
    np.save(ROOT / "tests/reference/embedding-bag.scores.npy", scores.astype(np.float32))


def make_masked_bag():
    rng = np.random.default_rng(6)
    vocab, dim, seq, out = 32, 16, 8, 4
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (vocab, dim)).astype(np.float32), "table"),
        numpy_helper.from_array(rng.normal(0, 0.5, (dim, out)).astype(np.float32), "head_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (out,)).astype(np.float32), "head_b"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["embedded"], name="embed"),
        helper.make_node("Unsqueeze", ["mask", "axis2"], ["mask3"], name="mask3"),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"], name="apply_mask"),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], name="sum", keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis1"], ["count"], name="count", keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["pooled"], name="mean"),
        helper.make_node("MatMul", ["pooled", "head_w"], ["projected"], name="head"),
        helper.make_node("Add", ["projected", "head_b"], ["scores"], name="head/add"),
    ]
    graph = helper.make_graph(
        nodes,
        "masked_bag",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", seq]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", seq]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    ids = rng.integers(1, vocab, (24, seq)).astype(np.int64)
    lengths = rng.integers(2, seq + 1, 24)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.float32)
    ids = ids * mask.astype(np.int64)
    onnx.save(model, ROOT / "tests/reference/masked-bag.onnx")
    np.savez(ROOT / "tests/reference/masked-bag.npz", ids=ids, mask=mask)
    scores = ReferenceEvaluator(model).run(None, {"ids": ids, "mask": mask})[0]
    np.save(ROOT / "tests/reference/masked-bag.scores.npy", scores.astype(np.float32))


def main():
    weights = read_safetensors(ROOT / "suites/models/cnn.safetensors")
    model = build_model(weights)
    onnx.save(model, ROOT / "suites/models/cnn-tf-style.onnx")

    images = read_idx(ROOT / "suites/data/fashion-mnist/t10k-images-idx3-ubyte.gz")[:1000]
    labels = read_idx(ROOT / "suites/data/fashion-mnist/t10k-labels-idx1-ubyte.gz")[:1000]
    x = (images.astype(np.float32) / np.float32(255.0)).reshape(1000, 1, 28, 28)
    np.savez_compressed(ROOT / "suites/data/fashion-mnist-1k.npz", x=x)
    with open(ROOT / "suites/data/fashion-mnist-1k-labels.csv", "w") as f:
        f.write("index,label\n")
        for i, l in enumerate(labels):
            f.write(f"{i},{l}\n")

    logits = ReferenceEvaluator(model).run(None, {"images": x[:64]})[0]
    np.save(ROOT / "tests/reference/cnn-tf-style.logits.npy", logits.astype(np.float32))
    print("logits[0]:", logits[0])

    make_embedding_bag()
    make_masked_bag()

    lstm, seq = build_lstm(np.random.default_rng(7))
    onnx.save(lstm, ROOT / "tests/reference/lstm-tiny.onnx")
    np.save(ROOT / "tests/reference/lstm-tiny.input.npy", seq)
    scores = ReferenceEvaluator(lstm).run(None, {"seq": seq})[0]
    np.save(ROOT / "tests/reference/lstm-tiny.scores.npy", scores.astype(np.float32))

    bert_dir = ROOT / "suites/models/bert-tiny"
    bert_dir.mkdir(exist_ok=True)
    tok, vocab_size = build_tokenizer(bert_dir / "tokenizer.json")
    config, weights = build_bert(np.random.default_rng(11), vocab_size)
    (bert_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(bert_dir / "model.safetensors", weights)
    (ROOT / "suites/data/sentences.txt").write_text("\n".join(SENTENCES) + "\n")
    seq_len = 16
    ids = np.zeros((len(SENTENCES), seq_len), dtype=np.int64)
    for i, s in enumerate(SENTENCES):
        e = tok.encode(s).ids[:seq_len]
        ids[i, : len(e)] = e
    np.save(ROOT / "tests/reference/bert-tiny.ids.npy", ids)
    np.save(ROOT / "tests/reference/bert-tiny.embeddings.npy", bert_forward(config, weights, ids))
    print("top-1 of the first 64:", float((logits.argmax(1) == labels[:64]).mean()))


if __name__ == "__main__":
    main()
