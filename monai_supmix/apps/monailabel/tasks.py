"""MONAI Label infer and train tasks for the monai_supmix bundles (needs ``monailabel``).

Why not the stock tasks of MONAI Label's ``monaibundle`` app:

- ``BundleInferTask`` builds its pipeline from the ``preprocessing`` / ``inferer`` /
  ``postprocessing`` keys of ``inference.json`` and writes labels with ITK, which
  transposes a 2-D array given in row-major ``(H, W)`` order and keeps the input's
  extension (a label saved as lossy ``.jpg``). Our ``inference.json`` is a
  folder-to-folder run (:func:`monai_supmix.bundle.segment_folder`) that already
  writes labels in the input's geometry (``<stem>_seg.png`` for 2-D images,
  ``.nii.gz`` with the affine for volumes), so :class:`SupMixInferTask` runs exactly
  that config on the one requested image.
- ``BundleTrainTask`` passes only the labeled images, under ``train#dataset#data``, a
  key our ``train.json`` does not have (it has separate labeled and unlabeled
  loaders): the override would be silently ignored and training would fall back to
  the built-in phantoms. :class:`SupMixTrainTask` keeps everything else of the stock
  task (request options, checkpoint loading, multi-GPU, tracking) and hands the bundle
  a ``datalist_file`` with the datastore's labeled images *and* its unlabeled ones.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import name_to_device

from monai_supmix.apps.monailabel.datalist import DATALIST_FILENAME, datastore_datalist, write_datalist_file

__all__ = ["SupMixInferTask", "SupMixTrainTask", "bundle_labels"]

logger = logging.getLogger(__name__)

#: Marks the checkpoint loaders this module adds to ``train#handlers`` (so repeated
#: requests replace them instead of stacking them).
_LOADER_DESC = "monai_supmix.apps.monailabel: start from the bundle's model.pt"
#: The bundles' labeled training chain (``train.json``).
_LABELED_TRANSFORMS = "train#labeled_transforms"
#: The bundles' validation post-processing (``train.json``).
_VALIDATION_POST = "validate#postprocessing"
#: What a datastore item holds (and the evaluator adds).
_DATASTORE_KEYS = ("image", "label", "pred")


def _needs_extra_key(transform_config: Any) -> bool:
    """A transform config that reads a mask key no datastore item has (e.g. ``MaskIntensityd`` on ``fov``)."""
    if not isinstance(transform_config, dict):
        return False
    mask_key = transform_config.get("mask_key")
    return isinstance(mask_key, str) and not mask_key.startswith(("@", "$")) and mask_key not in _DATASTORE_KEYS


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def bundle_labels(bundle_path: str) -> dict[str, int]:
    """Foreground class names -> indices, from ``metadata.json`` (``network_data_format.outputs``)."""
    metadata = _read_json(os.path.join(bundle_path, "configs", "metadata.json"))
    outputs = metadata.get("network_data_format", {}).get("outputs", {})
    channel_def = next(iter(outputs.values()), {}).get("channel_def", {}) if outputs else {}
    return {str(v).lower(): int(k) for k, v in channel_def.items() if str(v).lower() != "background"}


class SupMixInferTask(BasicInferTask):
    """Auto-segmentation with a monai_supmix bundle: runs its ``inference.json`` on one image.

    The returned label is what ``python -m monai.bundle run --config_file
    <bundle>/configs/inference.json`` writes for that image: class indices in the image's
    geometry, ``.png`` for 2-D images (PNG/JPG/BMP/TIFF), ``.nii.gz`` with the input's
    affine for NIfTI volumes and DICOM series.

    Args:
        bundle_path: the bundle folder (``configs/inference.json``, ``configs/metadata.json``).
        conf: the app's ``--conf`` options (``preload`` is ignored: the network is built per request).
        model_filename: checkpoint under ``<bundle>/models/``.
    """

    def __init__(self, bundle_path: str, conf: dict[str, str] | None = None, model_filename: str = "model.pt") -> None:
        self.bundle_path = os.path.abspath(bundle_path)
        self.config_path = os.path.join(self.bundle_path, "configs", "inference.json")
        self.meta_path = os.path.join(self.bundle_path, "configs", "metadata.json")
        for path in (self.config_path, self.meta_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"bundle {self.bundle_path!r} has no {os.path.relpath(path, self.bundle_path)}.")
        metadata = _read_json(self.meta_path)
        self.version = metadata.get("version")
        super().__init__(
            path=os.path.join(self.bundle_path, "models", model_filename),
            network=None,
            type=InferType.SEGMENTATION,
            labels=bundle_labels(self.bundle_path),
            dimension=2,
            description=metadata.get("description", metadata.get("name", os.path.basename(self.bundle_path))),
            preload=False,
        )

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["version"] = self.version
        return i

    def is_valid(self) -> bool:
        """Listed by ``/info/`` once the bundle has a checkpoint (train it, or copy a ``model.pt`` in)."""
        return os.path.isfile(self.path[0])

    def pre_transforms(self, data=None):  # the bundle's inference config does its own pre-processing
        return []

    def post_transforms(self, data=None):
        return []

    def _input_folder(self, image: str, folder: str) -> None:
        """Link (or copy) the image into an empty folder, keeping its name (and so the label's name)."""
        os.makedirs(folder)
        name = os.path.basename(os.path.normpath(image))
        target = os.path.join(folder, name)
        try:
            os.symlink(os.path.abspath(image), target, target_is_directory=os.path.isdir(image))
        except OSError:
            (shutil.copytree if os.path.isdir(image) else shutil.copy)(image, target)

    def __call__(self, request, callbacks=None):
        begin = time.time()
        req = copy.deepcopy(self._config)
        req.update(request)
        image = req.get("image")
        if not isinstance(image, str) or not os.path.exists(image):
            raise ValueError(f"infer request needs 'image' as an existing file or DICOM folder, got {image!r}.")
        ckpt = self.get_path(validate=False)
        if not os.path.isfile(ckpt):
            raise FileNotFoundError(
                f"no checkpoint {ckpt!r}: train the model first (POST /train/<model>) or copy a model.pt there."
            )
        device = name_to_device(req.get("device"))
        device = device if isinstance(device, str) else str(device)

        from monai.bundle import ConfigWorkflow

        work = tempfile.mkdtemp(prefix="monai_supmix_infer_")
        try:
            in_dir, out_dir = os.path.join(work, "in"), os.path.join(work, "out")
            self._input_folder(image, in_dir)
            workflow = ConfigWorkflow(
                config_file=self.config_path,
                meta_file=self.meta_path,
                logging_file=False,  # keep the server's logging as it is
                workflow_type=None,
                bundle_root=self.bundle_path,
                dataset_dir=in_dir,
                output_dir=out_dir,
                ckpt_path=ckpt,
                device=f"$torch.device('{device}')",
            )
            workflow.initialize()
            workflow.run()
            workflow.finalize()
            written = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
            if len(written) != 1:
                raise RuntimeError(f"bundle inference wrote {written} for {image!r}; expected one label file.")
            name = written[0]
            suffix = ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]
            fd, result = tempfile.mkstemp(prefix="monai_supmix_label_", suffix=suffix)
            os.close(fd)
            shutil.move(os.path.join(out_dir, name), result)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        total = round(time.time() - begin, 2)
        logger.info(f"{image} -> {result} ({total} s on {device})")
        return result, {"label_names": self.labels, "latencies": {"total": total}, "centroids": {}}


