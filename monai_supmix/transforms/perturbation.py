"""Strong photometric perturbation of the student's input (the weak → strong asymmetry of FixMatch/DACS).

The teacher predicts pseudo-labels on a weakly augmented view; the student learns them
on the mixed image with a strong *photometric* perturbation on top (contrast, gamma,
brightness, colour, blur, noise). Geometry is left untouched, so the pseudo-labels and
pasted ground truth stay aligned with the perturbed image.

The perturbations are MONAI's own random intensity transforms, composed per modality by
:func:`strong_perturbation`, and applied image by image to a batch by
:class:`BatchPerturbation` (MONAI transforms take one channel-first image).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandShiftIntensity,
)

__all__ = ["strong_perturbation", "BatchPerturbation", "PERTURBATION_PRESETS"]

PERTURBATION_PRESETS = ("fundus", "ct")


def strong_perturbation(preset: str, strength: float = 1.0) -> Compose:
    """A MONAI ``Compose`` of random intensity transforms for one channel-first image in [0, 1].

    Args:
        preset: ``"fundus"`` (RGB fundus photographs: per-channel colour scale and shift,
            gamma, blur, noise) or ``"ct"`` (grayscale CT: intensity scale and shift, gamma,
            blur, noise).
        strength: multiplies every magnitude (0 disables the perturbation in effect).

    Returns:
        a ``Compose`` (call ``set_random_state`` on it for reproducible draws).

    Raises:
        ValueError: for an unknown preset or a negative strength.
    """
    if preset not in PERTURBATION_PRESETS:
        raise ValueError(f"perturbation preset must be one of {PERTURBATION_PRESETS}, got {preset!r}.")
    if float(strength) < 0:
        raise ValueError(f"strength must be >= 0, got {strength!r}.")
    s = float(strength)
    channel_wise = preset == "fundus"  # colour jitter: each RGB channel its own factor
    gamma = (max(1.0 - 0.5 * s, 0.1), 1.0 + 1.0 * s)
    return Compose(
        [
            RandScaleIntensity(factors=0.25 * s, prob=0.8, channel_wise=channel_wise),
            RandShiftIntensity(offsets=0.1 * s, prob=0.8, channel_wise=channel_wise),
            RandAdjustContrast(prob=0.8, gamma=gamma),
            RandGaussianSmooth(sigma_x=(0.25, 0.25 + s), sigma_y=(0.25, 0.25 + s), sigma_z=(0.25, 0.25 + s), prob=0.4),
            RandGaussianNoise(prob=0.4, mean=0.0, std=0.03 * s),
        ]
    )


class BatchPerturbation:
    """Apply a per-image random transform to every image of a ``B×C×spatial`` batch.

    Args:
        transform: a MONAI random transform (e.g. :func:`strong_perturbation`) or any
            callable on one ``C×spatial`` image.
        seed: seed of the transform's random state (``set_random_state``), for reproducible runs.
        clip: clip the result to this ``(low, high)`` range (the inputs' range), or ``None``.

    Example::

        perturb = BatchPerturbation(strong_perturbation("ct"), seed=0)
        strong = perturb(images)  # same shape, device and dtype
    """

    def __init__(self, transform: Callable, seed: int | None = 0, clip: tuple[float, float] | None = (0.0, 1.0)) -> None:
        self.transform = transform
        if seed is not None and hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=int(seed))
        self.clip = clip

    def set_random_state(self, seed: int | None = None, state=None) -> BatchPerturbation:
        """Re-seed the per-image transform (the trainer does so every iteration, so a resumed run draws the same)."""
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim < 3:
            raise ValueError(f"BatchPerturbation expects a B×C×spatial tensor, got {getattr(images, 'shape', images)!r}.")
        out = torch.stack([torch.as_tensor(self.transform(image)).to(images.dtype) for image in images])
        out = out.as_subclass(torch.Tensor) if type(out) is not torch.Tensor else out
        if self.clip is not None:
            out = out.clamp(*self.clip)
        return out
