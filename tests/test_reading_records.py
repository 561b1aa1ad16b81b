"""Reading a run directory: a record file without the shape of a record is unreadable (eval
moves it aside and trains its run again, the other commands skip it), only the commands that
train change a run directory, and a run stored in several directories given counts once."""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import eval_record

from madbench.cli import main
from madbench.store import QUARANTINE, ResultsStore, load_records

TINY = ["--preset", "smoke", "--set", "epochs=1", "--set", "lrs=0.001,0.0005", "--set",
        "weight_decays=0.0", "--set", "max_train=32", "--set", "max_test=16", "--device", "cpu",
        "--engine", "plain", "--no-progress"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def eval_args(run_dir):
    return ["eval", "--arch", "mh-attention", "--tasks", "memorization", "--run-dir", run_dir,
            *TINY]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A run directory of two runs (memorization, two learning rates), to copy."""
    run_dir = tmp_path_factory.mktemp("stored") / "run"
    result = cli(*eval_args(run_dir))
    assert result.exit_code == 0, result.output
    return run_dir


def copy(stored, tmp_path, name="run"):
    return shutil.copytree(stored, tmp_path / name)


def json_runs(*run_dirs):
    result = cli("report", *run_dirs, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]["memorization"]["runs"]


def misshape(path, how):
    """Rewrite the record file ``path`` as valid Parquet of the wrong shape."""
    table = pq.read_table(path)
    if how == "no accuracy":
        table = table.drop_columns(["accuracy"])
    elif how == "null loss":
        i = table.column_names.index("loss")
        table = table.set_column(i, "loss", pa.array([None], pa.float64()))
    else:                                            # protocol: a JSON list, not a mapping
        i = table.column_names.index("protocol")
        table = table.set_column(i, "protocol", pa.array(["[1,2]"]))
    pq.write_table(table, path)


@pytest.mark.parametrize("how, why", [("no accuracy", "no 'accuracy' field"),
                                      ("null loss", "'loss' is null"),
                                      ("protocol list", "'protocol' is list")])
def test_a_record_of_the_wrong_shape_is_skipped_by_readers_and_retrained_by_eval(
        stored, tmp_path, how, why):
    """It used to end `report`, `compare` and `eval` in `Error: KeyError: 'accuracy'` (or a
    TypeError), eval after training and before writing --output, every time."""
    run_dir = copy(stored, tmp_path)
    bad = sorted((run_dir / "records").glob("*.parquet"))[0]
    original = pq.read_table(bad).to_pylist()[0]
    misshape(bad, how)
    for command in (["report", run_dir], ["compare", run_dir, stored]):
        result = cli(*command)
        assert result.exit_code == 0, result.output
        assert f"{bad}: not a record ({why}" in result.stderr and "skipped" in result.stderr
    assert json_runs(run_dir) == 1                   # the other run only
    assert bad.exists() and not (run_dir / QUARANTINE).exists()    # reading moved nothing

    out = tmp_path / "out.json"
    result = cli(*eval_args(run_dir), "--output", out)
    assert result.exit_code == 0, result.output
    assert "its run will be trained again" in result.stderr and "trained 1 run" in result.stderr
    assert [p.name for p in (run_dir / QUARANTINE).iterdir()] == [bad.name]
    assert json.loads(out.read_text())["results"]["memorization"]["runs"] == 2
    again = ResultsStore(run_dir).record(original["run_key"])
    assert (again["accuracy"], again["loss"]) == (original["accuracy"], original["loss"])
    assert json_runs(run_dir) == 2


def test_a_scaling_record_with_a_list_for_a_mapping_is_skipped(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    good = {"run_key": "a" * 24, "kind": "scaling", "loss": 1.0, "protocol": {"seq_len": 16}}
    store.append(good)
    store.append({**good, "run_key": "b" * 24, "protocol": [1, 2]})
    assert store.records() == [good]
    assert "'protocol' is list" in capsys.readouterr().err


JUNK = "0123456789abcdef01234567.parquet"


@pytest.mark.parametrize("command", [
    ["scaling", "validate", "{dir}"], ["scaling", "fit", "{dir}"],
    ["scaling", "state-optimal", "{dir}"],
    ["scaling", "frontier", "{dir}", "--out", "{tmp}/frontiers"],
    ["leaderboard", "submit", "{dir}", "--name", "x", "--out", "{tmp}/x.json"],
    ["report", "{dir}"], ["compare", "{dir}"]])
def test_reading_commands_skip_an_unreadable_record_and_move_nothing(tmp_path, command):
    """`scaling validate`, `fit`, `state-optimal`, `frontier` and `leaderboard submit` used to
    move it to quarantine/ ("its run will be trained again") though they train nothing."""
    run_dir = tmp_path / "run"
    (run_dir / "records").mkdir(parents=True)
    (run_dir / "records" / JUNK).write_text("junk")
    result = cli(*[a.format(dir=run_dir, tmp=tmp_path) for a in command])
    assert "Traceback" not in result.output and result.exit_code == 2, result.output
    assert f"{JUNK}: unreadable" in result.stderr and "skipped" in result.stderr
    assert "trained again" not in result.stderr
    assert (run_dir / "records" / JUNK).read_text() == "junk"
    assert not (run_dir / QUARANTINE).exists()


def test_a_run_counts_once_however_many_times_its_directory_is_given(stored, tmp_path):
    """`report r r` counted every run twice ("4 runs" of 2)."""
    other = copy(stored, tmp_path, "copy")
    assert json_runs(stored) == 2
    assert json_runs(stored, stored) == 2
    assert json_runs(stored, other) == 2                # a copy: the same run keys
    assert "metric accuracy, 2 runs" in cli("report", stored, f"{stored}/.").stdout


def test_load_records_reads_a_run_key_from_the_first_directory_that_has_it(tmp_path):
    first, second = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
    first.append(eval_record(run_key="k1", accuracy=0.5))
    second.append(eval_record(run_key="k1", accuracy=0.9))
    second.append(eval_record(run_key="k2", accuracy=0.1))
    rows = load_records([tmp_path / "a", tmp_path / "b", tmp_path / "a"])
    assert sorted((r["run_key"], r["accuracy"]) for r in rows) == [("k1", 0.5), ("k2", 0.1)]
