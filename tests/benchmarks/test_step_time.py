"""The step-time benchmark's arithmetic count: what each configuration's step computes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def step_time():
    spec = importlib.util.spec_from_file_location("step_time", REPO / "benchmarks" / "step_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_follow_the_work_each_step_does(step_time):
    names = ("supervised", "conventional", "ours", "ours_fullres_sufd", "ours_plain_sufd", "supervised_amp")
    flops = {name: step_time.flops_per_step(name, 1, 32) for name in names}
    ratio = {name: flops[name] / flops["supervised"] for name in names}
    # the student's forward and backward on twice the images, plus the teacher's forward (no backward)
    assert 2.0 < ratio["conventional"] < 2.5
    # SUFD adds a discriminator; the default pools its input (less than at full resolution), one more
    # student pass over the plain unlabeled images adds about a third of a step
    assert ratio["conventional"] < ratio["ours"] < ratio["ours_fullres_sufd"] < ratio["ours_plain_sufd"]
    assert ratio["ours_plain_sufd"] - ratio["ours_fullres_sufd"] > 1.0
    # mixed precision changes the arithmetic's type, not its amount
    assert ratio["supervised_amp"] == pytest.approx(1.0, rel=1e-6)
