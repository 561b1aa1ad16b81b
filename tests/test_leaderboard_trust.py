"""Issue #14, as a hostile contributor: validating a submission runs no code it names, a forged
entry cannot pass, and validation is bounded. Submissions are forged the way a forger would:
every hash, run key and aggregate recomputed (``reseal``)."""
import copy
import json
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


def reseal(doc):
    """What a forger does after editing: recompute the architecture hash, every run key, the
    best-of-sweep entries and the aggregates, so that every static consistency check holds."""
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
