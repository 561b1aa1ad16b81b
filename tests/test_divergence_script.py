"""benchmarks/divergence.py: its watch names the first module whose forward output or backward
gradient is not finite, and bad arguments stop it in one line before anything trains."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("divergence",
                                                  ROOT / "benchmarks" / "divergence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Blow(nn.Module):
    """Finite forward; an infinite gradient on the way back."""

    def forward(self, x):
        return BlowFn.apply(x)


class BlowFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


class Log(nn.Module):
    def forward(self, x):
        return torch.log(x)          # -inf at 0, nan below


def test_watch_names_the_first_module_whose_forward_output_is_not_finite():
    div = load()
    model = nn.Sequential(nn.Linear(3, 3), Log(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.zero_()
    handles = div._watch(model)
    with pytest.raises(div.NonFinite, match=r"forward output of 1 \(Log\); inputs finite: True"):
        model(torch.ones(2, 3))
    for h in handles:
        h.remove()
    model(torch.ones(2, 3))          # removed: nothing raises


def test_watch_names_the_module_whose_input_gradient_is_not_finite():
    div = load()
    model = nn.Sequential(nn.Linear(3, 3), Blow(), nn.Linear(3, 1))
    div._watch(model)
    loss = model(torch.ones(2, 3, requires_grad=True)).sum()
    with pytest.raises(div.NonFinite, match=r"backward input gradient of 1 \(Blow\); output "
                                            r"gradient finite: True"):
        loss.backward()


@pytest.mark.parametrize("args, message", [
    (["no-such-arm", "--task", "compression", "--config", "1e-3,0"], "unknown arm"),
    (["hyena", "--task", "compression", "--config", "1e-3"], "--config takes LR,WD"),
    (["hyena", "--task", "compression", "--config", "1e-3,0", "--variants", "fast"],
     "unknown variant"),
])
def test_bad_arguments_stop_in_one_line(args, message):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "divergence.py"), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
