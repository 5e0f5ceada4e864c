"""Paired statistics of cross-validated runs: pooled IoU, fold-level intervals, sign test, Holm, claims.

Every run record carries, per test image, the true-positive / false-positive /
false-negative pixel counts of every class (``per_image``, written by the bundles'
evaluation from ``monai.metrics.get_confusion_matrix``). From them:

- **pooled IoU** of a class = Σ TP / Σ (TP + FP + FN) over a set of test images, which
  counts false positives on images that lack the class; pooled mIoU = the mean over
  classes (background included);
- **the headline difference** of two methods: each method's out-of-fold predictions scored
  together — the counts of every test image of every fold (each image by its own fold's
  model), summed over the seeds both methods share — pooled mIoU of A minus that of B;
- **the fold-level interval**: per fold, the mean over shared seeds of the paired run
  deltas (pooled mIoU of A's run minus B's on that fold's test images); a Student-t
  interval over those per-fold means (folds − 1 degrees of freedom), its two-sided
  p-value, and the exact sign test over the folds beside it. Folds are the independent
  units (each fold trains its own models on its own labeled draw), so the interval
  carries the variation of training and of the labeled-set choice, which a bootstrap
  over test images would leave out;
- **mixed thread counts** are flagged: a pair of runs made with different CPU thread counts
  (``threads`` in the records) differ by more than the method (the order of floating-point
  sums changes, and on a 2-slice draw that alone moved a run by 3 points), so
  :func:`compare_methods` names those pairs in ``mixed_threads``;
- **Holm's correction** over all the claims of one table; a claim *holds* when its
  Holm-adjusted p-value is below ``alpha`` and the difference is positive, *does not
  hold* when it is below ``alpha`` and negative, and *cannot tell* otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "image_counts",
    "pooled_iou",
    "pooled_miou",
    "out_of_fold_counts",
    "paired_image_counts",
    "fold_deltas",
    "mixed_thread_runs",
    "t_interval",
    "sign_test",
    "holm",
    "verdict",
    "compare_methods",
    "apply_holm",
    "INTERVAL_METHOD",
]

INTERVAL_METHOD = "fold-level t (per-fold mean of paired run deltas, folds - 1 df), Holm over the table"


def image_counts(record: dict) -> dict[str, np.ndarray]:
    """``{image id: C×3 array of (TP, FP, FN)}`` of one run record."""
    return {
        item["id"]: np.stack([item["tp"], item["fp"], item["fn"]], axis=-1).astype(np.float64)
        for item in record["per_image"]
    }


def pooled_iou(counts: np.ndarray) -> np.ndarray:
    """Per-class pooled IoU of ``...×N×C×3`` counts (summed over the image axis ``-3``); NaN where a class never occurs."""
    total = counts.sum(axis=-3)
    tp, fp, fn = total[..., 0], total[..., 1], total[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fp + fn)


def pooled_miou(counts: np.ndarray) -> np.ndarray:
    """Pooled mIoU (mean over classes, classes that never occur skipped) of ``...×N×C×3`` counts."""
    return np.nanmean(pooled_iou(counts), axis=-1)


def _by_run(runs: Sequence[dict]) -> dict[tuple[int, int], dict]:
    return {(int(r["fold"]), int(r["seed"])): r for r in runs}


def paired_image_counts(runs_a: Sequence[dict], runs_b: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """The ``N×C×3`` counts of every test image of the (fold, seed) runs both methods have, summed over seeds.

    Returns:
        ``(A, B, image keys "f<fold>/<image id>", number of shared runs)``; empty arrays when nothing is shared.
    """
    a, b = _by_run(runs_a), _by_run(runs_b)
    shared = sorted(set(a) & set(b))
    sums_a: dict[str, np.ndarray] = {}
    sums_b: dict[str, np.ndarray] = {}
    for key in shared:
        counts_a, counts_b = image_counts(a[key]), image_counts(b[key])
        for image in sorted(set(counts_a) & set(counts_b)):
            name = f"f{key[0]}/{image}"
            sums_a[name] = sums_a.get(name, 0) + counts_a[image]
            sums_b[name] = sums_b.get(name, 0) + counts_b[image]
    names = sorted(sums_a)
    if not names:
        return np.zeros((0, 0, 3)), np.zeros((0, 0, 3)), [], 0
    return np.stack([sums_a[n] for n in names]), np.stack([sums_b[n] for n in names]), names, len(shared)


def out_of_fold_counts(runs_a: Sequence[dict], runs_b: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(A, B, number of shared runs)`` of :func:`paired_image_counts`: every test image scored by its own fold's model."""
    counts_a, counts_b, _, n_runs = paired_image_counts(runs_a, runs_b)
    return counts_a, counts_b, n_runs


