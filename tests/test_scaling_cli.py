"""`madbench scaling fit | correlate | frontier | flops` on simulated runs."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from madbench.cli import MadbenchGroup
from madbench.cli.scaling_cmd import scaling_group

cli = MadbenchGroup(name="madbench", commands={"scaling": scaling_group})
EPOCH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def runs(offset=0.0, E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658):
    """IsoFLOP grids at C = 6ND around the closed-form optimum of the law, loss + offset."""
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    out = []
    for c in (1e18, 1e19, 1e20, 1e21):
        n_opt = G * (c / 6) ** (beta / (alpha + beta))
        for n in n_opt * np.logspace(-1, 1, 7):
            d = c / (6 * n)
            out.append({"params": n, "tokens": d, "flops": c,
                        "loss": E + A / n ** alpha + B / d ** beta + offset})
    return out


def write_csv(path, rows_by_arch):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["arch", "params", "tokens", "flops", "loss"])
        w.writeheader()
        for arch, rows in rows_by_arch.items():
            for r in rows:
                w.writerow({"arch": arch, **r})


def test_fit_json_gives_both_approaches_per_architecture(tmp_path):
    path = tmp_path / "runs.csv"
    write_csv(path, {"a": runs(), "b": runs(offset=0.1)})
    res = CliRunner().invoke(cli, ["scaling", "fit", str(path), "--json", "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc["archs"]) == {"a", "b"}
    a3 = doc["archs"]["a"]["approach3"]
    for key, value in EPOCH.items():
        assert a3[key] == pytest.approx(value, rel=1e-3)
        assert "_interval" in json.dumps(a3) and f"{key}_interval" in a3
    a2 = doc["archs"]["a"]["approach2"]
    expected_a = EPOCH["beta"] / (EPOCH["alpha"] + EPOCH["beta"])
    assert a2["a"] == pytest.approx(expected_a, abs=0.01)
    assert a2["a_interval"] and a2["b_interval"]
    assert len(a2["groups"]) == 4 and all(g["valid"] for g in a2["groups"])


def test_fit_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "runs.csv"
    write_csv(path, {"a": runs()})
    png = tmp_path / "fit.png"
    res = CliRunner().invoke(cli, ["scaling", "fit", str(path), "--approach", "2",
                                   "--bootstrap", "20", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "Approach 2: N* ~ C^0.51" in res.stdout and "Approach 3" not in res.stdout
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_correlate_ranks_and_predicts(tmp_path):
    offsets = {"w": 0.0, "x": 0.05, "y": 0.1, "z": 0.2}
    scores = {"w": 0.9, "x": 0.8, "y": 0.7, "z": 0.5}       # loss = L0 + 0.5 (0.9 - score)
    path = tmp_path / "runs.csv"
    write_csv(path, {a: runs(offset=o) for a, o in offsets.items()})
    mad = tmp_path / "mad.json"
    mad.write_text(json.dumps(scores))
    res = CliRunner().invoke(cli, ["scaling", "correlate", str(path), "--mad", str(mad),
                                   "--predict", "0.6", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["budget"] == 1e21
    assert doc["spearman"] == pytest.approx(-1.0)
    # 4 points in order: 2 of the 24 orderings rank as perfectly (p 0 before, by the t
    # approximation); scipy's own exact permutation test gives the same
    from scipy import stats
    exact = stats.permutation_test((doc["losses"],), lambda a: stats.spearmanr(
        doc["mad_scores"], a).statistic, permutation_type="pairings", n_resamples=np.inf)
    assert doc["spearman_p"] == pytest.approx(2 / 24) == exact.pvalue
    assert doc["pearson"] == pytest.approx(-1.0)
    assert doc["fit"]["slope"] == pytest.approx(-0.5, rel=1e-6)
    base = doc["losses"][doc["archs"].index("w")]
    assert doc["predictions"][0]["predicted_loss"] == pytest.approx(base + 0.15, rel=1e-6)


def test_correlate_needs_three_architectures(tmp_path):
    path = tmp_path / "runs.csv"
    write_csv(path, {"a": runs(), "b": runs(offset=0.1)})
    mad = tmp_path / "mad.csv"
    mad.write_text("arch,mad_score\na,0.5\nb,0.6\n")
    res = CliRunner().invoke(cli, ["scaling", "correlate", str(path), "--mad", str(mad)])
    assert res.exit_code == 2 and "needs 3" in res.stderr


def test_frontier_command_records_its_commands(tmp_path):
    rows = [{**r, "arch": "a", "corpus": "toy", "corpus_sha256": "ef" * 32} for r in runs()]
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "isoflop.parquet")
    res = CliRunner().invoke(cli, ["scaling", "frontier", str(tmp_path / "isoflop.parquet"),
                                   "--out", str(tmp_path / "fr"), "--bootstrap", "20",
                                   "--command", "madbench scaling run --arch a"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "fr" / "toy" / "a" / "frontier.json").read_text())
    assert doc["commands"] == [
        "madbench scaling run --arch a",
        f"madbench scaling frontier {tmp_path / 'isoflop.parquet'} --out {tmp_path / 'fr'} "
        "--bootstrap 20"]
    assert doc["corpus_sha256"] == "ef" * 32 and len(doc["budgets"]) == 4


def test_frontier_warns_about_budgets_without_a_vertex(tmp_path):
    """Losses that bend down with size at every budget (concave: no vertex) used to give a
    frontier with every budget invalid and only its path printed; now one warning line,
    exit 0. The honest runs of the same grid give none."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    honest = [{**r, "arch": "a", "corpus": "toy", "corpus_sha256": "ef" * 32} for r in runs()]
    concave = [{**r, "arch": "b", "loss": 2 * honest[0]["loss"] - r["loss"]} for r in honest
               if r["flops"] <= 1e19] + [{**r, "arch": "b"} for r in honest if r["flops"] > 1e19]
    for name, rows in (("honest", honest), ("bent", concave)):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
    out = ["--out", str(tmp_path / "fr"), "--bootstrap", "20"]
    res = CliRunner().invoke(cli, ["scaling", "frontier", str(tmp_path / "honest.parquet"),
                                   *out])
    assert res.exit_code == 0 and res.stderr == "", res.output
    res = CliRunner().invoke(cli, ["scaling", "frontier", str(tmp_path / "bent.parquet"), *out])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "fr" / "toy" / "b" / "frontier.json").read_text())
    assert [b["valid"] for b in doc["budgets"]] == [False, False, True, True]
    assert res.stderr == (
        f"Warning: {tmp_path / 'fr' / 'toy' / 'b'}: 2 of 4 budgets invalid (C=1e+18: not "
        "convex (loss curve bends down); C=1e+19: not convex (loss curve bends down))\n")
    only = [r for r in concave if r["flops"] == 1e18]         # every budget invalid
    pq.write_table(pa.Table.from_pylist(only), tmp_path / "all.parquet")
    res = CliRunner().invoke(cli, ["scaling", "frontier", str(tmp_path / "all.parquet"), *out])
    assert res.exit_code == 0 and res.stderr.count("\n") == 1, res.output
    assert "1 of 1 budget invalid (C=1e+18: not convex" in res.stderr
    assert res.stderr.endswith("; Approach 2: 0 budget group(s) with an interior vertex; the "
                               "power laws need 2\n")


