"""Adapters between a MONAI Label datastore and the bundles' data pipelines (no MONAI Label import)."""

from __future__ import annotations

from typing import Any

__all__ = ["allow_missing_keys"]


def allow_missing_keys(transform: Any) -> Any:
    """Let every dictionary transform of a (nested) ``Compose`` skip keys absent from the data.

    A MONAI Label datastore gives ``image`` and ``label`` only, while a bundle's labeled
    chain may also name optional keys of its dataset (CHASE_DB1's ``fov`` mask). The
    semi-supervised trainer does not use those keys, so the chain may skip them.
    Returns the same transform, changed in place.
    """
    from monai.transforms import Compose, MapTransform

    if isinstance(transform, MapTransform):
        transform.allow_missing_keys = True
    if isinstance(transform, Compose):
        for t in transform.transforms:
            allow_missing_keys(t)
    return transform
