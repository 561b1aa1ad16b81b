"""Result identity: the architecture hash covers what changes the model, not its display name;
a mixer's source identity covers its whole package (kernels and reference ops included), or the
version of an installed distribution."""
import hashlib
from pathlib import Path

from madbench.architecture import architecture_hash, mixer_source_id, resolve_architecture
from madbench.code_identity import code_identity, source_digest, source_files


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


def test_bundled_mixers_are_identified_by_their_whole_package():
    spec = resolve_architecture("hyena")
    import madbench_layers
    root = Path(madbench_layers.__file__).parent
    sources = {mixer_source_id(l.mixer).split("@")[1] for l in spec.layers}
    assert sources == {source_digest(root)} == {_naive_digest(root)}


def test_an_installed_distribution_is_identified_by_its_version(monkeypatch):
    from madbench import code_identity as ci
    monkeypatch.setattr(ci, "installed_version", lambda d: "1.2.3" if d == "pkg" else None)
    assert code_identity("anything.at.all", "pkg") == "pkg==1.2.3"
    assert code_identity("madbench_layers.hyena", "pkg", bundled=True) != "pkg==1.2.3"