def test_flops_command_prints_terms():
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "hyena", "--size", "32x1",
                                   "--seq-len", "64", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["method"] == "analytic" and doc["layers"][0]["terms"]["fft_conv"] == \
        10 * 64 * 6 * 32
    assert doc["training_per_token"] == pytest.approx(3 * doc["forward"] / 64)


def test_fit_state_frontier_option_recovers_the_frontier_exponent(tmp_path):
    """Per budget, models whose perplexity is 400 M^-0.28 on the state frontier of all runs
    (and worse ones off it): `--state-frontier COLUMN` must report c = -0.28."""
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "params", "tokens", "flops", "loss", "state"])
        for c in (1e18, 1e19):
            for k, m in enumerate((1e3, 1e4, 1e5, 1e6)):
                w.writerow([f"arch{k}", 1e6, c / 6e6, c, np.log(400 * m ** -0.28), m])
                w.writerow([f"arch{k}", 2e6, c / 12e6, c, np.log(400 * m ** -0.28) + 0.1, m])
    res = CliRunner().invoke(cli, ["scaling", "fit", str(path), "--approach", "2",
                                   "--bootstrap", "20", "--state-frontier", "state", "--json"])
    assert res.exit_code == 0, res.output
    states = json.loads(res.stdout)["state_frontier"]
    assert set(states) == {"1e+18", "1e+19"}
    for fit in states.values():
        assert fit["exponent"] == pytest.approx(-0.28)
        assert fit["frontier_archs"] == ["arch0", "arch1", "arch2", "arch3"]


