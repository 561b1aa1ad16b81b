"""Attention ratios for striped families (the paper's 1:1, 1:3 and 1:11), the layer order
`scaling flops` states, tiny real 1:3 and 1:11 runs, and the four Hyena variants of Fig. 4.1
that have no stored frontier yet."""
import json
import math
from fractions import Fraction

import pytest
import torch
from click.testing import CliRunner

from madbench.cli import MadbenchGroup
from madbench.cli.scaling_cmd import scaling_group
from madbench.errors import UsageError
from madbench.scaling.table import read_runs
from madbench.scaling.shapes import (FAMILIES, attention_fraction, exact_depths, family_spec,
                                     get_family, layer_order, parse_attention_ratio)

torch.set_num_threads(1)
cli = MadbenchGroup(name="madbench", commands={"scaling": scaling_group})


def test_ratio_parsing():
    assert parse_attention_ratio("1:1") == Fraction(1, 2)
    assert parse_attention_ratio("1:3") == Fraction(1, 4)
    assert parse_attention_ratio("1:11") == Fraction(1, 12)
    assert parse_attention_ratio("0.25") == parse_attention_ratio("25%") == Fraction(1, 4)
    for bad in ("0", "1:x", "1.5", "-1:3", "0:3"):
        with pytest.raises(UsageError):
            parse_attention_ratio(bad)


@pytest.mark.parametrize("ratio,depth,pattern", [
    ("1:1", 4, "HAHA"), ("1:3", 8, "HHHAHHHA"), ("1:11", 12, "H" * 11 + "A"),
    ("1:11", 24, ("H" * 11 + "A") * 2)])
def test_ratio_gives_hyena_first_then_attention(ratio, depth, pattern):
    family = get_family("striped-hyena", attention_ratio=ratio)
    spec = family_spec(family, 32, depth)
    assert "".join("A" if m == "mh-attention" else "H" for m in layer_order(spec)) == pattern
    a, b = map(int, ratio.split(":"))
    assert attention_fraction(spec) == pytest.approx(a / (a + b))
    assert exact_depths(family.attention_share, 24) == list(range(a + b, 25, a + b))


def test_ratio_names_and_refusals():
    assert get_family("striped-hyena", attention_ratio="1:3") is FAMILIES["striped-hyena"]
    assert get_family("striped-hyena", attention_ratio="1:11").name == "striped-hyena-1to11"
    assert get_family("striped-mamba", attention_ratio="1:1").name == "striped-mamba-1to1"
    experts = get_family("striped-hyena-experts-moe", attention_ratio="1:3")
    assert experts.name == "striped-hyena-experts-moe-1to3" and experts.attention_share == 0.25
    assert get_family("hyena", striped=True, attention_ratio="1:1").attention_share == 0.5
    with pytest.raises(UsageError, match="striped families"):
        get_family("transformer++", attention_ratio="1:3")
    with pytest.raises(UsageError, match="striped families"):
        get_family("mamba", attention_ratio="1:3")


def test_flops_states_depth_and_order():
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "striped-hyena",
                                   "--attention-ratio", "1:11", "--size", "64x12"])
    assert res.exit_code == 0, res.output
    assert "12 sequence mixers in this order: " + "hyena-modal " * 11 + "A" in res.stdout
    assert "nominal 1:11 = 8.3%, exact at depths 12, 24, 36, 48" in res.stdout
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "striped-hyena",
                                   "--attention-ratio", "1:11", "--size", "64x4", "--json"])
    doc = json.loads(res.stdout)
    assert doc["striping"]["attention_fraction"] == 0.25 and doc["striping"]["depth"] == 4


@pytest.mark.parametrize("ratio,size,share", [("1:3", "16x4", 0.25), ("1:11", "16x12", 1 / 12)])
def test_tiny_striped_runs_at_1_3_and_1_11(tmp_path, ratio, size, share):
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"and the evening and the morning were the first day\n" * 80)
    run_dir = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "striped-hyena",
                                   "--attention-ratio", ratio, "--budgets", "1e8",
                                   "--sizes", size, "--corpus", str(text), "--seq-len", "16",
                                   "--batch-size", "4", "--eval-tokens", "128",
                                   "--device", "cpu", "--run-dir", str(run_dir)])
    assert res.exit_code == 0, res.output
    (row,) = read_runs(run_dir / "isoflop.parquet")
    assert row["attention_fraction"] == pytest.approx(share)
    assert row["arch"] == ("striped-hyena" if ratio == "1:3" else "striped-hyena-1to11")
    assert math.isfinite(row["loss"])


