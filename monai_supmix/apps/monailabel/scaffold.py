"""Create a MONAI Label app folder for monai_supmix bundles (no MONAI Label import needed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

__all__ = ["create_app", "find_bundles", "APP_MAIN", "BUNDLE_FILES"]

#: ``main.py`` of a created app: MONAI Label loads it and looks for a direct
#: ``MONAILabelApp`` subclass among its names, which the import provides.
APP_MAIN = '''"""MONAI Label app for monai_supmix bundles (written by `python -m monai_supmix.apps.monailabel create-app`).

Start:  monailabel start_server --app <this folder> --studies <images folder> --conf models chase
"""

from monai_supmix.apps.monailabel.app import SupMixApp  # noqa: F401  (the app class MONAI Label looks for)
'''

#: What a bundle must hold to be served (inference and training).
BUNDLE_FILES = ("configs/metadata.json", "configs/inference.json", "configs/train.json")

#: Folders of a bundle that are outputs, not part of it (``models/`` is copied only on request).
_OUTPUTS = ("models", "eval", "runs", "mlruns", "predictions", "__pycache__")


def _check_bundle(path: str) -> None:
    missing = [f for f in BUNDLE_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"{path!r} is not a monai_supmix bundle: missing {', '.join(missing)}.")


def find_bundles(model_dir: str, names: str | Sequence[str] | None = None) -> dict[str, str]:
    """Bundles of an app folder: ``{name: path}`` for ``model_dir/<name>``.

    Args:
        model_dir: the app's ``model`` folder.
        names: comma-separated names (the ``--conf models`` value) or a list; ``None`` or
            empty: every bundle found in ``model_dir``.

    Raises:
        FileNotFoundError: when a named bundle is missing or incomplete, or none is found.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        found = sorted(
            n
            for n in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
            if all(os.path.isfile(os.path.join(model_dir, n, f)) for f in BUNDLE_FILES)
        )
        if not found:
            raise FileNotFoundError(
                f"no bundle in {model_dir!r}: create the app with "
                "`python -m monai_supmix.apps.monailabel create-app APP_DIR --bundle bundles/chase`."
            )
        names = found
    bundles = {}
    for name in names:
        path = os.path.join(model_dir, name)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"bundle {name!r} not found in {model_dir!r} (--conf models {','.join(names)}); "
                f"available: {sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []}."
            )
        _check_bundle(path)
        bundles[name] = os.path.abspath(path)
    return bundles


def create_app(
    app_dir: str, bundles: Sequence[str], link: bool = False, copy_weights: bool = True, overwrite: bool = False
) -> str:
    """Write a MONAI Label app folder: ``main.py`` and the bundles under ``model/<name>``.

    Args:
        app_dir: folder to create (or update).
        bundles: bundle folders, e.g. ``["bundles/chase", "bundles/covid19"]``; each is
            served under its folder name (``--conf models chase``).
        link: symlink the bundles instead of copying them (training then writes
            ``models/model.pt`` into the original bundle folder).
        copy_weights: when copying, also copy the bundle's ``models/*.pt`` (a bundle
            trained with ``python -m monai.bundle run`` is then ready for auto-segmentation).
        overwrite: replace bundles already in the app (otherwise they are left as they are).

    Returns:
        the absolute app folder.

    Raises:
        FileNotFoundError: when a path is not a bundle.
        ValueError: without bundles, or with two bundles of the same name.
    """
    if not bundles:
        raise ValueError("create_app needs at least one bundle folder, e.g. bundles=['bundles/chase'].")
    sources = [os.path.abspath(b) for b in bundles]
    names = [os.path.basename(os.path.normpath(s)) for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"bundle names must be unique, got {names}.")
    for source in sources:
        _check_bundle(source)
    app_dir = os.path.abspath(app_dir)
    model_dir = os.path.join(app_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(app_dir, "main.py"), "w") as f:
        f.write(APP_MAIN)
    for source, name in zip(sources, names):
        target = os.path.join(model_dir, name)
        if os.path.lexists(target):
            if not overwrite:
                continue
            if os.path.islink(target) or os.path.isfile(target):
                os.remove(target)
            else:
                shutil.rmtree(target)
        if link:
            os.symlink(source, target, target_is_directory=True)
            continue
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*_OUTPUTS))
        weights = os.path.join(source, "models")
        if copy_weights and os.path.isdir(weights):
            os.makedirs(os.path.join(target, "models"), exist_ok=True)
            for file in sorted(os.listdir(weights)):
                if file.endswith((".pt", ".ts")) and not file.startswith("checkpoint_"):
                    shutil.copy2(os.path.join(weights, file), os.path.join(target, "models", file))
    return app_dir
