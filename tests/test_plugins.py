"""The plugin system: entry points that fail to load, plugins registered at run time, name
conflicts, and the MADBENCH_DISABLE_PLUGINS / MADBENCH_LOAD_PLUGINS switches."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import MappingProxyType, ModuleType

import pytest
from click.testing import CliRunner

import madbench
from madbench import plugins
from madbench.cli import main
from madbench.errors import PluginConflictError, UsageError
from madbench.tasks import Task, all_tasks, generate_splits, get_task

BROKEN_MODULE = "madbench_test_no_such_module"


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch):
    """A distribution on sys.path whose entry point (group ``madbench``, name ``broken``)
    names a module that does not exist. The plugin manager is reloaded before and after."""
    info = tmp_path / "broken_madbench_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-madbench-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[madbench]\nbroken = {BROKEN_MODULE}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.reset()
    yield tmp_path
    plugins.reset()


@pytest.fixture
def fresh_plugins():
    """Reload entry points for this test (after it sets the environment), and after it."""
    plugins.reset()
    yield
    plugins.reset()


class ToyCopy(Task):
    name = "toy-copy"
    description = "Repeat the input (a test task)."
    baseline = MappingProxyType({"vocab_size": 4, "seq_len": 8, "num_train_examples": 16,
                                 "num_test_examples": 8})
    changes = MappingProxyType({"seq_len": (16,)})

    def sample(self, params, num, split, rng):   # the signature without ``shared`` still works
        x = rng.integers(0, params["vocab_size"], (num, params["seq_len"]))
        return x, x.copy()


class ToyPlugin:
    def __init__(self, task_name: str = "toy-copy"):
        self.task_name = task_name

    @madbench.hookimpl
    def madbench_register_tasks(self, register):
        register(self.task_name, ToyCopy())


def plugins_json() -> dict:
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_broken_entry_point_does_not_break_the_cli(broken_distribution):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(broken_distribution), os.environ.get("PYTHONPATH", "")]))
    env.pop("MADBENCH_LOAD_PLUGINS", None)
    env.pop("MADBENCH_DISABLE_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-c", "from madbench.cli import main; main()",
                           "tasks", "list", "--json"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 66
    assert "plugin 'broken'" in proc.stderr and BROKEN_MODULE in proc.stderr


def test_the_failure_is_reported_by_madbench_plugins(broken_distribution):
    report = plugins_json()
    failed = {f["name"]: f for f in report["failed"]}
    assert failed["broken"]["distribution"] == "broken-madbench-plugin"
    assert BROKEN_MODULE in failed["broken"]["error"]
    bundled = {p["name"]: p for p in report["plugins"]}["mad-tasks"]
    assert bundled["bundled"] and len(bundled["registered"]["tasks"]) == 6
    assert len(all_tasks()) == 6


def test_a_plugin_registered_at_run_time_shows_up(register_plugin):
    register_plugin(ToyPlugin(), "toy-plugin")
    report = {p["name"]: p for p in plugins_json()["plugins"]}
    assert report["toy-plugin"]["registered"] == {"tasks": ["toy-copy"]}
    assert report["toy-plugin"]["hooks"] == ["madbench_register_tasks"]
    assert not report["toy-plugin"]["bundled"]
    rows = json.loads(CliRunner().invoke(main, ["tasks", "list", "--json"]).stdout)
    assert [r["setting"] for r in rows if r["task"] == "toy-copy"] == ["baseline", "seq_len=16"]
    train, test = generate_splits(get_task("toy-copy"), "seq_len=16")
    assert train.inputs.shape == (16, 16) and test.inputs.shape == (8, 16)


def test_a_name_conflict_names_both_plugins(register_plugin):
    register_plugin(ToyPlugin("in-context-recall"), "copycat")
    with pytest.raises(PluginConflictError, match="'mad-tasks' and plugin 'copycat'"):
        plugins.get_registry()
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1
    assert "mad-tasks" in result.stderr and "copycat" in result.stderr
    assert "MADBENCH_DISABLE_PLUGINS=copycat" in result.stderr    # the way out, named
    assert "Traceback" not in result.output


def test_the_plugins_table_fits_a_terminal():
    lines = CliRunner().invoke(main, ["plugins"]).stdout.splitlines()
    assert "mixers: attention" in "\n".join(lines) and max(map(len, lines)) <= 120


def test_an_architecture_registered_without_description_lists_its_layers(register_plugin):
    import madbench

    class Archs:
        @madbench.hookimpl
        def madbench_register_architectures(self, register):
            register("bare-arch", ["hyena", "swiglu", "mh-attention", "swiglu"])

    register_plugin(Archs(), "bare-archs")
    listing = json.loads(CliRunner().invoke(main, ["arch", "list", "--json"]).stdout)
    (bare,) = [a for a in listing["architectures"] if a["name"] == "bare-arch"]
    assert bare["description"] == "layers: hyena, swiglu, mh-attention, swiglu"


def test_disable_plugins_blocks_the_named_ones(fresh_plugins, monkeypatch):
    monkeypatch.setenv("MADBENCH_DISABLE_PLUGINS", "mad-tasks")
    names = [p["name"] for p in plugins_json()["plugins"]]
    assert "mad-tasks" not in names and "reference-layers" in names
    assert all_tasks() == []
    with pytest.raises(UsageError, match="known tasks: none"):
        get_task("in-context-recall")


def test_load_plugins_empty_loads_only_the_bundled_ones(broken_distribution, monkeypatch):
    monkeypatch.setenv("MADBENCH_LOAD_PLUGINS", "")
    report = plugins_json()
    assert report["failed"] == []
    assert {"mad-tasks", "reference-layers"} <= {p["name"] for p in report["plugins"]}
    assert len(all_tasks()) == 6


def test_load_plugins_names_the_extra_ones_to_load(broken_distribution, monkeypatch):
    monkeypatch.setenv("MADBENCH_LOAD_PLUGINS", "broken")
    assert [f["name"] for f in plugins_json()["failed"]] == ["broken"]


@pytest.mark.parametrize("var", ["MADBENCH_DISABLE_PLUGINS", "MADBENCH_LOAD_PLUGINS"])
def test_a_switch_naming_no_plugin_is_warned_about_once(fresh_plugins, monkeypatch, capsys,
                                                       var):
    """MADBENCH_DISABLE_PLUGINS=nosuch was silently ignored (a typo disables nothing). Now one
    line, once per process, naming the plugins there are; a real name is not warned about."""
    monkeypatch.setenv(var, "mad-tasks,nosuch")
    plugins.get_registry()
    plugins.get_registry()
    plugins.register_plugin(ToyPlugin(), "toy")           # a rebuilt registry: no new warning
    plugins.get_registry()
    plugins.unregister_plugin("toy")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Warning: {var}: no plugin is named "
                                                   "'nosuch'"), lines
    assert "'mad-tasks'" not in lines[0]
    assert all(name in lines[0] for name in ("mad-tasks", "reference-layers", "scaling-corpora"))
    plugins.reset()
    monkeypatch.setenv(var, "mad-tasks")
    plugins.get_registry()
    assert capsys.readouterr().err == ""


def test_a_plugin_warning_is_not_repeated_by_the_processes_a_command_starts(
        fresh_plugins, monkeypatch, capsys):
    """Each worker process of a command (local workers, Ray's) loads the plugins again and
    repeated the command's warning about MADBENCH_DISABLE_PLUGINS=nosuch, once per process. A
    process started after it, inheriting the environment as workers do, now stays quiet about
    it, and still warns about what only it finds."""
    monkeypatch.setenv("MADBENCH_DISABLE_PLUGINS", "nosuch")
    plugins.get_registry()
    assert capsys.readouterr().err.count("no plugin is named 'nosuch'") == 1
    child = [sys.executable, "-c", "from madbench import plugins; plugins.get_registry()"]
    assert subprocess.run(child, capture_output=True, text=True, timeout=120).stderr == ""
    env = dict(os.environ, MADBENCH_LOAD_PLUGINS="other")
    err = subprocess.run(child, capture_output=True, text=True, env=env, timeout=120).stderr
    assert err.startswith("Warning: MADBENCH_LOAD_PLUGINS: no plugin is named 'other'")
    assert err.count("Warning:") == 1, err


def OneRegistration(hook: str, *args, returns: bool = False, **kwargs):
    """A plugin whose ``hook`` calls ``register(*args, **kwargs)`` once, or returns ``args``
    (``returns=True``) as a hook written by mistake would."""
    def impl(register):
        if returns:
            return list(args)
        register(*args, **kwargs)
    module = ModuleType("slip_plugin")          # a plugin module, as an entry point loads
    setattr(module, hook, madbench.hookimpl(impl))
    return module


class NoNumTest(ToyCopy):
    baseline = MappingProxyType({"vocab_size": 4, "seq_len": 8, "num_train_examples": 16})


class ChangesTypo(ToyCopy):
    changes = MappingProxyType({"seq_lne": (16,)})


class NotAModule:
    def __init__(self, dim):
        pass


TASKS, MIXERS = "madbench_register_tasks", "madbench_register_mixers"
SLIPS = [
    ((TASKS, "toy-copy", ToyCopy), "task 'toy-copy' is the class ToyCopy; register an instance: "
     "register('toy-copy', ToyCopy())"),
    ((TASKS, "toy-copy", "not a task"), "must be a madbench.tasks.Task instance, not a str"),
    ((TASKS, "toy-copy2", ToyCopy()), "task 'toy-copy' is registered as 'toy-copy2'"),
    ((TASKS, "toy-copy", NoNumTest()), "its baseline lacks num_test_examples"),
    ((TASKS, "toy-copy", ChangesTypo()), "changes vary 'seq_lne', which the baseline does not "
     "set (did you mean 'seq_len'?"),
    ((MIXERS, "toy-mixer", None), "must be an nn.Module class, not NoneType None"),
    ((MIXERS, "toy-mixer", NotAModule), "must be an nn.Module class, not the class NotAModule"),
    ((TASKS, "toy-copy"), "TypeError: register() missing 1 required positional argument: "
     "'obj'"),
]


@pytest.mark.parametrize("call,text", SLIPS, ids=[s[1][:40] for s in SLIPS])
def test_a_registration_slip_is_the_plugin_s_failure_named_in_one_line(register_plugin, call,
                                                                      text):
    """A task class instead of an instance, a task under another name, a baseline without
    num_test_examples, a mixer that is no nn.Module class: each failed later as a bare
    TypeError or KeyError (exit 1) in whatever command used it, or (another name) was trained
    under the wrong name. Now the plugin's hook fails at registration, named in `madbench
    plugins`, and everything else keeps working."""
    register_plugin(OneRegistration(*call), "slip")
    report = plugins_json()
    (failure,) = [f for f in report["failed"] if f["name"] == "slip"]
    assert failure["error"].startswith(f"{call[0]}: TypeError: "), failure
    assert text in failure["error"], failure
    assert len(all_tasks()) == 6 and "slip" not in str(
        [p["registered"] for p in report["plugins"]])


@pytest.mark.parametrize("args,unknown", [
    (["eval", "--arch", "toy-mixer"], "unknown architecture 'toy-mixer'"),
    (["eval", "--arch", "toy-mixer", "--channel", "mlp", "--dry-run"], "unknown architecture"),
    (["arch", "describe", "mH-toy"], "unknown architecture 'mH-toy'"),
    (["eval", "--arch", "hyena", "--tasks", "toy-copy"], "unknown task 'toy-copy'")])
def test_an_unknown_name_says_which_plugin_failed_to_load(broken_distribution, args, unknown):
    """A name that a plugin which failed to load would have given was only 'unknown', with
    the bundled names listed: the failure warning scrolled away, the cause went unsaid."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert unknown in last
    assert last.endswith("; plugin 'broken' failed to load, so what it registers is missing "
                         "('madbench plugins' says why)")


def test_an_unknown_name_says_nothing_of_plugins_when_none_failed():
    result = CliRunner().invoke(main, ["eval", "--arch", "toy-mixer"])
    assert result.exit_code == 2 and "failed to load" not in result.stderr


def test_a_mixer_of_an_unknown_kind_no_longer_stops_every_command(register_plugin):
    """kind='seq' raised PluginConflictError: every command, `madbench plugins` too, exited 1."""
    from torch import nn
    register_plugin(OneRegistration(MIXERS, "toy-mixer", nn.Linear, kind="seq"), "slip")
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "mixer 'toy-mixer': kind must be 'sequence' or 'channel', not 'seq'" in result.stdout
    assert "toy-mixer" not in plugins.get_registry().mixers


def test_a_mixer_instance_is_refused_and_its_class_is_named(register_plugin):
    from torch import nn
    register_plugin(OneRegistration(MIXERS, "toy-mixer", nn.Linear(2, 2)), "slip")
    (failure,) = plugins.get_registry().failures
    assert failure.error.endswith("mixer 'toy-mixer' must be an nn.Module class, not an "
                                  "instance of Linear (register the class itself)")


def test_a_hook_that_returns_what_it_should_register_is_warned_about(register_plugin, capsys):
    """`return [MyTask()]` registered nothing, silently: the task was then 'unknown'."""
    register_plugin(OneRegistration(TASKS, ToyCopy(), returns=True), "returner")
    plugins.get_registry()
    err = capsys.readouterr().err
    assert err.startswith("Warning: plugin 'returner': madbench_register_tasks returned list [")
    assert "which is ignored; a hook registers each item by calling register(name, obj)" in err
    assert len(all_tasks()) == 6


class Returns(ToyCopy):
    """ToyCopy whose sample returns ``make(x)`` (x: the inputs it would return)."""

    def __init__(self, make):
        self.make = make

    def sample(self, params, num, split, rng):
        return self.make(super().sample(params, num, split, rng)[0])


BAD_SAMPLES = [
    (lambda x: x, "sample returned ndarray; expected a pair (inputs, targets)"),
    (lambda x: None, "sample returned NoneType; expected a pair"),
    (lambda x: (x, x, x), "sample returned tuple of 3; expected a pair"),
    (lambda x: (x + 4, x), "inputs hold token 7, outside [0, 4) (vocab_size 4; unscored "
     "targets are -100)"),
    (lambda x: (x, x - 1), "targets hold token -1, outside [0, 4)"),
    (lambda x: (x * 0.5, x), "inputs are float64; expected integer token ids"),
    (lambda x: 1 / 0, "failed to sample: ZeroDivisionError: division by zero"),
    (lambda x: (x, x * 0 - 100), "every target is -100 (unscored), so nothing would be "
     "trained or scored"),
]


@pytest.mark.parametrize("make,text", BAD_SAMPLES, ids=[t for _, t in BAD_SAMPLES])
def test_a_task_that_returns_bad_data_is_named_in_one_line(make, text):
    """A sample that returned one array or None was an unpacking error naming no task; a token
    outside the vocabulary an IndexError in the middle of training; float ids were truncated."""
    from madbench.errors import MadbenchError
    from madbench.tasks import generate
    with pytest.raises(MadbenchError) as caught:
        generate(Returns(make), "baseline", "train")
    assert str(caught.value).startswith("task 'toy-copy' (baseline, train split)")
    assert text in str(caught.value)


def test_a_task_s_bad_tokens_are_refused_before_anything_trains(register_plugin, tmp_path):
    register_plugin(OneRegistration(TASKS, "toy-copy", Returns(lambda x: (x, x + 1))), "oov")
    result = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", "--tasks", "toy-copy",
                                       "--preset", "smoke", "--device", "cpu", "--run-dir",
                                       str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == (
        "Error: task 'toy-copy' (baseline, test split): targets hold token 4, outside [0, 4) "
        "(vocab_size 4; unscored targets are -100)")
    assert not list(tmp_path.glob("run/records/*.parquet"))


def test_lists_and_integer_arrays_of_any_width_still_work():
    from madbench.tasks import generate
    for make in (lambda x: (x.tolist(), x.tolist()), lambda x: (x.astype("int32"), x)):
        data = generate(Returns(make), "baseline", "train")
        assert data.inputs.dtype == "int64" and data.inputs.shape == (16, 8)


def test_a_plugin_architecture_naming_an_unknown_mixer_names_the_plugin(register_plugin):
    """`--arch j2-arch` said only "unknown mixer 'nonexistent-mixer'", a name the user never
    typed; the error now says which architecture, of which plugin, holds it."""
    import madbench

    class Archs:
        @madbench.hookimpl
        def madbench_register_architectures(self, register):
            register("slipped-arch", ["hyena", "swiglu", "no-such-mixer", "swiglu"])

    register_plugin(Archs(), "slipping-archs")
    for args in (["arch", "describe", "slipped-arch"],
                 ["eval", "--arch", "slipped-arch", "--dry-run"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, res.output
        (line,) = [l for l in res.output.splitlines() if l.startswith("Error:")]
        assert line.startswith("Error: architecture 'slipped-arch' of plugin 'slipping-archs': "
                               "unknown mixer 'no-such-mixer'"), line


def test_eval_with_every_task_plugin_blocked_says_no_task_is_registered(fresh_plugins,
                                                                       monkeypatch):
    """It said 'the sweep is empty: no (task, setting, seed, lr, weight decay) run to
    train', which names no cause."""
    monkeypatch.setenv("MADBENCH_DISABLE_PLUGINS", "mad-tasks")
    assert all_tasks() == []
    res = CliRunner().invoke(main, ["eval", "--arch", "hyena", "--preset", "smoke",
                                    "--dry-run"])
    assert res.exit_code == 2, res.output
    (line,) = [l for l in res.output.splitlines() if l.startswith("Error:")]
    assert line.startswith("Error: --tasks all: no task is registered (a task plugin blocked "
                           "by MADBENCH_DISABLE_PLUGINS")


def test_a_plugin_that_raises_at_import_says_where(broken_distribution):
    """The warning said 'ImportError: ...' with no file or line: there is no traceback."""
    module = broken_distribution / f"{BROKEN_MODULE}.py"
    module.write_text("import os\n\nraise RuntimeError('half-written plugin')\n")
    (failure,) = plugins_json()["failed"]
    assert failure["name"] == "broken"
    assert failure["error"] == f"RuntimeError: half-written plugin ({module}, line 3)"
