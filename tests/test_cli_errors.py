"""Issue #14, item 5: every bad argument is one line on stderr with the README's exit code,
before any training; any other exception becomes one line too (traceback behind --debug or
MADBENCH_DEBUG=1); text from outside is printed with control characters escaped."""
import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from madbench.cli import main
from madbench.errors import MadbenchError, printable
from madbench.store import ResultsStore

TINY = ["--tasks", "memorization", "--preset", "smoke", "--set", "epochs=1", "--set",
        "max_train=32", "--set", "max_test=16", "--device", "cpu", "--no-progress",
        "--engine", "plain"]
MIXERS = '''import torch
class Wrong(torch.nn.Module):
    def __init__(self, dim, **kw):
        super().__init__()
        self.p = torch.nn.Linear(dim, dim // 2)
    def forward(self, x):
        return self.p(x)
class Raises(torch.nn.Module):
    def __init__(self, dim, **kw):
        super().__init__()
        raise RuntimeError("boom in init")
    def forward(self, x):
        return x
class Sized(torch.nn.Module):
    def __init__(self, dim, kernel_size=4, heads: int = 2, scale: "float | None" = None):
        super().__init__()
        self.p = torch.nn.Linear(dim, dim)
    def forward(self, x):
        return self.p(x)
class NoDim(torch.nn.Module):
    def __init__(self):
        super().__init__()
    def forward(self, x):
        return x
'''