def test_a_depth_that_cannot_hold_the_ratio_is_named(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"in the beginning\n" * 200)
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "striped-hyena",
                                   "--attention-ratio", "1:11", "--budgets", "1e8",
                                   "--sizes", "16x4", "--corpus", str(text), "--seq-len", "16",
                                   "--batch-size", "4", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "16x4 holds 25.0% attention, not 1:11 = 8.3%" in res.stderr


@pytest.mark.parametrize("family", ["mh-hyena", "striped-mh-hyena", "striped-hyena-moe",
                                    "striped-hyena-experts-moe"])
def test_the_fig_4_1_variants_build_count_and_train(family):
    """Each family without a stored frontier builds, has analytic FLOPs and takes optimizer
    steps that lower the loss on a repeated string (a CPU smoke check, not a frontier)."""
    from madbench.scaling.corpus import Corpus
    from madbench.scaling.flops import architecture_flops
    from madbench.scaling.plan import Recipe, plan_runs
    from madbench.scaling.runs import train_run
    spec = family_spec(family, 16, 4)
    assert architecture_flops(spec, 16).method == "analytic"
    corpus = Corpus.from_bytes("t", b"abcdefgh" * 600)
    (plan,) = plan_runs(family, [2.5e8], [(16, 4)], Recipe(seq_len=16, batch_size=4, lr=3e-3,
                                                          eval_tokens=64), corpus.sha256)
    train, val = (torch.from_numpy(a) for a in corpus.splits())
    result = train_run(plan, train, val, torch.device("cpu"))
    assert plan.steps >= 10 and result["loss"] < math.log(256) - 1


def test_a_stored_familys_variants_keep_its_mixer_and_a_name_of_their_own():
    """`--arch hyena --striped` or `--mixer-kwargs` used to build the registry's `hyena` (the
    MAD layer, not the family's modal Hyena) under the family's own name, so its records
    mixed with the stored frontier's."""
    from madbench.scaling.shapes import FAMILIES, get_family
    assert get_family("hyena", striped=True) is FAMILIES["striped-hyena"]
    variant = get_family("hyena", mixer_kwargs={"filter_order": 8})
    assert variant.mixer == "hyena-modal" and variant.name.startswith("hyena+")
    assert variant.mixer_kwargs == {"filter_order": 8}
    other = get_family("hyena", mixer_kwargs={"filter_order": 16})
    assert other.name != variant.name
    striped = get_family("hyena", striped=True, mixer_kwargs={"filter_order": 8})
    assert striped.attention_share == 0.25 and striped.name.startswith("striped-hyena+")


def test_the_ratio_help_and_the_code_agree_on_the_range_of_a_share():
    """The help and the parse error said 'a share in (0, 1]', but 1 was then refused: the range
    is (0, 1) everywhere, and 1 (also as 1:0 or 100%) is refused at parsing with the reason."""
    for one in ("1", "1:0", "100%", "1.0"):
        with pytest.raises(UsageError, match="a share of 1 leaves no other sequence mixer"):
            parse_attention_ratio(one)
    assert parse_attention_ratio("0.9") == Fraction(9, 10)
    with pytest.raises(UsageError, match=r"a share in \(0, 1\) or a percentage"):
        parse_attention_ratio("1.5")
    for command in ("run", "flops"):
        help_text = " ".join(CliRunner().invoke(cli, ["scaling", command, "--help"]).stdout.split())
        assert "(0, 1)" in help_text and "(0, 1]" not in help_text
    res = CliRunner().invoke(cli, ["scaling", "flops", "--arch", "striped-hyena",
                                   "--attention-ratio", "1", "--size", "64x4"])
    assert res.exit_code == 2 and "use transformer++" in res.stderr
