"""Claims, a report a person reads, and the labels curve, from the run records of a comparison."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_supmix.comparison.statistics import (
    apply_holm,
    compare_methods,
    image_counts,
    pooled_iou,
    pooled_miou,
    t_interval,
)
from monai_supmix.utils.files import atomic_write, write_json_atomic

__all__ = ["method_scores", "compute_claims", "verdict_words", "write_outputs", "plot_labels_curve"]


def _cells(records: Sequence[dict]) -> dict[tuple[int, str], list[dict]]:
    cells: dict = defaultdict(list)
    for r in records:
        cells[(int(r["num_labeled"]), r["method"])].append(r)
    return cells


def method_scores(runs: Sequence[dict], level: float = 0.95) -> dict:
    """One method at one labeled count: pooled out-of-fold mIoU and per-class IoU (points), fold-level interval.

    The out-of-fold score pools the counts of every test image of every fold (each scored
    by its own fold's model), summed over seeds; the interval is a t-interval over the
    per-fold pooled mIoU (mean over seeds).
    """
    counts: dict[str, np.ndarray] = {}
    per_fold: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        run_counts = image_counts(r)
        for image, c in run_counts.items():
            name = f"f{r['fold']}/{image}"
            counts[name] = counts.get(name, 0) + c
        per_fold[int(r["fold"])].append(100 * float(pooled_miou(np.stack(list(run_counts.values())))))
    stacked = np.stack([counts[k] for k in sorted(counts)])
    _, low, high, _ = t_interval([float(np.mean(v)) for v in per_fold.values()], level)
    return {
        "miou": 100 * float(pooled_miou(stacked)),
        "ci_low": low,
        "ci_high": high,
        "per_class": (100 * pooled_iou(stacked)).tolist(),
        "n_runs": len(runs),
        "n_folds": len(per_fold),
        "train_seconds": float(sum(r.get("train_seconds", 0.0) for r in runs)),
    }


def compute_claims(records: Sequence[dict], methods: Sequence[str], dataset: str, alpha: float = 0.05) -> list[dict]:
    """"B > A" for every pair of ``methods`` (B after A in the list) at every labeled count, Holm-corrected together."""
    cells = _cells(records)
    claims = []
    for labeled in sorted({n for n, _ in cells}):
        for a, b in _pairs(methods):
            result = compare_methods(cells.get((labeled, b), []), cells.get((labeled, a), []))
            if result is None:
                continue
            class_names = cells[(labeled, b)][0].get("class_names") or [str(i) for i in range(len(result["per_class_delta"]))]
            claims.append({
                "claim": f"{b} > {a}",
                "method": b,
                "baseline": a,
                "dataset": dataset,
                "num_labeled": labeled,
                **{k: result[k] for k in ("delta_miou", "fold_mean_delta", "ci_low", "ci_high", "p_value", "n_images",
                                          "n_runs", "n_folds", "sign_positive", "sign_n", "sign_p", "fold_deltas",
                                          "mixed_threads")},
                "per_class_delta": dict(zip(class_names, result["per_class_delta"])),
            })
    apply_holm(claims, alpha)
    return claims


def _pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    return [(methods[i], methods[j]) for i in range(len(methods)) for j in range(i + 1, len(methods))]


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "[no interval: 1 fold]"
    return f"[{low:+.1f}, {high:+.1f}]"


def verdict_words(claim: dict) -> str:
    """The verdict of a claim as advice, e.g. "ours beats supervised by 2.1 points [+0.4, +3.8]: use it"."""
    b, a = claim["method"], claim["baseline"]
    delta, span = claim["delta_miou"], _interval(claim["ci_low"], claim["ci_high"])
    folds = claim["n_folds"]
    if claim["verdict"] == "holds":
        return f"{b} beats {a} by {delta:.1f} points {span}: use {b}"
    if claim["verdict"] == "does not hold":
        return f"{b} is worse than {a} by {-delta:.1f} points {span}: keep {a}"
    if a == "supervised":
        advice = "train supervised, or label more images"
    else:
        advice = f"{a} is as good as far as this can tell"
    return f"cannot tell with {folds} fold(s) ({delta:+.1f} points, {span}): {advice}"


def _format_report(records: Sequence[dict], claims: list[dict], methods: Sequence[str], dataset: str, folds: int) -> str:
    cells = _cells(records)
    counts = sorted({n for n, _ in cells})
    class_names = records[0].get("class_names") or []
    seeds = sorted({int(r["seed"]) for r in records})
    hours = sum(r.get("train_seconds", 0.0) for r in records) / 3600
    devices = sorted({r.get("device", "?") for r in records})
    lines = [
        f"# Does semi-supervised training pay on `{dataset}`?",
        "",
        f"{len(records)} runs: {folds} folds, seeds {seeds}, labeled counts {counts}, methods {', '.join(methods)}; "
        f"training time {hours:.2f} h in all on {', '.join(devices)}. Every method of a (fold, seed) trained on the "
        "same labeled draw; each was scored on its fold's test images by its final EMA teacher.",
        "",
        "## Verdicts",
        "",
    ]
    if not claims:
        lines.append("No pair of methods shares a finished run yet: nothing to compare.")
    for c in claims:
        lines.append(f"- **{c['num_labeled']} labeled, {c['claim']}**: {verdict_words(c)} "
                     f"(p = {c['p_value']:.3f}, Holm {c['p_holm']:.3f}; {c['sign_positive']} of {c['sign_n']} folds ahead).")
        if c.get("mixed_threads"):
            lines.append(f"  - *Warning*: the runs {', '.join(c['mixed_threads'])} of the two methods were made with "
                         "different CPU thread counts (`threads` in results.json), which alone moves a run's score; "
                         "remove those runs' records from results.json and call compare again with `--threads N` "
                         "(N as in the others) before trusting this verdict.")
    lines += [
        "",
        "## Pooled out-of-fold IoU (points)",
        "",
        "Every test image scored by its own fold's model, counts pooled over folds and seeds; the interval is a "
        "fold-level 95 % t-interval of the method's per-fold mIoU.",
        "",
        "| labeled | method | mIoU [95 % interval] | " + " | ".join(class_names) + " | runs | training time |",
        "|---|---|---|" + "---|" * len(class_names) + "---|---|",
    ]
    for n in counts:
        for m in methods:
            runs = cells.get((n, m))
            if not runs:
                continue
            s = method_scores(runs)
            span = _interval(s["ci_low"], s["ci_high"]).replace("+", "")
            lines.append(f"| {n} | {m} | {s['miou']:.1f} {span} | " + " | ".join(f"{v:.1f}" for v in s["per_class"])
                         + f" | {s['n_runs']} | {s['train_seconds'] / 60:.1f} min |")
    lines += [
        "",
        "## How to read this",
        "",
        "- A verdict says *holds* only when the fold-level interval excludes 0 after Holm's correction over every "
        "claim of this table; with few folds the intervals are wide and most verdicts say *cannot tell*.",
        "- *Cannot tell* is an answer: the gain, if any, is smaller than what these folds can see. More folds, more "
        "seeds or more labeled images narrow the interval; training settings closer to your real ones make it "
        "relevant (see docs/compare.md).",
        "- `claims.json` holds the numbers of every claim; `results.json` one record per run with per-image counts.",
        "",
    ]
    return "\n".join(lines)


def plot_labels_curve(records: Sequence[dict], methods: Sequence[str], path: Path, title: str = "") -> bool:
    """Pooled out-of-fold mIoU against the labeled count, one line per method with its interval band.

    Returns:
        False when matplotlib is not installed (nothing written).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cells = _cells(records)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in methods:
        counts = sorted(n for n, method in cells if method == m)
        if not counts:
            continue
        scores = [method_scores(cells[(n, m)]) for n in counts]
        y = [s["miou"] for s in scores]
        ax.plot(counts, y, marker="o", label=m)
        low = [s["ci_low"] if math.isfinite(s["ci_low"]) else s["miou"] for s in scores]
        high = [s["ci_high"] if math.isfinite(s["ci_high"]) else s["miou"] for s in scores]
        ax.fill_between(counts, low, high, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("labeled images")
    ax.set_ylabel("pooled out-of-fold mIoU (points)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(str(path), lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return True


def _finite_or_none(value):
    """JSON has no Infinity/NaN: an interval that does not exist (one fold) is written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_outputs(records: Sequence[dict], out: Path, methods: Sequence[str], dataset: str, folds: int) -> list[Path]:
    """``claims.json``, ``report.md`` and (with several labeled counts) ``labels_curve.png`` in ``out``."""
    out = Path(out)
    claims = compute_claims(records, methods, dataset)
    written = [out / "claims.json", out / "report.md"]
    write_json_atomic(_finite_or_none(claims), str(written[0]))
    text = _format_report(records, claims, methods, dataset, folds)
    atomic_write(str(written[1]), lambda tmp: Path(tmp).write_text(text))
    if len({int(r["num_labeled"]) for r in records}) > 1:
        if plot_labels_curve(records, methods, out / "labels_curve.png", f"{dataset}: {folds} folds"):
            written.append(out / "labels_curve.png")
    return written
