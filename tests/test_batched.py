"""The batched sweep engine equals sequential training of each configuration."""
import dataclasses

import pytest
import torch

from madbench.batched import train_batched
from madbench.protocol import PRESETS

from helpers import CONFIGS, Lookup, SometimesNaN, identity_data, sequential

PROTO = dataclasses.replace(PRESETS["paper"], epochs=4, batch_size=16)
@pytest.mark.parametrize("proto", [PROTO, dataclasses.replace(PROTO, schedule="constant",
                                                               decay="all")])
def test_batched_matches_sequential(proto):
    seq = sequential(Lookup, CONFIGS, proto)
    bat = train_batched(Lookup, identity_data(), identity_data(seed=1), 8, CONFIGS, proto, 0)
    for s, b in zip(seq, bat):
        assert b.loss == pytest.approx(s.loss, rel=1e-5, abs=1e-6)
        assert b.train_loss == pytest.approx(s.train_loss, rel=1e-5)
        assert b.accuracy == s.accuracy and b.steps == s.steps


def test_one_diverging_configuration_leaves_the_others_untouched():
    configs = [(1e-3, 0.0), (1.0, 0.0)]
    bat = train_batched(SometimesNaN, identity_data(), identity_data(seed=1), 8, configs,
                        PROTO, 0)
    seq = sequential(SometimesNaN, configs[:1], PROTO)
    assert bat[1].diverged and bat[1].accuracy == 0.0
    assert not bat[0].diverged and not seq[0].diverged
    assert bat[0].loss == pytest.approx(seq[0].loss, rel=1e-5)


def test_a_diverged_configuration_is_recorded_as_the_plain_trainer_records_it():
    """The batched engine keeps training a diverged configuration's frozen copy with the
    others; its record is still the one it had when it diverged: the epoch, step and
    training loss the plain trainer reports."""
    configs = [(1e-3, 0.0), (1.0, 0.0)]
    bat = train_batched(SometimesNaN, identity_data(), identity_data(seed=1), 8, configs,
                        PROTO, 0)
    seq = sequential(SometimesNaN, configs, PROTO)
    assert seq[1].diverged and seq[1].epochs < PROTO.epochs      # it diverges early
    assert (bat[1].epochs, bat[1].steps, bat[1].diverged) == \
        (seq[1].epochs, seq[1].steps, seq[1].diverged)
    assert str(bat[1].train_loss) == str(seq[1].train_loss)       # nan (or the same number)


@pytest.mark.parametrize("window", [None, 4])
def test_vmapped_attention_equals_each_model(window):
    """Under vmap the attention layer writes softmax attention out (the fused kernels have no
    batching rule on CUDA); stacked outputs must equal each model's own SDPA forward."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    from madbench_layers.attention import Attention
    torch.manual_seed(0)
    models = [Attention(32, num_heads=4, head_dim=8, window=window) for _ in range(3)]
    x = torch.randn(2, 10, 32)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    out = vmap(lambda p, b, t: functional_call(base, (p, b), (t,)), in_dims=(0, 0, None))(
        params, buffers, x)
    expected = torch.stack([m(x) for m in models])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
