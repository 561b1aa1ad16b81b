"""benchmarks/stage.sh: a file split into parts (one per device call) joins back to the same
bytes, and refuses to join with a part missing or altered."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stage.sh"
pytestmark = pytest.mark.skipif(shutil.which("split") is None or shutil.which("sha256sum") is None,
                                reason="needs coreutils split and sha256sum")


def stage(tmp_path, *args):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PART_MIB": "1"})


def test_split_then_join_gives_the_same_bytes_and_refuses_missing_or_altered_parts(tmp_path):
    data = os.urandom(2_500_000)
    (tmp_path / "w.whl").write_bytes(data)
    out = stage(tmp_path, "split", "w.whl", "t")
    assert out.returncode == 0 and out.stdout.startswith("3 parts")
    assert sorted(p.name for p in (tmp_path / ".stage").iterdir()) == ["t-1", "t-2", "t-3"]
    joined = stage(tmp_path, "join", "t", "out")
    assert joined.returncode == 0
    assert hashlib.sha256((tmp_path / "out" / "w.whl").read_bytes()).digest() == \
        hashlib.sha256(data).digest()
    shutil.move(tmp_path / ".stage" / "t-2", tmp_path / "t-2")
    missing = stage(tmp_path, "join", "t", "out2")
    assert missing.returncode == 2 and "not carried yet: t-2" in missing.stderr
    shutil.move(tmp_path / "t-2", tmp_path / ".stage" / "t-2")
    with open(tmp_path / ".stage" / "t-3" / "part", "r+b") as f:
        f.write(b"X")                                   # one byte altered
    altered = stage(tmp_path, "join", "t", "out3")
    assert altered.returncode == 2 and "sha256 differs" in altered.stderr
    assert not (tmp_path / "out3" / "w.whl").exists()
    assert stage(tmp_path, "split", "absent.whl", "t").returncode == 2
    (tmp_path / "empty.whl").write_bytes(b"")
    assert stage(tmp_path, "split", "empty.whl", "e").returncode == 2


def test_a_new_split_replaces_its_own_parts_only(tmp_path):
    """Splitting again under a name drops that name's old parts and any leftover of a split cut
    short, and leaves another name that merely starts the same alone."""
    (tmp_path / "a.bin").write_bytes(os.urandom(2_500_000))
    (tmp_path / "b.bin").write_bytes(os.urandom(1_200_000))
    assert stage(tmp_path, "split", "a.bin", "t-cpu").returncode == 0
    assert stage(tmp_path, "split", "a.bin", "t").returncode == 0        # 3 parts
    (tmp_path / ".stage" / "tmp.t").mkdir()
    (tmp_path / ".stage" / "tmp.t" / "p002").write_bytes(b"stale")     # a split cut short
    assert stage(tmp_path, "split", "b.bin", "t").stdout.startswith("2 parts")
    names = sorted(p.name for p in (tmp_path / ".stage").iterdir())
    assert names == ["t-1", "t-2", "t-cpu-1", "t-cpu-2", "t-cpu-3"]
    assert stage(tmp_path, "join", "t", "out").returncode == 0
    assert (tmp_path / "out" / "b.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
