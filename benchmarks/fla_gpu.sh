#!/usr/bin/env bash
# The GPU part of issue #16, on one GPU, with fla's wheels in .whl (or fla installed) and, to
# lift fla's Hopper guard, Triton 3.7.1 staged in .stage/triton-* (docs/ecosystem.md): the fla
# status table on CUDA, `madbench eval --arch fla.layers:GatedDeltaNet --preset smoke`, and the
# GPU tests of the DeltaNet-class layers, the three side by side (about 6 minutes). Everything
# lands in $OUT, at most 7 files (a device call returns 8): setup.log, fla_status_h200.md,
# fla_status.log, eval_gdn.log, eval_gdn.json, eval_gdn_eager.json, pytest_gpu.log. On a Hopper
# GPU with 3.4.0 <= Triton < 3.7.1 and no tilelang, the GatedDeltaNet evaluation is refused up
# front (fla's guard, docs/ecosystem.md). STATUS_S (default 280) is the status table's deadline in
# seconds; CLASS_S (default 240) kills one class's measurement after that long (reported as
# failing); RESUME=TABLE keeps the measured rows of an earlier call's table (carry it) and
# measures the rest; CLASSES (comma-separated) measures only those classes; WORKERS (default
# 10) classes are measured at once. The table is
# rewritten as each class finishes, so a cut call still returns its rows. F32 (default ieee) is
# Triton's precision for float32 dots in the status table and the tests (ieee, tf32x3 or tf32;
# tf32x3 is about as exact as ieee on tensor cores). AUTOTUNE (full or one, default full): with
# one, Triton's autotuner tries one configuration per kernel (benchmarks/triton_one_config.py) in
# the status table, the evaluation and the tests: each kernel compiles once, not once per config.
set -u
STATUS_S=${STATUS_S:-280}
for v in STATUS_S CLASS_S WORKERS; do
  case "${!v:-1}" in ''|*[!0-9]*) echo "error: $v must be a whole number, not '${!v}'" >&2; exit 2 ;; esac
done
case "${F32:-ieee}" in ieee|tf32x3|tf32) ;; *) echo "error: F32 must be ieee, tf32x3 or tf32, not '$F32'" >&2; exit 2 ;; esac
case "${AUTOTUNE:-full}" in full|one) ;; *) echo "error: AUTOTUNE must be full or one, not '$AUTOTUNE'" >&2; exit 2 ;; esac
[ -z "${RESUME:-}" ] || [ -r "$RESUME" ] || { echo "error: RESUME=$RESUME cannot be read" >&2; exit 2; }
OUT=${OUT:-/tmp/fla_gpu_out}; mkdir -p "$OUT"
SETUP="$OUT/setup.log"; : > "$SETUP"
python3 -m pip install -q --no-deps --no-build-isolation -e . >> "$SETUP" 2>&1
# Triton >= 3.7.1 lifts fla's Hopper guard (docs/ecosystem.md). It comes in parts carried over
# several calls (benchmarks/stage.sh), as its wheel or as a .tar.xz of the unpacked wheel, and
# is used for this script only.
if [ -d .stage/triton-1 ]; then
  if pkg=$(bash benchmarks/stage.sh join triton /tmp/stage 2>> "$SETUP"); then
    case "$pkg" in
      *.whl) python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/triton_new "$pkg" ;;
      *.tar.xz) python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
                  "$pkg" /tmp/triton_new ;;
      *) false ;;
    esac >> "$SETUP" 2>&1 && export PYTHONPATH=/tmp/triton_new${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
# fla from its wheels in .whl when the machine lacks it
if ! python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('fla') is None)" \
    && ls .whl/fla_core-*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fla_site .whl/fla_core-*.whl \
    .whl/flash_linear_attention-*.whl >> "$SETUP" 2>&1 && export PYTHONPATH=/tmp/fla_site${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi -L; python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"; } >> "$SETUP" 2>&1