def cli(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def assert_one_line(result, code, text):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture
def mixers(tmp_path, monkeypatch):
    (tmp_path / "bad_mixers.py").write_text(MIXERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


BAD_ARGUMENTS = [
    (["--set", "lrs="], 2, "lrs needs at least one number"),
    (["--set", "weight_decays="], 2, "weight_decays needs at least one number"),
    (["--tasks", ","], 2, "names no task"),
    (["--set", "max_train=0"], 2, "max_train must be in [1"),
    (["--set", "max_test=0"], 2, "max_test must be in [1"),
    (["--set", "betas=2,3"], 2, "betas must be in [0, 1)"),
    (["--set", "lrs=nan"], 2, "lrs must be in (0, 10]"),
    (["--set", "batch_size=0"], 2, "batch_size must be in [1"),
    (["--seeds", "18446744073709551616"], 2, "a seed is at most"),
    # it said "needs at least one non-negative integer" of a list holding one
    (["--seeds=0,-1"], 2, "--seeds: a seed is a non-negative integer, not -1"),
    (["--device", "gpu"], 2, "not a device"),
    (["--device", "cpu:1"], 2, "--device 'cpu:1': the cpu takes no index"),
    (["--device", "cpu:0"], 2, "the cpu takes no index"),
    (["--device", "cuda:-1"], 2, "--device 'cuda:-1'"),
    (["--device", "cuda:abc"], 2, "--device 'cuda:abc'"),
    (["--runs-per-gpu", "65"], 2, "--runs-per-gpu 65 is out of bounds: 1 to 64"),
    (["--runs-per-gpu", "1000000000000"], 2, "out of bounds"),
    (["--output", "/nonexistent/dir/x.json"], 2, "does not exist"),
    (["--arch", "attention", "--mixer-kwargs", '{"num_heads": 3}'], 2,
     "dim 128 is not divisible by num_heads 3"),
    (["--arch", "bad_mixers:Raises"], 2, "boom in init"),
    (["--arch", "bad_mixers:Wrong"], 3, "breaks the mixer contract: output shape"),
    # a slip in an import path or a constructor argument: named, with the nearest name
    (["--arch", "bad_mixers:Sizd"], 2, "bad_mixers.py) has no attribute 'Sizd' (did you "
     "mean 'Sized'? nn.Module classes there: NoDim, Raises, Sized, Wrong)"),
    (["--arch", "bad_mixers.Sized"], 2, "(did you mean 'bad_mixers:Sized'? an import path puts "
     "':' before the class)"),
    (["--arch", "bad_mixers:NoDim"], 2, "cannot build mixer 'bad_mixers:NoDim': its "
     "constructor takes no dim (a mixer is built as Cls(dim, **kwargs))"),
    (["--arch", "bad_mixers:Sized", "--mixer-kwargs", '{"kernal_size": 3}'], 2,
     "cannot build mixer 'bad_mixers:Sized': it takes no argument 'kernal_size' (did you mean "
     "'kernel_size'? its arguments: kernel_size, heads, scale)"),
    (["--arch", "bad_mixers:Sized", "--mixer-kwargs", '{"kernel_size": "3"}'], 2,
     "kernel_size='3' is a string; kernel_size takes a number (its default is 4)"),
    (["--arch", "bad_mixers:Sized", "--mixer-kwargs", '{"heads": 2.5}'], 2,
     "heads=2.5 is a float; heads is annotated int"),
    (["--arch", "bad_mixers:Sized", "--mixer-kwargs", '{"heads": true}'], 2,
     "heads=True is a bool; heads is annotated int"),
    (["--arch", "bad_mixers:Sized", "--mixer-kwargs", '{"scale": "big"}'], 2,
     "scale='big' is a str; scale is annotated float or None"),
]


@pytest.mark.parametrize("extra,code,text", BAD_ARGUMENTS,
                         ids=[" ".join(a[0]) for a in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_line_before_any_training(tmp_path, mixers, extra, code, text):
    run_dir = tmp_path / "run"
    arch = [] if "--arch" in extra else ["--arch", "mh-attention"]
    result = cli("eval", *arch, *TINY, "--run-dir", run_dir, *extra)
    assert_one_line(result, code, text)
    assert not list(run_dir.glob("records/*.parquet"))        # nothing trained


def test_an_unwritable_run_directory_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = cli("eval", "--arch", "mh-attention", *TINY, "--run-dir", blocker / "run")
    assert_one_line(result, 2, "--run-dir")


def test_a_read_only_run_directory_is_refused_before_training(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chmod(run_dir, 0o555)
    try:
        if os.access(run_dir, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = cli("eval", "--arch", "mh-attention", *TINY, "--run-dir", run_dir)
        assert_one_line(result, 2, "cannot write there")
    finally:
        os.chmod(run_dir, 0o755)


def test_a_full_disk_is_one_line_and_keeps_what_was_stored(tmp_path, monkeypatch):
    import madbench.store as store_module
    real = store_module.pq.write_table
    calls = []

    def fill_up(table, where, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:                                   # the second record: disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(store_module.pq, "write_table", fill_up)
    run_dir = tmp_path / "run"
    result = cli("eval", "--arch", "mh-attention", *TINY, "--set", "lrs=0.001,0.0005",
                 "--run-dir", run_dir)
    assert_one_line(result, 1, "No space left on device")
    assert len(ResultsStore(run_dir).records()) == 1                 # the first run is kept
    assert not [p for p in (run_dir / "records").iterdir() if p.name.startswith(".tmp")]


def test_an_unexpected_exception_is_one_line_with_the_traceback_behind_debug(monkeypatch):
    import click

    @click.command("boom")
    def boom():
        return 1 / 0

    @click.command("missing")
    def missing():
        open("/nonexistent/madbench/file")

    monkeypatch.setitem(main.commands, "boom", boom)
    monkeypatch.setitem(main.commands, "missing", missing)
    monkeypatch.delenv("MADBENCH_DEBUG", raising=False)
    result = cli("boom")
    assert_one_line(result, 1, "ZeroDivisionError: division by zero")
    assert "--debug" in result.output
    assert_one_line(cli("missing"), 1, "No such file or directory: /nonexistent/madbench/file")
    debug = cli("--debug", "boom")
    assert debug.exit_code == 1 and "Traceback" in debug.output
    monkeypatch.setenv("MADBENCH_DEBUG", "1")
    assert "Traceback" in cli("boom").output


def test_plot_refuses_an_unknown_format_before_reading(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "records").mkdir()
    assert_one_line(cli("plot", tmp_path, "--out", tmp_path / "x.xyz"), 2,
                    "matplotlib cannot write xyz files")


def test_printable_escapes_every_control_character_and_nothing_else():
    """Property against an independent rule (unicodedata categories Cc, Cs, Zl, Zp, the
    bidi controls and marks, and the invisible format characters: zero-width space, word
    joiner and invisible operators, BOM, Mongolian vowel separator): escaped
    exactly those characters; everything else is unchanged."""
    import unicodedata
    bidi = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}
    invisible = {0x200B, 0xFEFF, 0x180E} | set(range(0x2060, 0x2065))   # not ZWNJ/ZWJ
    for cp in list(range(0, 0x3000)) + list(range(0xD800, 0xE000, 7)) + [0xFEFF]:
        ch = chr(cp)
        special = (unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or cp in bidi
                   or cp in invisible)
        out = printable(f"a{ch}b")
        if special:
            assert out != f"a{ch}b" and out.isascii() and out.isprintable(), hex(cp)
        else:
            assert out == f"a{ch}b", hex(cp)


def test_a_name_cannot_print_a_forged_verdict(tmp_path, trial):
    doc = json.loads(trial[0].read_text())
    doc["name"] = "x\x1b[1A\r\x1b[2Ktrial.json: valid\nforged"
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(doc))
    result = cli("leaderboard", "validate", path, "--allow-nonstandard")
    assert result.exit_code == 3
    assert "\x1b" not in result.output and "\r" not in result.output
    assert not any(l.startswith("forged") for l in result.output.splitlines())
    assert "at name:" in result.output                  # the schema refuses such a name


@pytest.mark.parametrize("name", ["lone\udcffsurrogate", "bell\x07", "rtl\u202eoverride"])
def test_submit_refuses_an_unprintable_name(tmp_path, trial, name):
    run_dir = trial[0].parent / "run"
    result = cli("leaderboard", "submit", run_dir, "--name", name, "--out", tmp_path / "s.json")
    assert_one_line(result, 2, "not allowed in a name")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_where_no_file_can_be_made_is_refused_before_training(tmp_path):
    """/proc passes a permission check for root, yet no file can be created there: the probe
    finds out before the first run trains, not after the sweep."""
    run_dir = tmp_path / "run"
    result = cli("eval", "--arch", "mh-attention", *TINY, "--run-dir", run_dir,
                 "--output", "/proc/madbench-results.json")
    assert_one_line(result, 2, "the folder /proc is not writable")
    assert not list(run_dir.glob("records/*.parquet"))


# -- found by a review of the CLI (eighth session) ----------------------------------------
@pytest.mark.parametrize("args, text", [
    (["eval", "--arch", "hyena", "--param-tolerance", "nan", "--dry-run"], "not a finite number"),
    (["arch", "describe", "hyena", "--param-tolerance", "nan"], "not a finite number"),
    (["arch", "describe", "hyena", "--state-tolerance", "inf"], "not a finite number"),
    (["eval", "--arch", "hyena", "--channel", "hyena", "--dry-run"],
     "'hyena' (a sequence mixer) is not a channel mixer"),
    (["check", "--arch", "hyena", "--channel", "foo"], "'foo' is not a channel mixer"),
    (["eval", "--arch", "hyena", "--preset", "smok"], "'smok' is not one of"),
    (["arch", "describe", "hyena", "--seq-len", "1"], "--seq-len"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e13", "--mixer-kwargs", "[1]",
      "--dry-run"], "--mixer-kwargs must be a JSON object"),
    (["leaderboard", "agree", "--root", "/nonexistent/leaderboards"], "no such folder"),
    # found by a review of the scaling commands (ninth session)
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--lr", "inf", "--dry-run"],
     "--lr must be a positive finite number"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--lr", "paper", "--lr-table",
      "1e3:nan,1e9:1e-3", "--dry-run"], "positive, finite parameter counts"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--sizes", ",", "--dry-run"],
     "--sizes ',' names no size"),
    (["scaling", "correlate", "README.md", "--mad", "README.md", "--budget", "nan"],
     "not a finite number"),
    (["scaling", "correlate", "README.md", "--mad", "README.md", "--budget", "0"],
     "not in the range x>0"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "abc", "--corpus", "/nonexistent"],
     "--budgets takes comma-separated numbers"),               # before the corpus is read
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--device", "bogus",
      "--corpus", "/nonexistent"], "--device 'bogus': not a device"),
    (["scaling", "fit", "leaderboards/frontiers/kjv/hyena/points.parquet", "--plot",
      "/nonexistent/x.png"], "the folder /nonexistent does not exist"),
    # before the corpus is read: an absurd batch failed at its first step (8 TB), a seed past
    # 64 bits after training, when its record was stored; a cpu has no index
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--seq-len", "32",
      "--batch-size", "1000000000000", "--corpus", "/nonexistent"],
     "--batch-size 1,000,000,000,000 at sequence length 32 is 32,000,000,000,000 tokens per "
     "batch, out of bounds: at most 4,194,304"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--batch-size", "16385",
      "--corpus", "/nonexistent"], "out of bounds: at most 4,194,304"),   # 16,385 x 256
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--seed", str(2**63),
      "--corpus", "/nonexistent"], "0<=x<=9223372036854775807"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e9", "--device", "cpu:1",
      "--corpus", "/nonexistent"], "--device 'cpu:1': the cpu takes no index"),
])
def test_bad_option_values_are_one_line_and_exit_2(args, text):
    result = cli(*args)
    assert_one_line(result, 2, text)
    assert "Usage:" not in result.output


