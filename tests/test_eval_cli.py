"""End to end: `madbench eval` on bundled and third-party mixers, resume after a kill,
divergence, refusals and error paths."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from madbench import plugins
from madbench.cli import main
from madbench.store import ResultsStore

# A third-party package: an honest fixed-state mixer (16 decaying modes per channel, state
# 16 * dim = 2,048 at width 128), a leaking one, and one that overflows at large weights.
MIXERS = textwrap.dedent('''
    import torch
    from torch import nn

    class DecayMixer(nn.Module):
        """y_t = W_out sum_m sum_{s<=t} a_m^(t-s) x_s: a linear recurrence, 16 states/channel."""
        modes = 16

        def __init__(self, dim, scale=1.0):
            super().__init__()
            self.proj = nn.Linear(dim, dim, bias=False)
            self.out = nn.Linear(dim, dim, bias=False)
            self.rates = torch.linspace(0.1, 0.95, self.modes)
            self.scale = scale

        def forward(self, x):
            t = torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
            lag = (t[:, None] - t[None, :]).clamp(min=0)
            kernel = (self.rates.to(x)[:, None, None] ** lag).tril().sum(0) / self.modes
            y = self.out(kernel @ self.proj(x))
            return y * torch.exp(torch.relu(self.out.weight.abs().max() - 0.5) * 1000 * self.scale)

        def state_size(self, seq_len):
            return self.modes * self.proj.out_features

    class Leaky(DecayMixer):
        def forward(self, x):
            return super().forward(x) + x.flip(1) * 0.1

        def state_size(self, seq_len):
            return 4096
''')


@pytest.fixture
def thirdparty(tmp_path, monkeypatch):
    pkg = tmp_path / "thirdparty"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(MIXERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("thirdparty", None)


def run(args, **kwargs):
    return CliRunner().invoke(main, args, catch_exceptions=False, **kwargs)


FAST = ["--tasks", "memorization", "--preset", "smoke", "--set", "epochs=2", "--no-progress"]


def test_smoke_eval_of_a_bundled_architecture(tmp_path):
    out = tmp_path / "result.json"
    res = run(["eval", "--arch", "mh-attention", *FAST, "--run-dir", str(tmp_path / "runs"),
               "--output", str(out)])
    assert res.exit_code == 0, res.output
    # one task is a subset: its mean is labelled as such, never "MAD score"
    assert "memorization" in res.output and "mean of 1 task" in res.output
    assert "MAD score" not in res.output
    doc = json.loads(out.read_text())
    assert 0.0 <= doc["mad_score"] <= 1.0
    assert set(doc["tasks"]) == {"memorization"} and doc["score_label"] == "mean of 1 task"
    result = doc["results"]["memorization"]
    assert result["score"] == doc["tasks"]["memorization"] and result["version"] >= 1
    assert result["stderr"] is None and result["seeds"] == [0]      # one seed: no error bar
    assert list(result["settings"]) == ["baseline"] and result["protocol"]["name"] == "smoke"
    assert doc["settings"][0]["setting"] == "baseline"
    assert doc["protocol"]["name"] == "smoke" and doc["protocol"]["standard"] is False
    assert doc["architecture"]["spec"]["layers"][0]["mixer"] == "mh-attention"
    assert doc["provenance"]["torch"] and doc["provenance"]["plugins"]
    # report re-renders the same numbers from the store
    rep = run(["report", str(tmp_path / "runs"), "--format", "json"])
    assert json.loads(rep.output)["mad_score"] == doc["mad_score"]


def test_a_task_or_learning_rate_given_twice_is_one_run(tmp_path):
    """--tasks memorization,memorization --set lrs=1e-3,1e-3 trained one run twice, said
    '2 of 2 runs already stored' on a resume and warned of a partial sweep; it is one run."""
    args = ["eval", "--arch", "mh-attention", "--tasks", "memorization,memorization",
            "--preset", "smoke", "--set", "epochs=1", "--set", "lrs=1e-3,1e-3", "--set",
            "max_train=32", "--set", "max_test=16", "--no-progress", "--run-dir",
            str(tmp_path)]
    first = run(args)
    assert first.exit_code == 0 and "partial" not in first.output, first.output
    assert len(ResultsStore(tmp_path).records()) == 1
    again = run(args)
    assert again.exit_code == 0 and "1 of 1 run already stored" in again.output


def test_eval_of_a_mixer_given_by_import_path(thirdparty, tmp_path):
    res = run(["eval", "--arch", "thirdparty:DecayMixer", *FAST, "--format", "json",
               "--run-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{"):])
    assert doc["checks"]["iso_state"]["ok"] and doc["checks"]["accounting"]["fixed_state"] == 4096
    assert doc["architecture"]["spec"]["layers"][0]["mixer"] == "thirdparty:DecayMixer"


def test_leaking_mixer_is_refused_with_exit_3(thirdparty, tmp_path):
    res = CliRunner().invoke(main, ["eval", "--arch", "thirdparty:Leaky", *FAST,
                                    "--run-dir", str(tmp_path / "runs")])
    assert res.exit_code == 3
    assert "position" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists() or not ResultsStore(tmp_path / "runs").keys()


def test_state_mismatch_is_refused_unless_allowed_then_flagged(thirdparty, tmp_path):
    args = ["eval", "--arch", "thirdparty:DecayMixer", "--mixer-kwargs", "{}", *FAST,
            "--state-target", "1000", "--run-dir", str(tmp_path / "runs"), "--format", "json"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 3 and "4,096" in refused.output
    allowed = run(args + ["--allow-state-mismatch"])
    assert allowed.exit_code == 0
    assert "state-mismatch" in json.loads(allowed.output[allowed.output.index("{"):])["flags"]


@pytest.mark.parametrize("engine", ["batched", "graphed", "plain"])
def test_divergent_run_is_recorded_and_the_sweep_goes_on(thirdparty, tmp_path, engine):
    runs = tmp_path / "runs"
    res = run(["eval", "--arch", "thirdparty:DecayMixer", *FAST, "--set", "lrs=1e-3,10",
               "--engine", engine, "--run-dir", str(runs), "--format", "json"])
    assert res.exit_code == 0, res.output
    records = {r["lr"]: r for r in ResultsStore(runs).records()}
    assert records[10.0]["diverged"] and records[10.0]["accuracy"] == 0.0
    assert not records[1e-3]["diverged"]
    doc = json.loads(res.output[res.output.index("{"):])
    assert doc["settings"][0]["best"]["lr"] == 1e-3


@pytest.mark.gpu
def test_uncapturable_step_falls_back_to_eager_steps_on_cuda(tmp_path):
    """MoE routing synchronises with the host, so its step cannot be captured: the graphed
    engine must warn, train it without graphs and record that engine."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    runs = tmp_path / "runs"
    res = run(["eval", "--arch", "hyena-moe", *FAST, "--device", "cuda", "--engine", "graphed",
               "--run-dir", str(runs)])
    assert res.exit_code == 0, res.output
    assert "cannot be captured" in res.output
    assert {r["engine"] for r in ResultsStore(runs).records()} == {"graphed-eager"}


