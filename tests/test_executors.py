"""Executors: local worker processes and Ray tasks give the records the in-process sweep gives
(same run keys, accuracies and losses: CPU training is deterministic), and a worker killed in
the middle of a run is replaced, its group retried, with nothing lost or trained twice."""
import os
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from madbench.architecture import ArchitectureSpec, LayerSpec, resolve_architecture
from madbench.cli import main
from madbench.errors import CheckFailed, MadbenchError, UsageError
from madbench.sweep import job_from_dict, job_to_dict, plan, run_sweep
from madbench.executors import (LocalExecutor, RayExecutor, local_devices, sweep_payload,
                                train_shipped_group, handout_groups, _check_reachable)
from madbench.protocol import Protocol, get_protocol
from madbench.store import ResultsStore
from madbench.tasks import get_task
from madbench.time_limit import TimeLimit

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (madbench[ray])")

# Two groups (seeds 0 and 1) of two runs (two learning rates), tiny data, one epoch.
OVERRIDES = {"epochs": "1", "lrs": "0.001,0.0005", "max_train": "64", "max_test": "32"}
SEEDS = [0, 1]
CLI_SWEEP = ["--tasks", "memorization", "--preset", "smoke", "--seeds", "0,1", "--engine",
             "plain", "--no-progress", *[f for k, v in OVERRIDES.items()
                                         for f in ("--set", f"{k}={v}")]]

# A causal mixer y_t = W mean(x_1..x_t) that logs every construction (two per model) and, while
# the ARMED file exists, kills its process in forward once the run directory named in that
# file holds a record: a worker dies in the middle of a run, after some runs were stored.
CRASH_MODULE = textwrap.dedent('''
    import os
    import time
    import torch
    from torch import nn

    HERE = os.path.dirname(os.path.abspath(__file__))
    ARMED = os.path.join(HERE, "armed")
    LOG = os.path.join(HERE, "constructions.log")

    class CrashOnce(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.proj = nn.Linear(dim, dim)
            with open(LOG, "a") as fh:
                fh.write(f"{os.getpid()}\\n")

        def forward(self, x):
            try:                      # a worker firing at this moment renames the file away
                with open(ARMED) as fh:
                    records = fh.read().strip()
            except FileNotFoundError:
                records = None
            if records:
                if any(n.endswith(".parquet") and not n.startswith(".")
                       for n in os.listdir(records)):
                    try:
                        os.rename(ARMED, ARMED + ".fired")   # exactly one process fires
                    except OSError:
                        pass
                    else:
                        os._exit(17)
            try:                      # exactly one process takes the hang and waits
                os.rename(ARMED + ".hang", ARMED + ".hung")
            except OSError:
                pass
            else:
                with open(ARMED + ".hung", "w") as fh:
                    fh.write(str(os.getpid()))
                time.sleep(120)
            if os.path.exists(ARMED + ".raise"):
                while os.path.exists(ARMED + ".hang"):     # until the hang is taken
                    time.sleep(0.05)
                from madbench.errors import CheckFailed
                raise CheckFailed("refused inside a worker")
            counts = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)[:, None]
            return self.proj(x.cumsum(1) / counts)
''')


@pytest.fixture(scope="module")
def crash_module(tmp_path_factory):
    """The crash mixer as an importable module (workers find it on the shipped sys.path)."""
    root = tmp_path_factory.mktemp("crashpkg")
    pkg = root / "madbench_test_crash"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(CRASH_MODULE)
    sys.path.insert(0, str(root))
    yield pkg
    sys.path.remove(str(root))
    sys.modules.pop("madbench_test_crash", None)


@pytest.fixture(scope="module")
def sweep(crash_module):
    spec = resolve_architecture("madbench_test_crash:CrashOnce")
    protocol = get_protocol("smoke", OVERRIDES)
    return spec, protocol, plan(spec, [get_task("memorization")], protocol, SEEDS)


def outcome(store):
    """What must agree between executors: run key -> (lr, seed, accuracy, loss)."""
    return {r["run_key"]: (r["lr"], r["seed"], r["accuracy"], r["loss"])
            for r in store.records()}


@pytest.fixture(scope="module")
def reference(sweep, tmp_path_factory):
    """The sweep trained in this process, one run after another."""
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path_factory.mktemp("reference"))
    assert run_sweep(spec, jobs, protocol, store, "cpu", engine="plain") == 4
    return outcome(store)


