"""Training throughput (images/s) of 1 vs N processes with torch.distributed, in one run.

Runs the CHASE bundle on its synthetic phantoms twice: one process
(``python -m monai.bundle run training``) and N processes
(``torchrun --standalone --nproc_per_node=N`` with ``multi_gpu_train.json``; gloo on
CPU, nccl on GPUs). Each process keeps the per-process batch, so N processes see N
times the images per iteration; throughput = labeled + unlabeled images per second of
the trainer's own run time (from Ignite's "Engine run finished" line), validation
excluded by validating only at the end.

Usage: ``python benchmarks/scaling.py [--nproc 2] [--iterations 60] [--batch 4]``
Writes ``docs/benchmarks/scaling.json`` and ``scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
CONFIGS = REPO / "bundles" / "chase" / "configs"


def trainer_seconds(log: str) -> float:
    times = re.findall(r"SemiSupervisedTrainer - INFO - Engine run finished\. Time taken: (\d+):(\d+):([\d.]+)", log)
    if not times:
        raise RuntimeError("could not find the trainer's run time in the log:\n" + log[-3000:])
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def run(nproc: int, args, workdir: str) -> dict:
    overrides = [
        "--max_epochs", "1", "--iterations_per_epoch", str(args.iterations), "--batch_size", str(args.batch),
        "--num_workers", "0", "--progress_bar", "False", "--output_dir", os.path.join(workdir, f"p{nproc}"),
        "--sufd", "True", "--mix", "supmix", "--val_interval", "100000",
    ]
    env = dict(os.environ, MONAI_SUPMIX_CACHE=os.path.join(workdir, "cache"))
    if nproc == 1:
        cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(CONFIGS / "train.json")]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
        files = str([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += ["-m", "monai.bundle", "run", "training", "--config_file", files]
    proc = subprocess.run(cmd + overrides, capture_output=True, text=True, env=env, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(f"{nproc}-process run failed:\n{proc.stderr[-4000:]}")
    seconds = trainer_seconds(proc.stdout + proc.stderr)
    images = 2 * args.batch * args.iterations * nproc  # labeled + unlabeled
    return {"processes": nproc, "trainer_seconds": seconds, "images": images, "images_per_second": images / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--output-dir", default=str(OUT))
    args = parser.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        run(1, argparse.Namespace(iterations=2, batch=args.batch), workdir)  # writes the phantoms once
        single = run(1, args, workdir)
        multi = run(args.nproc, args, workdir)
    ratio = multi["images_per_second"] / single["images_per_second"]
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    result = {
        "single": single,
        "multi": multi,
        "speedup": ratio,
        "backend": backend,
        "settings": vars(args),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "gpus": torch.cuda.device_count(), "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_seconds": round(time.time() - start, 1),
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Distributed scaling",
        "",
        f"`python benchmarks/scaling.py --nproc {args.nproc} --iterations {args.iterations} --batch {args.batch}` on "
        f"{result['machine']['platform']}, {result['machine']['cpus']} CPU cores, {result['machine']['gpus']} GPUs, "
        f"backend {backend}, {result['date']}; whole script {result['wall_seconds']} s. CHASE bundle on phantoms, "
        f"SupMix + SUFD, {args.batch} labeled + {args.batch} unlabeled patches per process and iteration.",
        "",
        "| processes | trainer s | images | images/s |",
        "|---|---|---|---|",
        *[f"| {r['processes']} | {r['trainer_seconds']:.1f} | {r['images']} | {r['images_per_second']:.1f} |" for r in (single, multi)],
        "",
        f"Throughput ratio {args.nproc} : 1 = **{ratio:.2f}×**.",
        "",
    ]
    (out / "scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
