"""Result identity: the architecture hash covers what changes the model, not its display name;
a mixer's source identity covers its whole package (kernels and reference ops included), for a
bundled mixer the modules it imports, or the version of an installed distribution."""
import hashlib
from pathlib import Path

from madbench.architecture import architecture_hash, mixer_source_id, resolve_architecture
from madbench.code_identity import (code_identity, import_closure, package_root,
                                    source_files)


def test_the_same_layers_under_three_names_share_one_hash():
    specs = [resolve_architecture(a) for a in ("hyena", "hyena-swiglu", "H-Sg-H-Sg")]
    assert len({s.name for s in specs}) == 3
    assert len({s.hash for s in specs}) == 1
    other = resolve_architecture("hyena", mixer_kwargs={"short_filter": 4})
    assert other.hash != specs[0].hash                    # a kwarg changes the model


def test_the_display_name_is_not_hashed_but_the_width_is():
    d = {"name": "a", "dim": 128, "layers": [{"mixer": "hyena", "kwargs": {}}]}
    assert architecture_hash(d, ["x"]) == architecture_hash({**d, "name": "b"}, ["x"])
    assert architecture_hash(d, ["x"]) != architecture_hash({**d, "dim": 64}, ["x"])
    assert architecture_hash(d, ["x"]) != architecture_hash(d, ["y"])


