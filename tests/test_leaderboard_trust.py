"""Issue #14, as a hostile contributor: validating a submission runs no code it names, a forged
entry cannot pass, and validation is bounded. Submissions are forged the way a forger would:
every hash, run key and aggregate recomputed (``reseal``)."""
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from madbench.architecture import architecture_hash
from madbench.leaderboard.trust import judge_mixer, untrusted_mixers
from madbench.leaderboard.validate import validate_file, validate_submission
from madbench.scoring import best_of_sweep, bootstrap_interval, mad_score, task_scores
from madbench.store import run_key

REPO = Path(__file__).resolve().parent.parent
EVIL = '''import pathlib, torch
pathlib.Path({marker!r}).write_text("imported")
class Mixer(torch.nn.Module):
    def __init__(self, dim, **kw):
        super().__init__()
        pathlib.Path({marker!r}).write_text("constructed")
    def forward(self, x):
        return x
'''


def reseal(doc, interval=True):
    """What a forger does after editing: recompute the architecture hash, every run key, the
    best-of-sweep entries and the aggregates (the bootstrap interval unless not ``interval``),
    so that every static consistency check holds."""
    arch = doc["architecture"]
    arch["hash"] = architecture_hash(arch["spec"], arch["sources"])
    for run in doc["runs"]:
        run["run_key"] = run_key(arch["hash"], run["setting_hash"], doc["protocol"]["hash"],
                                 run["lr"], run["weight_decay"], run["seed"],
                                 doc["madbench_version"])
    metric = doc["metric"]
    best = best_of_sweep(doc["runs"], metric)
    doc["best"] = [{"task": t, "setting": s, "seed": seed, "run_key": r["run_key"]}
                   for (t, s, seed), r in sorted(best.items())]
    scores = task_scores(best, metric)
    doc["scores"] = {"overall": mad_score(scores), **scores}
    if interval:
        interval = bootstrap_interval(best, metric)
        doc["confidence_interval"] = list(interval) if interval else None
    doc["seeds"] = sorted({r["seed"] for r in doc["runs"]})
    return doc


@pytest.fixture
def doc(trial):
    return copy.deepcopy(trial[1])


def name_mixer(doc, mixer):
    """The submission's first layer made ``mixer``, consistently."""
    doc["architecture"]["spec"]["layers"][0]["mixer"] = mixer
    doc["architecture"]["sources"] = sorted(doc["architecture"]["sources"] +
                                            [f"{mixer.replace(':', '.')}@0123456789abcdef"])
    return reseal(doc)


@pytest.fixture
def evil_dir(tmp_path, monkeypatch):
    """A working directory holding ``evil_mixer.py``, which writes ``marker`` when imported,
    as ``python -m`` sees it (the working directory first on sys.path)."""
    marker = tmp_path / "marker"
    (tmp_path / "evil_mixer.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")
    monkeypatch.delitem(sys.modules, "evil_mixer", raising=False)
    return tmp_path, marker


# -- 1. no submitted code runs ------------------------------------------------------------
def test_validation_imports_no_module_of_the_working_directory(doc, evil_dir):
    _, marker = evil_dir
    name_mixer(doc, "evil_mixer:Mixer")
    report = validate_submission(doc, allow_nonstandard=True, rerun=1, rerun_seed=0,
                                 device="cpu")
    assert not marker.exists() and "evil_mixer" not in sys.modules
    assert any("not rebuilt (untrusted code)" in w and "evil_mixer" in w
               for w in report.warnings), report.warnings
    assert any(c == "rerun" and "not rebuilt" in r for c, r in report.failures)


def test_an_untrusted_architecture_cannot_be_a_board_entry(doc, evil_dir):
    _, marker = evil_dir
    name_mixer(doc, "evil_mixer:Mixer")
    doc["board"] = "mad-quick"
    report = validate_submission(doc)
    assert not marker.exists()
    assert any(c == "architecture" and "not rebuilt (untrusted code)" in r
               for c, r in report.failures), report.failures


@pytest.mark.parametrize("mixer", ["os:system", "subprocess:Popen", "evil_mixer:Mixer",
                                   "not_installed_pkg.mixers:Fake", "json.decoder:JSONDecoder"])
def test_import_paths_outside_installed_distributions_are_untrusted(mixer, evil_dir):
    verdict = judge_mixer(mixer, {})
    assert not verdict.trusted, verdict
    assert "evil_mixer" not in sys.modules and not evil_dir[1].exists()


def test_bundled_layers_are_trusted_under_any_spelling():
    for name in ("mh-attention", "mA", "swiglu", "madbench_layers.hyena:Hyena"):
        assert judge_mixer(name, {}).trusted, name


def test_a_plugin_is_trusted_only_with_the_distribution_and_version_the_submission_names(
        register_plugin, monkeypatch):
    import torch

    import madbench
    from madbench.plugins import get_registry

    class Toy(torch.nn.Module):
        pass

    class Plugin:
        @madbench.hookimpl
        def madbench_register_mixers(self, register):
            register("toy-mixer", Toy)

    register_plugin(Plugin(), "toy-plugin")
    assert "registered at run time" in judge_mixer("toy-mixer", {}).reason
    info = next(p for p in get_registry().plugins if p.name == "toy-plugin")
    monkeypatch.setattr(info, "distribution", "toy-dist")
    monkeypatch.setattr(info, "version", "1.0")
    assert judge_mixer("toy-mixer", {"toy-mixer": ("toy-dist", "1.0")}).trusted
    assert not judge_mixer("toy-mixer", {"toy-mixer": ("toy-dist", "0.9")}).trusted
    assert not judge_mixer("toy-mixer", {}).trusted


def test_trust_code_is_an_explicit_opt_in_that_never_searches_the_working_directory(
        doc, evil_dir, monkeypatch):
    folder, marker = evil_dir
    name_mixer(doc, "evil_mixer:Mixer")
    validate_submission(doc, allow_nonstandard=True, trust_code=True)
    assert not marker.exists()                      # only in the working directory: not found
    monkeypatch.setenv("PYTHONPATH", str(folder))   # put there explicitly
    monkeypatch.syspath_prepend(str(folder))
    report = validate_submission(doc, allow_nonstandard=True, trust_code=True)
    assert marker.exists()                          # the opt-in imports it
    assert not any("untrusted" in w for w in report.warnings)


def test_the_cli_under_python_m_imports_nothing_from_the_working_directory(doc, evil_dir):
    """The issue's reproduction: ``python -m madbench leaderboard validate`` run from a folder
    holding the submission's module (python -m puts that folder first on sys.path)."""
    folder, marker = evil_dir
    name_mixer(doc, "evil_mixer:Mixer")
    path = folder / "evil.json"
    path.write_text(json.dumps(doc))
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = f"{REPO}{__import__('os').pathsep}{REPO / 'plugins'}"
    out = subprocess.run([sys.executable, "-m", "madbench", "leaderboard", "validate",
                          str(path), "--allow-nonstandard"], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)
    assert not marker.exists(), out.stdout + out.stderr
    assert "not rebuilt (untrusted code)" in out.stdout, out.stdout + out.stderr
    assert out.returncode == 0 and "Traceback" not in out.stderr


def test_untrusted_mixers_reads_every_layer_once(doc):
    arch = copy.deepcopy(doc["architecture"])
    arch["spec"]["layers"] = [{"mixer": "os:system", "kwargs": {}}] * 3 + \
        [{"mixer": "swiglu", "kwargs": {}}]
    assert [v.mixer for v in untrusted_mixers(arch)] == ["os:system"]


