"""torch.distributed set-up and a tear-down that no gloo/NCCL worker thread outlives.

Why this module exists (pytorch/pytorch#117762): every ``backward()`` stashes a Python
``contextvars.Context`` in PyTorch's native thread-local state, and a collective that
DDP launches during the backward (its gradient all-reduce) copies that state into its
``Work``. The gloo backend runs and then *destroys* each ``Work`` on its own worker
thread; destroying the copied Python object needs the GIL. When the interpreter has
already begun to finalize, CPython 3.11 makes such a thread exit with ``pthread_exit``,
whose forced unwind through a ``noexcept`` destructor calls ``std::terminate``: the
process prints ``terminate called without an active exception`` and aborts (exit code
134 / signal 6). ``dist.destroy_process_group()`` alone does not prevent it, because DDP
modules keep the process group, and with it the worker threads, alive until the
interpreter's last garbage collection.

:func:`shutdown_distributed` therefore tears down while the interpreter is still fully
alive (at the end of a run, and from an ``atexit`` hook on every exit path: normal end,
exception, ``KeyboardInterrupt``):

1. a barrier, so that every rank has finished its collectives (skipped on error paths,
   where another rank may be gone);
2. ``destroy_process_group()`` while this module holds the last Python reference to the
   default group;
3. a garbage collection that frees DDP modules and reducers (and the traceback of an
   uncaught exception, which would keep them alive);
4. dropping that last reference: PyTorch destroys a process group with the GIL released,
   and its destructor joins the worker threads, so a worker that still has a ``Work`` to
   destroy takes the GIL and finishes before the interpreter starts to finalize.

One more holder exists: ``torch.distributed.nn`` binds ``group.WORLD`` as a default argument
when it is first imported (DDP imports it), so :func:`init_distributed` imports it before
creating the group. Where the group cannot be freed anyway (created elsewhere), the
tear-down releases the GIL for a moment instead, which lets a finishing worker drop its work.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import os
import sys
import threading
import time

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "shutdown_distributed",
    "register_distributed_cleanup",
    "is_main_rank",
    "rank",
    "any_rank",
    "all_reduce_sum",
    "unwrap_module",
]

logger = logging.getLogger(__name__)

_cleanup_registered = False
_lock = threading.Lock()


def unwrap_module(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel`` wrappers (the module itself otherwise)."""
    while isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        module = module.module
    return module


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """The global rank (0 outside ``torch.distributed``)."""
    return dist.get_rank() if _distributed() else 0


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is true on any rank (a collective: every rank must call it at the same point).

    A decision that skips a step (a non-finite loss) must be taken by all ranks together:
    a rank that skips its backward leaves the others waiting forever in DDP's all-reduce.
    ``device`` must be one the backend can reduce on (a CUDA device for NCCL).
    """
    if not _distributed():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of ``values`` over all ranks (``values`` itself outside ``torch.distributed``)."""
    if not _distributed():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def is_main_rank() -> bool:
    """True outside ``torch.distributed`` and on global rank 0 inside it."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def init_distributed(backend: str | None = None) -> str:
    """Initialise the default process group from ``torchrun``'s environment (once) and register the clean-up.

    Args:
        backend: ``"gloo"``, ``"nccl"``, ...; default ``"nccl"`` when CUDA is available, else ``"gloo"``.

    Returns:
        The backend of the default process group.

    Raises:
        RuntimeError: when ``torch.distributed`` is not available in this PyTorch build, or
            the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)
            is incomplete.
    """
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build; train on one process instead.")
    if not dist.is_initialized():
        missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
        if missing:
            raise RuntimeError(
                f"multi-process training expects to be started by torchrun, but the environment lacks {missing}; "
                "run e.g. `torchrun --nproc_per_node=2 -m monai.bundle run training --config_file "
                "\"['configs/train.json','configs/multi_gpu_train.json']\"`."
            )
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        # torch.distributed.nn binds `group.WORLD` as a default argument when it is first imported
        # (DDP imports it): imported after the group exists, it would keep the group, and its
        # worker threads, alive until the interpreter finalizes
        importlib.import_module("torch.distributed.nn")

        dist.init_process_group(backend=backend)
    register_distributed_cleanup()
    return str(dist.get_backend())


def register_distributed_cleanup() -> None:
    """Register :func:`shutdown_distributed` to run at interpreter exit (idempotent).

    ``atexit`` hooks run before CPython starts to finalize, on a normal end as well as
    after an uncaught exception or ``KeyboardInterrupt``.
    """
    global _cleanup_registered
    with _lock:
        if not _cleanup_registered:
            atexit.register(_shutdown_at_exit)
            _cleanup_registered = True


def _shutdown_at_exit() -> None:
    # an uncaught exception leaves its traceback in sys.last_*, which keeps the frames, and with
    # them the DDP modules that hold the process group, alive: it has been printed already
    for name in ("last_exc", "last_traceback", "last_value", "last_type"):
        if getattr(sys, name, None) is not None:
            setattr(sys, name, None)
    shutdown_distributed(barrier=False)


def shutdown_distributed(barrier: bool = True) -> None:
    """Destroy the default process group and join its worker threads.

    Also useful after a plain ``dist.destroy_process_group()``: the garbage collection
    frees the DDP modules that still hold the group, which joins its threads.

    Args:
        barrier: wait for every rank first (use at the normal end of a run, where all
            ranks arrive; an exit after an error must not wait for ranks that are gone).
    """
    group = None
    if dist.is_available() and dist.is_initialized():
        if barrier:
            try:
                dist.barrier()
            except Exception as err:  # a rank that has failed: tear down regardless
                logger.debug("barrier before shutdown failed: %s", err)
        group = dist.group.WORLD  # the last Python reference once the registry forgets it
        try:
            dist.destroy_process_group()
        except Exception as err:
            logger.debug("destroy_process_group failed: %s", err)
    gc.collect()  # free DDP modules and reducers, which hold the group in C++
    del group  # destroyed with the GIL released: joins the backend's worker threads
    gc.collect()
    if _backend_threads_alive():
        # something still holds the group (e.g. torch.distributed.nn imported after it was created):
        # release the GIL for a moment so that a worker finishing a collective can drop its work now
        time.sleep(0.2)


def _backend_threads_alive() -> bool:
    """Whether gloo worker threads still run in this process (Linux: thread names; elsewhere assume so)."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return True
    for tid in os.listdir(tasks):
        try:
            with open(os.path.join(tasks, tid, "comm")) as f:
                if f.read().startswith("pt_gloo"):
                    return True
        except OSError:
            continue
    return False