def test_run_without_a_fitting_size_says_which_budget_is_too_small_or_too_large(tmp_path):
    """Each budget's reason, from the ladder's own runs: 1e9 FLOPs gives the smallest model a
    single step; 1e99 gives the largest more tokens per parameter than any IsoFLOP run uses."""
    out = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e9,1e99",
                                   "--run-dir", str(tmp_path / "r"), "--dry-run"])
    assert out.exit_code == 2
    line = out.output.strip().splitlines()[-1]
    assert "1e+09 is too small for the size ladder" in line
    assert "would train fewer than 20 steps" in line
    assert "1e+99 is too large for the size ladder" in line and "over 1,000" in line
    assert not (tmp_path / "r").exists()                  # refused before anything is written
    # a budget between the limits: small sizes see too many tokens, large ones too few steps
    # (a batch at the bound on tokens per batch, 16,384 x 256)
    out = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e15",
                                   "--batch-size", "16384", "--min-steps", "100", "--dry-run"])
    line = out.output.strip().splitlines()[-1]
    assert out.exit_code == 2 and "1e+15 fits no ladder size" in line
    assert "32x2 to" in line and "over 1,000 tokens" in line and "to 768x16 would train" in line


def test_a_budget_or_size_given_twice_is_planned_once(tmp_path):
    """As eval's lists: 1e10,1e10 with 32x1,32x1,32x2 plans two runs (before: eight rows)."""
    out = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e10,1e10",
                                   "--sizes", "32x1,32x1,32x2", "--seq-len", "64",
                                   "--batch-size", "8", "--device", "cpu", "--run-dir",
                                   str(tmp_path / "r"), "--dry-run"])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines() if line.strip().startswith("1e+10")]
    assert [row[1] for row in rows] == ["32x1", "32x2"]


def test_a_corpus_without_a_validation_sequence_is_refused_before_training(tmp_path):
    """1,200 bytes pass the corpus size check but hold no validation block: the command used
    to train the run and then fail, storing nothing."""
    corpus = tmp_path / "small.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 27)   # 1,215 bytes
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e8",
                                   "--sizes", "16x1", "--seq-len", "16", "--batch-size", "2",
                                   "--corpus", str(corpus), "--device", "cpu", "--run-dir",
                                   str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "its validation split (0 tokens) is shorter than one sequence of 17" in res.output
    assert not list((tmp_path / "run").glob("records/*.parquet"))
    assert "step" not in res.output.lower().split("error")[0]       # nothing trained first


def test_run_help_names_every_family_and_the_ratio_refusal_every_striped_one():
    from madbench.scaling.shapes import FAMILIES, get_family
    from madbench.errors import UsageError
    text = next(p.help for p in scaling_group.commands["run"].params if p.name == "arch")
    assert [name for name in FAMILIES if f"{name}," not in text and f"{name})" not in text] == []
    with pytest.raises(UsageError) as refused:
        get_family("hyena", False, None, "1:3")
    striped = [name for name, f in FAMILIES.items() if f.name.startswith("striped-")]
    assert len(striped) == 5 and all(f"{name}," in str(refused.value) for name in striped)


