"""Fold-level paired statistics: a known difference is found, a null one is not, intervals widen with disagreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_supmix.comparison import (
    apply_holm,
    compare_methods,
    fold_deltas,
    holm,
    mixed_thread_runs,
    out_of_fold_counts,
    pooled_miou,
    sign_test,
    t_interval,
)


def _record(method: str, fold: int, seed: int, tp: list[list[int]], images: int = 4) -> dict:
    """A run record whose ``images`` test images all have the per-class TP counts ``tp[i]`` (FP = FN = 10)."""
    per_image = []
    for i in range(images):
        counts = tp[i % len(tp)]
        per_image.append({"id": f"img{fold}_{i}", "tp": counts, "fp": [10] * len(counts), "fn": [10] * len(counts)})
    return {"method": method, "fold": fold, "seed": seed, "num_labeled": 4, "per_image": per_image,
            "class_names": ["bg", "fg"]}


def _runs(method: str, tp_by_fold: dict[int, int], seeds=(0,)) -> list[dict]:
    return [_record(method, f, s, [[100, tp]]) for f, tp in tp_by_fold.items() for s in seeds]


def test_t_interval_sign_test_and_holm_match_their_definitions():
    mean, low, high, p = t_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and low == pytest.approx(2.5 - 3.182446 * math.sqrt(1.666667 / 4), rel=1e-5)
    assert high == pytest.approx(5 - low) and p == pytest.approx(0.0305, abs=1e-3)
    assert t_interval([2.0])[1:] == (-math.inf, math.inf, 1.0)  # one fold: no interval
    assert sign_test([1, 2, 3, -1, 0]) == (3, 4, pytest.approx(0.625))
    assert sign_test([1, 1, 1, 1, 1, 1])[2] == pytest.approx(2 / 64)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_a_known_difference_is_found():
    base = _runs("supervised", {0: 20, 1: 25, 2: 30, 3: 22, 4: 28})
    better = _runs("ours", {0: 40, 1: 44, 2: 52, 3: 41, 4: 47})
    result = compare_methods(better, base)
    assert result["ci_low"] > 0 and result["p_value"] < 0.01
    assert result["n_folds"] == 5 and result["n_runs"] == 5 and result["n_images"] == 20
    assert result["sign_positive"] == 5
    # the headline is the pooled out-of-fold difference
    a, b, _ = out_of_fold_counts(better, base)
    assert result["delta_miou"] == pytest.approx(100 * float(pooled_miou(a) - pooled_miou(b)))
    claims = apply_holm([{**result, "claim": "ours > supervised"}])
    assert claims[0]["verdict"] == "holds" and claims[0]["p_holm"] == pytest.approx(result["p_value"])


def test_a_null_difference_is_not_found_and_a_worse_method_does_not_hold():
    base = _runs("supervised", {0: 20, 1: 25, 2: 30, 3: 22, 4: 28})
    same = _runs("ours", {0: 22, 1: 23, 2: 31, 3: 21, 4: 28})
    result = compare_methods(same, base)
    assert result["ci_low"] < 0 < result["ci_high"]
    assert apply_holm([dict(result)])[0]["verdict"] == "cannot tell"
    worse = _runs("ours", {0: 5, 1: 8, 2: 9, 3: 6, 4: 7})
    assert apply_holm([compare_methods(worse, base)])[0]["verdict"] == "does not hold"


def test_intervals_widen_when_folds_disagree():
    base = _runs("supervised", {f: 30 for f in range(5)})
    agree = _runs("ours", {0: 40, 1: 41, 2: 39, 3: 40, 4: 40})
    disagree = _runs("ours", {0: 60, 1: 20, 2: 45, 3: 35, 4: 40})
    narrow, wide = compare_methods(agree, base), compare_methods(disagree, base)
    assert wide["ci_high"] - wide["ci_low"] > 5 * (narrow["ci_high"] - narrow["ci_low"])
    assert narrow["ci_low"] > 0 and wide["ci_low"] < 0


def test_holm_turns_a_marginal_claim_into_cannot_tell():
    base = _runs("supervised", {0: 20, 1: 25, 2: 30, 3: 22, 4: 28})
    marginal = _runs("ours", {0: 24, 1: 27, 2: 33, 3: 23, 4: 31})
    result = compare_methods(marginal, base)
    assert 0.01 < result["p_value"] < 0.05
    alone = apply_holm([dict(result)])[0]
    table = apply_holm([dict(result)] + [{"delta_miou": 0.0, "p_value": 0.9} for _ in range(9)])[0]
    assert alone["verdict"] == "holds" and table["verdict"] == "cannot tell"


def test_seeds_are_averaged_within_a_fold_and_unshared_runs_ignored():
    base = _runs("supervised", {0: 20, 1: 20}, seeds=(0, 1))
    other = _runs("ours", {0: 30, 1: 30}, seeds=(0,)) + [_record("ours", 2, 0, [[100, 90]])]
    deltas = fold_deltas(other, base)
    assert set(deltas) == {0, 1}
    assert deltas[0] == pytest.approx(deltas[1])
    assert compare_methods(other, []) is None
    assert np.isfinite(compare_methods(other, base)["delta_miou"])


def test_pairs_made_with_different_thread_counts_are_flagged():
    """A pair whose two runs used different CPU thread counts differs by more than the method: it is named."""
    base = _runs("supervised", {0: 20, 1: 20, 2: 20})
    other = _runs("ours", {0: 30, 1: 30, 2: 30})
    assert compare_methods(other, base)["mixed_threads"] == []  # records without `threads` are not flagged
    for record in base + other:
        record["threads"] = 1
    base[1]["threads"] = 2
    assert mixed_thread_runs(other, base) == ["f1/s0"]
    assert compare_methods(other, base)["mixed_threads"] == ["f1/s0"]
