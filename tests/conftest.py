import pytest

from madbench import plugins


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
