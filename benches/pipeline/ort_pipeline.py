"""The job qbench replaces, as a user would script it with onnxruntime from PyPI.

For each exported zoo model: quantize it with onnxruntime's own quantizer (static QDQ W8A8 with
MinMax and with Entropy calibration on 512 images, and dynamic), then, for the f32 model and each
variant, evaluate top-1 accuracy on the other test images and time 200 batch-1 runs after 20
warm-up runs. One thread everywhere (`intra_op_num_threads = 1`), as qbench's suite.

    python ort_pipeline.py WORK_DIR IMAGES.gz LABELS.gz MODEL.onnx [MODEL.onnx ...]

Prints one JSON object per (model, variant) and a last line with the wall time.
"""

import gzip
import json
import os
import sys
import time

START = time.perf_counter()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

CALIBRATION_ITEMS = 512
EVAL_BATCH = 500
WARMUP = 20
SAMPLES = 200


def load_idx(images_path, labels_path):
    with gzip.open(images_path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(raw, np.uint8, n * rows * cols, 16).reshape(n, 1, rows, cols)
    with gzip.open(labels_path, "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, n, 8)
    return images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64)


class Images(CalibrationDataReader):
    def __init__(self, name, shape, images):
        self.name, self.shape, self.images, self.at = name, shape, images, 0

    def get_next(self):
        if self.at >= len(self.images):
            return None
        batch = self.images[self.at : self.at + 64]
        self.at += len(batch)
        return {self.name: batch.reshape((len(batch),) + self.shape)}

    def rewind(self):
        self.at = 0


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main():
    work, images_path, labels_path, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    os.makedirs(work, exist_ok=True)
    images, labels = load_idx(images_path, labels_path)
    calibration, test, test_labels = images[:CALIBRATION_ITEMS], images[CALIBRATION_ITEMS:], labels[CALIBRATION_ITEMS:]
    for model in models:
        stem = os.path.splitext(os.path.basename(model))[0]
        probe = session(model).get_inputs()[0]
        shape = tuple(probe.shape[1:])
        variants = [("f32", model)]
        for method, name in [(CalibrationMethod.MinMax, "static-minmax"), (CalibrationMethod.Entropy, "static-entropy")]:
            out = os.path.join(work, f"{stem}-{name}.onnx")
            quantize_static(
                model,
                out,
                Images(probe.name, shape, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
            )
            variants.append((name, out))
        out = os.path.join(work, f"{stem}-dynamic.onnx")
        quantize_dynamic(model, out, per_channel=True, weight_type=QuantType.QInt8)
        variants.append(("dynamic", out))
        for name, path in variants:
            s = session(path)
            correct = 0
            for at in range(0, len(test), EVAL_BATCH):
                batch = test[at : at + EVAL_BATCH].reshape((-1,) + shape)
                logits = s.run(None, {probe.name: batch})[0]
                correct += int((logits.argmax(axis=1) == test_labels[at : at + EVAL_BATCH]).sum())
            one = {probe.name: test[:1].reshape((1,) + shape)}
            for _ in range(WARMUP):
                s.run(None, one)
            times = []
            for _ in range(SAMPLES):
                t = time.perf_counter_ns()
                s.run(None, one)
                times.append(time.perf_counter_ns() - t)
            print(
                json.dumps(
                    {
                        "model": stem,
                        "variant": name,
                        "top1_pct": 100.0 * correct / len(test),
                        "items": len(test),
                        "median_us": float(np.median(times)) / 1e3,
                    }
                ),
                flush=True,
            )
    print(json.dumps({"wall_s": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
