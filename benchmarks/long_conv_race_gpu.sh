#!/usr/bin/env bash
# Is the long convolution a race under load (benchmarks/long_conv_race.py)? One GPU call: the
# repeat test solo, six at once without and with MPS, compute-sanitizer racecheck and
# initcheck, then the panel's selective-copying training twelve at once under MPS.
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
export PYTHONUNBUFFERED=1
R="python3 benchmarks/long_conv_race.py"
echo "== solo"; $R --iters 1000
echo "== 6 at once, no MPS"; for i in 1 2 3 4 5 6; do $R --iters 1000 & done; wait
if exports=$(python3 benchmarks/mps.py start /tmp/race_mps); then eval "$exports"
  echo "== 6 at once, MPS"; for i in 1 2 3 4 5 6; do $R --iters 1000 & done; wait
  python3 benchmarks/mps.py stop /tmp/race_mps; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi
S=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
echo "== sanitizer: ${S:-none}"
if [ -n "$S" ]; then
  for tool in racecheck initcheck; do echo "-- $tool"
    timeout 100 $S --tool $tool --print-limit 5 python3 benchmarks/long_conv_race.py --lengths 128,127 --batch 128 --channels 8 --iters 1 2>&1 | tail -15
  done
fi
# the panel's training under load: 12 divergence.py processes at once under MPS, half with the
# Triton kernels (panel), half with the PyTorch ops (reference-kernels), selective copying
if exports=$(python3 benchmarks/mps.py start /tmp/race_mps2); then eval "$exports"
  echo "== 12 divergence.py at once, MPS"
  for i in 1 2 3 4 5 6; do
    for v in panel reference-kernels; do
      python3 benchmarks/divergence.py hyena --task selective-copying --config 1e-4,0.1 \
        --config 1e-3,0 --config 5e-4,0 --epochs 40 --variants $v 2>&1 | grep -v "^torch" &
    done
  done; wait
  python3 benchmarks/mps.py stop /tmp/race_mps2
fi