def arm(crash_module, store):
    (crash_module / "constructions.log").unlink(missing_ok=True)
    (crash_module / "armed.fired").unlink(missing_ok=True)
    (crash_module / "armed").write_text(str(store.dir))


def check_retried(crash_module, store, jobs, reference):
    assert (crash_module / "armed.fired").exists(), "no worker was killed"
    assert outcome(store) == reference
    assert len(os.listdir(store.dir)) == len(jobs)           # no duplicate, no temporary file
    # 4 runs, plus the one in flight when its worker died, two mixers each: nothing that was
    # stored was trained again
    log = (crash_module / "constructions.log").read_text().split()
    assert len(log) == 2 * (len(jobs) + 1)


# -- plain data ----------------------------------------------------------------------------
def test_work_travels_as_plain_data_and_resolves_to_the_same_hashes(sweep):
    spec, protocol, jobs = sweep
    job = jobs[-1]
    data = job_to_dict(job)
    assert all(isinstance(v, (str, int, float)) for v in data.values())
    assert job_from_dict(data, protocol) == job
    assert ArchitectureSpec.from_dict(spec.to_dict()).hash == spec.hash
    custom = ArchitectureSpec("x", (LayerSpec("mh-attention", {"num_heads": 4}),
                                    LayerSpec("swiglu")), 64, ("flagged",))
    again = ArchitectureSpec.from_dict(custom.to_dict(), custom.flags)
    assert again == custom and again.hash == custom.hash
    back = Protocol.from_dict(protocol.to_dict())
    assert back == protocol and back.hash == protocol.hash


def test_a_shipped_group_skips_the_runs_already_stored(sweep, reference, tmp_path):
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    first, second = jobs[:2]                                # one group: seed 0, two lrs
    assert (first.seed, second.seed) == (0, 0)
    run_sweep(spec, [first], protocol, store, "cpu", engine="plain")
    payload = sweep_payload(spec, protocol, store.root, "fp32", None, "plain")
    shipped = [job_to_dict(first), job_to_dict(second)]
    assert train_shipped_group(payload, shipped, "cpu") == 1
    assert train_shipped_group(payload, shipped, "cpu") == 0
    assert outcome(store) == {k: v for k, v in reference.items() if v[1] == 0}


def test_a_worker_with_other_mixer_code_refuses_the_work(sweep, tmp_path):
    spec, protocol, jobs = sweep
    payload = sweep_payload(spec, protocol, tmp_path, "fp32", None, "plain")
    with pytest.raises(MadbenchError, match="hashes differently on a worker"):
        train_shipped_group({**payload, "arch_hash": "0" * 16}, [job_to_dict(jobs[0])], "cpu")
    with pytest.raises(MadbenchError, match="different data"):
        train_shipped_group(payload, [{**job_to_dict(jobs[0]), "key": "x"}], "cpu")
    assert not ResultsStore(tmp_path).keys()


def test_groups_trained_together_are_handed_out_whole_and_others_as_single_runs(sweep):
    spec, protocol, jobs = sweep
    groups = [jobs[:2], jobs[2:]]
    singles = [[j] for j in jobs]
    assert handout_groups(groups, protocol, "batched", "cuda:0") == groups
    assert handout_groups(groups, protocol, "batched", "cpu") == groups
    assert handout_groups(groups, protocol, "auto", "cpu") == singles     # plain on CPU
    assert handout_groups(groups, protocol, "auto", "cuda") == groups      # graphed on CUDA
    assert handout_groups(groups, get_protocol("mad-lab"), "auto", "cuda") == groups
    assert handout_groups(groups, protocol, "plain", "cpu") == singles
    assert handout_groups(groups, get_protocol("mad-lab"), "auto", "cpu") == singles


