"""Which flash-linear-attention layer classes madbench can evaluate, measured: every class
``fla.layers`` exports is tried through madbench's fla adapter (``--arch fla.layers:NAME``).

Per class: (1) resolve and build it at ``--dim`` (refusals give their one-line reason); (2) one
forward pass on the device; (3) the causality guard (``madbench.checks.check_causality``, CPU
tensors: a CUDA-only layer runs on the GPU through the adapter when one is present); (4) the
state audit (``audit_state``, at ``--audit-dim``): declared state + cache against the measured
Jacobian rank; (5) one smoke run: the standard model ([X, SwiGLU, X, SwiGLU], four X for Mamba-
like layers) trained ``--steps`` AdamW steps on a shifted-copy task (predict the previous
token; vocabulary 16), first and last loss (ln 16 = 2.77 is chance).

Status: ``evaluable`` (built, ran, causal, state audit passed or measured, smoke loss finite),
``GPU only`` (its kernels do not run on CPU), ``GPU only: needs Triton >= 3.7.1 or tilelang on
Hopper (fla's guard)`` (its backward reaches fla's gated ``chunk_bwd_dqkwg``, which fla refuses
on Hopper GPUs with 3.4.0 <= Triton < 3.7.1: the adapter refuses it up front, or fla raised it),
``refused`` (cannot fit the mixer contract) or ``fails`` (with the first failing step and its
reason).

Outputs: the table as one markdown file (``--out``; also printed on stdout) and one line per
class on stderr (with ``FLA_STATUS_TRACEBACK=1``, tracebacks too): redirect both to one log, so
that a run leaves two files.

    python benchmarks/fla_status.py --device cpu --out docs/fla_status_cpu.md
    python benchmarks/fla_status.py --device cuda --out $OUT/fla_status_h200.md --workers 8

fla's float32 matrix products run in IEEE precision (``TRITON_F32_DEFAULT=ieee``, unless set
otherwise), so that TF32 rounding does not pass for state in the audit. Each class is measured in
its own process, ``--workers`` at a time (Triton compiles on the CPU); one that gives no result
within ``--class-timeout-s`` is killed and reported as failing, and classes still unmeasured at
``--deadline-s`` are reported as such. ``--out`` is rewritten as each class finishes, so a run
cut short leaves its rows; ``--resume TABLE`` keeps the measured rows of an earlier table and
measures only the rest (a long table over several time-limited calls). ``--autotune one`` has
Triton's autotuner try one configuration per kernel (``benchmarks/triton_one_config.py``, in
every worker): each kernel compiles once instead of once per config; the computation is the
same, its speed and rounding may differ. Needs fla (``madbench[fla]``).
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTED = time.perf_counter()   #: --deadline-s counts from here, imports included


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.replace("|", "/")[:160]


#: The status of a class that fla's Hopper/Triton guard (fla #640) keeps from training here.
GUARDED = "GPU only: needs Triton >= 3.7.1 or tilelang on Hopper (fla's guard)"


def hopper_guarded(message: str) -> bool:
    """Whether a refusal or failure is fla's Hopper/Triton guard: the adapter's up-front refusal
    (``hopper_guard_refusal``) or fla's own RuntimeError."""
    from madbench.fla_guard import FLA_GUARD_MESSAGE
    return "chunk_bwd_dqkwg" in message and ("#640" in message or FLA_GUARD_MESSAGE in message)


