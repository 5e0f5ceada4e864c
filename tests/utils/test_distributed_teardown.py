"""torch.distributed set-up and tear-down (gloo, one process): worker threads are joined before exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys, torch
    import torch.distributed as dist
    from monai_supmix.utils import init_distributed, is_main_rank, shutdown_distributed

    def threads():
        return len(os.listdir("/proc/self/task"))

    torch.nn.Linear(4, 2)(torch.randn(3, 4)).sum().backward()  # start torch's own thread pools first
    before = threads()
    # atexit runs last-registered first: this probe runs after the clean-up that init_distributed registers
    atexit.register(lambda: print("at exit", threads() == before, flush=True))
    assert init_distributed("gloo") == "gloo" and is_main_rank()

    def train():
        net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
        net(torch.randn(3, 4)).sum().backward()  # a gradient all-reduce from inside a backward pass
        assert threads() > before
        if sys.argv[1] == "raise":
            raise RuntimeError("bad input")  # uncaught: the atexit hook joins the threads before finalization

    train()
    shutdown_distributed()  # explicit, at the normal end of a run
    print("after", threads() == before, flush=True)
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
@pytest.mark.parametrize("mode", ["explicit", "raise"])
def test_gloo_threads_are_joined_on_every_exit_path(tmp_path, mode):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000),
               LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120, env=env)
    assert "terminate called" not in proc.stderr
    if mode == "explicit":
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "after True" in proc.stdout and "at exit True" in proc.stdout
    else:
        assert proc.returncode == 1, proc.stderr[-2000:]  # Python's own exit code, not an abort (134)
        assert "RuntimeError: bad input" in proc.stderr
        assert "at exit True" in proc.stdout


def test_init_distributed_without_torchrun_says_how(monkeypatch):
    from monai_supmix.utils import init_distributed

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed("gloo")
