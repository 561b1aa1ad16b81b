#!/usr/bin/env bash
# One change timed against the code before it, in the same GPU call: `madbench eval $EVAL` into a
# fresh run directory with the working tree as it is (B), then with the files in PATHS restored
# from commit BASE (A), then the working tree put back. Prints each variant's wall time, its
# `training ...` line and the six configurations' accuracies (parity), and, with PROFILE set, the
# profile of that architecture's step (profile_step.py) for both. Logs to $OUT/ab.log.
#   BASE=70d88bb PATHS=plugins/madbench_layers/hyena.py PROFILE=hyena-swiglu \
#   EVAL="--arch hyena-swiglu --preset quick --tasks in-context-recall --settings baseline --seeds 0" \
#   bash benchmarks/ab_gpu.sh
set -u
OUT=${OUT:-/tmp/ab_gpu_out}; mkdir -p "$OUT"; LOG="$OUT/ab.log"
export PYTHONUNBUFFERED=1
: "${BASE:?BASE=<commit>}" "${PATHS:?PATHS=<files>}" "${EVAL:?EVAL=<madbench eval arguments>}"
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
keep=$(mktemp -d); cp --parents $PATHS "$keep"/
variant() {   # $1: label
  python3 -c "from madbench.code_identity import run_version; print('$1: run version', run_version())"
  [ -n "${PROFILE:-}" ] && timeout 120 python3 benchmarks/profile_step.py "$PROFILE" --rows 8 2>&1 \
    | grep -E '^## '
  rm -rf "/tmp/ab_$1"; s=$SECONDS
  # shellcheck disable=SC2086
  madbench eval $EVAL --run-dir "/tmp/ab_$1" --format json > "/tmp/ab_$1.json" 2> "/tmp/ab_$1.err"
  echo "$1: exit $?, $((SECONDS - s)) s wall; $(grep -E '^training ' "/tmp/ab_$1.err")"
  python3 - "/tmp/ab_$1" <<'PY'
import sys
from madbench.store import load_records
for r in sorted(load_records([sys.argv[1]]), key=lambda r: (r["lr"], r["weight_decay"])):
    print(f"  lr {r['lr']:g} wd {r['weight_decay']:g}: test accuracy {r['accuracy']:.4f}, "
          f"{r['seconds']:.1f} s, engine {r['engine']}")
PY
}
{
  nvidia-smi -L; echo "commit $(git rev-parse --short HEAD 2>/dev/null), against $BASE for: $PATHS"
  variant B
  for p in $PATHS; do git show "$BASE:$p" > "/tmp/ab_base_file" && cp /tmp/ab_base_file "$p" \
    || { echo "error: $p is not in $BASE"; cp -r "$keep"/. .; exit 2; }; done
  variant A
  cp -r "$keep"/. .
} >> "$LOG" 2>&1
cat "$LOG"
