"""`madbench scaling validate`: an honest submission passes; tampered ones fail for the right
reason."""
import copy
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from madbench.cli import MadbenchGroup
from madbench.cli.scaling_cmd import scaling_group
from madbench.model import LanguageModel
from madbench.scaling.flops import architecture_flops
from madbench.scaling.frontiers import band_at, load_frontiers, write_frontiers
from madbench.scaling.shapes import family_spec
from madbench.scaling.validate import Submission, validate

torch.set_num_threads(1)
cli = MadbenchGroup(name="madbench", commands={"scaling": scaling_group})

FAMILY, SEQ, SHA = "transformer++", 64, "ab" * 32
SIZES = [(32, 2), (48, 2), (64, 2), (64, 3), (96, 3), (128, 4), (160, 5)]
BUDGETS = [3e11, 1e12, 3e12]


def law(n, d):
    """A made-up loss law whose IsoFLOP vertices fall inside SIZES at BUDGETS."""
    return 1.0 + 60.0 / n ** 0.35 + 60.0 / d ** 0.35


@pytest.fixture(scope="module")
def honest():
    """Runs whose FLOPs and parameters are what the declared architectures give."""
    rows = []
    for w, d in SIZES:
        spec = family_spec(FAMILY, w, d)
        per_token = architecture_flops(spec, SEQ, 256).training_per_token
        with torch.device("meta"):
            params = sum(p.numel() for p in LanguageModel(spec, 256).parameters())
        for c in BUDGETS:
            tokens = c / per_token
            rows.append({"arch": FAMILY, "width": w, "depth": d, "params": params,
                         "tokens": tokens, "flops": per_token * tokens, "budget": c,
                         "loss": law(params, tokens), "seq_len": SEQ, "corpus": "toy",
                         "corpus_sha256": SHA, "architecture": spec.to_dict()})
    return rows


@pytest.fixture(scope="module")
def frontiers(honest, tmp_path_factory):
    root = tmp_path_factory.mktemp("frontiers")
    write_frontiers(honest, root, ["madbench scaling run --arch transformer++ ..."],
                    bootstrap=20)
    return root


def submission(rows, noise=0.0, seed=1):
    rows = copy.deepcopy(rows)
    rng = np.random.default_rng(seed)
    for r in rows:
        r["loss"] *= 1 + noise * rng.standard_normal()
    return Submission(FAMILY, SHA, rows, family=FAMILY, seq_len=SEQ)


def test_stored_frontier_layout_and_band(honest, frontiers):
    (doc,) = load_frontiers(frontiers)
    assert doc["arch"] == FAMILY and doc["corpus_sha256"] == SHA
    assert doc["commands"] == ["madbench scaling run --arch transformer++ ..."]
    assert (frontiers / "toy" / "transformer++" / "points.parquet").is_file()
    assert all(b["valid"] for b in doc["budgets"])
    loss, lo, hi = band_at(doc, 1e12)
    assert lo <= loss <= hi
    assert band_at(doc, 1e14) is None                  # outside the stored budgets


def test_runs_with_empty_budget_cells_are_grouped_by_flops(honest, tmp_path):
    """A table whose budget column is empty (CSV, other tools) gives the same groups as one
    with budgets: the runs are grouped by FLOPs instead (no crash in frontier or validate)."""
    blank = [{**r, "budget": None} for r in honest]
    (doc,) = [json.loads(p.read_text())
              for p in write_frontiers(blank, tmp_path, [], bootstrap=5)[0].glob("*.json")]
    assert [round(b["budget"], -9) for b in doc["budgets"]] == [round(c, -9) for c in BUDGETS]
    assert all(b["valid"] for b in doc["budgets"])


def test_honest_submission_is_valid(honest, frontiers):
    verdict = validate(submission(honest, noise=0.002), frontiers)
    assert verdict.valid, verdict.reasons
    assert len(verdict.groups) == 3
    assert all(c["ratio"] == pytest.approx(1.0, abs=0.01) for c in verdict.comparisons)


def test_runs_declared_by_width_and_depth_are_recomputed_too(honest, frontiers):
    rows = [{k: v for k, v in r.items() if k != "architecture"} for r in honest]
    assert validate(submission(rows), frontiers).valid


def test_understated_flops_are_rejected(honest, frontiers):
    rows = copy.deepcopy(honest)
    for r in rows:
        r["flops"] *= 0.7                             # e.g. 6ND without the attention terms
    verdict = validate(submission(rows), frontiers)
    assert not verdict.valid
    assert verdict.reasons and all(r.startswith("understates FLOPs") for r in verdict.reasons)
    assert "-30.0%" in verdict.reasons[0]