def test_groups_are_handed_out_longest_first():
    """Handed-out groups are ordered by training tokens (runs x steps x batch x seq_len), computed here
    from the settings' sizes: in-context recall at L 1,024 before the baseline at L 128."""
    from madbench.architecture import resolve_architecture
    from madbench.sweep import plan
    from madbench.tasks import get_task
    task = get_task("in-context-recall")
    protocol = get_protocol("quick")
    jobs = [j for j in plan(resolve_architecture("hyena"), [task], protocol, [0])
            if j.setting.seq_len in (128, 1024) and j.setting.vocab_size == 16]
    groups = {}
    for j in jobs:
        groups.setdefault(j.setting.name, []).append(j)
    handed = handout_groups(list(groups.values()), protocol, "auto", "cuda")
    def tokens(group):
        s = group[0].setting
        steps = -(-s.num_train // 128)
        return len(group) * steps * protocol.epochs_for(steps) * 128 * s.seq_len
    assert [tokens(g) for g in handed] == sorted((tokens(g) for g in handed), reverse=True)
    assert handed[0][0].setting.seq_len == 1024


def test_local_devices_on_a_machine_without_gpus(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert local_devices("auto", runs_per_gpu=3) == ["cpu"]
    assert local_devices("cpu") == ["cpu"]
    with pytest.raises(UsageError, match="CUDA is not available"):
        local_devices("cuda:1")


def test_local_devices_spread_over_every_gpu(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_devices("auto") == ["cuda:0", "cuda:1"]
    assert local_devices("cuda", runs_per_gpu=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert local_devices("cuda:1", runs_per_gpu=2) == ["cuda:1", "cuda:1"]


def test_runs_per_gpu_is_bounded_before_any_device_list_is_built(monkeypatch):
    """64 workers a GPU at most, both executors, checked when the executor is made: 10**12
    used to build a list of 10**12 device names (MemoryError under a 3 GB cap, after 15 s)."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert len(local_devices("cuda", LocalExecutor(runs_per_gpu=64).runs_per_gpu)) == 64
    for executor in (LocalExecutor, RayExecutor):
        for bad in (0, 65, 10**12):
            with pytest.raises(UsageError, match=f"--runs-per-gpu {bad} is out of bounds: 1 "
                                                 "to 64"):
                executor(runs_per_gpu=bad)


# -- local worker processes ----------------------------------------------------------------
def test_local_workers_match_in_process_and_survive_a_killed_worker(sweep, reference,
                                                                    crash_module, tmp_path):
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    arm(crash_module, store)
    events = []
    trained = LocalExecutor(devices=["cpu", "cpu"], threads_per_worker=1).run(
        spec, jobs, protocol, store, "cpu", engine="plain",
        progress=lambda event, info: events.append((event, info)))
    assert trained == 4
    check_retried(crash_module, store, jobs, reference)
    assert events[0] == ("start", {"total": 4, "done": 0})
    assert sum(e == "done" for e, _ in events) == 4
    assert {info["worker"] for e, info in events if e == "run"} <= {"cpu#0", "cpu#1"}


def test_local_executor_in_process_resumes(sweep, reference, tmp_path):
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    executor = LocalExecutor()
    assert executor.run(spec, jobs[:1], protocol, store, "cpu", engine="plain") == 1
    assert executor.run(spec, jobs, protocol, store, "cpu", engine="plain") == 3
    assert outcome(store) == reference


# -- Ray -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance():
    if ray is None:
        pytest.skip("ray is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@needs_ray
def test_ray_cli_gives_the_records_of_the_in_process_sweep(reference, ray_instance, tmp_path):
    res = CliRunner().invoke(main, ["eval", "--arch", "madbench_test_crash:CrashOnce",
                                    "--allow-state-mismatch", *CLI_SWEEP, "--executor", "ray",
                                    "--run-dir", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert outcome(ResultsStore(tmp_path)) == reference


@needs_ray
def test_ray_retries_a_killed_worker(sweep, reference, crash_module, ray_instance, tmp_path):
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    arm(crash_module, store)
    assert RayExecutor().run(spec, jobs, protocol, store, "cpu", engine="plain") == 4
    check_retried(crash_module, store, jobs, reference)


@needs_ray
def test_ray_raises_a_worker_error_as_madbench_raised_it(sweep, crash_module, ray_instance,
                                                         tmp_path):
    spec, protocol, jobs = sweep
    (crash_module / "armed.raise").write_text("")
    try:
        with pytest.raises(CheckFailed, match="^refused inside a worker$"):
            RayExecutor().run(spec, jobs, protocol, ResultsStore(tmp_path), "cpu",
                              engine="plain")
    finally:
        (crash_module / "armed.raise").unlink()
        ray_idle()           # leave no cancelled task starting in a later test


@needs_ray
def test_ray_kills_the_worker_of_a_task_it_cancels(sweep, crash_module, ray_instance, tmp_path):
    """One group fails while the other trains: the other task is cancelled and its worker
    killed, not interrupted and reused (an interrupt in the middle of an import, torch's first
    optimizer step imports sympy, left workers whose later tasks all failed)."""
    spec, protocol, jobs = sweep
    ray_idle()                # Ray's cancel is best effort: a task an earlier test cancelled
    (crash_module / "armed.hang").write_text("")    # can still start, and take the hang
    (crash_module / "armed.raise").write_text("")
    try:
        with pytest.raises(CheckFailed, match="^refused inside a worker$"):
            RayExecutor().run(spec, jobs, protocol, ResultsStore(tmp_path), "cpu",
                              engine="plain")
        pid = int((crash_module / "armed.hung").read_text())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        assert not pid_alive(pid), "the cancelled task's worker is still alive"
    finally:
        for name in ("armed.raise", "armed.hang", "armed.hung"):
            (crash_module / name).unlink(missing_ok=True)
        ray_idle()           # leave no cancelled task starting in a later test


def ray_idle(quiet: float = 2.0, limit: float = 60.0) -> None:
    """Wait until every CPU of the test's Ray instance has been free for ``quiet`` seconds."""
    total = ray.cluster_resources()["CPU"]
    deadline, free_since = time.monotonic() + limit, time.monotonic()
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) < total:
            free_since = time.monotonic()
        elif time.monotonic() - free_since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"Ray was still busy after {limit:.0f} s")


def pid_alive(pid: int) -> bool:
    """Whether a process lives (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- options -------------------------------------------------------------------------------
def test_executor_options_are_checked(tmp_path, monkeypatch):
    runner = CliRunner()
    base = ["eval", "--arch", "mh-attention", *CLI_SWEEP, "--run-dir", str(tmp_path)]
    res = runner.invoke(main, [*base, "--ray-address", "localhost:6379"])
    assert res.exit_code == 2 and "--ray-address needs --executor ray" in res.output
    res = runner.invoke(main, [*base, "--executor", "ray", "--device", "cuda:1"])
    assert res.exit_code == 2
    monkeypatch.setitem(sys.modules, "ray", None)             # as if ray were not installed
    res = runner.invoke(main, [*base, "--executor", "ray"])
    assert res.exit_code == 2 and "pip install 'madbench[ray]'" in res.output
    assert not ResultsStore(tmp_path).keys()


def test_a_ray_dry_run_starts_no_ray_instance(tmp_path, monkeypatch):
    """`eval --executor ray --dry-run` started a local Ray instance (ray.init with no
    address) to probe the estimate on. Now it joins a running cluster only (Ray's "auto",
    which starts none) and, with none running, probes here for the instance eval would start:
    this machine's CPUs, no GPU. A fake ``ray`` records the calls; no cluster is running."""
    import types
    calls = []

    def init(address=None, **options):
        calls.append(address)
        raise ConnectionError("Could not find any running Ray instance.")

    fake = types.ModuleType("ray")
    fake.is_initialized, fake.init = (lambda: False), init
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    run_dir = tmp_path / "runs"
    res = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", *CLI_SWEEP, "--executor",
                                    "ray", "--device", "cpu", "--dry-run", "--run-dir",
                                    str(run_dir)])
    assert res.exit_code == 0, res.output
    assert calls == ["auto"]                      # never None: that starts an instance
    assert "training 4 runs" in res.output and "a dry run starts none" in res.output
    assert "that instance runs 3 at once" in res.output and not run_dir.exists()


