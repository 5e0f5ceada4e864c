"""The paper-benchmark scripts: grid order, overrides that the bundles accept, paired deltas."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from monai_supmix.bundle import validate_values

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _load("run_paper_benchmark")
report = _load("report_paper_benchmark")


@pytest.mark.parametrize("dataset", ["chase", "covid19"])
def test_every_override_is_a_valid_bundle_key(dataset):
    with open(REPO / "bundles" / dataset / "configs" / "train.json") as f:
        config = json.load(f)
    for name, overrides in run.ALL_METHODS.items():
        for protocol in run.PROTOCOLS.values():
            merged = {**protocol[dataset], **overrides}
            missing = sorted(set(merged) - set(config))
            assert not missing, f"{name}: {missing} are not keys of {dataset}/train.json"
            validate_values({**config, **merged})


def test_grid_puts_headline_first_and_variants_last():
    order = run.grid([0, 1], variants=["sufd_plain"])
    assert order[:4] == [
        ("chase", 4, "conventional", 0),
        ("chase", 4, "ours", 0),
        ("covid19", 10, "conventional", 0),
        ("covid19", 10, "ours", 0),
    ]
    variants = [g for g in order if g[2] == "sufd_plain"]
    assert len(variants) == 4 and order[-4:] == variants
    assert len(order) == len(set(order))
    assert not [g for g in run.grid([0]) if g[2] in run.VARIANTS]


def _record(method: str, seed: int, miou: float, iou: dict) -> dict:
    return {"dataset": "chase", "num_labeled": 4, "method": method, "seed": seed, "miou": miou, "iou": iou}


def test_paired_delta_uses_common_seeds_only():
    base = [_record("conventional", s, 0.70 + 0.01 * s, {"vessel": 0.5}) for s in (0, 1)]
    runs = [_record("ours", s, 0.72 + 0.01 * s, {"vessel": 0.53}) for s in (1, 2)]
    delta, per_class, n = report.paired_delta(runs, base)
    assert n == 1
    assert delta == pytest.approx(2.0)
    assert per_class["vessel"] == pytest.approx(3.0)
    assert report.paired_delta(runs, []) is None


def test_design_changes_compare_with_the_modified_method_and_conventional():
    records = [
        _record("conventional", 0, 0.70, {"vessel": 0.50}),
        _record("sufd", 0, 0.69, {"vessel": 0.49}),
        _record("sufd_plain", 0, 0.705, {"vessel": 0.51}),
    ]
    lines = report.design_changes(records)
    assert len(lines) == 3
    row = lines[2]
    assert "4b." in row and "4. + SUFD: +1.50 (n=1)" in row and "| +0.50 (n=1) |" in row and "vessel +1.00" in row
    assert report.design_changes(records[:2]) == []
    # the report labels every variant the run script knows
    assert set(report.VARIANTS) == set(run.VARIANTS)
