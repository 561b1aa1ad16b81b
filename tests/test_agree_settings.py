"""benchmarks/agree_settings.py: per-setting agreement of two protocols' run directories,
checked against ranks and differences worked out by hand; directories that hold no single
group, or the same protocol twice, or other code of the architecture, are refused in one line;
a setting whose sweep is not complete (a part of a group) is left out and named, and so is an
architecture missing from a setting that others have."""
import subprocess
import sys
from pathlib import Path

import pytest

from madbench.store import ResultsStore

from helpers import eval_record

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "agree_settings.py"
# best of sweep per (arch, setting) under the two protocols; each also has a worse run
QUICK = {"a": {"s1": 0.9, "s2": 0.4}, "b": {"s1": 0.7, "s2": 0.5},
         "c": {"s1": 0.6, "s2": 0.6}, "d": {"s1": 0.1, "s2": 0.2}}
PAPER = {"a": {"s1": 0.96, "s2": 0.5}, "b": {"s1": 0.5, "s2": 0.6},
         "c": {"s1": 0.8, "s2": 0.7}, "d": {"s1": 0.2}}        # d: s1 only


def write(root, arch, protocol, scores, arch_hash=None, version="v1", protocol_name=""):
    store = ResultsStore(root / arch)
    for setting, accuracy in scores.items():
        for lr, acc in ((1e-3, accuracy), (1e-4, accuracy / 2)):
            store.append(eval_record(
                run_key=f"{arch}{protocol}{setting}{lr:g}".replace("-", "m").ljust(24, "x"),
                task="memorization", setting=setting, seed=0, lr=lr, accuracy=acc, loss=1.0,
                arch_name=arch, arch_hash=arch_hash or f"h-{arch}", protocol_hash=protocol,
                protocol_name=protocol_name, madbench_version=version))


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def agreement_of(*args):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from agree_settings import agreement
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return agreement(*args)



@pytest.fixture
def dirs(tmp_path):
    for arch in "abcd":
        write(tmp_path / "quick", arch, "pq", QUICK[arch])
        write(tmp_path / "paper", arch, "pp", PAPER[arch])
    return tmp_path / "quick", tmp_path / "paper"


def test_per_setting_and_per_task_agreement_against_hand_computed_values(dirs):
    result = agreement_of(*dirs, list("abcd"))
    s1, s2 = result["settings"]["memorization/s1"], result["settings"]["memorization/s2"]
    # s1: ranks a>b>c>d against a>c>b>d: d^2 = 0+1+1+0, 1 - 6*2/(4*15) = 0.8
    assert s1["architectures"] == 4 and s1["spearman"] == pytest.approx(0.8)
    assert s1["mean_abs_diff"] == pytest.approx((0.06 + 0.2 + 0.2 + 0.1) / 4)
    assert s1["mean_diff"] == pytest.approx((0.06 - 0.2 + 0.2 + 0.1) / 4)
    # s2: d has no paper run there: a, b, c ranked c>b>a on both sides
    assert s2["names"] == ["a", "b", "c"] and s2["spearman"] == pytest.approx(1.0)
    assert s2["mean_diff"] == pytest.approx(0.1)
    # the task row uses only the settings every architecture has: s1
    task = result["tasks"]["memorization"]
    assert task["settings"] == ["s1"] and task["spearman"] == pytest.approx(0.8)
    # d's absence from s2 is named, with the side that lacks it
    assert result["missing"] == [f"d: memorization/s2, not trained under {dirs[1]}"]


def test_the_command_prints_the_table_and_json(dirs):
    proc = run(*dirs, "a", "b", "c", "d")
    assert proc.returncode == 0, proc.stderr
    assert "| memorization/s1 | 4 | +0.80 | 0.140 | +0.040 |" in proc.stdout.splitlines()
    lines = proc.stdout.splitlines()
    assert "| memorization (1) | 4 | +0.80 | 0.140 | +0.040 |" in lines
    at = lines.index("memorization/s1:")          # its scores, ranked a>b>c>d and a>c>b>d
    assert lines[at + 4:at + 8] == ["| a | 0.900 (1st) | 0.960 (1st) |",
                                    "| b | 0.700 (2nd) | 0.500 (3rd) |",
                                    "| c | 0.600 (3rd) | 0.800 (2nd) |",
                                    "| d | 0.100 (4th) | 0.200 (4th) |"]
    assert proc.stdout.splitlines()[-1] == ("Missing from a setting others have: d: "
                                            f"memorization/s2, not trained under {dirs[1]}.")
    assert run(*dirs, "a", "b", "--json").stdout.lstrip().startswith("{")


def test_bad_directories_are_refused_in_one_line(dirs, tmp_path):
    quick, paper = dirs
    write(tmp_path / "mixed", "a", "pp", {"s1": 0.5}, version="v1")
    write(tmp_path / "mixed", "a", "pp", {"s9": 0.5}, version="v2")     # two run versions
    write(tmp_path / "other", "a", "pp", {"s1": 0.5}, arch_hash="h-changed")
    for args, message in [((quick, paper, "zz"), "no such run directory"),
                          ((quick, quick, "a"), "the same protocol"),
                          ((quick, tmp_path / "mixed", "a"), "2 groups"),
                          ((quick, tmp_path / "other", "a"), "different code")]:
        proc = run(*args)
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert message in proc.stderr