def _naive_digest(root):
    """Independent: SHA-256 over (relative path, bytes) of every .py below root, sorted."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def test_an_edit_to_a_helper_module_of_the_package_changes_the_identity(tmp_path, monkeypatch):
    """The stale-key case of the issue: the mixer's module is unchanged, the op it calls is
    edited; the identity must change."""
    pkg = tmp_path / "toy_mixers"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "layer.py").write_text("from .ops.kernel import op\n")
    (pkg / "ops" / "__init__.py").write_text("")
    kernel = pkg / "ops" / "kernel.py"
    kernel.write_text("def op(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_mixers.layer  # noqa: F401 - the package must be imported to be located
    before = code_identity("toy_mixers.layer")
    assert before == _naive_digest(pkg)
    assert [p.name for p in source_files(pkg)] == ["__init__.py", "layer.py", "__init__.py",
                                                   "kernel.py"]
    kernel.write_text("def op(x):\n    return 2 * x\n")
    after = code_identity("toy_mixers.layer")
    assert after != before and after == _naive_digest(pkg)


def _naive_files_digest(root, rels):
    """Independent: SHA-256 over (relative path, bytes) of the named files, sorted by path."""
    h = hashlib.sha256()
    for rel in sorted(rels):
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def test_a_bundled_mixer_is_identified_by_the_modules_it_imports(tmp_path, monkeypatch):
    """Every way of importing a sibling module is followed (relative, absolute, ``from . import``,
    two levels up, inside a function, a star import of a subpackage), with each subpackage's
    ``__init__``; the package's own ``__init__`` is hashed but not followed, and unimported
    modules are left out. A file whose imports cannot be read falls back to the whole package. An edit to an imported kernel changes the
    identity; an edit to another layer's module does not."""
    pkg = tmp_path / "toy_bundle"
    (pkg / "ops" / "conv").mkdir(parents=True)
    (pkg / "star").mkdir()
    files = {
        "__init__.py": "from . import layer, other\n",
        "layer.py": "from .ops.conv.kernel import op\nimport toy_bundle.util\n"
                    "from .star import *\ndef f():\n    from . import helper\n",
        "star/__init__.py": "", "star/deep.py": "",
        "util.py": "", "helper.py": "from toy_bundle import shared\n", "shared.py": "",
        "other.py": "import math\n", "unused.py": "",
        "ops/__init__.py": "", "ops/conv/__init__.py": "",
        "ops/conv/kernel.py": "from ..base import B\nop = B\n", "ops/base.py": "B = 1\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_bundle.layer  # noqa: F401 - the package must be imported to be located
    expected = ["__init__.py", "helper.py", "layer.py", "ops/__init__.py", "ops/base.py",
                "ops/conv/__init__.py", "ops/conv/kernel.py", "shared.py", "star/__init__.py",
                "star/deep.py", "util.py"]
    assert [p.relative_to(pkg).as_posix() for p in import_closure("toy_bundle.layer")] == expected
    before = code_identity("toy_bundle.layer", bundled=True)
    assert before == _naive_files_digest(pkg, expected)
    (pkg / "other.py").write_text("import math  # edited\n")
    assert code_identity("toy_bundle.layer", bundled=True) == before
    (pkg / "ops" / "base.py").write_text("B = 2\n")
    after = code_identity("toy_bundle.layer", bundled=True)
    assert after != before and after == _naive_files_digest(pkg, expected)
    assert code_identity("toy_bundle.layer") == _naive_digest(pkg)      # not bundled: all of it
    (pkg / "util.py").write_text("def broken(:\n")     # imports unreadable: the whole package
    assert code_identity("toy_bundle.layer", bundled=True) == _naive_digest(pkg)


def test_every_bundled_source_file_is_reached_by_some_mixer():
    """The bundled identity follows imports written in the source; a kernel reached only by a
    dynamic import would escape it. Every module of ``madbench_layers`` (but its registering
    ``__init__`` and the presets) must be in the closure of a registered mixer's module."""
    from madbench.architecture import get_registry
    import madbench_layers
    root = package_root("madbench_layers")
    modules = {e.obj.__module__ for e in get_registry().mixers.values()
               if e.obj.__module__.startswith("madbench_layers.")}
    reached = {p for m in modules for p in import_closure(m)}
    # kernels staged for a layer, measured before any layer uses them (issue #15): reached by
    # no mixer yet, so no record depends on them; a layer that starts using one imports it
    staged: set[str] = set()
    files = {p.relative_to(root).as_posix() for p in source_files(root)}
    missing = files - {p.relative_to(root).as_posix() for p in reached} - \
        {"__init__.py", "architectures.py"} - staged
    assert not missing
    hyena = {mixer_source_id(l.mixer).split("@")[1] for l in resolve_architecture("hyena").layers
             if l.mixer == "hyena"}
    assert len(hyena) == 1 and hyena != {mixer_source_id("mamba").split("@")[1]}
    assert madbench_layers


def test_an_installed_distribution_is_identified_by_its_version(monkeypatch):
    from madbench import code_identity as ci
    monkeypatch.setattr(ci, "installed_version", lambda d: "1.2.3" if d == "pkg" else None)
    assert code_identity("anything.at.all", "pkg") == "pkg==1.2.3"
    assert code_identity("madbench_layers.hyena", "pkg", bundled=True) != "pkg==1.2.3"


def test_what_each_bundled_mixer_runs_is_in_its_identity():
    """Independent of the import reading: the Python functions a bundled mixer actually runs
    (forward and backward on CPU, traced with ``sys.setprofile``) all live in files of its
    ``import_closure``."""
    import sys

    import torch

    from madbench.architecture import LayerSpec, build_mixer, get_registry
    mixers = sorted(get_registry().mixers.items())        # loads the bundled plugin
    root = package_root("madbench_layers")
    for name, entry in mixers:
        module = entry.obj.__module__
        if not module.startswith("madbench_layers."):
            continue
        torch.manual_seed(0)
        layer = build_mixer(LayerSpec(name), 32)
        x = torch.randn(2, 8, 32, requires_grad=True)
        ran = set()

        def profile(frame, event, arg):
            if event == "call":
                ran.add(frame.f_code.co_filename)
        sys.setprofile(profile)
        try:
            layer(x).sum().backward()
        finally:
            sys.setprofile(None)
        ran = {Path(f).resolve() for f in ran if Path(f).resolve().is_relative_to(root)}
        assert ran, name
        assert ran <= {p.resolve() for p in import_closure(module)}, name