class SupMixTrainTask(BundleTrainTask):
    """Semi-supervised training of a monai_supmix bundle from a MONAI Label datastore.

    Labeled set: the datastore's images with a *final* label. Unlabeled set: all its
    other images (including those that only have a model prediction). Both go into a
    ``datalist_file`` (``<bundle>/models/monailabel_datalist.json``) given to the
    bundle's ``run``, so every new annotation and every unannotated image both feed the
    mean teacher / SupMix / SUFD training.

    Request options (``POST /train/<model>`` body, or the Slicer/OHIF train panel), on
    top of the stock ones (``max_epochs``, ``val_split``, ``device``, ``pretrained``,
    ``model_filename``, ``multi_gpu``, ``gpus``, ``run_id``):
    any top-level key of the bundle's ``train.json`` (``iterations_per_epoch``,
    ``batch_size``, ``num_workers``, ``mix``, ``supmix_classes``, ``sufd``, ``learning_rate``,
    ``num_val``, ...) is passed to the bundle as an override. ``val_split``: fraction of
    the labeled images held out for validation (default 0.2, at least one; ``0`` validates
    on the training labels; ``-1`` lets the bundle hold out ``num_val``).
    ``pretrained`` (default true) starts both the student and the EMA teacher from the
    bundle's current ``model.pt``.
    """

    #: Request keys that the stock task consumes itself (never passed on as overrides).
    STOCK_KEYS = frozenset(
        {
            "model", "device", "pretrained", "max_epochs", "val_split", "multi_gpu", "force_multi_gpu", "gpus",
            "run_id", "tracking", "tracking_uri", "tracking_experiment_name", "tracking_run_name",
            "model_filename", "bundle_path", "dataset", "train_batch_size", "val_batch_size",
        }
    )  # fmt: skip
    #: Bundle keys the task sets itself.
    MANAGED_KEYS = frozenset({"bundle_root", "output_dir", "ckpt_dir", "datalist_file", "dataset_dir", "device"})

    def __init__(self, bundle_path: str, conf: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(os.path.abspath(bundle_path), conf or {}, **kwargs)
        if not self.valid:
            raise FileNotFoundError(f"bundle {bundle_path!r} has no configs/train.json.")
        raw = _read_json(self.bundle_config_path)
        self.bundle_keys = frozenset(raw)
        self.defaults = {
            k: raw[k]
            for k in ("max_epochs", "iterations_per_epoch", "batch_size", "num_workers", "mix", "supmix_classes", "sufd")
            if k in raw
        }
        self._request: dict = {}
        self._unlabeled: list[str] = []

    def config(self) -> dict[str, Any]:
        options = super().config()
        options["max_epochs"] = self.defaults.get("max_epochs", options.get("max_epochs"))
        options["multi_gpu"] = False
        options.update({k: v for k, v in self.defaults.items() if k != "max_epochs"})
        return options

    def _fetch_datalist(self, request, datastore: Datastore):
        labeled = super()._fetch_datalist(request, datastore)
        ids = datastore.get_unlabeled_images()
        self._unlabeled = [p for p in (datastore.get_image_uri(i) for i in ids) if p]
        logger.info(f"datastore: {len(labeled)} labeled, {len(self._unlabeled)} unlabeled images")
        return labeled

    def _partition_datalist(self, datalist, request, shuffle=False):
        # validation is split in _update_overrides (datastore_datalist), which never leaves it empty
        return datalist, None

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        train_handlers[:] = [h for h in train_handlers if not (isinstance(h, dict) and h.get("_desc_") == _LOADER_DESC)]
        if not pretrained or not model_pytorch or not os.path.isfile(model_pytorch):
            return
        logger.info(f"student and teacher start from {model_pytorch}")
        for key in (self.const.key_network(), "teacher"):
            if key not in self.bundle_keys:
                continue
            train_handlers.insert(
                0,
                {
                    "_target_": "CheckpointLoader",
                    "_desc_": _LOADER_DESC,
                    "load_path": model_pytorch,
                    "load_dict": {self.model_dict_key: f"@{key}"},
                    "strict": self.load_strict,
                    "map_location": "cpu",
                },
            )

    def __call__(self, request, datastore: Datastore):
        request = dict(request)
        # the stock task defaults to 50 epochs; the bundle's own default is the better guess
        request.setdefault("max_epochs", self.defaults.get("max_epochs", 50))
        if not request.get("run_id"):  # the train panel sends run_id "" by default
            request["run_id"] = "run"
        self._request = request
        return super().__call__(request, datastore)

    def _update_overrides(self, overrides):
        request = self._request
        labeled = overrides.pop(self.const.key_train_dataset_data(), [])
        overrides.pop(self.const.key_validate_dataset_data(), None)
        val_split = request.get("val_split", 0.2)
        content = datastore_datalist(labeled, self._unlabeled, val_split=None if val_split is None else float(val_split))
        path = write_datalist_file(content, os.path.join(self.bundle_path, "models", DATALIST_FILENAME))
        overrides["datalist_file"] = path
        overrides["output_dir"] = self.bundle_path
        max_epochs = overrides.get(self.const.key_train_trainer_max_epochs())
        if max_epochs is not None:
            overrides["max_epochs"] = max_epochs
        # no progress bar in the server's task log unless asked for
        overrides["progress_bar"] = False
        # datastore items hold image and label only: optional keys of the labeled chain (CHASE `fov`) may be absent
        chain = self.bundle_config.get(_LABELED_TRANSFORMS)
        if isinstance(chain, str) and chain.startswith("$"):
            imports = list(self.bundle_config.get("imports") or [])
            overrides["imports"] = imports + ["$import monai_supmix.apps.monailabel.compat"]
            overrides[_LABELED_TRANSFORMS] = f"$monai_supmix.apps.monailabel.compat.allow_missing_keys({chain[1:]})"
        # ... and validation cannot mask with such a key (CHASE's field-of-view masking is skipped)
        post = self.bundle_config.get(_VALIDATION_POST)
        if isinstance(post, dict) and isinstance(post.get("transforms"), list):
            kept = [t for t in post["transforms"] if not _needs_extra_key(t)]
            if len(kept) != len(post["transforms"]):
                logger.info("validation: masking steps that need keys a datastore does not provide are skipped")
                overrides[f"{_VALIDATION_POST}#transforms"] = kept
        for key, value in request.items():
            if key in self.bundle_keys and key not in self.STOCK_KEYS and key not in self.MANAGED_KEYS:
                overrides[key] = value
        logger.info(f"bundle overrides: { {k: v for k, v in overrides.items() if k != self.const.key_train_handlers()} }")
        return overrides
