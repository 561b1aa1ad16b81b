#!/usr/bin/env bash
# Issue #20's board entries in time-limited GPU calls that resume: every architecture's
# `madbench eval --preset $PRESET` (default quick), one after another (several at once on one
# GPU measured no faster, benchmarks/RESULTS.md), into $RUNS/<arch>, all within DEADLINE
# seconds (default 500): each eval gets `--time-limit` (what is left of DEADLINE, less 5 s), so
# it starts no group that would not finish by then (exit 4) and the next architecture gets the
# time that is left; a group that overruns its estimate is stopped at DEADLINE with SIGINT (the
# finished groups are stored, that one is trained again by the next call). What is not
# trained waits for the next call. To resume on a fresh machine, carry the previous call's
# boards_runs.tgz and name it in SEED_RUNS (never carry runs/ itself); records that today's
# code would not submit (another run version or layer code) are first moved to $RUNS/stale/
# (benchmarks/set_aside_stale.py). An architecture whose
# sweep is complete gets its submission, $BOARD/<arch>.json (default leaderboards/mad-quick),
# validated at once, with RERUN (default 6) settings re-trained on the GPU within what is left
# of CALL_SECONDS (default 590, from the script's start; a re-run cut short fails that
# validation with a budget message, and the entry is still in $OUT; with less than
# MIN_RERUN_SECONDS left (default 60) the validation is not started, and boards.log gives its
# command for the next call). EXTRA adds
# `madbench eval` arguments (and goes into the entry's command): EXTRA="--tasks memorization"
# makes partial entries of one task; with --settings (a sample of settings, e.g. EXTRA="--settings
# baseline --tasks in-context-recall,compression") no entry is made (an entry's tasks are whole):
# benchmarks/agree_settings.py compares such runs; a group longer than one call (Mamba's
# `paper` selective-copying baseline, about 13 minutes on an H100) is trained in parts with
# EXTRA="... --group-size 3", one part per call. RUNS (default runs/boards) is where the run directories
# go: give another protocol its own (PRESET=paper RUNS=runs/boards-paper). Leaves boards.log,
# boards_runs.tgz (RUNS packed once training stops, and again at the end) and the new
# submissions in $OUT.
# Without a submission to validate, a call takes about DEADLINE + 35 s (unpacking, install,
# the stop, packing, a completeness check): 504 s at DEADLINE=470 on an H200. An architecture
# stopped at the deadline is incomplete and skips that check (a dry run, which probes the step
# on the GPU again); the others get it.
#   DEADLINE=500 SEED_RUNS=benchmarks/boards_runs_quick_attn.tgz ARCHS=mh-attention-swiglu,mamba bash benchmarks/boards_gpu.sh
# Two sweeps of different EXTRA or PRESET in one device call: run the script twice, each with
# its own OUT, the second's DEADLINE what the first left (each takes about DEADLINE + 35 s):
#   T0=$SECONDS; PRESET=paper ... OUT=$OUT/s DEADLINE=180 bash benchmarks/boards_gpu.sh
#   OUT=$OUT/m DEADLINE=$((555 - (SECONDS - T0))) ... bash benchmarks/boards_gpu.sh
set -u
RUNS=${RUNS:-runs/boards}
OUT=${OUT:-/tmp/boards_gpu_out}; mkdir -p "$OUT" "$RUNS"
LOG="$OUT/boards.log"
ARCHS=${ARCHS:-mh-attention-swiglu,hyena-swiglu,mh-hyena-swiglu,mamba,mh-gla-swiglu}
PRESET=${PRESET:-quick}; BOARD=${BOARD:-leaderboards/mad-quick}; D=${DEADLINE:-500}
CALL=${CALL_SECONDS:-590}   # the device call's limit: re-runs stop (and say so) before it
# the least re-run budget worth starting a validation with: about 60 s re-train one setting of
# each task on an H200, about 10 s a memorization-only entry (benchmarks/RESULTS.md)
MIN_RERUN=${MIN_RERUN_SECONDS:-60}
export PYTHONUNBUFFERED=1
if [ -n "${SEED_RUNS:-}" ]; then
  tar -xzf "$SEED_RUNS" --skip-old-files || { echo "error: cannot unpack SEED_RUNS=$SEED_RUNS" >&2; exit 2; }
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
{ nvidia-smi -L 2>/dev/null; python3 -c "import torch; from madbench.code_identity import run_version; print('run version', run_version(), '| torch', torch.__version__)"; } > "$LOG" 2>&1
IFS=',' read -r -a archs <<< "$ARCHS"
# records of older code (another run version or layer code) would block the submission
python3 benchmarks/set_aside_stale.py "$RUNS" "${archs[@]}" >> "$LOG" 2>&1
start=$SECONDS
declare -A stopped   # architectures stopped by the deadline: incomplete, no dry run needed
for arch in "${archs[@]}"; do
  left=$((D - (SECONDS - start)))
  if [ "$left" -lt 30 ]; then
    echo "$arch: not started (deadline), resume with SEED_RUNS" >> "$LOG"; stopped[$arch]=1; continue
  fi
  # shellcheck disable=SC2086
  timeout -s INT -k 60 "$left" madbench eval --arch "$arch" --preset "$PRESET" ${EXTRA:-} \
    --time-limit "$((left - 5))" --run-dir "$RUNS/$arch" --format json > "$RUNS/$arch.json" \
    2> "$RUNS/$arch.err"
  rc=$?
  echo "$arch: exit $rc; $(grep -E '^training |^trained |already stored|^--time-limit|^stopped' "$RUNS/$arch.err" | tr '\n' ' ')" >> "$LOG"
  case $rc in 0) ;; 4|124|130) stopped[$arch]=1 ;; *) grep -E '^Error' "$RUNS/$arch.err" | tail -1 >> "$LOG" ;; esac
