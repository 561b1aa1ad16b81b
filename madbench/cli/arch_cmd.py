"""``madbench arch list|describe`` and ``madbench check``: what an architecture is made of,
what it costs, and whether it passes the causality guard and the state audit."""
from __future__ import annotations

import json

import click
from tabulate import tabulate

from ..accounting import PARAM_TOLERANCE, STATE_TARGET
from ..architecture import _coerce_layers, resolve_architecture
from ..checks import AUDIT_MAX_SIZE, audit_architecture, guard_lengths, state_failures
from ..errors import CheckFailed
from ..plugins import get_registry
from ..verdict import (architecture_verdict, check_buildable, eval_outcome, guard_lengths_for,
                       verdict_lines)
from . import CHANNEL_HELP, FiniteFloat


def _number(value) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return f"{value:,}"


def arch_options(default_seq_len: int):
    """The options every architecture command takes (``--arch`` modifiers and sizes)."""
    def decorate(func):
        for option in reversed([
            click.option("--seq-len", type=click.IntRange(2), default=default_seq_len,
                         show_default=True, help="Sequence length L."),
            click.option("--vocab-size", type=click.IntRange(2), default=16,
                         show_default=True, help="Vocabulary size V."),
            click.option("--channel", default=None, help=CHANNEL_HELP),
            click.option("--striped", is_flag=True,
                         help="Make the second block multi-head attention."),
            click.option("--mixer-kwargs", default=None, metavar="JSON",
                         help="Constructor kwargs of the sequence mixer, as a JSON object."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]):
            func = option(func)
        return func
    return decorate


def _layer_list(layers) -> str:
    """An architecture registered without a description, described by its layers."""
    try:
        return "layers: " + ", ".join(layer.mixer for layer in _coerce_layers(layers))
    except Exception:  # noqa: BLE001 - a malformed registration is reported when it is used
        return ""


def _resolve(arch, channel, striped, mixer_kwargs):
    """The architecture, every layer built once (a constructor that raises: eval's one-line
    usage error naming the layer)."""
    spec = resolve_architecture(arch, channel=channel, striped=striped,
                                mixer_kwargs=mixer_kwargs)
    check_buildable(spec)
    return spec


@click.group("arch")
def arch_group() -> None:
    """Architectures: list them, describe their parameters, state and FLOPs."""


@arch_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Registered architectures and mixers."""
    reg = get_registry()
    archs = [{"name": e.name, "mad_lab_id": e.metadata.get("mad_lab_id"),
              "description": e.metadata.get("description") or _layer_list(e.obj),
              "plugin": e.plugin}
             for e in reg.architectures.values()]
    mixers = [{"name": e.name, "shorthand": e.metadata.get("shorthand"),
               "kind": e.metadata.get("kind", "sequence"),
               "description": e.metadata.get("description", ""), "plugin": e.plugin}
              for e in reg.mixers.values()]
    if as_json:
        click.echo(json.dumps({"architectures": archs, "mixers": mixers}, indent=2))
        return
    click.echo(tabulate([[a["name"], a["mad_lab_id"] or "", a["description"]] for a in archs],
                        headers=["architecture", "mad-lab id", "description"]))
    click.echo()
    click.echo(tabulate([[m["name"], m["shorthand"] or "", m["kind"], m["description"]]
                         for m in mixers],
                        headers=["mixer", "shorthand", "kind", "description"]))


def description_with_verdicts(spec, seq_len: int, vocab_size: int, state_target: int,
                              state_tolerance: float, param_tolerance: float) -> dict:
    """``describe_architecture`` plus the iso-state verdict and the parameter ratio (the
    verdict of ``madbench.verdict``, as ``madbench eval`` applies it)."""
    verdict = architecture_verdict(spec, seq_len, vocab_size, state_target, state_tolerance,
                                   param_tolerance)
    return {**verdict["description"], "iso_state": verdict["iso_state"],
            "param_ratio": verdict["param_ratio"], "flags": verdict["flags"]}


@arch_group.command("describe")
@click.argument("arch")
@arch_options(default_seq_len=128)
@click.option("--state-target", type=click.IntRange(1), default=STATE_TARGET,
              show_default=True, help="Iso-state target (total fixed state).")
@click.option("--state-tolerance", type=FiniteFloat(0), default=0.0, show_default=True,
              help="Allowed relative deviation from the state target.")
@click.option("--param-tolerance", type=FiniteFloat(0), default=PARAM_TOLERANCE,
              show_default=True, help="Flag a parameter ratio further than this from 1.")
def describe_command(arch, seq_len, vocab_size, channel, striped, mixer_kwargs, as_json,
                     state_target, state_tolerance, param_tolerance) -> None:
    """Parameters (total, active), fixed state, dynamic state at L, short-conv cache and
    forward FLOPs per token, per layer and in total, with the iso-state verdict and the
    non-embedding parameter ratio to the mA-Sg-mA-Sg baseline.

    ARCH: a registered architecture, a registered mixer (the standard MAD model around it), an
    import path pkg.module:Class, or a shorthand such as mH-Sg-mA-Sg."""
    spec = _resolve(arch, channel, striped, mixer_kwargs)
    d = description_with_verdicts(spec, seq_len, vocab_size, state_target, state_tolerance,
                                  param_tolerance)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    rows = [[l["index"], l["mixer"], l["kind"], _number(l["params"]),
             _number(l["active_params"]), _number(l["fixed_state"]),
             _number(l["dynamic_state"]), _number(l["cache"]), _number(l["flops_per_token"])]
            for l in d["layers"]]
    rows.append(["", "total", "", _number(d["params"]), _number(d["active_params"]),
                 _number(d["fixed_state"]), _number(d["dynamic_state"]), _number(d["cache"]),
                 _number(d["flops_per_token"])])
    click.echo(f"{d['name']}  (dim {d['dim']}, L {seq_len}, V {vocab_size})")
    click.echo(tabulate(rows, headers=["#", "mixer", "kind", "params", "active",
                                       "fixed state", f"dynamic @{seq_len}", "cache",
                                       "FLOPs/token"], disable_numparse=True))
    click.echo(f"non-embedding params: {d['non_embedding_params']:,} "
               f"(active {d['active_non_embedding_params']:,})")
    for line in verdict_lines(d):
        click.echo(line)


@click.command("check")
@click.option("--arch", "arch", required=True, help="Architecture (as for arch describe).")
@arch_options(default_seq_len=64)
@click.option("--audit-dim", type=click.IntRange(1), default=None,
              help="Audit every sequence mixer at this width (default: the model width, "
                   "narrowed where the audit would exceed --max-audit-size).")
@click.option("--max-audit-size", type=click.IntRange(16), default=AUDIT_MAX_SIZE,
              show_default=True, help="Largest Jacobian side the state audit builds.")
@click.option("--allow-state-mismatch", is_flag=True,
              help="As for eval: a missed state target is flagged, not refused.")
@click.option("--state-target", type=click.IntRange(1), default=STATE_TARGET,
              show_default=True, help="As for eval: the total fixed state of models without "
              "attention.")
@click.option("--param-tolerance", type=FiniteFloat(0), default=PARAM_TOLERANCE,
              show_default=True, help="As for eval: flag a parameter ratio further than this "
              "from 1.")
def check_command(arch, seq_len, vocab_size, channel, striped, mixer_kwargs, as_json,
                  audit_dim, max_audit_size, allow_state_mismatch, state_target,
                  param_tolerance) -> None:
    """The verdicts of 'madbench eval' (causality and the mixer contract, iso-state,
    parameter ratio) plus the empirical state audit of every layer.

    Exit 3 when a check fails; an architecture that passes here is not refused by eval with
    the same options. The audit is check's own: eval audits only layers that declare no
    state_size (and takes their measured state as a lower bound)."""
    spec = _resolve(arch, channel, striped, mixer_kwargs)
    # eval's lengths under its defaults (every task, the paper preset), and --seq-len
    from ..protocol import get_protocol
    from ..sweep import plan
    from ..tasks import all_tasks
    lengths = sorted(guard_lengths_for(plan(spec, all_tasks(), get_protocol("paper"), [0],
                                            None)) | {seq_len})
    guard = guard_lengths(spec, lengths, vocab_size=vocab_size, raise_on_failure=False)
    verdict = architecture_verdict(spec, state_target=state_target,
                                   param_tolerance=param_tolerance,
                                   allow_state_mismatch=allow_state_mismatch)
    audit = audit_architecture(spec, max_size=max_audit_size, audit_dim=audit_dim)
    audits = {a["index"]: a for a in audit["layers"]}
    layers = [{**l, "audit": audits.get(l["index"])} for l in guard["layers"]]
    failures = guard["failures"] + state_failures(audit) + \
        ([verdict["refusal"]] if verdict["refusal"] else [])
    eval_verdict = eval_outcome(guard, verdict)
    report = {"arch": spec.name, "causal": guard["causal"], "contract_ok": guard["contract_ok"],
              "declared_state": audit["declared_state"],
              "measured_state": audit["measured_state"], "state_ok": audit["state_ok"],
              "iso_state": verdict["iso_state"], "param_ratio": verdict["param_ratio"],
              "flags": verdict["flags"], "eval": eval_verdict,
              "ok": not failures, "failures": failures, "model": guard["model"],
              "layers": layers}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        rows = []
        for l in layers:
            a = l["audit"]
            rows.append([l["index"], l["mixer"], "yes" if l["causality"]["causal"] else "NO",
                         "ok" if l["contract"]["ok"] else "NO",
                         "-" if a is None else _number(a["declared_total"]),
                         "-" if a is None else _number(a["measured_state"]),
                         "-" if a is None else a["dim"],
                         "-" if a is None else ("convention" if a.get("convention") else
                                                "?" if a["ok"] is None else
                                                "ok" if a["ok"] else "UNDER-DECLARED")])
        click.echo(f"{spec.name}  (dim {spec.dim}, causality at L "
                   f"{', '.join(map(str, lengths))})")
        click.echo(tabulate(rows, headers=["#", "mixer", "causal", "contract",
                                           "declared+cache", "measured", "audit dim",
                                           "state"], disable_numparse=True))
        notes = {a["mixer"]: a["message"] for a in audits.values()
                 if a.get("convention") or a["declared_state"] is None}
        for mixer, message in notes.items():
            click.echo(f"state of {mixer}: {message}")
        click.echo(f"whole model: {guard['model']['message']}")
        for line in verdict_lines(verdict):
            click.echo(line)
        click.echo(f"madbench eval with these options: {eval_verdict}")
        click.echo("all checks passed" if not failures else
                   f"{len(failures)} check{'s' * (len(failures) != 1)} failed")
    if failures:
        raise CheckFailed(failures[0])


COMMANDS = [arch_group, check_command]
