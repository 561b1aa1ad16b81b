"""The result document of one architecture under one protocol, scored from its run records.

``Results.from_records`` is the one place it is built (by ``madbench.scoring``); ``to_dict`` is
the JSON that ``madbench eval --output`` writes and ``madbench report --format json`` prints,
with what the result lacks of its protocol (``partial``); ``madbench.report`` renders it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from . import __version__
from .scoring import (best_of_sweep, bootstrap_interval, mad_score, score_label, task_scores,
                      task_statistics)


@dataclass(frozen=True)
class TaskResult:
    """One task's score: the mean over its settings of the best run (per seed), with the
    spread over seeds (None with one seed), as lm-evaluation-harness reports a task."""
    score: float
    seeds: list[int]
    stderr: float | None
    confidence_interval: list[float] | None
    metric: str
    version: int
    settings: dict[str, str]        #: setting name -> content hash
    protocol: dict[str, Any]        #: name, hash, standard
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "seeds": self.seeds, "stderr": self.stderr,
                "confidence_interval": self.confidence_interval, "metric": self.metric,
                "version": self.version, "settings": self.settings,
                "protocol": self.protocol, "runs": self.runs}


@dataclass(frozen=True)
class Results:
    """The scores of one architecture under one protocol, with what produced them.

    ``score`` is the mean of the task scores, called ``score_label`` (``MAD score`` only over
    the six MAD tasks); ``settings`` lists the best run of every (task, setting, seed);
    ``checks`` are the architecture checks of ``madbench eval`` (set by ``evaluate``)."""
    architecture: dict[str, Any]
    protocol: dict[str, Any]
    metric: str
    score: float
    score_label: str
    confidence_interval: tuple[float, float] | None
    tasks: dict[str, TaskResult]
    settings: list[dict[str, Any]]
    flags: list[str]
    runs: int
    provenance: dict[str, Any]
    madbench_version: str
    checks: dict[str, Any] | None = field(default=None)

    @property
    def task_scores(self) -> dict[str, float]:
        """Task name -> score."""
        return {name: t.score for name, t in self.tasks.items()}

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], metric: str | None = None,
                     checks: dict[str, Any] | None = None) -> Results:
        """Score the records of one architecture under one protocol (``metric``: the
        protocol's selection metric unless given)."""
        if not records:
            raise ValueError("no run records to score")
        metric = metric or records[0].get("selection", "accuracy")
        best = best_of_sweep(records, metric)
        scores = task_scores(best, metric)
        settings = []
        for (task, setting, seed), r in sorted(best.items()):
            n = sum(1 for x in records if (x["task"], x["setting"], int(x["seed"])) ==
                    (task, setting, seed))
            settings.append({"task": task, "setting": setting, "seed": seed, "runs": n,
                             "best": {k: r[k] for k in ("lr", "weight_decay", "accuracy",
                                                         "macro_accuracy", "loss", "diverged",
                                                         "run_key")}})
        first = records[0]
        protocol = {"name": first["protocol_name"], "hash": first["protocol_hash"],
                    "standard": bool(first.get("standard_protocol", True))}
        tasks = {}
        for task, stats in task_statistics(best, metric).items():
            mine = [r for (t, _s, _seed), r in sorted(best.items()) if t == task]
            tasks[task] = TaskResult(
                score=stats["score"], seeds=stats["seeds"], stderr=stats["stderr"],
                confidence_interval=stats["confidence_interval"], metric=metric,
                version=int(mine[0]["task_version"]),
                settings={r["setting"]: r["setting_hash"] for r in mine}, protocol=protocol,
                runs=sum(1 for r in records if r["task"] == task))
        return cls(
            architecture={"name": first["arch_name"], "hash": first["arch_hash"],
                          "spec": first["architecture"], "checks": first.get("checks", {})},
            protocol={**first["protocol"], "hash": first["protocol_hash"]},
            metric=metric, score=mad_score(scores), score_label=score_label(scores),
            confidence_interval=bootstrap_interval(best, metric), tasks=tasks,
            settings=settings,
            flags=sorted({f for r in records for f in (r.get("flags") or "").split(",") if f}),
            runs=len(records), provenance=first["provenance"], madbench_version=__version__,
            checks=checks)

    def to_dict(self) -> dict[str, Any]:
        """The result JSON. ``results`` holds one object per task (lm-evaluation-harness's
        form); ``tasks`` (name -> score) and ``mad_score`` are the earlier form, kept."""
        results = {name: t.to_dict() for name, t in self.tasks.items()}
        doc = {
            "madbench_version": self.madbench_version,
            "score_label": self.score_label,
            "mad_score": self.score,
            "confidence_interval": self.confidence_interval,
            "metric": self.metric,
            "results": results,
            "versions": {name: t.version for name, t in self.tasks.items()},
            "tasks": self.task_scores,
            "settings": self.settings,
            "architecture": self.architecture,
            "protocol": self.protocol,
            "flags": self.flags,
            "runs": self.runs,
            "provenance": self.provenance,
        }
        doc["partial"] = partial(doc)
        if self.checks is not None:
            doc["checks"] = self.checks
        return doc


def partial(doc: dict[str, Any]) -> dict[str, Any] | None:
    """What a result lacks of its protocol, as its JSON's ``partial`` holds it; None if
    nothing. ``sweeps``: how many (setting, seed) sweeps hold fewer than the protocol's lrs x
    weight decays (their best is over what was trained); ``settings``: task -> settings
    trained and in the protocol's grid (``settings_shortfall``); ``notes``: the lines that
    ``report``, ``eval``, ``compare`` and the HTML page print (after ``partial:``)."""
    proto = doc["protocol"]
    grid = len(proto.get("lrs") or []) * len(proto.get("weight_decays") or [])
    short = [s for s in doc.get("settings") or [] if grid and s["runs"] < grid]
    fewer = settings_shortfall(doc)
    if not short and not fewer:
        return None
    notes = []
    if short:
        notes.append(f"{len(short)} of {len(doc['settings'])} (setting, seed) sweeps hold "
                     f"fewer than the protocol's {grid} configurations (e.g. {short[0]['task']} "
                     f"{short[0]['setting']}: {short[0]['runs']}); their best is over what was "
                     "trained")
    if fewer:
        notes.append("fewer settings than the protocol's grid (" + ", ".join(
            f"{t} {n['trained']} of {n['grid']}" for t, n in fewer.items())
            + "); a task's score is the mean over the settings trained")
    return {"sweeps": {"short": len(short), "of": len(doc["settings"]), "configurations": grid},
            "settings": fewer, "notes": notes}


def settings_shortfall(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{task: {"trained": N, "grid": M}}`` for each task of ``doc`` holding fewer settings
    than its protocol's grid (``all`` or ``baseline``) of that task; tasks not registered here
    are not looked at."""
    from .plugins import get_registry
    from .sweep import select_settings
    which = doc["protocol"].get("settings") or "all"
    held: dict[str, set[str]] = {}
    for s in doc.get("settings") or []:
        held.setdefault(s["task"], set()).add(s["setting"])
    tasks = get_registry().tasks
    out = {}
    for name, names in held.items():
        if name in tasks:
            grid = {s.name for s in select_settings(tasks[name].obj, which)}
            if grid - names:
                out[name] = {"trained": len(names & grid), "grid": len(grid)}
    return out
