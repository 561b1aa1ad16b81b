"""Leaderboard submissions: a submission built from a real (tiny, CPU) run validates; each kind
of tampering fails with the right reason; malformed input gets one line and exit 3; the README
tables are regenerated and a stale table is caught; every file under leaderboards/ validates."""
import copy
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from madbench.cli import main
from madbench.cli.leaderboard_cmd import leaderboard_group
from madbench.architecture import architecture_hash
from madbench.budget import Budget
from madbench.errors import UsageError
from madbench.leaderboard.boards import BOARDS, current_suite_hash, suite_tasks
from madbench.leaderboard.changes import changed_files
from madbench.leaderboard.duplicates import duplicate_entries
from madbench.leaderboard.render import render
from madbench.protocol import PRESETS
from madbench.leaderboard.schema import (ANNOTATIONS, MAX_BYTES, MAX_DEPTH, SUPPORTED_KEYWORDS,
                                         load_schema, nesting_depth, schema_errors)
from madbench.leaderboard.submit import select_group
from madbench.leaderboard.validate import submission_files, validate_file, validate_submission

from helpers import as_board_entry

if "leaderboard" not in main.commands:     # until the lead wires the group into the CLI
    main.add_command(leaderboard_group)

REPO = Path(__file__).resolve().parent.parent
LRS = (0.001, 0.0005)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def doc(trial):
    return copy.deepcopy(trial[1])


def failures(doc, **options):
    options.setdefault("allow_nonstandard", True)
    return validate_submission(doc, **options).failures


def assert_fails(doc, check, text, **options):
    found = failures(doc, **options)
    assert any(c == check and text in r for c, r in found), found


def best_run(doc):
    return max(doc["runs"], key=lambda r: r["accuracy"])


def other_run(doc):
    return min(doc["runs"], key=lambda r: r["accuracy"])


