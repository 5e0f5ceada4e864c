"""Semi-supervised trainer: mean teacher + ClassMix / SupMix + Sup-Unsup Feature Discriminator."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from ignite.engine import Events
from ignite.handlers import EMAHandler
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.engines.workflow import Workflow
from monai.losses import PatchAdversarialLoss
from monai.utils import CommonKeys as Keys
from monai.utils import ensure_tuple
from torch import nn
from torch.utils.data import DataLoader

from monai_supmix.handlers.rampup import RAMPUP_SCHEDULES, rampup_factor
from monai_supmix.losses import ConfidenceWeightedCELoss
from monai_supmix.networks.feature_tap import FeatureTap
from monai_supmix.transforms.functional import class_mix, select_classes, supervised_class_mix

__all__ = ["SemiSupervisedTrainer", "MIX_MODES", "DISCRIMINATOR_INPUTS"]

MIX_MODES = ("none", "classmix", "supmix", "both")
DISCRIMINATOR_INPUTS = ("mixed", "unlabeled")


def _unwrap_single(transform: Callable) -> Callable:
    """Wrap ``transform`` so that a 1-tuple result becomes its only element."""

    def unwrapped(output):
        value = transform(output)
        return value[0] if isinstance(value, tuple) and len(value) == 1 else value

    return unwrapped


def _unwrap(module: nn.Module) -> nn.Module:
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


class SemiSupervisedTrainer(SupervisedTrainer):
    """Semi-supervised segmentation trainer with SupMix and SUFD (Mano, Saito, Hotta, VISAPP 2025).

    One iteration (all of MONAI's ``IterationEvents`` are fired, so every MONAI/Ignite
    handler works as with :class:`monai.engines.SupervisedTrainer`):

    1. a labeled batch from ``train_data_loader`` (supervised loss, ``loss_function``);
    2. an unlabeled batch from ``unlabeled_data_loader``, cycled independently; the EMA
       teacher predicts pseudo-labels and their confidence;
    3. mixing (``mix``): ``"classmix"`` pastes pseudo-labelled classes between unlabeled
       images, ``"supmix"`` pastes ground-truth classes of labeled images onto
       unlabeled images and their pseudo-labels (pasted pixels get confidence 1),
       ``"both"`` does ClassMix then SupMix, ``"none"`` trains on plain pseudo-labels;
    4. the student sees labeled and mixed images in one forward pass; the
       confidence-weighted unsupervised loss is ramped up over ``rampup_iterations``;
    5. SUFD (when ``discriminator`` is given): the student gets an adversarial term that
       makes its features of unlabeled images look like those of labeled images;
       then the discriminator learns labeled (real) vs unlabeled (fake) from detached
       features with its own optimizer;
    6. the teacher is updated as an exponential moving average of the student (Ignite's
       :class:`~ignite.handlers.EMAHandler`, attached before any other handler so that
       checkpoints always see a consistent student/teacher pair).

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
        teacher_network: module to hold the EMA teacher; created by deep-copying the
            student when ``None``. Its weights are initialised from the student.
        ema_decay: EMA decay after warm-up (teacher = decay * teacher + (1 - decay) * student).
        ema_warmup_iterations: iterations over which Ignite's EMA momentum warms up
            linearly from 1 (teacher copies the student) to ``1 - ema_decay``; 0 disables.
        mix: one of ``"none"``, ``"classmix"``, ``"supmix"``, ``"both"``.
        supmix_classes: classes pasted by SupMix: a list of class indices (the paper's
            manual choice) or a policy of :func:`~monai_supmix.transforms.select_classes`
            (``"rarest"``, ``"inverse_frequency"``, ``"random_half"``).
        supmix_num_select: how many classes ``"rarest"`` picks (default: all but the
            most frequent).
        supmix_prob: probability that SupMix pastes onto a given unlabeled image of the
            batch (drawn per image); the others keep their (ClassMix-)mixed content.
        classmix_classes: class policy of ClassMix (default ``"random_half"``).
        class_frequencies: pixel counts per class in the labeled set for the rarity
            policies; when ``None`` they are accumulated from the labeled batches seen.
        confidence_threshold: pseudo-label confidence threshold of the default unsupervised loss.
        unsupervised_loss_function: ``f(logits, pseudo_label, confidence)``; default
            :class:`~monai_supmix.losses.ConfidenceWeightedCELoss`.
        unsupervised_weight: weight of the unsupervised loss after ramp-up.
        rampup_iterations: ramp-up length (iterations) of the unsupervised and adversarial weights.
        rampup_schedule: ``"sigmoid"``, ``"linear"`` or ``"none"``.
        discriminator: the SUFD :class:`~monai_supmix.networks.FeatureDiscriminator`
            (may be DDP-wrapped); ``None`` disables SUFD.
        discriminator_optimizer: optimizer of the discriminator (required with ``discriminator``).
        feature_layer: name of the student's submodule whose output the discriminator
            sees (``None``: the documented default of the network class).
        adversarial_weight: weight of the student's adversarial term after ramp-up.
        discriminator_input: which unlabeled features the discriminator compares with
            the labeled ones: ``"mixed"`` (the mixed images the student trains on, no extra
            cost) or ``"unlabeled"`` (the plain unlabeled images, one more student pass
            over the unlabeled batch; the discriminator then cannot tell the two sides
            apart by the paste edges of the mixing).
        adversarial_criterion: ``"bce"``, ``"hinge"`` or ``"least_squares"``
            (:class:`monai.losses.PatchAdversarialLoss`).
        discriminator_collapse_patience: warn when the discriminator's accuracy stays
            at or above 0.99 for this many consecutive iterations.
        unlabeled_image_key: key of the image in unlabeled batches.
        seed: seed of the mixing randomness (class choice, pairing); the generator is
            re-seeded from ``seed`` and the iteration, so a resumed run draws the same.
        on_nonfinite: ``"raise"`` stops training with ``FloatingPointError`` before the
            weights are touched; ``"skip"`` warns and skips the update.
        epoch_length: as in :class:`monai.engines.SupervisedTrainer`, like the arguments
            that follow it (``non_blocking``, ``prepare_batch``, ``iteration_update``,
            ``inferer``, ``postprocessing``, ``key_train_metric``, ``additional_metrics``,
            ``metric_cmp_fn``, ``train_handlers``, ``amp``, ``event_names``,
            ``event_to_attr``, ``decollate``, ``optim_set_to_none``, ``to_kwargs``,
            ``amp_kwargs``). ``amp`` takes effect on CUDA only (a warning says so on
            other devices).

    Raises:
        ValueError: for an unknown ``mix``, an empty unlabeled loader, SUFD without an
            optimizer, or invalid weights.
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
        teacher_network: nn.Module | None = None,
        ema_decay: float = 0.99,
        ema_warmup_iterations: int = 0,
        mix: str = "supmix",
        supmix_classes: Sequence[int] | str = "rarest",
        supmix_num_select: int | None = None,
        supmix_prob: float = 1.0,
        classmix_classes: Sequence[int] | str = "random_half",
        class_frequencies: Sequence[float] | None = None,
        confidence_threshold: float = 0.9,
        unsupervised_loss_function: Callable | None = None,
        unsupervised_weight: float = 1.0,
        rampup_iterations: int = 0,
        rampup_schedule: str = "sigmoid",
        discriminator: nn.Module | None = None,
        discriminator_optimizer: torch.optim.Optimizer | None = None,
        feature_layer: str | None = None,
        adversarial_weight: float = 0.01,
        discriminator_input: str = "mixed",
        adversarial_criterion: str = "bce",
        discriminator_collapse_patience: int = 50,
        unlabeled_image_key: str = Keys.IMAGE,
        seed: int = 0,
        on_nonfinite: str = "raise",
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        inferer: Any = None,
        postprocessing: Any = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = False,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        if mix not in MIX_MODES:
            raise ValueError(f"mix must be one of {MIX_MODES}, got {mix!r}.")
        if rampup_schedule not in RAMPUP_SCHEDULES:
            raise ValueError(f"rampup_schedule must be one of {RAMPUP_SCHEDULES}, got {rampup_schedule!r}.")
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}.")
        if discriminator_input not in DISCRIMINATOR_INPUTS:
            raise ValueError(f"discriminator_input must be one of {DISCRIMINATOR_INPUTS}, got {discriminator_input!r}.")
        if not 0.0 <= float(supmix_prob) <= 1.0:
            raise ValueError(f"supmix_prob must be in [0, 1], got {supmix_prob!r}.")
        if not 0.0 < float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}.")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}.")
        for name, value in (("unsupervised_weight", unsupervised_weight), ("adversarial_weight", adversarial_weight)):
            if float(value) < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        try:
            n_unlabeled = len(unlabeled_data_loader)  # type: ignore[arg-type]
        except TypeError:
            n_unlabeled = None
        if n_unlabeled == 0:
            raise ValueError(
                "unlabeled_data_loader is empty: semi-supervised training needs unlabeled images "
                "(check the unlabeled datalist / `num_labeled`), or train with SupervisedTrainer."
            )
        if discriminator is not None and discriminator_optimizer is None:
            raise ValueError("discriminator_optimizer is required when a discriminator (SUFD) is given.")

        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=None,  # registered below, after the EMA teacher update
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.unlabeled_data_loader = unlabeled_data_loader
        self.num_classes = int(num_classes)
        self.mix = mix
        self.supmix_classes = supmix_classes
        self.supmix_num_select = supmix_num_select
        self.supmix_prob = float(supmix_prob)
        self.classmix_classes = classmix_classes
        self.class_frequencies = None if class_frequencies is None else torch.as_tensor(class_frequencies).float()
        self.unsupervised_loss_function = unsupervised_loss_function or ConfidenceWeightedCELoss(confidence_threshold)
        self.confidence_threshold = float(confidence_threshold)
        self.unsupervised_weight = float(unsupervised_weight)
        self.rampup_iterations = int(rampup_iterations)
        self.rampup_schedule = rampup_schedule
        self.unlabeled_image_key = unlabeled_image_key
        self.seed = int(seed)
        self.on_nonfinite = on_nonfinite
        self.use_amp = bool(amp) and torch.device(device).type == "cuda"
        if amp and not self.use_amp:
            warnings.warn(f"amp=True has no effect on device {device!r}: mixed precision is used on CUDA only.")
            self.amp = False

        # SUFD
        self.discriminator = discriminator
        self.discriminator_optimizer = discriminator_optimizer
        self.adversarial_weight = float(adversarial_weight)
        self.discriminator_input = discriminator_input
        self.adversarial_loss = PatchAdversarialLoss(reduction="mean", criterion=adversarial_criterion)
        self.discriminator_collapse_patience = int(discriminator_collapse_patience)
        self._collapse_count = 0
        self._collapse_warned = False
        self.feature_tap = FeatureTap(network, feature_layer) if discriminator is not None else None

        # AMP scalers live as long as the trainer so that checkpoints can hold them.
        self.student_scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        self.discriminator_scaler = torch.amp.GradScaler("cuda") if self.use_amp and discriminator else None

        # EMA teacher (Ignite's EMAHandler), updated on ITERATION_COMPLETED before other handlers.
        warmup = {"momentum_warmup": 1.0 - 1e-6, "warmup_iters": ema_warmup_iterations} if ema_warmup_iterations else {}
        self.ema_handler = EMAHandler(network, momentum=1.0 - float(ema_decay), **warmup)
        if teacher_network is not None:
            teacher_network.load_state_dict(_unwrap(network).state_dict())
            for param in teacher_network.parameters():
                param.requires_grad_(False)
            teacher_network.eval()
            self.ema_handler.ema_model = teacher_network
        self.teacher = self.ema_handler.ema_model
        self.ema_handler.attach(self, name="ema_momentum", event=Events.ITERATION_COMPLETED)
        self.state.class_counts = None
        self.state_dict_user_keys.append("class_counts")
        if train_handlers is not None:
            self._register_handlers(train_handlers)

        self._unlabeled_iterator: Iterator | None = None
        self._unlabeled_consumed = 0

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
            if type(handler).__name__ == "MLFlowHandler" and callable(transform):
                handler.output_transform = _unwrap_single(transform)
        super()._register_handlers(handlers)

    def run(self) -> None:  # type: ignore[override]
        """Run training; AMP scalers persist across runs so that they can be checkpointed."""
        self.scaler = self.student_scaler
        Workflow.run(self)

    def checkpoint_objects(self) -> dict[str, Any]:
        """Everything a resume needs, for ``CheckpointSaver``/``CheckpointLoader`` ``save_dict``/``load_dict``."""
        objects: dict[str, Any] = {
            "network": _unwrap(self.network),
            "teacher": self.teacher,
            "optimizer": self.optimizer,
            "trainer": self,
        }
        if self.discriminator is not None:
            objects["discriminator"] = _unwrap(self.discriminator)
            objects["discriminator_optimizer"] = self.discriminator_optimizer
        if self.student_scaler is not None:
            objects["scaler"] = self.student_scaler
        if self.discriminator_scaler is not None:
            objects["discriminator_scaler"] = self.discriminator_scaler
        return objects

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

    def _next_unlabeled(self) -> torch.Tensor:
        # one unlabeled batch per iteration: after a resume (the iteration jumped), restart the
        # stream at the matching position so that the run continues as if never interrupted
        position = self.state.iteration - 1
        if self._unlabeled_iterator is None or self._unlabeled_consumed != position:
            self._unlabeled_consumed = position
            self._unlabeled_iterator = self._unlabeled_stream(position)
        batch = next(self._unlabeled_iterator)
        self._unlabeled_consumed += 1
        if isinstance(batch, dict):
            if self.unlabeled_image_key not in batch:
                raise KeyError(
                    f"unlabeled batch has no key {self.unlabeled_image_key!r} (keys: {sorted(batch)}); "
                    "set `unlabeled_image_key`."
                )
            batch = batch[self.unlabeled_image_key]
        elif isinstance(batch, (list, tuple)):
            batch = batch[0]
        return torch.as_tensor(batch).to(self.state.device, non_blocking=self.non_blocking)

    def _generator(self, iteration: int) -> torch.Generator:
        gen = torch.Generator()
        gen.manual_seed(self.seed * 1_000_003 + iteration)
        return gen

    def _update_class_counts(self, targets: torch.Tensor) -> torch.Tensor:
        index = targets.argmax(1) if targets.shape[1] > 1 else targets[:, 0]
        counts = torch.bincount(index.reshape(-1).long().cpu(), minlength=self.num_classes)[: self.num_classes]
        prev = self.state.class_counts
        total = counts.double() + (torch.as_tensor(prev, dtype=torch.float64) if prev is not None else 0.0)
        self.state.class_counts = total.tolist()
        return total.float()

    def _mix(
        self, images_u: torch.Tensor, pseudo: torch.Tensor, confidence: torch.Tensor, inputs_l, targets_l, frequencies
    ):
        """Apply the configured mixing; return mixed images, labels and confidence."""
        gen = self._generator(self.state.iteration)
        batch_u = images_u.shape[0]
        if self.mix in ("classmix", "both") and batch_u > 1:
            perm = torch.roll(torch.arange(batch_u), shifts=1)
            classes = select_classes(
                self.classmix_classes, pseudo[perm], self.num_classes, generator=gen, class_frequencies=frequencies
            )
            images_u, pseudo, mask = class_mix(images_u, pseudo, images_u[perm], pseudo[perm], classes)
            confidence = torch.where(mask, confidence[perm.to(confidence.device)], confidence)
        if self.mix in ("supmix", "both"):
            pick = torch.randint(inputs_l.shape[0], (batch_u,), generator=gen).to(inputs_l.device)
            source_images, source_labels = inputs_l[pick], targets_l[pick]
            classes = select_classes(
                self.supmix_classes,
                source_labels,
                self.num_classes,
                generator=gen,
                class_frequencies=frequencies,
                num_select=self.supmix_num_select,
            )
            if self.supmix_prob < 1.0:
                draws = torch.rand(batch_u, generator=gen)
                classes = [c if draw < self.supmix_prob else [] for c, draw in zip(classes, draws.tolist())]
            images_u, pseudo, mask = supervised_class_mix(images_u, pseudo, source_images, source_labels, classes)
            confidence = torch.where(mask, torch.ones_like(confidence), confidence)
        return images_u, pseudo, confidence

    # ---------------------------------------------------------------- iteration
    def _iteration(self, engine: SemiSupervisedTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        """One semi-supervised iteration; returns ``engine.state.output`` with every loss term.

        Raises:
            ValueError: when ``batchdata`` is None.
            FloatingPointError: when a loss is not finite and ``on_nonfinite="raise"``.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs_l, targets_l = batch[0], batch[1]
        images_u = engine._next_unlabeled()
        iteration = engine.state.iteration - 1  # 0-based for the ramp-ups
        ramp = rampup_factor(iteration, engine.rampup_iterations, engine.rampup_schedule)
        w_unsup = engine.unsupervised_weight * ramp
        use_sufd = engine.discriminator is not None
        w_adv = engine.adversarial_weight * ramp if use_sufd else 0.0
        frequencies = (
            engine.class_frequencies if engine.class_frequencies is not None else engine._update_class_counts(targets_l)
        )

        def autocast():
            return torch.autocast("cuda", **engine.amp_kwargs) if engine.use_amp else _NullContext()

        # 2. teacher pseudo-labels
        with torch.no_grad(), autocast():
            probs = torch.softmax(engine.inferer(images_u, engine.teacher).float(), dim=1)
        confidence, pseudo = probs.max(dim=1, keepdim=True)
        # 3. mixing
        mixed_u, mixed_label, mixed_conf = engine._mix(images_u, pseudo, confidence, inputs_l, targets_l, frequencies)

        engine.state.output = {Keys.IMAGE: inputs_l, Keys.LABEL: targets_l}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        n_l = inputs_l.shape[0]
        out = engine.state.output
        with autocast():
            # 4. one student pass over labeled + mixed unlabeled images (+ the plain unlabeled
            # images when the discriminator compares those)
            plain = use_sufd and engine.discriminator_input == "unlabeled"
            parts = [inputs_l, mixed_u.to(inputs_l.dtype)] + ([images_u.to(inputs_l.dtype)] if plain else [])
            if all(p.shape[1:] == inputs_l.shape[1:] for p in parts):
                sizes = [p.shape[0] for p in parts]
                logits_parts = engine.inferer(torch.cat(parts), engine.network).split(sizes)
                feature_parts = engine.feature_tap.pop().split(sizes) if use_sufd else []
            else:  # different patch sizes: one pass per part
                logits_parts, feature_parts = [], []
                for part in parts:
                    logits_parts.append(engine.inferer(part, engine.network))
                    if use_sufd:
                        feature_parts.append(engine.feature_tap.pop())
            logits_l, logits_u = logits_parts[0], logits_parts[1]
            # the discriminator's unlabeled side is the last part: the plain images when present
            feat_l, feat_u = (feature_parts[0], feature_parts[-1]) if use_sufd else (None, None)
            out[Keys.PRED] = logits_l
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            sup_loss = engine.loss_function(logits_l, targets_l).mean()
            unsup_loss = engine.unsupervised_loss_function(logits_u, mixed_label, mixed_conf)
            # 5a. adversarial term: the (plain, non-DDP) discriminator with frozen parameters,
            # so that the student's loss never writes gradients into the discriminator.
            if use_sufd:
                disc_module = _unwrap(engine.discriminator)
                requires = [p.requires_grad for p in disc_module.parameters()]
                disc_module.requires_grad_(False)
                adv_loss = engine.adversarial_loss(disc_module(feat_u), target_is_real=True, for_discriminator=False)
                for p, r in zip(disc_module.parameters(), requires):
                    p.requires_grad_(r)
            else:
                adv_loss = torch.zeros((), device=sup_loss.device)
            loss = sup_loss + w_unsup * unsup_loss + w_adv * adv_loss
        out[Keys.LOSS] = loss
        out.update(
            supervised_loss=sup_loss.detach(),
            unsupervised_loss=unsup_loss.detach(),
            adversarial_loss=adv_loss.detach(),
            unsupervised_weight=w_unsup,
            adversarial_weight=w_adv,
            confident_fraction=(mixed_conf >= engine.confidence_threshold).float().mean().item(),
        )
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if not torch.isfinite(loss):
            terms = {k: float(out[k]) for k in ("supervised_loss", "unsupervised_loss", "adversarial_loss")}
            message = (
                f"non-finite training loss at iteration {engine.state.iteration} ({terms}); the weights were not "
                "updated. Lower the learning rate, check the inputs for NaN/Inf, or disable AMP."
            )
            if engine.on_nonfinite == "raise":
                raise FloatingPointError(message)
            warnings.warn(message + " Skipping this update (on_nonfinite='skip').")
            engine.optimizer.zero_grad(set_to_none=True)
            out.update(discriminator_loss=float("nan"), discriminator_accuracy=float("nan"))
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.fire_event(IterationEvents.MODEL_COMPLETED)
            return out
        if engine.student_scaler is not None:
            engine.student_scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.student_scaler.step(engine.optimizer)
            engine.student_scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()

        # 5b. discriminator update on detached features (its own optimizer only)
        if use_sufd:
            engine._discriminator_step(feat_l.detach(), feat_u.detach(), autocast)
        else:
            out.update(discriminator_loss=0.0, discriminator_accuracy=float("nan"))
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return out

    def _discriminator_step(self, feat_l: torch.Tensor, feat_u: torch.Tensor, autocast: Callable) -> None:
        disc = self.discriminator
        disc.train()
        self.discriminator_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        with autocast():
            logits = disc(torch.cat([feat_l, feat_u]).float())
            logits_l, logits_u = logits[: feat_l.shape[0]], logits[feat_l.shape[0] :]
            d_loss = 0.5 * (
                self.adversarial_loss(logits_l, target_is_real=True, for_discriminator=True)
                + self.adversarial_loss(logits_u, target_is_real=False, for_discriminator=True)
            )
        if not torch.isfinite(d_loss):
            message = f"non-finite discriminator loss at iteration {self.state.iteration}."
            if self.on_nonfinite == "raise":
                raise FloatingPointError(message + " Lower the discriminator's learning rate.")
            warnings.warn(message + " Skipping the discriminator update.")
            self.discriminator_optimizer.zero_grad(set_to_none=True)
        elif self.discriminator_scaler is not None:
            self.discriminator_scaler.scale(d_loss).backward()
            self.discriminator_scaler.step(self.discriminator_optimizer)
            self.discriminator_scaler.update()
        else:
            d_loss.backward()
            self.discriminator_optimizer.step()
        with torch.no_grad():
            accuracy = 0.5 * ((logits_l > 0).float().mean() + (logits_u < 0).float().mean())
        accuracy = float(accuracy)
        self.state.output.update(discriminator_loss=d_loss.detach(), discriminator_accuracy=accuracy)
        self._check_collapse(accuracy)

    def _check_collapse(self, accuracy: float) -> None:
        """Warn once when the discriminator wins outright for many iterations in a row."""
        self._collapse_count = self._collapse_count + 1 if accuracy >= 0.99 else 0
        if self._collapse_count >= self.discriminator_collapse_patience and not self._collapse_warned:
            self._collapse_warned = True
            warnings.warn(
                f"SUFD discriminator accuracy has been >= 0.99 for {self._collapse_count} iterations "
                f"(iteration {self.state.iteration}): it separates labeled from unlabeled features perfectly and "
                "its gradient to the student saturates. Lower the discriminator's learning rate, enable "
                "spectral norm, or raise `adversarial_weight`."
            )


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None
