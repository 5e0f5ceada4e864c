"""The MONAI Label app for monai_supmix bundles (needs ``monailabel``).

An app folder made by :func:`monai_supmix.apps.monailabel.create_app` has the layout of
MONAI Label's stock ``monaibundle`` sample app (``main.py`` plus bundles under
``model/<name>``) and is started the same way::

    monailabel start_server --app APP_DIR --studies IMAGES_DIR --conf models chase

It differs from ``monaibundle`` in its tasks only (see :mod:`.tasks` for why): the infer
task runs the bundle's own ``inference.json`` and the train task gives the bundle the
datastore's unlabeled images as the unlabeled set. ``monaibundle`` also registers SAM2
infer tasks that download weights at start-up; this app does not.

``--conf`` options: ``models`` (comma-separated bundle names under ``APP_DIR/model``;
default: all bundles found there), ``skip_trainers`` (``true`` for an inference-only
server).
"""

from __future__ import annotations

import logging
import os

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

import monai_supmix
from monai_supmix.apps.monailabel.scaffold import find_bundles
from monai_supmix.apps.monailabel.tasks import SupMixInferTask, SupMixTrainTask

__all__ = ["SupMixApp"]

logger = logging.getLogger(__name__)


class SupMixApp(MONAILabelApp):
    """MONAI Label app serving monai_supmix bundles found under ``<app_dir>/model``.

    Args:
        app_dir: the app folder (``main.py``, ``model/<bundle>``).
        studies: the datastore (a folder of images, labels under ``labels/final``).
        conf: ``--conf`` options (see the module docstring).

    Raises:
        FileNotFoundError: when a bundle named in ``models`` is not under ``model/``, or none is found.
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = os.path.join(app_dir, "model")
        self.models = find_bundles(self.model_dir, (conf or {}).get("models"))
        logger.info(f"+++ monai_supmix bundles: {self.models}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"monai_supmix - SupMix/SUFD bundles ({monai_supmix.__version__})",
            description="Semi-supervised segmentation bundles (Supervised ClassMix + Sup-Unsup Feature Discriminator)",
            version=monai_supmix.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, path in self.models.items():
            infers[name] = SupMixInferTask(path, self.conf)
            logger.info(f"+++ Adding Inferer:: {name} => {path}")
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        trainers: dict[str, TrainTask] = {}
        for name, path in self.models.items():
            trainers[name] = SupMixTrainTask(path, self.conf)
            logger.info(f"+++ Adding Trainer:: {name} => {path}")
        return trainers

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}
