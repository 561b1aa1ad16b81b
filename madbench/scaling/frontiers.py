"""Stored IsoFLOP frontiers: ``ROOT/<corpus>/<arch>/points.parquet`` (the measured runs) and
``frontier.json`` (corpus hash, the Approach 2 fit with a bootstrap band on the compute-optimal
loss at every budget, Approach 3 when it converges, and the commands that produced them).
``madbench scaling frontier RUNS`` writes them; ``madbench scaling validate`` reads them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import MadbenchError, UsageError
from ..leaderboard.schema import InvalidSubmission, read_submission, unlinked
from ..limits import finite_number, positive_number
from ..store import encode_row
from .fits import approach2, approach3
from .table import budgets_of, by_arch, columns

SCHEMA_VERSION = 1
DEFAULT_ROOT = Path("leaderboards") / "frontiers"
#: the stored frontiers of the madbench checkout this module runs from
CHECKOUT_ROOT = Path(__file__).resolve().parents[2] / DEFAULT_ROOT


def default_root() -> Path | None:
    """Where stored frontiers are read when no folder is given: ``leaderboards/frontiers``
    under the current directory, else the madbench checkout's; None when neither exists (an
    installed wheel outside a checkout)."""
    for root in (DEFAULT_ROOT, CHECKOUT_ROOT):
        if root.is_dir():
            return root
    return None


def _safe(name: str) -> str:
    """``name`` as one folder name: other characters become ``_``, and a name of dots only
    (``.``, ``..``), which would point outside the folder, is refused."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    if not safe.strip("."):
        raise UsageError(f"{name!r} cannot name a frontier folder")
    return safe


def build_frontier(rows: Sequence[dict[str, Any]], arch: str, corpus: str, corpus_sha256: str,
                   commands: Sequence[str] = (), bootstrap: int = 200,
                   seed: int = 0) -> dict[str, Any]:
    """The frontier document of one architecture's runs."""
    params, tokens, flops, losses = columns(rows, "params", "tokens", "flops", "loss")
    fit2 = approach2(params, tokens, flops, losses, budgets_of(rows), bootstrap=bootstrap, seed=seed)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "arch": arch, "corpus": corpus,
        "corpus_sha256": corpus_sha256, "madbench_version": __version__,
        "flop_method": sorted({str(r.get("flop_method", "unknown")) for r in rows}),
        "seq_len": sorted({int(r["seq_len"]) for r in rows if r.get("seq_len")}),
        "points": len(rows), "commands": list(commands),
        "budgets": [{"budget": g.budget, "valid": g.valid, "problem": g.problem,
                     "loss_opt": g.loss_opt, "n_opt": g.n_opt, "d_opt": g.d_opt,
                     "loss_band": fit2.loss_bands.get(g.budget)} for g in fit2.groups],
        "approach2": fit2.to_dict(),
    }
    try:
        doc["approach3"] = approach3(params, tokens, losses).to_dict()
    except MadbenchError as exc:
        doc["approach3"] = {"problem": str(exc)}
    return doc


def write_frontiers(rows: Sequence[dict[str, Any]], root: str | Path,
                    commands: Sequence[str] = (), bootstrap: int = 200,
                    corpus: str | None = None) -> list[Path]:
    """Write points and frontier of every architecture in ``rows`` under ``root``; the corpus
    comes from the rows' ``corpus`` and ``corpus_sha256`` columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    places: dict[Path, tuple[str, list, str, str]] = {}   # folder -> arch, rows, corpus, sha
    for arch, arch_rows in sorted(by_arch(rows).items()):   # all checked before any is written
        shas = {r.get("corpus_sha256") for r in arch_rows}
        if len(shas) != 1 or None in shas:
            raise UsageError(f"runs of {arch!r} must all carry one corpus_sha256 (found "
                             f"{len(shas)})")
        sha = shas.pop()
        name = corpus or str(arch_rows[0].get("corpus") or sha[:12])
        folder = Path(root) / _safe(name) / _safe(arch)
        if folder in places:
            raise UsageError(f"architectures {places[folder][0]!r} and {arch!r} would share "
                             f"the frontier folder {folder}; rename one")
        places[folder] = (arch, arch_rows, name, sha)
    written = []
    for folder, (arch, arch_rows, name, sha) in places.items():
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([encode_row(r) for r in arch_rows]),
                       folder / "points.parquet")
        doc = build_frontier(arch_rows, arch, name, sha, commands, bootstrap)
        (folder / "frontier.json").write_text(json.dumps(doc, indent=2) + "\n")
        written.append(folder)
    return written


def load_frontiers(root: str | Path) -> list[dict[str, Any]]:
    """Every ``frontier.json`` under ``root`` (none when the folder does not exist), read as
    ``leaderboard validate`` reads a submission (a pull request may add or edit one): a plain
    file of at most 4 MiB, nested at most 32 levels, no NaN or duplicate keys, and no symbolic
    link on the way from ``root``."""
    root = Path(root)
    out = []
    for path in sorted(root.glob("*/*/frontier.json")) if root.is_dir() else []:
        try:
            doc = read_submission(unlinked(path, root))
        except InvalidSubmission as exc:            # exit 3, as render's for a board file
            raise InvalidSubmission(f"stored frontier {exc}") from None
        problem = frontier_problem(doc)
        if problem:
            raise InvalidSubmission(f"stored frontier {path}: {problem}")
        doc["path"] = str(path)
        out.append(doc)
    return out


def frontier_problem(doc: Any) -> str | None:
    """What a stored frontier lacks of what ``scaling validate`` reads (``arch`` and
    ``corpus_sha256`` strings; ``budgets``, each a positive ``budget``, ``valid`` a boolean,
    and where a ``loss_band`` is given, a ``loss_opt`` number and two numbers low <= high), or
    None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    for key in ("arch", "corpus_sha256"):
        if not isinstance(doc.get(key), str):
            return f"{key!r} is {'missing' if key not in doc else 'not a string'}"
    if not isinstance(doc.get("budgets"), list):
        return "'budgets' is not a list"
    for i, group in enumerate(doc["budgets"]):
        where = f"budgets[{i}]"
        if not isinstance(group, dict):
            return f"{where} is not an object"
        if not positive_number(group.get("budget")):
            return f"{where}.budget is not a positive number"
        if not isinstance(group.get("valid"), bool):
            return f"{where}.valid is not true or false"
        band = group.get("loss_band")
        if band is None:
            continue
        if not (isinstance(band, list) and len(band) == 2 and all(map(finite_number, band))
                and band[0] <= band[1]):
            return f"{where}.loss_band is not two numbers, low <= high"
        if not finite_number(group.get("loss_opt")):
            return f"{where}.loss_opt is not a number"
    return None


def band_at(frontier: dict[str, Any], budget: float) -> tuple[float, float, float] | None:
    """(loss, low, high) of the stored compute-optimal loss at ``budget``, interpolated
    linearly in log budget between the stored budgets that have a vertex and a band; None
    outside their range (or within 1% of it)."""
    pts = sorted((b["budget"], b["loss_opt"], *b["loss_band"]) for b in frontier["budgets"]
                 if b.get("valid") and b.get("loss_band"))
    if not pts:
        return None
    xs = np.log([p[0] for p in pts])
    x = math.log(budget)
    if x < xs[0] - 0.01 or x > xs[-1] + 0.01:
        return None
    x = min(max(x, xs[0]), xs[-1])
    return tuple(float(np.interp(x, xs, [p[i] for p in pts])) for i in (1, 2, 3))
