#!/usr/bin/env bash
# The CUDA check: runs suites/cuda-smoke.toml (zoo models × a few schemes × the CUDA and CPU
# backends), then suites/cuda-lm.toml (a GGUF llama and a BERT on candle-cuda beside
# candle-cpu), on a machine with an NVIDIA GPU, and writes their records and reports to one
# folder. Then the GPU machine is validated as a target device: the smoke run's CUDA cases are
# bundled (`qbench bundle`) and verified by the device runner (`qbench-device verify`, built with
# CUDA), which must reproduce the harness's outputs within the bundle's tolerances; `qbench
# compare` puts the two side by side.
#
#   bash scripts/gpu-check.sh --pack        # where crates.io is reachable: build the CUDA binary
#                                           # and pack it into .gpu/qbench-cuda.xz (about 15 MB),
#                                           # and the device runner into .gpu/qbench-device-cuda.xz
#   bash scripts/gpu-check.sh [OUT_DIR]     # on the GPU machine (no network needed): run the check
#
# The GPU machine needs no Rust toolchain and no network. The binary is, in order: $QBENCH_BIN;
# .gpu/qbench-cuda.xz (from --pack, carried with the checkout); target/release/qbench if that
# build has the cuda feature; else a build with cargo (which needs crates.io or a vendored
# registry, and nvcc). CUDA's libraries (cudart, cuBLAS, cuRAND, NVRTC; cuDNN for tract-cuda)
# are looked for on LD_LIBRARY_PATH, in a CUDA toolkit and in Python's nvidia-* wheels.
# The run takes about 2 to 4 minutes on an H100-class machine with 16 cores. The packed binary
# records a hash of the sources it was built from; a checkout whose sources differ is reported,
# since the results are then the packed binary's, not the checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."
packed=.gpu/qbench-cuda.xz
stamp=.gpu/qbench-cuda.sources
# What the binary is built from: every source, manifest, vendored crate and build script.
sources_hash() { find src device vendor build.rs Cargo.toml Cargo.lock -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16; }

if [ "${1:-}" = "--pack" ]; then
  . scripts/cuda-env.sh
  cargo build --release --locked --features cuda
  mkdir -p .gpu
  cargo build --release --locked --features cuda -p qbench-device
  strip -o .gpu/qbench-cuda target/release/qbench
  strip -o .gpu/qbench-device-cuda target/release/qbench-device
  xz -T0 -6 -f .gpu/qbench-cuda .gpu/qbench-device-cuda
  sources_hash >"$stamp"
  echo "packed $packed ($(stat -c %s "$packed") bytes, kernels for sm_$CUDA_COMPUTE_CAP): carry .gpu to the GPU machine"
  exit 0
fi

out=${1:-reports/gpu-check}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/gpu-check.log"
: >"$log"
say() { echo "$@" | tee -a "$log"; }

# CUDA's shared libraries: the first folder holding each, appended to LD_LIBRARY_PATH.
# The last root is where scripts/cuda-env.sh installs CUDA's wheels (a build machine's own run).
roots=(${CUDA_HOME:-} ${CUDA_PATH:-} /usr/local/cuda /usr/local/nvidia /usr/lib/x86_64-linux-gnu /opt /usr/local/lib /usr/lib/python3 "${QBENCH_CUDA_VENV:-$HOME/.cache/qbench/cuda-13.0}")
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudnn.so.9; do
  if ldconfig -p 2>/dev/null | grep -q " $lib "; then continue; fi
  found=""
  IFS=: read -ra already <<<"${LD_LIBRARY_PATH:-}"
  for d in "${already[@]}"; do [ -n "$d" ] && [ -e "$d/$lib" ] && found="$d/$lib" && break; done
  if [ -z "$found" ]; then
    for r in "${roots[@]}"; do
      [ -d "$r" ] || continue
      found=$(find -L "$r" -maxdepth 10 -name "$lib" -print -quit 2>/dev/null || true)
      [ -n "$found" ] && break
    done
  fi
  if [ -n "$found" ]; then
    export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    say "note: $lib not found; the cases that need it will say so"
  fi
done
# NVRTC (tract-cuda's kernels) and candle look for CUDA's headers under CUDA_HOME.
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/include ]; then export CUDA_HOME=/usr/local/cuda; fi

bin=${QBENCH_BIN:-}
if [ -z "$bin" ] && [ -f "$packed" ]; then
  if [ "$(cat "$stamp" 2>/dev/null)" != "$(sources_hash)" ]; then
    say "WARNING: $packed was built from other sources than this checkout's (run --pack again): the results are that binary's"
  fi
  bin=/tmp/qbench-cuda
  xz -dc "$packed" >"$bin"
  chmod +x "$bin"