def test_an_unreachable_ray_address_fails_fast():
    import socket
    with socket.socket() as sock:                # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MadbenchError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    for left_to_ray in (None, "auto", "ray://head:10001"):
        _check_reachable(left_to_ray)


# -- a time limit: groups that would not finish in time are not started ------------------------
def seed_one_is_long(group):
    """An estimate (seconds) under which the seed-1 runs can never fit a 100 s limit: the
    limit scales it by measured over estimated seconds, and the seed-0 group (estimated 1 s)
    may train in well under 0.1 s, so 1,000 s was not enough (a flake in the full suite)."""
    return 1e9 if group[0].seed == 1 else 1.0


def test_in_process_sweep_leaves_the_group_that_would_overrun(sweep, reference, tmp_path):
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    limit = TimeLimit(100, seed_one_is_long)
    assert run_sweep(spec, jobs, protocol, store, "cpu", engine="plain", time_limit=limit) == 2
    assert {r["seed"] for r in store.records()} == {0}
    assert limit.groups == 1 and limit.estimated == 1.0       # the seed-0 group was timed:
    # its training by its records (plain engine: each run's own seconds, summed), the rest of
    # its wall time apart
    assert limit.measured == pytest.approx(sum(r["seconds"] for r in store.records()))
    assert limit.overhead >= 0
    assert run_sweep(spec, jobs, protocol, store, "cpu", engine="plain") == 2   # resumes
    assert outcome(store) == reference


