#!/usr/bin/env python3
"""Writes tests/malformed/suites/*.toml: malformed suites, each wrong in one way.

Every file starts with `# expect: w1, w2, ...`: words (case-insensitive) that `qbench validate`'s
error must contain; `{suite}` stands for the suite's own file name. Paths resolve relative to the
suite file, so shipped assets are ../../../suites/... and the corpus's valid helpers ../valid/...
Run from anywhere: python3 tests/malformed/make_suites.py (rewrites the folder).
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "suites")

HEAD = '''name = "malformed"
schemes = ["f32"]
backends = ["tract-cpu"]
batch_sizes = [1]
'''
MEASURE = '''
[measure]
warmup_iters = 1
min_samples = 5
max_samples = 10
max_time_ms = 50
'''
NPZ = '''
[[datasets]]
name = "fm1k"
format = "npy"
inputs = "../../../suites/data/fashion-mnist-1k.npz"
array = "x"
labels = "../../../suites/data/fashion-mnist-1k-labels.csv"
'''
MLP = '''
[[models]]
name = "mlp"
zoo = "mlp"
weights = "../../../suites/models/mlp.safetensors"
'''
ONNX = '''
[[models]]
name = "tf"
path = "../../../suites/models/cnn-tf-style.onnx"
[[models.inputs]]
name = "images"
shape = ["batch", 1, 28, 28]
'''
TEXT = '''
[[datasets]]
name = "sentences"
format = "text"
inputs = "../../../suites/data/sentences.txt"
tokenizer = "../../../suites/models/bert-tiny/tokenizer.json"
seq_len = 16
'''
BERT = '''
[[models]]
name = "bert"
path = "../../../suites/models/bert-tiny/model.safetensors"
'''
IMAGES = '''
[[datasets]]
name = "pngs"
format = "images"
inputs = "../valid/images"
[datasets.image]
channels = 1
resize = [28, 28]
'''
RAW = '''
[[datasets]]
name = "bytes"
format = "raw"
inputs = "../valid/raw"
length = 784
'''
IDX = '''
[[datasets]]
name = "fm"
format = "idx"
images = "../valid/idx2-images.idx"
labels = "../valid/idx2-labels.idx"
'''


def suite(head=HEAD, measure=MEASURE, datasets=NPZ, models=MLP, extra=""):
    return head + measure + datasets + models + extra


def sub(text, old, new):
    assert old in text, (old, text)
    return text.replace(old, new, 1)


BASE = suite()
S = []  # (file name, expected words, text or bytes)


def add(name, expect, text):
    S.append((name, expect, text))


# ---- top level keys -------------------------------------------------------------------------
add("top-unknown-key", "unknown key, batch_size", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1]\nbatch_size = 1"))
add("top-missing-name", "missing, name", sub(BASE, 'name = "malformed"\n', ""))
add("top-missing-models", "missing, models", suite(models=""))
add("top-missing-datasets", "missing, datasets", suite(datasets=""))
add("name-empty", "suite name", sub(BASE, 'name = "malformed"', 'name = ""'))
add("name-dotdot", "suite name, ..", sub(BASE, 'name = "malformed"', 'name = ".."'))
add("name-dot", "suite name", sub(BASE, 'name = "malformed"', 'name = "."'))
add("name-slash", "suite name, a/b", sub(BASE, 'name = "malformed"', 'name = "a/b"'))
add("name-absolute", "suite name, /tmp/x", sub(BASE, 'name = "malformed"', 'name = "/tmp/x"'))
add("name-control-chars", "suite name", sub(BASE, 'name = "malformed"', 'name = "a\\u0007b\\u001b[31m"'))
add("name-10kb", "suite name, at most", sub(BASE, 'name = "malformed"', 'name = "%s"' % ("n" * 10240)))
add("name-unicode", "suite name", sub(BASE, 'name = "malformed"', 'name = "名前-ünïcødé"'))
add("name-wrong-type", "name, string", sub(BASE, 'name = "malformed"', "name = 5"))
add("description-wrong-type", "description, string", sub(BASE, 'batch_sizes = [1]', 'batch_sizes = [1]\ndescription = [1, 2]'))
add("schemes-empty", "scheme list is empty", sub(BASE, 'schemes = ["f32"]', "schemes = []"))
add("schemes-unknown", "unknown scheme, int3", sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "int3-magic"]'))
add("schemes-duplicate", "listed twice, f32", sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "f32"]'))
add("schemes-wrong-type", "schemes, sequence", sub(BASE, 'schemes = ["f32"]', 'schemes = "f32"'))
add("schemes-int4-group-zero", "int4-g0-sym", sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "int4-g0-sym"]'))
add("schemes-int4-group-huge", "int4-g18446744073709551616-sym", sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "int4-g18446744073709551616-sym"]'))
add("schemes-int4-group-not-dividing", "int4-g6-sym, divide", sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "int4-g6-sym"]'))
add("backends-empty", "backend list is empty", sub(BASE, 'backends = ["tract-cpu"]', "backends = []"))
add("backends-unknown", "unknown backend, onnxruntime", sub(BASE, 'backends = ["tract-cpu"]', 'backends = ["onnxruntime"]'))
add("backends-duplicate", "listed twice, tract-cpu", sub(BASE, 'backends = ["tract-cpu"]', 'backends = ["tract-cpu", "tract-cpu"]'))
add("backends-wrong-type", "backends, sequence", sub(BASE, 'backends = ["tract-cpu"]', 'backends = { cpu = true }'))
add("batch-sizes-empty", "batch_sizes is empty", sub(BASE, "batch_sizes = [1]", "batch_sizes = []"))
add("batch-sizes-zero", "batch size 0, out of range", sub(BASE, "batch_sizes = [1]", "batch_sizes = [0]"))
add("batch-sizes-negative", "batch size -4, out of range", sub(BASE, "batch_sizes = [1]", "batch_sizes = [-4]"))
add("batch-sizes-huge", "batch size 1000000000000, out of range", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1000000000000]"))
add("batch-sizes-i64-overflow", "batch_sizes", sub(BASE, "batch_sizes = [1]", "batch_sizes = [99999999999999999999]"))
add("batch-sizes-duplicate", "listed twice", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1, 1]"))
add("batch-sizes-float", "batch_sizes", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1.5]"))
add("device-not-cuda", "device, gpu0, cuda:0", sub(BASE, "batch_sizes = [1]", 'batch_sizes = [1]\ndevice = "gpu0"'))
add("device-huge-ordinal", "device, cuda:", sub(BASE, "batch_sizes = [1]", 'batch_sizes = [1]\ndevice = "cuda:99999999999999999999999"'))
add("require-native-wrong-type", "require_native, bool", sub(BASE, "batch_sizes = [1]", 'batch_sizes = [1]\nrequire_native = "yes"'))

# ---- [measure] ------------------------------------------------------------------------------
add("measure-unknown-key", "unknown key, warmup_iter", sub(BASE, "warmup_iters = 1", "warmup_iter = 1"))
add("measure-wrong-type", "measure", sub(BASE, MEASURE, "\nmeasure = 5\n"))
add("measure-warmup-negative", "warmup_iters, out of range", sub(BASE, "warmup_iters = 1", "warmup_iters = -1"))
add("measure-warmup-ms-huge", "warmup_ms, out of range", sub(BASE, "warmup_iters = 1", "warmup_iters = 1\nwarmup_ms = 9223372036854775807"))
add("measure-min-gt-max", "min_samples, max_samples", sub(BASE, "min_samples = 5", "min_samples = 50"))
add("measure-max-samples-huge", "max_samples, out of range", sub(BASE, "max_samples = 10", "max_samples = 1000000000000"))
add("measure-max-time-zero", "max_time_ms, out of range", sub(BASE, "max_time_ms = 50", "max_time_ms = 0"))
add("measure-threads-zero", "threads, out of range", sub(BASE, "max_time_ms = 50", "max_time_ms = 50\nthreads = 0"))
add("measure-threads-huge", "threads, out of range", sub(BASE, "max_time_ms = 50", "max_time_ms = 50\nthreads = 100000"))
add("measure-target-ci-negative", "target_ci_pct, out of range", sub(BASE, "max_time_ms = 50", "max_time_ms = 50\ntarget_ci_pct = -1.0"))
add("measure-target-ci-nan", "target_ci_pct", sub(BASE, "max_time_ms = 50", "max_time_ms = 50\ntarget_ci_pct = nan"))
add("measure-paired-wrong-type", "paired, bool", sub(BASE, "max_time_ms = 50", "max_time_ms = 50\npaired = 1"))

# ---- [output] -------------------------------------------------------------------------------
add("output-unknown-key", "unknown key, directory", BASE + '\n[output]\ndirectory = "out"\n')
add("output-dir-wrong-type", "dir, string", BASE + "\n[output]\ndir = 5\n")
add("output-dir-nul", "output, dir", BASE + '\n[output]\ndir = "out\\u0000put"\n')

# ---- [[datasets]] ---------------------------------------------------------------------------
add("datasets-empty", "no dataset", suite(head=HEAD + "datasets = []\n", datasets=""))
add("dataset-unknown-key", "unknown key, image_path", sub(BASE, 'array = "x"', 'array = "x"\nimage_path = "x"'))
add("dataset-format-unknown", "unknown dataset format, parquet", sub(BASE, 'format = "npy"', 'format = "parquet"'))
add("dataset-duplicate-name", "defined twice, fm1k", suite(datasets=NPZ + NPZ))
add("dataset-missing-file", "does not exist, nothing.npz", sub(BASE, "../../../suites/data/fashion-mnist-1k.npz", "../../../suites/data/nothing.npz"))
add("dataset-directory-as-file", "not a file, inputs", sub(BASE, "../../../suites/data/fashion-mnist-1k.npz", "../../../suites/data"))
add("dataset-absolute-missing", "does not exist, /nonexistent/fashion.npz", sub(BASE, "../../../suites/data/fashion-mnist-1k.npz", "/nonexistent/fashion.npz"))
add("dataset-dev-zero", "/dev/zero, a device, not a regular file", sub(BASE, "../../../suites/data/fashion-mnist-1k.npz", "/dev/zero"))
add("dataset-control-chars-path", "inputs, does not exist", sub(BASE, "../../../suites/data/fashion-mnist-1k.npz", "data\\u0001\\u001b[2J.npz"))
add("dataset-unicode-path", "does not exist, データ.npz", sub(BASE, "../../../suites/data/fashion-mnist-1k.npz", "データ.npz"))
add("dataset-idx-no-labels", "needs labels", sub(suite(datasets=IDX), 'labels = "../valid/idx2-labels.idx"\n', ""))
add("dataset-idx-with-array", "array does not apply", sub(suite(datasets=IDX), 'format = "idx"', 'format = "idx"\narray = "x"'))
add("dataset-npy-array-and-arrays", "array and arrays", sub(BASE, 'array = "x"', 'array = "x"\narrays = ["x"]'))
add("dataset-arrays-empty", "arrays is empty", sub(BASE, 'array = "x"', "arrays = []"))
add("dataset-npz-array-unknown", "no array, nope", sub(BASE, 'array = "x"', 'array = "nope"'))
add("dataset-label-column-unknown", "no column, nope", sub(BASE, 'array = "x"', 'array = "x"\nlabel_column = "nope"'))
add("dataset-label-column-without-labels", "label_column", sub(BASE, 'labels = "../../../suites/data/fashion-mnist-1k-labels.csv"', 'label_column = "label"'))
add("dataset-text-seq-len-zero", "seq_len, out of range", suite(datasets=sub(TEXT, "seq_len = 16", "seq_len = 0"), models=BERT))
add("dataset-text-seq-len-huge", "seq_len, out of range", suite(datasets=sub(TEXT, "seq_len = 16", "seq_len = 4294967296"), models=BERT))
add("dataset-text-seq-len-over-model", "seq_len, 64, 32", suite(datasets=sub(TEXT, "seq_len = 16", "seq_len = 64"), models=BERT))
add("dataset-text-no-tokenizer", "needs tokenizer", suite(datasets=sub(TEXT, 'tokenizer = "../../../suites/models/bert-tiny/tokenizer.json"\n', ""), models=BERT))
add("dataset-text-tokenizer-is-model", "tokenizer, model.safetensors", suite(datasets=sub(TEXT, "bert-tiny/tokenizer.json", "bert-tiny/model.safetensors"), models=BERT))
add("dataset-windows-not-text", "windows does not apply", sub(BASE, 'array = "x"', 'array = "x"\nwindows = true'))
add("dataset-raw-length-zero", "length, out of range", suite(datasets=sub(RAW, "length = 784", "length = 0")))
add("dataset-raw-no-length", "needs length", suite(datasets=sub(RAW, "length = 784\n", "")))
add("dataset-raw-length-huge", "length, out of range", suite(datasets=sub(RAW, "length = 784", "length = 9223372036854775807")))
add("dataset-images-not-folder", "not a folder", suite(datasets=sub(IMAGES, 'inputs = "../valid/images"', 'inputs = "../valid/idx2-images.idx"')))
add("dataset-length-on-images", "length applies", suite(datasets=sub(IMAGES, 'inputs = "../valid/images"', 'inputs = "../valid/images"\nlength = 5')))
add("dataset-npy-labels-are-images", "labels, idx2-images.idx", sub(BASE, "../../../suites/data/fashion-mnist-1k-labels.csv", "../valid/idx2-images.idx"))

# ---- [datasets.image] -----------------------------------------------------------------------
add("image-resize-huge", "resize, pixels", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [100000, 100000]")))
add("image-resize-side-huge", "resize, pixels", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = 4000000000")))
add("image-resize-zero", "resize, pixels", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [0, 28]")))
add("image-resize-three-values", "resize, height, width", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28, 3]")))
add("image-resize-wrong-type", "resize", suite(datasets=sub(IMAGES, "resize = [28, 28]", 'resize = "28x28"')))
add("image-channels-two", "channels = 2", suite(datasets=sub(IMAGES, "channels = 1", "channels = 2")))
add("image-crop-negative", "crop, pixels", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28]\ncrop = [-1, 28]")))
add("image-crop-larger", "crop, 1000", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28]\ncrop = [1000, 1000]")))
add("image-mean-wrong-count", "mean has 3 values", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28]\nmean = [0.5, 0.5, 0.5]")))
add("image-std-zero", "std, non-zero", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28]\nstd = [0.0]")))
add("image-scale-nan", "scale", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28]\nscale = nan")))
add("image-mean-inf", "mean", suite(datasets=sub(IMAGES, "resize = [28, 28]", "resize = [28, 28]\nmean = [inf]")))
add("image-layout-unknown", "layout, chwn", suite(datasets=sub(IMAGES, "resize = [28, 28]", 'resize = [28, 28]\nlayout = "chwn"')))
add("image-unknown-key", "unknown key, interpolation", suite(datasets=sub(IMAGES, "resize = [28, 28]", 'resize = [28, 28]\ninterpolation = "bicubic"')))

# ---- [[models]] -----------------------------------------------------------------------------
add("models-empty", "no model", suite(head=HEAD + "models = []\n", models=""))
add("model-unknown-key", "unknown key, weight", sub(BASE, "weights = ", "weight = "))
add("model-duplicate-name", "defined twice, mlp", suite(models=MLP + MLP))
add("model-zoo-unknown", "unknown zoo model, resnet50", sub(BASE, 'zoo = "mlp"', 'zoo = "resnet50"'))
add("model-zoo-and-path", "both zoo and path", sub(BASE, 'zoo = "mlp"', 'zoo = "mlp"\npath = "../../../suites/models/cnn-tf-style.onnx"'))
add("model-neither-zoo-nor-path", "needs zoo", sub(BASE, 'zoo = "mlp"\nweights = "../../../suites/models/mlp.safetensors"\n', ""))
add("model-zoo-no-weights", "no weights", sub(BASE, 'weights = "../../../suites/models/mlp.safetensors"\n', ""))
add("model-weights-missing", "does not exist, ghost.safetensors", sub(BASE, "models/mlp.safetensors", "models/ghost.safetensors"))
add("model-weights-directory", "not a file, weights", sub(BASE, "../../../suites/models/mlp.safetensors", "../../../suites/models"))
add("model-weights-wrong-arch", "cnn, fc1", sub(BASE, "models/mlp.safetensors", "models/cnn.safetensors"))
add("model-weights-dev-zero", "/dev/zero, a device, not a regular file", sub(BASE, "../../../suites/models/mlp.safetensors", "/dev/zero"))
add("model-path-unknown-ext", "model file, .pt", suite(models='\n[[models]]\nname = "m"\npath = "../../../suites/models/model.pt"\n'))
add("model-path-no-ext", "model file", suite(models='\n[[models]]\nname = "m"\npath = "../../../suites/models"\n'))
# Inputs left out are read from the file; one it leaves in doubt (a state with the batch on
# axis 1, a scalar) gets the declaration to write.
add("model-onnx-no-inputs-state", "its open axis at 1, batch_axis = 1", suite(models='\n[[models]]\nname = "s"\npath = "../../reference/stateful.onnx"\n'))
add("model-onnx-outputs-unknown-kind", "unknown output kind, logit", suite(models=ONNX + '[[models.outputs]]\nkind = "logit"\n'))
add("model-onnx-outputs-alphabet-no-blank", "add ctc_blank", suite(models=ONNX + '[[models.outputs]]\nkind = "sequence"\nalphabet = "-ab"\n'))
add("model-onnx-outputs-threshold-on-classes", "threshold applies to kind", suite(models=ONNX + '[[models.outputs]]\nkind = "classes"\nthreshold = 0.5\n'))
add("model-onnx-outputs-two-unnamed", "each needs name", suite(models=ONNX + '[[models.outputs]]\nkind = "classes"\n[[models.outputs]]\nkind = "scores"\n'))
add("model-onnx-output-and-outputs", "both pick outputs", suite(models=sub(ONNX, 'cnn-tf-style.onnx"', 'cnn-tf-style.onnx"\noutput = "x"') + '[[models.outputs]]\nkind = "classes"\n'))
add("model-zoo-outputs", "outputs applies to ONNX files", sub(BASE, 'zoo = "mlp"', 'zoo = "mlp"\noutputs = [{ kind = "classes" }]'))
add("dataset-text-labels-missing", "text labels file", sub(BASE, 'format = "npy"', 'format = "npy"\ntext_labels = "ghost.txt"'))
add("model-onnx-inputs-empty", "inputs is empty", suite(models=sub(ONNX, '[[models.inputs]]\nname = "images"\nshape = ["batch", 1, 28, 28]\n', "inputs = []\n")))
add("model-input-shape-empty", "shape is empty", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', "shape = []")))
add("model-input-dim-negative", "dim -28, positive", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', 'shape = ["batch", 1, -28, 28]')))
add("model-input-dim-huge", "shape, 1099511627776", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', 'shape = ["batch", 1, 1099511627776, 1099511627776]')))
add("model-input-batch-zero", "batch, positive", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', "shape = [0, 1, 28, 28]")))
add("model-input-dtype-unknown", "unknown input dtype, complex64", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', 'shape = ["batch", 1, 28, 28]\ndtype = "complex64"')))
add("model-input-name-unknown", "no input, pixels", suite(models=sub(ONNX, 'name = "images"', 'name = "pixels"')))
add("model-input-duplicate", "declared twice", suite(models=ONNX + '[[models.inputs]]\nname = "images"\nshape = ["batch", 1, 28, 28]\n'))
add("model-input-unknown-key", "unknown key, layout", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', 'shape = ["batch", 1, 28, 28]\nlayout = "nchw"')))
add("model-dims-unbound-symbol", "symbol, H, not bound", suite(models=sub(ONNX, 'shape = ["batch", 1, 28, 28]', 'shape = ["batch", 1, "H", 28]')))
add("model-dims-unused", "dims.seq, no input shape uses it", suite(models=sub(ONNX, 'path = ', 'dims = { seq = 4 }\npath = ')))
add("model-dims-zero", "dims.H, out of range", suite(models=sub(sub(ONNX, 'path = ', 'dims = { H = 0 }\npath = '), 'shape = ["batch", 1, 28, 28]', 'shape = ["batch", 1, "H", 28]')))
add("model-output-unknown", "no output, nope", suite(models=sub(ONNX, 'path = ', 'output = "nope"\npath = ')))
add("model-dataset-unknown", "unknown dataset, nope", sub(BASE, 'zoo = "mlp"', 'zoo = "mlp"\ndataset = "nope"'))
add("model-needs-dataset", "must name its dataset", suite(datasets=NPZ + sub(NPZ, 'name = "fm1k"', 'name = "other"')))
add("model-config-on-onnx", "config applies to safetensors", suite(models=sub(ONNX, 'path = ', 'config = "../../../suites/models/bert-tiny/config.json"\npath = ')))
add("input-batch-axis-past-the-batch", "symbol \"batch\" at axis 0 is not bound, set batch_axis = 0", suite(models=ONNX + 'batch_axis = 1\n'))
add("input-batch-axis-out-of-range", "batch_axis = 7, not an axis of shape", suite(models=ONNX + 'value = 0.0\nbatch_axis = 7\n'))
add("input-value-nan", "value = NaN, not a finite number", suite(models=ONNX + 'value = nan\n'))
add("input-constant-unbound-symbol", "symbol \"batch\" at axis 0, set batch_axis = 0", suite(models=ONNX + 'value = 0.0\n'))
add("model-inputs-on-zoo", "inputs applies to model files", sub(BASE, 'zoo = "mlp"', 'zoo = "mlp"\ninputs = [{ name = "x", shape = ["N", 784] }]'))
add("model-gguf-with-inputs", "inputs, GGUF", suite(datasets=TEXT, models='\n[[models]]\nname = "lm"\npath = "../../../suites/models/tiny-llama/model-f16.gguf"\ninputs = [{ name = "ids", shape = ["N", 16] }]\n'))
add("model-names-collide", "a/b, a_b, file name", suite(models=sub(MLP, 'name = "mlp"', 'name = "a/b"') + sub(MLP, 'name = "mlp"', 'name = "a_b"')))
add("model-names-case-collide", "MLP, mlp", suite(models=MLP + sub(MLP, 'name = "mlp"', 'name = "MLP"')))
add("model-name-empty", "name, empty", sub(BASE, 'name = "mlp"', 'name = ""'))
add("model-bert-no-config", "no config.json beside it", suite(datasets=TEXT, models='\n[[models]]\nname = "bert"\npath = "../../../suites/models/mlp.safetensors"\n'))
add("model-bert-config-missing", "config file, does not exist", suite(datasets=TEXT, models=BERT + 'config = "../../../suites/models/bert-tiny/nope.json"\n'))
add("model-bert-on-images", "token", suite(models=BERT))

# ---- [calibration] --------------------------------------------------------------------------
STATIC = sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "int8-static-minmax"]')
add("calibration-items-zero", "calibration.items = 0", STATIC + "\n[calibration]\nitems = 0\n")
add("calibration-items-negative", "calibration.items = -5", STATIC + "\n[calibration]\nitems = -5\n")
add("calibration-items-huge", "calibration.items, 1000", STATIC + "\n[calibration]\nitems = 1000000000000\n")
add("calibration-items-all", "calibration.items = 1000, no image", STATIC + "\n[calibration]\nitems = 1000\n")
add("calibration-percentile-zero", "percentile, out of range", STATIC + "\n[calibration]\nitems = 100\npercentile = 0.0\n")
add("calibration-percentile-over-100", "percentile, out of range", STATIC + "\n[calibration]\nitems = 100\npercentile = 100.5\n")
add("calibration-percentile-nan", "percentile", STATIC + "\n[calibration]\nitems = 100\npercentile = nan\n")
add("calibration-unknown-key", "unknown key, samples", STATIC + "\n[calibration]\nitems = 100\nsamples = 5\n")
add("calibration-missing-items", "missing, items", STATIC + "\n[calibration]\npercentile = 99.9\n")
add("calibration-static-without-section", "calibration", STATIC)
add("calibration-select-unknown", "calibration.select, sorted, random, first, stratified", STATIC + "\n[calibration]\nitems = 100\nselect = \"sorted\"\n")
add("calibration-seed-negative", "calibration.seed = -1, negative", STATIC + "\n[calibration]\nitems = 100\nseed = -1\n")
add("calibration-seed-with-first", "seed has no effect, first", STATIC + "\n[calibration]\nitems = 100\nselect = \"first\"\nseed = 3\n")
add("calibration-stratified-no-labels", "stratified, needs labels, fm1k", sub(STATIC, 'labels = "../../../suites/data/fashion-mnist-1k-labels.csv"\n', '') + "\n[calibration]\nitems = 100\nselect = \"stratified\"\n")

# ---- [[overrides]] --------------------------------------------------------------------------
Q = sub(BASE, 'schemes = ["f32"]', 'schemes = ["f32", "int8-pc-sym"]')
add("override-unknown-layer", "matches no layer, fc9", Q + '\n[[overrides]]\nlayers = ["fc9"]\nscheme = "f32"\n')
add("override-unknown-model", "unknown model, resnet", Q + '\n[[overrides]]\nlayers = ["fc1"]\nmodels = ["resnet"]\nscheme = "f32"\n')
add("override-unknown-scheme", "unknown scheme, int2", Q + '\n[[overrides]]\nlayers = ["fc1"]\nscheme = "int2"\n')
add("override-layers-empty", "layers is empty", Q + '\n[[overrides]]\nlayers = []\nscheme = "f32"\n')
add("override-schemes-no-match", "matches none, q4k", Q + '\n[[overrides]]\nlayers = ["fc1"]\nschemes = ["q4k"]\nscheme = "f32"\n')
add("override-bad-glob", "not a valid glob", Q + '\n[[overrides]]\nlayers = ["fc[1"]\nscheme = "f32"\n')
add("override-unknown-key", "unknown key, layer", Q + '\n[[overrides]]\nlayer = ["fc1"]\nscheme = "f32"\n')
add("override-missing-scheme", "missing, scheme", Q + '\n[[overrides]]\nlayers = ["fc1"]\n')
add("override-int4-group-not-dividing", "fc1, 784, int4-g6-sym", Q + '\n[[overrides]]\nlayers = ["fc1"]\nscheme = "int4-g6-sym"\n')

# ---- [[gates]] ------------------------------------------------------------------------------
G = "\n[[gates]]\n"
add("gate-no-threshold", "no threshold", BASE + G + 'name = "g"\n')
add("gate-min-top1-over-one", "min_top1 = 1.5, fraction", BASE + G + "min_top1 = 1.5\n")
add("gate-min-top1-nan", "min_top1", BASE + G + "min_top1 = nan\n")
add("gate-negative-latency", "max_p99_ms = -5", BASE + G + "max_p99_ms = -5.0\n")
add("gate-max-kl-inf", "max_kl", BASE + G + "max_kl = inf\n")
add("gate-min-sqnr-nan", "min_sqnr_db", BASE + G + "min_sqnr_db = nan\n")
add("gate-max-size-negative", "max_size_bytes = -1", BASE + G + "max_size_bytes = -1\n")
add("gate-agreement-negative", "min_top1_agreement", BASE + G + "min_top1_agreement = -0.5\n")
add("gate-unknown-key", "unknown key, min_top5", BASE + G + "min_top5 = 0.9\n")
add("gate-scheme-no-match", "matches none, int8-*", BASE + G + 'schemes = ["int8-*"]\nmin_top1 = 0.5\n')
add("gate-model-no-match", "matches none, resnet", BASE + G + 'models = ["resnet"]\nmin_top1 = 0.5\n')
add("gate-backend-no-match", "matches none, candle-cpu", BASE + G + 'backends = ["candle-cpu"]\nmin_top1 = 0.5\n')
add("gate-delta-without-f32", "max_delta_top1_pts, f32", sub(BASE, 'schemes = ["f32"]', 'schemes = ["f16"]') + G + "max_delta_top1_pts = 1.0\n")
add("gate-perplexity-on-classifier", "max_perplexity_increase_pct, language model", BASE + G + "max_perplexity_increase_pct = 1.0\n")
add("gate-wrong-type", "min_top1", BASE + G + 'min_top1 = "high"\n')

# ---- TOML and encoding ----------------------------------------------------------------------
add("toml-syntax-error", "{suite}", BASE + "\n[measure\n")
add("toml-unterminated-string", "{suite}", sub(BASE, 'name = "malformed"', 'name = "malformed'))
add("toml-duplicate-key", "{suite}, duplicate", sub(BASE, 'name = "malformed"', 'name = "malformed"\nname = "again"'))
add("toml-table-redefined", "{suite}, duplicate", BASE + MEASURE)
add("toml-deep-nesting", "{suite}", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1]\ndescription = " + "[" * 10000 + "]" * 10000))
add("toml-deep-inline-tables", "{suite}", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1]\ndescription = " + "{a=" * 10000 + "1" + "}" * 10000))
add("toml-nul-byte", "{suite}", sub(BASE, "batch_sizes = [1]", "batch_sizes = [1]\x00"))
S.append(("invalid-utf8", "{suite}, UTF-8", (BASE + "\ndescription = \"").encode() + b"\xff\xfe\xc3\x28" + b"\"\n"))
S.append(("utf16", "{suite}, UTF-8", "\ufeff".encode("utf-16-le") + BASE.encode("utf-16-le")))
S.append(("empty", None, b""))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".toml"):
            os.remove(os.path.join(OUT, f))
    names = set()
    for name, expect, text in S:
        assert name not in names, name
        names.add(name)
        path = os.path.join(OUT, name + ".toml")
        if isinstance(text, str):
            data = ("# expect: %s\n" % expect + text).encode()
        elif expect is None:
            data = text  # no room for a comment: the expectation is in MANIFEST.toml
        elif name == "utf16":
            data = text  # the expectation is in MANIFEST.toml: a UTF-16 comment is unreadable
        else:
            data = ("# expect: %s\n" % expect).encode() + text
        with open(path, "wb") as f:
            f.write(data)
    # Files that cannot carry a readable `# expect:` line have theirs here.
    lines = ["# Expected words for the suites in suites/ that cannot carry a readable `# expect:` line", "# (written by make_suites.py).", ""]
    for name, expect, text in S:
        if expect is None or name == "utf16":
            words = expect or "{suite}, empty"
            lines.append("%s = [%s]" % (json.dumps(name + ".toml"), ", ".join(json.dumps(w.strip()) for w in words.split(","))))
    with open(os.path.join(HERE, "suites-expect.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%d suites in %s" % (len(S), OUT))


if __name__ == "__main__":
    main()
