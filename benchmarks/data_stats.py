"""Dataset statistics of the real CHASE_DB1 / COVID-19 copies and of the synthetic phantoms.

Everything is loaded through ``monai_supmix.data`` (datalists and the ``"eval"``
preprocessing chains), so the numbers describe what the bundles actually see.

Usage::

    python benchmarks/data_stats.py [--chase DIR] [--covid DIR] [--output docs/benchmarks/data_stats.json]

Writes the JSON file and a markdown table next to it (``data_stats.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from monai_supmix.data import (
    chase_datalist,
    chase_transforms,
    covid_datalist,
    covid_transforms,
    write_chase_phantoms,
    write_covid_phantoms,
)

ROOT = Path(__file__).resolve().parents[1]
COVID_CLASSES = ("background", "ground_glass", "consolidation")


def _size_range(sizes: list[tuple[int, int]]) -> dict:
    arr = np.array(sizes)
    return {"min_hw": arr.min(0).tolist(), "max_hw": arr.max(0).tolist()}


def chase_stats(root: str) -> dict:
    """Counts, sizes and vessel frequency (inside the FOV and overall) of a CHASE-layout folder."""
    items = chase_datalist(root)
    preprocess = chase_transforms("eval")
    sizes, vessel, inside, total = [], 0, 0, 0
    for item in items:
        out = preprocess(item)
        label = out["label"][0] > 0
        fov = out["fov"][0] > 0 if "fov" in out else torch.ones_like(label)
        sizes.append(tuple(label.shape))
        vessel += int((label & fov).sum())
        inside += int(fov.sum())
        total += label.numel()
    return {
        "root": os.path.abspath(root),
        "num_images": len(items),
        "with_fov": sum("fov" in i for i in items),
        "with_second_observer": sum("label_2nd" in i for i in items),
        "image_size": _size_range(sizes),
        "vessel_fraction_in_fov": vessel / max(inside, 1),
        "vessel_fraction_all_pixels": vessel / max(total, 1),
        "fov_fraction": inside / max(total, 1),
    }


def covid_stats(root: str) -> dict:
    """Counts, sizes and class pixel frequencies (at native size) of a COVID-19 folder."""
    data = covid_datalist(root)
    preprocess = covid_transforms("eval", spatial_size=None)
    counts = np.zeros(len(COVID_CLASSES), np.int64)
    sizes, with_cons = [], 0
    for item in data["labeled"]:
        label = preprocess(item)["label"][0]
        sizes.append(tuple(label.shape))
        counts += np.bincount(label.flatten().numpy(), minlength=len(COVID_CLASSES))[: len(COVID_CLASSES)]
        with_cons += int((label == 2).any())
    unlabeled_sizes = []
    for item in data["unlabeled"]:
        with Image.open(item["image"]) as im:
            unlabeled_sizes.append((im.size[1], im.size[0]))
    freq = counts / max(counts.sum(), 1)
    out = {
        "root": os.path.abspath(root),
        "num_labeled": len(data["labeled"]),
        "num_unlabeled": len(data["unlabeled"]),
        "labeled_size": _size_range(sizes),
        "class_fraction": {name: float(f) for name, f in zip(COVID_CLASSES, freq)},
        "slices_with_consolidation": with_cons,
    }
    if unlabeled_sizes:
        out["unlabeled_size"] = _size_range(unlabeled_sizes)
    return out


def _md_table(stats: dict) -> str:
    rows = [
        "| dataset | images (labeled / unlabeled) | size H×W min - max | class pixel frequencies |",
        "|---|---|---|---|",
    ]
    for name in ("chase_real", "chase_phantom"):
        s = stats.get(name)
        if s:
            size = f"{s['image_size']['min_hw']} - {s['image_size']['max_hw']}"
            rows.append(
                f"| {name} | {s['num_images']} / 0 | {size} | vessel {100 * s['vessel_fraction_in_fov']:.2f} % "
                f"of FOV ({100 * s['vessel_fraction_all_pixels']:.2f} % of all pixels) |"
            )
    for name in ("covid_real", "covid_phantom"):
        s = stats.get(name)
        if s:
            size = f"{s['labeled_size']['min_hw']} - {s['labeled_size']['max_hw']}"
            freq = ", ".join(f"{k} {100 * v:.2f} %" for k, v in s["class_fraction"].items())
            rows.append(f"| {name} | {s['num_labeled']} / {s['num_unlabeled']} | {size} | {freq} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chase", default=str(ROOT.parent / "shared" / "data" / "chase"))
    parser.add_argument("--covid", default=str(ROOT.parent / "shared" / "data" / "covid19"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "data_stats.json"))
    args = parser.parse_args(argv)
    start = time.time()
    stats: dict = {}
    if os.path.isdir(args.chase):
        stats["chase_real"] = chase_stats(args.chase)
    else:
        print(f"CHASE_DB1 folder {args.chase} not found: skipped", file=sys.stderr)
    if os.path.isdir(args.covid):
        stats["covid_real"] = covid_stats(args.covid)
    else:
        print(f"COVID-19 folder {args.covid} not found: skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        stats["chase_phantom"] = chase_stats(write_chase_phantoms(os.path.join(tmp, "chase"), num_images=12))
        stats["covid_phantom"] = covid_stats(
            write_covid_phantoms(os.path.join(tmp, "covid"), num_labeled=50, num_unlabeled=40)
        )
        for key in ("chase_phantom", "covid_phantom"):
            stats[key]["root"] = "<synthetic, default parameters, seed 0>"
    stats["seconds"] = round(time.time() - start, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(stats, f, indent=2)
    table = _md_table(stats)
    md = os.path.splitext(args.output)[0] + ".md"
    with open(md, "w") as f:
        f.write("# Dataset statistics\n\nGenerated by `python benchmarks/data_stats.py` (labels loaded through ")
        f.write("`monai_supmix.data`; CHASE vessel frequency inside the FOV, COVID-19 at native slice size).\n\n")
        f.write(table)
    print(json.dumps(stats, indent=2))
    print(table)
    print(f"wrote {args.output} and {md}")
    return stats


if __name__ == "__main__":
    main()
