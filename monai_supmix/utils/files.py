"""Atomic file and folder writes whose results get the same permissions as ``open()`` would give.

``tempfile.mkstemp``/``mkdtemp`` create ``0600`` files and ``0700`` folders on purpose;
once renamed into place they would stay private. These helpers write to a temporary
name beside the target, apply the process umask (``0644``/``0755`` under the usual
``022``), then rename, so that a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable

__all__ = ["umask_mode", "atomic_write", "write_json_atomic", "make_temp_dir", "publish_dir"]

_umask_lock = threading.Lock()


def umask_mode(directory: bool = False) -> int:
    """The mode a new file (``0o666``) or folder (``0o777``) gets under the current umask."""
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0)
        os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write(path: str, save: Callable[[str], None], suffix: str | None = None) -> str:
    """Call ``save(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    Args:
        path: destination; its folder is created.
        save: writes the content to the file name it is given.
        suffix: suffix of the temporary name (default: that of ``path``, ``.nii.gz`` kept whole),
            so that writers that choose the format by extension work.

    Returns:
        ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        suffix = ".nii.gz" if path.endswith(".nii.gz") else os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json_atomic(obj: object, path: str) -> None:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file and a rename."""

    def save(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)

    atomic_write(path, save, suffix=".json")


def make_temp_dir(target: str, prefix: str = ".tmp_") -> str:
    """A new empty folder beside ``target`` to be filled and then passed to :func:`publish_dir`."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def publish_dir(tmp: str, target: str) -> str:
    """Give ``tmp`` the umask's folder mode and move it to ``target``, replacing what was there."""
    os.chmod(tmp, umask_mode(directory=True))
    if os.path.exists(target):
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