def test_points_below_the_stored_frontier_are_rejected(honest, frontiers):
    rows = copy.deepcopy(honest)
    for r in rows:
        if r["budget"] == 1e12:
            r["loss"] *= 0.9
    verdict = validate(submission(rows), frontiers)
    assert not verdict.valid
    assert any(r.startswith("frontier off the stored one: at C=1e+12") and "below" in r
               for r in verdict.reasons)
    assert any(r.startswith("point below the stored frontier: C=1e+12")
               for r in verdict.reasons)
    assert not any("C=3e+11" in r or "C=3e+12" in r for r in verdict.reasons)


def test_a_point_off_its_isoflop_curve_is_flagged(honest, frontiers):
    rows = copy.deepcopy(honest)
    bumped = next(r for r in rows if r["budget"] == 3e12 and r["width"] == 64
                  and r["depth"] == 3)
    bumped["loss"] *= 1.12
    verdict = validate(submission(rows), frontiers)
    (warning,) = verdict.warnings            # a warning: real curves are only roughly parabolic
    assert warning.startswith(f"point off its IsoFLOP curve: C=3e+12, N={bumped['params']:.3g} "
                              f"has loss {bumped['loss']:.4g}, the other points of the group "
                              "predict ")
    predicted = float(warning.rsplit(" ", 1)[1])   # the parabola through the others ~ the law
    assert predicted == pytest.approx(law(bumped["params"], bumped["tokens"]), rel=0.005)


def test_groups_without_an_interior_vertex_are_rejected(honest, frontiers):
    small = [r for r in honest if r["width"] <= 48 or r["budget"] != 1e12]
    verdict = validate(submission(small), frontiers)
    assert "IsoFLOP group C=1e+12: 2 model size(s); a parabola needs 3" in verdict.reasons
    edge = [r for r in honest if not (r["budget"] == 3e11 and r["width"] <= 64)]
    reasons = validate(submission(edge), frontiers).reasons
    assert any(r.startswith("IsoFLOP group C=3e+11: vertex at") and "below the smallest" in r
               for r in reasons)


def test_other_corpus_is_not_compared(honest, frontiers):
    sub = submission(honest)
    sub.corpus_sha256 = "cd" * 32
    verdict = validate(sub, frontiers)
    assert verdict.valid and not verdict.comparisons
    assert any("no stored frontier for corpus" in n for n in verdict.notes)


def test_validate_command_exit_codes_and_json(honest, frontiers, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"arch": FAMILY, "corpus_sha256": SHA, "family": FAMILY,
                                "seq_len": SEQ, "runs": honest}))
    ok = CliRunner().invoke(cli, ["scaling", "validate", str(good), "--frontiers",
                                  str(frontiers)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"{FAMILY}: VALID (21 runs, 3 budget groups)")
    tampered = copy.deepcopy(honest)
    tampered[0]["flops"] *= 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arch": FAMILY, "corpus_sha256": SHA, "seq_len": SEQ,
                               "runs": tampered}))
    res = CliRunner().invoke(cli, ["scaling", "validate", str(bad), "--frontiers",
                                   str(frontiers), "--json"])
    assert res.exit_code == 3
    doc = json.loads(res.stdout)
    assert doc["valid"] is False and doc["reasons"][0].startswith("understates FLOPs: run 1")
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    res = CliRunner().invoke(cli, ["scaling", "validate", str(broken)])
    assert res.exit_code == 3 and "at least 'arch' and 'runs'" in res.stderr


def test_stored_frontiers_are_found_from_any_directory(tmp_path, monkeypatch):
    """Outside the repository, the default is the checkout's folder, not an empty relative
    path that silently compares with nothing."""
    from madbench.scaling.frontiers import CHECKOUT_ROOT, default_root
    monkeypatch.chdir(tmp_path)
    assert default_root() == CHECKOUT_ROOT and CHECKOUT_ROOT.is_dir()


def _with_mixer(honest, mixer, tmp_path):
    """The honest submission with its first layer's mixer replaced, as a file."""
    rows = copy.deepcopy(honest)
    for r in rows:
        r["architecture"]["layers"][0]["mixer"] = mixer
    path = tmp_path / "sub.json"
    path.write_text(json.dumps({"arch": FAMILY, "corpus_sha256": SHA, "seq_len": SEQ,
                                "runs": rows}))
    return path


