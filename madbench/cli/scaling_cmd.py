"""``madbench scaling``: FLOP counts, scaling runs, fits, stored frontiers, validation and the
MAD-score correlation."""
from __future__ import annotations

import json
import math
import shlex
import time
from pathlib import Path

import click
from tabulate import tabulate

from ..errors import UsageError, warn
from ..limits import MAX_SEED
from ..scaling.limits import MAX_BATCH_TOKENS, MAX_SEQ_LEN, MIN_BOOTSTRAP, check_batch
from .preflight import run_dir_of, writable_dir, writable_file
from .progress import RunProgress, all_stored, duration, limit_line, plural
from . import FiniteFloat, no_progress_option, resumes, time_limit_option

# madbench modules that load torch, numpy or pyarrow are imported inside the commands that
# use them, so that `madbench scaling --help` starts fast.


def _num(x, fmt: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def _interval(iv) -> str:
    return "" if not iv else f" [{_num(iv[0])}, {_num(iv[1])}]"


def _parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"{what} takes comma-separated numbers such as 1e12,3e12, not "
                         f"{text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise UsageError(f"{what} needs positive numbers")
    return values


def _bootstrap_option(none_allowed: bool):
    """``--bootstrap N``: replicates for the percentile intervals, at least ``MIN_BOOTSTRAP``
    (fewer give bands that miss their own estimate; ``scaling.limits``); 0, no intervals, where
    ``none_allowed``."""

    def check(ctx, param, value):
        if value < MIN_BOOTSTRAP and not (none_allowed and value == 0):
            raise click.BadParameter(
                f"{value} is too few: a percentile interval needs at least {MIN_BOOTSTRAP} "
                "replicates (fewer give bands that miss their own estimate)"
                + ("; 0 gives no intervals" if none_allowed else ""), ctx, param)
        return value

    return click.option("--bootstrap", default=200, show_default=True,
                        type=click.IntRange(0), callback=check,
                        help=f"Bootstrap replicates for the intervals: at least {MIN_BOOTSTRAP}"
                        + ("; 0: none" if none_allowed else "") + ".")


@click.group("scaling")
def scaling_group() -> None:
    """IsoFLOP runs, scaling-law fits, stored frontiers and submission validation."""


# -- flops ---------------------------------------------------------------------------------
@scaling_group.command("flops")
@click.option("--arch", required=True, help="A scaling family (transformer++, hyena, ...), "
              "or any --arch that 'madbench eval' accepts (MAD models).")
@click.option("--size", default=None, metavar="WIDTHxDEPTH", help="Size, for a family "
              "(default: 128x4, the paper's smallest model).")
@click.option("--attention-ratio", default=None, metavar="A:B", help="For a striped family: "
              "attention:other sequence mixers (1:1, 1:3, 1:11) or a share in (0, 1) (0.25).")
@click.option("--seq-len", default=256, show_default=True, type=click.IntRange(1, MAX_SEQ_LEN))
@click.option("--vocab-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("--no-embeddings", is_flag=True, help="Leave out the 4 L D V of embedding and "
              "head.")
@click.option("--json", "as_json", is_flag=True)
def flops_cmd(arch, size, attention_ratio, seq_len, vocab_size, no_embeddings, as_json):
    """Analytic FLOPs of an architecture, per layer and term (forward, one sequence); for a
    scaling family also its layer order and attention share."""
    from ..architecture import resolve_architecture
    from ..scaling.flops import architecture_flops
    from ..scaling.shapes import FAMILIES, family_spec, get_family, parse_size, striping
    order = None
    if arch in FAMILIES:
        width, depth = parse_size(size or "128x4")
        family = get_family(arch, attention_ratio=attention_ratio)
        spec = family_spec(family, width, depth)
        order = striping(family, spec, depth)
    else:
        if size or attention_ratio:
            raise UsageError("--size and --attention-ratio apply to a scaling family")
        spec = resolve_architecture(arch)
    fl = architecture_flops(spec, seq_len, vocab_size, embeddings=not no_embeddings)
    if as_json:
        click.echo(json.dumps({**fl.to_dict(), **({"striping": order} if order else {})},
                              indent=2))
        return
    if order:
        click.echo(render_striping(order) + "\n")
    # whole FLOPs with separators: tabulate reads "5.2429e+05" as a number and prints 524290
    rows = [["embedding + head", "analytic", _num(fl.embedding + fl.head, ",.0f"), ""]]
    for i, layer in enumerate(fl.layers):
        terms = ", ".join(f"{k} {v:.3g}" for k, v in layer.terms.items())
        rows.append([f"{i} {layer.mixer}", layer.method, _num(layer.total, ",.0f"), terms])
    click.echo(f"{spec.name}: forward, one sequence of {seq_len} (multiply-add = 2 FLOPs)\n")
    click.echo(tabulate(rows, headers=["layer", "method", "FLOPs", "terms"]))
    click.echo(f"\nforward per sequence {fl.forward:.4e}; per token {fl.forward_per_token:.4e};"
               f" training per token (3x) {fl.training_per_token:.4e}")


def render_striping(order: dict) -> str:
    mixers = order["sequence_mixers"]
    short = " ".join("A" if m == "mh-attention" else m for m in mixers)
    line = (f"{order['family']}: {len(mixers)} sequence mixers in this order: {short} "
            f"(A = mh-attention); attention {order['attention_fraction']:.1%}")
    if "nominal_ratio" in order:
        exact = order["exact_depths"]
        line += (f", nominal {order['nominal_ratio']} = {order['nominal_share']:.1%}, exact at "
                 f"depths {', '.join(map(str, exact[:6]))}{', ...' if len(exact) > 6 else ''}")
    return line


# -- run -----------------------------------------------------------------------------------
class _Progress(RunProgress):
    """Runs done/total on stderr, the run in flight with its step and loss; one line per
    finished run when stderr is not a terminal."""

    def __call__(self, event: str, info: dict) -> None:
        if event == "start":
            self.start(info["total"], info["done"])
            if info["done"]:
                click.echo(f"{info['done']} of {plural(info['total'], 'run')} already stored",
                           err=True)
        elif event == "run":
            p = info["plan"]
            self.current = f"{p.family} {p.width}x{p.depth} C={p.budget:.2g}"
            self.describe(self.current)
        elif event == "step":
            self.describe(f"{self.current} step {info['step']}/{info['steps']} "
                          f"loss {info['loss']:.3f}")
        elif event == "done":
            p = info["plan"]
            what = f"{p.family} {p.width}x{p.depth} C={p.budget:.3g}"
            self.advance()
            if info["loss"] is None:      # another process sharing the run directory
                self.stored += 1
                self.log(f"{what}: stored by another process")
            else:
                self.log(f"{what}: {p.steps} steps, loss {info['loss']:.4f}")


@scaling_group.command("run")
@click.option("--arch", required=True, help="Scaling family (transformer++, hyena, mh-hyena, "
              "striped-hyena, striped-mh-hyena, mamba, striped-mamba, striped-hyena-moe, "
              "striped-hyena-experts-moe), or a sequence mixer (registered or "
              "pkg.module:Class) to scale with SwiGLU.")
@click.option("--striped", is_flag=True, help="With a mixer --arch: 25% attention.")
@click.option("--attention-ratio", default=None, metavar="A:B", help="Striped families: "
              "attention:other sequence mixers, 1:1, 1:3 or 1:11 as in the paper, or a share "
              "in (0, 1) (0.25); a ratio other than the family's own names the family "
              "(striped-hyena-1to11).")
@click.option("--mixer-kwargs", default=None, help="With a mixer --arch: JSON constructor "
              "arguments.")
@click.option("--budgets", required=True, help="Comma-separated training FLOP budgets.")
@click.option("--sizes", default=None, help="Comma-separated WIDTHxDEPTH sizes (default: the "
              "ladder sizes that fit each budget).")
@click.option("--corpus", default="kjv", show_default=True, help="A registered corpus (kjv, "
              "gcide, or a plugin's; 'madbench scaling corpora' lists them) or a local file: "
              "text or raw bytes, Parquet, or token ids (.npy, or any file with --vocab-size).")
@click.option("--corpus-column", default=None,
              help="Column of a Parquet corpus (default: text).")
@click.option("--vocab-size", default=None, type=click.IntRange(2), help="A token-id corpus "
              "file: its vocabulary size.")
@click.option("--token-dtype", default=None, help="A raw token-id file (with --vocab-size): "
              "its integer type (default: uint16).")
@click.option("--run-dir", default="runs/scaling", show_default=True,
              type=click.Path(file_okay=False), help="Where records go; re-running resumes.")
@click.option("--seq-len", default=256, show_default=True,
              type=click.IntRange(2, MAX_SEQ_LEN))
@click.option("--batch-size", default="32", show_default=True, metavar="N|paper",
              help="Sequences per batch, or 'paper': the paper's tokens per batch by budget "
              f"(Table C.1, interpolated) over --seq-len; at most {MAX_BATCH_TOKENS:,} tokens per "
              "batch.")
@click.option("--lr", default="1e-3", show_default=True, metavar="LR|paper",
              help="Peak learning rate, or 'paper': by model size (Table C.2, interpolated).")
@click.option("--lr-table", default=None, metavar="N:LR,...", help="With --lr paper: the "
              "(parameters, lr) rows to interpolate instead of the paper's rows on file.")
@click.option("--grad-clip", default=1.0, show_default=True, type=FiniteFloat(0),
              help="Gradient norm clipping (madbench's choice; 0: off).")
@click.option("--eval-tokens", default=65536, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED))
@click.option("--min-steps", default=20, show_default=True, type=click.IntRange(1),
              help="Without --sizes: skip sizes with fewer steps.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True)
@time_limit_option("run", "runs", "a few steps of each model timed first,")
@no_progress_option
@click.option("--dry-run", is_flag=True, help="Print the plan and stop (with --time-limit: "
              "after timing the steps and saying how many runs fit); causality at a --seq-len "
              "longer than the MAD tasks' is left to the run, which checks it before it "
              "trains.")
def run_cmd(arch, striped, attention_ratio, mixer_kwargs, budgets, sizes, corpus, corpus_column,
            vocab_size, token_dtype, run_dir, seq_len, batch_size, lr, lr_table, grad_clip,
            eval_tokens, seed, min_steps, device, precision, time_limit_text, no_progress,
            dry_run):
    """Train small language models at fixed FLOP budgets (IsoFLOP runs).

    First, as 'madbench eval' does, causality and the mixer contract at 32 tokens and
    --seq-len (exit 3 when refused, nothing written; a dry run, as eval's, checks no length
    beyond the MAD tasks'); not iso-state: the sizes vary state."""
    started = time.monotonic()
    resumes()
    from ..time_limit import TimeLimitReached, parse_duration
    limit_seconds = None if time_limit_text is None else parse_duration(time_limit_text)
    from ..scaling.corpus import load_corpus
    from ..scaling.recipe import lr_for_size, paper_batch_size, parse_lr_table
    from ..scaling.plan import Recipe, check_causal, plan_runs
    from ..scaling.runs import run_plans
    from ..scaling.shapes import LADDER, get_family, parse_size
    from ..store import ResultsStore
    from ..architecture import parse_mixer_kwargs
    from ..verdict import dry_run_lengths, not_checked_line
    kwargs = parse_mixer_kwargs(mixer_kwargs) if mixer_kwargs else None
    family = get_family(arch, striped, kwargs, attention_ratio)
    # each size and budget once, in the order given (as eval's --seeds and --set lists)
    size_list = list(dict.fromkeys(parse_size(s) for s in sizes.split(",") if s.strip())) \
        if sizes else None
    if sizes is not None and not size_list:
        raise UsageError(f"--sizes {sizes!r} names no size (give WxD,...)")
    lr_rule = batch_rule = None
    if lr == "paper":
        table = parse_lr_table(lr_table) if lr_table else None
        lr_rule = (lambda n: lr_for_size(n, table)) if table else lr_for_size
        lr = "1e-3"                    # replaced per run
    elif lr_table:
        raise UsageError("--lr-table applies with --lr paper")
    if batch_size == "paper":
        batch_rule, batch_size = paper_batch_size, "1"
    fixed_lr, fixed_batch = _positive(lr, "--lr", float), _positive(batch_size, "--batch-size",
                                                                   int)
    check_batch(fixed_batch, seq_len)
    budget_list = list(dict.fromkeys(_parse_floats(budgets, "--budgets")))
    run_dir_of(run_dir, "scaling", "--run-dir")     # not among 'madbench eval' records
    _check_placement(device, precision, plan_only=dry_run and limit_seconds is None)
    data = load_corpus(corpus, corpus_column, vocab_size, token_dtype)
    recipe = Recipe(seq_len=seq_len, batch_size=fixed_batch, lr=fixed_lr,
                    grad_clip=grad_clip, eval_tokens=eval_tokens, seed=seed)
    plans = plan_runs(family, budget_list, size_list, recipe, data.sha256, min_steps=min_steps,
                      vocab_size=data.vocab_size, lr_rule=lr_rule, batch_rule=batch_rule)
    if not plans:
        every = plan_runs(family, budget_list, LADDER, recipe, data.sha256,
                          vocab_size=data.vocab_size, lr_rule=lr_rule, batch_rule=batch_rule)
        raise UsageError(_why_no_size(every, budget_list, min_steps))
    _warn_attention_share(family, plans)
    _warn_off_budget(plans)
    lengths, unchecked = dry_run_lengths({seq_len}, dry_run)
    check_causal([p.spec for p in plans], lengths)   # before anything is written or timed
    if unchecked:
        click.echo(not_checked_line(unchecked), err=True)
    if not dry_run:
        writable_dir(run_dir, "--run-dir")
    if dry_run:
        from ..scaling.shapes import attention_fraction
        rows = [[f"{p.budget:.3g}", f"{p.width}x{p.depth}", f"{p.non_embedding_params:,}",
                 f"{attention_fraction(p.spec):.0%}", f"{p.recipe.lr:.3g}", p.recipe.batch_size,
                 p.steps, f"{p.tokens:,}", f"{p.tokens / len(data):.2g}", f"{p.flops:.3g}"]
                for p in plans]
        click.echo(f"corpus {data.describe()}")
        click.echo(tabulate(rows, headers=["budget", "size", "non-emb params", "attention",
                                           "lr", "batch", "steps", "tokens", "epochs",
                                           "flops"]))
    limit = None
    if limit_seconds is not None:
        limit = _time_limit(plans, run_dir, device, precision, limit_seconds, started,
                            heal=not dry_run)
    if dry_run:
        return
    store = ResultsStore(run_dir)
    with _Progress(enabled=not no_progress) as progress:
        try:
            trained = run_plans(plans, data, store, device, precision, progress, limit)
        except TimeLimitReached as stop:
            progress.stop(stop)
    click.echo(f"{trained} run(s) trained, {len(plans) - trained} already stored; table: "
               f"{Path(run_dir) / 'isoflop.parquet'}")


def _check_placement(device: str, precision: str, plan_only: bool) -> None:
    """``--device`` and ``--precision`` as eval checks them, before the corpus loads (bf16 on
    the CPU failed after the causality check, with the run directory made); a plan alone
    (``--dry-run`` without ``--time-limit``) may name a CUDA device this machine lacks."""
    import torch
    from ..evaluator import resolve_placement
    if plan_only and device.startswith("cuda"):
        try:
            if torch.device(device).type == "cuda":
                return
        except (RuntimeError, TypeError, ValueError):
            pass                         # not a device: resolve_placement says so
    resolve_placement(device, precision)


def _time_limit(plans, run_dir, device, precision, seconds, started, heal=True):
    """The ``TimeLimit`` of ``--time-limit`` for the runs of ``plans`` not yet stored in
    ``run_dir`` (None when none is left), their steps timed on the device first; prints the
    estimate and how many runs fit. Without ``heal`` (a dry run) the run directory is left
    as it is."""
    from ..scaling.estimate import plan_seconds
    from ..scaling.runs import pending_plans
    from ..store import ResultsStore
    from ..time_limit import TimeLimit
    from ..trainer import resolve_device, resolve_precision
    try:
        todo = pending_plans(plans, ResultsStore(run_dir, create=False), heal)
    except UsageError:                   # no run directory yet: nothing stored
        todo = list(plans)
    if not todo:
        click.echo(all_stored(len(plans), run_dir), err=True)
        return None
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    estimate = plan_seconds(todo, dev, precision)

    def seconds_of(plan) -> float:      # a run left since (another process lost its record)
        if plan.key not in estimate:
            estimate.update(plan_seconds([plan], dev, precision))
        return estimate[plan.key]

    limit = TimeLimit(seconds, seconds_of, started)
    models = len({p.spec.hash for p in todo})
    click.echo(f"training {plural(len(todo), 'run')}: about {duration(sum(estimate.values()))} "
               f"on {dev}, from steps timed on {plural(models, 'model')}", err=True)
    click.echo(limit_line(limit, len(limit.planned(todo)), len(todo)), err=True)
    return limit


def _why_no_size(every: list, budgets: list[float], min_steps: int) -> str:
    """Why the size ladder has no run for any of ``budgets``, per budget, from the unfiltered
    plans ``every``: which ladder sizes miss which of ``plan_runs``'s limits (at least
    ``min_steps`` steps, ``TOKENS_PER_PARAM`` tokens per non-embedding parameter)."""
    from ..scaling.plan import TOKENS_PER_PARAM
    low, high = TOKENS_PER_PARAM

    def sizes(runs):
        names = [f"{p.width}x{p.depth}" for p in runs]
        return names[0] if len(names) == 1 else f"{names[0]} to {names[-1]}"

    parts = []
    for budget in budgets:
        runs = sorted((p for p in every if p.budget == budget),
                      key=lambda p: p.non_embedding_params)
        over = [p for p in runs if p.tokens / p.non_embedding_params > high]
        under = [p for p in runs if p.tokens / p.non_embedding_params < low]
        short = [p for p in runs if p.steps < min_steps]
        misses = []
        if over:
            misses.append(f"{sizes(over)} would see over {high:,g} tokens per parameter")
        if short:
            misses.append(f"{sizes(short)} would train fewer than {min_steps} steps")
        if under:
            misses.append(f"{sizes(under)} would see under {low:g} token per parameter")
        verdict = ("is too large for the size ladder" if len(over) == len(runs) else
                   "is too small for the size ladder" if not over else "fits no ladder size")
        parts.append(f"{budget:g} {verdict} ({'; '.join(misses)})")
    return "no model size fits: " + "; ".join(parts) + "; give --sizes WxD,... to choose sizes"


def _positive(text: str, option: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{option} takes a positive number or 'paper', not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{option} must be a positive finite number, not {text!r}")
    return value


def _warn_off_budget(plans) -> None:
    """One line per budget whose runs' FLOPs miss it by more than the grouping factor (a size
    given with --sizes whose step at this batch and length is larger than the budget)."""
    from ..scaling.fits import GROUP_FACTOR
    for budget in sorted({p.budget for p in plans}):
        off = [p for p in plans if p.budget == budget
               and not 1 / GROUP_FACTOR <= p.flops / budget <= GROUP_FACTOR]
        if off:
            worst = max(off, key=lambda p: abs(math.log(p.flops / budget)))
            warn(f"budget {budget:g}: {len(off)} run(s) miss it by more than "
                 f"{GROUP_FACTOR}x (e.g. {worst.width}x{worst.depth}: {worst.steps} step(s), "
                 f"{worst.flops:.3g} FLOPs); their records keep the label {budget:g} and "
                 "'scaling fit' groups by it")


def _warn_attention_share(family, plans) -> None:
    """One line on stderr per size whose depth cannot hold the family's attention share."""
    from ..scaling.shapes import attention_fraction, ratio_label
    share = family.attention_share
    if not 0 < share < 1:
        return
    seen = set()
    for p in plans:
        got = attention_fraction(p.spec)
        if (p.width, p.depth) not in seen and not math.isclose(got, share):
            seen.add((p.width, p.depth))
            click.echo(f"Warning: {p.width}x{p.depth} holds {got:.1%} attention, not "
                       f"{ratio_label(share)} = {share:.1%} (depth {p.depth}; see 'madbench "
                       f"scaling flops --attention-ratio')", err=True)


# -- corpora -------------------------------------------------------------------------------
@scaling_group.command("corpora")
@click.option("--json", "as_json", is_flag=True)
def corpora_cmd(as_json):
    """List the registered corpora (plugins: hook madbench_register_corpora); any local file
    works too (--corpus PATH)."""
    from ..scaling.corpus import registered_corpora
    rows = [{"name": name, "plugin": e.plugin, **{k: v for k, v in e.metadata.items()}}
            for name, e in registered_corpora().items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(tabulate([[r["name"], r["plugin"], r.get("unit", ""), r.get("package", ""),
                          r.get("description", "")] for r in rows],
                        headers=["corpus", "plugin", "unit", "package", "description"]))


# -- fit -----------------------------------------------------------------------------------
def render_fits(fits: dict) -> str:
    parts = []
    for arch, entry in fits.items():
        parts.append(f"== {arch} ({entry['runs']} runs)")
        a2 = entry.get("approach2")
        if a2:
            rows = [[_num(g["budget"], ".3g"), g["points"], g["sizes"],
                     _num(g["n_opt"], ".3g"), _num(g["d_opt"], ".3g"),
                     _num(g["loss_opt"]) + _interval(g.get("loss_band")),
                     "ok" if g["valid"] else g["problem"]] for g in a2["groups"]]
            parts.append(tabulate(rows, headers=["budget", "runs", "sizes", "N*", "D*", "L*",
                                                 "status"]))
            if a2["a"] is None:
                parts.append(f"Approach 2: {a2['problem']}")
            else:
                parts.append(f"Approach 2: N* ~ C^{_num(a2['a'])}{_interval(a2['a_interval'])}"
                             f", D* ~ C^{_num(a2['b'])}{_interval(a2['b_interval'])}, "
                             f"L* = {_num(a2['loss_frontier_law']['coef'])} C^"
                             f"{_num(a2['loss_frontier_law']['exponent'])}"
                             + (f" ({_replicates(a2)})" if a2.get("bootstrap") else ""))
        a3 = entry.get("approach3")
        if a3:
            if "problem" in a3:
                parts.append(f"Approach 3: {a3['problem']}")
            else:
                terms = ", ".join(f"{k} {_num(a3[k])}{_interval(a3.get(k + '_interval'))}"
                                  + (" (at the optimiser's bound, not fitted)"
                                     if k in a3.get("at_bounds", []) else "")
                                  for k in ("E", "A", "B", "alpha", "beta"))
                parts.append(f"Approach 3: {terms}; a = {_num(a3['a'])}, b = {_num(a3['b'])}")
        parts.append("")
    return "\n".join(parts)


@scaling_group.command("fit")
@click.argument("runs", type=click.Path(exists=True))
@click.option("--approach", type=click.Choice(["2", "3", "both"]), default="both",
              show_default=True)
@_bootstrap_option(none_allowed=True)
@click.option("--params-column", default="params", show_default=True,
              help="N for the fits: params or non_embedding_params.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Write IsoFLOP curves and frontiers to this PNG.")
@click.option("--state-frontier", "--state", "state_column", default=None, metavar="COLUMN",
              help="Also fit P ~ M^c on the state frontier of all runs per budget, across "
              "architectures, with M from this column (e.g. total_state_8k). Not the paper's "
              "Finding 8: see 'madbench scaling state-optimal'.")
@click.option("--json", "as_json", is_flag=True)
def fit_cmd(runs, approach, bootstrap, params_column, plot_path, state_column, as_json):
    """Fit Approach 2 and/or 3 to RUNS (Parquet, CSV or a run directory; columns arch, params,
    tokens, flops, loss, optionally budget). Approach 3 takes at most 100 of the --bootstrap
    replicates."""
    from ..scaling.table import read_runs
    if plot_path is not None:   # '' too: refused, never ignored
        writable_file(plot_path, "--plot")   # before the fits, not after them
        from ..figures import image_path
        image_path(plot_path, "--plot")
    rows = read_runs(runs)
    from ..scaling.analysis import fit_runs
    fits = fit_runs(rows, approach, bootstrap, params_column)
    from ..scaling.state import state_frontiers_by_budget
    states = (state_frontiers_by_budget(rows, state_column, bootstrap) if state_column
              else None)
    if plot_path is not None:
        from ..scaling.plots import plot_fits
        plot_fits(rows, fits, params_column, plot_path)
    if as_json:
        doc = {"runs": str(runs), "params_column": params_column, "archs": fits}
        if states is not None:
            doc["state_frontier"] = states
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(render_fits(fits))
    for budget, fit in (states or {}).items():
        if "problem" in fit:
            click.echo(f"state frontier (all runs) at C={budget}: {fit['problem']}")
        else:
            click.echo(f"state frontier (all runs) at C={budget}: P ~ M^{fit['exponent']:.4g}"
                       f"{_interval(fit['exponent_interval'])} over "
                       f"{len(fit['frontier'])} frontier models")


def _replicates(doc: dict) -> str:
    """``bootstrap N``, or ``bootstrap: U of N replicates usable`` when some gave no fit (the
    interval is then over U, and under half of N it is not worth much)."""
    used, asked = doc.get("bootstrap_used", doc["bootstrap"]), doc["bootstrap"]
    if used == asked:
        return f"bootstrap {asked}"
    return (f"bootstrap: {used} of {asked} replicates usable"
            + ("; too few for a reliable interval" if used < asked / 2 else ""))


# -- state-optimal -------------------------------------------------------------------------
def render_state_optimal(doc: dict) -> str:
    rows = [[m["arch"], _num(m["budget"], ".3g"), _num(m["params"], ".3g"), _num(m["loss"]),
             _num(m["perplexity"]), _num(m["fixed_state"], ".4g"),
             _num(m["dynamic_state"], ".4g"), _num(m["state"], ".4g"),
             "ok" if m["problem"] is None else m["problem"]] for m in doc["models"]]
    head = "N*" if doc["optimum"] == "vertex" else "N (best run)"
    out = [f"compute-optimal model per architecture and budget ({doc['optimum']}); state M = "
           f"{doc['state_column']}\n",
           tabulate(rows, headers=["arch", "budget", head, "L*", "P*", "fixed", "dynamic",
                                   "M", "status"]),
           "", f"ln P* = k[arch] + c ln M: c = {_num(doc['exponent'])}"
           f"{_interval(doc['exponent_interval'])} ({_replicates(doc)}), rms "
           f"residual {_num(doc['residual_rms'], '.3g')} in ln P"]
    rows = [[a, _num(o["log_coef"]) + _interval(o["log_coef_interval"]), _num(o["coef"]),
             _num(o["exponent_alone"])] for a, o in doc["offsets"].items()]
    out += ["", tabulate(rows, headers=["arch", "k (ln coef)", "coef", "c fitted alone"])]
    return "\n".join(out)


@scaling_group.command("state-optimal")
@click.argument("runs", type=click.Path(exists=True))
@click.option("--state", "state_column", default="total_state_8k", show_default=True,
              metavar="COLUMN", help="State M of each run (fixed + dynamic at 8k).")
@click.option("--optimum", type=click.Choice(["vertex", "best"]), default="vertex",
              show_default=True, help="Compute-optimal model: the IsoFLOP parabola's vertex "
              "(state read at the vertex) or the group's best trained run.")
@_bootstrap_option(none_allowed=True)
@click.option("--json", "as_json", is_flag=True)
def state_optimal_cmd(runs, state_column, optimum, bootstrap, as_json):
    """The paper's state-optimal scaling (Finding 8): per architecture and budget the
    compute-optimal model, its state M and perplexity P*; P* = exp(k[arch]) M^c with one
    exponent c shared by the architectures."""
    from ..scaling.state import state_optimal
    from ..scaling.table import read_runs
    fit = state_optimal(read_runs(runs), state_column, optimum, bootstrap)
    doc = {"runs": str(runs), **fit.to_dict()}
    click.echo(json.dumps(doc, indent=2) if as_json else render_state_optimal(doc))


# -- frontier ------------------------------------------------------------------------------
@scaling_group.command("frontier")
@click.argument("runs", type=click.Path(exists=True))
@click.option("--out", "out_dir", default="leaderboards/frontiers", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--command", "commands", multiple=True,
              help="A command that produced the runs, recorded beside them (repeatable); "
              "this frontier command is recorded too.")
@click.option("--corpus", default=None, help="Corpus folder name (default: the runs' corpus).")
@_bootstrap_option(none_allowed=False)
def frontier_cmd(runs, out_dir, commands, corpus, bootstrap):
    """Store RUNS as frontiers: OUT/<corpus>/<arch>/points.parquet and frontier.json (a
    warning on stderr names the budgets without an interior vertex, and why)."""
    from ..scaling.frontiers import write_frontiers
    from ..scaling.table import read_runs
    own = f"madbench scaling frontier {shlex.quote(str(runs))} --out {shlex.quote(str(out_dir))}"
    own += (f" --corpus {shlex.quote(corpus)}" if corpus else "") + f" --bootstrap {bootstrap}"
    writable_dir(out_dir, "--out")           # before the bootstrap fits, not after them
    written = write_frontiers(read_runs(runs), out_dir, [*commands, own], bootstrap, corpus)
    for folder in written:
        click.echo(str(folder))
        _warn_invalid_budgets(folder, json.loads((folder / "frontier.json").read_text()))


def _warn_invalid_budgets(folder, doc: dict) -> None:
    """One line on stderr when budgets of the frontier ``doc`` have no vertex: how many, why,
    and the Approach 2 fit's problem, if any ('scaling validate' compares no such budget)."""
    bad = [b for b in doc["budgets"] if not b["valid"]]
    if bad:
        why = "; ".join(f"C={b['budget']:.3g}: {b['problem']}" for b in bad)
        problem = doc["approach2"].get("problem")
        warn(f"{folder}: {len(bad)} of {plural(len(doc['budgets']), 'budget')} invalid ({why})"
             + (f"; Approach 2: {problem}" if problem else ""))


# -- validate ------------------------------------------------------------------------------
@scaling_group.command("validate")
@click.argument("submission", type=click.Path(exists=True))
@click.option("--frontiers", "frontiers_dir", default=None,
              type=click.Path(exists=True, file_okay=False), help="Stored frontiers "
              "[default: leaderboards/frontiers here, else the madbench checkout's].")
@click.option("--json", "as_json", is_flag=True)
@click.option("--trust-code", is_flag=True, help="Import mixers that are neither bundled nor "
              "from an installed plugin distribution the submission names (runs their code).")
@click.pass_context
def validate_cmd(ctx, submission, frontiers_dir, as_json, trust_code):
    """Check a scaling SUBMISSION (JSON, a runs table, or a run directory as for 'scaling
    fit'): FLOPs recomputed, convex IsoFLOP curves with interior vertices, frontier against the
    stored ones. Exit 3 when invalid, malformed input included (not JSON, NaN, deep nesting, a
    table that does not parse); 2 when SUBMISSION cannot be opened."""
    from ..scaling.frontiers import default_root
    from ..scaling.validate import load_submission, validate
    sub = load_submission(submission)
    if frontiers_dir is None:
        frontiers_dir = default_root()
        if frontiers_dir is None:
            warn("no stored frontiers (no leaderboards/frontiers here, and madbench does not "
                 "run from a checkout): not compared; give --frontiers DIR")
    verdict = validate(sub, frontiers_dir, trust_code)
    if as_json:
        click.echo(json.dumps({"submission": str(submission), "arch": sub.arch,
                               **verdict.to_dict()}, indent=2))
    else:
        click.echo(f"{sub.arch}: {'VALID' if verdict.valid else 'INVALID'} "
                   f"({len(sub.runs)} runs, {len(verdict.groups)} budget groups)")
        for reason in verdict.reasons:
            click.echo(f"  reason: {reason}")
        for warning in verdict.warnings:
            click.echo(f"  warning: {warning}")
        for note in verdict.notes:
            click.echo(f"  note: {note}")
        if verdict.comparisons:
            rows = [[c["arch"], _num(c["budget"], ".3g"), _num(c["submission_loss"]),
                     _num(c["stored_loss"]) + _interval(c["stored_band"]),
                     _num(c["ratio"], ".3f")] for c in verdict.comparisons]
            click.echo(tabulate(rows, headers=["stored arch", "budget", "L* submitted",
                                               "L* stored [band]", "ratio"]))
    if not verdict.valid:
        ctx.exit(3)


# -- correlate -----------------------------------------------------------------------------
@scaling_group.command("correlate")
@click.argument("runs", type=click.Path(exists=True))
@click.option("--mad", "mad_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="MAD scores (finite numbers): CSV (arch, mad_score), JSON {arch: score}, or "
              "a JSON list of 'madbench report --format json' documents.")
@click.option("--budget", default=None, type=FiniteFloat(0, min_open=True),
              help="Budget of the compute-optimal "
              "losses (default: the largest one every architecture has).")
@click.option("--predict", "predict_scores", multiple=True, type=FiniteFloat(),
              help="Predict the compute-optimal loss for this MAD score (repeatable).")
@click.option("--json", "as_json", is_flag=True)
def correlate_cmd(runs, mad_path, budget, predict_scores, as_json):
    """Rank and linear correlation between MAD scores and compute-optimal loss."""
    from ..scaling.correlate import compute_optimal_losses, correlate, read_mad_scores
    from ..scaling.table import read_runs
    rows = read_runs(runs)
    scores = read_mad_scores(mad_path)
    archs = sorted({str(r["arch"]) for r in rows} & set(scores))
    if len(archs) < 3:
        raise UsageError(f"{len(archs)} architecture(s) have both runs and a MAD score; "
                         "correlation needs 3 (names must match the runs' arch column)")
    budget, losses = compute_optimal_losses(rows, archs, budget)
    result = correlate(scores, losses, budget)
    predictions = [{"mad_score": s, "predicted_loss": result.predict(s)}
                   for s in predict_scores]
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "predictions": predictions}, indent=2))
        return
    table = [[a, _num(s, ".3f"), _num(l)] for a, s, l in
             zip(result.archs, result.scores, result.losses)]
    click.echo(f"compute-optimal loss at C={budget:.3g}\n")
    click.echo(tabulate(table, headers=["arch", "MAD score", "loss"]))
    click.echo(f"\nSpearman {result.spearman:.3f} (p {result.spearman_p:.2g}), Pearson "
               f"{result.pearson:.3f} (p {result.pearson_p:.2g}); loss = "
               f"{result.intercept:.4g} {'-' if result.slope < 0 else '+'} "
               f"{abs(result.slope):.4g} x MAD score")
    for p in predictions:
        click.echo(f"MAD score {p['mad_score']:.3f} -> predicted loss "
                   f"{p['predicted_loss']:.4g}")


COMMANDS = [scaling_group]