def test_a_setting_whose_sweep_is_not_complete_is_left_out_and_named(dirs):
    quick, paper = dirs
    # c's s3: both (lr) runs under quick, one of the two under paper (a part of a group)
    store = ResultsStore(quick / "c")
    for lr in (1e-3, 1e-4):
        store.append(eval_record(run_key=f"cq-s3-{lr:g}".replace("-", "m").ljust(24, "x"),
                                 task="memorization", setting="s3", seed=0, lr=lr,
                                 accuracy=0.3, loss=1.0, arch_name="c", arch_hash="h-c",
                                 protocol_hash="pq", madbench_version="v1"))
    ResultsStore(paper / "c").append(eval_record(
        run_key="cps3".ljust(24, "x"), task="memorization", setting="s3", seed=0, lr=1e-3,
        accuracy=0.99, loss=1.0, arch_name="c", arch_hash="h-c", protocol_hash="pp",
        madbench_version="v1"))
    result = agreement_of(quick, paper, list("abcd"))
    assert "memorization/s3" not in result["settings"]
    assert result["left_out"] == [f"c under {paper}: memorization/s3 seed 0: 1 of 2 runs"]
    assert not any("s3" in m for m in result["missing"])     # named once, as left out
    assert result["settings"]["memorization/s1"]["spearman"] == pytest.approx(0.8)
    out = run(quick, paper, "a", "b", "c").stdout
    assert out.splitlines()[-1] == (f"Left out, their sweeps not complete: c under {paper}: "
                                    "memorization/s3 seed 0: 1 of 2 runs.")


def test_a_preset_s_grid_decides_completeness_not_the_runs_present(tmp_path):
    from madbench.protocol import PRESETS
    # records that name the quick and paper presets (their hashes) and hold two of the
    # presets' six (lr, wd) pairs: every cell is a part, none is compared
    for name, scores in (("quick", QUICK["a"]), ("paper", PAPER["a"])):
        write(tmp_path / name, "a", PRESETS[name].hash, scores, protocol_name=name)
    result = agreement_of(tmp_path / "quick", tmp_path / "paper", ["a"])
    assert result["settings"] == {}
    assert f"a under {tmp_path / 'paper'}: memorization/s2 seed 0: 2 of 6 runs" \
        in result["left_out"] and len(result["left_out"]) == 4
    proc = run(tmp_path / "quick", tmp_path / "paper", "a")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: no setting is trained whole on both sides (4 left "
                                  "out, their sweeps not complete: a under ")


def test_a_setting_trained_on_other_seeds_on_each_side_is_named_missing(dirs):
    quick, paper = dirs
    # d's s2: seed 0 under quick (the fixture), seed 1 under paper: no seed on both sides
    for lr, acc in ((1e-3, 0.9), (1e-4, 0.1)):
        ResultsStore(paper / "d").append(eval_record(
            run_key=f"dps2s1{lr:g}".replace("-", "m").ljust(24, "x"), task="memorization",
            setting="s2", seed=1, lr=lr, accuracy=acc, loss=1.0, arch_name="d",
            arch_hash="h-d", protocol_hash="pp", madbench_version="v1"))
    result = agreement_of(quick, paper, list("abcd"))
    assert result["missing"] == ["d: memorization/s2, no seed trained on both sides"]
    assert result["settings"]["memorization/s2"]["names"] == ["a", "b", "c"]


def test_first_grid_scores_first_by_its_pairs_alone(dirs):
    quick, paper = dirs
    # with only lr 1e-4 (each setting's worse run, half the best), FIRST's best halves
    result = agreement_of(quick, paper, list("abcd"), {(1e-4, 0.0)})
    s1 = result["settings"]["memorization/s1"]
    assert [first for first, _ in s1["scores"]] == pytest.approx([0.45, 0.35, 0.3, 0.05])
    assert s1["mean_diff"] == pytest.approx((0.51 + 0.15 + 0.5 + 0.15) / 4)
    assert s1["spearman"] == pytest.approx(0.8)            # halving keeps quick's order
    assert result["first"] == f"{quick} (0.0001:0 only)"
    # a smaller grid of one protocol against its whole grid: the same directories
    same = agreement_of(paper, paper, list("abcd"), {(1e-4, 0.0)})["settings"]
    assert same["memorization/s1"]["spearman"] == pytest.approx(1.0)
    assert same["memorization/s1"]["mean_diff"] == pytest.approx((0.48 + 0.25 + 0.4 + 0.1) / 4)
    # a pair outside the grid has no runs to score: refused in one line, as is a bad pair
    proc = run(paper, paper, "a", "--first-grid", "0.01:0")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr == (f"error: {paper / 'a'}: --first-grid names 0.01:0, not in its "
                           "protocol's grid (0.0001:0,0.001:0)\n")
    proc = run(paper, paper, "a", "--first-grid", "0.01")
    assert proc.returncode == 2 and "'0.01' is not LR:WD" in proc.stderr
    proc = run(quick, paper, "a", "b", "c", "d", "--first-grid", "0.0001:0")
    assert proc.returncode == 0, proc.stderr
    assert "| memorization/s1 | 4 | +0.80 | 0.328 | +0.328 |" in proc.stdout.splitlines()
