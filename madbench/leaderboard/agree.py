"""Do two boards agree? For the architectures on both (matched by architecture hash), per task
and on the MAD score: how many, the Spearman rank correlation of their scores, the mean
absolute difference and the mean difference (second minus first: a board that reads a task
higher or lower throughout). Tasks an entry does not cover are left out, never filled in."""
from __future__ import annotations

from pathlib import Path

from .boards import suite_tasks
from .render import board_entries, covered, markdown_text

OVERALL = "MAD score"


def _by_architecture(root: Path, board: str) -> dict[str, dict]:
    entries = {}
    for path, doc in board_entries(root, board):
        entries.setdefault(doc["architecture"]["hash"], doc)   # validation allows one per board
    return entries


def agreement_row(pairs: list[tuple[str, float, float]]) -> dict:
    """(name, first score, second score) of each architecture: their count and names, the
    Spearman rank correlation (None under 3 or without spread on either side), the mean
    absolute difference and the mean difference (second minus first; None for no pairs)."""
    from scipy import stats
    row = {"architectures": len(pairs), "names": [name for name, _, _ in pairs],
           "scores": [[a, b] for _, a, b in pairs], "spearman": None, "mean_abs_diff": None,
           "mean_diff": None}
    if pairs:
        row["mean_abs_diff"] = sum(abs(a - b) for _, a, b in pairs) / len(pairs)
        row["mean_diff"] = sum(b - a for _, a, b in pairs) / len(pairs)
    a, b = [p[1] for p in pairs], [p[2] for p in pairs]
    if len(pairs) >= 3 and len(set(a)) > 1 and len(set(b)) > 1:   # a rank needs some spread
        row["spearman"] = float(stats.spearmanr(a, b).statistic)
    return row


def agreement(root: str | Path, first: str, second: str) -> dict:
    """Per task and for the MAD score (only over entries that cover every task on both
    boards): {"architectures", "names", "scores" ([first, second] per name), "spearman" (None
    under 3 or no spread), "mean_abs_diff" (``first`` minus ``second``, absolute),
    "mean_diff" (``second`` minus ``first``)}; and the seeds of each architecture's two
    entries."""
    root = Path(root)
    a, b = _by_architecture(root, first), _by_architecture(root, second)
    common = sorted(set(a) & set(b), key=lambda h: a[h]["architecture"]["name"])
    tasks = [t.name for t in suite_tasks()]
    rows = {}
    for task in tasks:
        rows[task] = agreement_row([(a[h]["architecture"]["name"], a[h]["scores"][task],
                                     b[h]["scores"][task]) for h in common
                                    if a[h]["scores"].get(task) is not None
                                    and b[h]["scores"].get(task) is not None])
    complete = [h for h in common if covered(a[h], tasks) == covered(b[h], tasks) == len(tasks)]
    rows[OVERALL] = agreement_row([(a[h]["architecture"]["name"], a[h]["scores"]["overall"],
                                    b[h]["scores"]["overall"]) for h in complete])
    seeds = {a[h]["architecture"]["name"]: [a[h]["seeds"], b[h]["seeds"]] for h in common}
    return {"first": first, "second": second, "common": len(common), "rows": rows,
            "seeds": seeds}


def agreement_table(result: dict) -> str:
    """Markdown: one row per task and one for the MAD score, then each measured task's scores
    per architecture (with the seeds where the boards' entries differ)."""
    lines = [f"`{result['first']}` against `{result['second']}`: {result['common']} "
             "architectures on both boards.", "",
             f"| task | architectures | Spearman | mean abs. difference | mean difference "
             f"(`{result['second']}` - `{result['first']}`) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [row_line(task, row) for task, row in result["rows"].items()]
    for task, row in result["rows"].items():
        if not row["architectures"]:
            continue
        notes = {name: f" (seeds {_seeds(sa)} / {_seeds(sb)})"
                 for name, (sa, sb) in result["seeds"].items() if sa != sb}
        lines += ["", f"{task}:", "", *scores_lines(row, result["first"], result["second"], notes)]
    return "\n".join(lines)


def scores_lines(row: dict, first: str, second: str, notes: dict | None = None) -> list[str]:
    """Markdown: an ``agreement_row``'s score per architecture on each side, with its rank
    there (1st the highest; equal scores share a rank); ``notes`` follow a name."""
    ranks = [_ranks([pair[side] for pair in row["scores"]]) for side in (0, 1)]
    lines = [f"| architecture | `{first}` | `{second}` |", "| --- | ---: | ---: |"]
    for i, (name, (a, b)) in enumerate(zip(row["names"], row["scores"])):
        lines.append(f"| {markdown_text(name)}{(notes or {}).get(name, '')} | "
                     f"{a:.3f} ({ranks[0][i]}) | {b:.3f} ({ranks[1][i]}) |")
    return lines


def _ranks(scores: list[float]) -> list[str]:
    """Each score's place among ``scores``, highest first, as '1st', '2nd', ...; ties share
    the better place (0.9, 0.5, 0.5, 0.1 -> 1st, 2nd, 2nd, 4th)."""
    from scipy.stats import rankdata

    def ordinal(n: int) -> str:
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"
    return [ordinal(int(n)) for n in rankdata([-s for s in scores], method="min")]


def row_line(name: str, row: dict) -> str:
    """One markdown row of an ``agreement_row``: name, count, Spearman, mean absolute and mean
    difference, a dash for what is not measured."""
    rho = "—" if row["spearman"] is None else f"{row['spearman']:+.2f}"
    diff = "—" if row["mean_abs_diff"] is None else f"{row['mean_abs_diff']:.3f}"
    # the sign as measured: a mean below zero by less than 0.0005 reads -0.000
    shift = "—" if row["mean_diff"] is None else f"{row['mean_diff']:+.3f}"
    return f"| {name} | {row['architectures']} | {rho} | {diff} | {shift} |"


def _seeds(seeds: list[int]) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    runs, out = [], []
    for s in sorted(seeds):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    for lo, hi in runs:
        out.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return ", ".join(out)
