#!/usr/bin/env bash
# Why did the bundled Hyena's training loss turn NaN on the GPU in fuzzy recall and selective
# copying (docs/fidelity.md, eighth session)? One GPU call, one difference at a time:
#   1. benchmarks/divergence.py, without MPS: the panel's way (CUDA graphs, bf16, Triton), no
#      graphs, the PyTorch ops instead of the kernels, float32, and eager with every module
#      checked (names the first non-finite output or gradient);
#   2. the same under an MPS daemon (the eighth session's panel ran under one);
#   3. the panel's own sweep of selective copying for `hyena`, alone on the GPU, without MPS,
#      then under MPS (fresh run directories, so nothing is resumed).
# Needs the reference tree in .ref/madlab only for fidelity.py's imports. Writes the log to
# $OUT/hyena_nan.log.   OUT=/tmp/out bash benchmarks/hyena_nan_gpu.sh
set -u
OUT=${OUT:-/tmp/hyena_nan_out}; mkdir -p "$OUT"
LOG="$OUT/hyena_nan.log"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
SC=(hyena --task selective-copying --config 1e-4,0.1 --config 1e-3,0 --config 1e-3,0.1
    --epochs 25)
FZ=(hyena --task fuzzy-in-context-recall --config 1e-3,0 --config 5e-4,0.1 --epochs 45)
panel() {   # the panel's sweep of one setting for the bundled arm, in a fresh run directory
  local dir; dir=$(mktemp -d /tmp/hyena_nan_runs.XXXX)
  python3 benchmarks/fidelity.py run --pairs '' --arms hyena --panel selective-copying \
    --jobs 1 --run-dir "$dir" >> "$LOG" 2>&1
  python3 - "$dir" >> "$LOG" 2>&1 <<'EOF'
import sys
from pathlib import Path
from madbench.store import ResultsStore
for r in sorted(ResultsStore(Path(sys.argv[1]) / "hyena", create=False).records(),
                key=lambda r: (r["lr"], r["weight_decay"])):
    print(f"  lr {r['lr']:g} wd {r['weight_decay']:g}: accuracy {r['accuracy']:.3f}, "
          f"diverged {r['diverged']} at epoch {r['epochs']}")
EOF
}
{
  echo "== 1. divergence.py, no MPS"
  python3 benchmarks/divergence.py "${SC[@]}"
  python3 benchmarks/divergence.py "${FZ[@]}" --variants panel,reference-kernels
  echo "== 3a. the panel's sweep of selective copying, alone, no MPS"
} >> "$LOG" 2>&1
panel
if exports=$(python3 benchmarks/mps.py start /tmp/hyena_nan_mps 2>> "$LOG"); then
  eval "$exports"
  {
    echo "== 2. divergence.py under MPS"
    python3 benchmarks/divergence.py "${SC[@]}" --variants panel,reference-kernels
    echo "== 3b. the panel's sweep of selective copying, alone, under MPS"
  } >> "$LOG" 2>&1
  panel
  python3 benchmarks/mps.py stop /tmp/hyena_nan_mps
else
  echo "MPS could not start (above): steps 2 and 3b skipped" >> "$LOG"
fi
cat "$LOG"