def test_validation_imports_no_code_the_submission_names(honest, frontiers, tmp_path,
                                                          monkeypatch):
    """A submission whose architecture names a module of the working directory: the module is
    not imported (its import-time side effect does not happen), the verdict is invalid with
    the reason, and --trust-code is what imports it."""
    marker = tmp_path / "imported"
    (tmp_path / "evilmix.py").write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "class Mixer(torch.nn.Module):\n"
        "    def __init__(self, dim, **kw):\n"
        "        super().__init__(); self.lin = torch.nn.Linear(dim, dim)\n"
        "    def forward(self, x):\n"
        "        return self.lin(x)\n")
    path = _with_mixer(honest, "evilmix:Mixer", tmp_path)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["scaling", "validate", str(path), "--frontiers",
                                   str(frontiers), "--json"])
    assert res.exit_code == 3 and not marker.exists()
    reasons = json.loads(res.stdout)["reasons"]
    assert reasons[0].startswith("not rebuilt (untrusted code): 'evilmix'")
    assert sum("untrusted" in r for r in reasons) == 1          # said once, not per run
    monkeypatch.syspath_prepend(str(tmp_path))                   # as PYTHONPATH=. would
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    res = CliRunner().invoke(cli, ["scaling", "validate", str(path), "--frontiers",
                                   str(frontiers), "--json", "--trust-code"])
    assert marker.exists() and "untrusted" not in res.stdout