# -- 2. forgery costs a real run ----------------------------------------------------------
def failures(doc, **options):
    options.setdefault("allow_nonstandard", True)
    return validate_submission(doc, **options).failures


def has_failure(found, check, text):
    return any(c == check and text in r for c, r in found)


def test_a_wholly_invented_entry_fails(doc, monkeypatch):
    """The issue's forgery: accuracy 1.0 everywhere, one scored position, everything
    recomputed. The scored positions are counted on the real test data; with them right, the
    static checks cannot tell, and a re-run of any sampled setting exposes it."""
    for run in doc["runs"]:
        run.update(accuracy=1.0, macro_accuracy=1.0, loss=0.0, scored_positions=1)
    reseal(doc)
    assert has_failure(failures(doc), "runs", "but its test data here have")
    from madbench.leaderboard.validate import scored_positions
    from madbench.tasks import get_task
    from madbench.protocol import Protocol
    n = scored_positions(get_task("memorization"), "baseline",
                         Protocol.from_dict(doc["protocol"]), 0)
    for run in doc["runs"]:
        run["scored_positions"] = n
    reseal(doc)
    assert failures(doc) == []                            # consistent: only a run can tell
    assert has_failure(failures(doc, rerun=1, device="cpu"), "rerun", "re-trained here")


def test_scored_positions_are_those_of_the_generated_test_split(doc):
    """Independent count: the test split generated by hand, its targets != -100."""
    import numpy as np
    from madbench.leaderboard.validate import scored_positions
    from madbench.protocol import Protocol
    from madbench.tasks import get_task, generate
    protocol = Protocol.from_dict(doc["protocol"])
    task = get_task("memorization")
    setting = task.setting("baseline")
    from dataclasses import replace
    from types import MappingProxyType
    capped = replace(setting, params=MappingProxyType({
        **setting.params, "num_train_examples": min(setting.num_train, protocol.max_train),
        "num_test_examples": min(setting.num_test, protocol.max_test)}))
    expected = int(np.sum(generate(task, capped, "test", 0).targets != -100))
    assert scored_positions(task, "baseline", protocol, 0) == expected
    assert all(r["scored_positions"] == expected for r in doc["runs"])


def test_forged_state_audit_numbers_fail(doc):
    doc["checks"]["state_audit"]["measured_state"] += 1
    assert has_failure(failures(doc), "state_audit", "checks.state_audit.measured_state claims")
    doc = copy.deepcopy(doc)
    doc["checks"]["state_audit"]["measured_state"] -= 1
    doc["checks"]["state_audit"]["layers"][0]["measured_state"] = 0
    assert has_failure(failures(doc), "state_audit", "checks.state_audit.layers differ")


def test_a_copied_seed_with_run_keys_recomputed_fails(doc):
    copies = [dict(r, seed=1) for r in doc["runs"]]
    doc["runs"] += copies
    reseal(doc)
    assert has_failure(failures(doc), "runs", "(a copied seed)")


def test_a_renamed_architecture_is_the_same_entry(doc, trial):
    """Renaming keeps the hash (the name is not part of it), so a renamed copy on a board is
    caught as a duplicate of the original."""
    from madbench.leaderboard.duplicates import duplicate_entries
    from madbench.leaderboard.report import Report
    renamed = copy.deepcopy(doc)
    renamed["architecture"]["name"] = renamed["architecture"]["spec"]["name"] = "my-new-arch"
    reseal(renamed)
    assert renamed["architecture"]["hash"] == doc["architecture"]["hash"]
    assert failures(renamed) == []
    reports = [Report(p, board="mad-quick", architecture_hash=doc["architecture"]["hash"])
               for p in ("mad-quick/original.json", "mad-quick/renamed.json")]
    reports.append(Report("mad-paper/x.json", board="mad-paper",
                          architecture_hash=doc["architecture"]["hash"]))
    duplicate_entries(reports)
    assert [bool(r.failures) for r in reports] == [False, True, False]
    assert "already on mad-quick as mad-quick/original.json" in reports[1].failures[0][1]


def synthetic_board_doc():
    """Every cell of the suite under the quick protocol, as best-of-sweep sees it."""
    from madbench.leaderboard.boards import suite_tasks
    runs = [{"task": t.name, "setting": s.name, "seed": 0, "accuracy": 0.5, "loss": 1.0,
             "run_key": f"{t.name}/{s.name}", "lr": 1e-3, "weight_decay": 0.0}
            for t in suite_tasks() for s in t.settings()]
    return {"runs": runs, "metric": "accuracy"}


def test_reruns_are_stratified_over_all_tasks_and_reach_every_setting():
    """Property over 200 sample seeds: each sample of 6 holds 6 different tasks, and together
    they reach all 66 settings (the old sampler reached 17, all among the cheapest)."""
    import random
    from madbench.leaderboard.reruns import pick_reruns, rerun_cost
    from madbench.protocol import PRESETS
    from madbench.tasks import get_task
    doc = synthetic_board_doc()
    reached = set()
    for seed in range(200):
        runs, sample = pick_reruns(doc, PRESETS["quick"], 6, random.Random(seed))
        assert len({r["task"] for r in runs}) == 6 and sample["eligible"] == 66
        reached |= {(r["task"], r["setting"]) for r in runs}
    assert len(reached) == 66
    budget = 4_000_000                          # a CI-sized budget: only cheap runs
    for seed in range(20):
        runs, sample = pick_reruns(doc, PRESETS["quick"], 3, random.Random(seed), budget)
        assert all(rerun_cost(get_task(r["task"]), r["setting"], PRESETS["quick"]) <= budget
                   for r in runs)
        assert sample["over_budget"] + sample["eligible"] == 66


def test_a_board_entry_is_rerun_with_the_boards_preset_only(doc):
    from madbench.leaderboard.reruns import rerun_protocol
    from madbench.protocol import PRESETS, Protocol
    quick = {**PRESETS["quick"].to_dict(), "hash": PRESETS["quick"].hash}
    assert rerun_protocol({"board": "mad-quick"}, Protocol.from_dict(quick)) is PRESETS["quick"]
    with pytest.raises(ValueError, match="is not quick"):
        rerun_protocol({"board": "mad-quick"}, Protocol.from_dict(doc["protocol"]))


# -- 3. bounded validation ----------------------------------------------------------------
def _declare_override(doc, key, value):
    from madbench.protocol import Protocol
    doc["protocol"]["overrides"] = sorted([o for o in doc["protocol"]["overrides"]
                                           if o[0] != key] + [[key, value]])
    doc["protocol"][key] = value
    doc["protocol"]["hash"] = Protocol.from_dict(doc["protocol"]).hash


