"""Turn docs/benchmarks/results.json into claims.json, results.md and figures.

- ``docs/benchmarks/claims.json``: every claim ("ours > conventional", "conventional >
  supervised", "+SupMix > conventional", "+SUFD > conventional", "ours > supervised") per
  dataset and labeled-set size, as a paired difference of pooled mIoU over the test images
  of all *reporting* folds and seeds, with a bootstrap 95 % interval and a verdict
  (:mod:`paired_stats`);
- ``docs/benchmarks/results.md``: the claims table first, then pooled per-class IoU (and the
  Inf-Net per-image Dice for COVID-19) per method, the labels-matter gaps, the gap to full
  supervision, the development-fold results of the design changes, and the figures;
- ``results_per_class.png`` (pooled IoU per class) and ``results_curves.png`` (validation
  mIoU during training on the development fold).

Usage: ``python benchmarks/report_paper_benchmark.py [--protocol cpu]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import paired_stats as stats  # noqa: E402
from run_paper_benchmark import DEV_FOLD, SETTINGS, UPPER_BOUND  # noqa: E402

from monai_supmix.comparison import compare_methods  # noqa: E402
from monai_supmix.utils.files import write_json_atomic  # noqa: E402

REPO = HERE.parent
OUT = REPO / "docs" / "benchmarks"
METHOD_ORDER = ["supervised", "conventional", "supmix", "sufd", "ours"]
LABELS = {
    "supervised": "1. supervised only",
    "conventional": "2. conventional (mean teacher + ClassMix)",
    "supmix": "3. + SupMix",
    "sufd": "4. + SUFD",
    "ours": "5. ours (ClassMix + SupMix + SUFD)",
}
#: Claim settings, headline first: (dataset, labeled).
CLAIM_SETTINGS = [("chase", 4), ("covid19", 10), ("chase", 2), ("chase", 1)]
TARGETS = {("ours > conventional", "average"): 2.0, ("conventional > supervised", "covid19"): 2.0}


def _label(method: str) -> str:
    return LABELS.get(method) or f"variant `{method}`"


def _order(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def pooled_cell(runs: list[dict]) -> dict:
    """Pooled metrics of one cell (counts summed over every run and test image)."""
    counts = np.concatenate([np.stack(list(stats.image_counts(r).values())) for r in runs])
    iou = stats.pooled_iou(counts)
    names = runs[0]["class_names"]
    per_run = [r["pooled_miou"] for r in runs]
    return {
        "pooled_iou": dict(zip(names, (100 * iou).tolist())),
        "pooled_miou": 100 * float(np.nanmean(iou)),
        "per_image_miou": 100 * statistics.mean(r["miou"] for r in runs),
        "infnet_dice": {c: 100 * statistics.mean(r["infnet_dice"][c] for r in runs) for c in names},
        "run_std": 100 * statistics.stdev(per_run) if len(per_run) > 1 else None,
        "n_runs": len(runs),
        "n_images": counts.shape[0],
        "folds": sorted({r["fold"] for r in runs}),
        "seeds": sorted({r["seed"] for r in runs}),
        "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
    }


def claims_table(claims: list[dict]) -> list[str]:
    lines = [
        "| claim | dataset (labeled) | Δ pooled mIoU (points) | 95 % fold-level t CI | p (Holm) | folds ahead "
        "(sign test p) | verdict | target | bootstrap CI | images | runs won | per class Δ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        target = TARGETS.get((c["claim"], c["dataset"]))
        target_text = "–" if target is None else (f"≥ +{target:.1f}: " + ("met" if c["ci_low"] >= target else (
            "not met" if c["ci_high"] < target else "cannot tell")))
        per_class = ", ".join(f"{k} {v:+.2f}" for k, v in c["per_class_delta"].items())
        sign = f"{c['sign_positive']} of {c['sign_n']} ({c['sign_p']:.2f})" if "sign_n" in c else "–"
        boot = f"[{c['boot_ci_low']:+.2f}, {c['boot_ci_high']:+.2f}]" if "boot_ci_low" in c else "–"
        lines.append(
            f"| {c['claim']} | {c['dataset']} ({c['num_labeled']}) | {c['delta_miou']:+.2f} | "
            f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] | {c['p_value']:.3f} ({c['p_holm']:.3f}) | {sign} | "
            f"**{c['verdict']}** | {target_text} | {boot} | {c['n_images']} | {c['runs_won']} of {c['n_runs']} | "
            f"{per_class} |"
        )
    return lines


def method_tables(records: list[dict]) -> list[str]:
    cells = stats.group_runs(records)
    lines = []
    for dataset in ("chase", "covid19"):
        keys = sorted((k for k in cells if k[0] == dataset), key=lambda k: (k[1], _order(k[2])))
        if not keys:
            continue
        names = cells[keys[0]][0]["class_names"]
        infnet = dataset == "covid19"
        head = "| labeled | method | " + " | ".join(f"IoU {c}" for c in names) + " | **pooled mIoU** | per-image mIoU |"
        head += (" Inf-Net Dice " + " / ".join(names[1:]) + " |") if infnet else ""
        head += " runs (folds × seeds) | train s |"
        lines += [f"### {dataset}", "", head, "|" + "---|" * (len(names) + 6 + int(infnet))]
        for key in keys:
            cell = pooled_cell(cells[key])
            row = f"| {key[1]} | {_label(key[2])} | " + " | ".join(f"{cell['pooled_iou'][c]:.2f}" for c in names)
            spread = f" (run sd {cell['run_std']:.2f})" if cell["run_std"] is not None else ""
            row += f" | **{cell['pooled_miou']:.2f}**{spread} | {cell['per_image_miou']:.2f} |"
            if infnet:
                row += " " + " / ".join(f"{cell['infnet_dice'][c]:.1f}" for c in names[1:]) + " |"
            row += f" {cell['n_runs']} ({len(cell['folds'])} × {len(cell['seeds'])}) | {cell['train_seconds']:.0f} |"
            lines.append(row)
        lines.append("")
    return lines


def labels_gap(records: list[dict]) -> list[str]:
    """Supervised with all pool images labeled vs with few, paired over the same test images."""
    cells = stats.group_runs(records)
    lines = []
    for dataset, labeled in sorted({(d, n) for d, n, m in cells if m == "supervised"}):
        full = UPPER_BOUND[dataset]
        if labeled == full or (dataset, full, "supervised") not in cells:
            continue
        result = compare_methods(cells[(dataset, full, "supervised")], cells[(dataset, labeled, "supervised")])
        if result is None:
            continue
        lines.append(
            f"- {dataset}: supervised with {full} labeled − with {labeled} labeled = **{result['delta_miou']:+.2f}** "
            f"[{result['ci_low']:+.2f}, {result['ci_high']:+.2f}] (fold-level t, p = {result['p_value']:.3f}; "
            f"{result['n_images']} images, {result['n_runs']} paired runs)."
        )
    return lines


def gap_closed(records: list[dict]) -> list[str]:
    """Share of the supervised-few → supervised-full gap that each semi-supervised method closes."""
    cells = stats.group_runs(records)
    lines = []
    for dataset in ("covid19", "chase"):
        full = UPPER_BOUND[dataset]
        for labeled in SETTINGS[dataset]:
            few_runs, full_runs = cells.get((dataset, labeled, "supervised")), cells.get((dataset, full, "supervised"))
            if labeled == full or not few_runs or not full_runs:
                continue
            for method in ("conventional", "ours"):
                runs = cells.get((dataset, labeled, method))
                if not runs:
                    continue
                # images and (fold, seed) runs shared by the three cells
                shared = {(r["fold"], r["seed"]) for r in runs} & {(r["fold"], r["seed"]) for r in few_runs}
                folds = {f for f, _ in shared} & {r["fold"] for r in full_runs}

                def pick(rs, shared=shared, folds=folds):
                    return [r for r in rs if (r["fold"], r["seed"]) in shared and r["fold"] in folds]

                ours, _, keys, _ = stats.paired_counts(pick(runs), pick(few_runs))
                few, _, _, _ = stats.paired_counts(pick(few_runs), pick(runs))
                # the full-supervision run of each fold, repeated for each shared seed
                by_fold = {r["fold"]: r for r in full_runs if r["fold"] in folds}
                tops = [dict(by_fold[f], seed=s) for f, s in sorted(shared) if f in by_fold]
                top, _, _, _ = stats.paired_counts(tops, pick(runs))
                if not keys or top.shape != ours.shape:
                    continue
                groups = stats.fold_groups(keys)
                gap = compare_methods(tops, pick(few_runs))
                gap = {"delta": gap["delta_miou"], "ci_low": gap["ci_low"], "ci_high": gap["ci_high"]}
                if gap["ci_low"] <= 0:
                    # a share of a gap that may be zero or negative is not a number to report
                    lines.append(
                        f"- {dataset}, {labeled} labeled, {_label(method)}: not defined, supervised ({full}) is "
                        f"not measurably better than supervised ({labeled}) on these images (gap "
                        f"{gap['delta']:+.2f} [{gap['ci_low']:+.2f}, {gap['ci_high']:+.2f}], {len(keys)} images); "
                        f"the method − supervised ({labeled}) difference is in the claims table."
                    )
                    continue
                result = stats.bootstrap_gap_closed(ours, few, top, groups=groups)
                lines.append(
                    f"- {dataset}, {labeled} labeled, {_label(method)}: closes **{100 * result['fraction']:.0f} %** "
                    f"[{100 * result['ci_low']:.0f}, {100 * result['ci_high']:.0f}] of the gap from supervised "
                    f"({labeled}) to supervised ({full}) ({len(keys)} images)."
                )
    return lines


def development(records: list[dict]) -> list[str]:
    """Development-fold results of every protocol: one table row per method or variant.

    Each row: pooled mIoU and per-class pooled IoU on the fold's test images, the difference to
    supervised and to the reference conventional run of the same protocol (the first of
    ``conventional``, ``conventional_strong``), each seed's own mIoU (a seed is a labeled draw in
    protocol ``cpu2``), and, for SUFD runs, the discriminator's accuracy over the last fifth of
    training (from the run's log, when it is still there).
    """
    lines = []
    for protocol in sorted({r["protocol"] for r in records}):
        cells = stats.group_runs([r for r in records if r["protocol"] == protocol])
        steps = sorted({r["steps"] for r in records if r["protocol"] == protocol})
        lines += [f"**Protocol `{protocol}`** ({', '.join(str(s) for s in steps)} iterations):", "",
                  "| dataset (labeled) | method | pooled mIoU | per class | vs supervised | vs conventional | per seed | D acc |",
                  "|---|---|---|---|---|---|---|---|"]
        for (dataset, labeled, method), runs in sorted(
            cells.items(), key=lambda kv: (kv[0][0], kv[0][1], _order(kv[0][2]), kv[0][2])
        ):
            cell = pooled_cell(runs)
            per_class = ", ".join(f"{k} {v:.1f}" for k, v in cell["pooled_iou"].items())
            columns = []
            for reference in (("supervised",), ("conventional", "conventional_strong")):
                base = next((cells[(dataset, labeled, m)] for m in reference if (dataset, labeled, m) in cells), None)
                if base is None or method in reference:
                    columns.append("–")
                    continue
                a, b, keys, n = stats.paired_counts(runs, base)
                columns.append(f"{100 * float(stats.pooled_miou(a) - stats.pooled_miou(b)):+.2f}" if keys else "–")
            accuracy = _discriminator_accuracy(runs[0]["id"])
            per_seed = ", ".join(f"{r['seed']}: {100 * r['pooled_miou']:.2f}" for r in sorted(runs, key=lambda r: r["seed"]))
            lines.append(
                f"| {dataset} ({labeled}) | `{method}` | {cell['pooled_miou']:.2f} | {per_class} | {columns[0]} | "
                f"{columns[1]} | {per_seed} | {'–' if accuracy is None else f'{accuracy:.2f}'} |"
            )
        lines.append("")
    return lines


def _discriminator_accuracy(run: str) -> float | None:
    """Mean discriminator accuracy over the last fifth of a run's logged iterations (None without SUFD)."""
    import re

    log = REPO / "benchmarks" / "_runs" / run / "train.log"
    if not log.is_file():
        return None
    values = [float(v) for v in re.findall(r"discriminator_accuracy: ([0-9.]+)", log.read_text())]
    if not values:
        return None
    tail = values[-max(len(values) // 5, 1):]
    return sum(tail) / len(tail)


def figures(records: list[dict], dev: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    cells = stats.group_runs(records)
    datasets = [d for d in ("chase", "covid19") if any(k[0] == d for k in cells)]
    if datasets:
        fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            keys = sorted((k for k in cells if k[0] == dataset and k[2] in METHOD_ORDER), key=lambda k: (k[1], _order(k[2])))
            names = cells[keys[0]][0]["class_names"]
            width = 0.8 / len(keys)
            for i, key in enumerate(keys):
                values = list(pooled_cell(cells[key])["pooled_iou"].values())
                ax.bar([j + i * width for j in range(len(names))], values, width, label=f"{_label(key[2])} (L={key[1]})")
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
            ax.set_ylabel("pooled IoU (%), reporting folds")
            ax.set_title(dataset)
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(OUT / "results_per_class.png", dpi=120)
        plt.close(fig)
        made.append("results_per_class.png")
    dev_cells = stats.group_runs(dev)
    dev_sets = [d for d in ("chase", "covid19") if any(k[0] == d for k in dev_cells)]
    if dev_sets:
        fig, axes = plt.subplots(1, len(dev_sets), figsize=(6 * len(dev_sets), 4), squeeze=False)
        for ax, dataset in zip(axes[0], dev_sets):
            for key in sorted((k for k in dev_cells if k[0] == dataset), key=lambda k: (k[1], _order(k[2]))):
                curves = [r["val_curve"] for r in dev_cells[key] if r.get("val_curve")]
                if curves:
                    n = min(len(c) for c in curves)
                    mean = [100 * statistics.mean(c[i] for c in curves) for i in range(n)]
                    step = dev_cells[key][0]["settings"].get("val_interval", 1)
                    ax.plot([step * (i + 1) for i in range(n)], mean, label=f"{_label(key[2])} (L={key[1]})")
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation mIoU (%), development fold")
            ax.set_title(dataset)
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(OUT / "results_curves.png", dpi=120)
        plt.close(fig)
        made.append("results_curves.png")
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="cpu")
    args = parser.parse_args(argv)
    with open(OUT / "results.json") as f:
        everything = json.load(f)
    records = [r for r in everything if r["protocol"] == args.protocol]
    reporting = [r for r in records if r["fold"] != DEV_FOLD]
    dev = [r for r in everything if r["fold"] == DEV_FOLD]  # every protocol: where the choices came from
    paper = [r for r in reporting if r["method"] in METHOD_ORDER]
    claims = stats.compute_claims(paper, args.protocol, CLAIM_SETTINGS)
    write_json_atomic(claims, str(OUT / "claims.json"))
    made = figures(paper, dev)
    devices = sorted({r["device"] for r in records})
    hours = sum(r["train_seconds"] for r in records) / 3600
    lines = [
        "# Paper benchmark: cross-validated, paired, with confidence intervals",
        "",
        f"Generated by `python benchmarks/report_paper_benchmark.py --protocol {args.protocol}` from `results.json` "
        f"({len(reporting)} reporting-fold runs and {len(dev)} development-fold runs of "
        f"`benchmarks/run_paper_benchmark.py --protocol {args.protocol}`, {hours:.1f} h of training).",
        f"Machine: {', '.join(devices)}. Folds, protocol and choices: [README.md](README.md).",
        "",
        "## Claims (reporting folds only)",
        "",
        "Paired difference of **pooled out-of-fold mIoU** (IoU summed over all test images of the reporting",
        "folds, each image scored by its own fold's model, then averaged over classes; background included;",
        "CHASE inside the FOV), in points, over the runs both methods share (same fold and seed). The interval",
        "is a fold-level 95 % t-interval over the per-fold mean of the paired run deltas (folds − 1 degrees of",
        "freedom); the verdict uses its p-value after Holm's correction over this whole table",
        "(`monai_supmix.comparison.statistics`): *holds* / *does not hold* when the Holm-adjusted p is below",
        "0.05 and the difference is positive / negative, *cannot tell* otherwise. Beside it: how many folds",
        "the first method is ahead in (exact sign test) and the earlier two-level bootstrap interval (folds,",
        "then images; one RNG per dataset). Written to `claims.json`.",
        "",
        *(claims_table(claims) if claims else ["(no paired reporting-fold runs yet)"]),
        "",
        "## Per method (reporting folds)",
        "",
        "Pooled IoU per class and pooled mIoU in %; per-image mIoU is MONAI's `MeanIoU` per image",
        "(`ignore_empty=True`: images without a class skip it), averaged; Inf-Net Dice (COVID-19) is the mean",
        "per-image Dice over the slices that contain the class, as Semi-Inf-Net reports it (GGO 62.4,",
        "consolidation 36.2 with 50 labeled + 1,600 unlabeled slices on the 48-slice multi-class test set, not",
        "these slices). \"run sd\" is the standard deviation of the per-run pooled mIoU over folds and seeds.",
        "",
        *method_tables(reporting),
        "## Labels-matter gaps (supervised only, reporting folds)",
        "",
        *(labels_gap(reporting) or ["- (upper-bound runs not finished yet)"]),
        "",
        "## Share of the labels gap closed by unlabeled images",
        "",
        *(gap_closed(reporting) or ["- (needs supervised-few, supervised-full and the method on the same folds)"]),
        "",
        f"## Development fold (fold {DEV_FOLD}): where the choices were made",
        "",
        "Not used for any claim: one seed each, on the fold's 4 CHASE images / 10 COVID-19 slices, so a",
        "difference of a point is within noise. Variants are defined in `VARIANTS` of",
        "`benchmarks/run_paper_benchmark.py` (what each changes: [README.md](README.md#development-fold)).",
        "\"D acc\": discriminator accuracy over the last fifth of training (0.5 = the sides look alike).",
        "",
        *(development(dev) or ["- (no development-fold runs)"]),
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
