#!/usr/bin/env python3
"""Writes the malformed model and data files (tests/malformed/files/), the valid helpers the
suites and templates use beside them (tests/malformed/valid/), and MANIFEST.toml.

Standard library only (no numpy, onnx or PIL): ONNX is written as raw protobuf, GGUF,
safetensors, NPY, IDX, PNG and JPEG byte by byte. Deterministic: running it again writes the same
bytes. Run: python3 tests/malformed/make_files.py

Each MANIFEST entry names the file, the template tests/malformed.rs writes a suite with
(`template`), optionally a `companion` (another file of the corpus or of valid/ filling the
template's other slot), and `expect`: words the error must contain ({file} is the file's name).
"""
import gzip
import io
import json
import os
import random
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(HERE, "files")
VALID = os.path.join(HERE, "valid")
rng = random.Random(18)

ENTRIES = []


def write(folder, name, data):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def add(name, template, expect, data, note, companion=None):
    assert len(data) < 64 * 1024, (name, len(data))
    assert not any(e[0] == name for e in ENTRIES), name
    write(FILES, name, data)
    ENTRIES.append((name, template, expect, note, companion))


def garbage(n):
    return bytes(rng.randrange(256) for _ in range(n))


# ---------------------------------------------------------------- protobuf (ONNX) -------------
def varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_int(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def f_float(field, v):
    return key(field, 5) + struct.pack("<f", v)


FLOAT, INT64, STRING = 1, 7, 8


def tensor(name, dims, data_type=FLOAT, raw=None, floats=None, extra=b""):
    t = b"".join(f_int(1, d) for d in dims) + f_int(2, data_type) + f_bytes(8, name)
    if raw is not None:
        t += f_bytes(9, raw)
    if floats is not None:
        t += f_bytes(4, b"".join(struct.pack("<f", x) for x in floats))
    return t + extra


def dim(v):
    return f_bytes(1, f_int(1, v)) if isinstance(v, int) else f_bytes(1, f_bytes(2, v))


def value_info(name, dims, elem=FLOAT):
    shape = b"".join(dim(d) for d in dims)
    tt = f_int(1, elem) + f_bytes(2, shape)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, tt))


def attr_int(name, v):
    return f_bytes(1, name) + f_int(3, v) + f_int(20, 2)


def node(op, inputs, outputs, name="", attrs=()):
    n = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    if name:
        n += f_bytes(3, name)
    n += f_bytes(4, op)
    for a in attrs:
        n += f_bytes(5, a)
    return n


def graph(nodes, inits, inputs, outputs, name="g"):
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, name)
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, v) for v in inputs) + b"".join(f_bytes(12, v) for v in outputs)
    return g


def model(g, opset=13):
    m = f_int(1, 7) + f_bytes(2, "make_files.py") + f_bytes(8, f_bytes(1, "") + f_int(2, opset))
    if g is not None:
        m += f_bytes(7, g)
    return m


W = [((i * 37) % 101 - 50) / 500.0 for i in range(784 * 2)]
W_RAW = b"".join(struct.pack("<f", x) for x in W)


def mlp_graph(w=None, nodes=None, inputs=None, outputs=None, extra_inits=()):
    w = w if w is not None else tensor("W", [784, 2], raw=W_RAW)
    nodes = nodes if nodes is not None else [
        node("Flatten", ["images"], ["flat"], "flatten", [attr_int("axis", 1)]),
        node("MatMul", ["flat", "W"], ["logits"], "fc"),
    ]
    inputs = inputs if inputs is not None else [value_info("images", ["N", 1, 28, 28])]
    outputs = outputs if outputs is not None else [value_info("logits", ["N", 2])]
    return graph(nodes, [w, *extra_inits], inputs, outputs)


VALID_ONNX = model(mlp_graph())