def test_a_million_epoch_protocol_never_trains(doc, monkeypatch):
    import time

    from madbench import sweep

    def no_training(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(sweep, "train", no_training)
    monkeypatch.setattr(sweep, "train_batched", no_training)
    _declare_override(doc, "epochs", 1_000_000)
    for run in doc["runs"]:
        run["epochs"], run["steps"] = 1_000_000, 8_000_000
    reseal(doc)
    start = time.perf_counter()
    found = failures(doc, rerun=1, rerun_seed=0, device="cpu")
    assert time.perf_counter() - start < 30
    assert has_failure(found, "rerun", "no setting can be re-run within the budget"), found
    doc["board"] = "mad-quick"                # claimed for a board: the board's preset or none
    assert has_failure(failures(doc, rerun=1, device="cpu"), "rerun", "not re-run")


def test_an_oversized_hyena_is_refused_before_it_is_built(doc):
    """The issue's hang: Hyena with short_filter=20000 (15.9M parameters) kept the contract
    check busy for minutes; it is refused by the size budget in seconds."""
    import time
    from madbench.architecture import ArchitectureSpec, mixer_source_id
    spec = doc["architecture"]["spec"]
    spec["layers"][0] = {"mixer": "hyena", "kwargs": {"short_filter": 20000}}
    doc["architecture"]["sources"] = sorted({mixer_source_id(l["mixer"])
                                             for l in spec["layers"]})
    reseal(doc)
    assert ArchitectureSpec.from_dict(spec).hash == doc["architecture"]["hash"]
    start = time.perf_counter()
    found = failures(doc)
    assert time.perf_counter() - start < 60
    assert has_failure(found, "budget", "over the budget"), found


SLOW = '''import time, torch
class Slow(torch.nn.Module):
    def __init__(self, dim, **kw):
        super().__init__()
        self.w = torch.nn.Linear(dim, dim)
    def forward(self, x):
        time.sleep(0.5)
        return self.w(x)
'''


def test_a_check_that_runs_past_its_time_budget_is_refused(doc, tmp_path, monkeypatch):
    import time
    from madbench.budget import Budget
    (tmp_path / "slow_mixer.py").write_text(SLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    for layer in doc["architecture"]["spec"]["layers"]:
        if layer["mixer"] != "swiglu":
            layer["mixer"] = "slow_mixer:Slow"
    from madbench.architecture import mixer_source_id
    doc["architecture"]["sources"] = sorted({mixer_source_id(l["mixer"]) for l in
                                             doc["architecture"]["spec"]["layers"]})
    reseal(doc)
    start = time.perf_counter()
    found = failures(doc, trust_code=True, budget=Budget(check_seconds=2))
    assert time.perf_counter() - start < 20
    assert has_failure(found, "budget", "ran past its time budget of 2 s"), found


# -- CI: a bounded re-run of new or changed entries ---------------------------------------
def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "HOME": str(cwd), "PATH": __import__("os").environ["PATH"]})


def pull_request(tmp_path, trial):
    """A tiny repository: ``entries/old.json`` committed on ``main``, then a branch ``pr``
    checked out. Returns the entries folder."""
    repo = tmp_path / "repo"
    entries = repo / "entries"
    entries.mkdir(parents=True)
    (entries / "old.json").write_text(trial[0].read_text())
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "pr")
    return entries