# -- a valid submission --------------------------------------------------------------------
def test_trial_submission_is_valid_and_its_scores_are_the_best_of_its_sweep(trial, doc):
    """Property: with one setting and one seed, the task score and the overall score are the
    highest accuracy among the sweep's runs (a naive max over the rows)."""
    path, _ = trial
    result = cli("leaderboard", "validate", path, "--allow-nonstandard", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["files"][0]
    assert report["valid"] and report["failures"] == []
    assert any("width 32" in c for c in report["checks"])          # the reduced audit is said
    assert len(doc["runs"]) == 2 and {r["lr"] for r in doc["runs"]} == set(LRS)
    top = max(r["accuracy"] for r in doc["runs"])
    assert doc["scores"]["memorization"] == top == doc["scores"]["overall"]
    assert doc["best"][0]["run_key"] == best_run(doc)["run_key"]
    assert doc["suite_hash"] == current_suite_hash()
    assert doc["accounting"]["dynamic_state"] == 2 * 2 * 128 * 128     # two kv-caches at 128
    assert "madbench eval --arch mh-attention" in doc["command"]


@pytest.mark.parametrize("engine", ["plain", "batched", "graphed", "graphed-eager", "compiled",
                                    "compiled-eager"])
def test_runs_of_every_training_engine_can_be_submitted(doc, engine):
    """Records say which engine trained them (graphed is the default on CUDA); each label the
    evaluator writes must pass the submission schema."""
    for run in doc["runs"]:
        run["engine"] = engine
    assert failures(doc) == []


def test_a_nonstandard_protocol_is_invalid_for_a_board(trial):
    result = cli("leaderboard", "validate", trial[0])
    assert result.exit_code == 3
    assert "a non-standard protocol is invalid for a board" in result.output


@pytest.mark.parametrize("engine,chosen,trained_by", [("auto", "plain", "plain"),
                                                      ("graphed", "graphed", "graphed-eager"),
                                                      ("plain", "plain", "plain")])
def test_rerun_of_an_honest_run_agrees(doc, engine, chosen, trained_by):
    """The claims were trained plain on the CPU; a re-run with any engine (auto: plain on a
    CPU; graphed without CUDA: its uncaptured steps) reproduces them and says which it used."""
    report = validate_submission(doc, allow_nonstandard=True, rerun=1, rerun_seed=0,
                                 device="cpu", rerun_engine=engine)
    assert report.valid, report.failures
    assert len(report.reruns) == 1 and report.reruns[0]["difference"] <= 1e-6
    assert report.reruns[0]["engine"] == trained_by
    assert any(f"({chosen} engine)" in c for c in report.checks)


def test_an_unknown_rerun_engine_is_refused_before_anything_runs(trial):
    result = cli("leaderboard", "validate", trial[0], "--rerun", "1", "--rerun-engine", "fast")
    assert result.exit_code == 2 and "'fast' is not one of" in result.output


@pytest.mark.parametrize("args,text", [
    (["--device", "gpu"], "--device 'gpu': not a device"),
    (["--device", "cuda:99"], "--device cuda:99: "),       # no CUDA, or not that many devices
    (["--rerun-max-tokens", "1"], "a re-run budget of 1 tokens per run admits none of its runs"),
    (["--rerun-max-tokens", "0"], "0 is not in the range x>=1"),
    (["--rerun-max-tokens", "nan"], "'nan' is not a valid integer"),
])
def test_bad_rerun_options_are_usage_errors_before_any_work(trial, args, text):
    """Before: the file was read, rebuilt and audited, then marked INVALID ('FAIL rerun'), exit
    3: a misconfigured CI run failed every entry. Now: one line, exit 2, nothing validated."""
    result = cli("leaderboard", "validate", trial[0], "--allow-nonstandard", "--rerun", "1",
                 *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "validating" not in result.output, lines


def test_validate_rerun_reads_each_file_once_and_validates_what_it_checked(tmp_path,
                                                                          monkeypatch):
    """`validate --rerun` read each file twice: once to check the re-run budget, again to
    validate it; a file replaced in between was validated unchecked. A file that changes after
    each read shows it: the budget check and the validation must see one document, the first
    content."""
    from madbench.leaderboard import reruns, schema, validate
    from madbench.leaderboard.report import Report
    path = tmp_path / "entry.json"
    path.write_text('{"name": "first"}')
    real, reads, seen = schema.read_submission, [], []

    def read_then_replace(p):
        reads.append(p)
        doc = real(p)
        Path(p).write_text('{"name": "replaced"}')
        return doc

    for module in (schema, validate):
        monkeypatch.setattr(module, "read_submission", read_then_replace)
    monkeypatch.setattr(reruns, "rerun_budget_problem",
                        lambda doc, budget: seen.append(("budget", doc)))
    monkeypatch.setattr(validate, "validate_submission",
                        lambda doc, path, **options: seen.append(("validated", doc)) or
                        Report(str(path)))
    result = cli("leaderboard", "validate", path, "--rerun", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert len(reads) == 1
    (first, budget_doc), (second, validated_doc) = seen
    assert (first, second) == ("budget", "validated") and budget_doc is validated_doc
    assert validated_doc == {"name": "first"}

def test_a_file_named_twice_is_validated_once_and_a_second_file_is_still_a_duplicate(
        tmp_path, monkeypatch):
    """`validate a.json a.json` (or `a.json ./a.json`, or a folder and a file in it) read the
    file twice and failed the second copy as a duplicate of itself. Each file is now validated
    once; a different file carrying the same architecture, or a link to the file (no
    submission), still fails."""
    from madbench.leaderboard import validate
    from madbench.leaderboard.report import Report
    board = tmp_path / "mad-quick"
    board.mkdir()
    a, b = board / "a.json", board / "b.json"
    a.write_text('{"name": "x"}')
    validated = []
    monkeypatch.setattr(validate, "validate_submission",
                        lambda doc, path, **options: validated.append(str(path)) or
                        Report(str(path), board="mad-quick", architecture_hash="h"))
    monkeypatch.chdir(tmp_path)
    for paths, first in (([a, a], a), ([a, "./mad-quick/a.json"], a), ([board, a], a),
                         (["mad-quick/a.json", f"{board}/../mad-quick/a.json"],
                          "mad-quick/a.json")):    # the spelling given first is the one shown
        validated.clear()
        result = cli("leaderboard", "validate", *paths)
        assert (result.exit_code, validated) == (0, [str(first)]), (paths, result.output)
        assert result.stdout.endswith("1 valid, 0 invalid\n")
    b.write_text(a.read_text())
    validated.clear()
    result = cli("leaderboard", "validate", board, b)
    assert result.exit_code == 3 and validated == [str(a), str(b)], result.output
    assert f"FAIL duplicate: architecture [h] is already on mad-quick as {a}" in result.stdout
    assert result.stdout.endswith("1 valid, 1 invalid\n")
    b.unlink()
    b.symlink_to(a)
    result = cli("leaderboard", "validate", a, b)
    assert result.exit_code == 3 and f"{b}: a symbolic link" in result.stdout, result.output


def test_the_rerun_budget_is_the_validators_usage_error_only_when_the_default_admits_a_run(doc):
    """Independent computation: the entry's one setting trains epochs x steps per epoch x batch
    x length tokens; a budget one token short of that admits no run (a usage error of the
    call), one at it admits the run; with the entry's own protocol larger than any board's
    (the default budget) the entry itself fails, as before (test_a_million_epoch_protocol...)."""
    from madbench.leaderboard.reruns import rerun_budget_problem
    from madbench.protocol import Protocol
    from madbench.sweep import effective_setting
    from madbench.tasks import get_task
    protocol = Protocol.from_dict(doc["protocol"])
    setting = effective_setting(get_task("memorization").setting(doc["runs"][0]["setting"]),
                                protocol)
    tokens = doc["runs"][0]["steps"] * protocol.batch_size * setting.seq_len
    assert rerun_budget_problem(doc, Budget(rerun_max_tokens=tokens)) is None
    assert rerun_budget_problem(doc, Budget()) is None
    problem = rerun_budget_problem(doc, Budget(rerun_max_tokens=tokens - 1))
    assert f"the cheapest trains {tokens:,}" in problem
    with pytest.raises(UsageError, match="admits none of its runs"):
        validate_submission(doc, rerun=1, device="cpu", budget=Budget(rerun_max_tokens=1))
    with pytest.raises(UsageError, match="not a device"):
        validate_submission(doc, rerun=1, device="gpu")


# -- tampering -----------------------------------------------------------------------------
def _edit_overall(d):
    d["scores"]["overall"] = min(1.0, d["scores"]["overall"] + 0.1)


def _edit_best_accuracy(d):
    best_run(d)["accuracy"] += 1 / best_run(d)["scored_positions"]   # still k/n: plausible


def _edit_accuracy_to_a_non_fraction(d):
    other_run(d)["accuracy"] = 0.123456789


def _edit_state_claim(d):
    d["accounting"]["dynamic_state"] = 4096


def _edit_fixed_state_claim(d):
    d["accounting"]["fixed_state"] = 4096


def _edit_suite_hash(d):
    d["suite_hash"] = "0" * 16


def _delete_worse_run(d):
    d["runs"].remove(other_run(d))


def _delete_best_run(d):
    d["runs"].remove(best_run(d))


def _edit_lr_off_grid(d):
    other_run(d)["lr"] = 0.002


def _edit_weight_decay(d):
    other_run(d)["weight_decay"] = 0.1


def _edit_seed(d):
    other_run(d)["seed"] = 1


def _edit_protocol_epochs(d):
    d["protocol"]["epochs"] = 200


def _edit_protocol_epochs_and_hash(d):
    from madbench.protocol import Protocol
    d["protocol"]["epochs"] = 200
    d["protocol"]["hash"] = Protocol.from_dict(d["protocol"]).hash


def _declare_a_bad_override(d):
    """An override that `--set` refuses (a schedule madbench does not have), declared
    consistently in the overrides, the field and the hash."""
    from madbench.protocol import Protocol
    d["protocol"]["overrides"] = sorted(d["protocol"]["overrides"] + [["schedule", "bogus"]])
    d["protocol"]["schedule"] = "bogus"
    d["protocol"]["hash"] = Protocol.from_dict(d["protocol"]).hash


def _claim_a_board(d):
    d["board"] = "mad-quick"


def _edit_architecture_hash(d):
    d["architecture"]["hash"] = "f" * 16


def _point_best_at_worse_run(d):
    d["best"][0]["run_key"] = other_run(d)["run_key"]


def _drop_flag_claim(d):
    d["flags"] = ["param-mismatch"]


def _edit_steps(d):
    other_run(d)["steps"] = 1


TAMPERING = [
    (_edit_overall, "scores", "scores.overall is"),
    (_edit_best_accuracy, "scores", "scores.memorization is"),
    (_edit_accuracy_to_a_non_fraction, "runs", "not a whole number of correct positions"),
    (_edit_state_claim, "accounting", "accounting.dynamic_state claims 4096"),
    (_edit_fixed_state_claim, "accounting", "accounting.fixed_state claims 4096"),
    (_edit_suite_hash, "suite", "is not madbench's MAD suite"),
    (_delete_worse_run, "runs", "1 runs of the protocol's sweep are missing"),
    (_delete_best_run, "runs", "1 runs of the protocol's sweep are missing"),
    (_delete_best_run, "best", "not one of its runs"),
    (_edit_lr_off_grid, "runs", "not in the protocol's grid"),
    (_edit_lr_off_grid, "runs", "run_key"),
    (_edit_weight_decay, "runs", "does not match the run's fields"),
    (_edit_seed, "runs", "does not match the run's fields"),
    (_edit_protocol_epochs, "protocol", "does not match its fields"),
    (_edit_protocol_epochs_and_hash, "protocol", "differ from madbench's preset"),
    (_edit_protocol_epochs_and_hash, "runs", "does not match the run's fields"),
    (_declare_a_bad_override, "schema", "must be one of \"cosine\", \"constant\""),
    (_claim_a_board, "protocol", "board is mad-quick"),
    (_edit_architecture_hash, "architecture", "does not match its spec and sources"),
    (_point_best_at_worse_run, "best", "but the best of its sweep is"),
    (_drop_flag_claim, "accounting", "flags are"),
    (_edit_steps, "runs", "but the protocol trains 2 epochs of 8 steps"),
]


@pytest.mark.parametrize("tamper,check,reason", TAMPERING,
                         ids=[t[0].__name__.strip("_") + "-" + t[1] for t in TAMPERING])
def test_tampering_fails_with_its_reason(doc, tamper, check, reason):
    tamper(doc)
    assert_fails(doc, check, reason)


def test_a_consistently_edited_accuracy_is_caught_by_a_rerun(doc):
    """An accuracy raised together with every aggregate passes the static checks; re-training
    the setting exposes it."""
    run = best_run(doc)
    run["accuracy"] = min(1.0, run["accuracy"] + 256 / run["scored_positions"])
    doc["scores"]["memorization"] = doc["scores"]["overall"] = run["accuracy"]
    assert failures(doc) == []
    assert_fails(doc, "rerun", "re-trained here", rerun=1, rerun_seed=0, device="cpu")
    found = [r for c, r in failures(doc, rerun=1, rerun_seed=0, device="cpu") if c == "rerun"]
    assert "claimed in" not in found[0]                   # trained in fp32, re-run in fp32
    run["precision"] = "bf16"           # as a GPU claim reads: a CPU re-run is in another one
    found = [r for c, r in failures(doc, rerun=1, rerun_seed=0, device="cpu") if c == "rerun"]
    assert found[0].endswith(" > tolerance 0.05 + 0.03: re-trained in fp32, claimed in bf16)"), \
        found


def test_a_rerun_in_another_precision_gets_the_precision_margin_and_no_more(doc):
    """A claim 0.065 above what the code trains: a re-run in the claim's precision fails it
    (0.065 > 0.05); a CPU re-run (fp32) of a bf16 claim accepts it (0.05 + 0.03), the margin
    that honest cells at a learning transition need; 0.09 above fails either way."""
    from madbench.budget import DEFAULT_TOLERANCE, PRECISION_MARGIN
    assert (DEFAULT_TOLERANCE, PRECISION_MARGIN) == (0.05, 0.03)
    run = best_run(doc)
    honest, positions = run["accuracy"], run["scored_positions"]

    lines = []

    def claim(raise_by, precision):
        run["accuracy"] = (round(honest * positions) + round(raise_by * positions)) / positions
        run["precision"] = precision
        doc["scores"]["memorization"] = doc["scores"]["overall"] = run["accuracy"]
        assert run["accuracy"] <= 1 and failures(doc) == []
        return validate_submission(doc, allow_nonstandard=True, rerun=1, rerun_seed=0,
                                   device="cpu", progress=lines.append)

    same = claim(0.065, "fp32")
    assert not same.valid and same.reruns[0]["tolerance"] == 0.05
    across = claim(0.065, "bf16")
    assert across.valid, across.failures
    assert across.reruns[0]["tolerance"] == 0.08       # exactly: as --json prints it
    assert ": ok (tolerance 0.08; " in lines[-1] and ": MISMATCH (tolerance 0.05; " in \
        " ".join(lines)                                 # the progress line says what held
    assert 0.05 < across.reruns[0]["difference"] <= 0.08
    assert any("+ 0.03 for a re-run in another precision" in c for c in across.checks)
    assert not claim(0.09, "bf16").valid


def test_the_checked_line_says_whether_the_audit_numbers_were_compared(doc):
    """The submission's audit ran at width 32: validated at 32 its numbers are compared (an
    edited one fails), and the checked line says so; at 16 only the verdict is, with a warning.
    The line said "its verdict is compared, not its numbers" in both cases."""
    report = validate_submission(doc, allow_nonstandard=True)
    assert report.valid and any("width 32" in c and c.endswith(": its numbers compared")
                                for c in report.checks), report.checks
    other = validate_submission(doc, allow_nonstandard=True, audit_dim=16)
    assert other.valid and any(c.endswith("its verdict compared, not its numbers")
                               for c in other.checks), other.checks
    assert any("are not compared" in w for w in other.warnings)
    doc["checks"]["state_audit"]["measured_state"] += 1
    assert_fails(doc, "state_audit", "checks.state_audit.measured_state claims")


def test_declared_seeds_are_named_as_such_not_counted_as_runs(doc):
    """Two problems of the declared seeds are two reasons, never '2 runs fail the seed check'
    (the seeds list is no run)."""
    doc["seeds"], doc["board"] = [0, 0], "mad-quick"     # a board entry: its seeds 0 to n - 1
    found = [r for c, r in failures(doc) if c == "runs"]
    assert "seeds [0, 0] are not the sorted seeds of the runs [0]" in found, found
    assert any(r.startswith("a board entry's seeds are 0 to n - 1, not 0, 0") for r in found)
    assert not any("runs fail the seed" in r for r in found), found


def test_a_best_entry_beaten_on_the_tie_says_the_loss_decided(doc):
    """Two runs of equal accuracy: the best is the lower test loss, and the failure says so
    (it read 'accuracy 0.5 ... but the best ... is X (accuracy 0.5)')."""
    low, high = sorted(doc["runs"], key=lambda r: r["loss"])
    high["accuracy"] = low["accuracy"]                   # a whole number of positions still
    doc["best"][0]["run_key"] = high["run_key"]
    found = [r for c, r in failures(doc) if c == "best"]
    assert len(found) == 1 and found[0].endswith(
        f"(accuracy {low['accuracy']:.6g}, the lower test loss ({low['loss']!r} against "
        f"{high['loss']!r}) breaking the tie)"), found


def test_a_file_in_a_board_folder_must_be_that_boards_entry(tmp_path, doc):
    folder = tmp_path / "leaderboards" / "mad-quick"
    folder.mkdir(parents=True)
    path = folder / "trial.json"
    path.write_text(json.dumps(doc))
    report = validate_file(path, allow_nonstandard=True)
    assert ("protocol", f"the file is in a mad-quick board folder ({folder}/) but the "
            "submission is for no board") in report.failures


def test_the_cli_names_every_failure_and_exits_3(tmp_path, doc):
    _edit_overall(doc)
    _edit_state_claim(doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    result = cli("leaderboard", "validate", path, "--allow-nonstandard")
    assert result.exit_code == 3
    assert "FAIL scores: scores.overall is" in result.output
    assert "FAIL accounting: accounting.dynamic_state claims 4096" in result.output


def test_select_group_needs_a_filter_when_the_run_dir_holds_several():
    records = [{"arch_hash": h, "protocol_hash": "p" * 16, "arch_name": n,
                "protocol_name": "quick"} for h, n in (("a" * 16, "hyena"), ("b" * 16, "mamba"))]
    with pytest.raises(UsageError, match="several architectures"):
        select_group(records)
    assert select_group(records, arch_filter="mamba")[0]["arch_name"] == "mamba"
    assert select_group(records, arch_filter="aaaa")[0]["arch_name"] == "hyena"


def test_the_choice_names_the_code_and_date_of_each_group():
    """Old records of the same architecture under an older key: the error tells them apart."""
    records = [{"arch_hash": h, "protocol_hash": "p" * 16, "arch_name": "hyena",
                "protocol_name": "paper", "madbench_version": v, "created_at": t}
               for h, v, t in (("a" * 16, "0.1.0+old", "2026-12-02T10:00:00+00:00"),
                               ("b" * 16, "0.1.0+new", "2026-12-03T09:00:00+00:00"))]
    with pytest.raises(UsageError) as err:
        select_group(records)
    assert "[" + "a" * 16 + "] under paper" in str(err.value)
    assert "(run version 0.1.0+old, last 2026-12-02)" in str(err.value)
    assert "(run version 0.1.0+new, last 2026-12-03)" in str(err.value)


# -- malformed input -----------------------------------------------------------------------
MALFORMED = {
    "not-json": (b"{ this is not json", "not valid JSON"),
    "not-an-object": (b"[1, 2, 3]", "a submission is a JSON object"),
    "nan": (b'{"schema_version": NaN}', "NaN is not a JSON number"),
    "infinity": (b'{"schema_version": -Infinity}', "-Infinity is not a JSON number"),
    "huge-int": (b'{"schema_version": 1' + b"0" * 5000 + b"}", "too large"),
    "huge-float": (b'{"schema_version": 1e400}', "overflows to infinity"),
    "deep": (b"[" * 200_000 + b"]" * 200_000, f"nested more than {MAX_DEPTH} levels"),
    "duplicate-key": (b'{"name": "a", "name": "b"}', "duplicate key 'name'"),
    "not-utf8": (b'{"name": "\xff"}', "not UTF-8"),
    "bom": (b'\xef\xbb\xbf{"name": "a"}', "starts with a byte-order mark (BOM)"),
    "wrong-types": (b'{"schema_version": "1", "runs": {}}', "expected array, got object"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_gets_one_line_and_exit_3(tmp_path, name):
    content, reason = MALFORMED[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(content)
    start = time.perf_counter()
    result = cli("leaderboard", "validate", path)
    assert time.perf_counter() - start < 5
    assert result.exit_code == 3, result.output
    assert reason in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:                 # sparse: no data written, size over the cap
        fh.truncate(MAX_BYTES + 1)
    report = validate_file(path)
    assert not report.valid and "refused before reading" in report.failures[0][1]


def test_wrong_types_and_ranges_in_a_real_submission_are_schema_failures(doc):
    doc["runs"][0]["accuracy"] = "high"
    doc["runs"][1]["seed"] = True
    doc["scores"]["overall"] = 1e300
    found = [r for c, r in failures(doc) if c == "schema"]
    assert any("runs[0].accuracy: expected number, got string" in r for r in found)
    assert any("runs[1].seed: expected integer, got boolean" in r for r in found)
    assert any("scores.overall: 1e+300 is above the maximum 1" in r for r in found)


def test_missing_paths_are_usage_errors():
    result = cli("leaderboard", "validate", "/nonexistent/submission.json")
    assert result.exit_code == 2


def test_nesting_depth_ignores_brackets_in_strings():
    """Property: the depth equals a naive character walk's (strings and escapes skipped)."""
    def naive(text):
        depth = best = 0
        in_string = escaped = False
        for c in text:
            if in_string:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c in "[{":
                depth += 1
                best = max(best, depth)
            elif c in "]}":
                depth -= 1
        return best

    for text in ['{"a": "[[[[", "b": [[1]]}', r'["\"[[", {"c": ["\\", [[[]]]]}]', "[]",
                 '{"k\\"{": {"x": [{"y": "]]]"}]}}']:
        assert nesting_depth(text, limit=100) == naive(text)
    assert nesting_depth("[" * 1000, limit=10) == 11          # stops once past the limit


# -- the schema ----------------------------------------------------------------------------
def _keywords(schema):
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            if key in ("properties", "$defs"):
                for sub in value.values():
                    yield from _keywords(sub)
            elif key in ("items", "additionalProperties", "propertyNames") and \
                    isinstance(value, dict):
                yield from _keywords(value)


def test_the_schema_uses_only_keywords_the_validator_implements():
    used = set(_keywords(load_schema()))
    assert used - SUPPORTED_KEYWORDS - ANNOTATIONS == set()


def test_the_hand_written_validator_agrees_with_jsonschema(doc):
    jsonschema = pytest.importorskip("jsonschema")
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    reference = jsonschema.Draft202012Validator(schema)
    broken = [copy.deepcopy(doc) for _ in range(6)]
    broken[0]["runs"][0]["accuracy"] = 1.5
    broken[1]["architecture"]["unexpected"] = 1
    del broken[2]["suite_hash"]
    broken[3]["board"] = "mad-smoke"
    broken[4]["runs"][0]["run_key"] = "XYZ"
    broken[5]["name"] = "a <b>"                    # entry_name: label's rule plus its own
    for d in [doc, *broken]:
        assert bool(schema_errors(d)) == bool(list(reference.iter_errors(d)))
    assert schema_errors(doc) == []


# -- render --------------------------------------------------------------------------------
def _board_copy(tmp_path):
    root = tmp_path / "leaderboards"
    root.mkdir()
    shutil.copy(REPO / "leaderboards" / "README.md", root / "README.md")
    return root


def test_render_and_agree_refuse_a_file_of_another_protocol_in_a_board_folder(tmp_path, doc):
    """A smoke run's entry copied into leaderboards/mad-quick/ is neither ranked by render nor
    compared by agree (before, render ranked it and agree took it for its architecture)."""
    root = _board_copy(tmp_path)
    for board in BOARDS:
        (root / board).mkdir()
    (root / "mad-quick" / "smoke.json").write_text(json.dumps(doc))
    for args in (("render", "--root", root), ("agree", "--root", root)):
        result = cli("leaderboard", *args)
        assert result.exit_code == 3, result.output
        assert "smoke.json: not a valid submission (its protocol 'smoke'" in result.output
    assert "smoke.json" not in (root / "README.md").read_text()
    forged = copy.deepcopy(doc)       # the board's name and hash on smoke's fields: still not
    forged["board"], forged["protocol"]["hash"] = "mad-quick", PRESETS["quick"].hash
    (root / "mad-quick" / "smoke.json").write_text(json.dumps(forged))
    assert cli("leaderboard", "render", "--root", root).exit_code == 3


def test_submit_refuses_an_empty_name_and_another_protocol_in_a_board_folder(tmp_path, trial):
    """Nothing written that its own validator would reject: an empty name (before: written,
    then 'FAIL schema'), a smoke entry under leaderboards/mad-quick/ (before: written)."""
    run_dir = trial[0].parent / "run"
    empty = cli("leaderboard", "submit", run_dir, "--name", "", "--out", tmp_path / "e.json")
    assert empty.exit_code == 2 and empty.output.strip() == (
        "Error: --name '': shorter than 1 characters"), empty.output
    board = tmp_path / "leaderboards" / "mad-quick"
    board.mkdir(parents=True)
    placed = cli("leaderboard", "submit", run_dir, "--name", "t", "--out", board / "t.json",
                 "--audit-dim", "32")
    assert placed.exit_code == 2, placed.output
    assert "mad-quick ranks runs of protocol quick without overrides, and these runs are of " \
           "smoke (overrides: " in placed.output
    assert not (tmp_path / "e.json").exists() and not list(board.iterdir())


def test_a_board_folder_is_known_by_its_name_wherever_it_is(tmp_path, trial, doc):
    """`render --root lb2` and `agree --root lb2` rank lb2/mad-quick/*.json, so lb2/mad-quick/
    is a board's folder too: submit refuses a smoke entry there (before: written, rc 0, and
    render and agree then stopped at it with exit 3), and validate holds a file there to the
    board; a folder of another name is no board."""
    run_dir = trial[0].parent / "run"
    board = tmp_path / "lb2" / "mad-quick"
    board.mkdir(parents=True)
    placed = cli("leaderboard", "submit", run_dir, "--name", "t", "--out", board / "t.json")
    assert placed.exit_code == 2, placed.output
    assert "mad-quick ranks runs of protocol quick without overrides" in placed.output
    assert not list(board.iterdir())
    shutil.copy(REPO / "leaderboards" / "README.md", tmp_path / "lb2" / "README.md")
    (tmp_path / "lb2" / "mad-paper").mkdir()
    for args in (("render", "--root", tmp_path / "lb2"), ("agree", "--root", tmp_path / "lb2")):
        assert cli("leaderboard", *args).exit_code == 0         # nothing there to stop at
    (board / "trial.json").write_text(json.dumps(doc))
    assert any(c == "protocol" and "mad-quick board folder" in r
               for c, r in validate_file(board / "trial.json", allow_nonstandard=True).failures)
    (board / "sub").mkdir()
    (board / "sub" / "trial.json").write_text(json.dumps(doc))
    assert any(c == "protocol" and "below a mad-quick board folder" in r for c, r in
               validate_file(board / "sub" / "trial.json", allow_nonstandard=True).failures)
    loose = tmp_path / "lb2" / "trials"
    loose.mkdir()
    written = cli("leaderboard", "submit", run_dir, "--name", "t", "--out", loose / "t.json")
    assert written.exit_code == 0 and (loose / "t.json").exists(), written.output


MARKUP_NAME = "a|b <img src=x onerror=alert(1)> [x](http://e.vil)"


def test_a_name_with_markup_is_refused_by_submit_validate_and_render(tmp_path, trial, doc):
    """One rule (the schema's entry_name): before, such a name passed validate and render
    wrote its HTML and link into README.md (only '|' escaped)."""
    run_dir = trial[0].parent / "run"
    for bad in (MARKUP_NAME, "x`y", "back\\slash", "a]b"):
        result = cli("leaderboard", "submit", run_dir, "--name", bad, "--out",
                     tmp_path / "s.json")
        assert result.exit_code == 2 and "an entry's name is plain text" in result.output, bad
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s.json").exists()
    doc["name"] = MARKUP_NAME
    assert_fails(doc, "schema", "an entry's name is plain text")
    root = _board_copy(tmp_path)
    (root / "mad-quick").mkdir()
    (root / "mad-quick" / "x.json").write_text(json.dumps(as_board_entry(doc, "mad-quick")))
    result = cli("leaderboard", "render", "--root", root)
    assert result.exit_code == 3 and "an entry's name is plain text" in result.output
    assert "<img" not in (root / "README.md").read_text()


def test_render_shows_names_and_file_names_as_written_never_as_markup(tmp_path, doc):
    """Against an independent markdown parser (markdown-it, CommonMark with GitHub's tables):
    each cell's text is exactly the entry's name and architecture name, and the page holds no
    element the names spell (an image, a link to e.vil, emphasis), nor a broken table."""
    markdown_it = pytest.importorskip("markdown_it")
    root = _board_copy(tmp_path)
    (root / "mad-quick").mkdir()
    entry = as_board_entry(doc, "mad-quick")
    entry["name"] = "*not bold* & _x_ ~y~ !(z) &lt;img&gt;"         # allowed: shown as written
    entry["architecture"]["name"] = "``q` | " + MARKUP_NAME        # a label: any printable text
    (root / "mad-quick" / "<img src=x>.json").write_text(json.dumps(entry))
    render(root)
    text = (root / "README.md").read_text()
    begin = text.index("<!-- leaderboard mad-quick: begin")
    block = text[begin:text.index("<!-- leaderboard mad-quick: end")]
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(
        block.split("\n", 1)[1])
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.tags, self.links, self.cell = [], [], [], None

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "a":
                self.links.append(dict(attrs)["href"])
            if tag == "td":
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "td":
                self.cells.append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parsed = Cells()
    parsed.feed(html)
    parsed.close()
    header = [l for l in block.splitlines() if l.startswith("| #")][0]
    assert len(parsed.cells) == header.count("|") - 1              # one row, no cell split off
    assert parsed.cells[1] == entry["name"]
    assert parsed.cells[2] == f"{entry['architecture']['name']} ({entry['architecture']['hash'][:8]})"
    assert set(parsed.tags) <= {"p", "table", "thead", "tbody", "tr", "th", "td", "a", "code"}
    assert parsed.links == ["mad-quick/%3Cimg%20src%3Dx%3E.json"]


def test_render_check_catches_a_stale_table(tmp_path, doc):
    root = _board_copy(tmp_path)
    render(root)
    assert cli("leaderboard", "render", "--root", root, "--check").exit_code == 0
    (root / "mad-quick").mkdir()
    tasks = [t.name for t in suite_tasks()]
    for name, score in (("second", 0.5), ("first", 0.75), ("a-partial", 0.99)):
        entry = as_board_entry(doc, "mad-quick")
        entry["name"], entry["scores"]["overall"] = name, score
        if name != "a-partial":      # scores for every task: a complete entry
            entry["scores"].update({t: score for t in tasks})
        (root / "mad-quick" / f"{name}.json").write_text(json.dumps(entry))
    result = cli("leaderboard", "render", "--root", root, "--check")
    assert result.exit_code == 3 and "stale" in result.output
    assert cli("leaderboard", "render", "--root", root).exit_code == 0
    text = (root / "README.md").read_text()
    assert text.index("[first](mad-quick/first.json)") < text.index("[second]")
    assert "| 1 | [first]" in text and "| 2 | [second]" in text
    # a partial entry (memorization only) follows the ranked ones, with no rank and no mean,
    # however high its partial mean
    assert text.index("[second]") < text.index("[a-partial]")
    assert "| — | [a-partial](mad-quick/a-partial.json)" in text
    table = text[text.index("<!-- leaderboard mad-quick: begin"):
                 text.index("<!-- leaderboard mad-quick: end")]      # not the prose around it
    assert "partial (1 of 6 tasks)" in table and "0.990" not in table
    assert cli("leaderboard", "render", "--root", root, "--check").exit_code == 0
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("0.750", "0.990"))     # hand-edited score
    assert cli("leaderboard", "render", "--root", root, "--check").exit_code == 3


def test_an_empty_board_renders_and_validates(tmp_path):
    root = _board_copy(tmp_path)
    render(root)
    text = (root / "README.md").read_text()
    for board, preset in BOARDS.items():
        assert f"No entries yet: no submission for the `{preset}` protocol" in text
    for board in BOARDS:
        (root / board).mkdir()
    frontier = root / "frontiers" / "kjv" / "hyena" / "frontier.json"   # not a submission
    frontier.parent.mkdir(parents=True)
    frontier.write_text("{}")
    result = cli("leaderboard", "validate", root)     # no submission: nothing passed a check
    assert result.exit_code == 2 and "nothing was validated" in result.output


# -- the repository's boards ---------------------------------------------------------------
def test_the_repository_readme_is_up_to_date():
    assert render(REPO / "leaderboards", check=True) is False


def board_reports(root, changed=None, **options):
    """Every submission under ``root`` validated as ``madbench leaderboard validate ROOT
    [--changed-since BASE]`` validates them: each file, then the rules across a board's files
    (``duplicate_entries``: one entry per architecture and per name, a duplicate blamed on the
    file in ``changed``)."""
    reports = {path: validate_file(path, **options) for path in submission_files([root])}
    duplicate_entries(reports.values(), changed)
    return reports


@pytest.fixture(scope="module")
def repository_reports():
    try:
        changed = changed_files([REPO / "leaderboards"], CI_BASE)
    except UsageError:
        changed = None                              # no base known: blamed by path
    return board_reports(REPO / "leaderboards", changed)


@pytest.mark.parametrize("path", submission_files([REPO / "leaderboards"]) or [None])
def test_every_repository_submission_validates(path, repository_reports):
    """Without --trust-code: a pull request's entry runs no code it names here. Each file is
    held to the rules across its board too (before, each was validated alone, so that CI,
    which runs this test, let a renamed copy of an entry onto its board)."""
    if path is None:
        pytest.skip("the boards hold no submissions yet")
    report = repository_reports[path]
    assert report.valid, report.failures


def test_the_board_test_refuses_a_second_entry_of_an_architecture_or_a_name(tmp_path):
    """The repository's board test on a board holding a renamed copy of an entry and another
    architecture under that entry's name in capitals: both fail as duplicates, the original
    passes."""
    board = tmp_path / "leaderboards" / "mad-quick"
    board.mkdir(parents=True)
    original = json.loads((REPO / "leaderboards" / "mad-quick" / "mamba.json").read_text())
    (board / "mamba.json").write_text(json.dumps(original))
    (board / "my-mamba.json").write_text(json.dumps({**original, "name": "my mamba"}))
    other = json.loads((REPO / "leaderboards" / "mad-quick" / "hyena-swiglu.json").read_text())
    (board / "other.json").write_text(json.dumps({**other, "name": "MAMBA"}))
    reports = board_reports(tmp_path / "leaderboards", rebuild=False)
    assert reports[board / "mamba.json"].failures == []
    assert [c for c, _ in reports[board / "my-mamba.json"].failures] == ["duplicate"]
    assert reports[board / "other.json"].failures == [(
        "duplicate", f"name 'MAMBA' reads as 'mamba', the name of {board / 'mamba.json'} on "
        "mad-quick (names are told apart regardless of case, width, dashes, spacing, "
        "invisible characters and Cyrillic or Greek lookalikes of Latin letters): one entry "
        "per name")]


#: CI's bounded re-run (a CPU machine with 2 cores, the whole CI well under 30 minutes): one
#: setting per new or changed entry, drawn (random seed, printed in the report) among those of
#: at most 2,097,152 training tokens (one quick-protocol run of memorization took 830 s on two
#: heavily shared cores), at most 15 minutes per entry. The base ref is the target branch
#: (MADBENCH_BOARD_BASE, default origin/main); without one, every entry is re-run.
CI_RERUNS = 1
CI_BUDGET = Budget(rerun_max_tokens=2 * 2**20, rerun_seconds=900)
CI_BASE = os.environ.get("MADBENCH_BOARD_BASE", "origin/main")


@pytest.mark.parametrize("path", submission_files([REPO / "leaderboards"]) or [None])
def test_new_or_changed_board_entries_pass_a_bounded_rerun(path, capsys):
    """Prints the report (the cell re-trained and its numbers) on a pass too: a board pull
    request's CI log shows what was checked."""
    if path is None:
        pytest.skip("the boards hold no submissions yet")
    try:
        changed = changed_files([REPO / "leaderboards"], CI_BASE)
    except UsageError:
        changed = None                                  # no base known: every entry is new
    if changed is not None and path.resolve() not in changed:
        pytest.skip(f"unchanged since {CI_BASE}")
    report = validate_file(path, rerun=CI_RERUNS, device="cpu", budget=CI_BUDGET)
    with capsys.disabled():
        print("\n" + "\n".join(report.lines()))
    assert report.valid, (report.failures, report.checks)


def test_an_oversized_architecture_is_not_built(doc):
    """A spec too large to build (counted on the meta device, nothing allocated) is refused
    quickly instead of exhausting memory."""
    arch = doc["architecture"]
    arch["spec"]["dim"] = 65536
    arch["hash"] = architecture_hash(arch["spec"], arch["sources"])
    start = time.perf_counter()
    assert_fails(doc, "budget", "over the budget")
    assert time.perf_counter() - start < 5


def test_the_stored_command_reproduces_the_entry_exactly(tmp_path):
    """A submission's ``command``, run as written (into a fresh run directory), trains exactly
    the runs of the entry: the same run keys, so --mixer-kwargs, --channel, --settings and the
    overrides all made it into the command."""
    import shlex

    from madbench.store import ResultsStore

    first = tmp_path / "first"
    result = cli("eval", "--arch", "mh-attention", "--mixer-kwargs", '{"num_heads": 8}',
                 "--channel", "mlp", "--tasks", "memorization,compression", "--settings",
                 "memorization:baseline", "--preset", "smoke", "--set", "epochs=1",
                 "--set", "max_train=32", "--run-dir", first, "--no-progress")
    assert result.exit_code == 0, result.output
    out = tmp_path / "entry.json"
    assert cli("leaderboard", "submit", first, "--name", "kw", "--out", out,
               "--audit-dim", "16").exit_code == 0
    command = json.loads(out.read_text())["command"]
    args = shlex.split(command)
    assert args[:2] == ["madbench", "eval"] and '{"num_heads": 8}' in args
    args[args.index("--run-dir") + 1] = str(tmp_path / "again")
    again = cli(*args[1:], "--no-progress")
    assert again.exit_code == 0, again.output
    assert ResultsStore(tmp_path / "again").keys() == ResultsStore(first).keys()


def test_submit_tasks_leaves_an_incomplete_task_out_and_warns_without_it(tmp_path):
    """A run directory with one task complete and one missing a run: without --tasks the file
    is written with a one-line warning that validate will refuse it; --tasks keeps the
    complete task only; an unknown task is a one-line usage error."""
    import pyarrow.parquet as pq
    run_dir = tmp_path / "run"
    result = cli("eval", "--arch", "mh-attention", "--tasks", "memorization,compression",
                 "--preset", "smoke", "--set", "epochs=1", "--set", "lrs=0.001,0.0005",
                 "--set", "max_train=64", "--set", "max_test=32", "--run-dir", run_dir,
                 "--device", "cpu", "--engine", "plain", "--no-progress")
    assert result.exit_code == 0, result.output
    files = sorted((run_dir / "records").iterdir())
    dropped = next(f for f in files if pq.read_table(f).column("task")[0].as_py() == "compression")
    dropped.unlink()
    whole = cli("leaderboard", "submit", run_dir, "--name", "x", "--out", tmp_path / "a.json")
    assert whole.exit_code == 0, whole.output
    assert "warning: 1 runs of the protocol's sweep are missing: compression/" in whole.output
    assert "validate will refuse" in whole.output
    part = cli("leaderboard", "submit", run_dir, "--name", "x", "--out", tmp_path / "b.json",
               "--tasks", "memorization")
    assert part.exit_code == 0 and "warning" not in part.output, part.output
    doc = json.loads((tmp_path / "b.json").read_text())
    assert {r["task"] for r in doc["runs"]} == {"memorization"} and len(doc["runs"]) == 2
    assert list(doc["scores"]) == ["overall", "memorization"]
    bad = cli("leaderboard", "submit", run_dir, "--name", "x", "--out", tmp_path / "c.json",
              "--tasks", "memorisation")
    assert bad.exit_code == 2 and "memorization" in bad.output      # did you mean
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "c.json").exists()


@pytest.mark.gpu
def test_a_board_entry_re_runs_graphed_on_cuda_and_agrees():
    """On a GPU, re-runs train as ``madbench eval`` does (the graphed engine): a cheap cell of
    the repository's H200-trained hyena-swiglu paper entry re-trains to its claim."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    entry = REPO / "leaderboards" / "mad-paper" / "hyena-swiglu.json"
    report = validate_file(entry, rerun=1, device="cuda",
                           budget=Budget(rerun_max_tokens=2 * 2**20, rerun_seconds=300))
    assert report.valid, report.failures
    assert [r["engine"] for r in report.reruns] == ["graphed"]
    assert report.reruns[0]["difference"] <= 0.05
