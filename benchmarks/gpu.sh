#!/usr/bin/env bash
# The ingest and probe benchmarks with ONNX models on an NVIDIA GPU and on the CPU, as one JSON.
#
#   PHOTOS=/data/lfw benchmarks/gpu.sh [faceplugin-face-recognition-js-0.0.1.tgz]
#
# Run from a checkout. Creates (or reuses) the venv $VENV, installs countenance with the gpu
# extra in place of onnxruntime, the face_recognition peer, and the default models (npm, or the
# `npm pack` tarball given as $1). Where ONNX Runtime cannot run a model on CUDA it says why
# and runs on the CPU only. Photos: $PHOTOS (LFW's layout); sizes: LIMIT, GALLERY, PROBES.
# Progress goes to stderr, the JSON to stdout; about 5 minutes on a recent machine.
set -euo pipefail
cd "$(dirname "$0")/.."
photos=${PHOTOS:-../shared/faces/lfw}
if [ ! -d "$photos" ]; then
  echo "gpu.sh: no photo folder at $photos; set PHOTOS=/path/to/photos (e.g. LFW)" >&2
  exit 2
fi
venv=${VENV:-$HOME/.cache/countenance/gpu-venv}  # never the project's .venv: it keeps onnxruntime
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py=$venv/bin/python
install() { "$py" -m pip install -q --disable-pip-version-check "$@" >&2; }

install -e '.[gpu]' && install --no-deps face_recognition
# onnxruntime (a base dependency) and onnxruntime-gpu share one package folder: keep the GPU one
"$py" -m pip uninstall -y -q onnxruntime onnxruntime-gpu >&2
install --no-deps 'onnxruntime-gpu>=1.18'
if [ -n "${1:-}" ]; then
  "$venv/bin/countenance" models install --from "$1" >&2
elif ! "$py" -c 'from countenance.vision.registry import load_pipeline as l
from countenance.config import Settings as S; l("faceplugin", S(device="cpu"))' 2>/dev/null; then
  "$venv/bin/countenance" models install >&2
fi

cuda_check() {  # exits 1 with the reason when no model session runs on CUDA
  "$py" - <<'EOF'
import sys, onnxruntime as ort
from countenance.config import Settings
from countenance.vision.models import ModelStore
if "CUDAExecutionProvider" not in ort.get_available_providers():
    sys.exit(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider")
model = ModelStore.from_settings(Settings()).path("faceplugin", "model/fr_feature.onnx")
if ort.InferenceSession(str(model), providers=["CUDAExecutionProvider"]).get_providers()[0] != (
    "CUDAExecutionProvider"
):
    sys.exit("CUDAExecutionProvider failed to start (no GPU, driver, or CUDA/cuDNN libraries)")
EOF
}
devices=cpu
if ! why=$(cuda_check 2>&1 >/dev/null) && nvidia-smi >/dev/null 2>&1; then
  # CUDA and cuDNN from pip, on the loader's path (it is read once, at process start)
  install 'onnxruntime-gpu[cuda,cudnn]' >&2 || true
  lib=$("$py" -c 'import glob, site; print(":".join(glob.glob(site.getsitepackages()[0] + "/nvidia/*/lib")))')
  export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
if why=$(cuda_check 2>&1 >/dev/null); then
  devices="cuda cpu" why=""
else
  why=$(tail -n 1 <<<"$why")
  echo "gpu.sh: no CUDA: $why; running on the CPU only" >&2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for device in $devices; do
  echo "gpu.sh: COUNTENANCE_DEVICE=$device" >&2
  COUNTENANCE_DEVICE=$device "$py" benchmarks/ingest.py --photos "$photos" \
    --limit "${LIMIT:-120}" --json >"$out/ingest-$device.json"
  COUNTENANCE_DEVICE=$device "$py" benchmarks/probe.py --photos "$photos" \
    --gallery "${GALLERY:-200}" --probes "${PROBES:-30}" --json >"$out/probe-$device.json"
done
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)
# shellcheck disable=SC2086  # one argument per device
"$py" - "$out" "${gpu:-none}" "$why" $devices <<'EOF'
import json, pathlib, sys
import onnxruntime
out, gpu, why, devices = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
report = {"gpu": gpu, "onnxruntime": onnxruntime.__version__, "cuda": why or "ok"}
for d in devices:
    report[d] = {b: json.loads((out / f"{b}-{d}.json").read_text()) for b in ("ingest", "probe")}
print(json.dumps(report, indent=2))
EOF
