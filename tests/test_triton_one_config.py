"""benchmarks/triton_one_config.py: Triton's autotuner tries only the cheapest of the configs its
own pruning keeps, patched once however often the module is imported, also as a pytest plugin;
``--autotune`` / ``AUTOTUNE`` of fla_status.py and fla_gpu.sh, and their refusals."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def one_config(monkeypatch):
    """The module imported afresh; Triton's autotuner and sys.modules are restored afterwards."""
    autotuner = pytest.importorskip("triton.runtime.autotuner")
    monkeypatch.setattr(autotuner.Autotuner, "prune_configs", autotuner.Autotuner.prune_configs)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "triton_one_config", raising=False)
    yield importlib.import_module("triton_one_config")
    sys.modules.pop("triton_one_config", None)


def _autotuned(configs, **autotune):
    import triton
    import triton.language as tl

    @triton.autotune(configs=configs, key=["n"], **autotune)
    @triton.jit
    def kernel(x, n, BLOCK: tl.constexpr):
        pass
    kernel.nargs = {}
    return kernel


def test_one_config_per_kernel_the_cheapest_that_pruning_keeps(one_config):
    from triton import Config
    configs = [Config({"BLOCK": 16}, num_stages=3, num_warps=1),   # most stages
               Config({"BLOCK": 64}, num_stages=2, num_warps=2),   # largest block
               Config({"BLOCK": 32}, num_stages=2, num_warps=8),   # most warps
               Config({"BLOCK": 32}, num_stages=2, num_warps=4)]   # the cheapest
    assert _autotuned(configs).prune_configs({}) == [configs[3]]
    first_two = {"early_config_prune": lambda configs, nargs, **kwargs: configs[:2]}
    assert _autotuned(configs, prune_configs_by=first_two).prune_configs({}) == [configs[1]]
    # block sizes are the integer kwargs named B...; others (fla's G, a flag) do not count
    config = Config({"BT": 16, "BK": 4, "G": 8, "BOOL": True}, num_stages=1, num_warps=2)
    assert one_config.cost(config) == (1, 64, 2)


def test_importing_again_does_not_wrap_again(one_config):
    from triton.runtime.autotuner import Autotuner
    patched = Autotuner.prune_configs
    importlib.reload(one_config)
    assert Autotuner.prune_configs is patched and patched.one_config
    assert not hasattr(patched.__wrapped__, "one_config")      # wrapped once, not twice


def test_loads_as_a_pytest_plugin(tmp_path):
    pytest.importorskip("triton")
    (tmp_path / "test_patched.py").write_text(
        "from triton.runtime.autotuner import Autotuner\n"
        "def test_patched():\n    assert Autotuner.prune_configs.one_config\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(BENCHMARKS), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "triton_one_config", "test_patched.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-2000:]


FAKE_FLA_LAYERS = """
import sys, torch
class Patched(torch.nn.Module):
    def __init__(self, hidden_size, **kwargs):
        super().__init__()
        from triton.runtime.autotuner import Autotuner
        if not getattr(Autotuner.prune_configs, "one_config", False):
            raise RuntimeError("Triton's autotuner is not patched in this worker")
        self.proj = torch.nn.Linear(hidden_size, hidden_size)
    def forward(self, hidden_states, **kwargs):
        return torch.cumsum(self.proj(hidden_states), dim=1), None, None
__all__ = ["Patched"]
"""


def test_fla_status_patches_its_workers_with_autotune_one(tmp_path):
    """--autotune one reaches the spawned worker (a fake fla whose layer builds only there
    patched) and the table's header says so."""
    pytest.importorskip("triton")
    (tmp_path / "fla" / "layers").mkdir(parents=True)
    (tmp_path / "fla" / "__init__.py").write_text("__version__ = '0.0.test'\n")
    (tmp_path / "fla" / "layers" / "__init__.py").write_text(FAKE_FLA_LAYERS)
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "fla_status.py"), "--device", "cpu",
                           "--steps", "2", "--workers", "1", "--autotune", "one", "--out",
                           str(out)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(tmp_path),
                               "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    table = out.read_text()
    assert "; autotune: one config per kernel;" in table.splitlines()[0]
    assert "| `Patched` | evaluable |" in table, table


def test_fla_gpu_refuses_an_unknown_autotune_in_one_line(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(BENCHMARKS / "fla_gpu.sh")], cwd=tmp_path,
                          env={**os.environ, "AUTOTUNE": "bogus", "OUT": str(out)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr == "error: AUTOTUNE must be full or one, not 'bogus'\n"


def test_fla_status_refuses_an_unknown_autotune():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "fla_status.py"), "--autotune",
                           "bogus"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice: 'bogus'" in done.stderr
