#!/usr/bin/env bash
# One change timed against the code before it, in the same GPU call: `madbench eval $EVAL` into a
# fresh run directory with the working tree as it is (B), then with the files in PATHS restored
# from commit BASE (A), then the working tree put back. Prints each variant's wall time, its
# `training ...` line and, with PROFILE set, the profile of that architecture's step
# (profile_step.py), then both variants' per-run accuracies side by side (parity,
# compare_runs.py). The commit it prints is the copy's git HEAD, which on a device machine may
# lag the working tree it runs. BASE may also be a folder holding the base's files at their paths
# (a device machine's copy may lack this session's commits: export them with `git show`). Logs
# to $OUT/ab.log.
#   BASE=70d88bb PATHS=plugins/madbench_layers/hyena.py PROFILE=hyena-swiglu \
#   EVAL="--arch hyena-swiglu --preset quick --tasks in-context-recall --settings baseline --seeds 0" \
#   bash benchmarks/ab_gpu.sh
set -u
OUT=${OUT:-/tmp/ab_gpu_out}; mkdir -p "$OUT"; LOG="$OUT/ab.log"
export PYTHONUNBUFFERED=1
: "${BASE:?BASE=<commit>}" "${PATHS:?PATHS=<files>}" "${EVAL:?EVAL=<madbench eval arguments>}"
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
base() {   # $1: a path; its content at BASE (a commit, or a folder holding the base's files)
  if [ -d "$BASE" ]; then cat "$BASE/$1"; else git show "$BASE:$1"; fi
}
for p in $PATHS; do   # before any training: a base the copy lacks would waste variant B
  base "$p" > /dev/null 2>&1 || { echo "error: $p is not in $BASE here" | tee -a "$LOG"; exit 2; }
done
keep=$(mktemp -d); cp --parents $PATHS "$keep"/
variant() {   # $1: label
  python3 -c "from madbench.code_identity import run_version; print('$1: run version', run_version())"
  [ -n "${PROFILE:-}" ] && timeout 120 python3 benchmarks/profile_step.py "$PROFILE" --rows 8 2>&1 \
    | grep -E '^## '
  rm -rf "/tmp/ab_$1"; s=$SECONDS
  # shellcheck disable=SC2086
  madbench eval $EVAL --run-dir "/tmp/ab_$1" --format json > "/tmp/ab_$1.json" 2> "/tmp/ab_$1.err"
  echo "$1: exit $?, $((SECONDS - s)) s wall; $(grep -E '^training ' "/tmp/ab_$1.err")"
}
{
  nvidia-smi -L; echo "commit $(git rev-parse --short HEAD 2>/dev/null), against $BASE for: $PATHS"
  variant B
  for p in $PATHS; do base "$p" > "$p.base" && mv "$p.base" "$p"; done
  variant A
  cp -r "$keep"/. .
  python3 benchmarks/compare_runs.py /tmp/ab_B /tmp/ab_A      # per-run accuracies (parity)
} >> "$LOG" 2>&1
cat "$LOG"