done
# packed now, before the submissions and re-runs, so a call cut short still brings the runs back
# (written aside and renamed: a kill mid-write leaves the previous tarball whole)
pack() { tar -czf "$OUT/boards_runs.partial" "$RUNS" && mv "$OUT/boards_runs.partial" "$OUT/boards_runs.tgz"; }
pack
mkdir -p "$BOARD"
tasks=$(sed -n 's/.*--tasks[ =]\([^ ]*\).*/\1/p' <<< "${EXTRA:-}")   # a partial entry's tasks
for i in "${!archs[@]}"; do
  arch=${archs[$i]}
  if [ -n "${stopped[$arch]:-}" ]; then   # a dry run would re-probe the step on the GPU for nothing
    echo "$arch: not complete (stopped at the deadline), resume with SEED_RUNS" >> "$LOG"; continue
  fi
  if [[ " ${EXTRA:-} " == *" --settings"* ]]; then   # a sample of settings makes no entry
    echo "$arch: a sample of settings (--settings): no entry; compare it with benchmarks/agree_settings.py" >> "$LOG"; continue
  fi
  # complete: a second eval over the same run directory finds nothing to train
  if madbench eval --arch "$arch" --preset "$PRESET" ${EXTRA:-} --run-dir "$RUNS/$arch" \
       --dry-run 2>&1 | grep -q "nothing to train"; then
    # shellcheck disable=SC2086
    madbench leaderboard submit "$RUNS/$arch" --name "$arch" --out "$BOARD/$arch.json" ${tasks:+--tasks $tasks} \
      --command "madbench eval --arch $arch --preset $PRESET${EXTRA:+ $EXTRA}" >> "$LOG" 2>&1 \
      && cp "$BOARD/$arch.json" "$OUT/"
    rc=$?
    budget=$((CALL - SECONDS - 30))   # the re-runs' share of what is left of the call
    validate="madbench leaderboard validate $BOARD/$arch.json --rerun ${RERUN:-6}"
    if [ "$rc" -eq 0 ] && [ "$budget" -ge "$MIN_RERUN" ]; then
      $validate --rerun-seconds "$budget" >> "$LOG" 2>&1
      rc=$?
    elif [ "$rc" -eq 0 ]; then   # too little time: a verdict "ran past its budget" says nothing
      echo "$arch: not validated ($budget s left for re-runs, MIN_RERUN_SECONDS=$MIN_RERUN); next call: $validate" >> "$LOG"
    fi
    echo "$arch: submission $BOARD/$arch.json, exit $rc" >> "$LOG"
  else
    echo "$arch: not complete, resume with SEED_RUNS" >> "$LOG"
  fi
done
pack
cat "$LOG"