def measure(name: str, device: str, dim: int, audit_dim: int, seq_len: int, steps: int) -> dict:
    """Try one fla class; returns a row (dict)."""
    warnings.simplefilter("ignore")
    import torch

    from madbench.architecture import LayerSpec, build_mixer, mixer_entry, resolve_architecture
    from madbench.checks import audit_state, check_causality
    from madbench.errors import MadbenchError
    from madbench.fla_adapter import FlaUnsupported
    from madbench.model import LanguageModel, auxiliary_loss

    torch.set_num_threads(1)
    mixer = f"fla.layers:{name}"
    row = _row(name, "", "")
    start = time.perf_counter()
    step = "resolve"
    try:
        try:
            entry = mixer_entry(mixer)
        except MadbenchError as exc:
            note = str(exc).replace(f"{mixer} is refused: ", "", 1).replace("|", "/")
            row.update(status=GUARDED if hopper_guarded(note) else "refused", note=note[:160])
            return row
        step = "build"
        torch.manual_seed(0)
        layer = build_mixer(LayerSpec(mixer), dim).to(device)
        step = f"forward on {device}"
        x = torch.randn(2, seq_len, dim, device=device)
        y = layer(x)
        y.float().square().mean().backward()
        if not torch.isfinite(y).all():
            raise RuntimeError("non-finite output")
        step = "causality"
        causal = check_causality(build_mixer(LayerSpec(mixer), dim), dim, seq_len)
        row["causal"] = "yes" if causal.causal else f"no ({causal.message[:60]})"
        step = "state audit"
        audit = audit_state(lambda d: build_mixer(LayerSpec(mixer), d), audit_dim)
        row["declared"] = ("-" if audit.declared_state is None else
                           f"{audit.declared_state} + {audit.declared_cache}")
        row["measured"] = f"{audit.measured_state}{'+' if audit.saturated else ''}" + (
            f" ({audit.measured_as_built} as built)" if audit.perturbed else "")
        step = "smoke run"
        spec = resolve_architecture(mixer, dim=dim)
        torch.manual_seed(0)
        model = LanguageModel(spec, 16).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(steps):
            tokens = torch.randint(0, 16, (16, seq_len), generator=gen).to(device)
            logits = model(tokens)[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 16),
                                                     tokens[:, :-1].reshape(-1))
            aux = auxiliary_loss(model)
            opt.zero_grad()
            (loss if aux is None else loss + aux).backward()
            opt.step()
            losses.append(float(loss))
        row["smoke"] = f"{losses[0]:.2f} -> {losses[-1]:.2f}"
        problems = []
        if not causal.causal:
            problems.append("not causal")
        if audit.ok is False:
            problems.append(f"state audit: {audit.message[:80]}")
        if not all(math.isfinite(l) for l in losses):
            problems.append("smoke loss not finite")
        row["status"] = f"fails: {'; '.join(problems)}" if problems else "evaluable"
        if audit.declared_state is None:
            row["note"] = f"state measured at width {audit_dim}" + (
                " (saturated: a lower bound)" if audit.saturated else "")
    except FlaUnsupported as exc:
        message = str(exc).replace(f"{mixer} ", "", 1).replace("|", "/")
        if hopper_guarded(message):
            row["status"] = GUARDED
        elif "does not run on CPU" in message:
            row["status"] = "GPU only"
            message = message[message.find("(") + 1:message.rfind(")")]
        elif "cannot be built" in message:
            row["status"] = "not buildable here"
            message = message.split(" with {")[0] + ": " + message.rsplit("}: ", 1)[-1]
        else:
            row["status"] = "refused"
        row["note"] = message[:160]
    except Exception as exc:  # noqa: BLE001 - every failure is a row, not a crash
        row["note"] = _one_line(exc)
        row["status"] = GUARDED if hopper_guarded(row["note"]) else f"fails at {step}"
        if os.environ.get("FLA_STATUS_TRACEBACK"):
            traceback.print_exc()
    finally:
        row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _worker_init() -> None:
    warnings.simplefilter("ignore")
    # fla's float32 products in IEEE precision (Triton's default is TF32, whose ~1e-3 noise
    # would count as state under the audit's 1e-5 rank cut-off); set before any kernel compiles
    os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")
    sys.path[:0] = [ROOT, os.path.join(ROOT, "plugins")]
    if os.environ.get("FLA_STATUS_AUTOTUNE") == "one":   # set by main for --autotune one
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import triton_one_config  # noqa: F401 - patches Triton's autotuner on import


def render(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| fla class | status | causal | declared state + cache | measured state | "
             "smoke loss | note |",
             "| --- | --- | --- | ---: | ---: | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['class']}` | {r['status']} | {r['causal']} | {r['declared']} | "
                     f"{r['measured']} | {r['smoke']} | {r['note']} |")
    counts: dict[str, int] = {}
    for r in rows:
        key = "fails" if r["status"].startswith("fails") else r["status"]
        counts[key] = counts.get(key, 0) + 1
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    return "\n".join(lines) + "\n"


#: Measured first: the DeltaNet class and the layers the MAD baselines have counterparts of.
FIRST = ["GatedDeltaNet", "DeltaNet", "Mamba2", "RWKV7Attention", "GatedLinearAttention",
         "Mamba", "LinearAttention", "HGRN2Attention", "MultiScaleRetention", "RWKV6Attention"]


def _row(name: str, status: str, note: str) -> dict:
    return {"class": name, "status": status, "causal": "-", "declared": "-", "measured": "-",
            "smoke": "-", "note": note, "seconds": 0}


def read_table(path: str) -> dict[str, dict]:
    """The measured rows of an earlier table this script wrote (``--resume``): every row but
    the ``not measured`` ones, by class name."""
    rows = {}
    keys = ("class", "status", "causal", "declared", "measured", "smoke", "note")
    with open(path) as f:
        for line in f:
            if not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) != len(keys):
                raise SystemExit(f"error: {path}: not a table of this script: {line.strip()}")
            row = dict(zip(keys, cells), seconds=0)
            row["class"] = row["class"].strip("`")
            if row["status"] != "not measured":
                rows[row["class"]] = row
    return rows


def _child(conn, args: tuple) -> None:
    _worker_init()
    conn.send(measure(*args))
    conn.close()


