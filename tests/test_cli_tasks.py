"""``madbench tasks list|show|export`` and their error paths (one line on stderr, exit 2)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from madbench.cli import main
from madbench.tasks import IGNORE, generate, get_task


def run(*args):
    return CliRunner().invoke(main, ["tasks", *args])


def test_list_json_has_six_tasks_and_66_settings():
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 66 and len({r["task"] for r in rows}) == 6
    assert set(rows[0]) == {"task", "setting", "seq_len", "vocab_size", "num_train", "num_test",
                            "hash"}
    baseline = rows[0]
    assert baseline == {"task": "in-context-recall", "setting": "baseline", "seq_len": 128,
                        "vocab_size": 16, "num_train": 12800, "num_test": 1280,
                        "hash": get_task("in-context-recall").setting("baseline").hash}


def test_list_table():
    result = run("list")
    assert result.exit_code == 0
    assert "noisy-in-context-recall" in result.stdout and "frac_noise=0.8" in result.stdout
    assert "6 tasks, 66 settings" in result.stdout


def test_show_marks_scored_positions():
    result = run("show", "memorization", "-n", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[0].startswith("[0] 16 scored:")
    # the first example, decoded independently: key labels k<i>, scored insert tokens ?→v<j>
    data = generate(get_task("memorization"), "baseline", "train", seed=1)
    x, y = data.inputs[0], data.targets[0]
    words = [f"k{x[0]}", f"?→v{y[1] - 127}"]
    assert result.stdout.split("scored: ", 1)[1].split()[:2] == words


def test_show_test_split_of_a_change():
    result = run("show", "selective-copying", "--setting", "num_tokens_to_copy=32", "-n", "1",
                 "--split", "test")
    assert result.exit_code == 0, result.output
    assert "[0] 32 scored" in result.stdout and result.stdout.count("?→d") == 32


def test_export_writes_arrays_and_meta(tmp_path):
    out = tmp_path / "m.data"
    result = run("export", "memorization", "--setting", "vocab_size=512", "--split", "test",
                 "--seed", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.exists()                                # no .npz appended to the name
    with np.load(out) as f:
        inputs, targets, meta = f["inputs"], f["targets"], json.loads(str(f["meta"]))
    task = get_task("memorization")
    data = generate(task, "vocab_size=512", "test", seed=5)
    assert np.array_equal(inputs, data.inputs) and np.array_equal(targets, data.targets)
    assert inputs.dtype == np.int64 and inputs.shape == (1280, 32)
    assert {k: meta[k] for k in ("task", "version", "setting", "split", "seed", "hash")} == {
        "task": "memorization", "version": task.version, "setting": "vocab_size=512",
        "split": "test", "seed": 5, "hash": task.setting("vocab_size=512").hash}
    assert meta["vocabulary"] == {"keys": [0, 255], "values": [255, 511], "insert": 511}
    assert meta["data_hash"] == data.hash and meta["ignore_index"] == IGNORE


@pytest.mark.parametrize("args,message", [
    (["show", "recall"], "unknown task 'recall'"),
    (["show", "compression", "--setting", "seq_len=33"], "no setting 'seq_len=33'"),
    (["show", "compression", "--split", "valid"], "'valid' is not one of"),
    (["show", "compression", "-n", "0"], "-n"),
    (["show", "compression", "--seed", "-3"], "--seed"),
    (["export", "compression", "--setting", "baseline", "--split", "train"], "--out"),
    (["export", "compression", "--setting", "baseline", "--split", "train",
      "--out", "/nonexistent-dir/x.npz"], "does not exist"),
    (["export", "nope", "--setting", "baseline", "--split", "train", "--out", "x.npz"],
     "unknown task"),
])
def test_errors_are_one_line_with_exit_code_2(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_show_piped_keeps_each_line_whole():
    result = run("show", "in-context-recall", "-n", "1")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.endswith("12800 sequences of 127 tokens")       # not cut at 80 columns


def test_every_bundled_vocabulary_layout_passes_its_check():
    from madbench.tasks import all_tasks, vocabulary_layout
    for task in all_tasks():
        for setting in task.settings():
            assert vocabulary_layout(task, setting) == task.vocabulary(setting.params)


@pytest.mark.parametrize("layout", [{"none": None}, ["data", 0, 4], {"data": [0, 99]},
                                    {"pad": 4}, {"data": [2, 1]}])
@pytest.mark.parametrize("command", [("show", "toy-layout"), ("export", "toy-layout",
                                                              "--setting", "baseline",
                                                              "--split", "test")])
def test_a_malformed_vocabulary_layout_is_one_line_naming_the_task(register_plugin, tmp_path,
                                                                    layout, command):
    """A plugin task whose vocabulary() returned {'none': None} or a list made `tasks show`
    print `TypeError: int() argument must be ...` (exit 1, no task named); a range past the
    vocabulary was shown as if it held tokens."""
    import madbench
    from madbench.tasks import Task

    class Layout(Task):
        name = "toy-layout"
        baseline = {"vocab_size": 4, "seq_len": 8, "num_train_examples": 8,
                    "num_test_examples": 4}

        def vocabulary(self, params):
            return layout

        def sample(self, params, num, split, rng):
            x = rng.integers(0, 4, (num, 8))
            return x, x.copy()

    class Plugin:
        @madbench.hookimpl
        def madbench_register_tasks(self, register):
            register("toy-layout", Layout())

    register_plugin(Plugin(), "toy-layout-plugin")
    out = ["--out", str(tmp_path / "x.npz")] if command[0] == "export" else []
    result = run(*command, *out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == (f"Error: task 'toy-layout' (baseline): vocabulary() returned "
                             f"{layout!r}; expected a dict of name -> token id or [start, "
                             "stop) range within [0, 4)\n")
    assert not (tmp_path / "x.npz").exists()
