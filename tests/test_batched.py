"""The batched sweep engine equals sequential training of each configuration."""
import dataclasses

import pytest
import torch

from madbench.batched import train_batched
from madbench.protocol import PRESETS
from madbench.trainer import train

from test_trainer import Lookup, identity_data

PROTO = dataclasses.replace(PRESETS["paper"], epochs=4, batch_size=16)
CONFIGS = [(1e-3, 0.0), (1e-3, 0.1), (1e-2, 0.0), (1e-2, 0.1)]


def sequential(make, configs, proto):
    out = []
    for lr, wd in configs:
        torch.manual_seed(0)
        out.append(train(make(), identity_data(), identity_data(seed=1), 8, lr, wd, proto, 0))
    return out


@pytest.mark.parametrize("proto", [PROTO, dataclasses.replace(PROTO, schedule="constant",
                                                               decay="all")])
def test_batched_matches_sequential(proto):
    seq = sequential(Lookup, CONFIGS, proto)
    bat = train_batched(Lookup, identity_data(), identity_data(seed=1), 8, CONFIGS, proto, 0)
    for s, b in zip(seq, bat):
        assert b.loss == pytest.approx(s.loss, rel=1e-5, abs=1e-6)
        assert b.train_loss == pytest.approx(s.train_loss, rel=1e-5)
        assert b.accuracy == s.accuracy and b.steps == s.steps


class SometimesNaN(Lookup):
    """Overflows (infinite logits, NaN loss) only once a head weight exceeds 0.6, which a
    learning rate of 1.0 reaches in one step and 1e-3 never does here."""

    def forward(self, x):
        out = super().forward(x)
        return out * torch.exp(torch.relu(self.head.weight.abs().max() - 0.5) * 1000)


def test_one_diverging_configuration_leaves_the_others_untouched():
    configs = [(1e-3, 0.0), (1.0, 0.0)]
    bat = train_batched(SometimesNaN, identity_data(), identity_data(seed=1), 8, configs,
                        PROTO, 0)
    seq = sequential(SometimesNaN, configs[:1], PROTO)
    assert bat[1].diverged and bat[1].accuracy == 0.0
    assert not bat[0].diverged and not seq[0].diverged
    assert bat[0].loss == pytest.approx(seq[0].loss, rel=1e-5)


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
