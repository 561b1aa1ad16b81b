#!/usr/bin/env bash
# Issue #15's parity and convergence-stop figures (about 12 minutes for hyena-swiglu: more than
# one call's 10, so split it: TASKS=memorization,compression STOP_TASK=none, then
# TASKS=in-context-recall). Part 1, parity: each task's baseline under `quick` (TASKS, default
# memorization, compression, in-context-recall; set but empty: no parity part) trained by the
# plain eager step, by the graphed engine, and by the graphed engine again (the same seed: its
# run-to-run noise), each into a fresh run directory; a table per task gives every
# configuration's test accuracy under the three, the largest |plain - graphed| against the
# largest |graphed - graphed again|, and best of sweep. Part 2, the convergence stop: a whole
# task (STOP_TASK, default memorization, all settings; none: no stop part) under STOP_PRESET
# (default paper) with and without `--set early_stop_accuracy=0.999`: wall
# time, the task score and each setting's best. PRESET (default quick) is part 1's preset,
# EXTRA more `madbench eval` arguments for every run (a CPU try-out: PRESET=smoke
# STOP_PRESET=smoke TASKS=memorization EXTRA="--device cpu"). Logs to $OUT/engines.log.
#   ARCH=hyena-swiglu bash benchmarks/engines_gpu.sh
set -u
OUT=${OUT:-/tmp/engines_gpu_out}; mkdir -p "$OUT"; LOG="$OUT/engines.log"
ARCH=${ARCH:-hyena-swiglu}; TASKS=${TASKS-memorization,compression,in-context-recall}
STOP_TASK=${STOP_TASK:-memorization}; STOP_PRESET=${STOP_PRESET:-paper}; PRESET=${PRESET:-quick}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
W=/tmp/engines_runs; rm -rf "$W"; mkdir -p "$W"
ev() {   # $1: label, rest: madbench eval arguments; prints wall time and the training line
  local label=$1; shift; local s=$SECONDS
  # shellcheck disable=SC2086
  madbench eval --arch "$ARCH" --seeds 0 --run-dir "$W/$label" --format json ${EXTRA:-} "$@" \
    > "$W/$label.json" 2> "$W/$label.err"
  echo "$label: exit $?, $((SECONDS - s)) s wall; $(grep -E '^training ' "$W/$label.err")"
}
compare() {   # $@: run directory labels, the first is the reference column
  python3 benchmarks/compare_runs.py "${@/#/$W/}"
}
{
  nvidia-smi -L
  python3 -c "import torch, triton; from madbench.code_identity import run_version; print('commit', '$(git rev-parse --short HEAD 2>/dev/null)', '| run version', run_version(), '| torch', torch.__version__, '| triton', triton.__version__)"
  IFS=',' read -r -a tasks <<< "$TASKS"
  for t in "${tasks[@]}"; do
    echo "== parity: $t baseline, $PRESET, $ARCH"
    ev "$t-plain" --preset "$PRESET" --tasks "$t" --settings baseline --engine plain
    ev "$t-graphed" --preset "$PRESET" --tasks "$t" --settings baseline --engine graphed
    ev "$t-graphed-again" --preset "$PRESET" --tasks "$t" --settings baseline --engine graphed
    compare "$t-plain" "$t-graphed" "$t-graphed-again"
  done
  if [ "$STOP_TASK" != none ]; then
    echo "== convergence stop: $STOP_TASK, all settings, $STOP_PRESET, $ARCH"
    ev stop-off --preset "$STOP_PRESET" --tasks "$STOP_TASK"
    ev stop-0.999 --preset "$STOP_PRESET" --tasks "$STOP_TASK" --set early_stop_accuracy=0.999
    compare stop-off stop-0.999
  fi
} >> "$LOG" 2>&1
cat "$LOG"
