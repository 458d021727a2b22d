# Source this file (`. scripts/cuda-env.sh`) before building qbench with `--features cuda`.
#
# candle's CUDA kernels are compiled with nvcc when qbench is built (candle-kernels' build script),
# so a CUDA build needs CUDA 13.0's compiler, headers and runtime library, but no GPU and no
# driver. Where no CUDA toolkit is installed (CUDA_ROOT unset and no nvcc on PATH), this installs
# NVIDIA's own PyPI wheels of it into a virtual environment (about 270 MB, once) and points the
# build at it. nvvm and crt are pinned with nvcc: unpinned, pip pulls a newer nvvm whose PTX this
# nvcc's ptxas refuses ("Unsupported .version").
#
# CUDA_COMPUTE_CAP picks the GPU generation the kernels are compiled for (90: H100/H200,
# 89: L4/RTX 40, 80: A100); it defaults to 90 here because the build cannot ask a GPU.
# The binary then needs libcudart.so.13 at run time (LD_LIBRARY_PATH), and a driver to see a GPU.
_qbench_cuda_version=13.0
if [ -z "${CUDA_ROOT:-}" ] && command -v nvcc >/dev/null 2>&1; then
  CUDA_ROOT=$(dirname "$(dirname "$(command -v nvcc)")")
fi
if [ -z "${CUDA_ROOT:-}" ]; then
  _qbench_venv=${QBENCH_CUDA_VENV:-$HOME/.cache/qbench/cuda-$_qbench_cuda_version}
  if [ ! -x "$_qbench_venv/bin/python" ] || ! ls "$_qbench_venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
    echo "== installing CUDA $_qbench_cuda_version's nvcc, headers and runtime from PyPI into $_qbench_venv" >&2
    if ! python3 -m venv "$_qbench_venv" 2>/dev/null; then
      # Debian splits venv (and ensurepip) out of python3; install it where apt can.
      if command -v apt-get >/dev/null 2>&1; then
        _qbench_sudo=""
        [ "$(id -u)" -ne 0 ] && _qbench_sudo="sudo"
        echo "== installing Debian's python3-venv (for the CUDA wheels' virtual environment)" >&2
        $_qbench_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $_qbench_sudo apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
      fi
      rm -rf "$_qbench_venv"
      python3 -m venv "$_qbench_venv" || {
        echo "python3 -m venv failed: install python3-venv (Debian) or set CUDA_ROOT to a CUDA toolkit" >&2
        return 1 2>/dev/null || exit 1
      }
    fi
    "$_qbench_venv/bin/python" -m pip install -q --disable-pip-version-check \
      "nvidia-cuda-nvcc==$_qbench_cuda_version.*" "nvidia-cuda-runtime==$_qbench_cuda_version.*" \
      "nvidia-cuda-cccl==$_qbench_cuda_version.*" "nvidia-nvvm==$_qbench_cuda_version.*" \
      "nvidia-cuda-crt==$_qbench_cuda_version.*" || { return 1 2>/dev/null || exit 1; }
  fi
  CUDA_ROOT=$(ls -d "$_qbench_venv"/lib/python3*/site-packages/nvidia/cu13 | head -n 1)
  # The linker looks for libcudart.so; the wheel ships only libcudart.so.13.
  [ -e "$CUDA_ROOT/lib/libcudart.so" ] || ln -s libcudart.so.13 "$CUDA_ROOT/lib/libcudart.so"
fi
export CUDA_ROOT CUDA_PATH="$CUDA_ROOT" CUDA_HOME="$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
export LIBRARY_PATH="$CUDA_ROOT/lib64:$CUDA_ROOT/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
echo "== CUDA build: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') at $CUDA_ROOT, kernels for sm_$CUDA_COMPUTE_CAP" >&2