def measure_all(order: list[str], args: tuple, workers: int, deadline_s: float,
                class_timeout_s: float, on_row, started: float | None = None) -> None:
    """Measure each class in its own process, ``workers`` at a time; ``on_row(row)`` as each
    finishes. A class that gives no result within ``class_timeout_s`` is killed and reported
    as failing (a hang or a very slow compile takes one worker, not the run); at
    ``deadline_s`` (counted from ``started``, default now) the running ones are killed and the
    rest reported as not measured."""
    ctx = mp.get_context("spawn")
    queue, running = list(order), {}
    started = time.perf_counter() if started is None else started
    while queue or running:
        now = time.perf_counter()
        late = now - started >= deadline_s
        while queue and len(running) < workers and not late:
            name = queue.pop(0)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(child, (name, *args)), daemon=True)
            proc.start()
            child.close()
            running[name] = (proc, parent, now)
        for name, (proc, conn, t0) in list(running.items()):
            row = None
            if conn.poll():
                try:
                    row = conn.recv()
                except Exception:  # noqa: BLE001 - ended without a (readable) result
                    proc.join(5)
            if row is None and not proc.is_alive():
                row = _row(name, "fails at measuring",
                           f"the worker process exited with code {proc.exitcode}, no result")
            elif row is None and now - t0 > class_timeout_s:
                row = _row(name, "fails: no result", f"no result within {class_timeout_s:.0f} s "
                           "(killed: a hang, or compiling took that long)")
                row["seconds"] = round(now - t0, 1)
            elif row is None and late:
                row = _row(name, "not measured", f"time budget of {deadline_s:.0f} s spent")
            if row is not None:
                if proc.is_alive():
                    proc.kill()
                proc.join(5)
                del running[name]
                on_row(row)
        if late:
            for name in queue:
                on_row(_row(name, "not measured", f"time budget of {deadline_s:.0f} s spent"))
            queue = []
        time.sleep(0.2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", default=None, help="write the markdown table here too (it is "
                        "rewritten as each class finishes, so a killed run leaves its rows)")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--audit-dim", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--classes", default=None, help="comma-separated classes to measure "
                        "(with --resume: measured again even where the table has them)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=1800.0)
    parser.add_argument("--class-timeout-s", type=float, default=600.0,
                        help="kill one class's measurement after this long")
    parser.add_argument("--resume", default=None, metavar="TABLE",
                        help="an earlier table of this script: its measured rows are kept and "
                             "only the other classes (or those --classes names) are measured; "
                             "the table then lists every class")
    parser.add_argument("--autotune", choices=("full", "one"), default="full",
                        help="one: Triton's autotuner tries one configuration per kernel (its "
                             "least resource-hungry one; benchmarks/triton_one_config.py)")
    args = parser.parse_args(argv)
    for flag in ("workers", "deadline_s", "class_timeout_s"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    try:
        kept = read_table(args.resume) if args.resume else {}
    except OSError as exc:
        parser.error(f"--resume: cannot read {args.resume}: {exc.strerror}")
    os.environ["FLA_STATUS_AUTOTUNE"] = args.autotune   # the spawned workers inherit it
    _worker_init()
    import torch
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from madbench.fla_adapter import class_names, import_fla
    fla = import_fla("fla")
    chosen = [n for n in args.classes.split(",") if n] if args.classes else None
    names = class_names() if args.resume or not chosen else chosen   # the table's rows
    names += [n for n in (chosen or []) if n not in names]
    todo = chosen if chosen else [n for n in names if n not in kept]
    kept = {n: row for n, row in kept.items() if n in names and n not in todo}
    # the classes users compare against first, so that a cut budget still covers them
    order = sorted(todo, key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0))
    started = STARTED
    rows = {n: kept.get(n, _row(n, "not measured", "not reached yet")) for n in names}
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"

    def table() -> str:
        header = (f"fla {getattr(fla, '__version__', '?')}, torch {torch.__version__}, device "
                  f"{gpu}; width {args.dim}, audit width {args.audit_dim}, L {args.seq_len}, "
                  f"{args.steps} smoke steps; float32 dots "
                  f"{os.environ['TRITON_F32_DEFAULT']}; autotune: "
                  f"{'one config per kernel' if args.autotune == 'one' else 'full'}; "
                  f"{time.perf_counter() - started:.0f} s")
        if kept:
            header += f"; {len(kept)} rows kept from {os.path.basename(args.resume)}"
        return render([rows[n] for n in names], header)

    def on_row(row: dict) -> None:
        rows[row["class"]] = row
        print(f"{row['class']}: {row['status']} ({row['seconds']} s)", file=sys.stderr,
              flush=True)
        if args.out:
            _write(args.out, table())

    measure_all(order, (device, args.dim, args.audit_dim, args.seq_len, args.steps),
                args.workers, args.deadline_s, args.class_timeout_s, on_row, STARTED)
    text = table()
    print(text)
    if args.out:
        _write(args.out, text)
    return 0


def _write(path: str, text: str) -> None:
    """Atomically: a kill mid-write leaves the previous table."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
