"""``match_intensity_range``: unlabeled images exported with another window are told apart from the labeled ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_supmix.data import intensity_percentile, match_intensity_range


def _slice(path, bright: int, seed: int) -> dict:
    """A CT-like slice: dark lungs, soft tissue at ``bright`` (210 as labeled, ~100 for a narrower export)."""
    rng = np.random.default_rng(seed)
    image = np.full((64, 64), bright, dtype=np.float32)
    image[16:48, 8:28] = image[16:48, 36:56] = bright * 0.25  # lungs
    image += rng.normal(0, 3, image.shape)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return {"image": str(path), "id": path.stem}


def test_the_other_window_is_split_off_in_order(tmp_path):
    labeled = [_slice(tmp_path / f"l{i}.png", 210 + 5 * i, i) for i in range(3)]
    unlabeled = [_slice(tmp_path / f"u{i}.png", bright, 10 + i) for i, bright in enumerate((100, 220, 95, 205, 110))]
    matching, mismatched = match_intensity_range(unlabeled, labeled)
    assert [i["id"] for i in matching] == ["u1", "u3"]
    assert [i["id"] for i in mismatched] == ["u0", "u2", "u4"]
    assert 200 < intensity_percentile(labeled[0]["image"]) < 225
    # a looser ratio keeps everything; the items come back unchanged
    matching, mismatched = match_intensity_range(unlabeled, labeled, ratio=0.3)
    assert matching == unlabeled and mismatched == []


@pytest.mark.parametrize(
    "kwargs, message",
    [({"labeled": []}, "no labeled images"), ({"ratio": 0.0}, "ratio must be in"), ({"q": 101}, "q must be in"),
     ({"key": "img"}, "has no 'img' key")],
)
def test_bad_arguments_name_what_was_expected(tmp_path, kwargs, message):
    labeled = [_slice(tmp_path / "l.png", 210, 0)]
    args = {"unlabeled": [_slice(tmp_path / "u.png", 100, 1)], "labeled": labeled, **kwargs}
    with pytest.raises(ValueError, match=message):
        match_intensity_range(**args)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        intensity_percentile(str(tmp_path / "missing.png"))
