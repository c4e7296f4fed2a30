#!/usr/bin/env bash
# Issue 6's GPU checks and figures in one call on a lent GPU machine (the `device` tool's
# `run`), ~5-8 minutes there. Prepare once on the development machine, in the repo root
# (.gitignore keeps .whl/ out of the repository):
#
#     python3 -m pip download --no-deps torch-brain==0.2.1 -d .whl
#
# then: run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=540)
#
# The machine's image already holds torch, numpy, tqdm and pytest; popdecode runs from src/
# (nothing to build), torch-brain from its wheel without its dependencies (its model needs
# none that the image lacks; ray, which it imports but never calls for the model, is stood
# in for by benchmarks/poyo_bench.py). Each part runs even if one before it fails; the
# output is also written to $OUT/gpu.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-/tmp}/gpu.txt"
: > "$log"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || echo "could not install the carried wheels: torch-brain is left out" | tee -a "$log"
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" POPDECODE_PROGRESS=0 PYTHONUNBUFFERED=1
reference=()
python3 -c "import torch_brain" 2>/dev/null || reference=(--no-reference)
{
    rc=0
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
    echo "## the model on the GPU against the CPU (tests/model/test_cuda.py)"
    python3 -m pytest -q -p no:cacheprovider tests/model/test_cuda.py || rc=1
    python3 benchmarks/all.py --device cuda "${reference[@]}" || rc=1
    exit "$rc"
} 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
