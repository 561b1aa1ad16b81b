import pytest
import torch

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
