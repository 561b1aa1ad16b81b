"""The compiled engine (`--engine compiled`): the graphed engine with torch.compile'd models,
each checked against its eager self before training. On the CPU the models compile with the
cheap ``aot_eager`` backend (the plumbing and the check); inductor runs on the GPU."""
import json
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import madbench.graphed as graphed
from madbench.cli import main
from madbench.store import ResultsStore

FAST = ["--tasks", "memorization", "--settings", "baseline", "--preset", "smoke", "--set",
        "epochs=2", "--no-progress", "--format", "json"]

# A mixer that computes something else when compiled (Dynamo bakes the branch in): the check
# must catch it. A causal running mean, state ``dim`` per layer.
MIXERS = textwrap.dedent('''
    import torch
    from torch import nn

    class CompilesWrong(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            steps = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
            y = self.proj(x).cumsum(1) / steps[:, None]
            if torch.compiler.is_compiling():
                y = y + 1.0
            return y

        def state_size(self, seq_len):
            return self.proj.out_features
''')


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(graphed, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def records(path):
    return sorted(ResultsStore(path).records(), key=lambda r: (r["lr"], r["weight_decay"]))


def test_compiled_runs_equal_the_uncompiled_engine_and_say_so(aot_eager, tmp_path):
    """Two configurations, compiled and not: the same accuracies and losses, and each record
    names the engine that trained it."""
    grid = ["--set", "lrs=1e-3,5e-4"]
    for engine in ("compiled", "graphed"):
        res = run(["eval", "--arch", "mh-attention", *FAST, *grid, "--engine", engine,
                   "--run-dir", str(tmp_path / engine)])
        assert res.exit_code == 0, res.output
    compiled, plain = records(tmp_path / "compiled"), records(tmp_path / "graphed")
    assert len(compiled) == len(plain) == 2
    assert {r["engine"] for r in compiled} == {"compiled-eager"}      # no CUDA graphs on a CPU
    assert {r["engine"] for r in plain} == {"graphed-eager"}
    for a, b in zip(compiled, plain):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_a_model_that_compiles_to_other_numbers_trains_uncompiled(aot_eager, tmp_path,
                                                                 monkeypatch):
    (tmp_path / "compileswrong.py").write_text(MIXERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        res = run(["eval", "--arch", "compileswrong:CompilesWrong", *FAST, "--engine",
                   "compiled", "--allow-state-mismatch", "--run-dir", str(tmp_path / "runs")])
    finally:
        sys.modules.pop("compileswrong", None)
    assert res.exit_code == 0, res.output
    warning = [line for line in res.output.splitlines() if "not compiled" in line]
    assert len(warning) == 1 and "in train mode" in warning[0], res.output
    assert {r["engine"] for r in ResultsStore(tmp_path / "runs").records()} == {"graphed-eager"}
    assert json.loads(res.output[res.output.index("{"):])["settings"]


def test_the_check_compares_both_modes(aot_eager):
    """A model that differs only in evaluation mode (as the bundled Hyena once did, compiled
    with its Triton launches traced) is caught too."""
    class EvalOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            y = self.lin(x)
            return y + 1.0 if torch.compiler.is_compiling() and not self.training else y

    model = EvalOnly()
    with pytest.raises(graphed.CompileMismatch, match="eval mode"):
        graphed.compile_checked(model, torch.randn(2, 3, 4), "fp32")
    assert model.training
    fine = torch.nn.Linear(4, 4)
    assert graphed.compile_checked(fine, torch.randn(2, 3, 4), "fp32")(torch.ones(1, 4)) \
        .shape == (1, 4)


@pytest.mark.gpu
def test_compiled_hyena_trains_like_the_graphed_engine_on_cuda(tmp_path):
    """inductor, CUDA graphs, the bundled Triton kernels as custom operators: the accuracies
    of the graphed engine (bf16, so within noise, not bitwise)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    outputs = {}
    for engine in ("compiled", "graphed"):
        res = run(["eval", "--arch", "hyena-swiglu", *FAST, "--device", "cuda", "--engine",
                   engine, "--run-dir", str(tmp_path / engine)])
        assert res.exit_code == 0, res.output
        outputs[engine] = res.output
    compiled, plain = records(tmp_path / "compiled"), records(tmp_path / "graphed")
    assert {r["engine"] for r in compiled} == {"compiled"}, outputs["compiled"][-2000:]
    for a, b in zip(compiled, plain):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