def test_with_a_time_limit_a_group_another_process_holds_is_waited_for_while_time_is_left(
        sweep, tmp_path, monkeypatch):
    """Without a limit the sweep would wait for the holder as long as it takes; with one, only
    while the group would still fit, and the limit keeps the group still held then (for the
    stop's message)."""
    from madbench import claims
    from madbench.sweep import pending_groups
    monkeypatch.setattr(claims, "HELD_POLL_SECONDS", 0.05)
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    held = next(g for g in pending_groups(jobs, store) if g[0].seed == 1)
    limit = TimeLimit(3.0, lambda group: 0.0)
    with claims.claim_all(store.root, [job.key for job in held]):
        assert run_sweep(spec, jobs, protocol, store, "cpu", engine="plain",
                         time_limit=limit) == 2
        assert not limit.fits(held)                # it waited until the group no longer fit
    assert {r["seed"] for r in store.records()} == {0}
    assert limit.held == [held]


def test_worker_pool_hands_out_only_what_fits_and_stops(sweep, reference, tmp_path):
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    assert LocalExecutor(devices=["cpu", "cpu"], threads_per_worker=1).run(
        spec, jobs, protocol, store, "cpu", engine="plain",
        time_limit=TimeLimit(100, seed_one_is_long)) == 2
    assert {r["run_key"] for r in store.records()} == {j.key for j in jobs if j.seed == 0}
    assert outcome(store) == {k: v for k, v in reference.items() if v[1] == 0}


def test_time_limit_cli_exits_4_with_the_runs_left_and_resumes(tmp_path):
    run_dir = str(tmp_path / "runs")
    args = ["eval", "--arch", "madbench_test_crash:CrashOnce", *CLI_SWEEP, "--run-dir", run_dir]
    result = CliRunner().invoke(main, args + ["--time-limit", "0.001s"])
    assert result.exit_code == 4, result.output
    assert "4 of 4 runs left untrained" in result.output and "same command resumes" in result.output
    assert "no group fitted: the shortest left needs about" in result.output
    assert not ResultsStore(tmp_path / "runs").records()
    result = CliRunner().invoke(main, args + ["--time-limit", "1h"])
    assert result.exit_code == 0, result.output
    assert "all of them fit" in result.output
    assert len(ResultsStore(tmp_path / "runs").records()) == 4


@pytest.mark.parametrize("value", ["0", "-5", "ten", "5x", "nan", "inf", "1e400", ""])
def test_a_bad_time_limit_is_refused_before_anything_runs(value, tmp_path):
    result = CliRunner().invoke(main, ["eval", "--arch", "hyena", "--preset", "smoke",
                                       "--run-dir", str(tmp_path / "r"), "--time-limit", value])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "--time-limit takes a positive duration" in result.output
    assert not (tmp_path / "r").exists()