def test_trusted_code_that_leaks_is_invalid(honest, frontiers, tmp_path, monkeypatch):
    """--trust-code rebuilds the mixer: one that leaks the next token (checked here by hand)
    fails eval's causality check, as 'scaling run' would have refused to train it."""
    (tmp_path / "peekmix.py").write_text(
        "import torch\n"
        "class Peek(torch.nn.Module):\n"
        "    def __init__(self, dim, **kw):\n"
        "        super().__init__(); self.lin = torch.nn.Linear(dim, dim)\n"
        "    def forward(self, x):\n"
        "        return self.lin(torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from peekmix import Peek
    x = torch.randn(1, 8, 32)
    y = x.clone()
    y[:, 1] += 1
    assert not torch.allclose(Peek(32)(x)[:, 0], Peek(32)(y)[:, 0])     # it leaks
    path = _with_mixer(honest, "peekmix:Peek", tmp_path)
    res = CliRunner().invoke(cli, ["scaling", "validate", str(path), "--frontiers",
                                   str(frontiers), "--json", "--trust-code"])
    assert res.exit_code == 3, res.output
    causal = [r for r in json.loads(res.stdout)["reasons"] if r.startswith("causality")]
    assert len(causal) == 1 and causal[0].startswith(
        "causality: layer 0 (peekmix:Peek) is not causal: output at position 0 changed")


@pytest.mark.parametrize("arch", ["hyena", "striped-hyena"])
def test_stored_frontier_points_recompute_their_flops_and_parameters(arch):
    """The stored runs name the layer they ran (the modal-filter Hyena, ``hyena-modal`` since
    the bundled ``hyena`` became mad-lab's): their FLOPs and parameters recompute. Their one
    reason is the 1e15 group that is not convex (documented in docs/scaling.md)."""
    from madbench.scaling.frontiers import CHECKOUT_ROOT
    from madbench.scaling.validate import load_submission
    sub = load_submission(CHECKOUT_ROOT / "kjv" / arch / "points.parquet")
    verdict = validate(sub, None)
    assert verdict.reasons == ["IsoFLOP group C=1e+15: not convex (loss curve bends down)"]


def test_runs_labelled_with_another_budget_are_rejected(honest, frontiers):
    """Swapping the budget labels of two groups used to pass (and `fit` then found a loss that
    rises with compute): a label must lie within the grouping factor of the run's FLOPs."""
    rows = copy.deepcopy(honest)
    for r in rows:
        r["budget"] = {BUDGETS[0]: BUDGETS[2], BUDGETS[2]: BUDGETS[0]}.get(r["budget"],
                                                                         r["budget"])
    verdict = validate(submission(rows), frontiers)
    assert not verdict.valid
    assert verdict.reasons[0].startswith("budget label: 14 run(s) lie outside 1.25x")


@pytest.mark.parametrize("arch, corpus, text", [
    ("..", "toy", "'..' cannot name a frontier folder"),
    (FAMILY, "..", "'..' cannot name a frontier folder"),
])
def test_frontier_folders_stay_inside_the_root(honest, tmp_path, arch, corpus, text):
    from madbench.errors import UsageError
    rows = [{**r, "arch": arch, "corpus": corpus} for r in honest]
    with pytest.raises(UsageError, match=text):
        write_frontiers(rows, tmp_path / "out" / "deep", bootstrap=2)
    assert not any((tmp_path / "out").rglob("*.json"))


def test_two_architectures_that_clean_to_one_folder_are_refused_before_writing(honest,
                                                                              tmp_path):
    from madbench.errors import UsageError
    rows = [{**r, "arch": "a/b"} for r in honest] + [{**r, "arch": "a_b"} for r in honest]
    with pytest.raises(UsageError, match="would share the frontier folder"):
        write_frontiers(rows, tmp_path, bootstrap=2)
    assert not any(tmp_path.rglob("*.parquet"))


def test_a_submission_outside_the_stored_range_says_it_was_not_compared(honest, frontiers):
    rows = [r for r in copy.deepcopy(honest) if r["budget"] == BUDGETS[0]]
    for r in rows:                      # the same runs, labelled and scaled to 100x the budget
        r["budget"] *= 100
        r["tokens"] *= 100
        r["flops"] *= 100
    verdict = validate(submission(rows), frontiers)
    assert not [c for c in verdict.comparisons if c["arch"] == FAMILY]
    assert any(n.startswith(f"no budget of the submission lies inside the stored frontier of "
                            f"'{FAMILY}'") for n in verdict.notes)


def test_runs_of_two_corpora_are_not_fitted_as_one_curve(honest, tmp_path):
    """A table holding one architecture's runs on two corpora (or sequence lengths) used to be
    averaged into one set of IsoFLOP curves without a word."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from madbench.leaderboard.schema import InvalidSubmission
    from madbench.scaling.validate import load_submission
    other = [{**r, "corpus_sha256": "cd" * 32, "loss": r["loss"] * 0.6} for r in honest]
    rows = [{**r, "architecture": json.dumps(r["architecture"])} for r in honest + other]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mixed.parquet")
    with pytest.raises(InvalidSubmission, match="mix corpus_sha256 values"):
        load_submission(tmp_path / "mixed.parquet")
    res = CliRunner().invoke(cli, ["scaling", "fit", str(tmp_path / "mixed.parquet")])
    assert res.exit_code == 2 and "mix corpus_sha256 values" in res.output


@pytest.mark.parametrize("doc, code, text", [
    ({"runs": [1, 2, 3]}, 3, "run 1: a run is an object of columns, not int"),
    ({"family": FAMILY, "runs": [{"width": "abc", "depth": 2}]}, 3,
     "run 1 is malformed: ValueError"),
    ({"runs": [{"architecture": "not json"}]}, 3, "run 1: architecture: not valid JSON"),
    # a table's architecture column is JSON text, read as a submission file is: before,
    # 'Error: RecursionError' (exit 1), and NaN and a duplicate key passed
    ({"runs": [{"architecture": "[" * 100_000}]}, 3,
     "run 1: architecture: nested more than 32 levels deep"),
    ({"runs": [{"architecture": '{"dim": 64, "layers": [{"mixer": "swiglu", "kwargs": '
                                '{"inner": NaN}}]}'}]}, 3, "NaN is not a JSON number"),
    ({"runs": [{"architecture": '{"dim": 64, "layers": [{"mixer": "os:system", "kwargs": {}}],'
                                ' "layers": [{"mixer": "swiglu", "kwargs": {}}]}'}]}, 3,
     "run 1: architecture: refused: duplicate key 'layers'"),
    # the spec checked as a board entry's (before: 'Error: TypeError: unhashable type', exit 1)
    ({"runs": [{"architecture": {"dim": 64, "layers": [{"mixer": ["a"], "kwargs": {}}]}}]}, 3,
     "run 1: architecture at layers[0].mixer: expected string, got array"),
    ({"family": FAMILY, "runs": [{"width": 32, "depth": 2, "budget": "abc"}]}, 3,
     "run 1: budget='abc' must be a positive number"),
    ({"vocab_size": "big", "runs": [{}]}, 3, "'vocab_size' or 'distributions' is malformed"),
])
def test_malformed_submissions_get_a_reason_not_a_python_error(doc, code, text, tmp_path):
    """They used to end in 'Error: ValueError ...' (or TypeError, AttributeError), exit 1; then
    some in exit 2, though a malformed submission is an invalid one (exit 3, as for
    'leaderboard validate')."""
    numbers = {"params": 1000, "tokens": 1e6, "flops": 1e9, "loss": 2.0}
    runs = [{**numbers, **r} if isinstance(r, dict) else r for r in doc.pop("runs")]
    path = tmp_path / "sub.json"
    path.write_text(json.dumps({"arch": "x", "seq_len": SEQ, **doc, "runs": runs}))
    res = CliRunner().invoke(cli, ["scaling", "validate", str(path)])
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("name, content, text", [
    ("deep.json", "[" * 100_000, "nested more than"),
    ("nan.json", '{"arch": "x", "runs": [{"loss": NaN}]}', "NaN is not a JSON number"),
    ("text.json", "not json", "not valid JSON"),
    ("empty.csv", "", "not a readable CSV table: Empty CSV file"),
    ("binary.csv", b"\x00\xff\xfe,\x01\n\x89PNG,\x1b[2J,\x00\n", "not a readable CSV table"),
    ("cut.parquet", b"PAR1\x15\x04", "not a readable Parquet table"),
    ("header.csv", "arch,params,tokens,flops,loss\n", "no runs"),
])
def test_a_malformed_submission_file_is_invalid_in_one_line(name, content, text, tmp_path):
    """Deep nesting ended in RecursionError and a table that does not parse in 'Error:
    ArrowInvalid', both exit 1; a missing file stays a usage error (exit 2)."""
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    res = CliRunner().invoke(cli, ["scaling", "validate", str(path)])
    assert res.exit_code == 3, res.output
    assert text in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output and "\x1b" not in res.output
    res = CliRunner().invoke(cli, ["scaling", "validate", str(tmp_path / "absent.json")])
    assert res.exit_code == 2


@pytest.mark.parametrize("where", ["absolute", "parent", "link", "linked-folder"])
def test_the_runs_table_a_submission_names_is_a_file_of_its_own_folder(where, tmp_path):
    """A submission naming a table outside its folder (an absolute path, '..', a symbolic
    link, a linked folder) is invalid in one line, and nothing of that file is read. Before,
    any CSV of the machine was read, and the validator printed a cell of it."""
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("arch,params,tokens,flops,loss\nx,1,1,1,TOPSECRET\n")
    folder = tmp_path / "sub"
    folder.mkdir()
    name = {"absolute": str(secret), "parent": "../elsewhere/secret.csv", "link": "runs.csv",
            "linked-folder": "tables/secret.csv"}[where]
    (folder / "runs.csv").symlink_to(secret)
    (folder / "tables").symlink_to(secret.parent)
    (folder / "sub.json").write_text(json.dumps({"arch": "x", "runs": name}))
    res = CliRunner().invoke(cli, ["scaling", "validate", str(folder / "sub.json")])
    assert res.exit_code == 3, res.output
    assert "which is not a file in the submission's folder" in res.stderr
    assert "TOPSECRET" not in res.output and len(res.stderr.strip().splitlines()) == 1
    (folder / "own.csv").write_text("arch,params,tokens,flops,loss\nx,1,1,1,TOPSECRET\n")
    (folder / "own.json").write_text(json.dumps({"arch": "x", "runs": "own.csv"}))
    res = CliRunner().invoke(cli, ["scaling", "validate", str(folder / "own.json")])
    assert res.exit_code == 3 and "row 1 has loss='TOPSECRET'" in res.stderr  # its own: read


def test_a_run_whose_size_or_length_is_out_of_bounds_is_invalid_before_anything_is_built(
        honest, frontiers):
    """A declared size or sequence length beyond scaling.limits is the submission's fault: one
    reason, and no model of that size built for FLOPs, parameters or causality."""
    from madbench.scaling.limits import MAX_DEPTH, MAX_SEQ_LEN
    for change, text in (({"depth": MAX_DEPTH + 1}, f"model size 32x{MAX_DEPTH + 1} is out of"),
                         ({"seq_len": MAX_SEQ_LEN + 1}, "seq_len 131,073 is out of bounds")):
        rows = copy.deepcopy(honest)
        rows[0].pop("architecture")
        rows[0].update(change)
        verdict = validate(submission(rows), frontiers)
        assert not verdict.valid
        assert [r for r in verdict.reasons if text in r], verdict.reasons


@pytest.mark.parametrize("content, text", [
    ("[" * 100_000, "nested more than 32 levels deep"),          # before: RecursionError, exit 1
    ('{"arch": "x", "corpus_sha256": "ab", "budgets": [{"budget": 1e12, "valid": true, '
     '"loss_opt": NaN, "loss_band": [NaN, NaN]}]}', "NaN is not a JSON number"),   # was read
    ('{"arch": "x", "corpus_sha256": "ab", "arch": "y", "budgets": []}',
     "duplicate key 'arch'"),                                    # the last 'arch' was read
    (b'{"arch": "\xff"}', "not UTF-8 text (byte 10)"),          # before: UnicodeDecodeError
    (None, "over the 4,194,304-byte limit; refused before reading"),   # read whole before
    ("link", "reached through the symbolic link"),             # read what the link points at
    # well-formed JSON of the wrong shape (before: TypeError or KeyError, exit 1)
    ('{"arch": "x", "corpus_sha256": "ab", "budgets": 5}', "'budgets' is not a list"),
    ('{"corpus_sha256": "ab", "budgets": []}', "'arch' is missing"),
    ('{"arch": "x", "corpus_sha256": "ab", "budgets": [{"budget": 1e12, "valid": true, '
     '"loss_opt": 1.0, "loss_band": [1]}]}', "budgets[0].loss_band is not two numbers"),
    ('{"arch": "x", "corpus_sha256": "ab", "budgets": [{"budget": 1e12, "valid": true, '
     '"loss_opt": "low", "loss_band": [0.9, 1.1]}]}', "budgets[0].loss_opt is not a number"),
    ('{"arch": "x", "corpus_sha256": "ab", "budgets": [{"budget": -1, "valid": true}]}',
     "budgets[0].budget is not a positive number"),
], ids=["deep", "nan", "duplicate-key", "not-utf8", "huge", "linked-folder", "budgets-int",
        "no-arch", "short-band", "text-loss", "negative-budget"])
def test_a_malformed_stored_frontier_is_refused_in_one_line(content, text, tmp_path):
    """A pull request may add or edit a stored frontier: it is read as a submission file is
    (madbench.leaderboard.schema), and a malformed one stops 'scaling validate' in one line,
    exit 3 (as render stops at a malformed board file)."""
    from madbench.leaderboard.schema import MAX_BYTES
    root = tmp_path / "frontiers"
    folder = root / "c" / "a"
    folder.mkdir(parents=True)
    if content == "link":                             # a corpus folder linked out of root
        (tmp_path / "outside" / "a").mkdir(parents=True)
        (tmp_path / "outside" / "a" / "frontier.json").write_text('{"arch": "x"}')
        (root / "elsewhere").symlink_to(tmp_path / "outside")
    elif content is None:
        with open(folder / "frontier.json", "wb") as fh:         # sparse: nothing written
            fh.truncate(MAX_BYTES + 1)
    else:
        (folder / "frontier.json").write_bytes(
            content if isinstance(content, bytes) else content.encode())
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({"arch": FAMILY, "family": FAMILY, "seq_len": SEQ,
                               "corpus_sha256": "ab", "runs": [
                                   {"width": 32, "depth": 2, "params": 1000, "tokens": 1e6,
                                    "flops": 1e9, "loss": 2.0}]}))
    res = CliRunner().invoke(cli, ["scaling", "validate", str(sub), "--frontiers", str(root)])
    assert res.exit_code == 3, res.output
    assert res.stderr.startswith("Error: stored frontier ") and text in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not res.stdout


