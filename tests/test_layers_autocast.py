"""Every bundled mixer trains under bf16 autocast, as it does on the GPU (found by a scaling run
on an H200: hyena-experts-modal added bf16 expert outputs into a float32 buffer and failed)."""
import pytest
import torch

from madbench.plugins import get_registry

BUNDLED = sorted(name for name, entry in get_registry().mixers.items()
                 if entry.plugin == "reference-layers")


def test_the_bundled_mixers_are_all_listed():
    assert len(BUNDLED) >= 20 and "hyena-experts-modal" in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
# torch's note that an rms_norm with a float32 weight on bf16 input takes its unfused path
@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")
def test_a_bundled_mixer_runs_forward_and_backward_under_bf16_autocast(name):
    torch.manual_seed(0)
    layer = get_registry().mixers[name].obj(32)
    x = torch.randn(2, 16, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.float().sum().backward()
    exact = layer(x).detach()                       # the same layer in float32
    assert y.shape == x.shape and torch.isfinite(x.grad).all()
    # bf16 keeps 8 bits of mantissa: the outputs agree to a few percent of their scale
    assert (y.float() - exact).abs().max() <= 0.05 * exact.abs().max() + 1e-3
