"""Semi-supervised trainer: mean teacher + ClassMix / SupMix + Sup-Unsup Feature Discriminator."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.handlers import MLFlowHandler
from monai.engines.utils import IterationEvents
from monai.engines.workflow import Workflow
from monai.utils import CommonKeys as Keys
from monai.utils import ensure_tuple
from torch import nn
from torch.utils.data import DataLoader

from monai_supmix.engines.distribution_alignment import DistributionAlignment
from monai_supmix.engines.feature_perturbation import FeaturePerturbation
from monai_supmix.engines.mean_teacher import MeanTeacher
from monai_supmix.engines.mixing import MIX_MODES, MixBatch, build_mixing
from monai_supmix.engines.pseudo_label import PseudoLabelLoss
from monai_supmix.engines.self_training_gate import SelfTrainingGate
from monai_supmix.engines.sufd import DISCRIMINATOR_INPUTS, SUFD
from monai_supmix.utils.distributed import all_reduce_sum, any_rank, rank, unwrap_module

__all__ = ["SemiSupervisedTrainer", "MIX_MODES", "DISCRIMINATOR_INPUTS"]


def _unwrap_single(transform: Callable) -> Callable:
    """Wrap ``transform`` so that a 1-tuple result becomes its only element."""

    def unwrapped(output):
        value = transform(output)
        return value[0] if isinstance(value, tuple) and len(value) == 1 else value

    return unwrapped


class SemiSupervisedTrainer(SupervisedTrainer):
    """Semi-supervised segmentation trainer with SupMix and SUFD (Mano, Saito, Hotta, VISAPP 2025).

    One iteration (all of MONAI's ``IterationEvents`` are fired, so every MONAI/Ignite
    handler works as with :class:`monai.engines.SupervisedTrainer`):

    1. a labeled batch from ``train_data_loader`` (supervised loss, ``loss_function``);
    2. an unlabeled batch from ``unlabeled_data_loader``, cycled independently; the EMA
       teacher predicts pseudo-labels and their confidence on it (the weak view);
    3. mixing (``mixing``): e.g. ClassMix between unlabeled images, SupMix (ground-truth
       classes of labeled images pasted onto unlabeled images and their pseudo-labels,
       with confidence 1), or both (:mod:`monai_supmix.engines.mixing`);
    4. the strong view: ``student_transform`` perturbs the mixed images photometrically;
    5. one student pass over the labeled and the (strong) mixed images, plus the plain
       unlabeled images when SUFD compares those; supervised loss + ramped
       confidence-weighted unsupervised loss + ramped adversarial term of SUFD;
    6. the student's update, then SUFD's discriminator update (:class:`~monai_supmix.engines.SUFD`);
    7. the teacher is updated as an exponential moving average of the student (Ignite's
       :class:`~ignite.handlers.EMAHandler`, attached before any other handler so that
       checkpoints always see a consistent student/teacher pair).

    With a pseudo-label loss of weight 0 and no SUFD, steps 2-6 reduce to a supervised step (the
    unlabeled loader is not read), so a supervised baseline costs what a supervised run costs.

    Args:
        device: device to train on.
        max_epochs: number of epochs; an epoch follows the labeled loader unless
            ``epoch_length`` is given.
        train_data_loader: loader of labeled batches (dicts with ``image`` and ``label``).
        network: the student segmentation network (may be DDP-wrapped).
        optimizer: optimizer of the student.
        loss_function: supervised loss on labeled batches (e.g. ``DiceCELoss(to_onehot_y=True, softmax=True)``).
        unlabeled_data_loader: loader of unlabeled batches (dicts with ``unlabeled_image_key``);
            must not be empty.
        num_classes: number of segmentation classes (output channels).
        mean_teacher: the :class:`~monai_supmix.engines.MeanTeacher` component (EMA decay,
            warm-up, the module that holds the teacher); default ``MeanTeacher()`` (decay 0.99).
        mixing: a mixing strategy (:class:`~monai_supmix.engines.ClassMixing`,
            :class:`~monai_supmix.engines.SupervisedMixing`, :class:`~monai_supmix.engines.SequentialMixing`
            or any ``f(MixBatch, torch.Generator) -> MixBatch``), one of the names
            ``"none"``, ``"classmix"``, ``"supmix"``, ``"both"`` (default settings,
            :func:`~monai_supmix.engines.build_mixing`), or ``None`` (plain pseudo-labels).
        student_transform: strong perturbation of the student's mixed unlabeled images, a
            callable on a ``B×C×spatial`` batch (e.g. :class:`~monai_supmix.transforms.BatchPerturbation`
            of :func:`~monai_supmix.transforms.strong_perturbation`); re-seeded every iteration
            from ``seed`` when it has ``set_random_state``. ``None``: the student sees the
            teacher's (weak) view.
        pseudo_label_loss: the :class:`~monai_supmix.engines.PseudoLabelLoss` component (the
            loss on the mixed pseudo-labels, its weight and ramp-up, which also ramps SUFD's
            term); default ``PseudoLabelLoss()`` (confidence 0.9, weight 1, no ramp-up).
        sufd: the :class:`~monai_supmix.engines.SUFD` component (discriminator, its optimizer,
            feature layer, weight, schedule); ``None`` disables SUFD.
        feature_perturbation: the :class:`~monai_supmix.engines.FeaturePerturbation` component
            (channel dropout on a hidden layer, for the mixed images' rows of the student's pass);
            ``None``: none.
        distribution_alignment: the :class:`~monai_supmix.engines.DistributionAlignment` component
            (the teacher's class probabilities rescaled towards the labeled class frequencies before
            the pseudo-labels are taken); ``None``: none.
        self_training_gate: the :class:`~monai_supmix.engines.SelfTrainingGate` component: the
            unsupervised and adversarial weights stay 0 until the student's running Dice on its
            labeled batches reaches the gate's ``min_dice`` for every labeled class, and their ramp-up
            starts from that iteration (``engine.state.self_training_start``); ``None``: from the first
            iteration.
        class_frequencies: pixel counts per class in the labeled set for the rarity class
            policies; when ``None`` they are accumulated from the labeled batches seen.
        unlabeled_image_key: key of the image in unlabeled batches.
        region_key: key of an anatomy mask in unlabeled batches (field of view, lungs)
            that SupMix pastes inside; ignored when absent from the batch.
        seed: seed of the mixing and perturbation randomness; the generators are re-seeded
            from ``seed`` and the iteration, so a resumed run draws the same.
        on_nonfinite: ``"raise"`` stops training with ``FloatingPointError`` before the
            weights are touched; ``"skip"`` warns and skips the update.
        train_handlers: as in :class:`monai.engines.SupervisedTrainer`; attached after the
            mean teacher's update, so they see the teacher of this iteration.
        amp: mixed precision with ``torch.autocast``: float16 with gradient scaling on CUDA
            (``amp_kwargs`` as in MONAI), bfloat16 without scaling on CPU; on other devices a
            warning says it is off.
        kwargs: every other argument of :class:`monai.engines.SupervisedTrainer`
            (``epoch_length``, ``non_blocking``, ``prepare_batch``, ``inferer``,
            ``decollate``, ``compile``, ...), passed on unchanged, with MONAI's defaults.
    Raises:
        ValueError: for an unknown ``mix`` name, an empty unlabeled loader or invalid weights.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable,
        unlabeled_data_loader: Iterable | DataLoader,
        num_classes: int,
        mean_teacher: MeanTeacher | None = None,
        pseudo_label_loss: PseudoLabelLoss | None = None,
        mixing: Callable | str | None = "both",
        student_transform: Callable | None = None,
        sufd: SUFD | None = None,
        feature_perturbation: FeaturePerturbation | None = None,
        distribution_alignment: DistributionAlignment | None = None,
        self_training_gate: SelfTrainingGate | None = None,
        class_frequencies: Sequence[float] | None = None,
        unlabeled_image_key: str = Keys.IMAGE,
        region_key: str | None = None,
        seed: int = 0,
        on_nonfinite: str = "raise",
        train_handlers: Sequence | None = None,
        amp: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(mixing, str):
            mixing = build_mixing(mixing)
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}.")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}.")
        for name, value, kind in (("sufd", sufd, SUFD), ("mean_teacher", mean_teacher, MeanTeacher),
                                  ("pseudo_label_loss", pseudo_label_loss, PseudoLabelLoss),
                                  ("feature_perturbation", feature_perturbation, FeaturePerturbation),
                                  ("distribution_alignment", distribution_alignment, DistributionAlignment),
                                  ("self_training_gate", self_training_gate, SelfTrainingGate)):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{name} must be a monai_supmix.engines.{kind.__name__} or None, got {type(value).__name__}.")
        try:
            n_unlabeled = len(unlabeled_data_loader)  # type: ignore[arg-type]
        except TypeError:
            n_unlabeled = None
        if n_unlabeled == 0:
            raise ValueError(
                "unlabeled_data_loader is empty: semi-supervised training needs unlabeled images "
                "(check the unlabeled datalist / `num_labeled`), or train with SupervisedTrainer."
            )
        # handlers are registered below, after the mean teacher's update
        super().__init__(device=device, max_epochs=max_epochs, train_data_loader=train_data_loader, network=network,
                         optimizer=optimizer, loss_function=loss_function, train_handlers=None, amp=amp, **kwargs)
        self.unlabeled_data_loader = unlabeled_data_loader
        self.num_classes = int(num_classes)
        self.mixing = mixing
        self.student_transform = student_transform
        self.pseudo_label_loss = pseudo_label_loss or PseudoLabelLoss()
        self.class_frequencies = None if class_frequencies is None else torch.as_tensor(class_frequencies).float()
        self.unlabeled_image_key = unlabeled_image_key
        self.region_key = region_key
        self.seed = int(seed)
        self.on_nonfinite = on_nonfinite
        self.amp_device = torch.device(device).type
        self.use_amp = bool(amp) and self.amp_device in ("cuda", "cpu")
        if amp and not self.use_amp:
            warnings.warn(
                f"amp=True has no effect on device {device!r}: mixed precision is used on CUDA and CPU only.",
                stacklevel=2,
            )
            self.amp = False
        if self.use_amp and self.amp_device == "cpu":  # CPU autocast runs in bfloat16 (float16 is not supported there)
            self.amp_kwargs = {"dtype": torch.bfloat16, **(self.amp_kwargs or {})}
        # float16 needs loss scaling, bfloat16 does not (its range is float32's); the scalers live
        # as long as the trainer so that checkpoints can hold them
        scaled = self.use_amp and (self.amp_kwargs or {}).get("dtype", torch.float16) == torch.float16
        self.student_scaler = torch.amp.GradScaler(self.amp_device) if scaled else None
        self.sufd = sufd
        # the teacher first (its update runs before every other handler of ITERATION_COMPLETED)
        self.mean_teacher = mean_teacher or MeanTeacher()
        self.teacher = self.mean_teacher.attach(self, network)
        self.ema_handler = self.mean_teacher.handler
        if sufd is not None:  # after the teacher's copy, so the teacher carries no feature hook
            sufd.attach(network, self.amp_device if self.student_scaler is not None else None)
        self.feature_perturbation = feature_perturbation
        if feature_perturbation is not None:  # likewise
            feature_perturbation.attach(network)
        self.distribution_alignment = distribution_alignment
        self.state.class_counts = None
        self.state_dict_user_keys.append("class_counts")
        self.state.teacher_class_mean = None  # the running mean of distribution alignment
        if distribution_alignment is not None:  # checkpoints made without it still load
            self.state_dict_user_keys.append("teacher_class_mean")
        self.self_training_gate = self_training_gate
        # the gate's running Dice and the iteration (0-based) it opened at: None while it is closed
        self.state.self_training_dice = None
        self.state.self_training_start = None
        if self_training_gate is not None:  # likewise
            self.state_dict_user_keys.extend(["self_training_dice", "self_training_start"])
        self._unlabeled_iterator: Iterator | None = None
        self._unlabeled_consumed = 0
        self._network_args: tuple[tuple, dict] = ((), {})
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    @property
    def discriminator(self) -> nn.Module | None:
        """SUFD's discriminator (``None`` without SUFD)."""
        return None if self.sufd is None else self.sufd.discriminator

    @property
    def uses_unlabeled(self) -> bool:
        """Whether the unlabeled branch runs (an unsupervised loss or SUFD)."""
        return self.pseudo_label_loss.weight > 0 or self.sufd is not None

    # ------------------------------------------------------------------ helpers
    def _register_handlers(self, handlers: Sequence) -> None:
        """Attach handlers, adapting MONAI's experiment-tracking handlers to this trainer's output.

        ``engine.state.output`` here is one dict of loss terms (no decollated list), so the
        ``from_engine(["loss"], first=True)`` transform that ``--tracking mlflow`` installs
        returns a 1-tuple, which MLflow cannot log. Such a 1-tuple is unwrapped; a
        user-provided transform that returns a value or a dict is left as it is.
        """
        for handler in ensure_tuple(handlers):
            transform = getattr(handler, "output_transform", None)
            if isinstance(handler, MLFlowHandler) and callable(transform):
                handler.output_transform = _unwrap_single(transform)
        super()._register_handlers(handlers)

    def run(self) -> None:  # type: ignore[override]
        """Run training; AMP scalers persist across runs so that they can be checkpointed.

        ``Workflow.run`` rather than MONAI's ``Trainer.run``, whose only addition is
        ``self.scaler = torch.cuda.amp.GradScaler() if self.amp else None``: a fresh scaler on
        every run would drop the scale a resumed checkpoint restored, and it would be a CUDA
        scaler for bfloat16 CPU autocast, which needs none.

        The unlabeled loader's iterator (and its worker processes) is released on every way
        out: normal end, exception, ``KeyboardInterrupt``.
        """
        self.scaler = self.student_scaler
        try:
            Workflow.run(self)
        finally:
            self._close_unlabeled_stream()

    def checkpoint_objects(self) -> dict[str, Any]:
        """Everything a resume needs, for ``CheckpointSaver``/``CheckpointLoader`` ``save_dict``/``load_dict``."""
        objects: dict[str, Any] = {
            "network": unwrap_module(self.network),
            "teacher": self.teacher,
            "optimizer": self.optimizer,
            "trainer": self,
        }
        if self.sufd is not None:
            objects.update(self.sufd.checkpoint_objects())
        if self.student_scaler is not None:
            objects["scaler"] = self.student_scaler
        return objects

    def _close_unlabeled_stream(self) -> None:
        if self._unlabeled_iterator is not None:
            self._unlabeled_iterator.close()
            self._unlabeled_iterator = None

    def _unlabeled_stream(self, start: int) -> Iterator:
        """Endless iterator over the unlabeled loader that starts after ``start`` consumed batches.

        Each pass over the loader calls ``sampler.set_epoch(pass)`` when the sampler has
        it (``DistributedSampler``), so every rank sees its own shard in a fresh order.
        """
        loader = self.unlabeled_data_loader
        try:
            per_pass = len(loader)  # type: ignore[arg-type]
        except TypeError:
            per_pass = None
        epoch, skip = (start // per_pass, start % per_pass) if per_pass else (0, start)
        while True:
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            produced = 0
            for batch in loader:
                produced += 1
                if skip:
                    skip -= 1
                    continue
                yield batch
            if produced == 0:
                raise ValueError("unlabeled_data_loader produced no batch: the unlabeled set is empty.")
            epoch += 1

    def _next_unlabeled(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next unlabeled images and, when the batch has ``region_key``, their anatomy mask."""
        # one unlabeled batch per iteration: after a resume (the iteration jumped), restart the
        # stream at the matching position so that the run continues as if never interrupted
        position = self.state.iteration - 1
        if self._unlabeled_iterator is None or self._unlabeled_consumed != position:
            self._unlabeled_consumed = position
            self._unlabeled_iterator = self._unlabeled_stream(position)
        batch = next(self._unlabeled_iterator)
        self._unlabeled_consumed += 1
        region = None
        if isinstance(batch, dict):
            if self.unlabeled_image_key not in batch:
                raise KeyError(
                    f"unlabeled batch has no key {self.unlabeled_image_key!r} (keys: {sorted(batch)}); "
                    "set `unlabeled_image_key`."
                )
            region = batch.get(self.region_key) if self.region_key else None
            batch = batch[self.unlabeled_image_key]
        elif isinstance(batch, (list, tuple)):
            batch = batch[0]
        images = torch.as_tensor(batch).to(self.state.device, non_blocking=self.non_blocking)
        if region is not None:
            region = torch.as_tensor(region).to(self.state.device, non_blocking=self.non_blocking)
        return images, region

    def _stream_seed(self, stream: int, iteration: int) -> int:
        """Seed of one random stream at one iteration, distinct per rank, seed, stream and iteration.

        Every rank must draw its own mixing sources, masks, flips and strong view: with the same
        numbers on every rank, DDP would train on ``world_size`` copies of one draw.
        """
        import numpy as np

        state = np.random.SeedSequence([self.seed, rank(), stream, iteration]).generate_state(1)
        return int(state[0]) % 2**31

    def _generator(self, iteration: int, stream: int = 0) -> torch.Generator:
        """A CPU generator of ``stream`` at ``iteration`` (reproducible, rank-aware): 0 the mixing strategies,
        2 the feature perturbation (1 seeds the strong view's transform)."""
        gen = torch.Generator()
        gen.manual_seed(self._stream_seed(stream, iteration))
        return gen

    def _update_class_counts(self, targets: torch.Tensor) -> torch.Tensor:
        """Accumulate the labeled class counts of this batch, summed over all ranks (same on every rank)."""
        index = targets.argmax(1) if targets.shape[1] > 1 else targets[:, 0]
        counts = torch.bincount(index.reshape(-1).long(), minlength=self.num_classes)[: self.num_classes]
        counts = all_reduce_sum(counts).cpu()
        prev = self.state.class_counts
        total = counts.double() + (torch.as_tensor(prev, dtype=torch.float64) if prev is not None else 0.0)
        self.state.class_counts = total.tolist()
        return total.float()

    def _infer(self, inputs: torch.Tensor, network: nn.Module) -> torch.Tensor:
        """The inferer on ``network`` with the extra arguments ``prepare_batch`` gave for this iteration."""
        args, kwargs = self._network_args
        return self.inferer(inputs, network, *args, **kwargs)

    def _autocast(self):
        """``torch.autocast`` on the training device (bfloat16 on CPU) when ``amp``, else a no-op."""
        return torch.autocast(self.amp_device, **(self.amp_kwargs or {})) if self.use_amp else contextlib.nullcontext()

    def _step(self, loss: torch.Tensor) -> None:
        """Back-propagate the student's loss and update it (fires BACKWARD_COMPLETED)."""
        if self.student_scaler is not None:
            self.student_scaler.scale(loss).backward()
            self.fire_event(IterationEvents.BACKWARD_COMPLETED)
            self.student_scaler.step(self.optimizer)
            self.student_scaler.update()
        else:
            loss.backward()
            self.fire_event(IterationEvents.BACKWARD_COMPLETED)
            self.optimizer.step()

    def _nonfinite(self, out: dict) -> dict:
        """Raise, or warn and skip the update, for a non-finite loss on any rank.

        The decision is collective (:func:`~monai_supmix.utils.distributed.any_rank`): every
        rank skips (or raises) together, so no rank waits in DDP's gradient all-reduce for a
        backward another rank did not run. No backward runs, so neither ``BACKWARD_COMPLETED``
        nor ``MODEL_COMPLETED`` fires; ``out["skipped"]`` is True.
        """
        terms = {k: float(out[k]) for k in ("supervised_loss", "unsupervised_loss", "adversarial_loss")}
        where = f" ({terms})" if not bool(torch.isfinite(out[Keys.LOSS])) else " on another rank"
        message = (
            f"non-finite training loss at iteration {self.state.iteration}{where}; the weights were not "
            "updated. Lower the learning rate, check the inputs for NaN/Inf, or disable AMP."
        )
        if self.on_nonfinite == "raise":
            raise FloatingPointError(message)
        warnings.warn(message + " Skipping this update (on_nonfinite='skip').", stacklevel=2)
        self.optimizer.zero_grad(set_to_none=True)
        out.update(discriminator_loss=float("nan"), discriminator_accuracy=float("nan"), skipped=True)
        return out

    # ---------------------------------------------------------------- iteration
    def _pseudo_labels(
        self, images_u: torch.Tensor, frequencies: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The EMA teacher's pseudo-labels (``B×1×spatial`` indices) and their confidence on the weak view.

        With distribution alignment the probabilities are first rescaled towards the labeled class
        ``frequencies``.
        """
        with torch.no_grad(), self._autocast():
            probs = torch.softmax(self._infer(images_u, self.teacher).float(), dim=1)
        if self.distribution_alignment is not None and frequencies is not None:
            probs, self.state.teacher_class_mean = self.distribution_alignment(
                probs, frequencies, self.state.teacher_class_mean
            )
        confidence, pseudo = probs.max(dim=1, keepdim=True)
        return pseudo, confidence

    def _strong_view(self, images: torch.Tensor) -> torch.Tensor:
        """The student's strongly perturbed view of the mixed images (reproducible per iteration)."""
        if self.student_transform is None:
            return images
        if hasattr(self.student_transform, "set_random_state"):
            self.student_transform.set_random_state(seed=self._stream_seed(1, self.state.iteration))
        return self.student_transform(images)

    def _iteration(self, engine: SemiSupervisedTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        """One semi-supervised iteration; returns ``engine.state.output`` with every loss term.

        Raises:
            ValueError: when ``batchdata`` is None.
            FloatingPointError: when a loss is not finite and ``on_nonfinite="raise"``.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        # 1. labeled batch
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs_l, targets_l = batch[0], batch[1]
        # extra network arguments from prepare_batch, as SupervisedTrainer passes them to the inferer
        engine._network_args = (tuple(batch[2]), dict(batch[3])) if len(batch) == 4 else ((), {})
        iteration = engine.state.iteration - 1  # 0-based for the ramp-ups
        sufd = engine.sufd if engine.sufd is not None and engine.sufd.active(iteration) else None
        engine.state.output = out = {Keys.IMAGE: inputs_l, Keys.LABEL: targets_l}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if not engine.uses_unlabeled:  # supervised only: no teacher, no unlabeled batch
            return engine._supervised_iteration(inputs_l, targets_l, out)
        frequencies = (
            engine.class_frequencies if engine.class_frequencies is not None else engine._update_class_counts(targets_l)
        )
        # 2. unlabeled batch and the teacher's pseudo-labels on the weak view
        images_u, region_u = engine._next_unlabeled()
        pseudo, confidence = engine._pseudo_labels(images_u, frequencies)
        # 3. mixing
        mixed = MixBatch(images_u, pseudo, confidence, inputs_l, targets_l, engine.num_classes, region_u, frequencies)
        if engine.mixing is not None:
            mixed = engine.mixing(mixed, engine._generator(engine.state.iteration))
        # 4. the student's strong view of the mixed images
        strong_u = engine._strong_view(mixed.images)
        with engine._autocast():
            # 5. one student pass over labeled + strong mixed images (+ the plain unlabeled images
            # when the discriminator compares those)
            parts = [inputs_l, strong_u.to(inputs_l.dtype)]
            if sufd is not None and sufd.needs_plain_pass:
                parts.append(images_u.to(inputs_l.dtype))
            logits, features = engine._student_pass(parts, sufd)
            logits_l, logits_u = logits[0], logits[1]
            out[Keys.PRED] = logits_l
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            sup_loss = engine.loss_function(logits_l, targets_l).mean()
            # SupMix's pasted ground truth (confidence 1) is no measure of the teacher: kept out of the
            # class-adaptive thresholds' learning status
            teacher_mask = None if mixed.supmix_mask is None else ~mixed.supmix_mask
            unsup_loss = engine.pseudo_label_loss(logits_u, mixed.pseudo_label, mixed.confidence, teacher_mask)
            # SUFD's unlabeled side is the last part: the plain images when present, else the mixed
            # images (with pasted ground truth and paste edges masked out for "mixed_masked")
            weight_u = sufd.unlabeled_weight(mixed) if sufd is not None else None
            adv_loss = (
                sufd.student_loss(features[-1], weight_u) if sufd is not None else torch.zeros((), device=sup_loss.device)
            )
            ramp = engine._self_training_ramp(iteration, logits_l, targets_l)
            w_unsup = engine.pseudo_label_loss.weight * ramp
            w_adv = sufd.weight * ramp if sufd is not None else 0.0
            loss = sup_loss + w_unsup * unsup_loss + w_adv * adv_loss
        threshold = engine.pseudo_label_loss.threshold
        out[Keys.LOSS] = loss
        out.update(
            supervised_loss=sup_loss.detach(),
            unsupervised_loss=unsup_loss.detach(),
            adversarial_loss=adv_loss.detach(),
            unsupervised_weight=w_unsup,
            adversarial_weight=w_adv,
            confident_fraction=float("nan") if threshold is None else float((mixed.confidence >= threshold).float().mean()),
        )
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if any_rank(not bool(torch.isfinite(loss)), loss.device):  # decided together: see _nonfinite
            return engine._nonfinite(out)
        # 6. the student's update, then the discriminator's (detached features, its own optimizer)
        engine._step(loss)
        if sufd is not None:
            out.update(
                sufd.discriminator_step(features[0], features[-1], engine._autocast, engine.on_nonfinite, weight_u)
            )
        else:
            out.update(discriminator_loss=0.0, discriminator_accuracy=float("nan"))
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # MONAI decollates the output here when asked
        return engine.state.output  # 7. the EMA teacher follows on ITERATION_COMPLETED

    def _self_training_ramp(self, iteration: int, logits_l: torch.Tensor, targets_l: torch.Tensor) -> float:
        """The ramp-up factor of the unsupervised and adversarial terms at a 0-based iteration: from the first
        iteration, or with a self-training gate from the iteration the gate opened at (0 while it is closed)."""
        gate = self.self_training_gate
        if gate is not None and self.state.self_training_start is None:
            self.state.self_training_dice, ready = gate(logits_l.detach(), targets_l, self.state.self_training_dice)
            if not ready:
                return 0.0
            self.state.self_training_start = iteration
            self.logger.info(f"self-training starts at iteration {iteration + 1}: the student's running Dice on its "
                             f"labeled batches is {[round(v, 3) for v in self.state.self_training_dice]}")
        start = 0 if gate is None else self.state.self_training_start
        return self.pseudo_label_loss.ramp(iteration - start)

    def _student_pass(self, parts: list[torch.Tensor], sufd: SUFD | None) -> tuple[list, list]:
        """Logits (and SUFD features) of each part; one forward pass when the parts share a shape."""
        perturb = self.feature_perturbation
        # the dropped channels come from a rank-aware stream of this iteration, like the mixing and strong view
        stream = self._generator(self.state.iteration, stream=2) if perturb is not None else None
        if all(p.shape[1:] == parts[0].shape[1:] for p in parts):
            sizes = [p.shape[0] for p in parts]
            rows = (sizes[0], sizes[0] + sizes[1])  # the mixed images
            with perturb.on_rows(*rows, stream) if perturb is not None else contextlib.nullcontext():
                logits = self._infer(torch.cat(parts), self.network)
            features = sufd.features(logits).split(sizes) if sufd is not None else []
            return list(logits.split(sizes)), list(features)
        logits, features = [], []  # different patch sizes: one pass per part
        for index, part in enumerate(parts):
            mixed = perturb is not None and index == 1
            with perturb.on_rows(0, part.shape[0], stream) if mixed else contextlib.nullcontext():
                logits.append(self._infer(part, self.network))
            if sufd is not None:
                features.append(sufd.features(logits[-1]))
        return logits, features

    def _supervised_iteration(self, inputs: torch.Tensor, targets: torch.Tensor, out: dict) -> dict:
        """The iteration of a supervised-only configuration (``unsupervised_weight=0``, no SUFD)."""
        with self._autocast():
            logits = self._infer(inputs, self.network)
            out[Keys.PRED] = logits
            self.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = self.loss_function(logits, targets).mean()
        zero = torch.zeros((), device=loss.device)
        out[Keys.LOSS] = loss
        out.update(supervised_loss=loss.detach(), unsupervised_loss=zero, adversarial_loss=zero,
                   unsupervised_weight=0.0, adversarial_weight=0.0, confident_fraction=float("nan"))
        self.fire_event(IterationEvents.LOSS_COMPLETED)
        if any_rank(not bool(torch.isfinite(loss)), loss.device):
            return self._nonfinite(out)
        self._step(loss)
        out.update(discriminator_loss=0.0, discriminator_accuracy=float("nan"))
        self.fire_event(IterationEvents.MODEL_COMPLETED)
        return self.state.output
