#!/usr/bin/env bash
# GPU readiness check of selfconfig, for a machine with a CUDA GPU; about 3-5 minutes, killed at 8.
#
#   bash benchmarks/gpu_check.sh [--out /tmp/gpu_check.json] [--gpu-memory-gb 24] [--epochs 6 --iters 50]
#
# Plans LUNG_LOBES phantoms with the GPU budget, trains a few hundred iterations with fp16 mixed
# precision, the augmentation on the GPU and the loader workers (interleaved with bare
# forward+backward+step blocks), samples nvidia-smi, predicts with and without mirroring, stitches a
# large volume on the GPU and on the CPU, and runs a 2-GPU DDP step when two GPUs are there. Prints a
# markdown table (paste it into documentation/benchmarks.md) and writes every number as JSON.
# PYTHON=/path/to/python chooses the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
else
    echo "nvidia-smi not found: no NVIDIA driver on this machine" >&2
fi
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPUs', torch.cuda.device_count()); sys.exit(0 if torch.cuda.is_available() or '--allow-cpu' in sys.argv else 3)" "$@" || {
    echo "torch sees no CUDA GPU (a CPU-only torch build, or no driver): install a CUDA build of torch first" >&2
    exit 3
}
exec timeout --signal=INT --kill-after=20 480 "$PY" benchmarks/gpu_check.py "$@"
