#!/bin/sh
# The GPU check (at most 8 minutes): GPU-relevant tests, R50 384x288 training steps at
# batch 32 in float32 / bfloat16 / float16 with and without XLA, the input-pipeline rate
# and the inference benchmark; writes benchmarks/gpu.md. Run after pip install -e '.[gpu]'
# on a machine with an NVIDIA GPU. Exit status 2: no GPU visible to TensorFlow (nothing
# measured); 1: a part failed; 0: all measured. --help lists the flags
# (tools/run_gpu_check.py, tools/gpu_check.py).
cd "$(dirname "$0")/.." || exit 1
PYTHON="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ] && [ "$PYTHON" = python ]; then
    PYTHON=.venv/bin/python
fi
exec "$PYTHON" -m tools.run_gpu_check "$@"
