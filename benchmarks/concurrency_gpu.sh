#!/usr/bin/env bash
# Issue #15's concurrency lever in one GPU call (about eight minutes): several groups of runs
# trained at once on one GPU (`madbench eval --runs-per-gpu K`), their processes under an
# NVIDIA MPS daemon so that their kernels overlap, against one group at a time, on the same
# work in the same call; then the reference implementation's own train() (seconds per epoch)
# and the mad-lab preset against paper. Logs to $OUT/concurrency.log.
#   K=8 TASKS=compression,memorization OUT=/tmp/out bash benchmarks/concurrency_gpu.sh
# Needs .ref/madlab and .ref/tools/madlab_time.py for part 2 (see speed_gpu.sh); skipped without.
set -u
OUT=${OUT:-/tmp/concurrency_gpu_out}; mkdir -p "$OUT"
LOG="$OUT/concurrency.log"
K=${K:-8}; TASKS=${TASKS:-compression,memorization}; ARCH=${ARCH:-hyena-swiglu}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
{
  nvidia-smi -L
  python3 -c "import torch, triton; from madbench.code_identity import run_version; print('commit', '$(git rev-parse --short HEAD 2>/dev/null)', '| run version', run_version(), '| torch', torch.__version__, '| triton', triton.__version__)"
  echo "== 1. quick preset, $TASKS, every setting, $ARCH: one group at a time against $K at once under MPS"
  timeout 360 python3 benchmarks/bench_multi_gpu.py --gpus 1 --many-runs-per-gpu "$K" --mps \
    --arch "$ARCH" --tasks "$TASKS" --preset quick --settings preset 2>&1 | grep -v -i "warn"
  if [ -e .ref/tools/madlab_time.py ] && [ -d .ref/madlab/mad ]; then
    echo "== 2. the reference's train(), in-context recall baseline, hyena,swiglu,hyena,swiglu"
    timeout 120 python3 .ref/tools/madlab_time.py .ref/madlab hyena,swiglu,hyena,swiglu \
      in-context-recall 2 7 2>&1 | grep -v -i "warn\|lightning\|^ *$" | tail -8
  fi
  echo "== 3. mad-lab preset against paper, memorization baseline"
  timeout 100 python3 benchmarks/bench_presets.py --arch "$ARCH" 2>&1 | grep -v -i "warn" | tail -12
} >> "$LOG" 2>&1
cat "$LOG"