def fold_deltas(runs_a: Sequence[dict], runs_b: Sequence[dict]) -> dict[int, float]:
    """``{fold: mean over shared seeds of (A's pooled mIoU − B's) on that fold's test images}``, in points."""
    a, b = _by_run(runs_a), _by_run(runs_b)
    per_fold: dict[int, list[float]] = {}
    for key in sorted(set(a) & set(b)):
        counts_a, counts_b = image_counts(a[key]), image_counts(b[key])
        images = sorted(set(counts_a) & set(counts_b))
        if not images:
            continue
        delta = pooled_miou(np.stack([counts_a[i] for i in images])) - pooled_miou(np.stack([counts_b[i] for i in images]))
        per_fold.setdefault(key[0], []).append(100.0 * float(delta))
    return {fold: float(np.mean(values)) for fold, values in per_fold.items()}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, low, high, two-sided p-value of mean = 0)`` of a Student-t interval over ``values``.

    With fewer than 2 values the interval is infinite and the p-value 1; with no spread it
    collapses onto the mean (p = 0 unless the mean is 0).
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan, -math.inf, math.inf, 1.0
    mean = float(x.mean())
    if n < 2:
        return mean, -math.inf, math.inf, 1.0
    se = float(x.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        return mean, mean, mean, 1.0 if mean == 0 else 0.0
    q = float(stats.t.ppf(0.5 + level / 2, df=n - 1))
    p = float(2 * stats.t.sf(abs(mean) / se, df=n - 1))
    return mean, mean - q * se, mean + q * se, p


def sign_test(values: Sequence[float]) -> tuple[int, int, float]:
    """``(positives, non-zero values, exact two-sided binomial p-value)`` of the signs of ``values``."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    nonzero = x[x != 0]
    positives = int((nonzero > 0).sum())
    if len(nonzero) == 0:
        return 0, 0, 1.0
    return positives, int(len(nonzero)), float(stats.binomtest(positives, len(nonzero), 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def verdict(delta: float, p_adjusted: float, alpha: float = 0.05) -> str:
    """``"holds"``, ``"does not hold"`` (the other method is better) or ``"cannot tell"``."""
    if p_adjusted < alpha and delta > 0:
        return "holds"
    if p_adjusted < alpha and delta < 0:
        return "does not hold"
    return "cannot tell"


def mixed_thread_runs(runs_a: Sequence[dict], runs_b: Sequence[dict]) -> list[str]:
    """The shared runs ``"f<fold>/s<seed>"`` whose two records were made with different CPU thread counts.

    Records without ``threads`` (made before it was recorded) are not flagged.
    """
    a, b = _by_run(runs_a), _by_run(runs_b)
    mixed = []
    for fold, seed in sorted(set(a) & set(b)):
        threads_a, threads_b = a[(fold, seed)].get("threads"), b[(fold, seed)].get("threads")
        if threads_a is not None and threads_b is not None and threads_a != threads_b:
            mixed.append(f"f{fold}/s{seed}")
    return mixed


def compare_methods(runs_a: Sequence[dict], runs_b: Sequence[dict], level: float = 0.95) -> dict | None:
    """Paired comparison A − B of two methods' runs of one setting (``None`` when they share no run).

    Returns:
        ``{"delta_miou", "ci_low", "ci_high", "p_value", "sign_positive", "sign_n", "sign_p",
        "fold_deltas", "n_images", "n_runs", "n_folds", "per_class_delta", "miou_a", "miou_b",
        "mixed_threads"}`` (points; ``delta_miou`` from the out-of-fold counts, the interval and
        p-value from the per-fold deltas; ``mixed_threads`` from :func:`mixed_thread_runs`).
    """
    counts_a, counts_b, n_runs = out_of_fold_counts(runs_a, runs_b)
    if n_runs == 0:
        return None
    deltas = fold_deltas(runs_a, runs_b)
    _, low, high, p = t_interval(list(deltas.values()), level)
    positives, signs, sign_p = sign_test(list(deltas.values()))
    miou_a, miou_b = 100 * float(pooled_miou(counts_a)), 100 * float(pooled_miou(counts_b))
    return {
        "delta_miou": miou_a - miou_b,
        "fold_mean_delta": float(np.mean(list(deltas.values()))),
        "ci_low": low,
        "ci_high": high,
        "p_value": p,
        "sign_positive": positives,
        "sign_n": signs,
        "sign_p": sign_p,
        "fold_deltas": {str(k): v for k, v in sorted(deltas.items())},
        "n_images": int(counts_a.shape[0]),
        "n_runs": n_runs,
        "n_folds": len(deltas),
        "per_class_delta": (100 * (pooled_iou(counts_a) - pooled_iou(counts_b))).tolist(),
        "miou_a": miou_a,
        "miou_b": miou_b,
        "mixed_threads": mixed_thread_runs(runs_a, runs_b),
    }


def apply_holm(claims: list[dict], alpha: float = 0.05) -> list[dict]:
    """Add ``p_holm`` and ``verdict`` to every claim (dicts with ``delta_miou`` and ``p_value``), in place."""
    adjusted = holm([c["p_value"] for c in claims]) if claims else []
    for claim, p in zip(claims, adjusted):
        claim["p_holm"] = p
        claim["verdict"] = verdict(claim["delta_miou"], p, alpha)
        claim["interval_method"] = INTERVAL_METHOD
    return claims
