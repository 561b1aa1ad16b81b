"""``madbench.evaluate``: the library call behind ``madbench eval`` gives the same result document
as the command, resumes from the run directory, and ``import madbench`` stays cheap."""
import json
import subprocess
import sys

from click.testing import CliRunner

import madbench
from madbench.cli import main
from madbench.errors import UsageError

OVERRIDES = {"epochs": "1", "lrs": "0.001,0.0005", "max_train": "32", "max_test": "16"}


def test_the_library_and_the_command_give_one_document(tmp_path):
    results = madbench.evaluate("mh-attention", tasks=["memorization"], protocol="smoke",
                                overrides=OVERRIDES, run_dir=tmp_path, device="cpu",
                                engine="plain")
    assert isinstance(results, madbench.Results) and results.runs == 2
    assert set(results.task_scores) == {"memorization"}
    args = ["eval", "--arch", "mh-attention", "--tasks", "memorization", "--preset", "smoke",
            "--run-dir", str(tmp_path), "--device", "cpu", "--engine", "plain",
            "--format", "json", "--no-progress"]
    args += [a for k, v in OVERRIDES.items() for a in ("--set", f"{k}={v}")]
    out = CliRunner().invoke(main, args)        # every run is stored: nothing trains again
    assert out.exit_code == 0, out.output
    assert "nothing to train" in out.output
    assert json.loads(out.stdout) == json.loads(json.dumps(results.to_dict()))


def test_configs_select_part_of_the_grid_and_arguments_fail_before_training(tmp_path):
    evaluation = madbench.prepare("mh-attention", tasks="memorization", protocol="smoke",
                                  overrides=OVERRIDES, configs=[(0.0005, 0.0)],
                                  run_dir=tmp_path, device="cpu")
    assert [(j.lr, j.weight_decay) for j in evaluation.jobs] == [(0.0005, 0.0)]
    assert not (tmp_path / "records").exists()
    for bad in ({"seeds": [-1]}, {"tasks": "no-such-task"}, {"precision": "bf16"}):
        try:
            madbench.prepare("mh-attention", protocol="smoke", run_dir=tmp_path, device="cpu",
                             **bad)
        except UsageError:
            pass
        else:
            raise AssertionError(f"{bad} was accepted")
    assert not (tmp_path / "records").exists()


def test_import_madbench_imports_no_torch():
    code = "import sys, madbench; print('torch' in sys.modules, callable(madbench.evaluate))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]


def test_an_indexed_cpu_is_not_a_placement():
    """torch takes cpu:1 (and stored it as each record's device); there is one cpu."""
    from madbench.evaluator import resolve_placement
    assert resolve_placement("cpu").device == "cpu"
    for device in ("cpu:0", "cpu:1"):
        try:
            resolve_placement(device)
        except UsageError as exc:
            assert str(exc) == f"--device {device!r}: the cpu takes no index (use --device cpu)"
        else:
            raise AssertionError(f"{device} was accepted")
