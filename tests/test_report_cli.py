"""report, compare and plot read stored records of several architectures."""
import json

import pytest
from click.testing import CliRunner

from madbench.cli import main
from madbench.store import ResultsStore

FAST = ["--tasks", "memorization", "--preset", "smoke", "--set", "epochs=1", "--no-progress"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for arch in ("mh-attention", "mh-gated-linear-attention"):
        res = CliRunner().invoke(main, ["eval", "--arch", arch, *FAST,
                                        "--run-dir", str(root / arch)])
        assert res.exit_code == 0, res.output
    return root


def test_compare_shows_each_architecture_with_its_stored_score(two_runs):
    dirs = [str(two_runs / a) for a in ("mh-attention", "mh-gated-linear-attention")]
    res = CliRunner().invoke(main, ["compare", *dirs, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    for d, arch in zip(dirs, ("mh-attention", "mh-gated-linear-attention")):
        (record,) = ResultsStore(d).records()
        assert doc[f"{arch} [smoke]"]["tasks"]["memorization"] == record["accuracy"]
    table = CliRunner().invoke(main, ["compare", *dirs]).output
    assert "mean of 1 task" in table and "MAD score" not in table and "mh-attention" in table


def test_plot_writes_a_png(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "scores.png"
    res = CliRunner().invoke(main, ["plot", str(two_runs / "mh-attention"),
                                    str(two_runs / "mh-gated-linear-attention"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_directory_without_records_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "run directory" in res.output
