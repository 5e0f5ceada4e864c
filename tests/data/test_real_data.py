"""Optional checks on the real CHASE_DB1 and COVID-19 copies in ``../shared/data`` (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monai_supmix.data import chase_datalist, chase_transforms, covid_datalist, covid_transforms

REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CHASE, COVID = REAL_DATA / "chase", REAL_DATA / "covid19"


@pytest.mark.skipif(not CHASE.is_dir(), reason=f"real CHASE_DB1 not found at {CHASE}")
def test_real_chase():
    items = chase_datalist(str(CHASE))
    assert len(items) == 24
    assert all({"image", "label", "fov", "label_2nd"} <= set(i) for i in items)
    assert items[0]["id"] == "Image_01L" and items[-1]["id"] == "Image_12R"
    out = chase_transforms("eval", scale=0.5)(items[0])
    assert out["image"].shape[0] == 3 and tuple(out["image"].shape[1:]) in ((480, 499), (480, 500))
    assert out["label"].shape == out["fov"].shape == (1, *out["image"].shape[1:])
    assert set(torch.unique(out["label"]).tolist()) == {0, 1} and set(torch.unique(out["fov"]).tolist()) == {0, 1}
    vessel = out["label"][out["fov"] > 0].float().mean().item()
    assert 0.04 < vessel < 0.15


@pytest.mark.skipif(not COVID.is_dir(), reason=f"real COVID-19 slices not found at {COVID}")
def test_real_covid():
    data = covid_datalist(str(COVID))
    assert len(data["labeled"]) == 50 and len(data["unlabeled"]) == 1600
    assert [i["id"] for i in data["labeled"][:3]] == ["0", "1", "2"]
    out = covid_transforms("eval", spatial_size=(256, 256))(data["labeled"][0])
    assert out["image"].shape == out["label"].shape == (1, 256, 256)
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2} and out["label"].max() > 0
    unl = covid_transforms("infer", spatial_size=(256, 256))(data["unlabeled"][0])
    assert unl["image"].shape == (1, 256, 256) and 0 <= unl["image"].min() and unl["image"].max() <= 1
