"""Paired comparisons of benchmark runs: pooled IoU from per-image counts, bootstrap confidence intervals, claims.

Every run record of ``results.json`` carries, per test image, the true-positive /
false-positive / false-negative pixel counts of every class (written by the bundles'
evaluation, :class:`monai_supmix.handlers.PerClassMetricsWriter`, from
``monai.metrics.get_confusion_matrix``). From them:

- **pooled IoU** of a class = Σ TP / Σ (TP + FP + FN) over the test images (and seeds):
  dataset-level IoU, which counts false positives on images that lack the class;
  pooled mIoU = mean over classes (background included);
- **a paired difference** of two methods uses the runs they share (same fold and seed)
  and the test images of those folds: method A's counts and method B's counts of the
  same images, summed over the shared seeds;
- **its 95 % confidence interval** comes from a two-level (cluster) bootstrap: folds drawn
  with replacement, then test images with replacement inside each drawn fold, the same
  draw for both methods, 2,000 resamples, percentile interval. Each fold is its own
  training run, so drawing folds carries run-to-run training variation into the
  interval, which a bootstrap over images alone would leave out (it would only say how
  sure we are about *these* trained models); with a single fold it falls back to images;
- **runs won**: in how many of the shared (fold, seed) runs A's pooled mIoU is above B's.

The claims' verdicts come from the package's fold-level statistics with Holm's correction
(:mod:`monai_supmix.comparison.statistics`, one implementation with ``monai-supmix compare``);
this module keeps the two-level bootstrap as a second interval and the share-of-gap
computation the benchmark report uses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "CLAIMS",
    "image_counts",
    "paired_counts",
    "fold_groups",
    "pooled_iou",
    "pooled_miou",
    "bootstrap_delta",
    "runs_won",
    "verdict",
    "compute_claims",
]

N_BOOT = 2000

#: (claim, method A, method B): "A > B".
CLAIMS = (
    ("conventional > supervised", "conventional", "supervised"),
    ("ours > conventional", "ours", "conventional"),
    ("+SupMix > conventional", "supmix", "conventional"),
    ("+SUFD > conventional", "sufd", "conventional"),
    ("ours > supervised", "ours", "supervised"),
)


# one implementation with `monai-supmix compare`: pooled counts and IoU come from the package
from monai_supmix.comparison.statistics import (  # noqa: E402
    image_counts,
    paired_image_counts,
    pooled_iou,
    pooled_miou,
)


#: Counts of the images both methods were tested on, summed over their shared (fold, seed) runs:
#: ``(A, B, image keys, number of paired runs)``.
paired_counts = paired_image_counts


def fold_groups(keys: Sequence[str]) -> np.ndarray:
    """The fold of each image key ``"f<fold>/<image>"`` of :func:`paired_counts`, as cluster ids."""
    names = [k.split("/", 1)[0] for k in keys]
    index = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.array([index[name] for name in names])


def _resample_weights(n: int, n_boot: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """``n_boot×n`` multiplicities of a bootstrap draw of ``n`` images with replacement.

    With ``groups`` (a cluster id per image, here the fold) and more than one cluster, the
    draw has two levels: clusters with replacement, then, for each copy of a cluster, its
    images with replacement. ``m`` copies of a cluster of ``k`` images, each resampled,
    give the same multiplicities as ``m·k`` draws from that cluster, which is how it is done.
    """
    rng = np.random.default_rng(seed)
    if groups is None or len(np.unique(groups)) < 2:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    groups = np.asarray(groups)
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    copies = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n_boot)
    weights = np.zeros((n_boot, n))
    for j, idx in enumerate(members):
        k = len(idx)
        for b in range(n_boot):
            if copies[b, j]:
                weights[b, idx] = rng.multinomial(copies[b, j] * k, np.full(k, 1.0 / k))
    return weights


def _weighted(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``n_boot×1×C×3`` count sums of each bootstrap draw."""
    return np.einsum("bn,nck->bck", weights, counts)[:, None]


