"""The paper's per-run hyperparameters: batch by budget (Table C.1) and learning rate by size
(Table C.2), interpolated, and how plan_runs applies them."""
import math

import pytest

from madbench.errors import UsageError
from madbench.scaling.recipe import (lr_for_size, paper_batch_size, paper_batch_tokens,
                                     parse_lr_table)
from madbench.scaling.plan import Recipe, plan_runs


def test_batch_follows_table_c1_at_its_budgets():
    big = 1e8                                               # above the 54M small-model rule
    for budget in (4e18, 8e18, 2e19, 4e19, 8e19):
        assert paper_batch_tokens(budget, big) == 524_288
    assert paper_batch_tokens(2e20, big) == paper_batch_tokens(5e20, big) == 1_048_576
    assert paper_batch_tokens(2e21, big) == 2_097_152
    assert paper_batch_tokens(4e18, 53e6) == paper_batch_tokens(2e21, 53e6) == 262_144


def test_batch_between_and_outside_the_table():
    # 1e20 lies between 8e19 (524,288) and 2e20 (1,048,576): linear in ln C
    t = math.log(1e20 / 8e19) / math.log(2e20 / 8e19)
    assert paper_batch_tokens(1e20, 1e8) == round(524_288 + t * 524_288)
    assert paper_batch_tokens(1e12, 1e8) == 524_288           # below the table: first row
    assert paper_batch_tokens(1e23, 1e8) == 2_097_152         # above: last row
    assert paper_batch_size(1e15, 1e6, 256) == 262_144 // 256
    assert paper_batch_size(1e15, 1e6, 1_000_000) == 1


def test_lr_follows_the_rows_on_file_and_is_linear_between():
    assert lr_for_size(8e6) == pytest.approx(9.77e-4)
    assert lr_for_size(3e4) == pytest.approx(9.77e-4)          # below the smallest row
    assert lr_for_size(7e9) == pytest.approx(2.0e-4)
    assert lr_for_size(7e10) == pytest.approx(2.0e-4)
    mid = (8e6 + 7e9) / 2
    assert lr_for_size(mid) == pytest.approx((9.77e-4 + 2.0e-4) / 2)
    table = parse_lr_table("1e6:1e-3, 1e5:2e-3")
    assert table == ((1e5, 2e-3), (1e6, 1e-3))
    assert lr_for_size(5.5e5, table) == pytest.approx(1.5e-3)
    with pytest.raises(UsageError):
        parse_lr_table("1e6=1e-3")


def test_plan_runs_applies_the_rules_per_run():
    recipe = Recipe(seq_len=64, batch_size=8, lr=5e-3)
    table = ((1e4, 2e-3), (1e6, 1e-3))
    plans = plan_runs("hyena", [1e12, 1e13], [(16, 1), (64, 2)], recipe, "x",
                      lr_rule=lambda n: lr_for_size(n, table), batch_rule=paper_batch_size)
    from madbench.accounting import count_params
    from madbench.scaling.plan import model_skeleton
    for p in plans:
        total = count_params(model_skeleton(p.spec))
        assert p.recipe.lr == pytest.approx(lr_for_size(total, table))
        assert p.recipe.batch_size == 262_144 // 64
        assert p.lr_rule == "paper-size-table" and p.batch_rule == "paper-budget-table"
        per_step = p.training_flops_per_token * p.recipe.batch_size * 64
        assert p.steps == max(1, round(p.budget / per_step))
    fixed = plan_runs("hyena", [1e12], [(16, 1)], recipe, "x")[0]
    assert fixed.recipe.lr == 5e-3 and fixed.recipe.batch_size == 8 and fixed.lr_rule == "fixed"
