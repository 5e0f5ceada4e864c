"""Group-wise folds and labeled draws: reproducible, paired, distinct between folds, patient-wise."""

from __future__ import annotations

import pytest

from monai_supmix.comparison import draw_labeled, group_folds, group_of

IDS = [f"P{p:02d}_{s}" for p in range(10) for s in range(3)]  # 10 patients, 3 slices each


def test_group_folds_keep_patients_together_and_cover_every_image_once():
    group = group_of(r"^(P\d+)_")
    folds = group_folds(IDS, 4, group, seed=0)
    assert sorted(i for f in folds for i in f) == sorted(IDS)
    for fold in folds:
        patients = {group(i) for i in fold}
        assert all(sum(group(j) == p for j in fold) == 3 for p in patients)  # whole patients only
    assert max(map(len, folds)) - min(map(len, folds)) <= 3
    assert folds == group_folds(IDS, 4, group, seed=0) and folds != group_folds(IDS, 4, group, seed=1)


def test_group_errors_name_the_argument():
    with pytest.raises(ValueError, match="--folds"):
        group_folds(IDS, 1, group_of(None))
    with pytest.raises(ValueError, match="at most 10 folds"):
        group_folds(IDS, 11, group_of(r"^(P\d+)_"))
    with pytest.raises(ValueError, match="capturing group"):
        group_of(r"P\d+")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        group_of("(")
    with pytest.raises(ValueError, match="does not match image id"):
        group_of(r"^(Q\d+)")("P01_0")


def _pools(folds):
    items = [{"id": i} for i in IDS]
    return lambda f: [i for i in items if i["id"] not in set(folds[f])]


def test_draws_are_paired_reproducible_distinct_and_patient_wise():
    group = group_of(r"^(P\d+)_")
    folds = group_folds(IDS, 5, group, seed=0)
    pools = _pools(folds)
    seen = set()
    for seed in (0, 1):
        for fold in range(5):
            labeled, rest = draw_labeled(pools, fold, seed, 6, 5, "demo", group)
            again, _ = draw_labeled(pools, fold, seed, 6, 5, "demo", group)
            assert labeled == again  # every method of a (fold, seed) gets the same draw
            ids = {i["id"] for i in labeled}
            assert not ids & set(folds[fold]) and len(ids) == 6
            assert ids | {i["id"] for i in rest} == {i["id"] for i in pools(fold)}
            assert len({group(i) for i in ids}) == 2  # 6 images = 2 whole patients of 3 slices
            assert frozenset(ids) not in seen
            seen.add(frozenset(ids))
    other, _ = draw_labeled(pools, 0, 0, 6, 5, "another dataset", group)
    assert {i["id"] for i in other} != {i["id"] for i in draw_labeled(pools, 0, 0, 6, 5, "demo", group)[0]}


def test_one_labeled_image_per_fold_differs_between_folds():
    folds = group_folds(IDS, 5, group_of(None), seed=0)
    draws = [draw_labeled(_pools(folds), f, 0, 1, 5, "demo")[0][0]["id"] for f in range(5)]
    assert len(set(draws)) == 5
    with pytest.raises(ValueError, match="num_labeled must be in 1..24"):
        draw_labeled(_pools(folds), 0, 0, 25, 5, "demo")
