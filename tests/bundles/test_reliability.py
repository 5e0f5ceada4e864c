"""Fault tolerance of bundle training: kill-and-resume, determinism."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_bundle

pytestmark = pytest.mark.slow

SMALL = {"num_workers": 0, "batch_size": 2, "progress_bar": False, "val_interval": 1}


def _train_cmd(out: str, extra: dict) -> list[str]:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file"]
    cmd += [str(REPO / "bundles" / "chase" / "configs" / "train.json"), "--output_dir", out]
    for key, value in {**SMALL, **extra}.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def test_sigkill_then_resume(phantom_cache, tmp_path):
    out = str(tmp_path / "out")
    models = os.path.join(out, "models")
    schedule = {"max_epochs": 6, "iterations_per_epoch": 4}
    env = dict(os.environ, MONAI_SUPMIX_CACHE=phantom_cache)
    proc = subprocess.Popen(_train_cmd(out, schedule), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # kill it as soon as the first full-state checkpoint exists, i.e. mid-run
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(models) and any(f.startswith("checkpoint") for f in os.listdir(models)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; make the schedule longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = [f for f in os.listdir(models) if f.startswith("checkpoint")]
    assert killed_at and "checkpoint_epoch=6.pt" not in killed_at
    # a stale temporary file, as left by a save killed half-way, must be cleaned up on resume
    with open(os.path.join(models, "tmpdeadbeef.pt"), "wb") as f:
        f.write(b"partial")

    resumed = subprocess.run(
        _train_cmd(out, {**schedule, "resume": True}), env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    files = os.listdir(models)
    assert not [f for f in files if f.startswith("tmp")]
    # the interrupted run's older checkpoints are gone: only the newest is kept (keep_checkpoints=1)
    assert [f for f in files if f.startswith("checkpoint")] == ["checkpoint_epoch=6.pt"]
    final = torch.load(os.path.join(models, "checkpoint_epoch=6.pt"), map_location="cpu", weights_only=False)
    assert final["trainer"]["iteration"] == 6 * 4  # same count as an uninterrupted run
    for key in ("network", "teacher", "optimizer", "discriminator", "discriminator_optimizer"):
        assert key in final
    assert os.path.isfile(os.path.join(models, "model.pt"))


def test_deterministic_runs_give_identical_weights(phantom_cache, tmp_path):
    weights = []
    for i in range(2):
        out = str(tmp_path / f"run{i}")
        run_bundle(
            "chase", ("train",), run_id="training", output_dir=out, deterministic=True, seed=3,
            max_epochs=1, iterations_per_epoch=3, **SMALL,
        )
        state = torch.load(os.path.join(out, "models", "checkpoint_epoch=1.pt"), map_location="cpu", weights_only=False)
        weights.append(state["network"])
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
