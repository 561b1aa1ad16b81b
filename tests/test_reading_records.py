"""Reading a run directory: a record file without the shape of a record is unreadable (eval
moves it aside and trains its run again, the other commands skip it), only the commands that
train change a run directory, and a run stored in several directories given counts once."""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import eval_record, scaling_record

from madbench.cli import main
from madbench.store import QUARANTINE, ResultsStore, encode_row, load_records, write_table

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
    elif how == "part text":
        i = table.column_names.index("part")
        table = table.set_column(i, "part", pa.array(["first"]))
    else:                                            # protocol: a JSON list, not a mapping
        i = table.column_names.index("protocol")
        table = table.set_column(i, "protocol", pa.array(["[1,2]"]))
    pq.write_table(table, path)


@pytest.mark.parametrize("how, why", [("no accuracy", "no 'accuracy' field"),
                                      ("null loss", "'loss' is null"),
                                      ("part text", "'part' is str 'first', not int"),
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
    good = scaling_record(run_key="a" * 24, loss=1.0, protocol={"seq_len": 16})
    store.append(good)
    write_table(pa.Table.from_pylist([encode_row({**good, "run_key": "b" * 24,
                                                  "protocol": [1, 2]})]), store.path("b" * 24))
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


def scaling_dir(path, **records):
    """A run directory of hand-made scaling records (run key -> fields), written as they are
    (not through ``append``, which refuses a misshapen one)."""
    store = ResultsStore(path)
    for key, fields in records.items():
        row = encode_row(scaling_record(**{"run_key": key, "arch": "x", "params": 10,
                                           "tokens": 20, "flops": 1200.0, "budget": 1200.0,
                                           "loss": 2.0, **fields}))
        write_table(pa.Table.from_pylist([row]), store.path(key))
    return path


def test_a_scaling_record_with_a_text_loss_or_without_a_field_is_skipped(tmp_path, capsys):
    """A loss stored as text ("nan", "abc") used to be read as a diverged run, and a record
    without `params` ended the read in a KeyError or "missing column(s)": each is now skipped
    with a warning, as any record without the shape of its kind."""
    from madbench.scaling.table import read_runs
    run_dir = scaling_dir(tmp_path / "runs", **{"a" * 24: {}, "b" * 24: {"loss": "nan"},
                                                "c" * 24: {"loss": "abc"},
                                                "d" * 24: {"params": None}})
    assert [r["run_key"] for r in read_runs(run_dir)] == ["a" * 24]
    err = capsys.readouterr().err
    assert f"{'b' * 24}.parquet: not a record ('loss' is str 'nan', not float); skipped" in err
    assert f"{'c' * 24}.parquet: not a record ('loss' is str 'abc', not float); skipped" in err
    assert f"{'d' * 24}.parquet: not a record ('params' is null, not int); skipped" in err
    assert "diverged" not in err


def test_each_reader_takes_its_own_kind_from_a_mixed_run_directory(tmp_path, capsys):
    """A directory holding both kinds (written before each command refused the other's):
    `report` refused it whole while `scaling fit` silently took its scaling records. One rule
    now (records.of_kind): each takes its own, saying how many others it skipped."""
    from madbench.scaling.table import read_runs
    run_dir = scaling_dir(tmp_path / "runs", **{"a" * 24: {}})
    ResultsStore(run_dir).append(eval_record(run_key="e" * 24, accuracy=0.5))
    assert [r["run_key"] for r in load_records([run_dir])] == ["e" * 24]
    assert "1 record(s) not of 'madbench eval' skipped" in capsys.readouterr().err
    assert [r["run_key"] for r in read_runs(run_dir)] == ["a" * 24]
    assert "1 record(s) not of 'madbench scaling run' skipped" in capsys.readouterr().err


def test_leaderboard_submit_takes_the_eval_records_of_a_mixed_run_directory(stored, tmp_path):
    """It read every record and ended in `Error: KeyError: 'protocol_hash'` (a scaling
    record's) when the directory's first record was an eval one."""
    run_dir = copy(stored, tmp_path)
    scaling_dir(run_dir, **{"f" * 24: {}})          # sorted last: the first record is eval's
    out = tmp_path / "x.json"
    result = cli("leaderboard", "submit", run_dir, "--name", "x", "--out", out, "--audit-dim",
                 "32")
    assert result.exit_code == 0, result.output
    assert "1 record(s) not of 'madbench eval' skipped" in result.stderr
    assert len(json.loads(out.read_text())["runs"]) == 2

def test_a_directory_of_the_other_kind_gets_one_message_from_every_command(tmp_path):
    """Three messages said it three ways ("its records are not 'madbench eval' records (a
    'madbench scaling run' directory? ...", "... not 'madbench scaling run' ones; give a run
    directory of its own"); now each command says it one way."""
    scaling = scaling_dir(tmp_path / "scaling", **{"a" * 24: {}})
    evals = tmp_path / "eval"
    ResultsStore(evals).append(eval_record(run_key="e" * 24))
    theirs = (f"its records are 'madbench scaling run' records, not 'madbench eval' ones "
              f"('madbench scaling fit {scaling}' reads them)")
    ours = (f"its records are 'madbench eval' records, not 'madbench scaling run' ones "
            f"('madbench report {evals}' reads them)")
    for command, expected in [
            (["report", scaling], f"{scaling}: {theirs}"),
            (["compare", scaling], f"{scaling}: {theirs}"),
            ([*eval_args(scaling), "--dry-run"], f"--run-dir {scaling}: {theirs}"),
            (["leaderboard", "submit", scaling, "--name", "x", "--out", tmp_path / "x.json"],
             f"RUN_DIR {scaling}: {theirs}"),
            (["scaling", "fit", evals], f"{evals}: {ours}"),
            (["scaling", "run", "--arch", "hyena", "--budgets", "1e8", "--sizes", "16x1",
              "--run-dir", evals, "--dry-run"], f"--run-dir {evals}: {ours}")]:
        result = cli(*command)
        assert (result.exit_code, result.stderr) == (2, f"Error: {expected}\n"), command


def test_a_directory_given_twice_is_read_warned_about_and_listed_once(stored, tmp_path):
    """`report --html out.html r r` listed r twice among the run directories, and an
    unreadable record in it was warned about once per mention."""
    run_dir = copy(stored, tmp_path)
    (run_dir / "records" / JUNK).write_text("junk")
    page = tmp_path / "out.html"
    result = cli("report", "--html", page, run_dir, run_dir, f"{run_dir}/.")
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"{JUNK}: unreadable") == 1
    assert f"run directories: <code>{run_dir}</code></p>" in page.read_text()
    for command in (["compare", run_dir, run_dir], ["report", run_dir, f"{run_dir}/."]):
        result = cli(*command)
        assert result.exit_code == 0 and result.stderr.count(f"{JUNK}: unreadable") == 1