def test_a_stored_frontier_without_a_valid_budget_is_named_so(honest, tmp_path):
    """The note said 'no budget of the submission lies inside the stored frontier (1e+09 to
    3e+09)' for a submission at exactly those budgets, when none of them was valid there."""
    rows = copy.deepcopy(honest)
    flat = [{**r, "loss": 2.0 - 0.01 * math.log(r["params"]) ** 2} for r in rows]   # concave
    write_frontiers(flat, tmp_path, bootstrap=20)
    verdict = validate(submission(rows), tmp_path)
    assert any(n == f"the stored frontier of '{FAMILY}' has no valid budget (none with an "
               "interior vertex and a band): not compared" for n in verdict.notes), verdict.notes


def test_a_text_budget_cell_is_named_by_its_row(honest, tmp_path):
    """A CSV whose budget column one text cell made text was refused as 'run 1:
    budget='3e+11' must be a positive number', naming a good cell."""
    import csv
    rows = [{k: r[k] for k in ("arch", "params", "tokens", "flops", "loss", "budget")}
            for r in honest]
    rows[3]["budget"] = "x"
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = CliRunner().invoke(cli, ["scaling", "validate", str(tmp_path / "t.csv")])
    assert res.exit_code == 3 and "row 4 has budget='x'" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1
