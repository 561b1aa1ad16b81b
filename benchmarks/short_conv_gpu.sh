#!/usr/bin/env bash
# Issue #15's next lever, decided in one GPU call of about four minutes: the short causal
# convolution's Triton kernel against the layers' repeat + nn.Conv1d path
# (bench_kernel_short_conv.py), then where the faithful layers' training step spends its GPU
# time (profile_step.py: kernels per step, summed kernel time, the top kernels). Each part has
# its own time limit and prints as it goes. Logs to $OUT/short_conv.log (and short_conv.md).
#   OUT=/tmp/out bash benchmarks/short_conv_gpu.sh
set -u
OUT=${OUT:-/tmp/short_conv_gpu_out}; mkdir -p "$OUT"
LOG="$OUT/short_conv.log"
export PYTHONUNBUFFERED=1 OUT
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
{
  nvidia-smi -L
  python3 -c "import torch, triton; from madbench.code_identity import run_version; print('commit', '$(git rev-parse --short HEAD 2>/dev/null)', '| run version', run_version(), '| torch', torch.__version__, '| triton', triton.__version__)"
  echo "== 1. the short convolution: kernel against the layers' path (bf16, ms, median)"
  timeout 150 python3 benchmarks/bench_kernel_short_conv.py 2>&1 | grep -v -i warn
  echo "== 2. the faithful layers' training step, in-context-recall baseline"
  timeout 200 python3 benchmarks/profile_step.py "${ARCHS:-hyena-swiglu,mh-hyena-swiglu,mamba,mh-attention-swiglu}" \
    --rows 20 2>&1 | grep -v -i warn
} >> "$LOG" 2>&1
cat "$LOG"
