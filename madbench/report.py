"""Rendering result documents (``madbench.results``): a per-task table (plain or markdown), JSON,
architectures side by side, an HTML page and PNG figures. The only place results are rendered;
``madbench.html_report`` and ``madbench.figures`` draw what this module hands them."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from . import figures as fg
from .errors import UsageError
from .cli.progress import plural
from .html_report import html_page
from .records import group_records, series_labels, series_name

# scoring, curves and results (numpy) are imported where they are used: the CLI imports this
# module at start-up (`madbench eval --help`).

FORMATS = ("table", "json", "markdown")


def as_document(results: Any) -> dict[str, Any]:
    """The JSON form of a result: a ``Results``'s ``to_dict``, or a document already in that
    form with its ``partial`` computed afresh (``results.partial``: the document may have been
    edited since it was written)."""
    if not isinstance(results, dict):
        return results.to_dict()
    from .results import partial
    return {**results, "partial": partial(results)}


def number(x) -> str:
    """A score with three decimals; ``-`` for none."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def label(doc: dict[str, Any]) -> str:
    """``MAD score`` over the six MAD tasks, else ``mean of N tasks`` (see score_label)."""
    from .scoring import score_label
    return doc.get("score_label") or score_label(doc["tasks"])


def common_label(docs: Sequence[dict[str, Any]]) -> str:
    """The name of the mean row when several results are shown together."""
    labels = {label(d) for d in docs}
    return labels.pop() if len(labels) == 1 else "mean of its tasks"


def _tabulate(rows, headers, markdown: bool, colalign) -> str:
    from tabulate import tabulate
    return tabulate(rows, headers=headers, disable_numparse=True, colalign=colalign,
                    tablefmt="github" if markdown else "simple")


