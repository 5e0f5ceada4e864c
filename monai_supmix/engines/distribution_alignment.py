"""Distribution alignment of the teacher's class probabilities with the labeled class frequencies."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from monai_supmix.utils.distributed import all_reduce_sum

__all__ = ["DistributionAlignment"]


class DistributionAlignment:
    """Rescale the teacher's per-pixel class probabilities so that their mean matches the labeled classes' shares.

    ReMixMatch's distribution alignment (Berthelot et al., ICLR 2020) applied per pixel:
    ``p' = normalise(p * prior / running_mean(p))``, where ``prior`` is the share of each class
    among the labeled pixels and ``running_mean(p)`` an exponential moving average of the
    teacher's mean probability of each class on the unlabeled images. When self-training starts
    to under-segment a thin or rare class (the pseudo-labels' vessels shrink, the student learns
    thinner vessels, the EMA teacher follows), that class's running mean falls below its labeled
    share and the rescaling lifts its probabilities back, before the arg-max and the confidence
    threshold see them.

    It assumes that the unlabeled images hold the classes in about the labeled images' proportions
    (every retina has vessels); where the unlabeled images are mostly free of a class that the
    labeled ones were chosen to show (lesions), it would push the teacher to over-segment it.

    No MONAI or Ignite piece rescales probabilities by a running class prior, hence this small class.
    The running mean is kept by the caller (the trainer keeps it in ``engine.state``, so that it is
    checkpointed with the trainer).

    Args:
        momentum: momentum of the running mean of the teacher's class probabilities, in [0, 1).

    Raises:
        ValueError: for a momentum outside [0, 1).
    """

    def __init__(self, momentum: float = 0.99) -> None:
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
        self.momentum = float(momentum)

    @torch.no_grad()
    def __call__(
        self, probs: torch.Tensor, prior: torch.Tensor, running: Sequence[float] | None
    ) -> tuple[torch.Tensor, list[float]]:
        """Return the aligned probabilities and the updated running mean.

        Args:
            probs: the teacher's class probabilities ``B×K×spatial`` (softmax over dim 1).
            prior: labeled pixel counts or shares per class, ``K`` values (normalised here).
            running: the running mean of the teacher's class probabilities so far (``K`` values),
                or ``None`` at the first call (it starts at this batch's mean).

        Raises:
            ValueError: when ``prior`` or ``running`` does not have one value per class.
        """
        num_classes = probs.shape[1]
        prior = torch.as_tensor(prior, dtype=torch.float32, device=probs.device).reshape(-1)
        if prior.numel() != num_classes:
            raise ValueError(f"prior has {prior.numel()} values, expected one per class ({num_classes}).")
        prior = prior.clamp_min(0) / prior.clamp_min(0).sum().clamp_min(1e-12)
        # the batch mean over every rank, so that all ranks align alike
        sums = all_reduce_sum(torch.cat([probs.float().transpose(0, 1).reshape(num_classes, -1).sum(1),
                                         probs.new_tensor([probs[:, 0].numel()], dtype=torch.float32)]))
        batch_mean = sums[:-1] / sums[-1].clamp_min(1)
        if running is None:
            mean = batch_mean
        else:
            mean = torch.as_tensor(running, dtype=torch.float32, device=probs.device).reshape(-1)
            if mean.numel() != num_classes:
                raise ValueError(f"running mean has {mean.numel()} values, expected one per class ({num_classes}).")
            mean = self.momentum * mean + (1 - self.momentum) * batch_mean
        scale = (prior / mean.clamp_min(1e-6)).reshape(1, num_classes, *([1] * (probs.ndim - 2)))
        aligned = probs.float() * scale
        aligned = aligned / aligned.sum(1, keepdim=True).clamp_min(1e-12)
        return aligned.to(probs.dtype), mean.cpu().tolist()
