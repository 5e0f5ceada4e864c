"""Intensity range checks between labeled and unlabeled images (e.g. CT slices exported with another window).

The COVID-19 data shows why they matter: 1,119 of its 1,600 unlabeled slices (10 CT volumes)
were exported with a different window than the 50 labeled ones. Their 95th intensity
percentile is 84-147 on the 0-255 scale, soft tissue sits at about 100 instead of 210 and
lesions show at about half the contrast the labeled slices teach; the other 481 unlabeled
slices (234-255) look like the labeled ones (208-254). A per-image percentile is enough to
tell the two apart, without names or metadata.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .transforms import ReadImaged

__all__ = ["intensity_percentile", "match_intensity_range"]

@functools.lru_cache(maxsize=1)
def _reader() -> ReadImaged:
    """One reader (a MONAI ``LoadImage``) for every call."""
    return ReadImaged("image")


def intensity_percentile(path: str, q: float = 95.0) -> float:
    """The ``q``-th percentile of one image file's intensities (all channels), read as the bundles read it."""
    image = _reader()({"image": str(path)})["image"]
    return float(np.percentile(np.asarray(image, dtype=np.float32), q))


def match_intensity_range(
    unlabeled: Sequence[dict],
    labeled: Sequence[dict],
    ratio: float = 0.75,
    q: float = 95.0,
    key: str = "image",
) -> tuple[list[dict], list[dict]]:
    """Split unlabeled items into those whose intensity range matches the labeled images' and those that do not.

    An unlabeled image matches when its ``q``-th intensity percentile is at least ``ratio``
    times the median of the labeled images' ``q``-th percentiles: an image whose bright end
    (soft tissue, bone) lies far below the labeled images' was exported with another
    window or scaling.

    Args:
        unlabeled: datalist items of the unlabeled images (``key`` holds the file path).
        labeled: datalist items of the labeled images.
        ratio: the fraction of the labeled median an unlabeled image must reach, in (0, 1].
        q: the percentile, in (0, 100].
        key: the item key of the image path.

    Returns:
        ``(matching, mismatched)`` items, each in the input order.

    Raises:
        ValueError: for no labeled items, a ``ratio`` or ``q`` out of range, or an item without ``key``.
    """
    if not labeled:
        raise ValueError("match_intensity_range: no labeled images to take the intensity range from.")
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"match_intensity_range: ratio must be in (0, 1], got {ratio}.")
    if not 0.0 < float(q) <= 100.0:
        raise ValueError(f"match_intensity_range: q must be in (0, 100], got {q}.")
    for item in [*labeled, *unlabeled]:
        if key not in item:
            raise ValueError(f"match_intensity_range: item {item.get('id', item)!r} has no {key!r} key.")
    reference = float(np.median([intensity_percentile(item[key], q) for item in labeled]))
    matching, mismatched = [], []
    for item in unlabeled:
        (matching if intensity_percentile(item[key], q) >= ratio * reference else mismatched).append(item)
    return matching, mismatched
