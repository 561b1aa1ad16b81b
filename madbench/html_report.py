"""``madbench report --html``: one self-contained page (no scripts, no network) of stored
results that a user can open or attach to a pull request: per-task tables, the bars and the
difficulty curves (inline SVG, when matplotlib is installed), each best run, and the
provenance (versions, commit, device, protocol, architecture, checks, run directories)."""
from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any, Sequence

from . import __version__

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1b1f24; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.25rem;
border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; } .muted { color: #57606a; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { padding: .25rem .7rem;
border-bottom: 1px solid #d0d7de; text-align: left; } td.num { text-align: right;
font-variant-numeric: tabular-nums; } tr.total td { font-weight: 600; border-top: 2px solid
#8c959f; } .flag { color: #9a6700; font-weight: 600; } figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; } code, pre { font-size: .85rem; background:
#f6f8fa; padding: .1rem .3rem; border-radius: 4px; } pre { padding: .6rem; overflow-x: auto; }
details { margin: .5rem 0; }
"""


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else escape(str(x))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool],
           total_last: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="total"' if total_last and i == len(rows) - 1 else ""
        cells = "".join(f'<td class="num">{_fmt(v)}</td>' if num else f"<td>{_fmt(v)}</td>"
                        for v, num in zip(row, numeric))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _overrides(protocol: dict[str, Any]) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in protocol.get("overrides") or [])


def _heading(label: str) -> str:
    """A result's name (``series_labels``), its bracketed protocol part muted."""
    name, bracket, rest = label.partition(" [")
    return escape(name) + (f' <span class="muted">[{escape(rest)}</span>' if bracket else "")


def _summary_section(s: dict[str, Any], label: str, notes: Sequence[str]) -> str:
    results = s.get("results") or {t: {"score": v} for t, v in s["tasks"].items()}
    rows = [[t, r["score"], r.get("stderr"), len(r.get("settings") or {}), r.get("version")]
            for t, r in results.items()]
    rows.append([s["score_label"], s["mad_score"], None, None, None])
    proto = s["protocol"]
    standard = "" if proto.get("standard", True) else \
        f' <span class="flag">non-standard: {escape(_overrides(proto))}</span>'
    flags = (f'<p class="flag">flags: {escape(", ".join(s["flags"]))}</p>'
             if s.get("flags") else "")
    flags += "".join(f'<p class="flag">{escape(line)}</p>' for line in notes)
    interval = ""
    if s.get("confidence_interval"):
        lo, hi = s["confidence_interval"]
        interval = f"<p>95% bootstrap interval over seeds: [{lo:.3f}, {hi:.3f}]</p>"
    best = [[x["task"], x["setting"], x["seed"], x["best"]["lr"], x["best"]["weight_decay"],
             x["best"]["accuracy"], x["best"]["macro_accuracy"], x["runs"]]
            for x in s.get("settings", [])]
    return (f"<h2>{_heading(label)}</h2>"
            f"<p>metric {escape(s['metric'])}, {s['runs']:,} run{'s' * (s['runs'] != 1)}, "
            f"protocol hash <code>{escape(str(proto.get('hash')))}</code>{standard}</p>"
            + _table(["task", "score", "stderr", "settings", "version"], rows,
                     [False, True, True, True, True], total_last=True)
            + interval + flags
            + "<details><summary>best run of each setting's sweep</summary>"
            + _table(["task", "setting", "seed", "lr", "weight decay", "accuracy",
                      "macro accuracy", "runs"], best,
                     [False, False, True, True, True, True, True, True])
            + "</details>")


def _provenance_section(summaries: Sequence[dict[str, Any]], labels: Sequence[str],
                        run_dirs: Sequence[str]) -> str:
    parts = ["<h2>Provenance</h2>",
             f"<p>run directories: {', '.join(f'<code>{escape(d)}</code>' for d in run_dirs)}"
             "</p>"]
    for s, label in zip(summaries, labels):
        p = s.get("provenance") or {}
        rows = [["madbench", p.get("madbench_version")], ["git commit", p.get("git_commit")],
                ["python", p.get("python")], ["torch", p.get("torch")],
                ["triton", p.get("triton")], ["cuda", p.get("cuda")],
                ["device", f"{p.get('device')} ({p.get('device_name')})"],
                ["plugins", ", ".join(f"{x['name']} {x.get('version') or ''}".strip()
                                      for x in p.get("plugins", []))],
                ["architecture hash", s["architecture"]["hash"]]]
        spec = json.dumps({"architecture": s["architecture"].get("spec"),
                           "checks": s["architecture"].get("checks"),
                           "protocol": s["protocol"]}, indent=2, default=str)
        parts.append(f"<h3>{escape(label)}</h3>"
                     + _table(["", ""], rows, [False, False])
                     + "<details><summary>architecture, checks and protocol as stored</summary>"
                     f"<pre>{escape(spec)}</pre></details>")
    return "".join(parts)


def html_page(summaries: Sequence[dict[str, Any]], labels: Sequence[str],
              notes: Sequence[Sequence[str]], run_dirs: Sequence[str], figures: dict[str, str],
              mean_label: str, note: str | None = None) -> str:
    """The page of result documents (each with its ``score_label``), as ``madbench.report``
    hands them, named by ``labels`` (``madbench.records.series_labels``), each with the lines
    said under it (``notes``, ``madbench.report.notes``): ``mean_label`` names
    the mean row side by side (``madbench.report.common_label``); ``figures``: title -> inline
    SVG (empty when matplotlib is absent, ``note`` then says so)."""
    names = ", ".join(labels)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    sections = []
    if len(summaries) > 1:
        tasks = sorted({t for s in summaries for t in s["tasks"]})
        rows = [[t] + [s["tasks"].get(t) for s in summaries] for t in tasks]
        rows.append([mean_label] + [s["mad_score"] for s in summaries])
        sections.append("<h2>Side by side</h2>" + _table(
            ["task", *labels], rows,
            [False] + [True] * len(summaries), total_last=True))
    for title, svg in figures.items():
        sections.append(f"<h2>{escape(title)}</h2><figure>{svg}</figure>")
    if note:
        sections.append(f'<p class="muted">{escape(note)}</p>')
    sections += [_summary_section(s, name, lines)
                 for s, name, lines in zip(summaries, labels, notes)]
    sections.append(_provenance_section(summaries, labels, run_dirs))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>madbench report: {escape(names)}</title><style>{STYLE}</style></head>"
            f"<body><h1>madbench report</h1><p class=\"muted\">{escape(names)} — generated "
            f"{now} by madbench {__version__}</p>{''.join(sections)}</body></html>\n")