fi
if [ -z "$bin" ] && [ -x target/release/qbench ] && ! target/release/qbench list backends 2>/dev/null | grep -q "not in this build"; then
  bin=target/release/qbench
fi
if [ -z "$bin" ]; then
  say "== no CUDA binary given or packed: building one (needs crates.io, or a vendored registry, and nvcc)"
  . scripts/cuda-env.sh
  cargo build --release --locked --features cuda 2>&1 | tee -a "$log" || true
  bin=target/release/qbench
fi

# The device runner: $QBENCH_DEVICE_BIN, the packed one, or a CUDA build's.
device=${QBENCH_DEVICE_BIN:-}
if [ -z "$device" ] && [ -f .gpu/qbench-device-cuda.xz ]; then
  device=/tmp/qbench-device-cuda
  xz -dc .gpu/qbench-device-cuda.xz >"$device"
  chmod +x "$device"
fi
if [ -z "$device" ] && [ -x target/release/qbench-device ]; then device=target/release/qbench-device; fi

if ! "$bin" --version >/dev/null 2>>"$log"; then
  say "error: $bin does not start (see $log): is libcudart.so.13 on LD_LIBRARY_PATH?"
  exit 1
fi

say "== GPU"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi not available") | tee -a "$log" || true
say "== $("$bin" --version) at $bin"
say "== LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
say "== what qbench makes of this machine's GPU"
"$bin" list backends 2>&1 | grep -- "-cuda " | sed 's/^ *\([a-z-]*\) .*\[/\1 [/' | tee -a "$log" || true
status=0
# QBENCH_SMOKE_RUN=<run folder>: only the device stage below, on that run (an earlier GPU run's,
# or, with QBENCH_BUNDLE_CASES, a CPU run's to try the stage on a machine without a GPU).
suites="cuda-smoke cuda-lm"
if [ -n "${QBENCH_SMOKE_RUN:-}" ]; then
  suites=""
  smoke_dir=$QBENCH_SMOKE_RUN
  say "== the device stage only, on $smoke_dir"
fi
for suite in $suites; do
  started=$(date +%s)
  s=0
  "$bin" run "suites/$suite.toml" --out "$out" 2>&1 | tee -a "$log" || s=$?
  [ "$s" -ne 0 ] && status=$s
  run_dir=$(ls -dt "$out/$suite"/*/ 2>/dev/null | head -n 1)
  say "== $suite finished in $(( $(date +%s) - started )) s, exit $s; records and report: $run_dir"
  if [ "$suite" = cuda-smoke ]; then smoke_dir=$run_dir; fi
done

# The GPU machine as a target device: its CUDA cases bundled, then verified by the device runner.
if [ -z "$device" ]; then
  say "error: no device runner (set QBENCH_DEVICE_BIN, or --pack on a build machine): the device validation did not run"
  exit 1
fi
if [ -z "${smoke_dir:-}" ]; then
  say "error: the cuda-smoke run left no folder to bundle: the device validation did not run"
  exit 1
fi
# Which cases: the CUDA ones (QBENCH_BUNDLE_CASES replaces the filter, e.g. 'backend=*-cpu' to try
# this stage on a machine without a GPU).
cases=${QBENCH_BUNDLE_CASES:-backend=*-cuda}
bundle="$out/cuda.qbundle"
rm -rf "$bundle" "$bundle.tar" "$out/device-run"
say "== bundling the cases $cases of $smoke_dir"
s=0
"$bin" bundle "$smoke_dir" --cases "$cases" --items 256 -o "$bundle" 2>&1 | tee -a "$log" || s=$?
if [ "$s" -ne 0 ]; then
  say "== bundle failed (exit $s): no CUDA case was measured, or it could not be rebuilt (see above)"
  exit 1
fi
say "== $("$device" --version) verify $bundle.tar"
s=0
"$device" verify "$bundle.tar" -o "$out/device-run" 2>&1 | tee -a "$log" || s=$?
say "== device verification exit $s (0: every case passed; 2: a case failed or cannot run; 1: a bad bundle)"
[ "$s" -ne 0 ] && status=$s
"$bin" compare "$smoke_dir" "$out/device-run" 2>&1 | tee -a "$log" || true
"$bin" report "$smoke_dir" "$out/device-run" >/dev/null 2>>"$log" || true
exit "$status"