def test_a_module_that_exits_on_import_is_a_usage_error(tmp_path, monkeypatch):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_one_line(cli("eval", "--arch", "exits_on_import:X", "--dry-run"), 2,
                    "cannot import 'exits_on_import' for 'exits_on_import:X': SystemExit: 3")


def test_an_import_error_says_which_line_of_the_user_s_code_raised(tmp_path, monkeypatch):
    """The one-line error of a module that raises at import said what, not where: with no
    traceback, 'RuntimeError: kaboom' left the user to guess the file and line."""
    pkg = tmp_path / "raising_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\n\nimport no_such_dependency_xyz\n")
    (tmp_path / "raises_on_import.py").write_text("x = 1\nraise RuntimeError('kaboom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_one_line(cli("eval", "--arch", "raises_on_import:X", "--dry-run"), 2,
                    f"RuntimeError: kaboom ({tmp_path / 'raises_on_import.py'}, line 2)")
    assert_one_line(cli("eval", "--arch", "raising_pkg.sub:X", "--dry-run"), 2,
                    "No module named 'no_such_dependency_xyz' "
                    f"({pkg / '__init__.py'}, line 3)")
    missing = cli("eval", "--arch", "no_such_module_xyz:X", "--dry-run")   # nothing to point at
    assert_one_line(missing, 2, "No module named 'no_such_module_xyz'")
    assert missing.output.rstrip().endswith("'no_such_module_xyz'")


