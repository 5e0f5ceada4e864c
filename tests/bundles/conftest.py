"""Shared fixtures for bundle tests: a private phantom cache and tiny training overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"

#: overrides that make a bundle run take seconds
TINY = {"max_epochs": 1, "iterations_per_epoch": 2, "num_workers": 0, "batch_size": 2, "progress_bar": False}


@pytest.fixture(scope="session")
def phantom_cache(tmp_path_factory) -> str:
    cache = str(tmp_path_factory.mktemp("supmix_cache"))
    old = os.environ.get("MONAI_SUPMIX_CACHE")
    os.environ["MONAI_SUPMIX_CACHE"] = cache
    yield cache
    if old is None:
        os.environ.pop("MONAI_SUPMIX_CACHE", None)
    else:
        os.environ["MONAI_SUPMIX_CACHE"] = old


def config(bundle: str, *names: str) -> list[str]:
    return [str(BUNDLES / bundle / "configs" / f"{name}.json") for name in names]


def run_bundle(bundle: str, names: tuple[str, ...], run_id: str = "run", **overrides):
    from monai.bundle import run

    files = config(bundle, *names)
    return run(run_id=run_id, config_file=files if len(files) > 1 else files[0], **overrides)
