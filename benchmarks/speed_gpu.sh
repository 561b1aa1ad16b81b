#!/usr/bin/env bash
# Issue #15's baselines on today's code, in one GPU call of about nine minutes, each figure
# timed in the same call as what it is compared with:
#   1. the reference implementation's own train() on the in-context-recall baseline, Hyena +
#      SwiGLU (seconds per epoch, from a 2- and a 7-epoch run);
#   2. madbench's graphed engine on the same setting: one 200-epoch run and the six-configuration
#      sweep (bench_training.py --parts one,sweep);
#   3. the mad-lab preset against paper on memorization's baseline (bench_presets.py).
# Needs the reference tree in .ref/madlab and ../shared/tools/reference-impl/madlab_time.py
# copied to .ref/tools/ (the shared folder does not travel; .ref does). Logs to $OUT/speed.log.
#   mkdir -p .ref/tools && cp ../shared/tools/reference-impl/madlab_time.py .ref/tools/
#   OUT=/tmp/out bash benchmarks/speed_gpu.sh
set -u
OUT=${OUT:-/tmp/speed_gpu_out}; mkdir -p "$OUT"
LOG="$OUT/speed.log"
export PYTHONUNBUFFERED=1
for need in .ref/madlab/mad .ref/tools/madlab_time.py; do
  [ -e "$need" ] || { echo "error: $need is missing (see the comment at the top)" >&2; exit 2; }
done
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
{
  nvidia-smi -L
  python3 -c "import torch, triton; from madbench.code_identity import run_version; print('commit', '$(git rev-parse --short HEAD 2>/dev/null)', '| run version', run_version(), '| torch', torch.__version__, '| triton', triton.__version__)"
  echo "== 1. the reference's train(), in-context recall baseline, hyena,swiglu,hyena,swiglu"
  PYTHONPATH="$PWD/benchmarks/reference_shims" timeout 200 python3 .ref/tools/madlab_time.py .ref/madlab hyena,swiglu,hyena,swiglu \
    in-context-recall 2 7 2>&1 | grep -v -i "warn\|lightning\|^ *$" | tail -8
  echo "== 2. madbench, graphed engine: one run and the six-configuration sweep"
  timeout 330 python3 benchmarks/bench_training.py --parts one,sweep --archs hyena-swiglu 2>&1 \
    | grep -v -i "warn" | tail -20
  echo "== 3. mad-lab preset against paper, memorization baseline"
  timeout 120 python3 benchmarks/bench_presets.py --arch hyena-swiglu 2>&1 | grep -v -i "warn" \
    | tail -12
} >> "$LOG" 2>&1
cat "$LOG"
