#!/usr/bin/env bash
# Issue #19 item 4: IsoFLOP frontiers of the paper's Fig. 4.1 Hyena variants on one GPU, in a
# time-limited call (docs/scaling.md, "Frontiers of the Hyena variants"). The families train side
# by side, budget by budget, on the stored frontiers' recipe (corpus kjv, sequence length 256,
# batch 128) with the stored frontiers' sizes per budget (the 1:11 experts family at depth 12,
# where its ratio is exact; 1e15 is not stored for these four: its ladders are a first guess).
# Every finished run is stored; no run starts that would not finish by DEADLINE seconds (default
# 500; `scaling run --time-limit`, which exits 4 then), one that overruns is killed 30 s past it,
# and the same call with the returned records resumes (SEED_RUNS=tarball: merged into runs/scaling,
# nothing there overwritten; never carry runs/scaling itself into a warm machine). Leaves in $OUT:
# frontiers.log and scaling_runs.tgz. Then, on any machine, per family F: `madbench scaling fit
# runs/scaling/F` and `madbench scaling frontier runs/scaling/F/isoflop.parquet --command "<the
# commands in frontiers.log>"`.
#   FAMILIES="mh-hyena striped-mh-hyena" DEADLINE=480 bash benchmarks/frontiers_gpu.sh
set -u
OUT=${OUT:-/tmp/frontiers_out}; mkdir -p "$OUT" runs/scaling
LOG="$OUT/frontiers.log"; : > "$LOG"
D=${DEADLINE:-500}
case "$D" in ''|*[!0-9]*) echo "error: DEADLINE must be a whole number of seconds, not '$D'" >&2; exit 2 ;; esac
FAMILIES=${FAMILIES:-mh-hyena striped-mh-hyena striped-hyena-moe striped-hyena-experts-moe}
BUDGETS=${BUDGETS:-3e13 1e14 3e14 1e15}
if [ -n "${SEED_RUNS:-}" ]; then
  tar -xzf "$SEED_RUNS" --skip-old-files || { echo "error: cannot unpack SEED_RUNS=$SEED_RUNS" >&2; exit 2; }
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
sizes() {   # the sizes a budget runs for a family: the stored frontiers' ladders
  if [ "$1" = striped-hyena-experts-moe ]; then
    case "$2" in
      3e13) echo 16x12,24x12,32x12,48x12,64x12,96x12,128x12,160x12 ;;
      1e14) echo 32x12,48x12,64x12,96x12,128x12,160x12 ;;
      3e14) echo 32x12,48x12,64x12,96x12 ;;
      1e15) echo 48x12,64x12,96x12,128x12 ;;
      *) echo "error: no size ladder for budget $2" >&2; return 1 ;;
    esac; return
  fi
  case "$1:$2" in striped-hyena-moe:3e14) echo 64x3,96x3,128x4,160x5,192x6,256x6; return ;; esac
  case "$2" in
    3e13) echo 48x2,64x2,64x3,96x3,128x4 ;;
    1e14) echo 64x3,96x3,128x4,160x5,192x6 ;;
    3e14) echo 96x3,128x4,160x5,192x6,256x6 ;;
    1e15) echo 128x4,160x5,192x6,256x6,256x8 ;;
    *) echo "error: no size ladder for budget $2" >&2; return 1 ;;
  esac
}
for f in $FAMILIES; do for b in $BUDGETS; do sizes "$f" "$b" > /dev/null || exit 2; done; done
end=$((SECONDS + D))
for f in $FAMILIES; do
  (
    for b in $BUDGETS; do
      left=$((end - SECONDS)); [ "$left" -gt 10 ] || break
      cmd="madbench scaling run --arch $f --budgets $b --sizes $(sizes "$f" "$b") --batch-size 128 --device ${DEVICE:-cuda} --run-dir runs/scaling/$f"
      echo "[$f] $cmd" >> "$LOG"
      timeout "$((left + 30))" $cmd --time-limit "$left" >> "$OUT/$f.part.log" 2>&1
      echo "[$f] budget $b: exit $? after $((SECONDS)) s" >> "$LOG"
    done
  ) &
done
wait
for f in $FAMILIES; do { echo "== $f"; tail -n 20 "$OUT/$f.part.log" 2>/dev/null; } >> "$LOG"; rm -f "$OUT/$f.part.log"; done
tar -czf "$OUT/scaling_runs.tgz" runs/scaling
grep '^\[' "$LOG"
