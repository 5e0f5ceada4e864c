"""Datalists of the bundles: real data from a folder, or the built-in phantoms."""

from __future__ import annotations

import logging
import os

from monai_supmix.bundle.paths import default_cache_dir

__all__ = ["task_datalists", "task_items", "TASKS", "PHANTOM_DEFAULTS", "SPLIT_DEFAULTS"]

logger = logging.getLogger(__name__)

TASKS = ("chase", "covid19")

#: The bundles' default split (``num_labeled``/``num_val`` of ``bundles/<task>/configs/train.json``;
#: a test keeps them equal), for tools that read data as a bundle would (``monai-supmix check-data``).
SPLIT_DEFAULTS = {"chase": {"num_labeled": 4, "num_val": 4}, "covid19": {"num_labeled": 10, "num_val": 10}}

#: Phantom sets written when no ``dataset_dir`` is given (sizes chosen so that a
#: bundle's default training finishes in minutes on a 2-core CPU).
PHANTOM_DEFAULTS = {
    "chase": {"num_images": 24, "size": (256, 256)},
    "covid19": {"num_labeled": 50, "num_unlabeled": 150, "size": (192, 192)},
}


def _ordered_split(items: list[dict], num_labeled: int, num_val: int, key: str) -> dict[str, list[dict]]:
    """Split in the data's own order: first ``num_labeled`` labeled, last ``num_val`` validation."""
    from monai_supmix.data import split_datalist

    if num_labeled < 1:
        raise ValueError(f"num_labeled must be >= 1, got {num_labeled}.")
    if num_val < 0:
        raise ValueError(f"num_val must be >= 0, got {num_val}.")
    if num_labeled + num_val > len(items):
        raise ValueError(
            f"num_labeled ({num_labeled}) + num_val ({num_val}) is larger than the {len(items)} labeled {key} "
            "images found; lower `num_labeled` or `num_val`."
        )
    ids = [item["id"] for item in items]
    return split_datalist(
        items,
        labeled_ids=ids[:num_labeled],
        val_ids=ids[len(ids) - num_val :] if num_val else [],
        shuffle=False,
    )


def task_datalists(
    task: str,
    dataset_dir: str | None = None,
    num_labeled: int = 4,
    num_val: int = 4,
    max_unlabeled: int | None = None,
    use_extra_unlabeled: bool = True,
    phantom_dir: str | None = None,
    seed: int = 0,
    datalist_file: str | dict | None = None,
    num_classes: int | None = None,
    unlabeled_intensity_ratio: float = 0.0,
) -> dict[str, list[dict]]:
    """Return ``{"labeled", "unlabeled", "validation"}`` datalists for a bundle.

    The split follows the data's sorted order so that it is the same on every
    machine and matches the benchmark protocol: the first ``num_labeled`` labeled
    images are labeled, the last ``num_val`` are the validation split, the rest of the
    labeled pool is used without its labels. For CHASE_DB1 (24 images, sorted
    ``Image_01L`` … ``Image_12R``) the defaults give patients 01-02 labeled, 03-10
    unlabeled and 11-12 validation. For COVID-19 the separate unlabeled slices are
    added to the unlabeled set (``use_extra_unlabeled``), at most ``max_unlabeled`` of them.

    Args:
        task: ``"chase"`` or ``"covid19"``.
        dataset_dir: folder with real data in the task's layout; ``None`` uses the
            built-in synthetic phantoms (written once to ``phantom_dir``).
        num_labeled: number of labeled training images.
        num_val: number of validation images.
        max_unlabeled: cap on the extra unlabeled images (``None``: all).
        use_extra_unlabeled: add the dataset's unlabeled-only images (COVID-19).
        phantom_dir: where phantoms are written (default ``<cache>/phantoms/<task>``).
        seed: seed of the phantoms.
        datalist_file: explicit datalists instead of a folder: a JSON file (or dict) with
            ``"labeled"`` (items with ``image`` and ``label``), ``"unlabeled"`` (items with
            ``image``) and optional ``"validation"`` lists, e.g. written by the MONAI Label
            app from its datastore. When it has no validation list, the last ``num_val``
            labeled items are held out (fewer if there are few labeled items).
        num_classes: the bundle's classes; for COVID-19 MedSeg NIfTI masks, 4 or more keeps
            pleural effusion (label 3) as a class of its own, fewer merges it into background.
        unlabeled_intensity_ratio: > 0 leaves out the unlabeled images whose 95th intensity
            percentile is below this fraction of the labeled images' median
            (:func:`monai_supmix.data.match_intensity_range`: images exported with another CT
            window or scaling); 0 keeps every unlabeled image.

    Raises:
        ValueError: for an unknown task or impossible counts (naming the key).
        FileNotFoundError: when ``dataset_dir`` does not exist or holds no data.
    """
    from monai_supmix import data

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if not (isinstance(unlabeled_intensity_ratio, (int, float)) and 0 <= unlabeled_intensity_ratio <= 1):
        raise ValueError(f"config key `unlabeled_intensity_ratio`: expected a number in [0, 1] (0: keep every "
                         f"unlabeled image), got {unlabeled_intensity_ratio!r}.")
    if datalist_file is not None:
        return _ensure_unlabeled(_keep_matching_intensity(_from_datalist_file(datalist_file, num_val),
                                                          unlabeled_intensity_ratio))
    if dataset_dir is not None:
        dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
        if not os.path.isdir(dataset_dir):
            raise FileNotFoundError(f"dataset_dir {dataset_dir!r} does not exist or is not a folder.")
    else:
        phantom_dir = phantom_dir or os.path.join(default_cache_dir(), "phantoms", f"{task}_seed{seed}")
        defaults = PHANTOM_DEFAULTS[task]
        if task == "chase":
            dataset_dir = data.write_chase_phantoms(
                phantom_dir, num_images=defaults["num_images"], size=defaults["size"], seed=seed
            )
        else:
            dataset_dir = data.write_covid_phantoms(
                phantom_dir,
                num_labeled=defaults["num_labeled"],
                num_unlabeled=defaults["num_unlabeled"],
                size=defaults["size"],
                seed=seed,
            )
        logger.info(f"no dataset_dir given: using synthetic {task} phantoms in {dataset_dir}")

    labeled, extra = task_items(task, dataset_dir, num_classes)
    split = _ordered_split(labeled, num_labeled, num_val, "CHASE" if task == "chase" else "COVID-19")
    if use_extra_unlabeled:
        if max_unlabeled is not None:
            extra = extra[: int(max_unlabeled)]
        split["unlabeled"] = list(split["unlabeled"]) + extra
    return _ensure_unlabeled(_keep_matching_intensity(split, unlabeled_intensity_ratio))


