# Source this file (`. scripts/ort-env.sh`) before running qbench built with `--features ort`.
#
# The ort-cpu backend loads ONNX Runtime's shared library at run time (the `ort` crate's
# load-dynamic): the one PyPI's onnxruntime wheel ships in onnxruntime/capi/. This fetches the
# pinned wheel with pip (no virtual environment: the wheel is only unpacked), keeps the library in
# a cache folder, checks its SHA-256, and exports ORT_DYLIB_PATH. Building needs none of it.
#
#   QBENCH_ORT_CACHE   where the library is kept (default ~/.cache/qbench/onnxruntime-<version>)
_qbench_ort_version=1.32.0
case "$(uname -m)" in
  x86_64)
    _qbench_ort_platform=manylinux_2_28_x86_64
    _qbench_ort_sha256=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f ;;
  aarch64)
    _qbench_ort_platform=manylinux_2_28_aarch64
    _qbench_ort_sha256=49852228a93995158b2a813d4df487d47a1b76b0eaa894507ef49e91b6d7954a ;;
  *)
    echo "scripts/ort-env.sh: no onnxruntime wheel for $(uname -m) is pinned here" >&2
    return 1 2>/dev/null || exit 1 ;;
esac
_qbench_ort_dir=${QBENCH_ORT_CACHE:-$HOME/.cache/qbench/onnxruntime-$_qbench_ort_version}
_qbench_ort_lib=$_qbench_ort_dir/libonnxruntime.so.$_qbench_ort_version
if [ ! -f "$_qbench_ort_lib" ]; then
  echo "== fetching onnxruntime==$_qbench_ort_version ($_qbench_ort_platform) from PyPI into $_qbench_ort_dir" >&2
  mkdir -p "$_qbench_ort_dir/wheel"
  # Any Python can fetch it: the library inside is the same for every CPython version.
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "$_qbench_ort_platform" --python-version 3.11 \
    "onnxruntime==$_qbench_ort_version" -d "$_qbench_ort_dir/wheel" || {
    echo "scripts/ort-env.sh: pip could not fetch onnxruntime==$_qbench_ort_version" >&2
    return 1 2>/dev/null || exit 1
  }
  python3 - "$_qbench_ort_dir" "$_qbench_ort_version" <<'EOF' || { return 1 2>/dev/null || exit 1; }
import glob, sys, zipfile
folder, version = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{folder}/wheel/onnxruntime-{version}-*.whl")[0]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z, open(f"{folder}/libonnxruntime.so.{version}.part", "wb") as out:
    out.write(z.read(name))
EOF
  mv "$_qbench_ort_lib.part" "$_qbench_ort_lib"
  rm -rf "$_qbench_ort_dir/wheel"
fi
if [ "$(sha256sum "$_qbench_ort_lib" | cut -d' ' -f1)" != "$_qbench_ort_sha256" ]; then
  echo "scripts/ort-env.sh: $_qbench_ort_lib does not have the pinned SHA-256; delete it to fetch it again" >&2
  return 1 2>/dev/null || exit 1
fi
export ORT_DYLIB_PATH=$_qbench_ort_lib
echo "== ONNX Runtime $_qbench_ort_version: ORT_DYLIB_PATH=$ORT_DYLIB_PATH" >&2