def test_ci_reruns_only_new_or_changed_entries(tmp_path, trial):
    """A tiny repository with one entry on its base branch and one added by a 'pull
    request': ``validate --changed-since base --rerun 1`` re-trains the new one only."""
    from click.testing import CliRunner
    from madbench.cli import main
    from madbench.leaderboard.changes import changed_files
    entries = pull_request(tmp_path, trial)
    (entries / "new.json").write_text(trial[0].read_text())
    assert changed_files([entries], "main") == {(entries / "new.json").resolve()}
    result = CliRunner().invoke(main, ["leaderboard", "validate", str(entries),
                                       "--allow-nonstandard", "--rerun", "1", "--device", "cpu",
                                       "--changed-since", "main", "--json"])
    assert result.exit_code == 0, result.output
    reports = {Path(r["path"]).name: r for r in json.loads(result.output)["files"]}
    assert len(reports["new.json"]["reruns"]) == 1 and reports["old.json"]["reruns"] == []
    bad = CliRunner().invoke(main, ["leaderboard", "validate", str(entries), "--rerun", "1",
                                    "--changed-since", "no-such-ref"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_validate_reports_each_rerun_as_it_goes(tmp_path, trial):
    """Re-runs can take many minutes: each one is announced, then its outcome, on stderr."""
    from click.testing import CliRunner
    from madbench.cli import main
    doc = json.loads(trial[0].read_text())
    result = CliRunner().invoke(main, ["leaderboard", "validate", str(trial[0]),
                                       "--allow-nonstandard", "--rerun", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    start = [l for l in lines if l.startswith("  re-training 1 of 1: ")]
    assert len(start) == 1 and "(cpu, fp32, plain engine)" in start[0]
    assert any(l.strip().startswith("rebuilding the architecture") for l in lines)
    claimed = {f"{r['accuracy']:.4f}" for r in doc["runs"]}
    end = [l for l in lines if l.startswith("    accuracy ")]
    assert len(end) == 1 and ": ok (" in end[0] and end[0].split("claimed ")[1][:6] in claimed


# -- found by a hostile review (eighth session) -----------------------------------------------
@pytest.mark.parametrize("mixer, claim", [
    ("madbench.__main__:Mixer", None),                      # runs madbench's CLI when imported
    ("torch.utils.model_dump.__main__:Mixer", ("torch", None)),   # runs torch's tool
    ("madbench.model:torch.nn.Identity", None),             # an attribute chain out of madbench
    ("madbench.model:LanguageModel", None),                 # the harness, not a layer package
    ("torch.nn:Linear", ("torch", None)),                   # not a madbench plugin distribution
])
def test_main_modules_attribute_chains_and_non_plugin_distributions_are_untrusted(mixer, claim):
    import torch
    named = {mixer: (claim[0], torch.__version__)} if claim else {}
    verdict = judge_mixer(mixer, named)
    assert not verdict.trusted, verdict
    assert "torch.utils.model_dump.__main__" not in sys.modules


def test_a_main_module_named_by_a_board_entry_is_never_imported(doc):
    import torch
    name_mixer(doc, "torch.utils.model_dump.__main__:Mixer")
    doc["architecture"]["distributions"] = [
        {"name": "torch.utils.model_dump.__main__:Mixer", "distribution": "torch",
         "version": torch.__version__}]
    doc["board"] = "mad-quick"
    reseal(doc)
    report = validate_submission(doc)          # a SystemExit from argparse would escape here
    assert "torch.utils.model_dump.__main__" not in sys.modules
    assert any(c == "architecture" and "not rebuilt (untrusted code)" in r
               for c, r in report.failures), report.failures


def test_a_board_entry_whose_architecture_cannot_be_imported_fails(doc):
    """A trusted-looking mixer that does not exist: the claims cannot be re-checked, so a
    board entry fails (a standalone file only warns)."""
    name_mixer(doc, "madbench_layers.attention:NoSuchMixer")
    doc["accounting"]["params"] = 1
    plain = validate_submission(copy.deepcopy(doc), allow_nonstandard=True)
    assert any("architecture not importable here" in w for w in plain.warnings)
    doc["board"] = "mad-quick"
    reseal(doc)
    report = validate_submission(doc)
    assert any(c == "architecture" and "architecture not importable here" in r
               for c, r in report.failures), report.failures


def test_a_copy_nudged_by_one_ulp_is_still_a_copied_seed(doc):
    import math
    copies = [dict(r, seed=1, loss=math.nextafter(r["loss"], 2.0),
                   train_loss=math.nextafter(r["train_loss"], 2.0)) for r in doc["runs"]]
    doc["runs"] += copies
    reseal(doc)
    assert has_failure(failures(doc), "runs", "(a copied seed)")


def test_a_symbolic_link_is_not_a_submission_and_does_not_choose_the_board(tmp_path, doc):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(doc))
    board = tmp_path / "leaderboards" / "mad-paper"
    board.mkdir(parents=True)
    (board / "link.json").symlink_to(elsewhere)
    report = validate_file(board / "link.json", allow_nonstandard=True)
    assert not report.valid and "a symbolic link" in report.failures[0][1]
    nested = board / "sub"
    nested.mkdir()
    (nested / "x.json").write_text(json.dumps(doc))
    report = validate_file(nested / "x.json", allow_nonstandard=True)
    assert any(c == "protocol" and "a folder below a mad-paper board folder" in r
               for c, r in report.failures), report.failures


def test_a_link_to_a_device_neither_hangs_nor_escapes(tmp_path):
    """A FIFO (it would block a plain open) and a link to one: refused in one line each."""
    import os
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    (tmp_path / "link.json").symlink_to(fifo)
    for name in ("pipe.json", "link.json"):
        report = validate_file(tmp_path / name)
        assert not report.valid and len(report.failures) == 1, report.failures


def test_a_duplicate_is_blamed_on_the_file_the_pull_request_adds(tmp_path, monkeypatch):
    """A pull request copies a board entry under a name that sorts first ('a-copy.json'
    beside 'mamba.json'): by path alone the entry already on the board was failed as the
    duplicate; with --changed-since, the added file is, and the established one stays valid."""
    from click.testing import CliRunner
    from madbench.cli import main
    repo = tmp_path / "repo"
    board = repo / "leaderboards" / "mad-quick"
    board.mkdir(parents=True)
    entry = (REPO / "leaderboards" / "mad-quick" / "mamba.json").read_text()
    (board / "mamba.json").write_text(entry)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "pr")
    (board / "a-copy.json").write_text(json.dumps({**json.loads(entry), "name": "a copy"}))

    def blamed(*options):
        res = CliRunner().invoke(main, ["leaderboard", "validate", str(board), "--json",
                                        *options])
        assert res.exit_code == 3, res.output
        files = json.loads(res.stdout)["files"]
        return [Path(f["path"]).name for f in files
                if any(x["check"] == "duplicate" for x in f["failures"])]
    assert blamed() == ["mamba.json"]                       # by path: the wrong one
    monkeypatch.chdir(repo)                                 # git runs where the boards are
    assert blamed("--changed-since", "main") == ["a-copy.json"]


def test_ci_finds_changed_entries_with_non_ascii_names(tmp_path, trial):
    from madbench.leaderboard.changes import changed_files
    entries = pull_request(tmp_path, trial)
    repo = entries.parent
    (entries / "café.json").write_text(trial[0].read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pr")
    (entries / "naïve.json").write_text(trial[0].read_text())      # untracked
    odd = not_utf8_file(entries, trial[0].read_bytes())            # before: UnicodeDecodeError
    assert changed_files([entries], "main") == {(entries / "café.json").resolve(),
                                                (entries / "naïve.json").resolve(),
                                                odd.resolve()}


def test_a_check_failing_for_every_run_is_counted_not_listed():
    from madbench.leaderboard.report import MAX_FAILURES_PER_CHECK, Report
    report = Report(None)
    for i in range(MAX_FAILURES_PER_CHECK + 500):
        report.fail("best", f"no best entry for cell {i}")
    report.fail("runs", "other")
    assert len(report.failures) == MAX_FAILURES_PER_CHECK + 2
    assert ("best", "... and 500 more failures of this check") in report.failures


def test_a_report_reads_as_validate_prints_it_and_escapes_the_submissions_text():
    """``Report.lines`` (what ``validate`` prints, and CI's board test on a pass): the verdict,
    failures, re-runs, then the checks of a valid file; a name that would clear the terminal
    or end the line is shown escaped."""
    from madbench.leaderboard.report import Report
    rerun = {"task": "memorization", "setting": "vocab_size=512", "seed": 0, "measured": 0.5,
             "claimed": 0.51234, "ok": True, "tolerance": 0.08, "seconds": 3.5,
             "engine": "plain"}
    report = Report("mad-quick/x.json", board="mad-quick", name="x\x1b[2J\ny", reruns=[rerun],
                    checks=["schema v1", "runs"])
    lines = report.lines()
    assert lines == ["mad-quick/x.json: valid [mad-quick] — x\\x1b[2J\\ny",
                     "  re-ran memorization/vocab_size=512 seed 0: accuracy 0.5000 vs claimed "
                     "0.5123: ok (tolerance 0.08; 3.5 s, plain engine)",
                     "  checked: schema v1; runs"]
    report.fail("rerun", "re-trained here: 0.1")
    assert report.lines()[:2] == ["mad-quick/x.json: INVALID [mad-quick] — x\\x1b[2J\\ny",
                                  "  FAIL rerun: re-trained here: 0.1"]
    assert not any(line.startswith("  checked") for line in report.lines())


def test_unknown_flops_are_refused_by_the_budget_with_a_reason(monkeypatch):
    from madbench.architecture import resolve_architecture
    from madbench.budget import Budget, Deadline
    from madbench.leaderboard import rebuild
    real = rebuild.describe_architecture
    monkeypatch.setattr(rebuild, "describe_architecture",
                        lambda *a, **k: {**real(*a, **k), "flops_per_token": None})
    spec = resolve_architecture("mh-attention-swiglu")
    reason = rebuild.over_budget(spec, Budget(), Deadline(60, "test"))
    assert reason.startswith("forward FLOPs per token unknown")


def test_invisible_characters_in_a_name_are_schema_failures(doc):
    """A zero-width space makes 'hyena\\u200b-swiglu' look like another entry's name."""
    from madbench.errors import UNPRINTABLE_CLASS, printable
    pattern = json.loads((REPO / "madbench/leaderboard/submission.schema.json").read_text()
                         )["$defs"]["printable"]["pattern"]
    assert pattern == f"^[^{UNPRINTABLE_CLASS.encode('unicode_escape').decode()}]*$" \
        .replace("\\x", "\\u00")                          # one character class, two spellings
    for ch in ("\u200b", "\u200e", "\u2060", "\ufeff", "\u061c"):
        forged = copy.deepcopy(doc)
        forged["name"] = f"hyena{ch}-swiglu (official)"
        assert any(c == "schema" and r.startswith("at name:") for c, r in failures(forged)), ch
        assert ch not in printable(forged["name"])


def test_writing_out_a_default_does_not_make_a_new_entry(doc):
    """The same model spelled differently (a layer's default kwarg written out, the class
    named by its import path): a new architecture hash, the same model hash, one entry."""
    from madbench.architecture import mixer_entry
    from madbench.leaderboard.duplicates import duplicate_entries
    spelled = copy.deepcopy(doc)
    layer = spelled["architecture"]["spec"]["layers"][0]
    entry = mixer_entry(layer["mixer"])
    cls = entry.obj
    first = next(p for p in list(__import__("inspect").signature(cls).parameters.values())[1:]
                 if p.default is not p.empty and p.default is not None
                 and p.name not in layer["kwargs"] and p.name not in entry.metadata["defaults"])
    layer["kwargs"].update(entry.metadata["defaults"])     # the registered name's defaults
    layer["kwargs"][first.name] = first.default
    layer["mixer"] = f"{cls.__module__}:{cls.__qualname__}"
    from madbench.architecture import ArchitectureSpec, mixer_source_id
    spec = ArchitectureSpec.from_dict(spelled["architecture"]["spec"])
    spelled["architecture"]["sources"] = sorted({mixer_source_id(l.mixer) for l in spec.layers})
    reseal(spelled)
    assert spelled["architecture"]["hash"] != doc["architecture"]["hash"]
    reports = [validate_submission(d, allow_nonstandard=True) for d in (doc, spelled)]
    assert reports[0].model_hash and reports[0].model_hash == reports[1].model_hash
    for r, name in zip(reports, ("a.json", "b.json")):
        r.board, r.path = "mad-quick", f"mad-quick/{name}"
    duplicate_entries(reports)
    assert not reports[0].failures and reports[1].failures[0][0] == "duplicate"


def test_runs_of_another_madbench_version_are_flagged(doc):
    doc["madbench_version"] = "0.0.1+deadbeef0000"
    reseal(doc)
    report = validate_submission(doc, allow_nonstandard=True)
    assert any("made by madbench 0.0.1+deadbeef0000" in w for w in report.warnings)


def test_model_hash_takes_defaults_json_cannot_hold(tmp_path, monkeypatch):
    """A third-party layer with ``act=nn.GELU, dtype=torch.float32`` defaults: the model hash
    names them instead of failing (a valid submission must not be refused over it)."""
    from madbench.architecture import ArchitectureSpec, LayerSpec, built_layer, model_hash
    (tmp_path / "toymix.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class WithAct(nn.Module):\n"
        "    def __init__(self, dim, act=nn.GELU, dtype=torch.float32, fn=torch.tanh):\n"
        "        super().__init__()\n        self.p = nn.Linear(dim, dim)\n"
        "    def forward(self, x):\n        return self.p(x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    layer = built_layer(LayerSpec("toymix:WithAct"))
    assert layer["kwargs"]["act"] == "torch.nn.modules.activation.GELU"
    assert layer["kwargs"]["dtype"] == "torch.float32"
    assert layer["kwargs"]["fn"].endswith(".tanh")
    spec = ArchitectureSpec("x", (LayerSpec("toymix:WithAct"), LayerSpec("swiglu")))
    assert model_hash(spec) == model_hash(ArchitectureSpec(
        "y", (LayerSpec("toymix:WithAct", {"dtype": __import__("torch").float32}),
              LayerSpec("swiglu"))))


def test_the_state_measured_flag_is_a_valid_flag(doc):
    """``submit`` writes ``state-measured`` for a layer that declares no state_size; the
    schema must take it (it refused every such submission)."""
    from madbench.leaderboard.schema import schema_errors
    doc["flags"] = ["state-measured", "param-mismatch"]
    assert not [e for e in schema_errors(doc) if "flags" in e]
    doc["flags"] = ["state-invented"]
    assert [e for e in schema_errors(doc) if "flags" in e]


# -- 5. a second hostile pass: cost, render, names, seeds ---------------------------------
def test_a_declared_sweep_of_millions_of_runs_is_counted_in_milliseconds(doc):
    """A trial protocol declaring a 40 x 40 grid, all settings and 100 seeds (10.6 million
    runs) with one run per task: the missing runs are counted (the sweep's size less the runs
    present), not listed one by one (before: 6 s and 1.8 GB of strings; a 100 x 100 grid took
    95 s and 8.4 GB from an 8 kB file)."""
    import time

    from madbench.leaderboard.boards import suite_tasks
    from madbench.leaderboard.validate import coverage_problems
    from madbench.protocol import Protocol
    lrs = [round(1e-4 * (i + 1), 6) for i in range(40)]
    _declare_override(doc, "lrs", lrs)
    _declare_override(doc, "weight_decays", [round(0.01 * i, 4) for i in range(40)])
    _declare_override(doc, "settings", "all")
    run = doc["runs"][0]
    tasks = suite_tasks()
    doc["runs"] = [dict(run, task=t.name, setting=t.settings()[0].name) for t in tasks]
    doc["seeds"] = list(range(100))
    start = time.perf_counter()
    found = coverage_problems(doc, {t.name: t for t in tasks}, Protocol.from_dict(doc["protocol"]))
    assert time.perf_counter() - start < 2
    sweep = sum(len(t.settings()) for t in tasks) * 100 * 40 * 40
    assert run["lr"] in lrs and run["weight_decay"] == 0     # each task's one run is in it
    missing = [text for kind, text in found if kind == "missing"]
    assert missing == [f"{sweep - len(tasks)} runs of the protocol's sweep are missing: "
                       f"compression/{tasks_first(tasks, 'compression')} seed 0 lr 0.0001 wd 0, "
                       f"compression/{tasks_first(tasks, 'compression')} seed 0 lr 0.0001 wd "
                       f"0.01, compression/{tasks_first(tasks, 'compression')} seed 0 lr 0.0001 "
                       f"wd 0.02 and {sweep - len(tasks) - 3} more"]


def tasks_first(tasks, name):
    return next(t for t in tasks if t.name == name).settings()[0].name


def test_missing_runs_are_counted_as_a_naive_walk_of_the_sweep_counts_them(doc):
    """Property over random subsets of a small sweep (two tasks, 2 seeds, 3 x 2 grid): the
    count and the first runs named are those of a walk over every cell of the sweep, tasks in
    name order."""
    import random

    from madbench.leaderboard.boards import suite_tasks
    from madbench.leaderboard.validate import coverage_problems
    from madbench.protocol import Protocol
    from madbench.sweep import select_settings
    _declare_override(doc, "lrs", [0.001, 0.0005, 0.0001])
    _declare_override(doc, "weight_decays", [0.0, 0.1])
    doc["seeds"] = [0, 1]
    protocol = Protocol.from_dict(doc["protocol"])
    tasks = {t.name: t for t in suite_tasks()}
    sweep = [(t, s.name, seed, lr, wd) for t in ("compression", "memorization")
             for s in select_settings(tasks[t], protocol.settings)
             for seed in (0, 1) for lr in (0.001, 0.0005, 0.0001) for wd in (0.0, 0.1)]
    rng = random.Random(0)
    run = doc["runs"][0]
    for trial in range(30):
        keep = [0.5, 0.97, 1.0][trial % 3]
        kept = [c for c in sweep if c[0] == "compression" and c[1] == sweep[0][1] or
                rng.random() < keep]
        doc["runs"] = [dict(run, task=t, setting=s, seed=seed, lr=lr, weight_decay=wd,
                            run_key=f"{i:024x}") for i, (t, s, seed, lr, wd) in enumerate(kept)]
        gone = [c for c in sweep if c not in kept]
        found = dict(coverage_problems(doc, tasks, protocol))
        if not gone:
            assert "missing" not in found
            continue
        names = [f"{t}/{s} seed {seed} lr {lr:g} wd {wd:g}" for t, s, seed, lr, wd in gone[:3]]
        more = f" and {len(gone) - 3} more" if len(gone) > 3 else ""
        assert found["missing"] == (f"{len(gone)} runs of the protocol's sweep are missing: "
                                    + ", ".join(names) + more)


def test_runs_of_invented_settings_do_not_keep_the_bootstrap_busy(doc):
    """600 invented (task, setting) pairs of 2 seeds each: the bootstrap interval (2,000
    resamples of every setting) is not recomputed over settings that are not the suite's, the
    runs check has failed them already (before: 14 s for these; a 4 MB file of 4,500 pairs
    took 3 minutes)."""
    import time

    from madbench.leaderboard.report import Report
    from madbench.leaderboard.validate import check_aggregates
    run = doc["runs"][0]
    doc["runs"] = [dict(run, task=f"t{i}", setting="s", setting_hash=f"{i:016x}", seed=seed,
                        accuracy=0.5 * seed)
                   for i in range(600) for seed in (0, 1)]
    reseal(doc, interval=False)
    report = Report(None)
    start = time.perf_counter()
    check_aggregates(doc, report, None)
    assert time.perf_counter() - start < 3
    assert report.failures == [("scores", "confidence_interval not recomputed: 600 (task, "
                                "setting) pairs of the runs are no settings of the MAD suite")]
    doc["scores"] = {"overall": doc["scores"]["overall"]}      # the schema's 65 keys at most
    start = time.perf_counter()
    found = failures(doc, rebuild=False)
    assert time.perf_counter() - start < 5
    assert has_failure(found, "runs", "is not a task of the MAD suite")


@pytest.mark.parametrize("marker", ["end", "begin"])
@pytest.mark.parametrize("board", ["mad-quick", "mad-paper"])
def test_an_architecture_named_after_a_marker_leaves_the_readme_as_rendered(tmp_path, doc,
                                                                           marker, board):
    """An architecture's name (a label: `<`, `>` and backticks allowed, shown in a code span)
    spelling a board's marker: render is idempotent and --check passes after it, and the
    README keeps one pair of markers per board. Before, a name spelling mad-quick's end
    marker made every render append a stray copy of the row's tail (--check never passed),
    and one spelling mad-paper's begin marker deleted the markers between them."""
    import shutil

    from helpers import as_board_entry
    from madbench.leaderboard.render import BEGIN, END, render
    root = tmp_path / "leaderboards"
    root.mkdir()
    shutil.copy(REPO / "leaderboards" / "README.md", root / "README.md")
    for b in ("mad-quick", "mad-paper"):
        (root / b).mkdir()
    entry = as_board_entry(doc, "mad-quick")
    spelled = (BEGIN if marker == "begin" else END).format(board=board)
    entry["architecture"]["name"] = entry["architecture"]["spec"]["name"] = f"x {spelled} y"
    (root / "mad-quick" / "e.json").write_text(json.dumps(entry))
    assert render(root) is True
    first = (root / "README.md").read_text()
    assert render(root) is False and render(root, check=True) is False
    assert (root / "README.md").read_text() == first
    lines = first.splitlines()
    for b in ("mad-quick", "mad-paper"):
        assert lines.count(BEGIN.format(board=b)) == lines.count(END.format(board=b)) == 1
    rows = [line for line in lines if spelled in line and line != spelled]
    assert len(rows) == 1 and rows[0].startswith("| — | [trial](mad-quick/e.json) | `")


#: names that pass the schema and read as 'hyena-swiglu' on a board
LOOKALIKES = ["Hyena-SwiGLU", "\uff48\uff59\uff45\uff4e\uff41-swiglu", "hyena\u00ad-swiglu",
              "hyena\u2010swiglu", "hyena-swiglu ", "hyena\ufe0f-swiglu",
              "hyena-swiglu\U000e0041", "hyena\u3164-swiglu"]


def test_a_name_that_reads_as_another_entrys_is_a_duplicate(doc):
    """Case, full-width letters, a soft hyphen, another dash, a trailing space, a variation
    selector, a tag character, a Hangul filler: each passes the schema, and each was allowed
    on a board beside 'hyena-swiglu' (another architecture under the same name as read).
    Now each is a duplicate on that board, not on another, and names a reader can tell
    apart are not."""
    from madbench.leaderboard.schema import schema_errors
    from madbench.leaderboard.duplicates import duplicate_entries
    from madbench.leaderboard.report import Report
    distinct = ["hyena-swiglu-2", "hyena swiglu", "hyena_swiglu"]
    for name in LOOKALIKES + distinct:
        assert schema_errors(dict(doc, name=name)) == [], name
    reports = [Report(f"mad-quick/{i:02d}.json", board="mad-quick", name=name,
                      architecture_hash=f"{i:016x}")
               for i, name in enumerate(["hyena-swiglu", *LOOKALIKES, *distinct])]
    reports.append(Report("mad-paper/x.json", board="mad-paper", name="Hyena-SwiGLU",
                          architecture_hash="f" * 16))
    duplicate_entries(reports)
    assert [r.name for r in reports if r.failures] == LOOKALIKES
    assert all(r.failures == [("duplicate", f"name {r.name!r} reads as 'hyena-swiglu', the "
                               "name of mad-quick/00.json on mad-quick (names are told apart "
                               "regardless of case, width, dashes, spacing, invisible "
                               "characters and Cyrillic or Greek lookalikes of Latin letters): "
                               "one entry per name")] for r in reports[1:9])


def test_a_board_entry_cannot_pick_its_luckiest_seeds(doc):
    """Seeds trained 0..9, the entry keeps seed 7 (or 3 and 7), everything recomputed: a
    board entry's seeds are 0 to n - 1. Before, nothing tied the seeds kept to those trained,
    and re-runs re-train the seeds claimed, so the pick passed. A trial entry keeps any."""
    from helpers import as_board_entry
    entry = json.loads(json.dumps(as_board_entry(doc, "mad-quick")))
    assert not has_failure(failures(entry, rebuild=False), "runs", "seeds are 0 to n - 1")
    for seeds in ([7], [3, 7], [1, 2]):
        picked = copy.deepcopy(entry)
        picked["runs"] = [dict(r, seed=s, loss=r["loss"] + s, train_loss=r["train_loss"] + s)
                          for s in seeds for r in entry["runs"]]
        reseal(picked)
        found = failures(picked, rebuild=False)
        assert has_failure(found, "runs", "a board entry's seeds are 0 to n - 1, not "
                           + ", ".join(map(str, seeds))), found
        picked["board"] = None                        # a trial: any seeds
        assert not has_failure(failures(reseal(picked), rebuild=False), "runs", "0 to n - 1")


# -- text a submission shows: rendered, compared, printed ------------------------------------
#: what GitHub makes of a run of rendered text outside code (found after markdown, so a
#: backslash escape does not hide it): math, an emoji shortcode, a mention, an e-mail or URL
GITHUB_TEXT_FEATURES = re.compile(r"\$[^$]*\$|:[a-z0-9_+-]+:|(?<![\w.])@\w|\w@\w|https?:")
GITHUB_NAME = "$x^2$ $$E=mc^2$$ :rocket: @octocat me@evil.example https://evil.example"


def test_a_name_renders_on_github_as_written_never_as_math_emoji_or_mention(tmp_path):
    """A name GitHub would draw as math, an emoji, a mention or a link: each is plain text
    for the schema, and before, `render` wrote `$x^2$ :rocket:` into the table as it is (a
    backslash escape would not help: GitHub finds these in the rendered text). Parsed by an
    independent CommonMark parser, the cell reads as the name, and no run of its text holds
    anything GitHub would turn into something else."""
    import shutil
    from html.parser import HTMLParser

    from madbench.leaderboard.render import render
    from madbench.leaderboard.schema import schema_errors
    markdown_it = pytest.importorskip("markdown_it")
    root = tmp_path / "leaderboards"
    root.mkdir()
    shutil.copy(REPO / "leaderboards" / "README.md", root / "README.md")
    for board in ("mad-quick", "mad-paper"):
        (root / board).mkdir()
    entry = json.loads((REPO / "leaderboards" / "mad-quick" / "mamba.json").read_text())
    entry["name"] = GITHUB_NAME
    assert schema_errors(entry) == []
    (root / "mad-quick" / "mamba.json").write_text(json.dumps(entry))
    render(root)
    row = next(line for line in (root / "README.md").read_text().splitlines()
               if "(mad-quick/mamba.json)" in line)
    header = "| " + " | ".join(["x"] * (row.count(" | ") + 1)) + " |"
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(
        "\n".join([header, "|" + "---|" * (row.count(" | ") + 1), row]))

    class Runs(HTMLParser):
        """The text of the second cell, one item per run of text between tags."""
        def __init__(self):
            super().__init__()
            self.cells, self.inside, self.runs, self.tags = 0, False, [], set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            if tag == "td":
                self.cells, self.inside = self.cells + 1, True

        def handle_endtag(self, tag):
            self.inside = self.inside and tag != "td"

        def handle_data(self, data):
            if self.inside and self.cells == 2:
                self.runs.append(data)

    parsed = Runs()
    parsed.feed(html)
    parsed.close()
    assert "".join(parsed.runs) == GITHUB_NAME
    assert [r for r in parsed.runs if GITHUB_TEXT_FEATURES.search(r)] == []
    assert parsed.tags <= {"table", "thead", "tbody", "tr", "th", "td", "a", "code", "span"}
    assert GITHUB_TEXT_FEATURES.search(GITHUB_NAME)       # the pattern finds them unescaped


#: Cyrillic and Greek letters and the Latin letter each is drawn like (the task's list,
#: written out here apart from validate's table)
LATIN_LOOKALIKES = [*zip("авекмнорстухіјѕԁԛԝ", "abekmhopctyxijsdqw"),
                    *zip("АВЕКМНОРСТУХІЈЅ", "ABEKMHOPCTYXIJS"),
                    *zip("αορντικ", "aopvtik"), *zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX")]


def test_a_name_spelled_with_cyrillic_or_greek_lookalikes_is_a_duplicate():
    """'mаmba' with a Cyrillic а (U+0430) had another key than 'mamba', so a lookalike entry
    could sit beside the real one. Each letter of the list, put for the Latin letter it is
    drawn like, now gives the same key (in either case); a Greek or Cyrillic name that reads
    as no Latin one keeps its own, and Greek small nu reads v, its capital N."""
    from madbench.leaderboard.duplicates import duplicate_entries, name_key
    from madbench.leaderboard.report import Report
    for other, latin in LATIN_LOOKALIKES:
        assert name_key(f"q{other}q-Swiglu") == name_key(f"q{latin}q-swiglu"), other
    assert name_key("mambё") == name_key("mambë") != name_key("mambe")   # accents kept
    assert name_key("Νame") == "name" and name_key("νame") == "vame"
    assert name_key("λ-mixer") != name_key("l-mixer")
    reports = [Report(f"mad-quick/{i}.json", board="mad-quick", name=name,
                      architecture_hash=f"{i:016x}")
               for i, name in enumerate(["mamba", "mаmba", "МАМВА", "ΜΑΜΒΑ", "мамва",
                                         "мамба", "mamba-2"])]
    duplicate_entries(reports)
    assert [r.name for r in reports if r.failures] == ["mаmba", "МАМВА", "ΜΑΜΒΑ", "мамва"]
    assert "Cyrillic or Greek lookalikes" in reports[1].failures[0][1]


#: provenance a forger might write, and the schema path each is refused at
HOSTILE_PROVENANCE = [
    (("environment", "device_name"), "H200\x1b[2J\x1b]0;owned\x07"),
    (("environment", "torch"), "2.5\rFORGED"),
    (("environment", "torch"), "2.5\n"),                 # Python's $ matched before it
    (("environment", "plugins"), [42]),
    (("environment", "plugins"), [{"name": 7, "distribution": None, "version": None}]),
    (("environment", "plugins"), [{"name": "x" * 100_000, "distribution": None,
                                   "version": None}]),
    (("environment", "notes"), "y" * 1_000_000),
    (("environment", "notes"), {"deep": [[[{"a": 1}]]]}),
    (("madbench_version",), "0.1.0\x1b[2J"),
    (("created_at",), "yesterday"),
    (("command",), "madbench eval\x1b[2J --arch mamba"),
    (("submit_command",), "madbench leaderboard submit\r\x1b[1A"),
    (("name",), "mamba\n"),
]


def test_provenance_is_printable_bounded_and_typed():
    """Each of these passed the schema (environment and its plugins were hardly checked, a
    pattern's $ matched before a final line break). Now each is refused with one line at its
    path; the entries on the boards still pass."""
    from madbench.leaderboard.schema import schema_errors
    entry = json.loads((REPO / "leaderboards" / "mad-quick" / "mamba.json").read_text())
    assert schema_errors(entry) == []
    for path, value in HOSTILE_PROVENANCE:
        forged = copy.deepcopy(entry)
        node = forged
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        errors = schema_errors(forged)
        where = ".".join(path)
        assert errors and all(e.startswith(f"at {where}") and "\n" not in e
                              and "\x1b" not in e and len(e) < 400 for e in errors), \
            (where, errors)


def test_validate_prints_no_control_character_of_a_submission(tmp_path):
    """A submission's text in validate's report (its name, its madbench version in a
    warning, the schema's reasons) never reaches the terminal as control characters."""
    from click.testing import CliRunner

    from madbench.cli import main
    entry = json.loads((REPO / "leaderboards" / "mad-quick" / "mamba.json").read_text())
    entry["name"] = "mamba\x1b[2J\rFORGED: valid"
    entry["madbench_version"] = "0.1.0\x1b]0;owned\x07"
    entry["environment"]["device_name"] = "\x1b[31mH200"
    (tmp_path / "e.json").write_text(json.dumps(entry))
    result = CliRunner().invoke(main, ["leaderboard", "validate", str(tmp_path / "e.json")])
    assert result.exit_code == 3, result.output
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f]", result.output), result.output
    for where in ("name", "madbench_version", "environment.device_name"):
        assert f"FAIL schema: at {where}:" in result.output


def test_report_and_compare_print_no_control_character_of_a_record(tmp_path, trial):
    """A run directory is text from whoever made it: an architecture named with a terminal
    title sequence, a carriage return and a line break in its records. Before, `report` and
    `compare` printed it as it is (the title rewritten, a forged line); now escaped."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from madbench.cli import main
    run_dir = tmp_path / "run"
    shutil.copytree(trial[0].parent / "run", run_dir)
    for f in (run_dir / "records").glob("*.parquet"):
        rows = pq.read_table(f).to_pylist()
        for r in rows:
            r["arch_name"] = "mh-attention\x1b]0;owned\x07\r\nFORGED: all valid"
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(f)), f)
    for command in ("report", "compare"):
        result = CliRunner().invoke(main, [command, str(run_dir)])
        assert result.exit_code == 0, result.output
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f]", result.output), result.output
        assert "FORGED" in result.output
        assert not any(line.startswith("FORGED") for line in result.output.splitlines())


def test_submit_refuses_a_command_that_is_not_one_printable_line(tmp_path, trial):
    """--command is checked by the schema's rule before anything is built: a pasted
    multi-line command is a usage error (exit 2, one line), not a file the schema refuses
    after the rebuild."""
    from click.testing import CliRunner

    from madbench.cli import main
    result = CliRunner().invoke(main, [
        "leaderboard", "submit", str(trial[0].parent / "run"), "--name", "t", "--out",
        str(tmp_path / "t.json"), "--command", "madbench eval \\\n  --arch mh-attention"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: --command:") and "printable text" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "t.json").exists()

def boards_root(tmp_path):
    """A leaderboards folder with the repository's README and an empty mad-paper board."""
    import shutil
    root = tmp_path / "leaderboards"
    (root / "mad-paper").mkdir(parents=True)
    shutil.copy(REPO / "leaderboards" / "README.md", root / "README.md")
    return root


def lb(*args):
    from click.testing import CliRunner
    from madbench.cli import main
    return CliRunner().invoke(main, ["leaderboard", *map(str, args)])


def one_line_error(result, text):
    assert result.exit_code == 3, result.output
    assert text in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_a_linked_board_folder_is_refused_not_followed(tmp_path, doc):
    """A pull request that makes ``mad-quick`` (or a folder in a board) a symbolic link to a
    folder outside the checkout: validate, render and agree refuse the link in one line and
    read nothing behind it. Before, all three read the files there as the board's entries
    (validate passed this one, render ranked it, agree compared it)."""
    from helpers import as_board_entry
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "entry.json").write_text(json.dumps(as_board_entry(doc, "mad-quick")))
    root = boards_root(tmp_path)
    (root / "mad-quick").symlink_to(outside)
    (root / "mad-paper" / "sub").symlink_to(outside)               # a link inside a board
    result = lb("validate", root, "--json")
    assert result.exit_code == 3, result.output
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert sorted(files) == [str(root / "mad-paper" / "sub"), str(root / "mad-quick")]
    assert all("a symbolic link" in f["failures"][0]["reason"] for f in files.values())
    for command in (["render", "--root", root], ["agree", "--root", root]):
        one_line_error(lb(*command), ": a symbolic link, not followed")
    assert "entry.json" not in (root / "README.md").read_text()


def test_a_link_or_a_folder_in_a_board_folder_stops_render_and_agree_as_validate_fails_it(
        tmp_path, doc):
    """What validate fails in a board folder, render and agree stop at (one line, exit 3):
    a link to a folder, whatever its name (render and agree ignored ``mad-quick/sub`` while
    validate failed it), and a folder named ``*.json`` (validate found no submission, exit 2,
    while render stopped at it)."""
    from helpers import as_board_entry
    root = boards_root(tmp_path)
    (root / "mad-quick").mkdir()
    (root / "mad-quick" / "e.json").write_text(json.dumps(as_board_entry(doc, "mad-quick")))
    (root / "mad-quick" / "sub").symlink_to(tmp_path)
    for command in (["render", "--root", root], ["agree", "--root", root]):
        one_line_error(lb(*command), "mad-quick/sub: a symbolic link, not followed")
    (root / "mad-quick" / "sub").unlink()
    (root / "mad-quick" / "e.json").unlink()
    (root / "mad-quick" / "d.json").mkdir()
    result = lb("validate", root)
    assert result.exit_code == 3 and "d.json: not a regular file" in result.stdout, \
        result.output
    one_line_error(lb("render", "--root", root), "d.json: not a regular file")


def refused_by_every_board_command(root, shown, text):
    """render and agree over ``root`` stop in one line saying ``text``; validate of its
    mad-quick folder fails the file (shown as ``shown``) as input, exit 3."""
    for command in (["render", "--root", root], ["agree", "--root", root]):
        one_line_error(lb(*command), text)
    result = lb("validate", root / "mad-quick")
    assert result.exit_code == 3 and f"FAIL input: {root}/mad-quick/{shown}: {text}" \
        in result.stdout, result.output


@pytest.mark.parametrize("name", ["new\nline.json", "evil\u202enosj.json", "esc\x1b[2Jx.json"])
def test_a_file_name_with_control_characters_is_refused(tmp_path, name):
    """A name that a pull request's file list, a terminal or a log shows as another (a line
    break, a right-to-left override, an escape sequence) is refused by validate, render and
    agree in one line, the name shown escaped; before, all three took it as an entry."""
    root = boards_root(tmp_path)
    (root / "mad-quick").mkdir()
    (root / "mad-quick" / name).write_text("{}")
    shown = name.encode("unicode_escape").decode("ascii")
    text = "the file name holds control characters or bidirectional overrides"
    refused_by_every_board_command(root, shown, text)
    assert (root / "mad-quick" / "plain name.json").write_text("{}") and \
        text not in lb("validate", root / "mad-quick" / "plain name.json").output


def test_submit_refuses_to_write_below_a_board_folder(tmp_path, trial):
    """A file in a folder below a board's folder fails validate whatever it holds, so submit
    refuses that --out before building anything (it wrote the file)."""
    out = tmp_path / "leaderboards" / "mad-quick" / "sub" / "e.json"
    out.parent.mkdir(parents=True)
    result = lb("submit", trial[0].parent / "run", "--name", "t", "--out", out)
    assert result.exit_code == 2 and "in a folder below the mad-quick board folder" in \
        result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


def test_submit_refuses_to_write_a_file_name_with_control_characters(tmp_path, trial):
    """submit stops at such an --out before building anything (exit 2, one line), rather than
    writing a file that validate and render refuse."""
    out = tmp_path / "a\nb.json"
    result = lb("submit", trial[0].parent / "run", "--name", "t", "--out", out)
    assert result.exit_code == 2 and result.output.startswith(f"Error: --out {tmp_path}/a\\nb"), \
        result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_a_checkout_under_a_linked_folder_is_read_as_usual(tmp_path, doc):
    """Only links below the folder named count: a checkout reached through a link (/tmp on
    macOS) renders and lists its entries."""
    from helpers import as_board_entry
    from madbench.leaderboard.render import render
    from madbench.leaderboard.validate import submission_files
    root = boards_root(tmp_path / "real")
    (root / "mad-quick").mkdir()
    (root / "mad-quick" / "e.json").write_text(json.dumps(as_board_entry(doc, "mad-quick")))
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    alias = tmp_path / "alias" / "leaderboards"
    assert render(alias) is True and "(mad-quick/e.json)" in (root / "README.md").read_text()
    assert submission_files([alias]) == [alias / "mad-quick" / "e.json"]


def not_utf8_file(folder, content):
    """``folder/\\xff.json`` holding ``content`` (skipped where names must be UTF-8)."""
    import os
    name = os.fsencode(folder) + b"/\xff.json"
    try:
        with open(name, "wb") as fh:
            fh.write(content)
    except OSError:
        pytest.skip("this file system refuses a name that is not UTF-8")
    return Path(os.fsdecode(name))


def test_a_file_name_that_is_not_utf8_is_an_invalid_board_file(tmp_path, doc):
    """A board entry named by the byte 0xff: render, agree and validate refuse it in one line
    (exit 3), the name shown as bytes. Before, render ended in 'Error: UnicodeEncodeError'
    (exit 1; the README link cannot hold the name), agree ranked it and validate passed it."""
    from helpers import as_board_entry
    root = boards_root(tmp_path)
    (root / "mad-quick").mkdir()
    not_utf8_file(root / "mad-quick", json.dumps(as_board_entry(doc, "mad-quick")).encode())
    text = "the file name b'\\xff.json' is not UTF-8 text"
    refused_by_every_board_command(root, "\\udcff.json", text)
