#!/usr/bin/env python3
"""Writes fixtures shaped like published models whose layout qbench did not design.

    pip install onnx numpy && python3 scripts/make-layout-fixtures.py

The outputs are committed; CI and the tests only read them (no Python needed there). Every
weight is random (seeded), so the files are license-clean; each is a few KB.

- tests/reference/audio-long.onnx: an audio classifier over raw waveforms, input "audio"
  [batch, 1, 44100] (one second at 44.1 kHz, symbolic batch "batch"), two 1-D convolutions
  (k = 65 and k = 9, 16 channels, same padding), a global average pool and a Gemm to 4 classes.
  Its activations are ~2.8 MB per item per layer and tract's convolutions unfold each item
  (~11 MB and ~25 MB): padding 16 items to a batch of 500 took gigabytes.
- tests/reference/shared-opset11.onnx: an opset-11 MLP, input "x" [batch, 32], whose one
  32×32 weight "w_shared" is read by three MatMul nodes (a weight-tied residual stack, as
  recurrent or ALBERT-style exports write it), then a Gemm head (transB) to 10 outputs, and the
  ops whose opset-11 form later opsets changed: Dropout with a `ratio` attribute (an input from
  12), Unsqueeze/Squeeze/ReduceSum with `axes` attributes (inputs from 13), and a Softmax with
  axis 1 over [batch, 2, 5] (opset 11 normalizes all 10 values of an item; opset 13 would
  normalize pairs). Its outputs for tests/reference/shared-opset11.x.npy (24 rows) are in
  shared-opset11.scores.npy, computed by a numpy forward pass (and checked against onnxruntime).
- tests/reference/stateful.onnx: a data input, a recurrent state [2, batch, 8] and a scalar int64
  sample rate; stateful.scores.npy holds its outputs for stateful.x.npy with state 0.5 and
  sr 16000, computed by numpy.
- tests/reference/ctc.onnx: a text recognizer shaped like OCR/ASR models: input "image"
  [batch, 1, 8, 32] read column by column (32 positions of 8 features), two MatMul layers to
  "logits" [batch, 32, 5] (CTC: blank 0, then "abcd"), and a second output "confidence"
  [batch, 1] (a Sigmoid over the pooled hidden state). ctc.x.npy holds 40 rendered texts (each
  character 3 columns, a blank column between, noise added), ctc.labels.txt the texts that were
  rendered (the ground truth, not the model's reading), ctc.logits.npy and ctc.confidence.npy
  the numpy forward pass, and ctc.decoded.txt its greedy CTC decoding. ctc-tnc.onnx is the same
  model with its logits in PyTorch's CTC layout, [32, batch, 5] (time first, the batch second).
- tests/reference/detector.onnx: a detector head, input "x" [batch, 16] to "prob" [batch, 1]
  (MatMul, Add, Sigmoid); detector.x.npy (48 items), detector.labels.csv (0/1 from a slightly
  different weight vector, so accuracy is below 100%), detector.prob.npy (numpy).
- tests/reference/time-major.onnx: a recurrent-style export whose input "frames" is time-major,
  [6, batch, 4] (the batch on axis 1): y = (Σ_t frames[t]) · W, W [4, 3]. time-major.x.npy
  holds 20 items as a dataset stores them ([20, 6, 4], item first), time-major.y.npy numpy's
  outputs.
- tests/reference/context.onnx: a data input "x" [batch, 8] beside an unbatched "ctx" [1, 8] (a
  shared context vector, broadcast): y = (x + ctx) · W, W [8, 3]. context.x.npy holds 16 items,
  context.y.npy numpy's outputs with ctx = 0.5 everywhere.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/reference"


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def build_audio(rng):
    samples = 44100
    w1 = rng.normal(0, 0.1, (16, 1, 65))
    b1 = rng.normal(0, 0.01, (16,))
    w2 = rng.normal(0, 0.1, (16, 16, 9))
    b2 = rng.normal(0, 0.01, (16,))
    wh = rng.normal(0, 0.3, (4, 16))
    bh = rng.normal(0, 0.01, (4,))
    nodes = [
        helper.make_node("Conv", ["audio", "w1", "b1"], ["c1"], name="conv1", pads=[32, 32], kernel_shape=[65]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[4, 4], kernel_shape=[9]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "wh", "bh"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "audio-long",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 1, samples])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2), init("wh", wh), init("bh", bh)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="audio fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def build_shared_opset11(rng):
    w = rng.normal(0, 0.25, (32, 32))
    wh = rng.normal(0, 0.3, (10, 32))
    bh = rng.normal(0, 0.01, (10,))
    nodes = []
    x = "x"
    for i in range(3):
        nodes += [
            helper.make_node("MatMul", [x, "w_shared"], [f"m{i}"], name=f"tied{i}"),
            helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"tanh{i}"),
            helper.make_node("Add", [x, f"t{i}"], [f"h{i}"], name=f"res{i}"),
        ]
        x = f"h{i}"
    nodes += [
        helper.make_node("Unsqueeze", [x], ["u"], name="unsqueeze", axes=[1]),
        helper.make_node("Squeeze", ["u"], ["s"], name="squeeze", axes=[1]),
        helper.make_node("Gemm", ["s", "wh", "bh"], ["z"], name="head", transB=1),
        helper.make_node("Dropout", ["z"], ["zd"], name="dropout", ratio=0.1),
        helper.make_node("Reshape", ["zd", "shape3"], ["z3"], name="to3d"),
        # Opset 11: normalized over everything from axis 1 (all 10 values of an item); read with
        # opset 13's meaning it would be over axis 1 alone (pairs), a different output.
        helper.make_node("Softmax", ["z3"], ["p3"], name="softmax", axis=1),
        helper.make_node("Reshape", ["p3", "shape2"], ["p2"], name="to2d"),
        helper.make_node("Unsqueeze", ["p2"], ["pu"], name="unsqueeze2", axes=[2]),
        helper.make_node("ReduceSum", ["pu"], ["probs"], name="reducesum", axes=[2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "shared-opset11",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [
            init("w_shared", w),
            init("wh", wh),
            init("bh", bh),
            numpy_helper.from_array(np.array([0, 2, 5], dtype=np.int64), "shape3"),
            numpy_helper.from_array(np.array([0, 10], dtype=np.int64), "shape2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="tied fixture")
    model.ir_version = 6
    onnx.checker.check_model(model, full_check=True)
    return model


def shared_forward(model, x):
    """The shared-opset11 model in numpy float64, with opset 11's Softmax (every value after the
    axis). onnx.reference 1.23 evaluates an opset-11 Softmax with opset 13's meaning, so it is not
    the reference here; onnxruntime, when installed, is checked against this."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    h = x.astype(np.float64)
    for _ in range(3):
        h = h + np.tanh(h @ w["w_shared"])
    z = h @ w["wh"].T + w["bh"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    try:
        import onnxruntime

        got = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        assert np.abs(got - probs).max() < 1e-5, np.abs(got - probs).max()
    except ImportError:
        pass
    return probs


def build_stateful(rng):
    """tests/reference/stateful.onnx: inputs as streaming audio models have them: data "x"
    [batch, 8], a recurrent state "state" [2, batch, 8] (batch on axis 1) and a scalar int64
    "sr" (a sample rate). y = ((x + state[0] + state[1]) * sr / 16000) · W + b, W [8, 4]."""
    w = rng.normal(0, 0.5, (8, 4))
    b = rng.normal(0, 0.1, (4,))
    nodes = [
        helper.make_node("ReduceSum", ["state", "axis0"], ["s"], name="sum_state", keepdims=0),
        helper.make_node("Add", ["x", "s"], ["h"], name="add_state"),
        helper.make_node("Cast", ["sr"], ["srf"], name="sr_float", to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "sr_ref"], ["scale"], name="sr_scale"),
        helper.make_node("Mul", ["h", "scale"], ["h2"], name="scaled"),
        helper.make_node("MatMul", ["h2", "w"], ["m"], name="head"),
        helper.make_node("Add", ["m", "b"], ["y"], name="head_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "stateful",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 8]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            init("w", w),
            init("b", b),
            init("sr_ref", 16000.0),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="stateful fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, w, b


ALPHABET = "-abcd"


def time_first(model):
    """The CTC model with its logits transposed to [time, batch, vocab]."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for n in g.node:
        n.output[:] = ["logits_btv" if o == "logits" else o for o in n.output]
    g.node.append(helper.make_node("Transpose", ["logits_btv"], ["logits"], name="to_tbv", perm=[1, 0, 2]))
    g.output[0].CopyFrom(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [32, "batch", 5]))
    onnx.checker.check_model(m, full_check=True)
    return m


def build_ctc(rng):
    """Logits = relu(cols · W1 + b1) · W2 + b2 over the 32 columns of the image; confidence =
    sigmoid(mean over positions of the hidden state · wc + bc)."""
    w1 = np.eye(8, 16) * 2.0 + rng.normal(0, 0.1, (8, 16))
    b1 = rng.normal(0, 0.05, (16,))
    w2 = np.eye(16, 5) * 1.5 + rng.normal(0, 0.1, (16, 5))
    b2 = rng.normal(0, 0.05, (5,))
    wc = rng.normal(0, 0.5, (16, 1))
    bc = np.array([0.1])
    nodes = [
        helper.make_node("Reshape", ["image", "shape3"], ["rows"], name="to_rows"),
        helper.make_node("Transpose", ["rows"], ["cols"], name="to_columns", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["cols", "w1"], ["m1"], name="enc"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="enc_bias"),
        helper.make_node("Relu", ["a1"], ["h"], name="enc_relu"),
        helper.make_node("MatMul", ["h", "w2"], ["m2"], name="head"),
        helper.make_node("Add", ["m2", "b2"], ["logits"], name="head_bias"),
        helper.make_node("ReduceMean", ["h"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "wc"], ["mc"], name="conf"),
        helper.make_node("Add", ["mc", "bc"], ["ac"], name="conf_bias"),
        helper.make_node("Sigmoid", ["ac"], ["confidence"], name="conf_sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "ctc",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 32])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 32, 5]),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch", 1]),
        ],
        [
            init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2), init("wc", wc), init("bc", bc),
            numpy_helper.from_array(np.array([-1, 8, 32], dtype=np.int64), "shape3"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="ctc fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, (w1, b1, w2, b2, wc, bc)


def render_texts(rng, n):
    """n random texts over "abcd", 3–6 characters, each drawn as 3 columns of its class's
    feature row with a blank column (feature row 0) between, plus noise."""
    texts, images = [], np.zeros((n, 1, 8, 32))
    for i in range(n):
        text = "".join(rng.choice(list("abcd"), rng.integers(3, 7)))
        cols = []
        for ch in text:
            cols += [ALPHABET.index(ch)] * 3 + [0]
        cols += [0] * (32 - len(cols))
        for t, c in enumerate(cols):
            images[i, 0, c, t] = 1.0
        texts.append(text)
    images += rng.normal(0, 0.22, images.shape)
    return texts, images.astype(np.float32)


def ctc_forward(weights, x):
    w1, b1, w2, b2, wc, bc = (np.asarray(w, dtype=np.float32) for w in weights)
    cols = x.reshape(-1, 8, 32).transpose(0, 2, 1)
    h = np.maximum(cols @ w1 + b1, 0)
    logits = h @ w2 + b2
    conf = 1 / (1 + np.exp(-(h.mean(axis=1) @ wc + bc)))
    return logits.astype(np.float32), conf.astype(np.float32)


def ctc_decode(logits):
    out = []
    for item in logits:
        best, prev, text = item.argmax(axis=1), None, ""
        for c in best:
            if c != prev and c != 0:
                text += ALPHABET[c]
            prev = c
        out.append(text)
    return out


def build_detector(rng):
    w = rng.normal(0, 0.6, (16, 1))
    b = np.array([0.05])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="score"),
        helper.make_node("Add", ["m", "b"], ["z"], name="score_bias"),
        helper.make_node("Sigmoid", ["z"], ["prob"], name="prob"),
    ]
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1])],
        [init("w", w), init("b", b)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="detector fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, w, b


def check_with_onnxruntime(model, feed, expected):
    try:
        import onnxruntime
    except ImportError:
        return
    got = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feed)
    for g, e in zip(got, expected):
        assert np.abs(g - e).max() < 1e-5, np.abs(g - e).max()


def build_time_major(rng):
    w = rng.normal(0, 0.5, (4, 3))
    nodes = [
        helper.make_node("ReduceSum", ["frames", "axis0"], ["summed"], name="sum_time", keepdims=0),
        helper.make_node("MatMul", ["summed", "w"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "time-major",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [6, "batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [init("w", w), numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="time-major fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, w


def build_context(rng):
    w = rng.normal(0, 0.5, (8, 3))
    nodes = [
        helper.make_node("Add", ["x", "ctx"], ["h"], name="add_context"),
        helper.make_node("MatMul", ["h", "w"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "context",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("ctx", TensorProto.FLOAT, [1, 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [init("w", w)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="context fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, w


def main():
    rng = np.random.default_rng(20)
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(build_audio(rng), OUT / "audio-long.onnx")
    shared = build_shared_opset11(rng)
    onnx.save(shared, OUT / "shared-opset11.onnx")
    x = rng.normal(0, 1, (24, 32)).astype(np.float32)
    scores = shared_forward(shared, x)
    np.save(OUT / "shared-opset11.x.npy", x)
    np.save(OUT / "shared-opset11.scores.npy", scores.astype(np.float32))
    stateful, w, b = build_stateful(rng)
    onnx.save(stateful, OUT / "stateful.onnx")
    x = rng.normal(0, 1, (20, 8)).astype(np.float32)
    # Fed state = 0.5 everywhere and sr = 16000: y = (x + 1) · W + b.
    np.save(OUT / "stateful.x.npy", x)
    np.save(OUT / "stateful.scores.npy", ((x.astype(np.float64) + 1.0) @ w + b).astype(np.float32))
    ctc, weights = build_ctc(rng)
    onnx.save(ctc, OUT / "ctc.onnx")
    onnx.save(time_first(ctc), OUT / "ctc-tnc.onnx")
    texts, images = render_texts(rng, 40)
    logits, conf = ctc_forward(weights, images)
    check_with_onnxruntime(ctc, {"image": images}, [logits, conf])
    np.save(OUT / "ctc.x.npy", images)
    np.save(OUT / "ctc.logits.npy", logits)
    np.save(OUT / "ctc.confidence.npy", conf)
    (OUT / "ctc.labels.txt").write_text("\n".join(texts) + "\n")
    (OUT / "ctc.decoded.txt").write_text("\n".join(ctc_decode(logits)) + "\n")
    detector, w, b = build_detector(rng)
    onnx.save(detector, OUT / "detector.onnx")
    x = rng.normal(0, 1, (48, 16)).astype(np.float32)
    prob = (1 / (1 + np.exp(-(x @ w.astype(np.float32) + b.astype(np.float32))))).astype(np.float32)
    check_with_onnxruntime(detector, {"x": x}, [prob])
    truth = x @ (w + rng.normal(0, 0.4, w.shape)) + b > 0
    np.save(OUT / "detector.x.npy", x)
    np.save(OUT / "detector.prob.npy", prob)
    (OUT / "detector.labels.csv").write_text("".join(f"{int(t)}\n" for t in truth[:, 0]))
    time_major, w = build_time_major(rng)
    onnx.save(time_major, OUT / "time-major.onnx")
    x = rng.normal(0, 1, (20, 6, 4)).astype(np.float32)
    y = (x.astype(np.float64).sum(axis=1) @ w).astype(np.float32)
    check_with_onnxruntime(time_major, {"frames": x.transpose(1, 0, 2).copy()}, [y])
    np.save(OUT / "time-major.x.npy", x)
    np.save(OUT / "time-major.y.npy", y)
    context, w = build_context(rng)
    onnx.save(context, OUT / "context.onnx")
    x = rng.normal(0, 1, (16, 8)).astype(np.float32)
    y = ((x.astype(np.float64) + 0.5) @ w).astype(np.float32)
    check_with_onnxruntime(context, {"x": x, "ctx": np.full((1, 8), 0.5, np.float32)}, [y])
    np.save(OUT / "context.x.npy", x)
    np.save(OUT / "context.y.npy", y)


if __name__ == "__main__":
    main()
