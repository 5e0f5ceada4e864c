"""A gate that holds self-training back until the student segments every labeled class."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from monai_supmix.utils.distributed import all_reduce_sum

__all__ = ["SelfTrainingGate"]


class SelfTrainingGate:
    """Start self-training once the student's running Dice on its labeled batches reaches ``min_dice`` for every class.

    With one or two labeled images the network often goes through a phase in which it predicts
    background everywhere. A teacher copied from that network gives confident all-background
    pseudo-labels, and a pseudo-label loss that ramps up during that phase teaches the student to
    stay there (on the COVID-19 development fold with 2 labeled slices, a Dice term on the
    pseudo-labels never left it, and ours left it later than supervised training did). The gate keeps the
    unsupervised and adversarial weights at 0 until the student has found every foreground class of
    the labeled images, then the usual ramp-up starts from that iteration; runs that never go through
    such a phase open the gate within the first few hundred iterations.

    The measure is the Dice of the student's arg-max on the labeled patches it trains on (no extra
    forward pass), per foreground class, over the patches that contain the class, summed over ranks
    under ``torch.distributed`` so that every rank opens the gate at the same iteration; an exponential
    moving average smooths it. Classes never seen in a labeled batch do not count. No MONAI or Ignite
    piece starts a loss term on a training-set criterion, hence this small class; the trainer keeps the
    running Dice and the start iteration in ``engine.state`` (checkpointed with it).

    Args:
        min_dice: running Dice, in (0, 1], that every foreground class seen in the labeled batches must reach.
        momentum: momentum of the running Dice, in [0, 1).

    Raises:
        ValueError: for ``min_dice`` outside (0, 1] or ``momentum`` outside [0, 1).
    """

    def __init__(self, min_dice: float = 0.5, momentum: float = 0.9) -> None:
        if not 0.0 < float(min_dice) <= 1.0:
            raise ValueError(f"min_dice must be in (0, 1], got {min_dice!r}.")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
        self.min_dice = float(min_dice)
        self.momentum = float(momentum)

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, running: Sequence[float] | None
    ) -> tuple[list[float], bool]:
        """Update the running Dice with one labeled batch; return it and whether the gate opens.

        Args:
            logits: the student's logits on the labeled batch, ``B×K×spatial``.
            target: its labels, ``B×1×spatial`` class indices or ``B×K×spatial`` one-hot.
            running: the running Dice so far, one value per foreground class (``nan`` for a class not
                seen yet), or ``None`` at the first call.

        Raises:
            ValueError: when ``target`` or ``running`` does not match ``logits``' classes.
        """
        num_classes = logits.shape[1]
        if target.shape[1] == num_classes and num_classes > 1:
            labels = target.argmax(1)
        elif target.shape[1] == 1:
            labels = target[:, 0].long()
        else:
            raise ValueError(
                f"target has {target.shape[1]} channels; expected 1 (class indices) or {num_classes} (one-hot)."
            )
        labels, pred = labels.flatten(1), logits.argmax(1).flatten(1)  # B×pixels
        stats = []
        for c in range(1, num_classes):
            truth, found = labels == c, pred == c
            present = truth.any(1)  # the patches that hold the class
            # per class: intersection (only where the class is, so only in those patches), the denominator
            # over those patches, and whether any patch held it
            stats.append(torch.stack([
                (truth & found).sum().float(),
                ((truth.sum(1) + found.sum(1)) * present).sum().float(),
                present.any().float(),
            ]))
        totals = all_reduce_sum(torch.stack(stats)).cpu()
        previous = [math.nan] * (num_classes - 1) if running is None else [float(v) for v in running]
        if len(previous) != num_classes - 1:
            raise ValueError(f"running has {len(previous)} values, expected one per foreground class ({num_classes - 1}).")
        updated = []
        for (intersection, denominator, seen), old in zip(totals.tolist(), previous):
            if not seen:
                updated.append(old)
                continue
            dice = 2.0 * intersection / max(denominator, 1.0)
            updated.append(dice if math.isnan(old) else self.momentum * old + (1.0 - self.momentum) * dice)
        known = [v for v in updated if not math.isnan(v)]
        return updated, bool(known) and min(known) >= self.min_dice
