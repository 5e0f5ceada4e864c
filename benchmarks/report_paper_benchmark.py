"""Turn docs/benchmarks/results.json into results.md and figures.

Writes ``docs/benchmarks/results.md`` (per-class IoU, mIoU, mean ± std over seeds, the
gains of +SupMix / +SUFD / ours over conventional ClassMix, and the distance to full
supervision), ``results_per_class.png`` (bars), ``results_curves.png`` (validation
mIoU per epoch) and, when the runs' models are still in ``benchmarks/_runs``,
``results_overlays.png`` (image, ground truth, conventional, ours on test images).

Usage: ``python benchmarks/report_paper_benchmark.py [--protocol cpu]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
RUNS = REPO / "benchmarks" / "_runs"
METHOD_ORDER = ["supervised", "conventional", "supmix", "sufd", "ours"]
LABELS = {
    "supervised": "1. supervised only",
    "conventional": "2. mean teacher + ClassMix",
    "supmix": "3. + SupMix",
    "sufd": "4. + SUFD",
    "ours": "5. + SupMix + SUFD (ours)",
}
#: Design changes (``run_paper_benchmark.py --variants``): label and the method each one modifies.
VARIANTS = {
    "sufd_plain": ("4b. + SUFD on plain unlabeled features", "sufd"),
    "supmix_p50": ("3b. + SupMix on half of the images", "supmix"),
    "supmix_invfreq": ("3c. + SupMix, inverse-frequency class policy", "supmix"),
    "ours_plain_p50": ("5b. ours with both changes", "ours"),
}


def per_class_text(per_class: dict) -> str:
    return ", ".join(f"{c} {v:+.2f}" for c, v in per_class.items())


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.2f} (n=1)"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f} (n={len(values)})"


def group(records: list[dict]) -> dict:
    cells: dict = defaultdict(list)
    for r in records:
        cells[(r["dataset"], r["num_labeled"], r["method"])].append(r)
    return cells


def table(records: list[dict]) -> list[str]:
    lines = []
    cells = group(records)
    for dataset in ("chase", "covid19"):
        rows = [k for k in cells if k[0] == dataset]
        if not rows:
            continue
        classes = list(cells[rows[0]][0]["iou"])
        lines += [f"### {dataset}", "", "| labeled | method | " + " | ".join(f"IoU {c}" for c in classes) + " | mIoU | train s (mean) |"]
        lines.append("|" + "---|" * (len(classes) + 4))
        for key in sorted(rows, key=lambda k: (k[1], METHOD_ORDER.index(k[2]))):
            runs = cells[key]
            per_class = [mean_std([r["iou"][c] for r in runs]) for c in classes]
            seconds = statistics.mean(r["train_seconds"] for r in runs)
            lines.append(
                f"| {key[1]} | {LABELS[key[2]]} | " + " | ".join(per_class) + f" | **{mean_std([r['miou'] for r in runs])}** | {seconds:.0f} |"
            )
        lines.append("")
    return lines


def gains(records: list[dict]) -> list[str]:
    cells = group(records)
    lines = ["| dataset | labeled | method | ΔmIoU vs conventional | per-class ΔIoU | seeds paired |", "|---|---|---|---|---|---|"]
    for (dataset, labeled, method), runs in sorted(cells.items()):
        if method not in LABELS or method in ("conventional", "supervised"):
            continue
        result = paired_delta(runs, cells.get((dataset, labeled, "conventional"), []))
        if result is None:
            continue
        delta, per_class, n = result
        lines.append(
            f"| {dataset} | {labeled} | {LABELS[method]} | {delta:+.2f} | {per_class_text(per_class)} | {n} |"
        )
    return lines


def paired_delta(runs: list[dict], base_runs: list[dict]) -> tuple[float, dict, int] | None:
    """Mean difference (points) of mIoU and per-class IoU over the seeds both cells have."""
    base = {r["seed"]: r for r in base_runs}
    paired = [(r, base[r["seed"]]) for r in runs if r["seed"] in base]
    if not paired:
        return None
    delta = statistics.mean(100 * (r["miou"] - b["miou"]) for r, b in paired)
    per_class = {c: statistics.mean(100 * (r["iou"][c] - b["iou"][c]) for r, b in paired) for c in paired[0][0]["iou"]}
    return delta, per_class, len(paired)


def _delta_text(result: tuple[float, dict, int] | None) -> str:
    return "–" if result is None else f"{result[0]:+.2f} (n={result[2]})"


def design_changes(records: list[dict]) -> list[str]:
    """Variants against the method they modify and against conventional, paired by seed."""
    cells = group(records)
    lines = [
        "| dataset | labeled | variant | mIoU | Δ vs the method it changes | Δ vs conventional | per-class Δ vs conventional |",
        "|---|---|---|---|---|---|---|",
    ]
    for (dataset, labeled, method), runs in sorted(cells.items()):
        if method not in VARIANTS:
            continue
        label, modified = VARIANTS[method]
        own = paired_delta(runs, cells.get((dataset, labeled, modified), []))
        conv = paired_delta(runs, cells.get((dataset, labeled, "conventional"), []))
        per_class = "–" if conv is None else per_class_text(conv[1])
        lines.append(
            f"| {dataset} | {labeled} | {label} | {mean_std([r['miou'] for r in runs])} | "
            f"{LABELS[modified]}: {_delta_text(own)} | {_delta_text(conv)} | {per_class} |"
        )
    return lines if len(lines) > 2 else []


def upper_bound(records: list[dict]) -> list[str]:
    cells = group(records)
    lines = []
    for dataset, few, full in (("chase", 4, 20), ("covid19", 10, 40)):
        top = cells.get((dataset, full, "supervised"))
        if not top:
            continue
        ref = statistics.mean(r["miou"] for r in top)
        for method in METHOD_ORDER:
            runs = cells.get((dataset, few, method))
            if runs:
                value = statistics.mean(r["miou"] for r in runs)
                lines.append(f"- {dataset}, {few} labeled, {LABELS[method]}: {100 * value / ref:.1f} % of full supervision ({full} labeled, mIoU {100 * ref:.2f}).")
    return lines


def figures(records: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    cells = group(records)
    datasets = [d for d in ("chase", "covid19") if any(k[0] == d for k in cells)]
    if not datasets:
        return made
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        keys = sorted([k for k in cells if k[0] == dataset], key=lambda k: (k[1], METHOD_ORDER.index(k[2])))
        classes = list(cells[keys[0]][0]["iou"])
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            values = [100 * statistics.mean(r["iou"][c] for r in cells[key]) for c in classes]
            ax.bar([j + i * width for j in range(len(classes))], values, width, label=f"{LABELS[key[2]]} (L={key[1]})")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(classes))], classes)
        ax.set_ylabel("IoU (%)")
        ax.set_title(dataset)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(OUT / "results_per_class.png", dpi=120)
    plt.close(fig)
    made.append("results_per_class.png")

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for key in sorted([k for k in cells if k[0] == dataset], key=lambda k: (k[1], METHOD_ORDER.index(k[2]))):
            curves = [r["val_curve"] for r in cells[key] if r.get("val_curve")]
            if curves:
                n = min(len(c) for c in curves)
                mean = [100 * statistics.mean(c[i] for c in curves) for i in range(n)]
                ax.plot(range(1, n + 1), mean, label=f"{LABELS[key[2]]} (L={key[1]})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation mIoU (%), best-so-far checkpoint")
        ax.set_title(dataset)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(OUT / "results_curves.png", dpi=120)
    plt.close(fig)
    made.append("results_curves.png")
    return made


def overlays(records: list[dict], protocol: str) -> str | None:
    """Image, ground truth, conventional and ours (same seed) on two test images per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from monai_supmix.bundle import task_datalists

    rows = []
    data = REPO.parent / "shared" / "data"
    for dataset, labeled in (("chase", 4), ("covid19", 10)):
        # the lowest seed whose two models are still in benchmarks/_runs
        found = None
        for seed in sorted({r["seed"] for r in records if r["dataset"] == dataset}):
            ids = {m: RUNS / f"{protocol}_{dataset}_L{labeled}_{m}_s{seed}" for m in ("conventional", "ours")}
            if all((p / "models" / "final_teacher.pt").is_file() for p in ids.values()):
                found = seed, ids
                break
        if found is None:
            continue
        seed, ids = found
        if dataset == "chase":
            test = task_datalists("chase", str(data / "chase"), num_labeled=4, num_val=4)["validation"][:2]
        else:
            with open(RUNS / "covid_L10_datalist.json") as f:
                test = json.load(f)["validation"][:2]
        folder = RUNS / f"overlay_inputs_{dataset}"
        folder.mkdir(exist_ok=True)
        for item in test:
            target = folder / os.path.basename(item["image"])
            if not target.exists():
                os.symlink(item["image"], target)
        settings = next(r["settings"] for r in records if r["dataset"] == dataset)
        preds = {}
        for method, run in ids.items():
            out = RUNS / f"overlay_{dataset}_{method}"
            cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(REPO / "bundles" / dataset / "configs" / "inference.json")]
            cmd += ["--dataset_dir", str(folder), "--output_dir", str(out), "--ckpt_path", str(run / "models" / "final_teacher.pt")]
            cmd += ["--patch_size", json.dumps(settings["patch_size"])]
            cmd += ["--scale", str(settings["scale"])] if dataset == "chase" else ["--spatial_size", json.dumps(settings["spatial_size"])]
            subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
            preds[method] = out
        for item in test:
            stem = os.path.splitext(os.path.basename(item["image"]))[0]
            image = np.asarray(Image.open(item["image"]).convert("RGB"))
            gt = np.asarray(Image.open(item["label"])).astype(np.uint8)
            rows.append((f"{dataset} {stem} (seed {seed})", image, gt, *[np.asarray(Image.open(preds[m] / f"{stem}_seg.png")) for m in ("conventional", "ours")]))
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 4, figsize=(12, 3 * len(rows)), squeeze=False)
    for ax_row, (name, image, gt, conv, ours) in zip(axes, rows):
        for ax, panel, title in zip(ax_row, (image, gt, conv, ours), ("image", "ground truth", "conventional (ClassMix)", "ours (SupMix + SUFD)")):
            ax.imshow(panel if panel.ndim == 3 else panel, cmap=None if panel.ndim == 3 else "magma", vmin=0, vmax=None if panel.ndim == 3 else 2)
            ax.set_title(f"{title}\n{name}" if title == "image" else title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT / "results_overlays.png", dpi=110)
    plt.close(fig)
    return "results_overlays.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--no-overlays", action="store_true")
    args = parser.parse_args()
    with open(OUT / "results.json") as f:
        records = [r for r in json.load(f) if r["protocol"] == args.protocol]
    paper = [r for r in records if r["method"] in LABELS]
    made = figures(paper)
    if not args.no_overlays:
        overlay = overlays(records, args.protocol)
        if overlay:
            made.append(overlay)
    devices = sorted({r["device"] for r in records})
    lines = [
        "# Paper benchmark: SupMix + SUFD vs conventional semi-supervised learning",
        "",
        f"Generated by `python benchmarks/report_paper_benchmark.py --protocol {args.protocol}` from "
        f"`results.json` ({len(records)} runs of `benchmarks/run_paper_benchmark.py --protocol {args.protocol}`).",
        f"Machine: {', '.join(devices)}. Protocol and choices: [README.md](README.md).",
        "Values are IoU in %, mean ± standard deviation over seeds (n = number of seeds), evaluated on the",
        "held-out split with the final EMA teacher of each run (CHASE: inside the FOV).",
        "",
        *table(paper),
        "## Gains over conventional semi-supervised learning (paired by seed)",
        "",
        *gains(paper),
        "",
        "## Distance to full supervision",
        "",
        *(upper_bound(paper) or ["- (upper-bound runs not finished yet)"]),
        "",
        "## Design changes",
        "",
        "Variants tried because the five methods missed the targets (`run_paper_benchmark.py --variants`; what",
        "each changes: [README.md](README.md#design-changes)). Differences in points, paired by seed.",
        "",
        *(design_changes(records) or ["- (no variant runs yet)"]),
        "",
        "## Figures",
        "",
        *[f"![{m}]({m})" for m in made],
        "",
    ]
    with open(OUT / "results.md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
