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
