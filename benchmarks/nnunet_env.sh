#!/usr/bin/env bash
# Create (or check) the separate virtualenv that holds nnU-Net v2 for the side-by-side benchmarks.
#
# nnU-Net is a peer we measure against, never a dependency of selfconfig: it lives OUTSIDE the
# repository (default /work/nnunet_venv, override with NNUNET_VENV=/path). torch is pinned to the
# CPU build 2.13.0 first, then nnunetv2 is installed with a constraints file holding that pin, because
# nnunetv2 -> dynamic-network-architectures -> timm/torchvision would otherwise pull a CUDA torch of
# several GB. About 1.9 GB on disk. torchvision in that venv fails to import against the pinned
# torch; nnU-Net's plan/preprocess/predict do not need it.
#
# Idempotent: a venv whose nnUNetv2_predict runs and whose torch is 2.13.0 is left alone.
# Usage: bash benchmarks/nnunet_env.sh        (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail

VENV="${NNUNET_VENV:-/work/nnunet_venv}"
PY="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"

ready() {
    [ -x "$VENV/bin/nnUNetv2_predict" ] && [ -x "$VENV/bin/nnUNetv2_plan_and_preprocess" ] &&
        "$VENV/bin/python" -c "import torch, nnunetv2, dynamic_network_architectures, sys; \
sys.exit(0 if torch.__version__.split('+')[0] == '${TORCH_PIN#torch==}' else 1)" 2>/dev/null
}

if ready; then
    echo "nnU-Net v2 venv ready at $VENV ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("nnunetv2", m.version("nnunetv2"), "torch", m.version("torch"))'))"
    exit 0
fi

case "$VENV" in
    "$(cd "$(dirname "$0")/.." && pwd)"/*) echo "refusing to create the nnU-Net venv inside the repository ($VENV)" >&2; exit 1 ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf '%s\n' "$TORCH_PIN" > "$CONSTRAINTS"
"$VENV/bin/pip" install "$TORCH_PIN"
"$VENV/bin/pip" install -c "$CONSTRAINTS" nnunetv2

if ready; then
    echo "nnU-Net v2 venv ready at $VENV"
else
    echo "nnU-Net v2 venv at $VENV is not usable; see the pip output above" >&2
    exit 1
fi