@needs_ray
def test_ray_cli_under_a_time_limit_trains_the_sweep(reference, ray_instance, tmp_path):
    """``--time-limit`` on Ray (it used to be refused): a limit everything fits trains the
    sweep of the in-process run."""
    res = CliRunner().invoke(main, ["eval", "--arch", "madbench_test_crash:CrashOnce",
                                    "--allow-state-mismatch", *CLI_SWEEP, "--executor", "ray",
                                    "--time-limit", "10m", "--run-dir", str(tmp_path)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert outcome(ResultsStore(tmp_path)) == reference


@needs_ray
def test_ray_estimate_is_probed_on_a_ray_worker(crash_module, ray_instance, tmp_path):
    """The estimate (and the time limit priced by it) is timed in a Ray task, not on the
    driver (which builds models only for its checks): models are built in another process
    although nothing trains. A dry run creates no run
    directory, and ``--device cuda`` asks the cluster for GPUs, not the driver."""
    ray_idle()
    log = crash_module / "constructions.log"
    log.unlink(missing_ok=True)
    run_dir = tmp_path / "runs"
    base = ["eval", "--arch", "madbench_test_crash:CrashOnce", "--allow-state-mismatch",
            *CLI_SWEEP, "--executor", "ray", "--run-dir", str(run_dir)]
    res = CliRunner().invoke(main, [*base, "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "training 4 runs" in res.output and "probed on a Ray worker" in res.output
    assert set(log.read_text().split()) - {str(os.getpid())}, "no model was built off the driver"
    assert not run_dir.exists()
    res = CliRunner().invoke(main, [*base, "--dry-run", "--device", "cuda"])
    assert res.exit_code == 2 and "the Ray cluster has no GPUs" in res.output


@needs_ray
def test_ray_under_a_time_limit_starts_only_groups_that_fit(sweep, reference, ray_instance,
                                                            tmp_path):
    """Seed 1's runs priced past the limit: Ray trains seed 0's only, as the in-process sweep
    trained them, and the limit learns from both."""
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    limit = TimeLimit(300, lambda group: 1000.0 if group[0].seed else 0.0)
    assert RayExecutor().run(spec, jobs, protocol, store, "cpu", engine="plain",
                             time_limit=limit) == 2
    assert outcome(store) == {k: v for k, v in reference.items() if v[1] == 0}
    assert limit.groups == 2 and limit.held == []


@needs_ray
def test_ray_under_a_time_limit_hands_back_a_group_another_process_holds(
        sweep, ray_instance, tmp_path, monkeypatch):
    """Seed 0's runs held by another process past the limit: their tasks come back at once
    and are submitted again while they would fit, then the limit records them as held (the
    command's stop names them); held for a second only, they are trained."""
    import threading
    import time
    from madbench import claims
    monkeypatch.setattr(claims, "HELD_POLL_SECONDS", 0.2)
    spec, protocol, jobs = sweep
    seed0 = [job.key for job in jobs if job.seed == 0]

    def hold(store, seconds):
        taken, release = threading.Event(), threading.Event()

        def holder():
            with claims.claim_all(store.root, seed0):
                taken.set()
                release.wait(seconds)
        thread = threading.Thread(target=holder)
        thread.start()
        taken.wait()
        return release, thread

    store = ResultsStore(tmp_path / "held")
    release, thread = hold(store, 90)
    limit = TimeLimit(15, lambda group: 0.0)
    started = time.monotonic()
    try:
        assert RayExecutor().run(spec, jobs, protocol, store, "cpu", engine="plain",
                                 time_limit=limit) == 2
        assert time.monotonic() - started < 45                   # not the holder's 90 s
        assert sorted(job.key for group in limit.held for job in group) == sorted(seed0)
        assert not any(map(store.has, seed0))
    finally:
        release.set()
        thread.join()
    store = ResultsStore(tmp_path / "freed")
    _, thread = hold(store, 1.0)
    assert RayExecutor().run(spec, jobs, protocol, store, "cpu", engine="plain",
                             time_limit=TimeLimit(3600, lambda group: 0.0)) == 4
    thread.join()


def test_training_seconds_of_a_group_trained_side_by_side_are_counted_once(sweep, tmp_path):
    from madbench.sweep import pending_groups, training_seconds
    spec, protocol, jobs = sweep
    store = ResultsStore(tmp_path)
    group = next(g for g in pending_groups(jobs, store) if g[0].seed == 0)
    run_sweep(spec, group, protocol, store, "cpu", engine="batched")
    records = store.records()
    assert len(records) == 2 and {r["engine"] for r in records} == {"batched"}
    assert records[0]["seconds"] == records[1]["seconds"] == training_seconds(store, group)
    assert training_seconds(store, [j for j in jobs if j.seed == 1]) is None   # none stored
