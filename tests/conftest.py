import os

import pytest
import torch

# Triton kernels run under the interpreter on machines without CUDA; the variable must be set
# before anything imports triton (kernels.md, "Testing Triton kernels on CPU").
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from madbench import plugins

# Tiny tensors: one thread avoids thread start-up costs that dominate at these sizes.
torch.set_num_threads(1)


@pytest.fixture
def register_plugin():
    """Register a plugin object for one test; it is removed afterwards."""
    names = []

    def _register(obj, name):
        plugins.register_plugin(obj, name)
        names.append(name)

    yield _register
    for name in names:
        plugins.unregister_plugin(name)


@pytest.fixture(scope="session")
def trial(tmp_path_factory):
    """A real sweep: memorization baseline, 2 epochs, two learning rates (CPU, ~3 s), and
    the leaderboard submission built from it: (path, document)."""
    import json

    from click.testing import CliRunner

    from madbench.cli import main

    def cli(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    root = tmp_path_factory.mktemp("lb")
    run_dir = root / "run"
    result = cli("eval", "--arch", "mh-attention", "--tasks", "memorization", "--preset",
                 "smoke", "--set", "epochs=2", "--set", "lrs=0.001,0.0005", "--run-dir",
                 run_dir, "--device", "cpu", "--engine", "plain", "--no-progress")
    assert result.exit_code == 0, result.output
    out = root / "trial.json"
    result = cli("leaderboard", "submit", run_dir, "--name", "trial", "--out", out,
                 "--audit-dim", "32")
    assert result.exit_code == 0, result.output
    return out, json.loads(out.read_text())
