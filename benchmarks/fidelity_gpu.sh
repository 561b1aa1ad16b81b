#!/usr/bin/env bash
# The fidelity panel in one time-limited GPU call (docs/fidelity.md). Each argument
# "PAIRS;ARMS;PANEL;JOBS[;SEEDS]" is one `fidelity.py run`, all started at once (arms share the
# GPU); every run stops cleanly at DEADLINE seconds (default 470) and the same call with the
# same runs/fidelity resumes (call again while the machine is warm). To resume on a fresh machine,
# carry a tarball of an earlier call's records and name it in SEED_RUNS: it is merged into
# runs/fidelity (records are content-addressed; nothing there is overwritten). Never carry
# runs/fidelity itself into a warm machine: a carried path replaces the device's copy.
# MPS=1 runs them under an NVIDIA MPS daemon (benchmarks/mps.py), so that the arms' kernels can
# overlap instead of taking turns; if the daemon cannot serve, the log says why and they run
# without it. GPU_TESTS=1 runs `pytest -m gpu` beside them first. Exits 1 when an arm failed, 3
# when sweeps are left for the next call, else 0. Leaves at most 4 files in $OUT: the logs,
# the table and the run directory as a tarball. Needs the reference tree in .ref/madlab.
#   bash benchmarks/fidelity_gpu.sh "mamba;;selective-copying;1" "hyena,mh-hyena;;all;4"
set -u
OUT=${OUT:-/tmp/fidelity_gpu_out}; RUN_DIR=${RUN_DIR:-runs/fidelity}; mkdir -p "$OUT" "$RUN_DIR"
export PYTHONUNBUFFERED=1 TRITON_ALLOW_NON_CONSTEXPR_GLOBALS=1
[ -d .ref/madlab/mad ] || { echo "error: no reference tree in .ref/madlab (docs/fidelity.md)" >&2; exit 2; }
if [ -n "${SEED_RUNS:-}" ]; then
  tar -xzf "$SEED_RUNS" --skip-old-files || { echo "error: cannot unpack SEED_RUNS=$SEED_RUNS" >&2; exit 2; }
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
{ nvidia-smi -L; python3 -c "import torch, triton; from madbench.code_identity import run_version; print('run version', run_version(), '| torch', torch.__version__, '| triton', triton.__version__)"; } > "$OUT/fidelity.log" 2>&1
if [ "${MPS:-0}" = 1 ]; then
  if exports=$(python3 benchmarks/mps.py start /tmp/fidelity_mps 2>> "$OUT/fidelity.log"); then
    eval "$exports"; echo "MPS: on" >> "$OUT/fidelity.log"
  else
    echo "MPS: off (above)" >> "$OUT/fidelity.log"; MPS=0
  fi
fi
D=${DEADLINE:-470}
pids=()
for spec in "$@"; do
  IFS=';' read -r pairs arms panel jobs seeds <<< "$spec"
  python3 benchmarks/fidelity.py run --pairs "$pairs" --arms "$arms" --panel "$panel" \
    --jobs "${jobs:-2}" --seeds "${seeds:-0}" --deadline-s "$D" --run-dir "$RUN_DIR" >> "$OUT/fidelity.log" 2>&1 &
  pids+=($!)
done
if [ "${GPU_TESTS:-0}" = 1 ]; then
  # on the time limit, SIGABRT makes faulthandler print every thread's stack into the log
  PYTHONFAULTHANDLER=1 timeout -s ABRT 240 python3 -m pytest -m gpu -q -p no:cacheprovider -rs \
    > "$OUT/pytest_gpu.log" 2>&1
  echo "pytest exit status $?" >> "$OUT/pytest_gpu.log"
fi
status=0   # 1 when an arm failed, else 3 when work is left for the next call, else 0
for pid in "${pids[@]}"; do
  wait "$pid"; rc=$?
  if [ "$rc" = 1 ] || { [ "$rc" != 0 ] && [ "$rc" != 3 ]; }; then status=1
  elif [ "$rc" = 3 ] && [ "$status" = 0 ]; then status=3; fi
done
wait
[ "${MPS:-0}" = 1 ] && python3 benchmarks/mps.py stop /tmp/fidelity_mps
python3 benchmarks/fidelity.py table --run-dir "$RUN_DIR" > "$OUT/table.md" 2>&1
tar -czf "$OUT/fidelity_runs.tgz" "$RUN_DIR"
grep '^\[' "$OUT/fidelity.log"
[ -f "$OUT/pytest_gpu.log" ] && tail -n 3 "$OUT/pytest_gpu.log"
exit "$status"
