"""Figures of scaling fits (matplotlib, the optional ``plot`` extra)."""
from __future__ import annotations

import numpy as np

from ..figures import pyplot
from .table import by_arch


def plot_fits(rows, fits: dict, params_column: str, path: str) -> None:
    """IsoFLOP curves with their vertices (left) and the compute-optimal size against the
    budget (right), per architecture, written as an image to ``path``."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    groups = by_arch(rows)
    for k, (arch, entry) in enumerate(fits.items()):
        color = f"C{k % 10}"
        pts = groups[arch]
        left.scatter([r[params_column] for r in pts], [r["loss"] for r in pts], s=12,
                     color=color, alpha=0.6)
        a2 = entry.get("approach2") or {}
        for g in a2.get("groups", []):
            if g["coeffs"] is None:
                continue
            p0, p1, p2 = g["coeffs"]
            xs = np.linspace(*np.log(g["params_range"]), 50)
            left.plot(np.exp(xs), p0 + p1 * xs + p2 * xs * xs, color=color, lw=0.8)
            left.annotate(f"C={g['budget']:.2g}", (np.exp(xs[-1]), p0 + p1 * xs[-1]
                                                  + p2 * xs[-1] ** 2), fontsize=7,
                          color=color, xytext=(3, 0), textcoords="offset points")
            if g["valid"]:
                left.scatter([g["n_opt"]], [g["loss_opt"]], marker="*", s=80, color=color)
        valid = [g for g in a2.get("groups", []) if g["valid"]]
        if valid:
            right.scatter([g["budget"] for g in valid], [g["n_opt"] for g in valid],
                          color=color, label=arch)
            law = a2.get("n_opt_law")
            if law:
                cs = np.geomspace(min(g["budget"] for g in valid),
                                  max(g["budget"] for g in valid), 20)
                right.plot(cs, law["coef"] * cs ** law["exponent"], color=color, lw=1,
                           label=f"N* ~ C^{law['exponent']:.3f}")
    left.set(xscale="log", xlabel=f"{params_column}", ylabel="loss",
             title="IsoFLOP curves (stars: vertices)")
    for k, arch in enumerate(fits):
        left.plot([], [], color=f"C{k % 10}", label=arch)
    left.legend(fontsize=8)
    right.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="N*",
              title="compute-optimal size")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
