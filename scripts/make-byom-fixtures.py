#!/usr/bin/env python3
"""Writes the bring-your-own-model fixtures with tools independent of qbench.

    pip install onnx numpy && python3 scripts/make-byom-fixtures.py

The outputs are committed; CI and the tests only read them (no Python needed there).

- suites/models/cnn-tf-style.onnx: the zoo CNN's trained weights (suites/models/cnn.safetensors)
  as an ONNX graph written the way TensorFlow/Paddle exporters write them: every weight a
  Constant node, a symbolic batch axis ("unk__batch"), the flatten as a Reshape whose shape is a
  Constant, fc1 as MatMul + Add with a [in, out] weight, fc2 as Gemm with transB, and value_info
  shape hints from a batch-1 trace (fixed dim 1) that contradict any other batch.
- suites/data/fashion-mnist-1k.npz: the first 1000 Fashion-MNIST test images, float32 in [0, 1],
  shape [1000, 1, 28, 28], array "x" (np.savez_compressed).
- suites/data/fashion-mnist-1k-labels.csv: their labels, with a header (index,label).
- tests/reference/lstm-tiny.onnx (+ .input.npy, .scores.npy): a tiny random-weight sequence model
  with an LSTM between two quantizable layers, and onnx.reference's outputs for its 40 inputs.
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

    lstm, seq = build_lstm(np.random.default_rng(7))
    onnx.save(lstm, ROOT / "tests/reference/lstm-tiny.onnx")
    np.save(ROOT / "tests/reference/lstm-tiny.input.npy", seq)
    scores = ReferenceEvaluator(lstm).run(None, {"seq": seq})[0]
    np.save(ROOT / "tests/reference/lstm-tiny.scores.npy", scores.astype(np.float32))
    print("top-1 of the first 64:", float((logits.argmax(1) == labels[:64]).mean()))


if __name__ == "__main__":
    main()
