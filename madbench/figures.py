"""Figures of stored results (matplotlib, the optional ``plot`` extra): per-task bars of each
architecture (like the paper's Fig. 3.7) and the difficulty curves of ``madbench.curves`` (like
its Figs. B.2-B.7). ``madbench plot`` writes them as PNG, ``madbench report --html`` embeds
them as SVG."""
from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any, Sequence

from .errors import UsageError

INSTALL_HINT = ("pip install matplotlib (in a madbench checkout: pip install -e '.[plot]'; "
                "from PyPI: pip install 'madbench[plot]')")


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a usage error naming the install command."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    return plt


def image_path(path: str, option: str) -> None:
    """A usage error unless matplotlib can write ``path`` (its suffix names a format it
    writes); checked before any work, so that a bad name never costs the work before it."""
    plt = pyplot()
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in formats:
        raise UsageError(f"{option} {path}: matplotlib cannot write "
                         f"{suffix or 'a file without a '}{' files' if suffix else 'suffix'} "
                         f"(use one of: {', '.join(sorted(formats))})")


def bars_figure(summaries: Sequence[dict[str, Any]], names: Sequence[str],
                mean_label: str):
    """Per-task scores, one bar per architecture and protocol (named by ``names``,
    ``madbench.records.series_labels``), plus the mean of the tasks, labelled ``mean_label``
    (``madbench.report.common_label``)."""
    import numpy as np
    plt = pyplot()
    tasks = sorted({t for s in summaries for t in s["tasks"]})
    labels = tasks + [mean_label]
    width = 0.8 / len(summaries)
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 4))
    for i, s in enumerate(summaries):
        values = [s["tasks"].get(t, np.nan) for t in tasks] + [s["mad_score"]]
        ax.bar(np.arange(len(labels)) + i * width - 0.4 + width / 2, values, width,
               label=names[i])
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel(f"score ({summaries[0]['metric']})")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _log_scale(xs: Sequence[float]) -> bool:
    return min(xs) > 0 and max(xs) / min(xs) >= 4


def curves_figure(curves: dict[str, dict[str, dict[str, list[tuple[float, float]]]]],
                  metric: str = "accuracy", order: Sequence[str] = ()):
    """One panel per (task, variable): the score of each architecture against the variable,
    one line each; a row per task. ``order``: the series in the order (and colours) of the
    bars."""
    plt = pyplot()
    if not curves:
        raise UsageError("no difficulty curves: the runs hold only baseline settings (evaluate "
                         "with --settings all, or names such as vocab_size=512)")
    cols = max(len(v) for v in curves.values())
    fig, axes = plt.subplots(len(curves), cols, squeeze=False,
                             figsize=(max(3.4 * cols, 7.0), 2.8 * len(curves) + 0.6))
    present = {label for v in curves.values() for c in v.values() for label in c}
    series = [s for s in order if s in present] + sorted(present - set(order))
    colors = {label: f"C{i % 10}" for i, label in enumerate(series)}
    for row, (task, variables) in enumerate(curves.items()):
        for col in range(cols):
            ax = axes[row][col]
            if col >= len(variables):
                ax.axis("off")
                continue
            variable, lines = list(variables.items())[col]
            xs = [x for points in lines.values() for x, _ in points]
            for label in [s for s in series if s in lines]:
                points = lines[label]
                ax.plot([x for x, _ in points], [y for _, y in points], marker="o",
                        color=colors[label], label=label)
            if _log_scale(xs):
                ax.set_xscale("log", base=2)
                ax.minorticks_off()
            ticks = sorted(set(xs))
            ax.set_xticks(ticks, [f"{x:g}" for x in ticks], fontsize="small")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{task}", fontsize="medium")
            ax.set_xlabel(variable.replace("_", " "))
            if col == 0:
                ax.set_ylabel(metric.replace("_", " "))
            ax.grid(alpha=0.3)
    handles, names = [], []
    for ax in fig.axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    order_of = {s: i for i, s in enumerate(series)}
    pairs = sorted(zip(handles, names), key=lambda hn: order_of.get(hn[1], 0))
    fig.legend([h for h, _ in pairs], [n for _, n in pairs], loc="lower center",
               ncol=min(len(names), 3), fontsize="small", frameon=False)
    rows = math.ceil(len(names) / 3)
    fig.tight_layout(rect=(0, min(0.3, 0.35 * rows / fig.get_figheight()), 1, 1))
    return fig


def save(fig, path: str) -> None:
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def svg(fig) -> str:
    """The figure as an inline ``<svg>`` element (text kept as text)."""
    import matplotlib
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    pyplot().close(fig)
    text = buffer.getvalue()
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)