def _interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (resamples where a ratio is undefined are skipped)."""
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_delta(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict:
    """Pooled-mIoU difference A − B (in points) with a paired bootstrap interval.

    Args:
        counts_a: ``N×C×3`` counts of method A.
        counts_b: the same images' counts of method B.
        n_boot: bootstrap resamples.
        seed: seed of the resampling.
        level: confidence level of the percentile interval.
        groups: a cluster id per image (the fold, :func:`fold_groups`): resample clusters,
            then images inside them; ``None``: images only.

    Returns:
        ``{"delta", "ci_low", "ci_high", "per_class_delta", "samples"}`` (points; ``samples``
        is the array of bootstrap deltas, for combining claims).

    Raises:
        ValueError: when the two count arrays differ in shape or are empty.
    """
    if counts_a.shape != counts_b.shape or counts_a.size == 0:
        raise ValueError(f"need paired, non-empty counts, got shapes {counts_a.shape} and {counts_b.shape}")
    delta = 100 * float(pooled_miou(counts_a) - pooled_miou(counts_b))
    per_class = 100 * (pooled_iou(counts_a) - pooled_iou(counts_b))
    weights = _resample_weights(counts_a.shape[0], n_boot, seed, groups)
    samples = 100 * (pooled_miou(_weighted(counts_a, weights)) - pooled_miou(_weighted(counts_b, weights)))
    low, high = _interval(samples, level)
    return {
        "delta": delta,
        "ci_low": low,
        "ci_high": high,
        "per_class_delta": per_class.tolist(),
        "samples": samples,
    }


def bootstrap_gap_closed(
    ours: np.ndarray,
    few: np.ndarray,
    full: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict:
    """Fraction of the gap from supervised-few to supervised-full that a method closes, with a bootstrap interval.

    All three arrays hold the counts of the same images (``N×C×3``); ``groups`` as in
    :func:`bootstrap_delta`.
    """
    def fraction(a, b, c):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pooled_miou(a) - pooled_miou(b)) / (pooled_miou(c) - pooled_miou(b))

    value = float(fraction(ours, few, full))
    weights = _resample_weights(ours.shape[0], n_boot, seed, groups)
    samples = fraction(_weighted(ours, weights), _weighted(few, weights), _weighted(full, weights))
    low, high = _interval(samples, level)
    return {"fraction": value, "ci_low": low, "ci_high": high}


def verdict(low: float, high: float) -> str:
    """``holds`` (interval above 0), ``does not hold`` (below 0) or ``cannot tell``."""
    if low > 0:
        return "holds"
    if high < 0:
        return "does not hold"
    return "cannot tell"


def group_runs(records: Iterable[dict]) -> dict[tuple[str, int, str], list[dict]]:
    """Runs by ``(dataset, num_labeled, method)``."""
    cells: dict = defaultdict(list)
    for r in records:
        cells[(r["dataset"], r["num_labeled"], r["method"])].append(r)
    return cells


def runs_won(runs_a: Sequence[dict], runs_b: Sequence[dict]) -> tuple[int, int]:
    """``(runs where A's pooled mIoU is above B's, shared runs)`` over the (fold, seed) pairs both have."""
    by_b = {(r["fold"], r["seed"]): r for r in runs_b}
    pairs = [(r, by_b[(r["fold"], r["seed"])]) for r in runs_a if (r["fold"], r["seed"]) in by_b]
    return sum(a["pooled_miou"] > b["pooled_miou"] for a, b in pairs), len(pairs)


def _combined_t(parts: Sequence[dict]) -> tuple[float, float, float, float]:
    """Mean of independent claims' fold-level deltas: ``(mean, low, high, p)`` with a Welch–Satterthwaite t."""
    from scipy import stats as st

    means, variances, dfs = [], [], []
    for part in parts:
        deltas = np.array(list(part["fold_deltas"].values()), dtype=np.float64)
        means.append(deltas.mean())
        variances.append(deltas.var(ddof=1) / len(deltas) if len(deltas) > 1 else np.inf)
        dfs.append(len(deltas) - 1)
    k = len(parts)
    mean = float(np.mean(means))
    var = float(np.sum(variances)) / k**2
    if not np.isfinite(var) or var == 0:
        return mean, -np.inf, np.inf, 1.0
    df = float(np.sum(variances) ** 2 / np.sum([v**2 / d for v, d in zip(variances, dfs)]))
    se = var**0.5
    q = float(st.t.ppf(0.975, df))
    return mean, mean - q * se, mean + q * se, float(2 * st.t.sf(abs(mean) / se, df))


