"""report, compare and plot read stored records of several architectures."""
import json

import pytest
from click.testing import CliRunner

from madbench.cli import main
from madbench.store import ResultsStore

FAST = ["--tasks", "memorization", "--preset", "smoke", "--set", "epochs=1", "--no-progress"]


ARCHS = ("mh-attention", "mh-gated-linear-attention")


def eval_each(root, args):
    """One run directory per architecture of ARCHS under ``root``, evaluated with ``args``."""
    for arch in ARCHS:
        res = CliRunner().invoke(main, ["eval", "--arch", arch, *args,
                                        "--run-dir", str(root / arch)])
        assert res.exit_code == 0, res.output
    return [root / arch for arch in ARCHS]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    eval_each(root, FAST)
    return root


def test_compare_shows_each_architecture_with_its_stored_score(two_runs):
    dirs = [str(two_runs / a) for a in ("mh-attention", "mh-gated-linear-attention")]
    res = CliRunner().invoke(main, ["compare", *dirs, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    for d, arch in zip(dirs, ("mh-attention", "mh-gated-linear-attention")):
        (record,) = ResultsStore(d).records()
        assert doc[f"{arch} [smoke (non-standard)]"]["tasks"]["memorization"] == \
            record["accuracy"]
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


CURVES = ["--tasks", "memorization", "--settings", "baseline,vocab_size=512", "--preset",
          "smoke", "--set", "epochs=1", "--set", "max_train=32", "--set", "max_test=32",
          "--no-progress"]


@pytest.fixture(scope="module")
def curve_runs(tmp_path_factory):
    """Two architectures, memorization at its baseline (vocabulary 256) and at 512."""
    return eval_each(tmp_path_factory.mktemp("curves"), CURVES)


def test_difficulty_curves_are_the_stored_accuracies_against_the_variable(curve_runs):
    from madbench.curves import difficulty_curves
    from madbench.records import group_records
    from madbench.store import load_records
    from madbench.tasks import get_task
    groups = list(group_records(load_records(curve_runs)).values())
    curves = difficulty_curves(groups)
    assert list(curves) == ["memorization"] and list(curves["memorization"]) == ["vocab_size"]
    baseline_vocab = get_task("memorization").baseline["vocab_size"]
    for run_dir, arch in zip(curve_runs, ("mh-attention", "mh-gated-linear-attention")):
        stored = {r["setting"]: r["accuracy"] for r in ResultsStore(run_dir).records()}
        assert curves["memorization"]["vocab_size"][f"{arch} [smoke (non-standard)]"] == sorted(
            [(float(baseline_vocab), stored["baseline"]), (512.0, stored["vocab_size=512"])])


def test_plot_curves_writes_a_png(curve_runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    res = CliRunner().invoke(main, ["plot", *map(str, curve_runs), "--kind", "curves",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_curves_of_baseline_only_runs_says_why_not(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    res = CliRunner().invoke(main, ["plot", str(two_runs / "mh-attention"), "--kind",
                                    "curves", "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 2 and "only baseline settings" in res.output


def test_html_report_renders_in_a_headless_browser(curve_runs, tmp_path):
    """The page holds the tables, both figures and the provenance; where Chromium is
    installed, the DOM the browser builds holds them too and a screenshot is taken."""
    pytest.importorskip("matplotlib")
    import importlib.util
    from pathlib import Path
    html = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", *map(str, curve_runs), "--html", str(html)])
    assert res.exit_code == 0, res.output
    page = html.read_text()
    assert page.count("<svg") == 2 and "Difficulty curves" in page and "Provenance" in page
    assert "mean of 1 task" in page and "MAD score" not in page
    assert "<script" not in page and "<link" not in page and " src=" not in page   # no network
    spec = importlib.util.spec_from_file_location(
        "screenshot", Path(__file__).resolve().parent.parent / "docs" / "screenshot.py")
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    browser = shot.find_chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    dom = shot.dump_dom(browser, html)
    assert shot.page_problems(dom, ["mh-attention", "mh-gated-linear-attention"]) == []
    png = tmp_path / "report.png"
    shot.screenshot(browser, html, png, height=1200)
    assert png.stat().st_size > 10_000


def test_two_runs_of_one_architecture_under_other_overrides_stay_two_curves(two_runs,
                                                                           curve_runs):
    """Same name, same preset, other overrides: two series, told apart by protocol hash."""
    from madbench.records import group_records, series_labels
    from madbench.store import load_records
    groups = list(group_records(load_records([two_runs / "mh-attention",
                                              curve_runs[0]])).values())
    labels = series_labels(groups)
    assert sorted(labels) == sorted(
        f"mh-attention [smoke (non-standard)] {g[0]['protocol_hash'][:6]}" for g in groups)


def test_compare_tells_apart_runs_of_one_name_and_keeps_each_in_json(two_runs, tmp_path):
    """One name, three results: the standard preset, an overridden one, and the overridden one
    with other mixer kwargs. compare labelled all three 'mh-attention [smoke]' (JSON kept
    one); now each has its own label, as plot names it, non-standard ones marked."""
    dirs = [two_runs / "mh-attention", tmp_path / "heads2", tmp_path / "standard"]
    for run_dir, args in ((dirs[1], [*FAST, "--mixer-kwargs", '{"num_heads": 2}']),
                          (dirs[2], ["--tasks", "memorization", "--preset", "smoke",
                                     "--no-progress"])):
        res = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", *args, "--run-dir",
                                        str(run_dir)])
        assert res.exit_code == 0, res.output
    (r16,), (r2,), (std,) = (ResultsStore(d).records() for d in dirs)
    assert r16["arch_hash"] != r2["arch_hash"] and r16["protocol_hash"] == r2["protocol_hash"]
    expected = {f"mh-attention [smoke (non-standard)] {r16['arch_hash'][:6]}": r16,
                f"mh-attention [smoke (non-standard)] {r2['arch_hash'][:6]}": r2,
                "mh-attention [smoke]": std}
    res = CliRunner().invoke(main, ["compare", *map(str, dirs), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == set(expected)
    for name, record in expected.items():
        assert doc[name]["tasks"]["memorization"] == record["accuracy"]
        assert doc[name]["architecture"]["hash"] == record["arch_hash"]
    table = CliRunner().invoke(main, ["compare", *map(str, dirs), "--format", "markdown"])
    header = table.output.splitlines()[0]
    assert all(name in header for name in expected), table.output


def test_report_heads_each_result_with_the_name_compare_gives_it(two_runs, curve_runs):
    """One architecture under two protocols (smoke with other overrides): report printed two
    identical headers 'mh-attention — protocol smoke (non-standard)'; now each block is headed
    by its compare label, which carries the protocol hash of its own records."""
    from madbench.store import load_records
    dirs = [str(two_runs / "mh-attention"), str(curve_runs[0])]
    hashes = {r["protocol_hash"][:6] for r in load_records(dirs)}
    assert len(hashes) == 2
    res = CliRunner().invoke(main, ["report", *dirs])
    assert res.exit_code == 0, res.output
    titles = [l.split(" — ")[0] for l in res.output.splitlines()
              if l.startswith("mh-attention")]
    assert sorted(titles) == sorted(f"mh-attention [smoke (non-standard)] {h}" for h in hashes)
    compare = json.loads(CliRunner().invoke(main, ["compare", *dirs, "--format",
                                                   "json"]).output)
    assert set(titles) == set(compare)


def test_html_page_heads_each_result_with_the_name_compare_gives_it(two_runs, curve_runs,
                                                                   tmp_path):
    """One architecture under two protocols: the page's per-result sections and provenance
    were both headed 'mh-attention [smoke]', telling the two apart nowhere but in the table
    side by side; now each is headed by its own label, the protocol hash included."""
    from html import unescape
    import re
    from madbench.store import load_records
    dirs = [str(two_runs / "mh-attention"), str(curve_runs[0])]
    hashes = {r["protocol_hash"][:6] for r in load_records(dirs)}
    page = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", *dirs, "--html", str(page)])
    assert res.exit_code == 0, res.output
    heads = [re.sub(r"<[^>]+>", "", unescape(h))
             for h in re.findall(r"<h[23]>(.*?)</h[23]>", page.read_text())]
    expected = sorted(f"mh-attention [smoke (non-standard)] {h}" for h in hashes)
    assert sorted(h for h in heads if h.startswith("mh-attention")) == sorted(expected * 2)


def test_scores_keep_three_decimals_and_counts_their_plural():
    """1.0 prints as 1.000 beside 0.083 (not as 1), and one run is '1 run'."""
    from madbench.report import render
    summary = {"architecture": {"name": "x"}, "protocol": {"name": "smoke"}, "metric": "accuracy",
               "runs": 1, "tasks": {"memorization": 1.0, "compression": 0.083},
               "mad_score": 0.5415, "flags": []}
    text = render(summary, "table")
    assert "1.000" in text and "0.083" in text and "1 run\n" in text and "1 runs" not in text
    assert "mean of 2 tasks" in text


def test_json_output_is_standard_json_when_a_run_diverged():
    """A diverged run's loss is NaN: `--format json` and `--output` wrote `NaN`, which strict
    JSON parsers (JavaScript's JSON.parse) refuse. Now null."""
    import json
    import math
    from madbench.report import json_text
    doc = {"loss": math.nan, "runs": [{"loss": math.inf, "accuracy": 0.0}], "ok": (1, -math.inf)}
    text = json_text(doc)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "runs": [{"loss": None, "accuracy": 0.0}],
                                "ok": [1, None]}


def test_a_partial_sweep_is_said_to_be_partial(two_runs):
    """A sweep with configurations missing (a record deleted, a run cut) was reported like a
    complete one: its best is over what was trained."""
    import json
    from madbench.report import render
    res = CliRunner().invoke(main, ["report", str(two_runs / ARCHS[0]), "--format", "json"])
    doc = json.loads(res.stdout)
    assert "partial" not in render(doc, "table")                  # smoke's grid: complete
    doc["protocol"]["lrs"] = [*doc["protocol"]["lrs"], 1e-2]      # one configuration short
    text = render(doc, "table")
    assert "partial: 1 of 1 (setting, seed) sweeps hold fewer than the protocol's 2" in text


def test_eval_heads_its_result_with_the_name_report_gives_it(two_runs, curve_runs, tmp_path):
    """eval headed its table 'mh-attention — protocol smoke (non-standard),' where report,
    compare and plot name the same runs 'mh-attention [smoke (non-standard)]' (with the
    protocol's hash where the run directory holds another group of that name). Now eval names
    its result as 'report RUN_DIR' does (stored runs: nothing is trained here)."""
    import shutil

    def titles(res):
        assert res.exit_code == 0, res.output
        return [line.split(" — metric ")[0] for line in res.stdout.splitlines()
                if line.startswith("mh-attention")]

    run_dir = tmp_path / "runs"
    shutil.copytree(two_runs / "mh-attention", run_dir)
    evaluate = ["eval", "--arch", "mh-attention", *FAST, "--run-dir", str(run_dir)]
    alone = titles(CliRunner().invoke(main, evaluate))
    assert alone == titles(CliRunner().invoke(main, ["report", str(run_dir)])) == [
        "mh-attention [smoke (non-standard)]"]
    # the same architecture under other overrides in the same run directory
    for path in (curve_runs[0] / "records").iterdir():
        shutil.copy(path, run_dir / "records")
    (mine,) = ResultsStore(two_runs / "mh-attention").records()
    beside = titles(CliRunner().invoke(main, evaluate))
    assert beside == [f"mh-attention [smoke (non-standard)] {mine['protocol_hash'][:6]}"]
    assert beside[0] in titles(CliRunner().invoke(main, ["report", str(run_dir)]))


def test_eval_names_its_result_from_the_records_it_read_once(two_runs, curve_runs, tmp_path,
                                                             monkeypatch):
    """eval read its whole run directory a second time at the end only to name its result
    (0.5 s at 396 records); it names it from the records it read after training, beside
    another group of the same name as before (stored runs: nothing is trained here)."""
    import shutil
    run_dir = tmp_path / "runs"
    shutil.copytree(two_runs / "mh-attention", run_dir)
    for path in (curve_runs[0] / "records").iterdir():
        shutil.copy(path, run_dir / "records")
    (mine,) = ResultsStore(two_runs / "mh-attention").records()
    reads, records = [], ResultsStore.records
    monkeypatch.setattr(ResultsStore, "records",
                        lambda self: reads.append(self.root) or records(self))
    res = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", *FAST,
                                    "--run-dir", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith(
        f"mh-attention [smoke (non-standard)] {mine['protocol_hash'][:6]} — metric")
    assert len(reads) == 1


def test_a_task_with_fewer_settings_than_the_protocol_s_grid_is_said_to_be_partial(tmp_path):
    """A sweep stopped early (or narrowed with --settings) scored a task over the settings it
    held with nothing said: 0.277 read as fuzzy recall's score over 1 of 11 settings."""
    args = ["--tasks", "memorization", "--settings", "baseline", "--preset", "smoke", "--set",
            "settings=all", "--set", "epochs=1", "--set", "max_train=32", "--set",
            "max_test=32", "--no-progress", "--run-dir", str(tmp_path / "run")]
    res = CliRunner().invoke(main, ["eval", "--arch", "mh-attention", *args])
    assert res.exit_code == 0, res.output
    # memorization's grid in the paper: the baseline and five other vocabulary sizes
    line = ("partial: fewer settings than the protocol's grid (memorization 1 of 6); a task's "
            "score is the mean over the settings trained")
    assert line in res.stdout.splitlines()
    report = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert line in report.stdout.splitlines()
    last = CliRunner().invoke(main, ["compare", str(tmp_path / "run")]).stdout.splitlines()[-1]
    assert last.startswith("partial: mh-attention [") and last.endswith(line[len("partial"):])
    page = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--html",
                                     str(page)]).exit_code == 0
    assert "partial: fewer settings than the protocol&#x27;s grid (memorization 1 of 6)" in \
        page.read_text()


def test_json_says_what_a_partial_result_lacks(tmp_path):
    """A script reading `--format json` (report, compare, eval) or eval's `--output` could not
    tell 1 of memorization's 6 settings from all 6: the text said partial, the JSON nothing."""
    run_dir, out = tmp_path / "run", tmp_path / "result.json"
    res = CliRunner().invoke(main, [
        "eval", "--arch", "mh-attention", "--tasks", "memorization", "--settings", "baseline",
        "--preset", "smoke", "--set", "settings=all", "--set", "epochs=1", "--set",
        "max_train=32", "--set", "max_test=32", "--no-progress", "--run-dir", str(run_dir),
        "--format", "json", "--output", str(out)])
    assert res.exit_code == 0, res.output
    # the paper's memorization grid: six vocabulary sizes; one trained, one lr and wd (smoke)
    want = {"memorization": {"trained": 1, "grid": 6}}
    for doc in (json.loads(res.stdout), json.loads(out.read_text()), json.loads(
            CliRunner().invoke(main, ["report", str(run_dir), "--format", "json"]).stdout)):
        assert doc["partial"]["settings"] == want
        assert doc["partial"]["sweeps"] == {"short": 0, "of": 1, "configurations": 1}
        assert doc["partial"]["notes"] == [
            "fewer settings than the protocol's grid (memorization 1 of 6); a task's score is "
            "the mean over the settings trained"]
    (column,) = json.loads(CliRunner().invoke(main, ["compare", str(run_dir), "--format",
                                                     "json"]).stdout).values()
    assert column["partial"]["settings"] == want


def test_json_of_a_whole_grid_has_partial_null(curve_runs):
    for command in ("report", "compare"):
        res = CliRunner().invoke(main, [command, str(curve_runs[0]), "--format", "json"])
        doc = json.loads(res.stdout)
        doc = doc if command == "report" else next(iter(doc.values()))
        assert "partial" in doc and doc["partial"] is None


def test_a_whole_grid_is_not_called_partial(curve_runs, tmp_path):
    """smoke's grid is each task's baseline: memorization at 256 and 512 covers it."""
    for command in ("report", "compare"):
        res = CliRunner().invoke(main, [command, *map(str, curve_runs)])
        assert res.exit_code == 0 and "partial" not in res.stdout
    page = tmp_path / "report.html"
    CliRunner().invoke(main, ["report", *map(str, curve_runs), "--html", str(page)])
    assert "partial" not in page.read_text()


DIVERGES = '''
import torch
from torch import nn


class Diverges(nn.Module):
    """Causal and finite when checked (eval mode); NaN in training, so every run diverges."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        y = self.proj(x)
        return y * float("nan") if self.training else y

    def state_size(self, seq_len):
        return 2048
'''


def test_a_sweep_whose_every_run_diverged_is_said_to_have_diverged(tmp_path, monkeypatch):
    """Every run diverged and the table read 'memorization 0.000' with nothing else said
    (the DIVERGED progress lines aside, which --no-progress hides); now a line says so."""
    (tmp_path / "diverging_mixer.py").write_text(DIVERGES)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = tmp_path / "run"
    res = CliRunner().invoke(main, ["eval", "--arch", "diverging_mixer:Diverges",
                                    "--tasks", "memorization", "--preset", "smoke", "--set",
                                    "epochs=1", "--set", "max_train=32", "--set", "max_test=32",
                                    "--no-progress", "--run-dir", str(run_dir)])
    assert res.exit_code == 0, res.output
    records = ResultsStore(run_dir).records()
    assert records and all(r["diverged"] for r in records)
    line = (f"diverged: every run of 1 of 1 (setting, seed) sweeps diverged (memorization "
            "baseline); each scores 0")
    assert line in res.stdout.splitlines()
    assert line in CliRunner().invoke(main, ["report", str(run_dir)]).stdout.splitlines()
    last = CliRunner().invoke(main, ["compare", str(run_dir)]).stdout.splitlines()[-1]
    assert last.startswith("diverged: diverging_mixer:Diverges [") and \
        last.endswith(line[len("diverged"):])
    page = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(run_dir), "--html",
                                     str(page)]).exit_code == 0
    assert f'<p class="flag">{line}</p>' in page.read_text()


def test_report_refuses_a_format_it_would_ignore_beside_html(two_runs, tmp_path):
    """`report --format json --html page.html` wrote the page and printed 'wrote page.html'
    where the JSON was asked for; now it is a usage error, and nothing is written."""
    page = tmp_path / "page.html"
    res = CliRunner().invoke(main, ["report", str(two_runs / "mh-attention"), "--format",
                                    "json", "--html", str(page)])
    assert res.exit_code == 2 and "--format json and --html" in res.output
    assert not page.exists()
    res = CliRunner().invoke(main, ["report", str(two_runs / "mh-attention"), "--html",
                                    str(page)])
    assert res.exit_code == 0 and page.read_text().startswith("<!DOCTYPE html>")