@pytest.mark.parametrize("command", ["fit", "frontier", "state-optimal"])
def test_too_few_bootstrap_replicates_are_refused_before_any_fit(tmp_path, command):
    """--bootstrap 5 gave a frontier band that missed its own vertex: below the minimum the
    commands refuse, in one line, before reading the runs; 0 (no intervals) stays for fit and
    state-optimal. Each command's help states the minimum the code enforces."""
    from madbench.scaling.limits import MIN_BOOTSTRAP
    path = tmp_path / "runs.csv"
    write_csv(path, {"a": runs()})
    out = ["--out", str(tmp_path / "fr")] if command == "frontier" else []
    res = CliRunner().invoke(cli, ["scaling", command, str(path), *out, "--bootstrap",
                                   str(MIN_BOOTSTRAP - 1)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert f"needs at least {MIN_BOOTSTRAP} replicates" in res.stderr
    assert not (tmp_path / "fr").exists()
    help_text = CliRunner().invoke(cli, ["scaling", command, "--help"]).stdout
    assert f"at least {MIN_BOOTSTRAP}" in " ".join(help_text.split())
    zero = CliRunner().invoke(cli, ["scaling", command, str(path), *out, "--bootstrap", "0"])
    assert ("'--bootstrap'" in zero.stderr) == (command == "frontier"), zero.output


@pytest.mark.parametrize("command", ["fit", "state-optimal", "frontier", "correlate"])
@pytest.mark.parametrize("name, content, text", [
    ("empty.csv", b"", "not a readable CSV table: Empty CSV file"),
    ("binary.csv", b"\x00\xff\xfe,\x01\n\x89PNG,\x1b[2J,\x00\n", "not a readable CSV table"),
    ("cut.parquet", b"PAR1\x15\x04", "not a readable Parquet table"),
])
def test_a_runs_table_that_does_not_parse_is_a_usage_error(tmp_path, command, name, content,
                                                           text):
    """It fell to the generic handler: 'Error: ArrowInvalid: Empty CSV file', exit 1."""
    path = tmp_path / name
    path.write_bytes(content)
    mad = tmp_path / "mad.json"
    mad.write_text('{"a": 0.5, "b": 0.6, "c": 0.7}')
    extra = {"frontier": ["--out", str(tmp_path / "fr")], "correlate": ["--mad", str(mad)]}
    res = CliRunner().invoke(cli, ["scaling", command, str(path), *extra.get(command, [])])
    assert res.exit_code == 2 and text in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "\x1b" not in res.output


@pytest.mark.parametrize("scores, text", [
    ('{"w": 0.6, "x": NaN, "y": 0.4}', "the MAD score of 'x' is nan"),
    ('{"w": 0.6, "x": Infinity, "y": 0.4}', "the MAD score of 'x' is inf"),
    ('{"w": "high", "x": 0.5, "y": 0.4}', "the MAD score of 'w' is 'high'"),
    ('{"w": true, "x": 0.5, "y": 0.4}', "the MAD score of 'w' is True"),
    ('[{"arch": "w", "mad_score": "0.5"}]', "the MAD score of 'w' is '0.5'"),
    ("[" * 100_000, "nested too deeply"),
])
def test_correlate_refuses_a_mad_score_that_is_not_a_finite_number(tmp_path, scores, text):
    """NaN or Infinity ended in six LAPACK lines and 'LinAlgError: SVD did not converge', a
    string in 'ValueError: could not convert', both exit 1."""
    path = tmp_path / "runs.csv"
    write_csv(path, {a: runs(offset=o) for a, o in {"w": 0.0, "x": 0.05, "y": 0.1}.items()})
    mad = tmp_path / "mad.json"
    mad.write_text(scores)
    res = CliRunner().invoke(cli, ["scaling", "correlate", str(path), "--mad", str(mad)])
    assert res.exit_code == 2 and text in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("score", ["nan", "inf", "-inf"])
def test_correlate_refuses_a_prediction_for_a_score_that_is_not_finite(tmp_path, score):
    """--predict nan printed 'predicted loss nan'."""
    path = tmp_path / "runs.csv"
    write_csv(path, {a: runs(offset=o) for a, o in {"w": 0.0, "x": 0.05, "y": 0.1}.items()})
    mad = tmp_path / "mad.json"
    mad.write_text('{"w": 0.9, "x": 0.8, "y": 0.7}')
    res = CliRunner().invoke(cli, ["scaling", "correlate", str(path), "--mad", str(mad),
                                   "--predict", score])
    assert res.exit_code == 2 and "is not a finite number" in res.stderr, res.output


def test_sizes_and_lengths_out_of_bounds_are_refused_up_front(tmp_path):
    """'flops --size 100000000x100000000' counted one layer at a time until killed (64x100000:
    12 s), and 'run --seq-len 100000000 --dry-run' exited 3 (refused by a check) with an
    out-of-memory message from the causality check. The bounds (scaling.limits) are refused in
    one line with exit 2, before anything is planned or written; the bounds themselves pass."""
    from madbench.scaling.limits import MAX_DEPTH, MAX_SEQ_LEN, MAX_WIDTH
    for size in (f"64x{MAX_DEPTH + 1}", f"{MAX_WIDTH + 1}x2", "4x2", "64x0"):
        res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "hyena", "--size", size])
        assert res.exit_code == 2 and f"model size {size} is out of bounds" in res.stderr
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "hyena", "--size",
                                   f"{MAX_WIDTH}x{MAX_DEPTH}", "--seq-len", str(MAX_SEQ_LEN),
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["layers"]) == 2 * MAX_DEPTH
    # every Hyena layer's FFT term, 10 L log2(L) D, as docs/scaling.md gives it
    assert doc["layers"][0]["terms"]["fft_conv"] == 10 * MAX_SEQ_LEN * 17 * MAX_WIDTH
    for args in (["--seq-len", str(MAX_SEQ_LEN + 1)], ["--sizes", f"32x{MAX_DEPTH + 1}"]):
        res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e11",
                                       "--run-dir", str(tmp_path / "r"), "--dry-run", *args])
        assert res.exit_code == 2 and "out of bounds" in res.stderr + res.stdout \
            or "not in the range" in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_flops_table_prints_each_count_whole():
    """The table printed 524290 for the 524,288 FLOPs of embedding and head (a '.4e' string
    that tabulate read back as a number): every count is printed whole."""
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "transformer++", "--size",
                                   "32x1", "--seq-len", "16"])
    assert res.exit_code == 0, res.output
    d, length, vocab, inner, heads = 32, 16, 256, 32, 2      # head size 16: half the width
    attention = (6 * length * d * inner + 4 * length ** 2 * inner + 2 * heads * length ** 2
                 + 2 * length * inner * d)
    glu = 6 * length * d * 80                                # 8d/3 to a multiple of 16
    lines = {line.split("  ")[0]: line for line in res.stdout.splitlines()}
    assert f" {4 * length * d * vocab:,} " in lines["embedding + head"] + " "
    assert f" {attention:,} " in lines["0 mh-attention"] and attention == 164_864
    assert f" {glu:,} " in lines["1 swiglu"] + " "


