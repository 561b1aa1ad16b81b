"""``--group-size``: a setting's lr x weight-decay configurations split into smaller groups, so
that one group fits a short time limit. The runs must be the same runs: the same keys, and
(on the graphed engine, fp32 on the CPU) the same numbers as trained in one group."""
import pytest
from click.testing import CliRunner

import madbench
from madbench.architecture import resolve_architecture
from madbench.cli import main
from madbench.errors import UsageError
from madbench.executors import LocalExecutor, RayExecutor
from madbench.protocol import get_protocol
from madbench.store import ResultsStore
from madbench.sweep import group_jobs, plan, wall_seconds
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


def split_sweep(run_dir, group_size, executor="local", events=None):
    """Hyena's memorization baseline, four configurations, on the graphed engine (fp32 on the
    CPU, no CUDA graphs): (lr, weight decay) -> (loss, accuracy) as stored."""
    kwargs = dict(tasks=["memorization"], protocol="smoke", overrides=TINY,
                  settings="baseline", engine="graphed", run_dir=run_dir, executor=executor)
    if group_size:
        kwargs["group_size"] = group_size
    if events is not None:
        kwargs["progress"] = lambda event, info: events.append((event, info))
    madbench.evaluate("hyena", **kwargs)
    records = ResultsStore(run_dir).records()
    assert {r["engine"] for r in records} == {"graphed-eager"}        # no CUDA graphs on a CPU
    return {(r["lr"], r["weight_decay"]): (r["loss"], r["accuracy"]) for r in records}


@pytest.fixture(scope="module")
def whole_group(tmp_path_factory):
    """The four configurations trained as one group, in this process."""
    whole = split_sweep(tmp_path_factory.mktemp("whole"), None)
    assert len(whole) == 4
    return whole


def test_split_groups_train_the_same_numbers_as_one_group(tmp_path, whole_group):
    """Groups of one and of three store the same losses and accuracies as one group of four."""
    assert split_sweep(tmp_path / "ones", 1) == whole_group
    assert split_sweep(tmp_path / "threes", 3) == whole_group


def test_records_name_their_part_and_a_split_setting_counts_each_part_once(tmp_path):
    """Groups of three over four configurations: two parts (three runs and one), each record
    named with its part and carrying its part's time; the setting's time is the two parts'
    sum, where the whole group's records would be counted once."""
    split_sweep(tmp_path / "threes", 3)
    records = ResultsStore(tmp_path / "threes").records()
    grid = [(1e-3, 0.0), (1e-3, 0.1), (5e-4, 0.0), (5e-4, 0.1)]      # TINY's, in plan order
    part_of = {config: i // 3 for i, config in enumerate(grid)}
    assert {(r["lr"], r["weight_decay"]): r["part"] for r in records} == part_of
    first = {r["seconds"] for r in records if r["part"] == 0}
    second = {r["seconds"] for r in records if r["part"] == 1}
    assert len(first) == len(second) == 1                     # a part's runs share its time
    assert wall_seconds(records) == pytest.approx(first.pop() + second.pop())
    whole = [{key: value for key, value in r.items() if key != "part"} for r in records]
    assert wall_seconds(whole) == max(r["seconds"] for r in records)  # no part: one group


def test_worker_processes_train_the_parts_of_a_split_group_apart(tmp_path, whole_group):
    """Two CPU worker processes take the two parts of the group (two configurations each) as
    separate pieces of work, and store what one group in this process stores."""
    events = []
    workers = LocalExecutor(devices=["cpu", "cpu"], threads_per_worker=1)
    assert split_sweep(tmp_path / "workers", 2, workers, events) == whole_group
    handed = [info for event, info in events if event == "run"]
    assert len(handed) == 2, handed                              # two parts, not four runs


def test_ray_trains_the_parts_of_a_split_group(tmp_path, whole_group):
    ray = pytest.importorskip("ray", reason="ray is not installed (madbench[ray])")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert split_sweep(tmp_path / "ray", 2, RayExecutor()) == whole_group
    finally:
        if started:
            ray.shutdown()


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
