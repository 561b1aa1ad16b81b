"""``--group-size``: a setting's lr x weight-decay configurations split into smaller groups, so
that one group fits a short time limit. The runs must be the same runs: the same keys, and
(on the graphed engine, fp32 on the CPU) the same numbers as trained in one group."""
import pytest
from click.testing import CliRunner

import madbench
from madbench.architecture import resolve_architecture
from madbench.cli import main
from madbench.errors import UsageError
from madbench.protocol import get_protocol
from madbench.store import ResultsStore
from madbench.sweep import group_jobs, plan
from madbench.tasks import get_task
from madbench.time_limit import TimeLimit

TINY = {"epochs": "1", "max_train": "64", "max_test": "32", "lrs": "1e-3,5e-4",
        "weight_decays": "0,0.1"}


def test_groups_are_cut_in_grid_order_and_the_run_keys_do_not_change():
    spec = resolve_architecture("hyena")
    tasks = [get_task("memorization"), get_task("compression")]
    protocol = get_protocol("quick")                       # 3 lrs x 2 weight decays
    whole = plan(spec, tasks, protocol, [0, 1], "baseline")
    split = plan(spec, tasks, protocol, [0, 1], "baseline", group_size=4)
    assert [job.key for job in split] == [job.key for job in whole]
    assert [len(g) for g in group_jobs(whole)] == [6] * 4  # 2 tasks x 2 seeds
    groups = group_jobs(split)
    assert [len(g) for g in groups] == [4, 2] * 4
    grid = [(1e-4, 0.0), (1e-4, 0.1), (5e-4, 0.0), (5e-4, 0.1), (1e-3, 0.0), (1e-3, 0.1)]
    assert [(j.lr, j.weight_decay) for j in groups[0]] == grid[:4]
    assert [(j.lr, j.weight_decay) for j in groups[1]] == grid[4:]
    assert {(j.task.name, j.seed) for j in groups[0] + groups[1]} == {("memorization", 0)}
    assert [len(g) for g in group_jobs(plan(spec, tasks, protocol, [0], "baseline", 1))] == [1] * 12


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_a_bad_group_size_is_refused_before_anything_trains(tmp_path, bad):
    with pytest.raises(UsageError, match="--group-size takes a whole number"):
        madbench.evaluate("hyena", tasks=["memorization"], protocol="smoke",
                          run_dir=tmp_path / "runs", group_size=bad)
    assert not (tmp_path / "runs").exists()


def test_the_cli_refuses_group_size_zero_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["eval", "--arch", "hyena", "--preset", "smoke",
                                      "--group-size", "0", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--group-size" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_split_groups_train_the_same_numbers_as_one_group(tmp_path):
    """Graphed engine on the CPU (fp32, no CUDA graphs): the four configurations trained as
    one group, then as groups of one and of three, store the same losses and accuracies."""
    def sweep(name, group_size):
        kwargs = dict(tasks=["memorization"], protocol="smoke", overrides=TINY,
                      settings="baseline", engine="graphed", run_dir=tmp_path / name)
        if group_size:
            kwargs["group_size"] = group_size
        madbench.evaluate("hyena", **kwargs)
        records = ResultsStore(tmp_path / name).records()
        assert {r["engine"] for r in records} == {"graphed-eager"}    # no CUDA graphs on a CPU
        return {(r["lr"], r["weight_decay"]): (r["loss"], r["accuracy"]) for r in records}

    whole = sweep("whole", None)
    assert len(whole) == 4
    assert sweep("ones", 1) == whole
    assert sweep("threes", 3) == whole


def test_a_stop_where_no_group_fits_points_to_group_size():
    limit = TimeLimit(50, lambda group: 10.0 * len(group), clock=lambda: 0.0)
    message = str(limit.stopped([["a"] * 6], 6, 6, "group", "runs/x"))
    assert message.endswith("--group-size below 6 trains fewer of its configurations at a "
                            "time")
    one = str(limit.stopped([["a"] * 6, ["b"]], 7, 7, "group", "runs/x"))   # 10 s fits: no hint
    assert "group-size" not in one
    runs = str(TimeLimit(5, lambda run: 10.0, clock=lambda: 0.0).stopped(
        [["a", "b"]], 1, 1, "run", "runs/y"))                 # a scaling run is not a group
    assert "no run fitted" in runs and "group-size" not in runs
