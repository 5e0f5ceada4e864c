"""torch.distributed (gloo, CPU): DDP equals single-process training; the bundle runs under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _torchrun(args: list[str], env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    run_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=run_env, cwd=cwd or str(REPO))


def test_ddp_matches_single_process(tmp_path):
    single, multi = tmp_path / "single.pt", tmp_path / "ddp.pt"
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_equivalence_worker.py"), str(single)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _torchrun([str(HERE / "ddp_equivalence_worker.py"), str(multi)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(single, weights_only=True), torch.load(multi, weights_only=True)
    assert a["iteration"] == b["iteration"] == 4
    for key in a["student"]:
        torch.testing.assert_close(b["student"][key], a["student"][key], rtol=1e-4, atol=1e-5, msg=key)
    for key in a["teacher"]:
        torch.testing.assert_close(b["teacher"][key], a["teacher"][key], rtol=1e-4, atol=1e-5, msg=key)


def test_bundle_trains_under_torchrun(tmp_path):
    out = tmp_path / "out"
    configs = str([str(REPO / "bundles" / "chase" / "configs" / f) for f in ("train.json", "multi_gpu_train.json")])
    args = ["-m", "monai.bundle", "run", "training", "--config_file", configs, "--output_dir", str(out)]
    args += ["--max_epochs", "2", "--iterations_per_epoch", "2", "--num_workers", "0", "--batch_size", "2", "--progress_bar", "False"]
    proc = _torchrun(args, env={"MONAI_SUPMIX_CACHE": str(tmp_path / "cache")}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("best validation mIoU") == 1  # only rank 0 reports
    files = sorted(os.listdir(out / "models"))
    assert "model.pt" in files
    assert [f for f in files if f.startswith("checkpoint")] == ["checkpoint_epoch=2.pt"] or len([f for f in files if f.startswith("checkpoint")]) == 1
    assert not [f for f in files if f.startswith("tmp")]
