"""The fidelity panel: each bundled layer beside the reference implementation's layer of the same
name (athms/mad-lab), trained by madbench's own harness with the same settings, side by side.

The panel is memorization (all six settings) plus the cheapest setting of every other task (the
smallest training set, N = 800), under a protocol preset (``paper`` by default), best of the
six-configuration sweep per setting. Each arm (one layer configuration) runs in its own process
and run directory, several at a time on one GPU; the run directories resume.

    python3 benchmarks/fidelity.py run --pairs all --panel all --run-dir runs/fidelity --jobs 8
    python3 benchmarks/fidelity.py table --run-dir runs/fidelity --out docs/fidelity-table.md
    python3 benchmarks/fidelity.py equivalence      # copied weights: same outputs?

The reference code is test tooling, never part of madbench: a snapshot of mad-lab's tree in
``--ref`` (default ``.ref/madlab``; ``git archive`` of athms/mad-lab without ``assets/``), plus
``benchmarks/reference_shims`` for what cannot be installed here (flash-attn's MHA module and
mamba-ssm's selective-scan entry point, supplied from PyTorch and madbench's scan).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIMS = HERE / "reference_shims"
TOLERANCE = 0.03              #: per setting, |bundled - reference|
SCORE_TOLERANCE = 0.02        #: memorization score (mean of its six settings)

_REF = "mad.model.layers"
HYENA = {"order": 2, "num_heads": 1, "inner_factor": 4, "num_blocks": 1, "proj_groups": 4,
         "short_filter_order": 3, "activation": "id",
         "long_conv_cfg": {"bias": True, "filter_cls": "implicit", "filter_cfg": {"order": 4}}}
MH_HYENA = {"order": 2, "num_heads": 16, "inner_factor": 1, "num_blocks": 1,
            "short_filter_order": 3, "activation": "id",
            "long_conv_cfg": {"num_heads": 16, "bias": True, "filter_cls": "implicit",
                              "filter_cfg": {"order": 2}}}
#: The paper's layout (16 heads of 8) in mad-lab's code: 8 filter channels -> 16, head size 8.
MH_HYENA_PAPER = {**MH_HYENA, "num_heads": 8,
                  "long_conv_cfg": {**MH_HYENA["long_conv_cfg"], "num_heads": 8}}
HYENA_EXPERTS = {"dim_inner": 16, "num_experts": 8, "active_experts": 2, "order": 2,
                 "num_heads": 1, "inner_factor": 1, "num_blocks": 1, "short_filter_order": 3,
                 "activation": "id",
                 "long_conv_cfg": {"bias": True, "filter_cls": "implicit",
                                   "filter_cfg": {"order": 16}}}
ATTENTION = {"causal": True, "n_heads": 1, "rotary_emb_dim": 128, "window_size": [-1, -1]}
MH_ATTENTION = {"causal": True, "n_heads": 16, "rotary_emb_dim": 8, "window_size": [-1, -1]}
MAMBA = {"d_state": 4, "d_conv": 4, "expand": 2, "dt_rank": "auto", "dt_min": 0.001,
         "dt_max": 0.1, "dt_init": "random", "dt_scale": 1.0, "dt_init_floor": 0.0001,
         "conv_bias": True, "bias": False}
GLA = {"expand_v": 1, "expand_k": 1, "gate_fn": "swish", "layernorm_eps": 1e-5,
       "gate_logit_normalizer": 16, "gate_low_rank_dim": 16, "mode": "chunk",
       "fuse_norm": False}

#: One layer configuration each: --arch, --mixer-kwargs, environment, allow a state mismatch.
ARMS: dict[str, dict] = {
    "hyena": {"arch": "hyena-swiglu"},
    "ref-hyena": {"arch": f"{_REF}.hyena:HyenaOperator", "kwargs": HYENA},
    "mh-hyena": {"arch": "mh-hyena-swiglu"},
    "ref-mh-hyena-paper-layout": {"arch": f"{_REF}.hyena:MultiHeadHyenaOperator",
                                  "kwargs": MH_HYENA_PAPER},
    "mh-hyena-as-coded": {"arch": "mh-hyena", "kwargs": {"heads": 8, "head_size": 16},
                          "allow": True},
    "ref-mh-hyena": {"arch": f"{_REF}.hyena:MultiHeadHyenaOperator", "kwargs": MH_HYENA},
    "hyena-experts": {"arch": "hyena-experts-swiglu"},
    "hyena-experts-madlab-routing": {"arch": "hyena-experts", "kwargs": {"routing": "mad-lab"}},
    "ref-hyena-experts": {"arch": f"{_REF}.hyena:HyenaExpertsOperator",
                          "kwargs": HYENA_EXPERTS},
    "hyena-modal": {"arch": "hyena-modal"},
    "mh-attention": {"arch": "mh-attention-swiglu"},
    "mh-attention-no-bias": {"arch": "mA", "kwargs": {"bias": False}},
    "ref-mh-attention": {"arch": f"{_REF}.attention:Attention", "kwargs": MH_ATTENTION},
    "ref-mh-attention-no-bias": {"arch": f"{_REF}.attention:Attention",
                                 "kwargs": {**MH_ATTENTION, "qkv_proj_bias": False,
                                            "out_proj_bias": False}},
    "attention": {"arch": "attention-swiglu"},
    "ref-attention": {"arch": f"{_REF}.attention:Attention", "kwargs": ATTENTION},
    "mamba": {"arch": "mamba"},
    "mamba-reference-scan": {"arch": "mamba", "env": {"MADBENCH_KERNELS": "reference"}},
    "mamba-bf16-step": {"arch": "madbench_variants:MambaBf16Step"},
    "mamba-no-conv-bias": {"arch": "Mb", "kwargs": {"conv_bias": False}},
    "ref-mamba": {"arch": "madlab_mamba:Mamba", "kwargs": MAMBA},
    "mh-gla": {"arch": "mh-gla-swiglu"},
    "ref-mh-gla": {"arch": f"{_REF}.attention_gated_linear:GatedLinearAttention",
                   "kwargs": {**GLA, "num_heads": 8},
                   "env": {"TRITON_ALLOW_NON_CONSTEXPR_GLOBALS": "1"}},
    "ref-mh-gla-nudged": {"arch": "madlab_nudged:GatedLinearAttention",
                          "kwargs": {**GLA, "num_heads": 8},
                          "env": {"TRITON_ALLOW_NON_CONSTEXPR_GLOBALS": "1"}},
    "gla": {"arch": "gla-swiglu", "allow": True},
    "ref-gla": {"arch": f"{_REF}.attention_gated_linear:GatedLinearAttention",
                "kwargs": {**GLA, "num_heads": 1}, "allow": True,
                "env": {"TRITON_ALLOW_NON_CONSTEXPR_GLOBALS": "1"}},
    "ref-gla-standard-strides": {"arch": "madlab_gla:GatedLinearAttention",
                                 "kwargs": {**GLA, "num_heads": 1}, "allow": True,
                                 "env": {"TRITON_ALLOW_NON_CONSTEXPR_GLOBALS": "1"}},
    "swiglu": {"arch": "mA-Sg-mA-Sg"},
    "ref-swiglu": {"arch": "mA-madlab_channel:SwiGLU-mA-madlab_channel:SwiGLU"},
    "moe": {"arch": "mA-MoE-mA-MoE"},
    "ref-moe": {"arch": "mA-madlab_channel:MoeMlp-mA-madlab_channel:MoeMlp"},
    "mlp": {"arch": "mA-M-mA-M"},
    "ref-mlp": {"arch": "mA-madlab_channel:Mlp-mA-madlab_channel:Mlp"},
}

#: (pair, bundled arm, reference arm): the comparisons the table reports.
PAIRS = [
    ("hyena", "hyena", "ref-hyena"),
    ("mh-hyena", "mh-hyena", "ref-mh-hyena-paper-layout"),
    ("mh-hyena (mad-lab's layout)", "mh-hyena-as-coded", "ref-mh-hyena"),
    ("hyena-experts", "hyena-experts", "ref-hyena-experts"),
    ("hyena-experts (mad-lab routing)", "hyena-experts-madlab-routing", "ref-hyena-experts"),
    ("hyena-modal (against the reference Hyena)", "hyena-modal", "ref-hyena"),
    ("mh-attention", "mh-attention", "ref-mh-attention"),
    ("mh-attention without biases (the paper's rule)", "mh-attention-no-bias",
     "ref-mh-attention"),
    ("mh-attention (both without biases)", "mh-attention-no-bias", "ref-mh-attention-no-bias"),
    ("attention", "attention", "ref-attention"),
    ("mamba", "mamba", "ref-mamba"),
    ("mamba (step bias rounded to bf16)", "mamba-bf16-step", "ref-mamba"),
    ("mamba (no conv bias)", "mamba-no-conv-bias", "ref-mamba"),
    ("mamba (PyTorch scan)", "mamba-reference-scan", "ref-mamba"),
    ("mh-gla", "mh-gla", "ref-mh-gla"),
    ("mh-gla reference against itself with weights nudged one ulp (a control)",
     "ref-mh-gla-nudged", "ref-mh-gla"),
    ("gla", "gla", "ref-gla-standard-strides"),
    ("gla (against mad-lab's layer as it is: one head mixes sequences)", "gla", "ref-gla"),
    ("swiglu", "swiglu", "ref-swiglu"),
    ("moe-mlp", "moe", "ref-moe"),
    ("mlp", "mlp", "ref-mlp"),
]


def panel_settings(which: str) -> list[tuple[str, str]]:
    """(task, setting) of the panel: ``memorization`` (all six), ``others`` (the smallest
    training set of every other task), ``all``, or one task's part of the panel by its name."""
    from madbench.tasks import all_tasks
    if which not in ("memorization", "others", "all"):
        return [(task, setting) for task, setting in panel_settings("all") if task == which]
    chosen = []
    for task in all_tasks():
        name, settings = task.name, task.settings()
        if name == "memorization":
            if which in ("memorization", "all"):
                chosen += [(name, s.name) for s in settings]
        elif which in ("others", "all"):
            smallest = min(settings, key=lambda s: (s.params["num_train_examples"],
                                                    s.params["seq_len"]))
            chosen.append((name, smallest.name))
    return chosen


