"""Reproduce the paper's comparison on real data through the bundles (resumable grid).

Every run is the bundle's own training command (``python -m monai.bundle run training``)
with overrides, followed by the bundle's evaluation of the final EMA teacher on the
held-out split. Finished runs are recorded in ``docs/benchmarks/results.json`` and
skipped when the script is started again, so the grid can span several sittings.

Protocol (see docs/benchmarks/README.md):
- CHASE_DB1: training pool patients 01-10 (20 images), test patients 11-12 (4 images),
  metrics inside the FOV; 4 labeled images (patients 01-02), 16 unlabeled; upper bound 20 labeled.
- COVID-19: first 40 labeled slices (numeric order) are the pool, last 10 the test split;
  10 labeled, the other 30 + the 1,600 unlabeled slices unlabeled; upper bound 40 labeled.

Methods (same network, schedule, augmentation): supervised, conventional (mean teacher
+ ClassMix), +SupMix, +SUFD, ours (ClassMix + SupMix + SUFD).

Usage::

    python benchmarks/run_paper_benchmark.py --protocol cpu            # priority-ordered grid
    python benchmarks/run_paper_benchmark.py --protocol cpu --time-budget 3600
    python benchmarks/run_paper_benchmark.py --list                    # show the grid and what is done
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
RESULTS = REPO / "docs" / "benchmarks" / "results.json"
RUNS = REPO / "benchmarks" / "_runs"
DATA = REPO.parent / "shared" / "data"

METHODS = {
    "supervised": {"mix": "none", "sufd": False, "unsupervised_weight": 0.0},
    "conventional": {"mix": "classmix", "sufd": False},
    "supmix": {"mix": "both", "sufd": False},
    "sufd": {"mix": "classmix", "sufd": True},
    "ours": {"mix": "both", "sufd": True},
}

#: Design changes tried because the five methods missed the targets (docs/benchmarks/README.md,
#: "Design changes"); run only when named with ``--variants``.
VARIANTS = {
    # SUFD compares labeled features with those of the plain unlabeled images, not the mixed ones
    "sufd_plain": {"mix": "classmix", "sufd": True, "discriminator_input": "unlabeled"},
    # SupMix pastes onto half of the unlabeled images only
    "supmix_p50": {"mix": "both", "sufd": False, "supmix_prob": 0.5},
    # automatic class policy: the rarest class always, the others with probability min_freq / freq
    "supmix_invfreq": {"mix": "both", "sufd": False, "supmix_classes": "inverse_frequency"},
    # both changes together
    "ours_plain_p50": {"mix": "both", "sufd": True, "discriminator_input": "unlabeled", "supmix_prob": 0.5},
}
ALL_METHODS = {**METHODS, **VARIANTS}

#: Reduced settings for a 2-core CPU (each run a few minutes) and the full GPU settings.
PROTOCOLS = {
    "cpu": {
        "chase": {"scale": 0.5, "patch_size": [96, 96], "max_epochs": 30, "iterations_per_epoch": 50, "rampup_iterations": 400},
        "covid19": {"spatial_size": [192, 192], "patch_size": [96, 96], "max_epochs": 30, "iterations_per_epoch": 50, "rampup_iterations": 400},
    },
    "gpu": {
        "chase": {"scale": 1.0, "patch_size": [192, 192], "max_epochs": 50, "iterations_per_epoch": 100, "rampup_iterations": 1000, "batch_size": 8},
        "covid19": {"spatial_size": [352, 352], "patch_size": [192, 192], "max_epochs": 50, "iterations_per_epoch": 100, "rampup_iterations": 1000, "batch_size": 8},
    },
}

SETTINGS = {
    ("chase", 4): {"num_labeled": 4, "num_val": 4},
    ("chase", 20): {"num_labeled": 20, "num_val": 4},
    ("covid19", 10): {"num_labeled": 10, "num_val": 10, "num_pool": 40},
    ("covid19", 40): {"num_labeled": 40, "num_val": 10, "num_pool": 40},
}


def grid(seeds: list[int], variants: list[str] = ()) -> list[tuple[str, int, str, int]]:
    """Runs in priority order: headline pairs first, then ablations, then more seeds; variants last."""
    order: list[tuple[str, int, str, int]] = []

    def add(dataset, labeled, method, seed):
        key = (dataset, labeled, method, seed)
        if key not in order:
            order.append(key)

    first = seeds[0]
    for dataset, labeled in (("chase", 4), ("covid19", 10)):
        add(dataset, labeled, "conventional", first)
        add(dataset, labeled, "ours", first)
    for dataset, labeled, full in (("chase", 4, 20), ("covid19", 10, 40)):
        add(dataset, labeled, "supervised", first)
        add(dataset, full, "supervised", first)
    for dataset, labeled in (("chase", 4), ("covid19", 10)):
        add(dataset, labeled, "supmix", first)
        add(dataset, labeled, "sufd", first)
    for seed in seeds[1:]:
        for dataset, labeled in (("chase", 4), ("covid19", 10)):
            add(dataset, labeled, "conventional", seed)
            add(dataset, labeled, "ours", seed)
    for seed in seeds[1:]:
        for dataset, labeled, full in (("chase", 4, 20), ("covid19", 10, 40)):
            add(dataset, labeled, "supervised", seed)
            add(dataset, full, "supervised", seed)
            add(dataset, labeled, "supmix", seed)
            add(dataset, labeled, "sufd", seed)
    for seed in seeds:
        add("covid19", 40, "conventional", seed)
        add("covid19", 40, "ours", seed)
    for seed in seeds:
        for variant in variants:
            for dataset, labeled in (("chase", 4), ("covid19", 10)):
                add(dataset, labeled, variant, seed)
    return order


def run_id(protocol: str, dataset: str, labeled: int, method: str, seed: int) -> str:
    return f"{protocol}_{dataset}_L{labeled}_{method}_s{seed}"


def load_results() -> list[dict]:
    if RESULTS.is_file():
        with open(RESULTS) as f:
            return json.load(f)
    return []


def save_results(records: list[dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=RESULTS.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, RESULTS)


def covid_datalist_file(labeled: int, out: Path) -> Path:
    """Protocol split for COVID-19 as a datalist file: the bundle's ``datalist_file`` input."""
    from monai_supmix.data import covid_datalist

    found = covid_datalist(str(DATA / "covid19"))
    pool, test = found["labeled"][:40], found["labeled"][-10:]
    content = {
        "labeled": pool[:labeled],
        "unlabeled": [{"image": i["image"], "id": i["id"]} for i in pool[labeled:]] + found["unlabeled"],
        "validation": test,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(content, f)
    return out


def bundle_cmd(dataset: str, configs: list[str], overrides: dict) -> list[str]:
    files = [str(REPO / "bundles" / dataset / "configs" / f"{c}.json") for c in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run"]
    cmd += ["training"] if configs == ["train"] else []
    cmd += ["--config_file", files[0] if len(files) == 1 else str(files)]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return cmd


def execute(protocol: str, dataset: str, labeled: int, method: str, seed: int, num_workers: int) -> dict:
    rid = run_id(protocol, dataset, labeled, method, seed)
    out = RUNS / rid
    out.mkdir(parents=True, exist_ok=True)
    overrides = dict(PROTOCOLS[protocol][dataset])
    overrides.update(ALL_METHODS[method])
    overrides.update(seed=seed, output_dir=str(out), num_workers=num_workers, progress_bar=False, val_interval=1)
    setting = SETTINGS[(dataset, labeled)]
    if dataset == "chase":
        overrides.update(dataset_dir=str(DATA / "chase"), num_labeled=setting["num_labeled"], num_val=setting["num_val"])
        if labeled == 20 and method != "supervised":
            raise ValueError("CHASE with 20 labeled images has no unlabeled images left")
    else:
        overrides.update(datalist_file=str(covid_datalist_file(labeled, RUNS / f"covid_L{labeled}_datalist.json")))
    if method == "supervised":
        # the trainer needs an unlabeled loader even when its loss weight is 0; give it the labeled images
        overrides["unsupervised_weight"] = 0.0
    start = time.time()
    log = out / "train.log"
    with open(log, "w") as f:
        proc = subprocess.run(bundle_cmd(dataset, ["train"], overrides), stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    train_seconds = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"training {rid} failed, see {log}")
    text = log.read_text()
    curve = [float(v) for v in re.findall(r"Metrics -- .*?val_mean_iou: ([0-9.]+)", text)]
    # evaluate the final EMA teacher (not the best-on-test checkpoint, which would be optimistic)
    ckpts = sorted(out.glob("models/checkpoint_*.pt"), key=os.path.getmtime)
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    final = out / "models" / "final_teacher.pt"
    torch.save(state["teacher"], final)
    eval_overrides = {k: v for k, v in overrides.items() if k not in ("num_workers",)}
    eval_overrides.update(ckpt_path=str(final), num_workers=0)
    with open(out / "eval.log", "w") as f:
        proc = subprocess.run(bundle_cmd(dataset, ["train", "evaluate"], eval_overrides), stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"evaluation {rid} failed, see {out / 'eval.log'}")
    with open(out / "eval" / "metrics.json") as f:
        metrics = json.load(f)
    steps = overrides["max_epochs"] * overrides["iterations_per_epoch"]
    return {
        "id": rid,
        "protocol": protocol,
        "dataset": dataset,
        "method": method,
        "num_labeled": labeled,
        "seed": seed,
        "miou": metrics["miou"],
        "iou": metrics["iou"],
        "dice": metrics["dice"],
        "train_seconds": round(train_seconds, 1),
        "steps": steps,
        "val_curve": curve,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "settings": {k: v for k, v in overrides.items() if k not in ("output_dir", "dataset_dir", "datalist_file")},
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time-budget", type=float, default=None, help="stop starting new runs after this many seconds")
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="restrict to datasets (chase covid19)")
    parser.add_argument("--methods", nargs="*", default=None, choices=sorted(ALL_METHODS), help="restrict to methods")
    parser.add_argument(
        "--variants", nargs="*", default=[], choices=sorted(VARIANTS), help="add design-change variants to the grid"
    )
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    args = parser.parse_args()
    if not (DATA / "chase").is_dir() or not (DATA / "covid19").is_dir():
        sys.exit(f"real data not found under {DATA}; see ../shared/data/README.md")
    records = load_results()
    done = {r["id"] for r in records}
    todo = [
        g
        for g in grid(args.seeds, args.variants)
        if (not args.only or g[0] in args.only) and (not args.methods or g[2] in args.methods)
    ]
    if args.list:
        for g in todo:
            rid = run_id(args.protocol, *g)
            print(("done " if rid in done else "todo ") + rid)
        return
    start, count = time.time(), 0
    for dataset, labeled, method, seed in todo:
        rid = run_id(args.protocol, dataset, labeled, method, seed)
        if rid in done:
            continue
        if args.time_budget is not None and time.time() - start > args.time_budget:
            print(f"time budget reached after {count} runs")
            break
        if args.max_runs is not None and count >= args.max_runs:
            break
        print(f"[{time.strftime('%H:%M:%S')}] running {rid}", flush=True)
        record = execute(args.protocol, dataset, labeled, method, seed, args.num_workers)
        records = [r for r in load_results() if r["id"] != rid] + [record]
        save_results(records)
        count += 1
        print(f"    mIoU {record['miou']:.4f} {record['iou']} in {record['train_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