# fla.layers needs only transformers.utils.logging, fla's package __init__ (fla.models) needs
# transformers >= 5.6.2; madbench stubs fla.models when that fails. Last resort: .whl/tf
# (transformers 5.24 and its dependencies). .whl/test: pytest, if the machine lacks it.
if ! python3 -c "from madbench.fla_adapter import import_fla; import_fla('fla.layers')" >> "$SETUP" 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/tf/*.whl >> "$SETUP" 2>&1
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}/tmp/site
  python3 -c "from madbench.fla_adapter import import_fla; import_fla('fla.layers'); print('fla imports with .whl/tf')" >> "$SETUP" 2>&1
fi
python3 -c "from madbench.fla_guard import hopper_guard; print('fla Hopper guard:', hopper_guard())" >> "$SETUP" 2>&1
python3 -c "import pytest, pytest_timeout" 2>/dev/null || { python3 -m pip install -q --no-index --no-deps --no-compile \
  --target /tmp/site .whl/test/*.whl >> "$SETUP" 2>&1; export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}/tmp/site; }
# AUTOTUNE=one: the patch is a pytest plugin for the tests and is imported before madbench runs
ONE=(); PYTEST_ONE=(); MADBENCH=(python3 -m madbench)
if [ "${AUTOTUNE:-full}" = one ]; then
  ONE=(env "PYTHONPATH=benchmarks${PYTHONPATH:+:$PYTHONPATH}"); PYTEST_ONE=(-p triton_one_config)
  MADBENCH=("${ONE[@]}" python3 -c \
    'import runpy, triton_one_config; runpy.run_module("madbench", run_name="__main__", alter_sys=True)')
fi
TRITON_F32_DEFAULT=${F32:-ieee} timeout $((STATUS_S + 40)) python3 benchmarks/fla_status.py --device cuda --workers "${WORKERS:-10}" \
  --deadline-s "$STATUS_S" --class-timeout-s "${CLASS_S:-240}" ${CLASSES:+--classes "$CLASSES"} \
  ${RESUME:+--resume "$RESUME"} --autotune "${AUTOTUNE:-full}" --out "$OUT/fla_status_h200.md" > "$OUT/fla_status.log" 2>&1 & STATUS=$!
( timeout 230 "${MADBENCH[@]}" eval --arch fla.layers:GatedDeltaNet --preset smoke \
    --run-dir /tmp/fla_runs --no-progress --output "$OUT/eval_gdn.json" > "$OUT/eval_gdn.log" 2>&1 \
  || { echo "== eager (MADBENCH_CUDA_GRAPHS=0)"; MADBENCH_CUDA_GRAPHS=0 timeout 100 "${MADBENCH[@]}" \
    eval --arch fla.layers:GatedDeltaNet --preset smoke --run-dir /tmp/fla_runs_eager --no-progress \
    --output "$OUT/eval_gdn_eager.json"; } >> "$OUT/eval_gdn.log" 2>&1 ) & EVAL=$!
# every thread's stack is logged at 85 s into a test, and pytest-timeout stops it at 90 s (a hang
# inside a CUDA call may not return to Python: the outer limit then ends the run)
TRITON_F32_DEFAULT=${F32:-ieee} timeout 400 ${ONE[@]+"${ONE[@]}"} python3 -m pytest ${PYTEST_ONE[@]+"${PYTEST_ONE[@]}"} -v -p no:cacheprovider -m gpu -rfEs --tb=short -o timeout=90 -o faulthandler_timeout=85 \
  tests/test_layers_deltanet_class.py tests/test_fla_gpu.py > "$OUT/pytest_gpu.log" 2>&1
wait $EVAL; wait $STATUS
for f in setup.log pytest_gpu.log eval_gdn.log; do
  [ -f "$OUT/$f" ] && { echo "== $f"; tail -n 15 "$OUT/$f"; }
done
echo "== fla_status_h200.md"; tail -n 3 "$OUT/fla_status_h200.md" 2>/dev/null || tail -n 5 "$OUT/fla_status.log"
