"""qbench against the Python pipeline it replaces, side by side on the same machine.

The pipeline (ort_pipeline.py): onnxruntime's quantizer (static QDQ W8A8 with MinMax and Entropy
calibration on 512 images, dynamic), evaluation of the other 9,488 Fashion-MNIST test images, and
200 batch-1 latency samples after 20 warm-up runs per variant, for the zoo MLP and CNN exported
to ONNX. qbench's equivalent suite (written below) does the same work on the same .onnx files,
on ort-cpu so both sides use the same engine (ONNX Runtime 1.32.0), one thread per session.
Paired f32 rounds are off (the pipeline has none); qbench still writes every report.

Runs are interleaved (the order alternates each pair) and timed from process start to exit.
Prints each pair, then the median qbench / pipeline wall-time ratio with its min-max, the load
average, and each side's top-1 per variant.

    . scripts/ort-env.sh
    cargo build --release --features ort
    python3 benches/pipeline/run.py [--pairs 5] [--qbench target/release/qbench]

The pipeline's Python needs onnxruntime, onnx and numpy; without them (in the Python running this
script) a virtual environment with the pinned versions is made in ~/.cache/qbench/pipeline-venv.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "suites", "data", "fashion-mnist")
IMAGES = os.path.join(DATA, "t10k-images-idx3-ubyte.gz")
LABELS = os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")
PINNED = ["onnxruntime==1.32.0", "onnx==1.19.1", "numpy"]

SUITE = """name = "pipeline"
description = "onnxruntime's quantizer pipeline's work: f32, static minmax and entropy, dynamic on ort-cpu"
schemes = ["f32", "int8-static-minmax", "int8-static-entropy", "int8-dynamic"]
backends = ["ort-cpu"]
batch_sizes = [1]

[measure]
warmup_iters = 20
min_samples = 200
max_samples = 200
target_ci_pct = 0.0
threads = 1
paired = false

[calibration]
items = 512
select = "first"

[[datasets]]
name = "fashion-mnist-test"
format = "idx"
images = "{images}"
labels = "{labels}"
{models}"""

MODEL = """
[[models]]
name = "{name}"
path = "{path}"
[[models.inputs]]
name = "input"
shape = ["batch", 1, 28, 28]
dtype = "f32"
"""


def python_with_onnxruntime():
    probe = "import onnxruntime, onnx, numpy; print(onnxruntime.__version__)"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip() == "1.32.0":
        return sys.executable
    venv = os.path.expanduser("~/.cache/qbench/pipeline-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"== making {venv} with {' '.join(PINNED)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *PINNED], check=True)
    return python


def timed(command, **kwargs):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--qbench", default=os.path.join(ROOT, "target", "release", "qbench"))
    parser.add_argument("--work", default=os.path.join(ROOT, "target", "pipeline-bench"))
    args = parser.parse_args()
    if not os.environ.get("ORT_DYLIB_PATH"):
        sys.exit("ORT_DYLIB_PATH is not set: run `. scripts/ort-env.sh` first")
    python = python_with_onnxruntime()
    os.makedirs(args.work, exist_ok=True)
    models = []
    for name in ["mlp", "cnn"]:
        path = os.path.join(args.work, f"{name}.onnx")
        weights = os.path.join(ROOT, "suites", "models", f"{name}.safetensors")
        timed([args.qbench, "export", "--zoo", name, "--weights", weights, "-o", path])
        models.append((name, path))
    suite = os.path.join(args.work, "pipeline.toml")
    with open(suite, "w") as f:
        body = "".join(MODEL.format(name=n, path=p) for n, p in models)
        f.write(SUITE.format(images=IMAGES, labels=LABELS, models=body))
    pipeline = [python, os.path.join(HERE, "ort_pipeline.py"), os.path.join(args.work, "ort"), IMAGES, LABELS]
    pipeline += [p for _, p in models]
    qbench = [args.qbench, "run", suite, "--out", os.path.join(args.work, "runs"), "--quiet"]

    load_before = os.getloadavg()
    pairs = []
    for i in range(args.pairs):
        sides = [("pipeline", pipeline), ("qbench", qbench)]
        if i % 2:
            sides.reverse()
        walls = {}
        for side, command in sides:
            walls[side], out = timed(command)
            if side == "pipeline":
                py_rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"model"')]
        ratio = walls["qbench"] / walls["pipeline"]
        pairs.append(ratio)
        print(f"pair {i + 1}: pipeline {walls['pipeline']:.2f} s, qbench {walls['qbench']:.2f} s, ratio {ratio:.3f}")
    load_after = os.getloadavg()

    runs = os.path.join(args.work, "runs", "pipeline")
    latest = sorted(os.listdir(runs))[-1]
    with open(os.path.join(runs, latest, "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    names = {"f32": "f32", "static-minmax": "int8-static-minmax", "static-entropy": "int8-static-entropy",
             "dynamic": "int8-dynamic"}
    print("\ntop-1 (%) on the same 9,488 images: pipeline / qbench")
    worst = 0.0
    for row in py_rows:
        rec = next(r for r in records if r["model"] == row["model"] and r["scheme"] == names[row["variant"]])
        ours = rec.get("top1_accuracy")
        if ours is None:
            print(f"  {row['model']} {row['variant']}: {row['top1_pct']:.2f} / not measured ({rec.get('error')})")
            continue
        ours *= 100.0
        worst = max(worst, abs(ours - row["top1_pct"]))
        print(f"  {row['model']:>4} {row['variant']:<15} {row['top1_pct']:.2f} / {ours:.2f}")
    print(f"  largest difference {worst:.2f} points")
    print(f"\nqbench / pipeline wall time: median {statistics.median(pairs):.3f} "
          f"(min {min(pairs):.3f}, max {max(pairs):.3f}) over {len(pairs)} interleaved pairs")
    print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