def test_channel_aliases_and_registered_names_agree_across_commands():
    for channel in ("sg", "SwiGLU", "moe", "moe-mlp", "mlp", "M"):
        assert cli("arch", "describe", "hyena", "--channel", channel).exit_code == 0, channel


def test_runs_per_gpu_on_the_cpu_is_said_to_be_ignored(tmp_path):
    result = cli("eval", "--arch", "hyena", "--preset", "smoke", "--runs-per-gpu", "4",
                 "--device", "cpu", "--dry-run", "--run-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "--runs-per-gpu 4 is for GPUs" in result.output


def test_a_group_called_bare_prints_its_help():
    result = cli("tasks")
    assert "tasks [OPTIONS] COMMAND" in result.output and "Error:" not in result.output


def test_a_channel_mixer_can_be_given_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "chan.py").write_text(
        "import torch\nclass Chan(torch.nn.Module):\n    mixer_kind = 'channel'\n"
        "    def __init__(self, dim):\n        super().__init__()\n"
        "        self.p = torch.nn.Linear(dim, dim)\n"
        "    def forward(self, x):\n        return self.p(x)\n"
        "class NotChan(Chan):\n    mixer_kind = 'sequence'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from madbench.architecture import resolve_architecture
    spec = resolve_architecture("hyena", channel="chan:Chan")
    assert [l.mixer for l in spec.layers][1::2] == ["chan:Chan", "chan:Chan"]
    assert_one_line(cli("arch", "describe", "hyena", "--channel", "chan:NotChan"), 2,
                    "is not a channel mixer")


def test_an_unknown_top_level_option_is_one_line():
    assert_one_line(cli("--bogus"), 2, "No such option '--bogus'")


@pytest.mark.parametrize("args, text", [
    (["tasks", "export", "in-context-recall", "--setting", "baseline", "--split", "test",
      "--out", "/nonexistent-folder/x.npz"], "--out /nonexistent-folder/x.npz"),
    (["report", ".", "--html", "/nonexistent-folder/r.html"], "--html /nonexistent-folder"),
    # an empty path was ignored: report printed its table, rc 0 (plot --out '' was refused)
    (["report", ".", "--html", ""], "--html '': an empty path names no file or folder"),
    (["eval", "--arch", "hyena", "--preset", "smoke", "--output", "", "--dry-run"],
     "--output '': an empty path"),
    (["scaling", "fit", ".", "--plot", ""], "--plot '': an empty path"),
    (["tasks", "export", "in-context-recall", "--setting", "baseline"],
     "Missing option '--split'. Choose from: train, test"),
])
def test_outputs_are_checked_before_any_work(args, text):
    assert_one_line(cli(*args), 2, text)


def test_an_existing_file_given_for_a_folder_is_named_as_such(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    assert_one_line(cli("eval", "--arch", "hyena", "--preset", "smoke", "--output", existing,
                        "--dry-run", "--run-dir", tmp_path / "runs"), 2,
                    "is a file, not a folder")
    assert existing.read_text() == "keep me"


# -- found by a hostile review of eval and check (ninth session) -----------------------------
HOSTILE = '''
import torch
from torch import nn


class Base(nn.Module):
    def __init__(self, dim, **kw):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def causal(self, x):          # a running mean: causal at every length
        n = torch.arange(1, x.shape[1] + 1, dtype=x.dtype).view(1, -1, 1)
        return self.proj(x.cumsum(1) / n)

    def state_size(self, seq_len):
        return 2048


def next_token(x):
    return torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], 1)


class LeakLong(Base):             # a long-sequence path that sees the next token
    def forward(self, x):
        return self.causal(x) + (next_token(x) if x.shape[1] > 64 else 0)


class ExitsInTraining(Base):      # passes every check, then exits once training starts
    def forward(self, x):
        if torch.is_grad_enabled() and x.shape[0] > 3:
            raise SystemExit(0)
        return self.causal(x)


class RaisesInTraining(Base):    # passes every check, then fails once training starts
    def forward(self, x):
        if torch.is_grad_enabled() and x.shape[0] > 3:
            raise RuntimeError("boom in training step")
        return self.causal(x)


class ExitsAlways(Base):
    def forward(self, x):
        raise SystemExit(0)


class Honest(Base):
    def forward(self, x):
        return self.causal(x)


class StateWords(Honest):
    def state_size(self, seq_len):
        return "lots"


class StateDigits(Honest):
    def state_size(self, seq_len):
        return "2048"


class StateNaN(Honest):
    def state_size(self, seq_len):
        return float("nan")


class StateNegative(Honest):
    def state_size(self, seq_len):
        return -10


class StateRaises(Honest):
    def state_size(self, seq_len):
        raise RuntimeError("no idea")


class Boom(nn.Module):
    def __init__(self, dim):
        raise RuntimeError("constructor exploded")
'''


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    (tmp_path / "hostile_mixers_9.py").write_text(HOSTILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hostile_mixers_9"


def test_eval_checks_causality_at_the_longest_length_it_trains(hostile, tmp_path):
    """Checked at L = 32 only, a mixer leaking above 64 tokens trained (in-context recall at
    128) and scored 0.988 against 0.321 for an honest one."""
    result = cli("eval", "--arch", f"{hostile}:LeakLong", "--preset", "smoke", "--tasks",
                 "in-context-recall", "--dry-run", "--run-dir", tmp_path / "run")
    assert_one_line(result, 3, "is not causal")
    assert "(at sequence length 128)" in result.stderr
    result = cli("eval", "--arch", f"{hostile}:LeakLong", "--preset", "smoke", "--tasks",
                 "in-context-recall", "--run-dir", tmp_path / "new" / "run")
    assert_one_line(result, 3, "is not causal")
    assert not (tmp_path / "new").exists()      # refused: no folder left behind (it was)


def test_a_dry_run_leaves_causality_beyond_its_longest_length_to_the_run(hostile, tmp_path,
                                                                        monkeypatch):
    """eval's dry run follows scaling run's rule (``verdict.dry_run_lengths``): a length over
    DRY_RUN_MAX_LENGTH (here 64, which the MAD tasks pass) is not checked, and the dry run says
    so; the Evaluation it prepared checks that length before it trains anything."""
    from madbench import verdict
    from madbench.errors import CheckFailed
    from madbench.evaluator import prepare
    monkeypatch.setattr(verdict, "DRY_RUN_MAX_LENGTH", 64)
    args = ["--arch", f"{hostile}:LeakLong", "--preset", "smoke", "--tasks",
            "in-context-recall", "--settings", "baseline", "--run-dir", tmp_path / "run"]
    dry = cli("eval", *args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "causality and the mixer contract not checked at 128 tokens (a dry run checks up " \
           "to 64)" in dry.stderr
    assert_one_line(cli("eval", *args), 3, "(at sequence length 128)")
    ev = prepare(f"{hostile}:LeakLong", tasks="in-context-recall", protocol="smoke",
                 settings="baseline", run_dir=tmp_path / "api", device="cpu", dry_run=True)
    assert ev.unchecked == (128,)
    with pytest.raises(CheckFailed, match="at sequence length 128"):
        ev.run()
    assert not (tmp_path / "api").exists()


def test_dry_run_lengths_splits_for_a_dry_run_and_checks_all_for_a_run():
    """The one split eval and scaling run use (each one line: ``dry_run_lengths(lengths,
    dry_run)``; they repeated 'if dry_run: split' before): a dry run leaves a length over
    DRY_RUN_MAX_LENGTH to the run, a run checks every length now."""
    from madbench.verdict import DRY_RUN_MAX_LENGTH, dry_run_lengths
    short, long = DRY_RUN_MAX_LENGTH, DRY_RUN_MAX_LENGTH + 1
    assert dry_run_lengths([short, long, short], True) == ({short}, {long})
    assert dry_run_lengths([short, long], False) == ({short, long}, set())


def test_guard_lengths_names_the_length_that_leaks(hostile):
    from madbench.architecture import resolve_architecture
    from madbench.checks import guard_lengths
    from madbench.errors import CheckFailed
    spec = resolve_architecture(f"{hostile}:LeakLong")
    assert guard_lengths(spec, [32])["causal"]                 # honest at short lengths
    report = guard_lengths(spec, [32, 128], raise_on_failure=False)
    assert not report["causal"] and report["failures"][0].endswith("(at sequence length 128)")
    with pytest.raises(CheckFailed, match="at sequence length 128"):
        guard_lengths(spec, [128, 32])


@pytest.mark.parametrize("command", [("eval", "--dry-run", "--preset", "smoke", "--arch"),
                                     ("check", "--arch"), ("arch", "describe")])
def test_a_constructor_that_raises_is_the_same_usage_error_everywhere(hostile, command,
                                                                    tmp_path):
    """eval, check and arch describe name the layer (before, check and describe printed only
    the exception and exited 1)."""
    result = cli(*command, f"{hostile}:Boom", *(("--run-dir", tmp_path / "r")
                                                if command[0] == "eval" else ()))
    assert_one_line(result, 2, f"layer 0 ({hostile}:Boom) cannot be built with kwargs {{}}: "
                    "RuntimeError: constructor exploded")


def test_check_says_eval_refuses_a_contract_failure():
    from madbench.verdict import eval_outcome
    verdict = {"refusal": None, "flags": []}
    assert eval_outcome({"causal": True, "contract_ok": False}, verdict) == "refused"
    assert eval_outcome({"causal": True, "contract_ok": True}, verdict) == "runs"


def test_an_error_in_training_names_the_run(hostile, tmp_path):
    """In eval's time estimate, which trains a few steps first, and in a sweep's worker process
    (before: only 'RuntimeError: boom in training step', no task, setting or seed)."""
    from madbench.evaluator import prepare
    from madbench.executors.local import LocalExecutor
    result = cli("eval", "--arch", f"{hostile}:RaisesInTraining", *TINY, "--settings",
                 "baseline", "--run-dir", tmp_path / "run")
    assert_one_line(result, 1, "RuntimeError: boom in training step (while timing a training "
                    "step of memorization baseline for the time estimate)")
    ev = prepare(f"{hostile}:RaisesInTraining", tasks="memorization", protocol="smoke",
                 overrides={"epochs": "1", "max_train": "32", "max_test": "16"},
                 settings="baseline", run_dir=tmp_path / "pool", device="cpu",
                 engine="plain", executor=LocalExecutor(devices=["cpu", "cpu"],
                                                        threads_per_worker=1))
    with pytest.raises(MadbenchError, match=r"failed: RuntimeError: boom in training step "
                       r"\(while training memorization baseline seed 0 lr "):
        ev.run()


def test_sys_exit_in_a_mixer_is_an_error_not_a_silent_success(hostile, tmp_path):
    """A forward that calls sys.exit(0) made eval (and check) exit 0 with no output."""
    result = cli("eval", "--arch", f"{hostile}:ExitsInTraining", *TINY, "--settings",
                 "baseline", "--run-dir", tmp_path / "run")
    assert_one_line(result, 1, "code that madbench ran called sys.exit(0)")
    result = cli("eval", "--arch", f"{hostile}:ExitsAlways", *TINY, "--dry-run",
                 "--run-dir", tmp_path / "run2")
    assert_one_line(result, 3, "fails to run on (batch, 32, 128) inputs: SystemExit: 0")


def test_report_reads_only_it_never_moves_files_and_names_a_scaling_folder(tmp_path):
    """`report` used to move a foreign file of records/ to quarantine/ ("its run will be
    trained again"), and gave `KeyError: 'protocol_hash'` on a scaling run directory."""
    run = tmp_path / "foreign"
    (run / "records").mkdir(parents=True)
    (run / "records" / "sales_2024.parquet").write_text("not parquet")
    result = cli("report", run)
    assert_one_line(result, 2, "no run records in")
    assert (run / "records" / "sales_2024.parquet").exists()
    assert not (run / "quarantine").exists()
    scaling = tmp_path / "scaling"
    ResultsStore(scaling).append({"run_key": "k1", "kind": "isoflop", "arch": "hyena",
                                  "loss": 1.0})
    assert_one_line(cli("report", scaling), 2, "its records are records of kind 'isoflop', "
                    "not 'madbench eval' ones")


@pytest.mark.parametrize("mixer, why", [("StateWords", "'lots' is not a count"),
                                        ("StateDigits", "'2048' is not a count"),
                                        ("StateNaN", "nan is not a count"),
                                        ("StateNegative", "-10 is not a count"),
                                        ("StateRaises", "RuntimeError: no idea")])
def test_a_state_size_that_is_not_a_count_is_named(hostile, tmp_path, mixer, why):
    """It used to end in 'Error: ValueError ...' (exit 1) naming neither the layer nor the
    method."""
    result = cli("eval", "--arch", f"{hostile}:{mixer}", *TINY, "--dry-run", "--run-dir",
                 tmp_path / "run")
    assert_one_line(result, 2, f"{mixer}.state_size(")
    assert why in result.stderr


def test_the_graphed_engines_sync_debug_warning_is_not_printed_by_the_cli():
    """torch warns each time its sync debug mode is used (the graphed engine uses it before
    every capture): in a process that runs madbench's command line that is noise, not news."""
    import subprocess
    import sys
    code = ("import warnings, madbench.cli; warnings.warn('Synchronization debug mode is a "
            "prototype feature and does not yet detect all synchronizing operations', "
            "UserWarning); warnings.warn('another warning', UserWarning)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "Synchronization debug mode" not in out.stderr
    assert "another warning" in out.stderr          # other warnings still show


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command,target", [
    (["eval", "--arch", "hyena", *TINY], "madbench.evaluator.Evaluation.train"),
    (["scaling", "run", "--arch", "hyena", "--budgets", "1e8", "--sizes", "16x1",
      "--seq-len", "16", "--batch-size", "4", "--device", "cpu"],
     "madbench.scaling.runs.train_run"),
    (["tasks", "list"], "madbench.cli.tasks_cmd.all_tasks")])
def test_an_interrupt_exits_130_and_says_whether_the_command_resumes(tmp_path, monkeypatch,
                                                                     command, target):
    """Ctrl-C mid-training: exit 130, one line; the commands that store runs as they finish
    (eval, scaling run) add that the same command resumes, any other command does not."""
    monkeypatch.setattr(target, _interrupt)
    res = CliRunner().invoke(main, [*command, *(["--run-dir", str(tmp_path)]
                                                if "--arch" in command else [])])
    assert res.exit_code == 130
    last = res.output.strip().splitlines()[-1]
    if "--arch" in command:
        assert last == "Interrupted. Finished runs are kept; the same command resumes."
    else:
        assert last == "Interrupted."


def test_a_reader_that_went_away_is_exit_141_and_no_message_under_rich_too():
    """`madbench tasks show ... | head`: rich's console meets the broken pipe and calls
    sys.exit(1), which was reported as an error with exit 1; it now exits 141 with nothing on
    stderr, as click's output (`arch list | head`) does and the README says."""
    import subprocess
    import sys
    read, write = os.pipe()
    os.close(read)                                   # the reader is gone before any output
    proc = subprocess.Popen([sys.executable, "-m", "madbench", "tasks", "show", "memorization"],
                            stdout=write, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    os.close(write)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (141, "")


def test_eval_and_scaling_run_refuse_each_other_s_run_directory(tmp_path):
    """`scaling run --run-dir` on an eval directory trained and stored its runs there, after
    which `report` refused the directory; `eval --run-dir` on a scaling directory was accepted
    the same way; `leaderboard submit` on a scaling directory gave `KeyError:
    'protocol_hash'`. Each refuses the other's directory up front (exit 2, one line), and
    nothing is trained or written there."""
    evals, scaling = tmp_path / "eval", tmp_path / "scaling"
    assert cli("eval", "--arch", "mh-attention", *TINY, "--run-dir", evals).exit_code == 0
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"and the evening and the morning were the first day\n" * 80)
    run = ["scaling", "run", "--arch", "hyena", "--budgets", "1e8", "--sizes", "16x1",
           "--corpus", corpus, "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "128",
           "--device", "cpu", "--no-progress"]
    assert cli(*run, "--run-dir", scaling).exit_code == 0
    before = {d: sorted((d / "records").iterdir()) for d in (evals, scaling)}

    assert_one_line(cli(*run, "--run-dir", evals), 2,
                    "its records are 'madbench eval' records, not 'madbench scaling run' ones")
    for dry in ([], ["--dry-run"]):
        assert_one_line(cli("eval", "--arch", "mh-attention", *TINY, "--run-dir", scaling,
                            *dry), 2, "its records are 'madbench scaling run' records, not "
                        "'madbench eval' ones")
    assert_one_line(cli("leaderboard", "submit", scaling, "--name", "x", "--out",
                        tmp_path / "x.json"), 2, "its records are 'madbench scaling run'")
    assert {d: sorted((d / "records").iterdir()) for d in (evals, scaling)} == before
    assert not (tmp_path / "x.json").exists()
    assert_one_line(cli("scaling", "fit", evals), 2, "its records are 'madbench eval' records, "
                    f"not 'madbench scaling run' ones ('madbench report {evals}' reads them)")
    assert cli("report", evals).exit_code == 0                  # each still reads as before
    assert cli("scaling", "fit", scaling, "--approach", "2").exit_code == 0
    assert cli(*run, "--run-dir", scaling).exit_code == 0       # its own kind: resumes
    assert cli("eval", "--arch", "mh-attention", *TINY, "--run-dir", evals).exit_code == 0


@pytest.mark.parametrize("command,text", [
    ("list", "No such command 'list'. Did you mean 'madbench arch list' or 'madbench tasks "
     "list'?"),
    ("describe", "No such command 'describe'. Did you mean 'madbench arch describe'?"),
    ("validate", "Did you mean 'madbench leaderboard validate' or 'madbench scaling "
     "validate'?"),
])
def test_a_group_s_command_given_alone_names_its_group(command, text):
    """`madbench list` said only "No such command 'list'."."""
    assert_one_line(CliRunner().invoke(main, [command], prog_name="madbench"), 2, text)
