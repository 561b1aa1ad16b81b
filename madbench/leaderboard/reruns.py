"""Check 7 of ``validate``: spot re-runs. A few best-of-sweep cells, drawn per task from a
seed the submitter does not choose and within a per-run token budget, are re-trained here
with madbench's own protocol (``rerun_protocol``, never the submission's fields), and their
accuracy must agree with the claim: an accuracy that training does not give fails."""
from __future__ import annotations

import random
import secrets
import tempfile
import time
from typing import Any, Callable

import torch

from ..budget import PRECISION_MARGIN, Budget, BudgetExceeded, Deadline, over
from ..cli.progress import plural
from ..estimate import setting_tokens
from ..evaluator import prepare, resolve_placement
from ..executors import LocalExecutor
from ..protocol import PRESETS, Protocol
from ..scoring import best_of_sweep
from ..store import ResultsStore
from ..sweep import choose_engine, effective_setting
from .boards import BOARDS, describe_protocol, preset_with_overrides, suite_tasks
from .report import Report


def rerun_cost(task, setting_name: str, protocol: Protocol) -> int:
    """Tokens a run of this setting trains on (steps x batch x length), for ranking cost."""
    return setting_tokens(effective_setting(task.setting(setting_name), protocol), protocol)


def rerun_protocol(doc: dict, protocol: Protocol) -> Protocol:
    """The protocol a re-run trains: the board's own preset for a board entry, else madbench's
    preset with the declared overrides; never the submission's fields. Raises ValueError when
    the submission's protocol is not that one (nothing is re-run then)."""
    mine = PRESETS[BOARDS[doc["board"]]] if doc["board"] in BOARDS else \
        preset_with_overrides(protocol)
    if mine.hash != protocol.hash:
        raise ValueError(f"the submission's protocol [{protocol.hash}] is not "
                         f"{describe_protocol(mine)} [{mine.hash}]")
    return mine


def default_rerun_tokens() -> int:
    """The largest run of any board's protocol (tokens): a re-run of a trial submission never
    trains more than that."""
    return max(rerun_cost(task, setting.name, PRESETS[preset])
               for preset in BOARDS.values() for task in suite_tasks()
               for setting in task.settings())


def cheapest_rerun(doc: dict, protocol: Protocol) -> int | None:
    """Tokens of the cheapest run among ``doc``'s settings of the suite's tasks under
    ``protocol`` (None: it has none)."""
    tasks = {t.name: t for t in suite_tasks()}
    cells = {(r["task"], r["setting"]) for r in doc["runs"] if r["task"] in tasks}
    return min((rerun_cost(tasks[t], s, protocol) for t, s in cells), default=None)


def rerun_budget_problem(doc: Any, budget: Budget) -> str | None:
    """Why ``budget.rerun_max_tokens`` admits no run of ``doc`` when the default budget (the
    largest run of a board's protocol) admits one: then the budget the validator was given is
    too small for this entry, a usage error of the validator's invocation (exit 2, before any
    work), never a failure of the entry. None when a run fits; when no budget was given; when
    not even the default admits one (the entry's own protocol is too large: it fails
    ``rerun``); or when the file is too malformed to tell (its validation says why)."""
    if budget.rerun_max_tokens is None:
        return None
    try:
        cheapest = cheapest_rerun(doc, rerun_protocol(doc, Protocol.from_dict(doc["protocol"])))
    except Exception:  # noqa: BLE001 - untrusted input: the checks report what is wrong
        return None
    largest = default_rerun_tokens()
    if cheapest is None or not over(cheapest, budget.rerun_max_tokens) or over(cheapest, largest):
        return None
    return (f"a re-run budget of {budget.rerun_max_tokens:,} tokens per run admits none of its "
            f"runs (the cheapest trains {cheapest:,}; the default budget, the largest run of a "
            f"board's protocol, is {largest:,}): raise --rerun-max-tokens, or validate it "
            "without --rerun")


def pick_reruns(doc: dict, protocol: Protocol, k: int, rng: random.Random,
                max_tokens: int | None = None) -> tuple[list[dict], dict]:
    """K best-of-sweep runs to re-train, stratified over the tasks: the tasks in a random
    order, one cell each in turn, each drawn uniformly among that task's cells (every setting
    and seed, not only the cheap ones) whose run costs at most ``max_tokens``. Returns the
    runs and what the sample was drawn from."""
    tasks = {t.name: t for t in suite_tasks()}
    best = best_of_sweep(doc["runs"], doc["metric"])
    pools: dict[str, list] = {}
    too_costly = 0
    for cell in sorted(best):
        if cell[0] not in tasks:
            continue
        if over(rerun_cost(tasks[cell[0]], cell[1], protocol), max_tokens):
            too_costly += 1
            continue
        pools.setdefault(cell[0], []).append(cell)
    eligible = sum(map(len, pools.values()))
    order = sorted(pools)
    rng.shuffle(order)
    chosen: list = []
    while len(chosen) < min(k, eligible):
        for name in order:
            if pools[name] and len(chosen) < k:
                chosen.append(pools[name].pop(rng.randrange(len(pools[name]))))
    return [best[c] for c in chosen], {"cells": len(best), "eligible": eligible,
                                       "over_budget": too_costly, "tasks": len(order)}