def task_items(task: str, dataset_dir: str, num_classes: int | None = None) -> tuple[list[dict], list[dict]]:
    """``(labeled items, unlabeled-only items)`` of a real dataset folder in a task's layout, in sorted order.

    Raises:
        ValueError: for an unknown task.
        FileNotFoundError: when the folder holds no data in the task's layout.
    """
    from monai_supmix import data

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if task == "chase":
        return data.chase_datalist(dataset_dir), []
    keep_effusion = num_classes is not None and int(num_classes) >= 4
    found = data.covid_datalist(dataset_dir, merge_classes={} if keep_effusion else None)
    return list(found["labeled"]), list(found.get("unlabeled", []))


def _keep_matching_intensity(split: dict[str, list[dict]], ratio: float) -> dict[str, list[dict]]:
    """Leave out the unlabeled images whose intensity range falls short of the labeled ones' (``ratio`` > 0)."""
    if not ratio or not split["unlabeled"]:
        return split
    from monai_supmix.data import match_intensity_range

    matching, dropped = match_intensity_range(split["unlabeled"], split["labeled"], ratio=float(ratio))
    if dropped:
        logger.info(
            f"unlabeled_intensity_ratio {ratio}: {len(dropped)} of {len(split['unlabeled'])} unlabeled images have a "
            f"95th intensity percentile below {ratio} x the labeled images' median (another window or scaling) and "
            f"are left out, e.g. {dropped[0]['image']}"
        )
    return {**split, "unlabeled": matching}


def _ensure_unlabeled(split: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """With every training image labeled, reuse the labeled images (labels stripped) as the unlabeled set."""
    if not split["unlabeled"]:
        logger.warning(
            "no unlabeled images left (all training images are labeled): the labeled images, without their "
            "labels, are used as the unlabeled set."
        )
        split["unlabeled"] = [{k: v for k, v in i.items() if k not in ("label", "label_2nd")} for i in split["labeled"]]
    return split


def _from_datalist_file(datalist_file: str | dict, num_val: int) -> dict[str, list[dict]]:
    """Read explicit labeled/unlabeled/validation lists (see :func:`task_datalists`)."""
    import json

    if isinstance(datalist_file, dict):
        content = datalist_file
    else:
        if not os.path.isfile(datalist_file):
            raise FileNotFoundError(f"config key `datalist_file`: {datalist_file!r} does not exist.")
        with open(datalist_file) as f:
            content = json.load(f)
    if not isinstance(content, dict) or not content.get("labeled"):
        raise ValueError(
            f"config key `datalist_file`: expected a JSON object with a non-empty 'labeled' list, got {type(content).__name__}"
            + (f" with keys {sorted(content)}" if isinstance(content, dict) else "")
        )
    labeled = list(content["labeled"])
    for item in labeled:
        if "image" not in item or "label" not in item:
            raise ValueError(f"config key `datalist_file`: labeled item {item!r} needs 'image' and 'label'.")
    unlabeled = [{k: v for k, v in item.items() if k not in ("label", "label_2nd")} for item in content.get("unlabeled", [])]
    validation = list(content.get("validation") or [])
    if not validation:
        hold_out = min(num_val, max(len(labeled) - 1, 0))
        validation = labeled[len(labeled) - hold_out :] if hold_out else list(labeled)
        labeled = labeled[: len(labeled) - hold_out] if hold_out else labeled
    return {"labeled": labeled, "unlabeled": unlabeled, "validation": validation}
