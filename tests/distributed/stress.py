"""Stress check for exit-time aborts: repeat the distributed tests and failing bundle runs.

A process that aborts at exit prints ``terminate called without an active exception`` and
ends with signal 6 (exit code 134, or -6 for a torchrun child). This script repeats the
runs where that happened and counts exit codes, so that a fix can be shown to hold::

    python tests/distributed/stress.py --runs 30                 # everything below
    python tests/distributed/stress.py --runs 50 --only worker    # just the DDP worker under torchrun
    python tests/distributed/stress.py --runs 20 --only bundle-errors

Modes:
    ``pytest``: ``python -m pytest -q tests/distributed`` (both distributed tests);
    ``worker``: the DDP-equivalence worker under ``torchrun --nproc_per_node=2`` (gloo);
    ``bundle-errors``: bundle runs that fail on bad input, single-process and under
    torchrun; each must exit with its own code (1 or 2), never 134 / -6.

It is not collected by pytest (it takes minutes); it exits 1 when any run failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ABORT = "terminate called without an active exception"
MODES = ("pytest", "worker", "bundle-errors")


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 900) -> tuple[int, str]:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1", **(env or {}))
    proc = subprocess.run(cmd, cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _torchrun(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def _bundle_error_cases(tmp: Path) -> list[tuple[str, list[str], tuple[int, ...]]]:
    """(name, command, accepted exit codes) of bundle runs that must fail cleanly."""
    chase = str(REPO / "bundles" / "chase" / "configs" / "train.json")
    multi = str([chase, str(REPO / "bundles" / "chase" / "configs" / "multi_gpu_train.json")])
    base = [sys.executable, "-m", "monai.bundle", "run", "training"]
    fast = ["--max_epochs", "1", "--iterations_per_epoch", "1", "--num_workers", "0", "--progress_bar", "False"]
    missing = str(tmp / "does_not_exist")
    return [
        ("missing dataset_dir", base + ["--config_file", chase, "--dataset_dir", missing] + fast, (1, 2)),
        ("unknown key", base + ["--config_file", chase, "--max_epoch", "3"], (1, 2)),
        ("too many labeled", base + ["--config_file", chase, "--num_labeled", "300"] + fast, (1, 2)),
        ("torchrun: missing dataset_dir", _torchrun(["-m", "monai.bundle", "run", "training", "--config_file", multi,
                                                     "--dataset_dir", missing] + fast), (1, 2)),
    ]


def stress(mode: str, runs: int, tmp: Path) -> collections.Counter:
    """Repeat one mode ``runs`` times; return a counter of outcomes."""
    outcomes: collections.Counter = collections.Counter()
    worker = HERE / "ddp_equivalence_worker.py"
    for i in range(runs):
        if mode == "pytest":
            cases = [("pytest tests/distributed", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                    str(HERE)], (0,))]
        elif mode == "worker":
            cases = [("torchrun worker", _torchrun([str(worker), str(tmp / "weights.pt")]), (0,))]
        else:
            cases = _bundle_error_cases(tmp)
        for name, cmd, accepted in cases:
            start = time.time()
            code, output = _run(cmd, cwd=tmp, env={"MONAI_SUPMIX_CACHE": str(tmp / "cache")})
            aborted = ABORT in output or code in (134, -6)
            ok = code in accepted and not aborted
            outcomes[(name, "ok" if ok else f"FAILED rc={code}" + (" (abort)" if aborted else ""))] += 1
            print(f"[{mode} {i + 1}/{runs}] {name}: rc={code} {'ok' if ok else 'FAILED'} ({time.time() - start:.0f} s)",
                  flush=True)
            if not ok:
                print(output[-3000:], flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="repetitions per mode (default 30)")
    parser.add_argument("--only", choices=MODES, action="append", help="run only these modes (repeatable)")
    args = parser.parse_args(argv)
    outcomes: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="supmix_stress_") as tmp:
        for mode in args.only or MODES:
            outcomes.update(stress(mode, args.runs, Path(tmp)))
    print("\nsummary:")
    for (name, outcome), count in sorted(outcomes.items()):
        print(f"  {name}: {outcome} x{count}")
    return 0 if all(outcome == "ok" for _, outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
