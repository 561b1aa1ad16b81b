"""Protocol presets are data: hashed, overridable, and marked non-standard when changed."""
import pytest

from madbench.errors import UsageError
from madbench.protocol import PRESETS, get_protocol
from madbench.trainer import lr_at


def test_paper_preset_matches_table_b1():
    p = PRESETS["paper"]
    assert (p.epochs, p.batch_size, p.betas, p.schedule) == (200, 128, (0.9, 0.98), "cosine")
    assert p.configs() == [(1e-4, 0.0), (1e-4, 0.1), (5e-4, 0.0), (5e-4, 0.1),
                           (1e-3, 0.0), (1e-3, 0.1)]
    m = PRESETS["mad-lab"]
    assert (m.betas, m.schedule, m.selection) == ((0.9, 0.999), "constant", "macro_accuracy")


def test_hashes_are_stable_distinct_and_follow_content():
    hashes = {name: p.hash for name, p in PRESETS.items()}
    assert len(set(hashes.values())) == len(hashes)
    assert get_protocol("paper").hash == PRESETS["paper"].hash
    changed = get_protocol("paper", {"epochs": "20"})
    assert changed.hash != PRESETS["paper"].hash and not changed.standard
    assert changed.overrides == (("epochs", 20),)
    # overriding a field to its preset value changes nothing that affects runs
    assert get_protocol("paper", {"epochs": "200"}).hash == PRESETS["paper"].hash


def test_a_sweep_list_holds_each_value_once_in_the_order_given():
    """--set lrs=1e-3,1e-3 trained the same run twice; a repeated value now counts once (as
    --seeds 0,0 does). betas are a pair, not a list: equal betas stay two."""
    p = get_protocol("paper", {"lrs": "1e-3,5e-4,0.001", "weight_decays": "0.1,0,0.1",
                               "betas": "0.9,0.9"})
    assert (p.lrs, p.weight_decays, p.betas) == ((1e-3, 5e-4), (0.1, 0.0), (0.9, 0.9))
    assert p.configs() == [(1e-3, 0.1), (1e-3, 0.0), (5e-4, 0.1), (5e-4, 0.0)]
    assert p.hash == get_protocol("paper", {"lrs": "1e-3,5e-4", "weight_decays": "0.1,0",
                                            "betas": "0.9,0.9"}).hash


@pytest.mark.parametrize("overrides", [{"nope": "1"}, {"epochs": "x"}, {"schedule": "linear"},
                                       {"betas": "0.9"}, {"epochs": "0"}, {"name": "x"}])
def test_bad_overrides_are_usage_errors(overrides):
    with pytest.raises(UsageError):
        get_protocol("paper", overrides)


def test_cosine_schedule_decays_to_the_floor_and_constant_stays():
    p = PRESETS["paper"]
    assert lr_at(0, 101, 1e-3, p) == pytest.approx(1e-3)
    assert lr_at(50, 101, 1e-3, p) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert lr_at(100, 101, 1e-3, p) == pytest.approx(1e-6)
    assert lr_at(77, 101, 1e-3, PRESETS["mad-lab"]) == 1e-3


def test_min_steps_raises_epochs_for_tiny_datasets():
    q = PRESETS["quick"]
    assert q.epochs_for(100) == 20 and q.epochs_for(2) == 250
