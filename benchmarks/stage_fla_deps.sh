#!/usr/bin/env bash
# What the fla part of issue #16 carries to an H200 machine (docs/ecosystem.md), made on this
# machine in one go (about 6 minutes, mostly xz): fla's two wheels in .whl, and Triton 3.7.1 for
# Python 3.12 unpacked with its file modes, stripped of what an H200 never loads (the Blackwell
# ptxas, the profiler's CUPTI and Proton libraries), xz-packed and split by stage.sh into
# .stage/triton-1 and .stage/triton-2 (each under one call's 64 MiB). All ignored paths.
#   bash benchmarks/stage_fla_deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl \
  fla-core==0.6.0 flash-linear-attention==0.6.0
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 -d "$work/wheel" triton==3.7.1
mkdir "$work/tree"
python3 - "$work" <<'PY'
import glob, os, sys, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/wheel/triton-3.7.1-*.whl")[0])
for info in wheel.infolist():            # keep the files' modes: ptxas must stay executable
    path, mode = wheel.extract(info, f"{work}/tree"), (info.external_attr >> 16) & 0o777
    if mode:
        os.chmod(path, mode)
PY
(cd "$work/tree" && rm -r triton/backends/nvidia/bin/ptxas-blackwell \
  triton/backends/nvidia/lib/cupti triton/_C/libproton.so \
  triton/instrumentation/libGPUInstrumentationTestLib.so \
  && tar -cf - triton triton-3.7.1.dist-info) | xz -9 -T2 > "$work/triton371-h200.tar.xz"
bash benchmarks/stage.sh split "$work/triton371-h200.tar.xz" triton
ls -l .whl .stage/triton-*
