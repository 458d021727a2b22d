"""Top-1 of a run's exported ONNX artifacts under onnxruntime: an independent engine's view
of the same quantized graphs (QDQ weights, int4 unpacking, DynamicQuantizeLinear,
QuantizeLinear + MatMulInteger / ConvInteger).

Not part of `cargo test` (it needs `pip install onnxruntime numpy`); run it by hand:

    python3 tests/reference/ort_top1.py reports/schemes/<run id> [calibration items]

and compare with the run's report.md (static and weight-only rows match to the image; dynamic
rows depend on the batch, since the activation scale comes from each batch).
"""
import glob
import gzip
import sys

import numpy as np
import onnxruntime as ort

run = sys.argv[1].rstrip("/")
skip = int(sys.argv[2]) if len(sys.argv) > 2 else 0
data = "suites/data/fashion-mnist/"
images = np.frombuffer(gzip.open(data + "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8)
images = images.reshape(-1, 1, 28, 28).astype(np.float32)[skip:] / 255
labels = np.frombuffer(gzip.open(data + "t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)[skip:]
for path in sorted(glob.glob(run + "/artifacts/*.onnx")):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [session.run(None, {"input": images[i : i + 500]})[0] for i in range(0, len(images), 500)]
    )
    print(f"{path.split('/')[-1]:40s} onnxruntime {ort.__version__} top-1 {100 * (logits.argmax(1) == labels).mean():.2f}%")
