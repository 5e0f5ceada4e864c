"""Cross-validation folds and labeled-set draws for paired comparisons of training methods.

- :func:`group_folds`: ``k`` folds over the labeled images, group-wise (all images of a
  patient/volume in the same fold), balanced by image count, reproducible from a seed.
- :func:`draw_labeled`: for one (fold, seed), the labeled images are a seeded random draw
  from that fold's pool (group-wise where the count allows: both eyes of a patient go
  together), the same for every method of that (fold, seed) so that comparisons stay
  paired. Draws of different (fold, seed) pairs are kept distinct unless the pool forces
  them to coincide, so that the folds sample the choice of labeled images, which is the
  largest source of variance with 1-10 labeled images.

Every RNG here is keyed by a dataset key (its name), the fold and the seed, so one
dataset's draws never depend on another's.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["group_of", "group_folds", "draw_labeled", "dataset_key"]


def dataset_key(name: str) -> int:
    """A stable integer for a dataset name (the first entry of every RNG key of that dataset)."""
    return zlib.crc32(str(name).encode())


def group_of(pattern: str | None) -> Callable[[str], str]:
    """``id -> group`` from a regular expression whose first group names the patient/volume.

    Without a pattern every image is its own group.

    Raises:
        ValueError: for an invalid expression or one without a group.
    """
    if pattern is None:
        return lambda image_id: image_id
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"--group {pattern!r} is not a valid regular expression: {err}") from None
    if compiled.groups < 1:
        raise ValueError(f"--group {pattern!r} needs a capturing group naming the patient, e.g. 'Image_(\\d+)'.")

    def group(image_id: str) -> str:
        match = compiled.search(image_id)
        if not match:
            raise ValueError(f"--group {pattern!r} does not match image id {image_id!r}.")
        return match.group(1)

    return group


def group_folds(ids: Sequence[str], num_folds: int, group: Callable[[str], str], seed: int = 0) -> list[list[str]]:
    """Split image ids into ``num_folds`` test folds, group-wise, balanced by image count.

    Groups are shuffled with ``seed`` and assigned, largest first, to the fold with the
    fewest images so far.

    Returns:
        the ids of each fold (sorted).

    Raises:
        ValueError: when there are fewer groups than folds or fewer than 2 folds.
    """
    if num_folds < 2:
        raise ValueError(f"--folds must be >= 2, got {num_folds}.")
    groups: dict[str, list[str]] = {}
    for image_id in ids:
        groups.setdefault(group(image_id), []).append(image_id)
    if len(groups) < num_folds:
        raise ValueError(
            f"{len(groups)} patient group(s) among {len(ids)} labeled images cannot make {num_folds} folds: "
            f"at most {len(groups)} folds are possible (fewer than 2 folds: label more images)."
        )
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda n: -len(groups[n]))  # stable: equal sizes keep the shuffled order
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for name in names:
        smallest = min(range(num_folds), key=lambda f: (len(folds[f]), f))
        folds[smallest] += groups[name]
    return [sorted(f) for f in folds]


def _ordered_pool(pool: Sequence[dict], group: Callable[[str], str], rng: np.random.Generator) -> list[dict]:
    """The pool in a random order that keeps the images of a group next to each other."""
    groups: dict[str, list[dict]] = {}
    for item in pool:
        groups.setdefault(group(item["id"]), []).append(item)
    names = sorted(groups)
    ordered: list[dict] = []
    for g in rng.permutation(len(names)):
        members = sorted(groups[names[g]], key=lambda i: i["id"])
        ordered += [members[j] for j in rng.permutation(len(members))]
    return ordered


def draw_labeled(
    pools: Callable[[int], Sequence[dict]],
    fold: int,
    seed: int,
    num_labeled: int,
    num_folds: int,
    dataset: str,
    group: Callable[[str], str] | None = None,
    attempts: int = 50,
) -> tuple[list[dict], list[dict]]:
    """The labeled draw of one (fold, seed) and the rest of its pool, in drawn order.

    Draws are made in a fixed order — seeds, then folds — and a draw that equals the
    labeled set of an earlier (fold, seed) of the same count is drawn again (up to
    ``attempts`` times), so that reporting folds do not share a labeled set unless the
    pool forces it.

    Args:
        pools: ``fold -> the items of that fold's pool`` (dicts with ``"id"``).
        fold: the fold.
        seed: the seed (samples the labeled set and the training noise).
        num_labeled: how many images to label.
        num_folds: the number of folds (draws of every fold are compared).
        dataset: the dataset's name (its RNG key, :func:`dataset_key`).
        group: ``id -> patient``; images of a patient are drawn together where the count allows.
        attempts: redraws before a repeated set is accepted.

    Returns:
        ``(labeled, rest)``: ``rest`` is the remainder of the pool in drawn order.

    Raises:
        ValueError: when ``num_labeled`` is not in ``1..len(pool)``.
    """
    group = group or (lambda image_id: image_id)
    cache: dict[tuple[int, int], tuple[list[dict], list[dict]]] = {}
    for s in range(seed + 1):
        for f in range(num_folds):
            if (s, f) > (seed, fold):
                break
            pool = list(pools(f))
            if not 1 <= num_labeled <= len(pool):
                raise ValueError(f"num_labeled must be in 1..{len(pool)} (the pool of fold {f}), got {num_labeled}.")
            earlier = {frozenset(i["id"] for i in lab) for lab, _ in cache.values()}
            for attempt in range(attempts):
                rng = np.random.default_rng([dataset_key(dataset), f, s, attempt])  # the same order for every count
                ordered = _ordered_pool(pool, group, rng)
                labeled = ordered[:num_labeled]
                if frozenset(i["id"] for i in labeled) not in earlier:
                    break
            cache[(s, f)] = (labeled, ordered[num_labeled:])
    return cache[(seed, fold)]
