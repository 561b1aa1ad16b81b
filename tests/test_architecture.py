"""The named MAD presets: which layers each holds, their mad-lab ids, and that every preset is
described and iso-state where the paper normalises it."""
import pytest

from madbench.accounting import check_iso_state, describe_architecture
from madbench.architecture import resolve_architecture
from madbench.plugins import get_registry
from madbench_layers.architectures import PRESETS

FAMILIES = {"hyena": "hyena", "mh-hyena": "mh-hyena", "hyena-experts": "hyena-experts",
            "gla": "gated-linear-attention", "mh-gla": "mh-gated-linear-attention",
            "attention": "attention", "mh-attention": "mh-attention"}
CHANNELS = {"swiglu": "swiglu", "moe": "moe-mlp"}


def _layers(name):
    spec = resolve_architecture(name)
    return [(l.mixer, dict(l.kwargs)) for l in spec.layers]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_common_and_striped_presets(family, channel):
    x, c, a = (FAMILIES[family], {}), (CHANNELS[channel], {}), ("mh-attention", {})
    assert _layers(f"{family}-{channel}") == [x, c, x, c]
    if family == "mh-attention":  # striping with attention would repeat the common model
        assert f"striped-{family}-{channel}" not in PRESETS
    else:
        assert _layers(f"striped-{family}-{channel}") == [x, c, a, c]


def test_mamba_presets():
    assert _layers("mamba") == [("mamba", {})] * 4
    for channel, mixer in CHANNELS.items():
        mb8 = ("mamba", {"d_state": 8})
        assert _layers(f"mamba-{channel}") == [mb8, (mixer, {}), mb8, (mixer, {})]
        assert _layers(f"striped-mamba-{channel}") == [mb8, (mixer, {}), ("mh-attention", {}),
                                                        (mixer, {})]


def test_mad_lab_ids_join_the_registered_shorthands():
    mixers = get_registry().mixers
    for name, (spec, metadata) in PRESETS.items():
        expected = "-".join(mixers[layer].metadata["shorthand"] for layer, _ in spec)
        assert metadata["mad_lab_id"] == expected, name


def test_presets_are_registered():
    registered = get_registry().architectures
    assert set(PRESETS) <= set(registered)
    assert all(registered[n].plugin == "reference-layers" for n in PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_described(name):
    d = describe_architecture(name, seq_len=16, vocab_size=16)
    assert len(d["layers"]) == 4
    has_attention = any(l["mixer"] in ("attention", "mh-attention") for l in d["layers"])
    assert (d["dynamic_state"] > 0) == has_attention
    assert d["flops_per_token"] > 0 and d["active_params"] <= d["params"]
    ok, _ = check_iso_state(d)
    if has_attention:
        assert ok  # not normalised (paper App. B.3)
    elif name.startswith("gla-"):  # one head of 128: 16,384 per layer, as in mad-lab
        assert d["fixed_state"] == 2 * 128 * 128 and not ok
    else:  # the paper's 4,096 total
        assert d["fixed_state"] == 4096 and ok