def test_registered_by_an_installed_plugin(thirdparty, tmp_path):
    (thirdparty / "thirdparty_plugin.py").write_text(textwrap.dedent('''
        import madbench
        from thirdparty import DecayMixer

        @madbench.hookimpl
        def madbench_register_mixers(register):
            register("decay", DecayMixer, shorthand="Dc")
    '''))
    dist = thirdparty / "thirdparty_mixers-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-mixers\n"
                                   "Version: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[madbench]\ndecay-mixers = thirdparty_plugin\n")
    plugins.reset()
    try:
        listing = json.loads(run(["plugins", "--json"]).output)
        mine = [p for p in listing["plugins"] if p["name"] == "decay-mixers"]
        assert mine and mine[0]["version"] == "1.2.3" and mine[0]["registered"]["mixers"] == ["decay"]
        res = run(["eval", "--arch", "Dc-Sg-Dc-Sg", *FAST, "--run-dir", str(tmp_path / "r")])
        assert res.exit_code == 0, res.output
    finally:
        plugins.reset()


@pytest.mark.parametrize("args, needle", [
    (["--arch", "no-such-mixer"], "unknown architecture"),
    (["--arch", "hyena", "--tasks", "no-such-task"], "no-such-task"),
    (["--arch", "hyena", "--set", "epochs=banana"], "epochs"),
    (["--arch", "hyena", "--seeds", "x"], "--seeds"),
    (["--arch", "nosuchpkg.mod:Cls"], "cannot import"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    res = CliRunner().invoke(main, ["eval", *args, "--run-dir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_killed_sweep_resumes_with_nothing_lost_or_duplicated(thirdparty, tmp_path):
    """Kill the process after its first stored run; the re-run trains only what is missing and
    ends with the same records as an uninterrupted sweep."""
    sweep = ["eval", "--arch", "thirdparty:DecayMixer", "--tasks", "memorization,compression",
             "--preset", "smoke", "--set", "epochs=2", "--set", "lrs=1e-3,5e-4",
             "--engine", "plain", "--no-progress"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{thirdparty}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "madbench", *sweep, "--run-dir", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    records = killed / "records"
    while proc.poll() is None and time.time() < deadline:
        if records.is_dir() and any(not p.name.startswith(".") for p in records.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = ResultsStore(killed).keys()
    assert 1 <= len(partial) < 4
    assert run([*sweep, "--run-dir", str(killed)]).exit_code == 0
    assert run([*sweep, "--run-dir", str(tmp_path / "clean")]).exit_code == 0
    resumed = ResultsStore(killed).records()
    clean = ResultsStore(tmp_path / "clean").records()
    assert len(resumed) == 4 == len({r["run_key"] for r in resumed})
    metric = lambda recs: sorted((r["run_key"], r["accuracy"], r["loss"]) for r in recs)  # noqa: E731
    assert metric(resumed) == metric(clean)


def test_sigterm_stops_a_sweep_as_ctrl_c_does_with_exit_143(thirdparty, tmp_path):
    """SIGTERM (Slurm, docker stop) after the first stored run: exit 143 and the interrupt's
    line (before: killed silently by the signal); the stored records read, no temporary file
    is left, and the same command resumes with what is missing."""
    sweep = ["eval", "--arch", "thirdparty:DecayMixer", "--tasks", "memorization", "--preset",
             "smoke", "--set", "epochs=2", "--set", "lrs=1e-3,5e-4,1e-4", "--engine", "plain",
             "--no-progress", "--run-dir", str(tmp_path)]
    env = {**os.environ,
           "PYTHONPATH": f"{thirdparty}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "madbench", *sweep], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records, deadline = tmp_path / "records", time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (
            records.is_dir() and any(not p.name.startswith(".") for p in records.iterdir())):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("Interrupted. Finished runs are kept; the same "
                                            "command resumes.")
    store = ResultsStore(tmp_path)
    stored = len(store.records())
    assert 1 <= stored < 3 and stored == len(list(records.iterdir()))   # no .tmp- left
    resumed = run(sweep)
    assert resumed.exit_code == 0 and f"{stored} of 3 runs already stored" in resumed.output
    assert len({r["run_key"] for r in store.records()}) == 3


HELD_IN_NATIVE = textwrap.dedent('''
    import hashlib, os, pathlib
    from torch import nn

    class HeldInNative(nn.Module):
        """Causal, but each forward first spends about a minute in one native call, where
        Python runs no bytecode and so no signal handler."""

        def __init__(self, dim, **kw):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            pathlib.Path(os.environ["HELD_MARK"]).touch()
            hashlib.pbkdf2_hmac("sha256", b"x", b"y", 200_000_000)
            return self.proj(x.cumsum(1))
''')


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_a_command_held_in_native_code_within_seconds(tmp_path, signum, code):
    """SIGTERM or Ctrl-C during the causality check's forward, inside one long native call
    (attention over 32,768 tokens: 5 s on a CPU), waited for the call to return (about a
    minute here): Python runs a handler between bytecodes only. Now the command ends
    INTERRUPT_GRACE_SECONDS (1 s) after the signal, with the interrupt's line and code."""
    (tmp_path / "heldmix.py").write_text(HELD_IN_NATIVE)
    mark = tmp_path / "in-forward"
    env = {**os.environ, "HELD_MARK": str(mark),
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "madbench", "eval", "--arch", "heldmix:HeldInNative",
         "--preset", "smoke", "--tasks", "memorization", "--dry-run", "--run-dir",
         str(tmp_path / "run")], env=env, text=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,    # Ctrl-C's handler even where the tests run in the background
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while proc.poll() is None and not mark.exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)                       # inside the native call
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("still running 10 s after the signal")
    assert time.monotonic() - sent < 4, err
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == ("Interrupted. Finished runs are kept; the same "
                                            "command resumes.")
    assert "Traceback" not in err


def test_a_signal_to_a_forked_child_does_not_end_the_command(monkeypatch):
    """A child forked during a command (a mixer's pool) inherits the signal wakeup fd: its own
    SIGTERM must not read as the command's, which the watch would end after the grace."""
    import click

    import madbench.cli as cli_module
    ended = []
    monkeypatch.setattr(cli_module, "_exit_now", lambda ctx, sigterm: ended.append(sigterm))
    monkeypatch.setattr(cli_module, "INTERRUPT_GRACE_SECONDS", 0.2)
    interrupts = cli_module._Interrupts(click.Context(main))
    try:
        pid = os.fork()
        if pid == 0:                                      # the child ends itself by SIGTERM
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.6)                                   # past the grace
    finally:
        interrupts.close()
    assert ended == []


def test_a_log_gets_one_line_per_run_a_resume_line_and_a_results_folder(tmp_path):
    """stderr that is not a terminal (CliRunner's, like nohup or Slurm) gets a line per
    finished run, the plan before it, a summary; the re-run says what was stored; --output
    DIR writes DIR/<arch>/results_<time>.json."""
    args = ["eval", "--arch", "mh-attention", "--tasks", "memorization", "--settings",
            "baseline,vocab_size=512", "--preset", "smoke", "--set", "epochs=1",
            "--set", "max_train=32", "--set", "max_test=32", "--run-dir", str(tmp_path / "r"),
            "--output", str(tmp_path / "results")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    err = first.stderr
    assert "training 2 runs (" in err and " s per run-step of 32 x " in err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert [line.split(" lr=")[0] for line in lines] == [
        "[1/2] memorization baseline", "[2/2] memorization vocab_size=512"]
    assert all(re.search(r" lr=1e-3 wd=0 acc=\d\.\d{3} [\d.]+ s$", line) for line in lines)
    assert "trained 2 runs in" in err
    (written,) = (tmp_path / "results" / "mh-attention").glob("results_*.json")
    doc = json.loads(written.read_text())
    assert set(doc["results"]["memorization"]["settings"]) == {"baseline", "vocab_size=512"}
    again = CliRunner().invoke(main, args)
    assert "2 of 2 runs already stored in" in again.stderr and "nothing to train" in again.stderr
    assert not [line for line in again.stderr.splitlines() if line.startswith("[")]


def test_no_progress_keeps_a_log_quiet(tmp_path):
    res = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", *FAST, "--set",
                                    "max_train=32", "--run-dir", str(tmp_path)])
    assert res.exit_code == 0 and not [l for l in res.stderr.splitlines() if l.startswith("[")]


def test_the_paper_protocol_on_cpu_is_estimated_and_warned_about(tmp_path):
    res = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", "--device", "cpu",
                                    "--dry-run", "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "training 396 runs" in res.stderr and "sized for a GPU" in res.stderr
    assert not (tmp_path / "r").exists()                 # a dry run writes nothing
    # the breakdown by task: the paper's settings x 6 (lr, weight decay) configurations each
    by_task = res.stderr.split("by task:\n")[1].splitlines()
    assert [line.split()[:2] for line in by_task] == [
        ["in-context-recall", "66"], ["noisy-in-context-recall", "84"],
        ["fuzzy-in-context-recall", "66"], ["memorization", "36"], ["compression", "66"],
        ["selective-copying", "78"]]


@pytest.mark.parametrize("args, needle", [
    (["--tasks", "memorizaton"], "did you mean 'memorization'?"),
    (["--settings", "vocab_size=513"], "did you mean 'vocab_size=512'?"),
    (["--settings", "memorization:vocab_size=5120"], "task 'memorization' has no setting"),
    (["--set", "epoch=3"], "did you mean 'epochs'?"),
])
def test_misspelled_names_get_a_suggestion(args, needle, tmp_path):
    base = ["eval", "--arch", "mh-attention", "--tasks", "memorization", "--dry-run",
            "--run-dir", str(tmp_path)]
    res = CliRunner().invoke(main, [*base, *args])
    assert res.exit_code == 2 and needle in res.stderr and res.stderr.count("\n") == 1


def test_a_selected_task_that_no_setting_name_selects_is_named_in_a_warning(tmp_path):
    """vocab_size=512 is a setting of memorization only: compression, selected too, gets no
    runs, and says so in one line before anything trains; a name no selected task has is an
    error (exit 2), and a selection that leaves every task a setting warns of nothing."""
    base = ["eval", "--arch", "mh-attention", "--tasks", "memorization,compression",
            "--preset", "smoke", "--dry-run", "--run-dir", str(tmp_path)]
    res = CliRunner().invoke(main, [*base, "--settings", "vocab_size=512"])
    assert res.exit_code == 0, res.output
    (warning,) = [l for l in res.stderr.splitlines() if l.startswith("Warning:")]
    assert "1 of the 2 selected tasks (compression): they get no runs" in warning
    assert "score is over memorization only" in warning
    by_task = res.stderr.split("by task:\n")[1].splitlines()
    assert [line.split()[0] for line in by_task] == ["memorization"]
    both = CliRunner().invoke(main, [*base, "--settings", "baseline,vocab_size=512"])
    assert both.exit_code == 0 and "Warning" not in both.stderr, both.output
    none = CliRunner().invoke(main, [*base, "--tasks", "compression", "--settings",
                                     "vocab_size=512"])
    assert none.exit_code == 2 and "no selected task has a setting" in none.stderr


def test_a_terminal_gets_the_progress_bar_not_log_lines(tmp_path):
    """On a terminal (a pseudo-terminal here) stderr shows rich's bar with its ETA; the
    one-line-per-run log format is for redirected stderr."""
    import pty
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "madbench", "eval", "--arch", "mh-attention",
                             "--tasks", "memorization", "--preset", "smoke", "--set",
                             "epochs=1", "--set", "max_train=32", "--run-dir",
                             str(tmp_path / "r")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=child_fd, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:        # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(main_fd)
    err = b"".join(chunks).decode(errors="replace")
    assert "runs" in err and "ETA" in err and "1/1" in err
    assert "[1/1] memorization" not in err


def test_a_flag_is_said_before_the_runs_not_only_after_them(tmp_path):
    """A mixer with 8.76x the baseline's parameters trained its whole sweep before the table
    said param-mismatch; the plan now says so first (flags never stop a run)."""
    base = ["eval", "--arch", "mh-attention", "--channel", "moe", "--tasks", "memorization",
            "--preset", "smoke", "--dry-run", "--run-dir", str(tmp_path)]
    res = CliRunner().invoke(main, base)
    assert res.exit_code == 0, res.output
    # mA-MoE-mA-MoE: 232,960 non-embedding parameters against 525,824 (docs/layers.md)
    assert ("Note: the results will be flagged param-mismatch (non-embedding parameters 0.44x "
            "those of mA-Sg-mA-Sg, beyond +-20%); flags inform, they do not stop the run"
            in res.stderr)
    res = CliRunner().invoke(main, [*base, "--param-tolerance", "0.6"])
    assert res.exit_code == 0 and "flagged" not in res.stderr