def check_reruns(doc: dict, report: Report, spec, protocol: Protocol, k: int,
                 seed: int | None, tolerance: float, device: str,
                 budget: Budget = Budget(),
                 progress: Callable[[str], None] | None = None,
                 engine: str = "auto") -> None:
    """Re-train K sampled cells with ``engine`` (``auto``: graphed on CUDA, as ``madbench
    eval`` trains, plain on CPU; ``plain``: the reference step) and compare accuracies."""
    if spec is None:
        report.fail("rerun", "cannot re-run: the architecture was not rebuilt here (untrusted "
                    "or not installed code, or code that differs from the submission's)")
        return
    try:
        trained = rerun_protocol(doc, protocol)
    except ValueError as exc:
        report.fail("rerun", f"not re-run: {exc}; only that protocol is ever trained here")
        return
    max_tokens = budget.rerun_max_tokens if budget.rerun_max_tokens is not None else \
        default_rerun_tokens()
    seed = secrets.randbits(32) if seed is None else seed
    runs, sample = pick_reruns(doc, trained, k, random.Random(seed), max_tokens)
    if not runs:
        report.fail("rerun", f"no setting can be re-run within the budget of {max_tokens:,} "
                    f"tokens per run ({sample['over_budget']} of {sample['cells']} over it)")
        return
    dev = resolve_placement(device).device
    chosen = choose_engine(engine, trained, torch.device(dev))
    deadline = Deadline(budget.rerun_seconds, f"re-running {plural(len(runs), 'setting')}")

    def on_progress(event: str, info: dict) -> None:
        if event == "epoch":
            deadline.check()

    gate = None                               # the architecture checks, made once
    for i, run in enumerate(runs, 1):
        precision = run["precision"] if dev.startswith("cuda") else "fp32"
        start = time.perf_counter()
        if progress:
            progress(f"  re-training {i} of {len(runs)}: {run['task']}/{run['setting']} seed "
                     f"{run['seed']}, lr {run['lr']:g}, wd {run['weight_decay']:g} "
                     f"({dev}, {precision}, {chosen} engine)")
        with tempfile.TemporaryDirectory(prefix="madbench-rerun-") as tmp:
            # the run's one cell of the sweep, as madbench eval trains it (the gate passes
            # state mismatches: the claim re-checked here is the accuracy)
            evaluation = prepare(spec, tasks=[run["task"]], protocol=trained,
                                 seeds=[run["seed"]],
                                 settings=[f"{run['task']}:{run['setting']}"],
                                 configs=[(run["lr"], run["weight_decay"])], run_dir=tmp,
                                 device=dev, precision=precision, engine=chosen,
                                 executor=LocalExecutor(devices=[dev]),
                                 allow_state_mismatch=True, checks=gate)
            gate = evaluation.checks
            try:
                with deadline.enforce():
                    results = evaluation.run(on_progress)
            except BudgetExceeded as exc:
                report.fail("rerun", f"{run['task']}/{run['setting']} seed {run['seed']}: "
                            f"{exc}")
                return
            fresh = results.settings[0]["best"]
            trained_by = ResultsStore(tmp).records()[0]["engine"]   # e.g. graphed-eager
        delta = abs(fresh["accuracy"] - run["accuracy"])
        across = precision != run["precision"]            # e.g. fp32 here, bf16 claimed
        allowed = round(tolerance + (PRECISION_MARGIN if across else 0.0), 12)  # 0.08, not ...02
        ok = delta <= allowed and bool(fresh["diverged"]) == run["diverged"]
        if progress:
            progress(f"    accuracy {fresh['accuracy']:.4f}, claimed {run['accuracy']:.4f}: "
                     f"{'ok' if ok else 'MISMATCH'} (tolerance {allowed:g}; "
                     f"{time.perf_counter() - start:.0f} s)")
        report.reruns.append({"task": run["task"], "setting": run["setting"],
                              "seed": run["seed"], "lr": run["lr"],
                              "weight_decay": run["weight_decay"],
                              "claimed": run["accuracy"], "measured": fresh["accuracy"],
                              "difference": delta, "tolerance": allowed, "ok": ok,
                              "device": str(dev),
                              "precision": precision, "engine": trained_by,
                              "seconds": round(time.perf_counter() - start, 2)})
        if not ok:
            other = (f" + {PRECISION_MARGIN:g}: re-trained in {precision}, claimed in "
                     f"{run['precision']}" if across else "")
            report.fail("rerun", f"{run['task']}/{run['setting']} seed {run['seed']} lr "
                        f"{run['lr']:g} wd {run['weight_decay']:g} re-trained here: accuracy "
                        f"{fresh['accuracy']:.4f}, claimed {run['accuracy']:.4f} (difference "
                        f"{delta:.4f} > tolerance {tolerance:g}{other})")
    report.checks.append(
        f"re-ran {plural(len(runs), 'setting')} of {plural(sample['tasks'], 'task')} under "
        f"{describe_protocol(trained)} ({chosen} engine), sampled uniformly per task from "
        f"{sample['eligible']} of {sample['cells']} cells ({sample['over_budget']} over the "
        f"{max_tokens:,}-token budget; sample seed {seed}, tolerance {tolerance:g}, "
        f"+ {PRECISION_MARGIN:g} for a re-run in another precision than its claim)")
