"""`madbench leaderboard agree`: rank correlation, mean absolute and mean signed difference of
two boards' scores over the architectures on both, checked against hand-computed values; tasks
an entry does not cover are left out; bad board names are one-line usage errors."""
import copy
import json

from click.testing import CliRunner

from madbench.cli import main
from madbench.leaderboard.agree import OVERALL, agreement, agreement_table

from helpers import as_board_entry

TASKS = ["in-context-recall", "noisy-in-context-recall", "fuzzy-in-context-recall",
         "memorization", "compression", "selective-copying"]


def entry(doc, name, arch_hash, scores):
    e = copy.deepcopy(doc)
    e["name"] = name
    e["architecture"]["name"], e["architecture"]["hash"] = name, arch_hash
    e["scores"] = {"overall": sum(scores.values()) / len(scores), **scores}
    return e


def write(root, board, e):
    (root / board).mkdir(exist_ok=True)
    (root / board / f"{e['name']}.json").write_text(json.dumps(as_board_entry(e, board)))


def test_agreement_against_hand_computed_ranks(tmp_path, trial):
    doc = trial[1]
    # four architectures on both boards; quick ranks memorization a > b > c > d, paper a > c > b > d
    quick = {"a": 0.9, "b": 0.7, "c": 0.6, "d": 0.1}
    paper = {"a": 0.95, "b": 0.5, "c": 0.8, "d": 0.2}
    for i, name in enumerate("abcd"):
        other = {t: 0.5 for t in TASKS if t != "memorization"}
        write(tmp_path, "mad-quick", entry(doc, name, f"{i:016x}",
                                           {**other, "memorization": quick[name]}))
        paper_scores = {**other, "memorization": paper[name]}
        if name == "d":                      # a partial paper entry: memorization only
            paper_scores = {"memorization": paper[name]}
        write(tmp_path, "mad-paper", entry(doc, name, f"{i:016x}", paper_scores))
    write(tmp_path, "mad-quick", entry(doc, "only-quick", "f" * 16,    # on one board only
                                       {t: 0.3 for t in TASKS}))
    result = agreement(tmp_path, "mad-quick", "mad-paper")
    mem = result["rows"]["memorization"]
    assert result["common"] == 4 and mem["architectures"] == 4
    # Spearman by hand: ranks (1,2,3,4) vs (1,3,2,4): d^2 = 0+1+1+0 = 2; 1 - 6*2/(4*15) = 0.8
    assert abs(mem["spearman"] - 0.8) < 1e-12
    assert abs(mem["mean_abs_diff"] - (0.05 + 0.2 + 0.2 + 0.1) / 4) < 1e-12
    assert abs(mem["mean_diff"] - (0.05 - 0.2 + 0.2 + 0.1) / 4) < 1e-12       # paper - quick
    # d's paper entry covers memorization only: left out of the other tasks and the MAD score
    assert result["rows"]["compression"]["architectures"] == 3
    assert result["rows"]["compression"]["spearman"] is None      # no spread: all 0.5
    assert result["rows"][OVERALL]["architectures"] == 3
    assert "d" not in result["rows"][OVERALL]["names"]


def test_cli_refuses_unknown_and_identical_boards(tmp_path):
    run = CliRunner().invoke
    bad = run(main, ["leaderboard", "agree", "mad-quick", "nope", "--root", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown board 'nope'" in bad.output
    same = run(main, ["leaderboard", "agree", "mad-quick", "mad-quick", "--root", str(tmp_path)])
    assert same.exit_code == 2 and "two different boards" in same.output
    missing = run(main, ["leaderboard", "agree", "--root", str(tmp_path), "--json"])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    for board in ("mad-quick", "mad-paper"):
        (tmp_path / board).mkdir()
    empty = run(main, ["leaderboard", "agree", "--root", str(tmp_path), "--json"])
    assert empty.exit_code == 0 and json.loads(empty.output)["common"] == 0


def test_the_table_lists_each_architectures_two_scores_and_differing_seeds(tmp_path, trial):
    """Below the summary, each measured task's scores per architecture, the first board's then
    the second's, and the seeds when the two entries were trained on different ones."""
    doc = trial[1]
    for i, (name, q, p, seeds) in enumerate([("a", 0.91, 0.93, [0]), ("b", 0.5, 0.25,
                                                                      [1, 2, 3, 5])]):
        write(tmp_path, "mad-quick", entry(doc, name, f"{i:016x}", {"memorization": q}))
        e = entry(doc, name, f"{i:016x}", {"memorization": p})
        e["seeds"] = seeds
        write(tmp_path, "mad-paper", e)
    run = CliRunner().invoke
    out = run(main, ["leaderboard", "agree", "--root", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    at = lines.index("memorization:")
    assert lines[at + 2:at + 6] == ["| architecture | `mad-quick` | `mad-paper` |",
                                    "| --- | ---: | ---: |",
                                    "| a | 0.910 (1st) | 0.930 (1st) |",
                                    "| b (seeds 0 / 1-3, 5) | 0.500 (2nd) | 0.250 (2nd) |"]
    assert "compression:" not in lines                      # nothing measured there
    data = json.loads(run(main, ["leaderboard", "agree", "--root", str(tmp_path),
                                 "--json"]).output)
    assert data["rows"]["memorization"]["scores"] == [[0.91, 0.93], [0.5, 0.25]]
    assert data["seeds"] == {"a": [[0], [0]], "b": [[0], [1, 2, 3, 5]]}


def test_the_mean_difference_keeps_its_sign_when_it_rounds_to_zero(tmp_path, trial):
    """The mean difference of (0.5 -> 0.49976) and (0.3 -> 0.3) is -0.00012: it printed
    +0.000, the wrong direction; a board reading lower shows -0.000, an equal one +0.000. An
    architecture's name is escaped in the per-architecture rows (markdown_text)."""
    doc = trial[1]
    write(tmp_path, "mad-quick", entry(doc, "a", "0" * 16, {"memorization": 0.5}))
    write(tmp_path, "mad-paper", entry(doc, "a", "0" * 16, {"memorization": 0.49976}))
    write(tmp_path, "mad-quick", entry(doc, "b", "1" * 16, {"memorization": 0.3}))
    write(tmp_path, "mad-paper", entry(doc, "b", "1" * 16, {"memorization": 0.3}))
    result = agreement(tmp_path, "mad-quick", "mad-paper")
    assert abs(result["rows"]["memorization"]["mean_diff"] - (-0.00024 / 2)) < 1e-12
    table = agreement_table(result)
    assert "| memorization | 2 | — | 0.000 | -0.000 |" in table.splitlines()
    result["rows"]["memorization"]["mean_diff"] = 0.0
    assert "| memorization | 2 | — | 0.000 | +0.000 |" in agreement_table(result).splitlines()
    result["rows"]["memorization"]["names"][0] = "a|<b>"
    result["seeds"]["a|<b>"] = result["seeds"]["a"]
    assert "| a\\|\\<b\\> | 0.500 (1st) | 0.500 (1st) |" in agreement_table(result).splitlines()


def test_ranks_are_places_highest_first_with_ties_sharing_the_better_place():
    from madbench.leaderboard.agree import _ranks
    assert _ranks([0.1, 0.9, 0.5, 0.5]) == ["4th", "1st", "2nd", "2nd"]
    places = _ranks([float(-i) for i in range(23)])           # 1st ... 23rd, in order
    assert [places[i] for i in (0, 1, 2, 3, 10, 11, 12, 20, 21, 22)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd"]
