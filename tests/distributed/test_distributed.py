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


@pytest.mark.parametrize("nan_rank", [None, 1])
def test_default_method_under_ddp_draws_per_rank_and_skips_together(tmp_path, nan_rank):
    """ClassMix + SupMix + strong view + SUFD + class-adaptive thresholds on 2 ranks: each rank its own masks; a NaN on one rank skips on all."""
    args = [str(HERE / "ddp_default_method_worker.py"), str(tmp_path)] + ([] if nan_rank is None else [str(nan_rank)])
    proc = _torchrun(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["iteration"] == r1["iteration"] == 8
    # both ranks read the same batches: their mixed images differ only through their random streams
    assert not torch.equal(r0["images"], r1["images"])
    for key in ("classmix", "supmix"):  # each rank draws its own masks
        assert r0[key].any() or r1[key].any()
    assert not (torch.equal(r0["classmix"], r1["classmix"]) and torch.equal(r0["supmix"], r1["supmix"]))
    assert r0["class_counts"] == r1["class_counts"]  # class counts for the class policies: summed over ranks
    # class-adaptive thresholds from the confidence of every rank's mixed pixels: the same on all ranks
    assert r0["class_confidence"].numel() == 2
    torch.testing.assert_close(r0["class_confidence"], r1["class_confidence"])
    assert r0["skipped"] == r1["skipped"] == ([] if nan_rank is None else [2])  # decided together, no hang
    for key in r0["student"]:  # DDP kept the replicas identical
        torch.testing.assert_close(r0["student"][key], r1["student"][key], msg=key)
    for key in r0["discriminator"]:
        torch.testing.assert_close(r0["discriminator"][key], r1["discriminator"][key], msg=key)


def test_self_training_gate_decides_on_every_rank_together(tmp_path):
    """Rank 0 finds its labeled class, rank 1 does not: both see the Dice of both batches (2·4 / (8 + 4)) and agree."""
    proc = _torchrun([str(HERE / "ddp_gate_worker.py"), str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0 == r1 and r0["running"] == [pytest.approx(8 / 12)] and r0["ready"]


@pytest.mark.parametrize("bundle", ["chase", "covid19"])
def test_bundle_trains_under_torchrun(tmp_path, bundle):
    out = tmp_path / "out"
    configs = str([str(REPO / "bundles" / bundle / "configs" / f) for f in ("train.json", "multi_gpu_train.json")])
    args = ["-m", "monai.bundle", "run", "training", "--config_file", configs, "--output_dir", str(out)]
    args += ["--max_epochs", "2", "--iterations_per_epoch", "2", "--num_workers", "0", "--batch_size", "2", "--progress_bar", "False"]
    proc = _torchrun(args, env={"MONAI_SUPMIX_CACHE": str(tmp_path / "cache")}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("best validation mIoU") == 1  # only rank 0 reports
    files = sorted(os.listdir(out / "models"))
    assert "model.pt" in files
    assert [f for f in files if f.startswith("checkpoint")] == ["checkpoint_epoch=2.pt"]
    assert not [f for f in files if f.startswith("tmp")]
