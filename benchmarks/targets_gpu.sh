#!/usr/bin/env bash
# Issue #15's run and sweep targets in one GPU call, with both baselines timed in that call, on
# the in-context-recall baseline with Hyena + SwiGLU:
#   1. the reference implementation's own train() per epoch (incl. its per-epoch evaluation),
#      from a REF_A- and a REF_B-epoch run (shared/tools/reference-impl/madlab_time.py);
#   2. madbench (benchmarks/bench_training.py): the plain eager step over EAGER_EPOCHS epochs,
#      then the graphed engine's one EPOCHS-epoch run and six-configuration sweep, measured.
# The reference needs mad-lab's tree in .ref/madlab (git archive of athms/mad-lab without
# assets/, with stubs/flash_attn and stubs/rwkv of shared/tools/reference-impl copied in as
# its README says) and madlab_time.py in .ref/tools; carry ".ref". Without them step 1 is
# skipped and said so. Leaves targets.log in $OUT. With the defaults it takes about 8 minutes.
#   MADBENCH_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/targets_gpu.sh
set -u
OUT=${OUT:-/tmp/targets_out}; mkdir -p "$OUT"; LOG="$OUT/targets.log"
EPOCHS=${EPOCHS:-200}; EAGER=${EAGER_EPOCHS:-3}; A=${REF_A:-2}; B=${REF_B:-7}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
nvidia-smi -L > "$LOG" 2>&1
if [ -d .ref/madlab ] && [ -f .ref/tools/madlab_time.py ]; then
  python3 .ref/tools/madlab_time.py .ref/madlab hyena,swiglu,hyena,swiglu in-context-recall \
    "$A" "$B" >> "$LOG" 2>&1
  echo "reference timing exit $?" >> "$LOG"
else
  echo "no .ref/madlab or .ref/tools/madlab_time.py: the reference was not timed" >> "$LOG"
fi
python3 benchmarks/bench_training.py --parts one,sweep --archs hyena-swiglu --epochs "$EPOCHS" \
  --eager-epochs "$EAGER" >> "$LOG" 2>&1
echo "bench_training exit $?" >> "$LOG"
grep -v "^  \[" "$LOG"