def test_dry_run_prints_the_tokens_each_run_trains(tmp_path):
    """The plan printed 13200 tokens for a run of 103 steps of 4 x 32 (13,184)."""
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(bytes(range(256)) * 400)
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "transformer++", "--budgets",
                                   "1e9", "--sizes", "16x1", "--seq-len", "32", "--batch-size",
                                   "4", "--corpus", str(corpus), "--device", "cpu",
                                   "--run-dir", str(tmp_path / "r"), "--dry-run"])
    assert res.exit_code == 0, res.output
    row = next(line.split() for line in res.stdout.splitlines() if line.strip()[:5] == "1e+09")
    steps = int(row[6])
    assert row[7] == f"{steps * 4 * 32:,}" and steps == 103


@pytest.mark.parametrize("name", ["fit.txt", "fit"])
def test_fit_refuses_a_plot_file_matplotlib_cannot_write_before_fitting(tmp_path, name):
    """'--plot fit.txt' fitted every architecture and then failed in matplotlib: 'Error:
    ValueError: Format 'txt' is not supported', exit 1."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "runs.csv"
    write_csv(path, {"a": runs()})
    res = CliRunner().invoke(cli, ["scaling", "fit", str(path), "--plot", str(tmp_path / name)])
    assert res.exit_code == 2 and "matplotlib cannot write" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("command, column, cell, text", [
    (["fit", "--params-column", "arch"], "arch", None, "has arch='a'; arch must be a positive"),
    (["fit", "--params-column", "nep"], "nep", "0", "has nep=0.0; nep must be a positive"),
    (["fit", "--state-frontier", "state"], "state", "big", "has state='big'; state must be"),
    (["state-optimal", "--state", "state"], "state", "big", "has state='big'; state must be"),
    (["fit"], "budget", "x", "row 3 has budget='x'; budget must be a positive number"),
    (["state-optimal", "--state", "state"], "budget", "-1", "row 3 has budget=-1"),
])
def test_a_column_a_fit_reads_that_is_no_positive_number_is_a_usage_error(
        tmp_path, command, column, cell, text):
    """A text cell in --params-column, a state column or budget ended in 'ValueError: could
    not convert string to float' (exit 1), a 0 in LAPACK lines and 'LinAlgError'; a negative
    budget was fitted as a group of its own. One line, exit 2, naming the cell (in a column
    that one text cell made text, that cell, not the first)."""
    rows = [{"arch": "a", **r, "budget": r["flops"], "nep": r["params"], "state": r["params"]}
            for r in runs()]
    if cell is not None:
        rows[2][column] = cell
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = CliRunner().invoke(cli, ["scaling", command[0], str(path), "--bootstrap", "0",
                                   *command[1:]])
    assert res.exit_code == 2 and text in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name, scores, text", [
    ("mad.csv", "arch,mad_score\nw,0.9\nx,0.8\ny,0.7\nw,0.1\n", "'w' has more than one"),
    ("mad.json", '{"w": 0.9, "x": 0.8, "y": 0.7, "w": 0.1}', "holds the key 'w' twice"),
    ("mad.json", '[{"arch": "w", "mad_score": 0.9}, {"arch": "w", "mad_score": 0.1}]',
     "'w' has more than one"),
    ("mad.csv", "arch,mad_score\nw,0.9\nx,high\ny,0.7\n", "the MAD score of 'x' is 'high'"),
])
def test_correlate_refuses_two_scores_for_one_architecture(tmp_path, name, scores, text):
    """A second score for an architecture silently replaced the first; a CSV cell that is no
    number was reported as the first row's (the column is then text whole)."""
    path = tmp_path / "runs.csv"
    write_csv(path, {a: runs(offset=o) for a, o in {"w": 0.0, "x": 0.05, "y": 0.1}.items()})
    mad = tmp_path / name
    mad.write_text(scores)
    res = CliRunner().invoke(cli, ["scaling", "correlate", str(path), "--mad", str(mad)])
    assert res.exit_code == 2 and text in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_flops_lists_exact_depths_up_to_the_largest_depth_a_size_may_have():
    """1:11 printed 'exact at depths 12, 24, 36, 48', as if no deeper model held the ratio:
    the list stopped at 48, and a short list got no '...'."""
    from madbench.scaling.limits import MAX_DEPTH
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "striped-hyena",
                                   "--attention-ratio", "1:11", "--size", "64x12", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["striping"]["exact_depths"] == list(range(12, MAX_DEPTH + 1, 12))
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "striped-hyena",
                                   "--attention-ratio", "1:11", "--size", "64x12"])
    assert "exact at depths 12, 24, 36, 48, 60, 72, ..." in res.stdout.splitlines()[0]


