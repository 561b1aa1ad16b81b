#!/usr/bin/env bash
# Issue #15's concurrency lever in one GPU call (about six minutes): the same eight groups of
# runs (quick preset, compression's four settings of 32 tokens, seeds 0 and 1; eight sweeps of
# equal shape) trained by `madbench eval` one group at a time, then K at once
# (`--runs-per-gpu K`) with the GPU time-sliced between the processes, then K at once under an
# NVIDIA MPS daemon (their kernels can overlap). Each variant writes its own run directory and
# one line per finished run, so a variant cut by its time limit still shows how far it got.
# Then the reference implementation's own train() in seconds per epoch (needs .ref/madlab and
# .ref/tools/madlab_time.py, see speed_gpu.sh; skipped without). Logs to $OUT/concurrency.log.
#   K=8 ARCH=hyena-swiglu OUT=/tmp/out bash benchmarks/concurrency_gpu.sh
# EXTRA adds eval options to every variant (e.g. a CPU try-out of the script's mechanics:
#   K=2 EXTRA="--device cpu --set epochs=1 --set min_steps=1 --set max_train=64 --set max_test=32" ...).
set -u
OUT=${OUT:-/tmp/concurrency_gpu_out}; mkdir -p "$OUT"
LOG="$OUT/concurrency.log"
K=${K:-8}; ARCH=${ARCH:-hyena-swiglu}; LIMIT=${LIMIT:-200}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
work=(--arch "$ARCH" --tasks compression --preset quick --seeds 0,1 --format json
      --settings baseline,vocab_size=32,vocab_size=64,vocab_size=128)
variant() {   # NAME RUN_DIR [eval options]: one timed variant, its records counted
  local name=$1 dir=$2; shift 2
  local start=$SECONDS
  # shellcheck disable=SC2086
  timeout "$LIMIT" madbench eval "${work[@]}" ${EXTRA:-} --run-dir "$dir" "$@" > "$dir.json" 2> "$dir.err"
  local rc=$?
  grep -E '^training |^\[[0-9]+\/' "$dir.err" | sed -n '1p;$p'
  echo "$name: exit $rc, wall $((SECONDS - start)) s, $(ls "$dir/records" 2>/dev/null | wc -l) records"
}
{
  nvidia-smi -L
  python3 -c "import torch, triton; from madbench.code_identity import run_version; print('commit', '$(git rev-parse --short HEAD 2>/dev/null)', '| run version', run_version(), '| torch', torch.__version__, '| triton', triton.__version__)"
  echo "== warm-up (kernel caches on disk): one epoch of a small set"
  timeout 120 madbench eval --arch "$ARCH" --tasks compression --preset quick --settings baseline \
    --set epochs=1 --set min_steps=1 --set max_train=256 --set max_test=128 --run-dir /tmp/conc_warm \
    --format json > /dev/null 2>&1; echo "warm-up exit $?"
  echo "== 1. ${work[*]}"
  variant "one group at a time" /tmp/conc_one
  variant "$K at once, time-sliced" /tmp/conc_many --runs-per-gpu "$K"
  if exports=$(python3 benchmarks/mps.py start /tmp/conc_mps); then
    eval "$exports"
    variant "$K at once, MPS" /tmp/conc_mps_runs --runs-per-gpu "$K"
    python3 benchmarks/mps.py stop /tmp/conc_mps
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
  if [ -e .ref/tools/madlab_time.py ] && [ -d .ref/madlab/mad ]; then
    echo "== 2. the reference's train(), in-context recall baseline, hyena,swiglu,hyena,swiglu"
    PYTHONPATH="$PWD/benchmarks/reference_shims" timeout 120 python3 .ref/tools/madlab_time.py \
      .ref/madlab hyena,swiglu,hyena,swiglu in-context-recall 2 7 2>&1 \
      | grep -v -i "warn\|lightning\|^ *$" | tail -8
  fi
} >> "$LOG" 2>&1
cat "$LOG"