def arm_spec(arm: str):
    """The architecture an arm trains (its layers and constructor arguments)."""
    from madbench.architecture import resolve_architecture
    cfg = ARMS[arm]
    return resolve_architecture(cfg["arch"], mixer_kwargs=cfg.get("kwargs"))


def reference_env(ref: str) -> dict:
    """This process's environment with the shims and the reference tree on PYTHONPATH, for the
    arms' processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SHIMS), str(Path(ref).resolve()),
                                         env.get("PYTHONPATH", "")])
    return env


# -- one arm, in its own process -------------------------------------------------------------
def worker(arm: str, panel: str, run_dir: str, preset: str, checks: str = "skip",
           seeds: str = "0", ends_at: str = "") -> None:
    """Train one arm's panel, one setting's sweep at a time. The architecture checks
    (causality, state, parameters) run on the CPU and are not what the panel measures: skipped
    unless ``checks == "run"``. With ``ends_at`` (a wall-clock time), a sweep is not started
    when it would end after it (see :func:`sweep_estimate`): a sweep cut by the deadline is
    lost whole, and leaving it frees the GPU for the sweeps that can finish."""
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from madbench.sweep import plan, run_sweep
    from madbench.verdict import architecture_checks
    from madbench.protocol import get_protocol
    from madbench.store import ResultsStore
    from madbench.tasks import all_tasks
    spec = arm_spec(arm)
    protocol = get_protocol(preset)
    checks = (architecture_checks(spec, allow_state_mismatch=ARMS[arm].get("allow", False))
              if checks == "run" else {"flags": ["fidelity-panel"]})
    wanted = set(panel_settings(panel))
    jobs = [j for j in plan(spec, all_tasks(), protocol, [int(x) for x in seeds.split(",")],
                            "all")
            if (j.task.name, j.setting.name) in wanted]
    store = ResultsStore(Path(run_dir) / arm)
    sweeps: dict[tuple, list] = {}
    for j in jobs:
        sweeps.setdefault((j.task.name, j.setting.name, j.seed), []).append(j)
    start, todo, left_out, took, verdicts = time.perf_counter(), 0, [], [], {}
    stored = store.records() if ends_at else []   # earlier calls' times (this one's: took)
    for (task, setting, seed), group in sweeps.items():
        missing = sum(not store.has(j.key) for j in group)
        if ends_at and missing:
            need = sweep_estimate(stored, task, setting, protocol.name, missing, took)
            if need is not None and time.time() + need > float(ends_at):
                left_out.append(f"{task} {setting} seed {seed} (~{need:.0f} s)")
                continue
        t0 = time.perf_counter()
        n = run_sweep(spec, group, protocol, store, "auto", "auto", checks, None, "auto",
                      verdicts)
        todo += n
        if n:
            took.append(time.perf_counter() - t0)
    later = f"; not started, would end after the deadline: {'; '.join(left_out)}" if left_out else ""
    print(f"{arm}: {len(jobs)} runs ({todo} trained) in {time.perf_counter() - start:.0f} s; "
          f"flags {checks['flags']}{later}", flush=True)
    if left_out:
        sys.exit(3)                   # work left for the next call, as a deadline stop


def sweep_estimate(records: list[dict], task: str, setting: str, preset: str, missing: int,
                   took: list[float]) -> float | None:
    """How long the ``missing`` runs of one sweep of ``task``/``setting`` under ``preset`` are
    expected to take, from this arm's stored records of that sweep (any run version): runs
    trained side by side share the sweep's time (the longest stored), the plain engine's are
    stored one at a time (the longest stored run, times ``missing``). Else the longest sweep
    this worker has trained so far; else unknown (None: start it)."""
    mine = [r for r in records if r.get("task") == task and r.get("setting") == setting
            and r.get("protocol_name") == preset and r.get("seconds")]
    together = [r["seconds"] for r in mine if r.get("engine") != "plain"]
    if together:
        return max(together)
    alone = [r["seconds"] for r in mine if r.get("engine") == "plain"]
    if alone:
        return max(alone) * missing
    return max(took) if took else None


def lockstep_worker(arm: str, task: str, run_dir: str) -> None:
    """Train one arm on ``task``'s baseline setting under the ``smoke`` protocol, in fp32 on
    the CPU (a deterministic device), for :func:`lockstep`."""
    import torch
    torch.set_num_threads(1)
    from madbench.protocol import get_protocol
    from madbench.store import ResultsStore
    from madbench.sweep import plan, run_sweep
    from madbench.tasks import get_task
    spec = arm_spec(arm)
    protocol = get_protocol("smoke")
    jobs = plan(spec, [get_task(task)], protocol, [0], "baseline")
    run_sweep(spec, jobs, protocol, ResultsStore(Path(run_dir) / arm), "cpu", "fp32",
              {"flags": ["fidelity-lockstep"]}, None, "plain")


def lockstep(args) -> int:
    """Same seed, same function, same harness: when a bundled layer draws the reference's
    initial weights, the two arms train in lockstep. Both arms of each pair train the smoke
    protocol (32 steps, fp32, CPU) on one task's baseline setting; the final training loss,
    test loss and accuracy should agree to float rounding (about 1e-5), where arms that start
    from other weights differ at the 1e-2 level."""
    import tempfile
    names = [n for n in args.pairs.split(",") if n]
    unknown = [n for n in names if not any(n in (p[0], p[1]) for p in PAIRS)]
    if not names or unknown:
        sys.exit(f"error: unknown pair {', '.join(unknown) or repr(args.pairs)} (pairs: "
                 f"{', '.join(p[0] for p in PAIRS)})")
    pairs = [p for p in PAIRS if p[0] in names or p[1] in names]
    env = reference_env(args.ref)
    rows = ["| pair | task | bundled train / test loss / acc | reference train / test loss / acc "
            "| max abs diff |", "| --- | --- | --- | --- | ---: |"]
    from madbench.store import ResultsStore
    with tempfile.TemporaryDirectory() as tmp:
        for pair, ours, ref in pairs:
            got = []
            for arm in (ours, ref):
                proc = subprocess.run([sys.executable, __file__, "lockstep-worker", arm,
                                       args.task, tmp], env=env, capture_output=True, text=True)
                if proc.returncode:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    sys.exit(f"error: {arm} failed: {tail}")
                (r,) = ResultsStore(Path(tmp) / arm, create=False).records()
                got.append((r["train_loss"], r["loss"], r["accuracy"]))
            diff = max(abs(a - b) for a, b in zip(*got))
            rows.append(f"| {pair} | {args.task} | " + " | ".join(
                " / ".join(f"{v:.6f}" for v in side) for side in got) + f" | {diff:.1e} |")
    print("\n".join(rows))
    return 0


def repeat_worker(arm: str, task: str, setting: str, epochs: str, run_dir: str,
                  deterministic: str) -> None:
    """Train one arm's sweep of one setting as the panel does (the default engine and precision
    of this device), with the ``paper`` protocol cut to ``epochs`` epochs, for :func:`repeat`.
    With ``deterministic == "1"``, PyTorch's deterministic-algorithms check runs in warn mode:
    each operation it knows to be non-deterministic here is named once on stderr."""
    import warnings
    import torch
    if deterministic == "1":
        torch.use_deterministic_algorithms(True, warn_only=True)
        warnings.simplefilter("once")     # one line per operation, not per step
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from madbench.protocol import get_protocol
    from madbench.store import ResultsStore
    from madbench.sweep import plan, run_sweep
    from madbench.tasks import get_task
    spec = arm_spec(arm)
    protocol = get_protocol("paper", {"epochs": epochs} if epochs != "0" else None)
    jobs = plan(spec, [get_task(task)], protocol, [0], setting)
    run_sweep(spec, jobs, protocol, ResultsStore(Path(run_dir)), "auto", "auto",
              {"flags": ["fidelity-repeat"]}, None, "auto")


def repeat(args) -> int:
    """Is an arm's training repeatable on this device? Each arm's sweep of one setting is
    trained twice from the same seed, by the same code, in two processes; per configuration
    the final training loss, test loss and accuracy are compared (identical bits, or how far
    apart). ``--deterministic`` also sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` and names the
    operations PyTorch knows to be non-deterministic (its warn-only check), so that a spread
    seen on the panel can be traced to an operation, one arm at a time."""
    import tempfile
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if not arms or unknown:
        sys.exit(f"error: unknown arm {', '.join(unknown) or repr(args.arms)} (arms: "
                 f"{', '.join(ARMS)})")
    from madbench.tasks import get_task
    try:
        task = get_task(args.task)
    except Exception as exc:  # noqa: BLE001 - one line for a bad name
        sys.exit(f"error: {exc}")
    if args.setting not in [s.name for s in task.settings()]:
        sys.exit(f"error: {args.task} has no setting {args.setting!r} (settings: "
                 f"{', '.join(s.name for s in task.settings())})")
    if args.epochs < 0:
        sys.exit("error: --epochs must be 0 (the protocol's own) or positive")
    env = reference_env(args.ref)
    if args.deterministic:
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    from madbench.store import ResultsStore
    rows = ["| arm | configuration (lr, wd) | run 1 train / test loss / acc | run 2 | "
            "max abs diff |", "| --- | --- | --- | --- | ---: |"]
    flagged: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            runs = []
            for attempt in (1, 2):
                where = Path(tmp) / f"{arm}-{attempt}"
                proc = subprocess.run([sys.executable, __file__, "repeat-worker", arm, args.task,
                                       args.setting, str(args.epochs), str(where),
                                       "1" if args.deterministic else "0"],
                                      env={**env, **ARMS[arm].get("env", {})},
                                      capture_output=True, text=True)
                if proc.returncode:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    sys.exit(f"error: {arm} failed: {tail}")
                flagged.setdefault(arm, set()).update(   # the operation's name only
                    line.split("UserWarning: ", 1)[1].split(" does not have")[0].strip()
                    for line in proc.stderr.splitlines()
                    if "does not have a deterministic implementation" in line
                    and "UserWarning: " in line)
                runs.append({(r["lr"], r["weight_decay"]): r for r in
                             ResultsStore(where, create=False).records()})
            for config in sorted(runs[0]):
                a, b = (tuple(run[config][k] for k in ("train_loss", "loss", "accuracy"))
                        for run in runs)
                diff = max(abs(x - y) for x, y in zip(a, b))
                rows.append(f"| {arm} | {config[0]:g}, {config[1]:g} | " + " | ".join(
                    " / ".join(f"{v:.6f}" for v in side) for side in (a, b))
                    + f" | {'identical' if a == b else f'{diff:.1e}'} |")
    text = "\n".join(rows)
    if args.deterministic:
        text += "\n\nOperations PyTorch names as non-deterministic here:\n" + "\n".join(
            f"- {arm}: " + ("; ".join(sorted(ops)) or "none") for arm, ops in flagged.items())
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def run(args) -> int:
    names = [n for n in args.pairs.split(",") if n and n != "all"]
    extra = [a for a in args.arms.split(",") if a]
    unknown = [n for n in names if not any(n in (p[0], p[1]) for p in PAIRS)] + \
        [a for a in extra if a not in ARMS]
    if unknown:
        sys.exit(f"error: unknown pair or arm: {', '.join(unknown)} (pairs: "
                 f"{', '.join(p[0] for p in PAIRS)}; arms: {', '.join(ARMS)})")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
        if not seeds or min(seeds) < 0:
            raise ValueError(args.seeds)
    except ValueError:
        sys.exit(f"error: --seeds takes comma-separated non-negative integers, not {args.seeds!r}")
    if not panel_settings(args.panel):
        sys.exit(f"error: unknown panel {args.panel!r}: memorization, others, all or a task name")
    pairs = [p for p in PAIRS if args.pairs == "all" or p[0] in names or p[1] in names]
    arms = list(dict.fromkeys([a for _, b, r in pairs for a in (b, r)] + extra))
    env = reference_env(args.ref)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("OMP_NUM_THREADS", "2")     # many workers share the host's cores
    pending, running, failed, left = list(arms), [], [], []
    start = time.perf_counter()
    deadline = start + args.deadline_s if args.deadline_s else None
    while pending or running:
        if deadline and time.perf_counter() >= deadline:
            for arm, proc, log in running:     # stored records stay; the next run resumes
                proc.terminate()
            for arm, proc, log in running:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.close()
            cut = [arm for arm, _, _ in running] + pending
            print(f"[{time.perf_counter() - start:5.0f} s] deadline: stopped {', '.join(cut)}; "
                  "run again with the same --run-dir to resume", flush=True)
            return 3
        while pending and len(running) < args.jobs:
            arm = pending.pop(0)
            arm_env = {**env, **ARMS[arm].get("env", {})}
            log = open(Path(args.run_dir) / f"{arm}.log", "a")
            cmd = [sys.executable, __file__, "worker", arm, args.panel, args.run_dir,
                   args.preset, args.checks, args.seeds,
                   f"{time.time() + deadline - time.perf_counter():.0f}" if deadline else ""]
            running.append((arm, subprocess.Popen(cmd, env=arm_env, stdout=log,
                                                  stderr=subprocess.STDOUT), log))
        time.sleep(1)
        for item in list(running):
            arm, proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                tail = (Path(args.run_dir) / f"{arm}.log").read_text().strip().splitlines()
                print(f"[{time.perf_counter() - start:5.0f} s] {arm}: exit {proc.returncode}: "
                      f"{tail[-1] if tail else ''}", flush=True)
                if proc.returncode == 3:
                    left.append(arm)
                elif proc.returncode:
                    failed.append(arm)
    return 1 if failed else 3 if left else 0


# -- the table -------------------------------------------------------------------------------
def best_per_setting(run_dir: Path) -> tuple[dict[tuple[str, str], dict[int, dict]], list[str]]:
    """Per panel setting, the best configuration of each seed whose sweep is complete (every
    (lr, weight decay) of its protocol stored), and a note for each incomplete one (a run cut
    by a deadline), which is left out. A run directory can hold records of several madbench
    versions (the run key changes with the training code) and of several versions of the
    arm's layer code (``arch_hash`` changes with it); per setting, only the records of the
    newest record's training and layer code count, and each best record keeps its
    ``madbench_version``."""
    from madbench.scoring import best_of_sweep
    from madbench.store import ResultsStore
    if not (run_dir / "records").is_dir():
        return {}, []

    def code(r: dict) -> tuple[str, str]:
        return r["madbench_version"], r.get("arch_hash", "")
    newest: dict[tuple[str, str], tuple[str, tuple]] = {}
    records = ResultsStore(run_dir, create=False).records()
    for r in records:
        key, stamp = (r["task"], r["setting"]), (str(r["created_at"]), code(r))
        newest[key] = max(newest.get(key, stamp), stamp)
    current = [r for r in records if code(r) == newest[(r["task"], r["setting"])][1]]
    counts: dict[tuple[str, str, int], int] = {}
    for r in current:
        key = (r["task"], r["setting"], int(r["seed"]))
        counts[key] = counts.get(key, 0) + 1
    best: dict[tuple[str, str], dict[int, dict]] = {}
    incomplete = []
    for (t, s, seed), r in sorted(best_of_sweep(current).items()):
        grid = len(r["protocol"]["lrs"]) * len(r["protocol"]["weight_decays"])
        if counts[(t, s, seed)] < grid:
            incomplete.append(f"{run_dir.name}: {t} {s} seed {seed}, {counts[(t, s, seed)]} of "
                              f"{grid} configurations (left out)")
            continue
        best.setdefault((t, s), {})[seed] = r
    return best, incomplete


def _accuracy(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ({len(values)} seeds, {min(values):.3f}-{max(values):.3f})"


def paired_verdict(diffs: list[float], tolerance: float) -> tuple[str, str]:
    """The mean of per-seed differences (bundled - reference, same seeds) against a tolerance:
    (text, mark). With one or two seeds the mean is judged as it is (mark "x" beyond the
    tolerance). From three seeds on, the text carries the half-width of its 95% interval
    (Student's t over the seeds) and the mark says what the interval shows: "" all of it within
    the tolerance, "x" all of it beyond, "?" it straddles the tolerance (undecided: more
    seeds, or a real difference near the tolerance)."""
    from scipy import stats
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 3:
        return f"{mean:+.3f}", "" if abs(mean) <= tolerance else "x"
    sd = (sum((d - mean) ** 2 for d in diffs) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n ** 0.5
    mark = "" if abs(mean) + half <= tolerance else "x" if abs(mean) - half > tolerance else "?"
    return f"{mean:+.3f} ± {half:.3f}", mark


def table(args) -> str:
    root = Path(args.run_dir)
    panel = panel_settings("all")
    lines = []
    summary = ["| pair | memorization (bundled / reference / diff) | worst setting diff | "
               "within tolerance |", "| --- | --- | --- | --- |"]
    notes: list[str] = []
    for pair, ours_arm, ref_arm in PAIRS:
        (ours, ours_notes), (ref, ref_notes) = (best_per_setting(root / ours_arm),
                                                best_per_setting(root / ref_arm))
        notes += [n for n in ours_notes + ref_notes if n not in notes]
        if not ours or not ref:
            continue
        lines += [f"### {pair}: `{ours_arm}` against `{ref_arm}`", "",
                  "| task | setting | bundled | reference | diff | bundled best lr, wd | "
                  "reference best lr, wd |", "| --- | --- | ---: | ---: | ---: | --- | --- |"]
        diffs, marks, mem, used = [], [], {}, []
        for task, setting in panel:
            a, b = ours.get((task, setting), {}), ref.get((task, setting), {})
            seeds = sorted(set(a) & set(b))          # compared on the seeds both sides have
            if not seeds:
                continue
            va, vb = [a[x]["accuracy"] for x in seeds], [b[x]["accuracy"] for x in seeds]
            used += [a[x] for x in seeds] + [b[x] for x in seeds]
            diffs.append(sum(va) / len(va) - sum(vb) / len(vb))
            text, mark = paired_verdict([x - y for x, y in zip(va, vb)], TOLERANCE)
            marks.append(mark)
            if task == "memorization":
                mem[setting] = {x: (a[x]["accuracy"], b[x]["accuracy"]) for x in seeds}
            first_a, first_b = a[seeds[0]], b[seeds[0]]
            lines.append(f"| {task} | {setting} | {_accuracy(va)} | {_accuracy(vb)} | "
                         f"{text}{f' **{mark}**' if mark else ''} | "
                         f"{first_a['lr']:g}, {first_a['weight_decay']:g} | "
                         f"{first_b['lr']:g}, {first_b['weight_decay']:g} |")
        versions = sorted({r["madbench_version"] for r in used})
        lines += ["", f"Training code (run version): {', '.join(versions)}", ""]
        # the score per seed that has all six settings on both sides, then paired as above
        seeds = sorted(set.intersection(*(set(v) for v in mem.values()))) if mem else []
        if len(mem) == 6 and seeds:
            s_ours = [sum(mem[s][x][0] for s in mem) / 6 for x in seeds]
            s_ref = [sum(mem[s][x][1] for s in mem) / 6 for x in seeds]
            text, mark = paired_verdict([x - y for x, y in zip(s_ours, s_ref)],
                                        SCORE_TOLERANCE)
            marks.append(mark)
            seeds_text = f", {len(seeds)} seeds" if len(seeds) > 1 else ""
            mem_text = (f"{sum(s_ours) / len(seeds):.3f} / {sum(s_ref) / len(seeds):.3f} / "
                        f"{text}{f' **{mark}**' if mark else ''}{seeds_text}")
        else:
            mem_text = f"{len(mem)} of 6 settings"
        worst = max(diffs, key=abs) if diffs else float("nan")
        verdict = "NO" if "x" in marks else "undecided" if "?" in marks else "yes"
        summary.append(f"| {pair} | {mem_text} | {worst:+.3f} ({len(diffs)} settings) | "
                       f"{verdict} |")
    text = "\n".join(summary + [""] + lines
                     + (["Incomplete sweeps:", ""] + [f"- {n}" for n in notes] if notes else []))
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


def reruns(args) -> str:
    """Arms trained twice with the same seeds and code (``--run-dir``, then ``--again``, e.g.
    ``RUN_DIR=runs/fidelity_repeat`` for ``fidelity_gpu.sh``): per arm and setting, how far the
    second run moved from the first (the arm against itself, paired over seeds, judged against
    the same tolerance as a pair), and per pair the bundled-minus-reference difference over
    both runs (per seed, the mean of its two runs on each side)."""
    first_root, again_root = Path(args.run_dir), Path(args.again)
    panel = panel_settings("all")
    arms = sorted(p.name for p in again_root.iterdir() if p.is_dir()) \
        if again_root.is_dir() else []
    both = {arm: (best_per_setting(first_root / arm)[0], best_per_setting(again_root / arm)[0])
            for arm in arms}

    def runs_of(arm: str, key) -> dict[int, tuple[float, float]]:
        first, again = (side.get(key, {}) for side in both[arm])
        return {seed: (first[seed]["accuracy"], again[seed]["accuracy"])
                for seed in sorted(set(first) & set(again))}
    lines = ["| arm | task | setting | seeds | best of sweep identical | second - first | "
             "largest move |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for arm in arms:
        for task, setting in panel:
            runs = runs_of(arm, (task, setting))
            if not runs:
                continue
            moves = [b - a for a, b in runs.values()]
            text, mark = paired_verdict(moves, TOLERANCE)
            lines.append(f"| {arm} | {task} | {setting} | {len(runs)} | "
                         f"{sum(m == 0 for m in moves)} | {text}{f' **{mark}**' if mark else ''} "
                         f"| {max(moves, key=abs):+.3f} |")
    pooled = ["| pair | task | setting | seeds | bundled - reference, both runs |",
              "| --- | --- | --- | ---: | ---: |"]
    for pair, ours_arm, ref_arm in PAIRS:
        if ours_arm not in both or ref_arm not in both:
            continue
        for task, setting in panel:
            ours, ref = runs_of(ours_arm, (task, setting)), runs_of(ref_arm, (task, setting))
            seeds = sorted(set(ours) & set(ref))
            if not seeds:
                continue
            diffs = [sum(ours[x]) / 2 - sum(ref[x]) / 2 for x in seeds]
            text, mark = paired_verdict(diffs, TOLERANCE)
            pooled.append(f"| {pair} | {task} | {setting} | {len(seeds)} | "
                          f"{text}{f' **{mark}**' if mark else ''} |")
    text = "\n".join(lines + ([""] + pooled if len(pooled) > 2 else []))
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


# -- copied weights, same outputs ------------------------------------------------------------
def input_grad(layer, x, g):
    """The gradient of ``(layer(x) * g).sum()`` with respect to ``x``, in fp32."""
    x = x.detach().clone().requires_grad_()
    (layer(x).float() * g).sum().backward()
    return x.grad.float()


def equivalence(args) -> int:
    """Each bundled layer with the reference layer's weights copied in: the largest output
    difference on one random batch (fp32; CUDA when available), and under bf16 autocast each
    side's error against the reference's fp32 output and input gradient (which side rounds
    more, as the panel trains)."""
    import torch
    sys.path[:0] = [str(SHIMS), str(Path(args.ref).resolve())]
    from madbench.architecture import LayerSpec, build_mixer
    from madbench.architecture import mixer_entry
    from copy import deepcopy as copy_module
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    length = 64
    rows = []

    def hyena_weights(ref, ours):
        ours.in_proj.load_state_dict(ref.in_proj.state_dict())
        ours.short_conv.load_state_dict(ref.short_filter.state_dict())
        ours.out_proj.load_state_dict(ref.out_proj.state_dict())
        ours.direct.data.copy_(ref.long_conv.bias.data)
        f = ref.long_conv.filter
        ours.filter.features.data.copy_(f.pos_emb.z.data)
        linears = [m for m in f.implicit_filter if isinstance(m, torch.nn.Linear)]
        ours.filter.first.load_state_dict(linears[0].state_dict())
        for mine, theirs in zip(ours.filter.hidden, linears[1:-1]):
            mine.load_state_dict(theirs.state_dict())
        ours.filter.last.load_state_dict(linears[-1].state_dict())
        ours.filter.frequency.data.copy_(f.implicit_filter[1].freq.data)
        if hasattr(ref, "router"):
            ours.router.load_state_dict(ref.router.state_dict())

    def attention_weights(ref, ours):
        ours.qkv.load_state_dict(ref.Wqkv.state_dict())
        ours.out.load_state_dict(ref.out_proj.state_dict())

    def same_names(ref, ours):
        renames = {"conv1d.": "conv.", "g_norm.weight": "norm_weight",
                   "g_norm_swish_gate.weight": "norm_weight"}
        state = {}
        for k, v in ref.state_dict().items():
            for a, b in renames.items():
                k = k.replace(a, b)
            state[k] = v
        ours.load_state_dict(state)

    cases = [
        ("hyena", ARMS["ref-hyena"], LayerSpec("hyena"), hyena_weights),
        ("mh-hyena (paper layout)", ARMS["ref-mh-hyena-paper-layout"], LayerSpec("mh-hyena"),
         hyena_weights),
        ("mh-hyena (mad-lab layout)", ARMS["ref-mh-hyena"],
         LayerSpec("mh-hyena", {"heads": 8, "head_size": 16}), hyena_weights),
        ("hyena-experts (mad-lab routing)", ARMS["ref-hyena-experts"],
         LayerSpec("hyena-experts", {"routing": "mad-lab"}), hyena_weights),
        ("mh-attention", ARMS["ref-mh-attention"],
         LayerSpec("mh-attention"), attention_weights),
        ("attention", ARMS["ref-attention"], LayerSpec("attention"),
         attention_weights),
        ("mamba (conv bias on)", ARMS["ref-mamba"], LayerSpec("mamba", {"conv_bias": True}),
         same_names),
        ("mamba, step bias rounded to bf16 (before)", ARMS["ref-mamba"],
         LayerSpec("madbench_variants:MambaBf16Step"), same_names),
    ]
    os.environ.setdefault("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS", "1")
    cases.append(("mh-gla", ARMS["ref-mh-gla"], LayerSpec("mh-gated-linear-attention"),
                  same_names))
    cases.append(("gla (mad-lab's layer as it is)", ARMS["ref-gla"],
                  LayerSpec("gated-linear-attention"), same_names))
    cases.append(("gla (mad-lab's layer, kernels given standard strides)",
                  ARMS["ref-gla-standard-strides"], LayerSpec("gated-linear-attention"),
                  same_names))

    def make_ref(ref_arm):
        cls = mixer_entry(ref_arm["arch"]).obj
        if "hyena" in ref_arm["arch"].lower():
            return cls(128, max_length=length, **ref_arm.get("kwargs", {}))
        return cls(128, **ref_arm["kwargs"])

    for name, ref_arm, ours_spec, copy in cases:
        try:
            torch.manual_seed(0)
            ref = make_ref(ref_arm)
            torch.manual_seed(0)           # one seed: the same initial draws as the reference?
            seeded = build_mixer(ours_spec, 128, length).state_dict()
            ours = build_mixer(ours_spec, 128, length)
            copy(ref, ours)
            same = sum(torch.equal(a, b) for a, b in zip(seeded.values(),
                                                          ours.state_dict().values()))
            draws = f"{same} of {len(seeded)}"
            counts = (f"| {name} | {sum(p.numel() for p in ref.parameters()):,} | "
                      f"{sum(p.numel() for p in ours.parameters()):,} | {draws} |")
        except Exception as exc:  # noqa: BLE001 - report, go on
            rows.append(f"| {name} | - | - | - | failed: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:80]} | - | - | - | - | - |")
            continue
        try:
            ref, ours = ref.to(dev), ours.to(dev)
            x = torch.randn(4, length, 128, device=dev)
            with torch.no_grad():
                y_ref, y_ours = ref(x), ours(x)
                diff = f"{float((y_ref - y_ours).abs().max()):.1e}"
                try:   # one exact evaluation of the bundled formula: each side's rounding
                    exact64 = copy_module(ours).double().cpu()(x.double().cpu())
                    diff += " | " + " / ".join(
                        f"{float((y.double().cpu() - exact64).abs().max()):.1e}"
                        for y in (y_ours, y_ref))
                except Exception as exc:  # noqa: BLE001 - report, go on
                    diff += f" | fp64 failed: {type(exc).__name__}"
            try:                       # as trained: bf16 autocast, where rounding differs
                g = torch.randn_like(y_ref)
                exact = input_grad(ref, x, g)
                with torch.autocast(dev, dtype=torch.bfloat16):
                    with torch.no_grad():
                        a, b = ref(x).float(), ours(x).float()
                    grads = [input_grad(m, x, g) for m in (ours, ref)]
                bf16 = (f"{float((a - b).abs().max()):.1e} | "
                        + " | ".join(f"{float((y - y_ref).abs().max()):.1e} / "
                                     f"{float((d - exact).abs().max()):.1e}"
                                     for y, d in zip((b, a), grads)))
            except Exception as exc:  # noqa: BLE001 - report, keep the fp32 figure
                bf16 = f"bf16 failed: {type(exc).__name__} | - | -"
            rows.append(f"{counts} {diff} | {bf16} | {float(y_ref.abs().max()):.2f} |")
        except Exception as exc:  # noqa: BLE001 - e.g. a CUDA-only kernel on the CPU
            rows.append(f"{counts} not run on {dev}: {type(exc).__name__} | - | - | - | - | - |")
    text = "\n".join([f"Copied weights, one batch (4 x {length} x 128, fp32, {dev}); "
                      "initial tensors equal at one seed (seed 0, bundled against the "
                      "reference's, mapped); each side's fp32 output against the bundled "
                      "layer's PyTorch path in float64 on the CPU (how far each side rounds "
                      "from one exact evaluation of the bundled formula; where the two "
                      "formulas differ, the side that is off is the one to read first, not "
                      "proof of which is right); under bf16 autocast, each side's error "
                      "against the "
                      "reference's fp32 output and input gradient:", "",
                      "| layer | reference params | bundled params | same initial tensors | "
                      "max abs diff | fp32 error vs fp64, bundled / reference | "
                      "same, bf16 autocast | bf16 error, bundled (out / grad) | "
                      "bf16 error, reference (out / grad) | max abs output |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                      *rows])
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(*sys.argv[2:9])
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "lockstep-worker":
        lockstep_worker(*sys.argv[2:5])
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "repeat-worker":
        repeat_worker(*sys.argv[2:8])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train the panel for some pairs")
    p.add_argument("--pairs", default="all",
                   help="comma-separated pair names or bundled arms, all, or '' (only --arms)")
    p.add_argument("--arms", default="", help="extra arms to train")
    p.add_argument("--panel", default="all",
                   help="memorization, others, all, or a task name (its part of the panel)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--run-dir", default="runs/fidelity")
    p.add_argument("--ref", default=".ref/madlab")
    p.add_argument("--jobs", type=int, default=4, help="arms trained at once")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="stop every worker after this many seconds (exit 3; stored runs stay, "
                        "the same --run-dir resumes; a setting whose stored sweep took longer than the "
                        "time left is not started): fits a run into a time-limited call")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0); the "
                   "table shows the mean of the seeds' best runs and their range")
    p.add_argument("--checks", choices=["skip", "run"], default="skip",
                   help="run madbench's architecture checks in each worker (CPU time)")
    t = sub.add_parser("table", help="write the per-setting table from stored runs")
    t.add_argument("--run-dir", default="runs/fidelity")
    t.add_argument("--out", default=None)
    a = sub.add_parser("reruns", help="the same arms trained again with the same seeds: "
                       "how far each arm moves against itself")
    a.add_argument("--run-dir", default="runs/fidelity", help="the first runs")
    a.add_argument("--again", required=True, help="the run directory of the second runs")
    a.add_argument("--out", default=None)
    e = sub.add_parser("equivalence", help="copied weights: do the outputs agree?")
    e.add_argument("--ref", default=".ref/madlab")
    e.add_argument("--out", default=None)
    k = sub.add_parser("lockstep", help="same seed, same function: do the arms train alike? "
                       "(smoke protocol, fp32, CPU)")
    k.add_argument("--pairs", required=True, help="comma-separated pair names or bundled arms")
    k.add_argument("--task", default="in-context-recall")
    k.add_argument("--ref", default=".ref/madlab")
    r = sub.add_parser("repeat", help="the same arm twice from one seed on this device: "
                       "repeatable? (--deterministic names non-deterministic operations)")
    r.add_argument("--arms", required=True, help="comma-separated arms")
    r.add_argument("--task", default="in-context-recall")
    r.add_argument("--setting", default="num_train_examples=800")
    r.add_argument("--epochs", type=int, default=20,
                   help="the paper protocol cut to this many epochs (0: its own)")
    r.add_argument("--deterministic", action="store_true")
    r.add_argument("--ref", default=".ref/madlab")
    r.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.command == "lockstep":
        return lockstep(args)
    if args.command == "repeat":
        return repeat(args)
    if args.command == "run":
        Path(args.run_dir).mkdir(parents=True, exist_ok=True)
        return run(args)
    if args.command == "table":
        print(table(args))
        return 0
    if args.command == "reruns":
        print(reruns(args))
        return 0
    return equivalence(args)


if __name__ == "__main__":
    sys.exit(main())
