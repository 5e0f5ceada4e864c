"""Datalists for semi-supervised training from a MONAI Label datastore (no MONAI Label import needed).

MONAI Label's stock bundle train task hands a bundle only the datastore's labeled
images. Semi-supervised training also needs the images nobody has annotated yet: they
are the unlabeled set. These helpers turn the datastore's two lists into the
``datalist_file`` JSON that the bundles' ``train.json`` reads (see
:func:`monai_supmix.bundle.task_datalists`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from monai_supmix.utils.files import write_json_atomic

__all__ = ["datastore_datalist", "write_datalist_file", "DATALIST_FILENAME"]

logger = logging.getLogger(__name__)

#: Name of the datalist JSON that the train task writes into ``<bundle>/models/``.
DATALIST_FILENAME = "monailabel_datalist.json"


def _image_label(item: Mapping, index: int) -> dict:
    if not isinstance(item, Mapping) or "image" not in item or "label" not in item:
        raise ValueError(f"labeled item {index} must be a mapping with 'image' and 'label', got {item!r}.")
    return {"image": str(item["image"]), "label": str(item["label"])}


def datastore_datalist(
    labeled: Sequence[Mapping],
    unlabeled: Sequence[str | Mapping],
    validation: Sequence[Mapping] | None = None,
    val_split: float | None = None,
) -> dict[str, list[dict]]:
    """Build ``{"labeled", "unlabeled"[, "validation"]}`` from a datastore's contents.

    Args:
        labeled: items with ``image`` and ``label`` (the datastore's final labels).
        unlabeled: image paths (or items with ``image``) that have no final label yet.
        validation: explicit validation items; when given, ``val_split`` is ignored.
        val_split: fraction of the labeled items held out for validation, taken from the
            end of the list (at least one item, and at least one item is kept for
            training). ``0`` validates on the labeled training items themselves (every
            label trains; the checkpoint is then picked by training fit). Negative or
            ``None`` writes no validation list, so the bundle applies its own rule
            (``num_val``).

    Returns:
        the datalist content, as the bundles' ``datalist_file`` expects it. Images that
        appear among the labeled items are dropped from the unlabeled list.

    Raises:
        ValueError: when there is no labeled item (submit a label first) or an item is
            malformed.
    """
    pairs = [_image_label(item, i) for i, item in enumerate(labeled)]
    if not pairs:
        raise ValueError(
            "the datastore has no labeled image (no final label): submit at least one label "
            "(PUT /datastore/label?image=<id>) before starting semi-supervised training."
        )
    labeled_images = {os.path.realpath(p["image"]) for p in pairs}
    images = []
    for i, item in enumerate(unlabeled):
        path = item.get("image") if isinstance(item, Mapping) else item
        if not isinstance(path, str) or not path:
            raise ValueError(f"unlabeled item {i} must be an image path or a mapping with 'image', got {item!r}.")
        if os.path.realpath(path) not in labeled_images:
            images.append({"image": path})

    content: dict[str, list[dict]] = {"labeled": pairs, "unlabeled": images}
    if validation is not None:
        content["validation"] = [_image_label(item, i) for i, item in enumerate(validation)]
    elif val_split is not None and val_split >= 0:
        if val_split == 0 or len(pairs) == 1:
            if val_split > 0:
                logger.warning(
                    "only one labeled image: it is used for training and for validation (checkpoint selection)."
                )
            content["validation"] = [dict(p) for p in pairs]
        else:
            hold_out = min(max(1, int(round(len(pairs) * float(val_split)))), len(pairs) - 1)
            content["labeled"] = pairs[: len(pairs) - hold_out]
            content["validation"] = pairs[len(pairs) - hold_out :]
    logger.info(
        f"datalist: {len(content['labeled'])} labeled, {len(content['unlabeled'])} unlabeled, "
        f"{len(content['validation']) if 'validation' in content else 'bundle default'} validation"
    )
    return content


def write_datalist_file(content: Mapping, path: str) -> str:
    """Write a datalist JSON atomically (temporary file, then rename) and return its absolute path."""
    write_json_atomic(dict(content), path)
    return os.path.abspath(path)