def compute_claims(records: Sequence[dict], protocol: str, settings: Sequence[tuple[str, int]]) -> list[dict]:
    """Every claim of :data:`CLAIMS` for each ``(dataset, num_labeled)`` that has paired runs.

    The verdicts come from the package's fold-level statistics
    (:func:`monai_supmix.comparison.compare_methods`: pooled out-of-fold difference, t-interval
    over the per-fold deltas, exact sign test), Holm-corrected over the whole table
    (:func:`monai_supmix.comparison.apply_holm`); the two-level bootstrap interval stays as a
    second column (``boot_ci_low``/``boot_ci_high``), drawn from one RNG per dataset. Only
    reporting-fold records should be passed. Also adds, where both datasets have it,
    "ours > conventional" averaged over the first setting of each dataset.
    """
    from monai_supmix.comparison import apply_holm, compare_methods, dataset_key

    cells = group_runs(records)
    claims: list[dict] = []
    for dataset, labeled in settings:
        for name, a, b in CLAIMS:
            runs_a, runs_b = cells.get((dataset, labeled, a), []), cells.get((dataset, labeled, b), [])
            result = compare_methods(runs_a, runs_b)
            if result is None:
                continue
            counts_a, counts_b, keys, _ = paired_counts(runs_a, runs_b)
            boot = bootstrap_delta(counts_a, counts_b, groups=fold_groups(keys), seed=dataset_key(dataset))
            class_names = runs_a[0]["class_names"]
            won, _ = runs_won(runs_a, runs_b)
            claims.append({
                "claim": name,
                "dataset": dataset,
                "num_labeled": labeled,
                "protocol": protocol,
                **{k: result[k] for k in ("delta_miou", "fold_mean_delta", "ci_low", "ci_high", "p_value", "n_images",
                                          "n_runs", "n_folds", "sign_positive", "sign_n", "sign_p", "fold_deltas")},
                "boot_ci_low": boot["ci_low"],
                "boot_ci_high": boot["ci_high"],
                "runs_won": won,
                "folds": sorted({r["fold"] for r in runs_a} & {r["fold"] for r in runs_b}),
                "per_class_delta": dict(zip(class_names, result["per_class_delta"])),
            })
    # the headline average over the two datasets (independent folds: a Welch t over both)
    heads = [s for s in settings if s[0] == "chase"][:1] + [s for s in settings if s[0] == "covid19"][:1]
    found = [c for c in claims if c["claim"] == "ours > conventional" and (c["dataset"], c["num_labeled"]) in heads]
    if len(heads) == 2 and len(found) == 2:
        mean, low, high, p = _combined_t(found)
        claims.append({
            "claim": "ours > conventional",
            "dataset": "average",
            "num_labeled": "+".join(f"{d} {n}" for d, n in heads),
            "protocol": protocol,
            "delta_miou": sum(c["delta_miou"] for c in found) / 2,
            "fold_mean_delta": mean,
            "ci_low": low,
            "ci_high": high,
            "p_value": p,
            "n_images": sum(c["n_images"] for c in found),
            "n_runs": sum(c["n_runs"] for c in found),
            "n_folds": sum(c["n_folds"] for c in found),
            "runs_won": sum(c["runs_won"] for c in found),
            "folds": sorted({f for c in found for f in c["folds"]}),
            "per_class_delta": {},
        })
    apply_holm(claims)
    for c in claims:
        for key in ("delta_miou", "fold_mean_delta", "ci_low", "ci_high", "boot_ci_low", "boot_ci_high"):
            if key in c and np.isfinite(c[key]):
                c[key] = round(float(c[key]), 3)
    return claims
