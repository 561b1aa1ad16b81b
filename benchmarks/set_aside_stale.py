"""Move the run records that today's code would not submit out of the way: those made by
another run version (madbench's version plus its training code) or by other code of the
architecture (another architecture hash). ``madbench leaderboard submit`` refuses a run
directory that mixes them with current ones, and a sweep never resumes them, so a board sweep
resumed from an older tarball (``benchmarks/boards_gpu.sh``) sets them aside first, into
``RUNS/stale/ARCH/`` (itself a run directory), where they stay as a record.

    python3 benchmarks/set_aside_stale.py runs/boards hyena-swiglu mamba
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from madbench.architecture import resolve_architecture
from madbench.code_identity import run_version
from madbench.store import RECORDS


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    runs, version = Path(sys.argv[1]), run_version()
    for arch in sys.argv[2:]:
        directory, current = runs / arch, resolve_architecture(arch).hash
        moved = 0
        for path in sorted((directory / RECORDS).glob("[!.]*.parquet")):
            row = pq.read_table(path, columns=["madbench_version", "arch_hash"]).to_pylist()[0]
            if (row["madbench_version"], row["arch_hash"]) != (version, current):
                target = runs / "stale" / arch / RECORDS
                target.mkdir(parents=True, exist_ok=True)
                path.rename(target / path.name)
                moved += 1
        if moved:
            print(f"{arch}: {moved} records of other code set aside in {runs / 'stale' / arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
