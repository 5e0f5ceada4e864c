"""Train and evaluate one run through a bundle, and a resumable grid of such runs.

One run is the bundle's own training command (``python -m monai.bundle run training``)
with overrides and a datalist file, followed by the bundle's evaluation of the **final**
EMA teacher on the fold's test images (not the checkpoint the training-time validation
picked, which would let validation choices leak into the comparison). Finished runs are
stored one by one in a JSON list (written atomically), so an interrupted grid resumes
where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from monai_supmix.utils.files import write_json_atomic

__all__ = [
    "METHODS",
    "bundle_command",
    "train_and_evaluate",
    "validation_curve",
    "ResultStore",
    "run_grid",
    "device_text",
]

#: The comparison's methods as bundle overrides (same network, schedule and evaluation).
#: ``ours`` is the bundles' default method; ``supmix``/``sufd`` add one component to conventional.
METHODS: dict[str, dict] = {
    "supervised": {"mix": "none", "sufd": False, "unsupervised_weight": 0.0},
    "conventional": {"mix": "classmix", "sufd": False},
    "supmix": {"mix": "both", "sufd": False},
    "sufd": {"mix": "classmix", "sufd": True},
    "ours": {"mix": "both", "sufd": True},
}

#: What an evaluation's ``metrics.json`` contributes to a run record.
METRIC_KEYS = ("miou", "iou", "dice", "pooled_miou", "pooled_iou", "pooled_dice", "infnet_dice", "class_names",
               "per_image")


def bundle_command(bundle_dir: Path, configs: Sequence[str], overrides: dict) -> list[str]:
    """``python -m monai.bundle run [training] --config_file ... --key value ...`` for a bundle folder."""
    files = [str(Path(bundle_dir) / "configs" / f"{c}.json") for c in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run"]
    cmd += ["training"] if list(configs) == ["train"] else []
    cmd += ["--config_file", files[0] if len(files) == 1 else str(files)]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return cmd


def device_text() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def _last_lines(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n    ".join(lines[-n:])


def train_and_evaluate(
    bundle_dir: Path,
    out_dir: Path,
    train_list: Path,
    test_list: Path,
    overrides: dict,
    threads: int,
    cwd: Path | None = None,
) -> dict:
    """Train through the bundle into ``out_dir``, then evaluate its final EMA teacher on ``test_list``.

    Returns:
        the evaluation's metrics (:data:`METRIC_KEYS`) plus ``train_seconds``, ``val_curve``
        (the training-time validation mIoU at each validation) and ``threads``.

    Raises:
        RuntimeError: when training or evaluation fails (naming the log file and its last lines).
    """
    import torch

    out_dir = Path(out_dir)
    if out_dir.exists():  # a run interrupted earlier: start afresh, its checkpoints would mix with this one's
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    train_overrides = dict(overrides, output_dir=str(out_dir), datalist_file=str(train_list))
    train_overrides.setdefault("num_workers", 0 if threads < 2 else 1)  # loader processes compete on a CPU
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.time()
    log = out_dir / "train.log"
    with open(log, "w") as f:
        proc = subprocess.run(bundle_command(bundle_dir, ["train"], train_overrides), stdout=f,
                              stderr=subprocess.STDOUT, cwd=cwd, env=env)
    train_seconds = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}), see {log}:\n    {_last_lines(log)}")
    curve_points = validation_curve(log.read_text())
    curve = [miou for _, miou in curve_points]
    ckpts = sorted(out_dir.glob("models/checkpoint_*.pt"), key=os.path.getmtime)
    if not ckpts:
        raise RuntimeError(f"training wrote no checkpoint under {out_dir / 'models'}, see {log}")
    from monai_supmix.bundle import read_training_settings

    state = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    final = out_dir / "models" / "final_teacher.pt"
    settings = read_training_settings(str(out_dir / "models" / "model.pt")) or {}
    torch.save({"model": state["teacher"], "settings": settings}, final)
    for ckpt in ckpts:
        ckpt.unlink()  # full-state checkpoints are only needed to resume an interrupted run
    eval_overrides = {k: v for k, v in train_overrides.items() if k != "num_workers"}
    eval_overrides.update(ckpt_path=str(final), datalist_file=str(test_list), num_workers=0)
    log = out_dir / "eval.log"
    with open(log, "w") as f:
        proc = subprocess.run(bundle_command(bundle_dir, ["train", "evaluate"], eval_overrides), stdout=f,
                              stderr=subprocess.STDOUT, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"evaluation failed (exit {proc.returncode}), see {log}:\n    {_last_lines(log)}")
    with open(out_dir / "eval" / "metrics.json") as f:
        metrics = json.load(f)
    return {**{k: metrics[k] for k in METRIC_KEYS if k in metrics}, "train_seconds": round(train_seconds, 1),
            "val_curve": curve, "val_seconds": [round(t, 1) for t, _ in curve_points], "threads": threads}


_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def validation_curve(log_text: str) -> list[tuple[float, float]]:
    """``(seconds since the training engine started, validation mIoU)`` of every validation in a bundle's log.

    Reads the bundle's log lines (``logging.conf``: ``%(asctime)s``): "Engine run starting" (or
    Ignite's "resuming") of the trainer, then each "Epoch[N] Metrics -- ... val_mean_iou: X".
    """
    from datetime import datetime

    def stamp(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()

    start = re.search(_STAMP + r" - \S*SemiSupervisedTrainer - INFO - Engine run (starting|resuming)", log_text)
    points = [(stamp(t), float(v)) for t, v in re.findall(_STAMP + r" - .*?Metrics -- .*?val_mean_iou: ([0-9.]+)", log_text)]
    if not points:
        return []
    origin = stamp(start.group(1)) if start else points[0][0]
    return [(t - origin, v) for t, v in points]


class ResultStore:
    """Run records in one JSON list, keyed by ``"id"``; every change is written atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path) as f:
            records = json.load(f)
        if not isinstance(records, list):
            raise ValueError(f"{self.path} should hold a JSON list of run records, found {type(records).__name__}.")
        return records

    def done(self) -> set[str]:
        return {r["id"] for r in self.load()}

    def store(self, record: dict) -> None:
        """Add or replace one record (by ``id``)."""
        with self._lock:
            self.write([r for r in self.load() if r["id"] != record["id"]] + [record])

    def write(self, records: list[dict]) -> None:
        """Replace the file's records with ``records``, sorted by ``id``, in one atomic write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(sorted(records, key=lambda r: r["id"]), str(self.path))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_grid(
    keys: Sequence,
    run_id: Callable[[object], str],
    execute: Callable[[object, int], dict],
    store: ResultStore,
    jobs: int = 1,
    force: bool = False,
    time_budget: float | None = None,
    print_fn: Callable[[str], None] = print,
    threads: int | None = None,
) -> tuple[int, int]:
    """Run every key not yet in ``store`` (all with ``force``), ``jobs`` at a time, storing each record when it ends.

    Prints one line when a run starts and one when it ends, with an estimate of the time
    left (the mean time of the runs finished so far times the runs left, over ``jobs``).
    No run starts after ``time_budget`` seconds.

    ``threads`` (CPU threads of each run) defaults to the CPU's cores shared among the ``jobs``
    (1 on a GPU). The thread count changes a run's numbers (the order of floating-point sums, and
    whether a loader process feeds it), so every record stores it; a grid whose runs are compared
    with each other should fix it, so that resuming with another ``jobs`` does not change it.

    Returns:
        ``(runs finished, runs failed)``.
    """
    import torch

    done = store.done()
    pending = [k for k in keys if force or run_id(k) not in done]
    skipped = len(keys) - len(pending)
    jobs = max(1, int(jobs))
    if threads is None:
        threads = 1 if torch.cuda.is_available() else max(1, (os.cpu_count() or 1) // jobs)
    elif int(threads) < 1:
        raise ValueError(f"threads must be a positive number of CPU threads per run, got {threads!r}")
    threads = int(threads)
    print_fn(f"{len(pending)} run(s) to do ({skipped} already done), {jobs} at a time, {threads} thread(s) each")
    start = time.time()
    durations: list[float] = []
    finished = failures = 0

    def one(key) -> dict:
        print_fn(f"[{time.strftime('%H:%M:%S')}] start {run_id(key)}")
        began = time.time()
        record = execute(key, threads)
        durations.append(time.time() - began)
        store.store(record)
        return record

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures: dict = {}
        queue = list(pending)
        while queue or futures:
            while queue and len(futures) < jobs:
                if time_budget is not None and time.time() - start > time_budget:
                    print_fn(f"time budget of {_duration(time_budget)} reached: {len(queue)} run(s) not started; "
                             "call again to continue")
                    queue = []
                    break
                key = queue.pop(0)
                futures[pool.submit(one, key)] = key
            if not futures:
                break
            future = next(as_completed(futures))
            key = futures.pop(future)
            try:
                record = future.result()
                finished += 1
                left = len(queue) + len(futures)
                eta = (sum(durations) / len(durations)) * left / jobs if durations else 0.0
                score = record.get("pooled_miou")
                print_fn(f"[{time.strftime('%H:%M:%S')}] done  {run_id(key)} ({finished + failures}/{len(pending)}): "
                         + (f"pooled mIoU {score:.4f}, " if isinstance(score, float) else "")
                         + f"{_duration(durations[-1])}; about {_duration(eta)} left")
            except Exception as err:  # keep the grid going; the message names the log
                failures += 1
                print_fn(f"FAILED {run_id(key)}: {err}")
    print_fn(f"finished {finished} run(s) in {_duration(time.time() - start)} ({failures} failed)")
    return finished, failures