def onnx_files():
    t = "onnx"
    add("onnx-empty.onnx", t, "{file}, graph", b"", "0 bytes: decodes as an empty ModelProto")
    add("onnx-garbage.onnx", t, "{file}, ONNX", garbage(4096), "random bytes")
    add("onnx-truncated.onnx", t, "{file}, ONNX", VALID_ONNX[: len(VALID_ONNX) // 2], "a valid model cut in half")
    add("onnx-text.onnx", t, "{file}, ONNX", b"graph { node { op_type: 'MatMul' } }\n" * 4, "protobuf text format, not binary")
    add("onnx-no-graph.onnx", t, "{file}, no graph", model(None), "ModelProto without a graph")
    add("onnx-no-nodes.onnx", t, "{file}, no node", model(graph([], [], [value_info("images", ["N", 1, 28, 28])], [value_info("logits", ["N", 2])])), "graph with inputs and outputs but no node")
    add("onnx-negative-dims.onnx", t, "{file}, W, -784", model(mlp_graph(w=tensor("W", [-784, -2], raw=W_RAW))), "initializer dims [-784, -2]")
    add("onnx-huge-initializer.onnx", t, "{file}, W", model(mlp_graph(w=tensor("W", [784, 1 << 40], raw=b"\0" * 64))), "initializer declares 784 x 2^40 floats, holds 64 bytes")
    add("onnx-dims-overflow.onnx", t, "{file}, W", model(mlp_graph(w=tensor("W", [1 << 32, 1 << 32, 1 << 32], raw=b"\0" * 16))), "initializer dims whose product overflows 2^64")
    add("onnx-raw-data-short.onnx", t, "{file}, W", model(mlp_graph(w=tensor("W", [784, 2], raw=W_RAW[:8]))), "784x2 float initializer with 8 bytes of data")
    add("onnx-string-weight.onnx", t, "{file}, W", model(mlp_graph(w=tensor("W", [784, 2], data_type=STRING, extra=b"".join(f_bytes(6, "x") for _ in range(4))))), "MatMul weight of type STRING")
    add("onnx-unknown-dtype.onnx", t, "{file}, W", model(mlp_graph(w=tensor("W", [784, 2], data_type=999, raw=W_RAW))), "initializer data_type 999")
    add("onnx-external-data.onnx", t, "{file}, external", model(mlp_graph(w=tensor("W", [784, 2], extra=f_bytes(13, f_bytes(1, "location") + f_bytes(2, "../../../../etc/passwd")) + f_int(14, 1)))), "weights in an external file named ../../../../etc/passwd")
    add("onnx-input-name.onnx", t, "{file}, images, pixels", model(mlp_graph(inputs=[value_info("pixels", ["N", 1, 28, 28])], nodes=[node("Flatten", ["pixels"], ["flat"], "flatten", [attr_int("axis", 1)]), node("MatMul", ["flat", "W"], ["logits"], "fc")])), "graph input is pixels, the suite declares images")
    add("onnx-input-rank.onnx", t, "{file}, images, shape", model(mlp_graph(inputs=[value_info("images", ["N", 784])])), "graph input is [N, 784], the suite declares [batch, 1, 28, 28]")
    add("onnx-input-negative-dim.onnx", t, "{file}, images", model(mlp_graph(inputs=[value_info("images", ["N", 1, -28, 28])])), "graph input dim -28")
    add("onnx-unknown-op.onnx", t, "{file}, FrobnicateV9", model(mlp_graph(nodes=[node("Flatten", ["images"], ["flat"], "flatten", [attr_int("axis", 1)]), node("FrobnicateV9", ["flat", "W"], ["logits"], "fc")])), "an op no engine implements")
    add("onnx-output-not-produced.onnx", t, "{file}, logits", model(mlp_graph(nodes=[node("Flatten", ["images"], ["flat"], "flatten", [attr_int("axis", 1)])])), "declared output that no node produces")
    add("onnx-cycle.onnx", t, "{file}, cycle", model(mlp_graph(nodes=[node("Add", ["images", "loop"], ["loop"], "self_loop"), node("Flatten", ["loop"], ["flat"], "flatten", [attr_int("axis", 1)]), node("MatMul", ["flat", "W"], ["logits"], "fc")])), "a node that consumes its own output")
    add("onnx-shape-mismatch.onnx", t, "{file}, fc, 784", model(mlp_graph(w=tensor("W", [783, 2], raw=W_RAW[: 783 * 8]))), "MatMul weight 783x2 after a 784-wide Flatten")
    add("onnx-constant-no-value.onnx", t, "{file}, Constant", model(mlp_graph(nodes=[node("Constant", [], ["W2"], "c"), node("Flatten", ["images"], ["flat"], "flatten", [attr_int("axis", 1)]), node("MatMul", ["flat", "W2"], ["logits"], "fc")])), "Constant node without a value attribute")
    add("onnx-nan-weights.onnx", t, "{file}, NaN", model(mlp_graph(w=tensor("W", [784, 2], raw=struct.pack("<f", float("nan")) * (784 * 2)))), "every weight NaN (zoo weights with NaN are refused)")
    # Subgraphs nested 2000 deep: a recursive decoder or graph walker overflows its stack.
    g = graph([node("Identity", ["images"], ["logits"], "id")], [], [value_info("images", ["N", 1, 28, 28])], [value_info("logits", ["N", 1, 28, 28])])
    for i in range(1000):
        g = f_bytes(1, node("If", [], [], "", [f_bytes(1, "b") + f_bytes(6, g)]))
    g = graph([node("If", ["images"], ["logits"], "if", [f_bytes(1, "then_branch") + f_bytes(6, g) + f_int(20, 5)])], [], [value_info("images", ["N", 1, 28, 28])], [value_info("logits", ["N", 1, 28, 28])])
    add("onnx-deep-subgraphs.onnx", t, "{file}", model(g), "If subgraphs nested 1000 deep")
    add("onnx-opset-huge.onnx", t, "{file}, opset", model(mlp_graph(), opset=(1 << 62)), "opset version 2^62")


# ---------------------------------------------------------------- GGUF ------------------------
GGUF_U32, GGUF_F32, GGUF_STRING, GGUF_ARRAY, GGUF_U64 = 4, 6, 8, 9, 10


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(k, ty, v):
    out = gstr(k) + struct.pack("<I", ty)
    if ty == GGUF_U32:
        out += struct.pack("<I", v)
    elif ty == GGUF_F32:
        out += struct.pack("<f", v)
    elif ty == GGUF_STRING:
        out += gstr(v)
    elif ty == GGUF_U64:
        out += struct.pack("<Q", v)
    else:
        out += v  # preencoded
    return out


def llama_kvs(head_count=2, arch="llama", drop=(), overrides=None):
    items = [
        ("general.architecture", GGUF_STRING, arch),
        ("llama.context_length", GGUF_U32, 64),
        ("llama.embedding_length", GGUF_U32, 8),
        ("llama.block_count", GGUF_U32, 1),
        ("llama.feed_forward_length", GGUF_U32, 16),
        ("llama.attention.head_count", GGUF_U32, head_count),
        ("llama.attention.head_count_kv", GGUF_U32, head_count),
        ("llama.rope.dimension_count", GGUF_U32, 4),
        ("llama.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5),
    ]
    overrides = overrides or {}
    return [(k, overrides.get(k, (ty, v))[0], overrides.get(k, (ty, v))[1]) for k, ty, v in items if k not in drop]


def llama_tensors(vocab=512, e=8, ff=16):
    # (name, dims as stored in the file: innermost first, ggml type, data)
    def f32(n):
        return b"".join(struct.pack("<f", ((i * 7) % 13 - 6) / 60.0) for i in range(n))
    def f16(n):
        return b"".join(struct.pack("<e", ((i * 7) % 13 - 6) / 60.0) for i in range(n))
    out = [("token_embd.weight", [e, vocab], 1, f16(e * vocab))]
    for n, d in [("attn_norm", [e]), ("ffn_norm", [e]), ("attn_q", [e, e]), ("attn_k", [e, e]), ("attn_v", [e, e]),
                 ("attn_output", [e, e]), ("ffn_gate", [e, ff]), ("ffn_up", [e, ff]), ("ffn_down", [ff, e])]:
        size = 1
        for x in d:
            size *= x
        out.append(("blk.0.%s.weight" % n, d, 0, f32(size)))
    out.append(("output_norm.weight", [e], 0, f32(e)))
    return out


def gguf(kvs, tensors, version=3, n_tensors=None, n_kv=None, raw_infos=None, alignment=32, offsets=None):
    out = b"GGUF" + struct.pack("<I", version)
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    for k, ty, v in kvs:
        out += kv(k, ty, v)
    data = b""
    infos = b""
    for i, (name, dims, ty, blob) in enumerate(tensors):
        while len(data) % alignment:
            data += b"\0"
        off = len(data) if offsets is None or offsets[i] is None else offsets[i]
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ty, off)
        data += blob
    out += infos if raw_infos is None else raw_infos
    while len(out) % alignment:
        out += b"\0"
    return out + data


def gguf_files():
    t = "gguf"
    good = gguf(llama_kvs(), llama_tensors())
    add("gguf-empty.gguf", t, "{file}, GGUF", b"", "0 bytes")
    add("gguf-bad-magic.gguf", t, "{file}, GGUF, magic", b"GGML" + good[4:], "magic GGML")
    add("gguf-truncated-header.gguf", t, "{file}, GGUF", good[:10], "magic, version and 2 bytes")
    add("gguf-truncated-data.gguf", t, "{file}, truncated", good[: len(good) - 5000], "tensor data cut short")
    add("gguf-bad-version.gguf", t, "{file}, version", good[:4] + struct.pack("<I", 99) + good[8:], "version 99")
    add("gguf-huge-n-tensors.gguf", t, "{file}, tensor", gguf(llama_kvs(), llama_tensors(), n_tensors=1 << 62), "n_tensors = 2^62")
    add("gguf-huge-n-kv.gguf", t, "{file}, metadata", gguf(llama_kvs(), llama_tensors(), n_kv=(1 << 64) - 1), "n_kv = 2^64 - 1")
    add("gguf-bad-string-length.gguf", t, "{file}, string", gguf([], [], n_kv=1)[:24] + struct.pack("<Q", 1 << 40) + b"general.architecture", "first key's length 2^40")
    add("gguf-dims-overflow.gguf", t, "{file}, token_embd.weight", gguf(llama_kvs(), [("token_embd.weight", [1 << 32, 1 << 32, 1 << 32], 0, b"\0" * 64)]), "tensor dims 2^32 x 2^32 x 2^32 (product overflows 2^64)")
    add("gguf-dims-zero.gguf", t, "{file}, token_embd.weight", gguf(llama_kvs(), [("token_embd.weight", [0, 512], 0, b"")]), "token embedding with 0 columns")
    add("gguf-offset-past-end.gguf", t, "{file}, token_embd.weight", gguf(llama_kvs(), llama_tensors(), offsets=[1 << 40] + [None] * 11), "first tensor at offset 2^40")
    add("gguf-offset-u64-max.gguf", t, "{file}, token_embd.weight", gguf(llama_kvs(), llama_tensors(), offsets=[(1 << 64) - 16] + [None] * 11), "tensor offset near 2^64 (the end overflows u64)")
    add("gguf-too-many-dims.gguf", t, "{file}, dimensions", gguf(llama_kvs(), [("token_embd.weight", [1] * 100, 0, b"\0" * 4)]), "a tensor with 100 dims")
    add("gguf-unknown-dtype.gguf", t, "{file}, type", gguf(llama_kvs(), [("token_embd.weight", [8, 512], 999, b"\0" * 64)]), "ggml type 999")
    add("gguf-block-not-dividing.gguf", t, "{file}, block", gguf(llama_kvs(), [("token_embd.weight", [33, 1], 2, b"\0" * 36)]), "q4_0 tensor of 33 elements (blocks of 32)")
    add("gguf-no-architecture.gguf", t, "{file}, general.architecture", gguf(llama_kvs(drop=("general.architecture",)), llama_tensors()), "no general.architecture")
    add("gguf-unknown-architecture.gguf", t, "{file}, gpt9", gguf(llama_kvs(arch="gpt9"), llama_tensors()), "general.architecture = gpt9")
    add("gguf-architecture-not-string.gguf", t, "{file}, general.architecture", gguf(llama_kvs(overrides={"general.architecture": (GGUF_U32, 7)}), llama_tensors()), "general.architecture is a u32")
    add("gguf-missing-key.gguf", t, "{file}, llama.block_count", gguf(llama_kvs(drop=("llama.block_count",)), llama_tensors()), "no llama.block_count")
    add("gguf-no-embedding.gguf", t, "{file}, token_embd", gguf(llama_kvs(), llama_tensors()[1:]), "every tensor but token_embd.weight")
    add("gguf-head-count-zero.gguf", t, "{file}, head_count", gguf(llama_kvs(head_count=0), llama_tensors()), "attention.head_count = 0 (divides the embedding width)")
    add("gguf-head-count-not-dividing.gguf", t, "{file}, head_count", gguf(llama_kvs(head_count=3), llama_tensors()), "attention.head_count = 3 does not divide embedding_length 8")
    add("gguf-block-count-huge.gguf", t, "{file}, blk.1", gguf(llama_kvs(overrides={"llama.block_count": (GGUF_U32, 0xFFFFFFFF)}), llama_tensors()), "block_count 2^32 - 1, one block present")
    add("gguf-embedding-length-wrong.gguf", t, "{file}, embedding", gguf(llama_kvs(overrides={"llama.embedding_length": (GGUF_U32, 4096)}), llama_tensors()), "embedding_length 4096, tensors 8 wide")
    add("gguf-vocab-tiny.gguf", t, "{file}, token", gguf(llama_kvs(), llama_tensors(vocab=4)), "a vocabulary of 4 tokens, the tokenizer has 512")
    arr = struct.pack("<I", GGUF_ARRAY)
    nested = b""
    for _ in range(200):
        nested = arr + struct.pack("<Q", 1) + nested
    nested = nested[4:] + struct.pack("<I", GGUF_U32) + struct.pack("<Q", 1) + struct.pack("<I", 0)
    # arrays of arrays 200 deep
    add("gguf-nested-arrays.gguf", t, "{file}", gguf(llama_kvs() + [("x.nested", GGUF_ARRAY, nested)], llama_tensors()), "a metadata array nested 200 deep")
    add("gguf-alignment-zero.gguf", t, "{file}, alignment", gguf(llama_kvs() + [("general.alignment", GGUF_U32, 0)], llama_tensors()), "general.alignment = 0 (divides the data offset)")


# ---------------------------------------------------------------- safetensors ---------------
def safetensors(header, data=b"", length=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def st_files():
    t = "zoo-weights"
    add("st-empty.safetensors", t, "{file}, safetensors", b"", "0 bytes")
    add("st-short.safetensors", t, "{file}, safetensors", b"\x10\x00\x00", "3 bytes: shorter than the length prefix")
    add("st-header-len-huge.safetensors", t, "{file}, header", safetensors({}, length=(1 << 63) + 5), "header length 2^63 + 5")
    add("st-header-len-past-end.safetensors", t, "{file}, header", safetensors(b'{"a":1}', length=100000), "header length 100000, file 15 bytes")
    add("st-header-not-json.safetensors", t, "{file}, header", safetensors(b"this is not json"), "header is not JSON")
    add("st-header-not-utf8.safetensors", t, "{file}, header", safetensors(b'{"\xff\xfe":1}'), "header is not UTF-8")
    add("st-header-deep.safetensors", t, "{file}, header", safetensors(b"[" * 30000 + b"]" * 30000), "header JSON nested 30000 deep")
    add("st-dtype-unknown.safetensors", t, "{file}, F99", safetensors({"fc1.weight": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "dtype F99")
    add("st-offsets-out-of-range.safetensors", t, "{file}, fc1.weight", safetensors({"fc1.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 1 << 40]}}, b"\0" * 8), "data_offsets end at 2^40, 8 bytes of data")
    add("st-offsets-reversed.safetensors", t, "{file}, fc1.weight", safetensors({"fc1.weight": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8), "data_offsets [8, 0]")
    add("st-offsets-overlap.safetensors", t, "{file}, offset", safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12), "two tensors sharing bytes")
    add("st-shape-overflow.safetensors", t, "{file}, fc1.weight", safetensors({"fc1.weight": {"dtype": "F32", "shape": [1 << 32, 1 << 32, 1 << 32], "data_offsets": [0, 8]}}, b"\0" * 8), "shape whose product overflows 2^64")
    add("st-shape-negative.safetensors", t, "{file}, shape", safetensors(b'{"fc1.weight":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', b"\0" * 8), "shape [-2]")
    add("st-missing-tensor.safetensors", t, "{file}, no tensor", safetensors({"fc3.bias": {"dtype": "F32", "shape": [10], "data_offsets": [0, 40]}}, b"\0" * 40), "a valid file with only fc3.bias")
    tiny = {n: {"dtype": "F32", "shape": [2], "data_offsets": [8 * i, 8 * i + 8]} for i, n in enumerate(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])}
    add("st-wrong-shapes.safetensors", t, "{file}, mlp, [2]", safetensors(tiny, b"\0" * 48), "every mlp tensor present with shape [2]")
    f16 = {n: {"dtype": "F16", "shape": [2], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])}
    add("st-f16.safetensors", t, "{file}, F16", safetensors(f16, b"\0" * 24), "every mlp tensor in F16")
    add("st-metadata-wrong-type.safetensors", t, "{file}, header", safetensors(b'{"__metadata__":{"a":[1,2]}}'), "__metadata__ values must be strings")
    add("st-header-padding-garbage.safetensors", t, "{file}", safetensors(b'{}' + b"\0" * 64), "header {} followed by NUL bytes")

    t = "bert-checkpoint"
    add("bert-garbage.safetensors", t, "{file}, safetensors", garbage(2000), "random bytes")
    add("bert-no-embeddings.safetensors", t, "{file}, word_embeddings", safetensors({"foo": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "one tensor, foo")
    add("bert-vocab-mismatch.safetensors", t, "{file}, vocab_size", safetensors({"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [5, 64], "data_offsets": [0, 1280]}}, b"\0" * 1280), "word_embeddings [5, 64], the config says 167 x 64")
    add("bert-integers-only.safetensors", t, "{file}, word_embeddings", safetensors({"embeddings.word_embeddings.weight": {"dtype": "I32", "shape": [167, 64], "data_offsets": [0, 167 * 64 * 4]}}, b"\0" * (167 * 64 * 4)), "the embedding stored as I32 (non-float tensors are skipped)")
    add("bert-nan-embeddings.safetensors", t, "{file}, NaN", safetensors({"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [167, 64], "data_offsets": [0, 167 * 64 * 4]}}, struct.pack("<f", float("nan")) * (167 * 64)), "NaN word embeddings")
    add("bert-embeddings-only.safetensors", t, "{file}, encoder", safetensors({"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [167, 64], "data_offsets": [0, 167 * 64 * 4]}}, b"\0" * (167 * 64 * 4)), "only the embedding table, no encoder layer")


# ---------------------------------------------------------------- BERT config / tokenizer ---
BERT_CONFIG = {
    "model_type": "bert", "architectures": ["BertModel"], "vocab_size": 167, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 32,
    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
}


def cfg(**changes):
    c = dict(BERT_CONFIG)
    for k, v in changes.items():
        if v is None:
            c.pop(k)
        else:
            c[k] = v
    return json.dumps(c, indent=1).encode()


def config_files():
    t = "bert-config"
    add("config-empty.json", t, "{file}, config", b"", "0 bytes")
    add("config-not-json.json", t, "{file}, JSON", b"vocab_size: 167\nhidden_size: 64\n", "YAML, not JSON")
    add("config-array.json", t, "{file}, BERT config", b"[]", "a JSON array")
    add("config-missing-fields.json", t, "{file}, missing field", b'{"model_type": "bert"}', "model_type only")
    add("config-wrong-model-type.json", t, "{file}, gpt2", cfg(model_type="gpt2"), "model_type gpt2")
    add("config-negative-size.json", t, "{file}, hidden_size", cfg(hidden_size=-64), "hidden_size -64")
    add("config-zero-heads.json", t, "{file}, num_attention_heads", cfg(num_attention_heads=0), "num_attention_heads 0 (divides hidden_size)")
    add("config-heads-not-dividing.json", t, "{file}, num_attention_heads", cfg(num_attention_heads=3), "num_attention_heads 3 does not divide hidden_size 64")
    add("config-huge-intermediate.json", t, "{file}, intermediate_size", cfg(intermediate_size=1 << 40), "intermediate_size 2^40, the checkpoint's is 128")
    add("config-zero-positions.json", t, "{file}, max_position_embeddings", cfg(max_position_embeddings=0), "max_position_embeddings 0")
    add("config-layers-mismatch.json", t, "{file}, num_hidden_layers", cfg(num_hidden_layers=12), "12 layers, the checkpoint has 2")
    add("config-unknown-activation.json", t, "{file}, hidden_act", cfg(hidden_act="swish-9000"), "hidden_act swish-9000")
    add("config-huge-number.json", t, "{file}, vocab_size", cfg(vocab_size=1e400), "vocab_size 1e400")

    t = "tokenizer"
    tok = json.load(open(os.path.join(HERE, "../../suites/models/bert-tiny/tokenizer.json")))
    add("tok-empty.json", t, "{file}, tokenizer", b"", "0 bytes")
    add("tok-not-json.json", t, "{file}, tokenizer", b"[CLS] [SEP] the cat\n", "a vocabulary list, not JSON")
    add("tok-wrong-schema.json", t, "{file}, tokenizer", b'{"version": "1.0", "model": {"type": "Transformer9"}}', "unknown model type")
    big = json.loads(json.dumps(tok))
    big["model"]["vocab"] = {k: v + 1000000 for k, v in tok["model"]["vocab"].items()}
    big["post_processor"] = None
    add("tok-ids-past-vocab.json", t, "{file}, token, 167", json.dumps(big).encode(), "token ids from 1,000,000: the model's vocabulary has 167")
    bad = json.loads(json.dumps(tok))
    bad["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(unclosed[group"}, "behavior": "Isolated", "invert": False}
    add("tok-bad-regex.json", t, "{file}, regex", json.dumps(bad).encode(), "a Split pre-tokenizer with an invalid regex")
    add("tok-deep.json", t, "{file}, tokenizer", b'{"normalizer":' + b'{"type":"Sequence","normalizers":[' * 1500 + b"]}" * 1500 + b"}", "normalizers nested 1500 deep")


# ---------------------------------------------------------------- IDX -----------------------
def idx_images(n, rows, cols, pixels=None, magic=0x803, declared=None):
    d = declared or (n, rows, cols)
    out = struct.pack(">I", magic) + b"".join(struct.pack(">I", x) for x in d)
    return out + (pixels if pixels is not None else bytes((i * 13) % 256 for i in range(n * rows * cols)))


def idx_labels(labels, declared=None, magic=0x801):
    return struct.pack(">II", magic, len(labels) if declared is None else declared) + bytes(labels)


def idx_files():
    t = "idx-images"
    L2 = "../valid/idx2-labels.idx"
    add("idx-empty.idx", t, "{file}, IDX", b"", "0 bytes", L2)
    add("idx-bad-magic.idx", t, "{file}, magic", b"\x00\x00\x08\x99" + idx_images(2, 28, 28)[4:], "magic 0x899", L2)
    add("idx-labels-as-images.idx", t, "{file}, magic", idx_labels([1, 2]), "a labels file (magic 0x801) given as images", L2)
    add("idx-truncated-header.idx", t, "{file}, header", idx_images(2, 28, 28)[:9], "header cut after 9 bytes", L2)
    add("idx-data-short.idx", t, "{file}, 1568", idx_images(2, 28, 28)[:400], "header declares 2 28x28 images, 384 bytes follow", L2)
    add("idx-dims-overflow.idx", t, "{file}, header", idx_images(0, 0, 0, pixels=b"\0" * 64, declared=(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)), "dims 2^32-1 cubed (product overflows 2^64)", L2)
    add("idx-zero-images.idx", t, "{file}, 0 items", idx_images(0, 28, 28), "0 images of 28x28", "idx-zero-labels.idx")
    add("idx-zero-labels.idx", "idx-labels", "{file}, 0 items", idx_labels([]), "0 labels (images: 2)", None)
    add("idx-zero-rows.idx", t, "{file}, no item", idx_images(2, 0, 0), "2 images of 0x0 pixels", L2)
    add("idx-image-size.idx", t, "shape, 5, mlp", idx_images(2, 5, 5), "2 images of 5x5: the mlp takes 28x28", L2)
    add("idx-count-mismatch.idx", t, "2 images, 3 labels", idx_images(2, 28, 28), "2 images, the companion has 3 labels", "idx-3-labels.idx")
    add("idx-3-labels.idx", "idx-labels", "3 labels, 2 images", idx_labels([1, 2, 3]), "3 labels for 2 images", None)
    add("idx-labels-bad-magic.idx", "idx-labels", "{file}, magic", struct.pack(">II", 0x802, 2) + b"\x01\x02", "labels magic 0x802", None)
    add("idx-labels-out-of-range.idx", "idx-labels", "{file}, label 200, mlp", idx_labels([3, 200]), "label 200, the mlp has 10 classes", None)
    add("idx-labels-trailing.idx", "idx-labels", "{file}, 2", idx_labels([1, 2]) + b"\x07" * 10, "2 labels declared, 12 bytes follow", None)
    gz = gzip.compress(idx_images(2, 28, 28), mtime=0)
    add("idx-corrupt.gz", t, "{file}, gzip", gz[:10] + garbage(200), "gzip header, then garbage", L2)
    add("idx-truncated.gz", t, "{file}, gzip", gz[: len(gz) // 2], "a valid gzip cut in half", L2)
    add("idx-bad-crc.gz", t, "{file}, gzip", gz[:-8] + b"\xde\xad\xbe\xef" + gz[-4:], "gzip whose CRC32 does not match", L2)
    add("idx-gzip-magic-only.gz", t, "{file}, gzip", b"\x1f\x8b", "the gzip magic and nothing else", L2)


# ---------------------------------------------------------------- NPY / NPZ ------------------
def npy(descr, shape, data=b"", fortran=False, header=None, version=1):
    if header is None:
        s = "(%s)" % (", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""))
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", s)
    h = header.encode() if isinstance(header, str) else header
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * (pad % 64) + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H", len(h)) + h + data


def f32s(n, value=None):
    if value is not None:
        return struct.pack("<f", value) * n
    return b"".join(struct.pack("<f", (i % 255) / 255.0) for i in range(n))


def npz(members, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in members:
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.compress_type = compress
            z.writestr(zi, data)
    return buf.getvalue()


def npy_files():
    t = "npy"
    good = npy("<f4", (2, 1, 28, 28), f32s(2 * 784))
    add("npy-empty.npy", t, "{file}, npy", b"", "0 bytes")
    add("npy-bad-magic.npy", t, "{file}, npy", b"\x93NUMPZ" + good[6:], "magic \\x93NUMPZ")
    add("npy-bad-version.npy", t, "{file}, version", good[:6] + b"\x09\x00" + good[8:], "format version 9.0")
    add("npy-bad-header.npy", t, "{file}, header", npy("", (), header="{'descr': <f4, shape: (2,}"), "header dict is not a Python literal")
    add("npy-header-len-huge.npy", t, "{file}, header", b"\x93NUMPY\x01\x00\xff\xff{'descr'", "header length 65535, file 18 bytes")
    add("npy-missing-shape.npy", t, "{file}, shape", npy("", (), header="{'descr': '<f4', 'fortran_order': False, }"), "header without shape")
    add("npy-huge-shape.npy", t, "{file}, 1152921504606846976", npy("<f4", (1 << 60,), f32s(4)), "shape (2^60,) with 16 bytes of data")
    add("npy-shape-overflow.npy", t, "{file}, shape", npy("<f4", (1 << 40, 1 << 40), f32s(4)), "shape (2^40, 2^40): the product overflows 2^64")
    add("npy-negative-shape.npy", t, "{file}, shape", npy("<f4", (-2, 784), f32s(4)), "shape (-2, 784)")
    add("npy-zero-items.npy", t, "{file}, no item", npy("<f4", (0, 1, 28, 28)), "0 items of 1x28x28")
    add("npy-scalar.npy", t, "{file}, scalar", npy("<f4", (), f32s(1)), "a 0-d array")
    add("npy-fortran.npy", t, "{file}, Fortran", npy("<f4", (2, 1, 28, 28), f32s(2 * 784), fortran=True), "fortran_order True")
    add("npy-string-dtype.npy", t, "{file}, dtype", npy("<U10", (2, 1), b"\0" * 80), "dtype <U10 (strings)")
    add("npy-object-dtype.npy", t, "{file}, dtype", npy("|O", (2,), b"\0" * 16), "dtype |O (pickled objects)")
    add("npy-complex-dtype.npy", t, "{file}, dtype", npy("<c8", (2, 1, 28, 28), b"\0" * (2 * 784 * 8)), "dtype <c8")
    add("npy-structured-dtype.npy", t, "{file}, structured", npy("", (), header="{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }", data=b"\0" * 16), "a structured dtype")
    add("npy-truncated-data.npy", t, "{file}, truncated", good[:-100], "data 100 bytes short")
    add("npy-trailing-data.npy", t, "{file}", good + b"\0" * 4096, "4096 bytes after the declared data")
    add("npy-nan.npy", t, "{file}, NaN", npy("<f4", (2, 1, 28, 28), f32s(2 * 784, float("nan"))), "NaN values")
    add("npy-wrong-item-shape.npy", t, "{file}, shape, mlp", npy("<f4", (2, 5), f32s(10)), "items of 5 values, the mlp takes 1x28x28")

    t = "npz"
    add("npz-not-zip.npz", t, "{file}, zip", b"PK\x03\x04" + garbage(600), "zip signature, then garbage")
    add("npz-empty-zip.npz", t, "{file}, no array", npz([]), "an empty archive")
    add("npz-missing-array.npz", t, "{file}, no array, x", npz([("y.npy", good)]), "holds y, the suite asks for x")
    add("npz-member-not-npy.npz", t, "{file}, npy", npz([("x.npy", b"hello, not an array\n")]), "x.npy is text")
    member_corrupt = bytearray(npz([("x.npy", good)], zipfile.ZIP_DEFLATED))
    lh = member_corrupt.find(b"PK\x03\x04")
    start = lh + 30 + len("x.npy")
    for i in range(start + 10, start + 60):
        member_corrupt[i] ^= 0x5A
    add("npz-member-corrupt.npz", t, "{file}, x", bytes(member_corrupt), "x.npy's deflate stream corrupted")
    truncated = npz([("x.npy", good)])
    add("npz-truncated.npz", t, "{file}, zip", truncated[: len(truncated) // 2], "an archive cut in half (no central directory)")
    add("npz-member-huge-shape.npz", t, "{file}, overflow", npz([("x.npy", npy("<f4", (1 << 60, 1, 28, 28), f32s(4)))]), "x.npy declares 2^60 items")
    add("npz-path-traversal.npz", t, "{file}, x", npz([("../../x.npy", good)]), "the only member is ../../x.npy")


# ---------------------------------------------------------------- labels --------------------
def label_files():
    t = "labels"
    add("labels-empty.csv", t, "{file}, empty", b"", "0 bytes")
    add("labels-negative.csv", t, "{file}, -1", b"index,label\n" + b"".join(b"%d,%d\n" % (i, -1 if i == 3 else 1) for i in range(1000)), "label -1 on line 5")
    add("labels-not-number.csv", t, "{file}, cat", b"index,label\n0,cat\n" + b"".join(b"%d,1\n" % i for i in range(1, 1000)), "label 'cat'")
    add("labels-count-mismatch.csv", t, "{file}, 1000, 3", b"index,label\n0,1\n1,2\n2,3\n", "3 labels for 1000 items")
    add("labels-binary.csv", t, "{file}, UTF-8", b"\xff\xfe\x00\x01" + garbage(300), "binary bytes, not UTF-8")
    add("labels-out-of-range.csv", t, "{file}, label 99, mlp", b"index,label\n" + b"".join(b"%d,%d\n" % (i, 99 if i == 7 else i % 10) for i in range(1000)), "label 99, the mlp has 10 classes")
    add("labels-huge.csv", t, "{file}, 99999999999", b"index,label\n" + b"".join(b"%d,%s\n" % (i, b"99999999999" if i == 0 else b"1") for i in range(1000)), "label 99999999999 (over u32)")
    add("labels-short-row.csv", t, "{file}, line", b"a,b,label\n" + b"".join(b"%d,0,%d\n" % (i, i % 10) for i in range(998)) + b"5\n7,7,7\n", "a row with fewer columns than the header")
    add("labels-float.npy", t, "{file}, 0.5", npy("<f4", (1000,), f32s(1000, 0.5)), "float labels 0.5")
    add("labels-2d.npy", t, "{file}, 1-D", npy("<i8", (1000, 2), b"\0" * 16000), "labels of shape (1000, 2)")
    add("labels-negative.npy", t, "{file}, -3", npy("<i4", (1000,), struct.pack("<i", -3) * 1000), "integer labels -3")


# ---------------------------------------------------------------- images --------------------
def chunk(kind, data, crc_ok=True):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    if not crc_ok:
        crc ^= 0xFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(w, h, color=0, depth=8, raw=None, crc_ok=True, idat=None):
    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    if idat is None:
        ch = {0: 1, 2: 3}[color]
        raw = raw if raw is not None else b"".join(b"\0" + bytes(((x + y) * 9) % 256 for x in range(w * ch)) for y in range(h))
        idat = zlib.compress(raw, 9)
    return sig + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat, crc_ok) + chunk(b"IEND", b"")


def jpeg_sof(w, h):
    soi = b"\xff\xd8"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return soi + sof + b"\xff\xd9"


def image_files():
    t = "image"
    good = png(28, 28)
    add("img-corrupt.png", t, "{file}, PNG", good[:16] + garbage(300), "PNG signature, then garbage")
    add("img-truncated.png", t, "{file}, PNG", good[: len(good) // 2], "a valid PNG cut in half")
    add("img-zero-size.png", t, "{file}, dimensions", png(0, 0, idat=zlib.compress(b"")), "IHDR declares 0x0")
    add("img-huge-dims.png", t, "{file}, limit", png(100000, 100000, idat=zlib.compress(b"\0" * 1000)), "IHDR declares 100000x100000, 1 KB of pixels")
    add("img-wide.png", t, "{file}, limit", png(0x7FFFFFFF, 1, idat=zlib.compress(b"\0" * 100)), "IHDR declares 2^31-1 x 1")
    add("img-bad-crc.png", t, "{file}, CRC", png(28, 28, crc_ok=False), "IDAT with a wrong CRC")
    add("img-bad-depth.png", t, "{file}, PNG", png(28, 28, depth=7, idat=zlib.compress(b"\0" * 100)), "bit depth 7")
    add("img-not-image.png", t, "{file}, PNG", b"just some text in a .png file\n", "text")
    add("img-corrupt.jpg", t, "{file}, JPEG", b"\xff\xd8\xff\xe0" + garbage(500), "JPEG SOI, then garbage")
    add("img-huge-dims.jpg", t, "{file}, JPEG", jpeg_sof(65500, 65500), "SOF declares 65500x65500, no scan")
    add("img-zero-size.jpg", t, "{file}, zero", jpeg_sof(0, 0), "SOF declares 0x0")
    add("img-svg.png", t, "{file}, PNG", b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"/>', "an SVG named .png")

    t = "image-labels"
    add("imglabels-missing-file.csv", t, "{file}, b.png", b"file,label\na.png,1\n", "no label for b.png")
    add("imglabels-no-label-column.csv", t, "{file}, label", b"file,cls\na.png,1\nb.png,2\n", "a file column but no label column")
    add("imglabels-bad-value.csv", t, "{file}, seven", b"file,label\na.png,1\nb.png,seven\n", "label 'seven'")
    add("imglabels-out-of-range.csv", t, "label 4000000000, mlp", b"file,label\na.png,1\nb.png,4000000000\n", "label 4e9, the mlp has 10 classes")
    add("imglabels-traversal.csv", t, "{file}, b.png", b"file,label\n../../etc/passwd,1\na.png,1\n", "a row naming ../../etc/passwd, none for b.png")


# ---------------------------------------------------------------- text ----------------------
def text_files():
    t = "text"
    add("text-empty.txt", t, "{file}, no text", b"", "0 bytes")
    add("text-blank-lines.txt", t, "{file}, no text", b"\n   \n\t\n\n", "whitespace only")
    add("text-binary.txt", t, "{file}, UTF-8", garbage(4000), "random bytes")
    add("text-invalid-utf8.txt", t, "{file}, UTF-8", b"the cat sat on the mat\nthe dog \xc3\x28 ran\n", "one invalid UTF-8 sequence on line 2")
    add("text-nul-bytes.txt", t, "{file}", b"\0" * 3000, "3000 NUL bytes")
    add("text-utf16.txt", t, "{file}, UTF-8", "\ufeffthe cat sat on the mat\n".encode("utf-16-le"), "UTF-16 with a BOM")
    t = "gguf-text"
    add("lmtext-too-short.txt", t, "{file}, seq_len", b"hello\n", "fewer tokens than one window of 128")


def valid_files():
    write(VALID, "images/a.png", png(28, 28))
    write(VALID, "images/b.png", png(28, 28, raw=b"".join(b"\0" + bytes(((x * y) * 5) % 256 for x in range(28)) for y in range(28))))
    write(VALID, "raw/a.bin", bytes(range(256)) * 3)
    write(VALID, "raw/b.bin", b"\x07" * 784)
    write(VALID, "idx2-images.idx", idx_images(2, 28, 28))
    write(VALID, "idx2-labels.idx", idx_labels([3, 7]))
    write(VALID, "mlp2.onnx", VALID_ONNX)
    flat = mlp_graph(nodes=[node("MatMul", ["images", "W"], ["logits"], "fc")], inputs=[value_info("images", ["N", 784])])
    write(VALID, "mlp784.onnx", model(flat))
    write(VALID, "x2.npy", npy("<f4", (2, 1, 28, 28), f32s(2 * 784)))
    write(VALID, "images-labels.csv", b"file,label\na.png,1\nb.png,2\n")


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def main():
    if os.path.isdir(FILES):
        for f in os.listdir(FILES):
            os.remove(os.path.join(FILES, f))
    valid_files()
    onnx_files()
    gguf_files()
    st_files()
    config_files()
    idx_files()
    npy_files()
    label_files()
    image_files()
    text_files()
    lines = [
        "# The malformed-file corpus: one [[file]] per file of this folder (written by",
        "# ../make_files.py). template: the suite tests/malformed.rs writes around it; companion: the",
        "# file filling the template's other slot (relative to this folder); expect: words the error",
        "# must contain, case-insensitive ({file} is the file's name); note: what is wrong with it.",
        "",
    ]
    for name, template, expect, note, companion in ENTRIES:
        lines.append("[[file]]")
        lines.append("path = %s" % toml_str(name))
        lines.append("template = %s" % toml_str(template))
        if companion:
            lines.append("companion = %s" % toml_str(companion))
        lines.append("expect = [%s]" % ", ".join(toml_str(w.strip()) for w in expect.split(",")))
        lines.append("note = %s" % toml_str(note))
        lines.append("")
    write(FILES, "MANIFEST.toml", "\n".join(lines).encode())
    total = sum(os.path.getsize(os.path.join(FILES, f)) for f in os.listdir(FILES))
    print("%d files, %d bytes in %s" % (len(ENTRIES), total, FILES))


if __name__ == "__main__":
    main()