def json_text(doc: Any) -> str:
    """``doc`` as standard JSON: a non-finite number (a diverged run's loss) becomes null,
    which every JSON parser reads (``NaN`` is Python's extension)."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(doc), indent=2, allow_nan=False)


def render(results: Any, fmt: str, name: str | None = None) -> str:
    """One result as a per-task table (``table`` or ``markdown``) or ``json``, headed by
    ``name`` (as ``series_labels`` names its record group among others; ``label_among``), else
    by ``series_name`` of its architecture and protocol."""
    doc = as_document(results)
    if fmt == "json":
        return json_text(doc)
    tasks = doc.get("results") or {t: {"score": v} for t, v in doc["tasks"].items()}
    with_stderr = any(r.get("stderr") is not None for r in tasks.values())
    rows = [[task, number(r["score"]), len(r.get("settings") or {}) or "-"] +
            ([number(r.get("stderr"))] if with_stderr else []) for task, r in tasks.items()]
    rows.append([label(doc), number(doc["mad_score"]), ""] + ([""] if with_stderr else []))
    if name is None:
        name = series_name(doc["architecture"]["name"], doc["protocol"]["name"],
                           doc["protocol"].get("standard", True))
    title = f"{name} — metric {doc['metric']}, {plural(doc['runs'], 'run')}"
    table = _tabulate(rows, ["task", "score", "settings"] + (["stderr"] if with_stderr else []),
                      fmt == "markdown", ("left", "right", "right", "right"))
    extra = []
    if doc.get("confidence_interval"):
        lo, hi = doc["confidence_interval"]
        extra.append(f"95% bootstrap interval over seeds: [{lo:.3f}, {hi:.3f}]")
    if doc.get("flags"):
        extra.append("flags: " + ", ".join(doc["flags"]))
    extra += notes(doc)
    return "\n".join([title, "", table, *extra])


def notes(doc: dict[str, Any], name: str | None = None) -> list[str]:
    """The lines said under a result (``report``, ``eval``, ``compare``, the HTML page): what
    it lacks of its protocol (``partial: ...``), and the sweeps whose every run diverged (their
    best run is a diverged one, scored 0: ``diverged: ...``); ``name`` (compare's column)
    follows the kind: ``partial: NAME: ...``."""
    about = f"{name}: " if name else ""
    lines = [f"partial: {about}{note}" for note in (doc["partial"] or {}).get("notes", [])]
    settings = doc.get("settings") or []
    gone = [s for s in settings if s["best"].get("diverged")]
    if gone:
        seeds = len({s["seed"] for s in settings}) > 1
        named = ", ".join(f"{s['task']} {s['setting']}" + (f" seed {s['seed']}" if seeds else "")
                          for s in gone[:3]) + (", ..." if len(gone) > 3 else "")
        lines.append(f"diverged: {about}every run of {len(gone)} of {len(settings)} (setting, "
                     f"seed) sweeps diverged ({named}); each scores 0")
    return lines


def render_all(results: Sequence[Any], fmt: str,
               names: Sequence[str] | None = None) -> str:
    """Several results: one block each (headed by ``names`` when given), or one JSON list (a
    single object for one)."""
    docs = [as_document(r) for r in results]
    if fmt == "json":
        return json_text(docs if len(docs) > 1 else docs[0])
    return "\n\n".join(render(d, fmt, name)
                       for d, name in zip(docs, names or [None] * len(docs)))


def label_among(results: Any, records: Sequence[dict]) -> str | None:
    """The name ``series_labels`` gives the group of ``results`` (by architecture and protocol
    hash) among the groups of the eval ``records`` (``group_records``): what ``render_groups``
    heads it with. None if absent."""
    groups = list(group_records(records).values())
    doc = as_document(results)
    key = (doc["architecture"]["hash"], doc["protocol"]["hash"])
    return next((name for g, name in zip(groups, series_labels(groups))
                 if (g[0]["arch_hash"], g[0]["protocol_hash"]) == key), None)


def render_groups(groups: Sequence[Sequence[dict]], fmt: str) -> str:
    """The record ``groups`` one block each (``render_all``), each headed by the name that
    ``series_labels`` gives it, as compare, plot and the HTML page name it: results of one
    architecture under two protocols are told apart."""
    from .results import Results
    return render_all([Results.from_records(g) for g in groups], fmt, series_labels(groups))


def compare(groups: Sequence[Sequence[dict]], fmt: str) -> str:
    """The record ``groups`` side by side: one column per architecture and protocol, named by
    ``series_labels`` (as plot names them), which JSON keys by."""
    from .results import Results
    docs = [as_document(Results.from_records(g)) for g in groups]
    labels = series_labels(groups)
    if fmt == "json":
        return json_text({name: {"mad_score": d["mad_score"], "score_label": label(d),
                                 "tasks": d["tasks"], "partial": d["partial"],
                                 "architecture": {k: d["architecture"][k] for k in
                                                  ("name", "hash")},
                                 "protocol": {k: d["protocol"].get(k) for k in
                                              ("name", "hash", "standard", "overrides")}}
                          for name, d in zip(labels, docs)})
    tasks = sorted({t for d in docs for t in d["tasks"]})
    headers = ["task"] + [name if fmt == "markdown" else name.replace(" [", "\n[", 1)
                          for name in labels]     # a markdown header is one line
    rows = [[t] + [number(d["tasks"].get(t)) for d in docs] for t in tasks]
    rows.append([common_label(docs)] + [number(d["mad_score"]) for d in docs])
    table = _tabulate(rows, headers, fmt == "markdown", ("left",) + ("right",) * len(docs))
    said = [line for name, d in zip(labels, docs) for line in notes(d, name)]
    return "\n\n".join([table, "\n".join(said)]) if said else table


def write_html(path: str | Path, groups: Sequence[Sequence[dict]],
               run_dirs: Sequence[str]) -> None:
    """A self-contained page of the record ``groups`` (one per architecture and protocol):
    tables, bars and difficulty curves (when matplotlib is installed), provenance."""
    from .curves import difficulty_curves
    from .results import Results
    docs = [as_document(Results.from_records(g)) for g in groups]
    labels = series_labels(groups)
    figures, note = {}, None
    try:
        figures["Scores per task"] = fg.svg(fg.bars_figure(docs, labels, common_label(docs)))
        curves = difficulty_curves(groups)
        if curves:
            figures["Difficulty curves"] = fg.svg(fg.curves_figure(
                curves, docs[0]["metric"], labels))
        else:
            note = ("No difficulty curves: only baseline settings are stored (evaluate with "
                    "--settings all, or setting names such as vocab_size=512).")
    except UsageError as exc:
        note = f"No figures: {exc}"
    Path(path).write_text(html_page(docs, labels, [notes(d) for d in docs],
                                    [str(d) for d in run_dirs], figures, common_label(docs),
                                    note), encoding="utf-8")


def plot(path: str | Path, groups: Sequence[Sequence[dict]], kind: str = "bars") -> None:
    """``bars`` (per-task scores per architecture, the paper's Fig. 3.7) or ``curves`` (its
    difficulty curves, Figs. B.2-B.7) of the record ``groups``, written as an image."""
    from .curves import difficulty_curves
    from .results import Results
    if kind == "bars":
        docs = [Results.from_records(g).to_dict() for g in groups]
        fig = fg.bars_figure(docs, series_labels(groups), common_label(docs))
    else:
        fig = fg.curves_figure(difficulty_curves(groups),
                               groups[0][0].get("selection") or "accuracy",
                               series_labels(groups))
    fg.save(fig, str(path))
