"""The Sup-Unsup Feature Discriminator (SUFD) as one component of the trainer.

Everything SUFD needs lives here: the discriminator and its optimizer, the feature tap
on the student, the adversarial loss, its schedule and its diagnostics. The trainer
calls :meth:`SUFD.student_loss` inside the student's forward pass and
:meth:`SUFD.discriminator_step` after the student's update.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from monai_supmix.networks.feature_tap import FeatureTap
from monai_supmix.utils.distributed import any_rank, unwrap_module

__all__ = ["SUFD", "DISCRIMINATOR_INPUTS", "ADVERSARIAL_CRITERIA", "OUTPUT_FEATURES"]

DISCRIMINATOR_INPUTS = ("mixed_masked", "unlabeled", "mixed")
ADVERSARIAL_CRITERIA = ("bce", "least_squares", "hinge")
#: ``feature_layer`` value that makes the discriminator see the student's softmax output
#: (output-space alignment) instead of a hidden layer.
OUTPUT_FEATURES = "output"


def adversarial_loss(
    logits: torch.Tensor, real: bool, criterion: str, smoothing: float = 0.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Patch-wise adversarial loss computed in float32 from logits (safe under autocast).

    MONAI's :class:`~monai.losses.PatchAdversarialLoss` applies a sigmoid and ``BCELoss``,
    which PyTorch refuses under CUDA autocast, and has neither label smoothing nor per-patch
    weights; hence this function: ``"bce"`` is ``binary_cross_entropy_with_logits`` (targets 1
    for real, 0 for fake, pulled towards 0.5 by ``smoothing``), ``"least_squares"`` is the LSGAN
    loss on ``sigmoid(logits)``, ``"hinge"`` is the hinge loss of the discriminator's update
    (the student side of the hinge game is ``-logits``). ``weight`` (broadcastable to
    ``logits``, e.g. the patches SUFD may look at) makes it a weighted mean; a zero total
    weight gives 0.
    """
    logits = logits.float()
    target = (1.0 - smoothing / 2) if real else smoothing / 2
    if criterion == "bce":
        loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")
    elif criterion == "least_squares":
        loss = (torch.sigmoid(logits) - target) ** 2
    elif criterion == "hinge":
        loss = F.relu(1.0 - logits) if real else F.relu(1.0 + logits)
    else:
        raise ValueError(f"adversarial criterion must be one of {ADVERSARIAL_CRITERIA}, got {criterion!r}.")
    return _weighted_mean(loss, weight)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def _dilate(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """Binary dilation of a ``B×1×spatial`` mask by a cube of side ``2·margin+1`` (one 1-D max-pool per axis)."""
    out = mask.float()
    if margin == 0:
        return out > 0
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[mask.ndim - 3]
    for axis in range(mask.ndim - 2):
        kernel = [1] * (mask.ndim - 2)
        padding = [0] * (mask.ndim - 2)
        kernel[axis], padding[axis] = 2 * margin + 1, margin
        out = pool(out, kernel, stride=1, padding=padding)
    return out > 0


def _patch_grid(weight: torch.Tensor, logits: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """A pixel weight map (1 = use) taken to the discriminator's patch grid, with a margin around what it excludes.

    A patch counts only where all its pixels do; the excluded patches are then dilated by
    ``margin`` pixels, rounded up to whole patches (working on the coarse grid keeps this cheap).
    """
    excluded = 1.0 - weight.float()
    if excluded.shape[2:] != logits.shape[2:]:
        pool = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[weight.ndim - 3]
        excluded = pool(excluded, logits.shape[2:])
    if margin > 0:
        ratio = max(w / g for w, g in zip(weight.shape[2:], logits.shape[2:]))
        excluded = _dilate(excluded, math.ceil(margin / ratio)).float()
    return 1.0 - excluded


class SUFD:
    """Sup-Unsup Feature Discriminator: align the student's features of unlabeled images with labeled ones.

    The discriminator learns to tell features of labeled images ("real") from features of
    unlabeled images ("fake"); the student gets an adversarial term that makes its
    unlabeled features look labeled, so that what it learns from ground truth carries over.

    Args:
        discriminator: e.g. :class:`~monai_supmix.networks.FeatureDiscriminator` (may be DDP-wrapped).
        optimizer: the discriminator's optimizer.
        feature_layer: the student's submodule whose output the discriminator sees
            (``None``: the documented default of the network class; ``"output"``: the
            student's softmax output, i.e. output-space alignment).
        weight: weight of the student's adversarial term after ramp-up (the trainer's
            ramp-up factor multiplies it).
        input: which unlabeled features are "fake": ``"mixed_masked"`` (the mixed images the
            student trains on, no extra pass, with the pasted ground truth and a margin of
            ``paste_margin`` pixels around every paste edge left out of both SUFD losses, so
            the discriminator can use neither), ``"unlabeled"`` (the plain unlabeled images: one
            more student pass over the unlabeled batch) or ``"mixed"`` (the mixed images, paste
            edges included).
        paste_margin: pixels around paste edges that ``"mixed_masked"`` leaves out; about half
            the discriminator's receptive field.
        criterion: ``"bce"``, ``"least_squares"`` or ``"hinge"`` (see :func:`adversarial_loss`).
        label_smoothing: pull the discriminator's targets towards 0.5 by this amount (0-1).
        feature_pool: average-pool the features by this factor before the discriminator (1: off).
            The bundles use 2: the discriminator sees a quarter of the pixels, the step's
            arithmetic drops from 2.71x to 2.43x a supervised step, at 0.2 points less on the
            development fold (within its seed spread; docs/benchmarks/README.md).
        warmup_iterations: the discriminator and the adversarial term start after this many
            iterations (pseudo-labels and features settle first).
        collapse_patience: warn when the discriminator's accuracy stays at or above 0.99 for
            this many consecutive iterations.

    Raises:
        ValueError: for an unknown ``input`` or ``criterion``, a negative weight, or
            ``label_smoothing`` outside [0, 1).
    """

    def __init__(
        self,
        discriminator: nn.Module,
        optimizer: torch.optim.Optimizer,
        feature_layer: str | None = None,
        weight: float = 0.01,
        input: str = "mixed_masked",
        paste_margin: int = 8,
        criterion: str = "bce",
        label_smoothing: float = 0.0,
        feature_pool: int = 1,
        warmup_iterations: int = 0,
        collapse_patience: int = 50,
    ) -> None:
        if input not in DISCRIMINATOR_INPUTS:
            raise ValueError(f"discriminator_input must be one of {DISCRIMINATOR_INPUTS}, got {input!r}.")
        if criterion not in ADVERSARIAL_CRITERIA:
            raise ValueError(f"adversarial criterion must be one of {ADVERSARIAL_CRITERIA}, got {criterion!r}.")
        if float(weight) < 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {weight!r}.")
        if int(feature_pool) < 1:
            raise ValueError(f"feature_pool must be >= 1, got {feature_pool!r}.")
        if int(paste_margin) < 0:
            raise ValueError(f"paste_margin must be >= 0, got {paste_margin!r}.")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}.")
        if optimizer is None:
            raise ValueError("SUFD needs the discriminator's optimizer.")
        self.discriminator = discriminator
        self.optimizer = optimizer
        self.feature_layer = feature_layer
        self.weight = float(weight)
        self.input = input
        self.paste_margin = int(paste_margin)
        self.feature_pool = int(feature_pool)
        self.criterion = criterion
        self.label_smoothing = float(label_smoothing)
        self.warmup_iterations = int(warmup_iterations)
        self.collapse_patience = int(collapse_patience)
        self.scaler: torch.amp.GradScaler | None = None
        self._tap: FeatureTap | None = None
        self._collapse_count = 0
        self._collapse_warned = False

    # ------------------------------------------------------------------ set-up
    def attach(self, network: nn.Module, scaler_device: str | None = None) -> None:
        """Tap the student ``network`` (called by the trainer); ``scaler_device``: float16 AMP on that device
        type, so a gradient scaler there too (``None``: no scaler)."""
        if self.feature_layer != OUTPUT_FEATURES:
            self._tap = FeatureTap(network, self.feature_layer)
        self.scaler = torch.amp.GradScaler(scaler_device) if scaler_device else None

    @property
    def needs_plain_pass(self) -> bool:
        """Whether the student must also see the plain (unmixed) unlabeled images."""
        return self.input == "unlabeled"

    def unlabeled_weight(self, mixed: Any) -> torch.Tensor | None:
        """Where the discriminator may look on the unlabeled side: ``B×1×spatial`` (1 = use), or ``None`` (everywhere).

        For ``"mixed_masked"``: everywhere but the ground truth that SupMix pasted (it is
        labeled content) and the pixels along every ClassMix paste edge (``mixed`` is the
        trainer's :class:`~monai_supmix.engines.MixBatch`); both SUFD losses widen this by
        ``paste_margin`` pixels on the discriminator's patch grid.
        """
        if self.input != "mixed_masked":
            return None
        masked = None
        if mixed.supmix_mask is not None:
            masked = mixed.supmix_mask.bool()
        if mixed.classmix_mask is not None:
            inside = mixed.classmix_mask.bool()
            edges = _dilate(inside, 1) & _dilate(~inside, 1)
            masked = edges if masked is None else masked | edges
        return None if masked is None else (~masked).float()

    def active(self, iteration: int) -> bool:
        """Whether SUFD acts at this (0-based) iteration."""
        return iteration >= self.warmup_iterations

    def features(self, logits: torch.Tensor) -> torch.Tensor:
        """The features of the student's last forward pass (its softmax output for ``"output"``).

        With ``feature_pool`` > 1 they are average-pooled by that factor first (a cheaper
        discriminator; the paste mask follows on the patch grid).
        """
        features = torch.softmax(logits.float(), dim=1) if self._tap is None else self._tap.pop()
        if self.feature_pool > 1:
            pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[features.ndim - 3]
            features = pool(features, self.feature_pool)
        return features

    # ------------------------------------------------------------------ losses
    def student_loss(self, features_u: torch.Tensor, weight_u: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial term of the student: unlabeled features should be judged "real".

        The discriminator's parameters are frozen (and it is in eval mode) for this call, so
        the student's loss never writes gradients into the discriminator nor changes its
        state; the plain (non-DDP) module is used
        so that DDP does not expect a discriminator backward from the student's loss.
        """
        disc = unwrap_module(self.discriminator)
        requires = [p.requires_grad for p in disc.parameters()]
        was_training = disc.training
        disc.requires_grad_(False)
        disc.eval()  # nor does it advance spectral norm's power iteration or draw dropout
        try:
            logits = disc(features_u)
        finally:
            for p, r in zip(disc.parameters(), requires):
                p.requires_grad_(r)
            disc.train(was_training)
        weight = None if weight_u is None else _patch_grid(weight_u, logits, self.paste_margin)
        if self.criterion == "hinge":
            return _weighted_mean(-logits.float(), weight)
        return adversarial_loss(logits, real=True, criterion=self.criterion, weight=weight)

    def discriminator_step(
        self,
        features_l: torch.Tensor,
        features_u: torch.Tensor,
        autocast: Callable,
        on_nonfinite: str,
        weight_u: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One update of the discriminator on detached labeled (real) / unlabeled (fake) features.

        ``weight_u`` (:meth:`unlabeled_weight`) restricts the unlabeled side to the patches it marks.

        Returns:
            ``{"discriminator_loss", "discriminator_accuracy", "discriminator_coverage"}``
            (accuracy: mean of the real side's and the fake side's patch accuracy; 0.5 = the
            sides look alike; coverage: the share of unlabeled patches the discriminator saw).

        Raises:
            FloatingPointError: for a non-finite loss with ``on_nonfinite="raise"``.
        """
        disc = self.discriminator
        disc.train()
        self.optimizer.zero_grad(set_to_none=True)
        features = torch.cat([features_l.detach(), features_u.detach()]).float()
        with autocast():
            logits = disc(features)
        n_l = features_l.shape[0]
        logits_l, logits_u = logits[:n_l], logits[n_l:]
        weight = None if weight_u is None else _patch_grid(weight_u, logits_u, self.paste_margin)
        smoothing = self.label_smoothing
        loss = 0.5 * (
            adversarial_loss(logits_l, True, self.criterion, smoothing)
            + adversarial_loss(logits_u, False, self.criterion, smoothing, weight)
        )
        if any_rank(not bool(torch.isfinite(loss)), loss.device):  # every rank skips together (DDP all-reduce)
            message = "non-finite discriminator loss"
            if on_nonfinite == "raise":
                raise FloatingPointError(message + "; lower the discriminator's learning rate.")
            warnings.warn(message + "; skipping the discriminator update.", stacklevel=2)
            self.optimizer.zero_grad(set_to_none=True)
        elif self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # nothing of this step lingers into the student's next pass
        with torch.no_grad():
            accuracy = float(0.5 * ((logits_l > 0).float().mean() + _weighted_mean((logits_u < 0).float(), weight)))
        self._check_collapse(accuracy)
        coverage = 1.0 if weight is None else float(weight.float().mean())
        return {"discriminator_loss": float(loss.detach()), "discriminator_accuracy": accuracy,
                "discriminator_coverage": coverage}

    def _check_collapse(self, accuracy: float) -> None:
        """Warn once when the discriminator wins outright for many iterations in a row."""
        self._collapse_count = self._collapse_count + 1 if accuracy >= 0.99 else 0
        if self._collapse_count >= self.collapse_patience and not self._collapse_warned:
            self._collapse_warned = True
            warnings.warn(
                f"SUFD discriminator accuracy has been >= 0.99 for {self._collapse_count} iterations: it separates "
                "labeled from unlabeled features perfectly and its gradient to the student saturates. Lower the "
                "discriminator's learning rate, enable spectral norm, add label smoothing, or raise the adversarial weight.",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_objects(self) -> dict[str, Any]:
        """The discriminator, its optimizer and AMP scaler, for full-state checkpoints."""
        objects: dict[str, Any] = {
            "discriminator": unwrap_module(self.discriminator),
            "discriminator_optimizer": self.optimizer,
        }
        if self.scaler is not None:
            objects["discriminator_scaler"] = self.scaler
        return objects
