"""Atomic writes that respect the umask."""

from __future__ import annotations

import json
import os
import stat

import pytest

from monai_supmix.utils.files import atomic_write, make_temp_dir, publish_dir, umask_mode, write_json_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_umask_mode(tmp_path, umask_022):
    target = tmp_path / "sub" / "out.json"
    write_json_atomic({"a": 1}, str(target))
    assert json.loads(target.read_text()) == {"a": 1}
    assert _mode(target) == 0o644 == umask_mode()
    assert not [p for p in os.listdir(target.parent) if p.startswith(".tmp_")]
    os.umask(0o077)
    atomic_write(str(tmp_path / "b.bin"), lambda tmp: open(tmp, "wb").write(b"x"))
    assert _mode(tmp_path / "b.bin") == 0o600


def test_failed_write_leaves_nothing_behind(tmp_path):
    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(str(tmp_path / "x.txt"), boom)
    assert os.listdir(tmp_path) == []


def test_published_folders_get_the_umask_mode(tmp_path, umask_022):
    target = tmp_path / "data"
    tmp = make_temp_dir(str(target))
    assert _mode(tmp) == 0o700  # mkdtemp's private mode until published
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "old.txt").write_text("old")
    open(os.path.join(tmp, "new.txt"), "w").close()
    publish_dir(tmp, str(target))
    assert sorted(os.listdir(target)) == ["new.txt"] and _mode(target) == 0o755