def test_approach3_with_too_few_runs_says_so_once(tmp_path):
    """'Approach 3: Approach 3 has 5 parameters and needs at least 5 runs, got 2'."""
    path = tmp_path / "runs.csv"
    write_csv(path, {"a": runs()[:2]})
    res = CliRunner().invoke(cli, ["scaling", "fit", str(path), "--approach", "3"])
    assert res.exit_code == 0, res.output
    assert "Approach 3: its 5 parameters need at least 5 runs, got 2" in res.stdout.splitlines()


def test_flops_help_states_the_size_it_counts_without_size():
    """Without --size, 'scaling flops' counted 128x4 and no help or doc said so."""
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "hyena", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["name"] == "hyena@128x4", res.output
    help_text = " ".join(CliRunner().invoke(cli, ["scaling", "flops", "--help"]).stdout.split())
    assert "(default: 128x4, the paper's smallest model)" in help_text


@pytest.mark.parametrize("args, text", [
    (["--device", "cpu", "--precision", "bf16"], "--precision bf16 needs a CUDA device"),
    (["--device", "cpu", "--precision", "bf16", "--dry-run"], "--precision bf16 needs a CUDA"),
    (["--device", "nope", "--dry-run"], "--device 'nope': not a device"),
    (["--device", "mps", "--dry-run"], "--device 'mps': madbench trains on cpu or cuda"),
])
def test_device_and_precision_are_checked_before_the_corpus_loads(tmp_path, args, text):
    """bf16 on the CPU failed only after the corpus loaded and the causality check ran
    (22 s), leaving the run directory made; a dry run took any --device at all. The corpus
    named here does not exist: the placement is refused first."""
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e8",
                                   "--sizes", "16x1", "--corpus", str(tmp_path / "none.txt"),
                                   "--run-dir", str(tmp_path / "r"), *args])
    assert res.exit_code == 2 and text in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_a_dry_run_may_plan_for_a_cuda_device_this_machine_lacks(tmp_path):
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e8",
                                   "--sizes", "16x1", "--corpus", str(tmp_path / "none.txt"),
                                   "--run-dir", str(tmp_path / "r"), "--device", "cuda:7",
                                   "--precision", "bf16", "--dry-run"])
    assert res.exit_code == 2 and "corpus" in res.stderr and "none.txt" in res.stderr, res.output
