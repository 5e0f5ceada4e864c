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

__all__ = ["strong_perturbation", "BatchPerturbation", "BatchStrongPerturbation", "PERTURBATION_PRESETS"]

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


class BatchStrongPerturbation:
    """:func:`strong_perturbation` drawn and applied to a whole ``B×C×spatial`` batch at once, on its device.

    The same five operations with the same distributions as the MONAI ``Compose`` of
    :func:`strong_perturbation` (scale, shift, gamma contrast, Gaussian blur, Gaussian noise,
    each applied to an image with MONAI's probability), but vectorised over the batch: one
    tensor expression per operation instead of five MONAI transforms per image. MONAI's
    intensity transforms take one channel-first image, and on a 2-core CPU looping them over
    a batch of four 96² patches cost as much as the teacher's forward pass
    (``docs/benchmarks/step_time.md``), hence this batched form; for any other MONAI
    transform use :class:`BatchPerturbation`.

    Args:
        preset: ``"fundus"`` (each RGB channel its own scale and shift) or ``"ct"``.
        strength: multiplies every magnitude (0: the identity).
        seed: seed of the random draws; :meth:`set_random_state` re-seeds.
        clip: clip the result to this ``(low, high)`` range, or ``None``.

    Raises:
        ValueError: for an unknown preset, a negative strength, or an input that is not a
            ``B×C×spatial`` tensor with 1-3 spatial dimensions.
    """

    #: probabilities of scale, shift, contrast, blur, noise (as in :func:`strong_perturbation`)
    PROBS = (0.8, 0.8, 0.8, 0.4, 0.4)

    def __init__(
        self, preset: str, strength: float = 1.0, seed: int | None = 0, clip: tuple[float, float] | None = (0.0, 1.0)
    ) -> None:
        if preset not in PERTURBATION_PRESETS:
            raise ValueError(f"perturbation preset must be one of {PERTURBATION_PRESETS}, got {preset!r}.")
        if float(strength) < 0:
            raise ValueError(f"strength must be >= 0, got {strength!r}.")
        self.preset = preset
        self.strength = float(strength)
        self.clip = clip
        self.generator = torch.Generator()
        self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None, state=None) -> BatchStrongPerturbation:
        """Re-seed the draws (the trainer does so every iteration, so a resumed run draws the same)."""
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**31))
        return self

    def _uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def _applied(self, prob: float, batch: int) -> torch.Tensor:
        return torch.rand(batch, generator=self.generator) < prob

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or not 3 <= images.ndim <= 5:
            raise ValueError(
                f"BatchStrongPerturbation expects a B×C×spatial tensor, got {getattr(images, 'shape', images)!r}."
            )
        x = images.as_subclass(torch.Tensor).float()
        b, c, spatial = x.shape[0], x.shape[1], x.ndim - 2
        s = self.strength
        view = (b, -1) + (1,) * spatial
        ch = c if self.preset == "fundus" else 1
        p_scale, p_shift, p_contrast, p_blur, p_noise = (self._applied(p, b) for p in self.PROBS)
        # 1. RandScaleIntensity(factors=0.25 s): x * (1 + f)
        factor = self._uniform(-0.25 * s, 0.25 * s, b, ch) * p_scale[:, None]
        # 2. RandShiftIntensity(offsets=0.1 s): x + o
        offset = self._uniform(-0.1 * s, 0.1 * s, b, ch) * p_shift[:, None]
        x = x * (1 + factor.to(x.device).reshape(view)) + offset.to(x.device).reshape(view)
        # 3. RandAdjustContrast(gamma): min-max normalised image ** gamma, rescaled (per image, all channels)
        gamma = torch.where(p_contrast, self._uniform(max(1.0 - 0.5 * s, 0.1), 1.0 + s, b), torch.ones(b))
        flat = x.reshape(b, -1)
        low, high = flat.min(1).values.reshape(view), flat.max(1).values.reshape(view)
        span = high - low
        x = ((x - low) / (span + 1e-7)).clamp(min=0) ** gamma.to(x.device).reshape(view) * span + low
        # 4. RandGaussianSmooth(sigma in (0.25, 0.25 + s) per axis), as a separable depthwise convolution
        sigma = self._uniform(0.25, 0.25 + s, b, spatial)
        if bool(p_blur.any()):
            x = _gaussian_blur(x, sigma, p_blur)
        # 5. RandGaussianNoise(std drawn in (0, 0.03 s))
        std = self._uniform(0.0, 0.03 * s, b) * p_noise
        noise = torch.randn(x.shape, generator=self.generator) * std.reshape(view)
        x = x + noise.to(x.device)
        if self.clip is not None:
            x = x.clamp(*self.clip)
        return x.to(images.dtype)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Blur image ``b`` of ``x`` with a Gaussian of ``sigma[b]`` (one per spatial axis) where ``apply[b]``.

    Kernels are truncated at 4 sigma (MONAI's ``GaussianFilter`` default); an image that is not
    blurred gets a unit impulse.
    """
    from torch.nn import functional as F

    b, c, spatial = x.shape[0], x.shape[1], x.ndim - 2
    radius = max(1, int(4.0 * float(sigma.max()) + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    out = x.reshape(1, b * c, *x.shape[2:])
    for axis in range(spatial):
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, axis, None]) ** 2)
        kernel = kernel / kernel.sum(1, keepdim=True)
        kernel = torch.where(apply[:, None], kernel, (offsets == 0).float()[None])
        shape = [b * c, 1] + [1] * spatial
        shape[2 + axis] = 2 * radius + 1
        weight = kernel.repeat_interleave(c, 0).reshape(shape).to(x.device, x.dtype)
        padding = [0] * spatial
        padding[axis] = radius
        pad = []
        for a in reversed(range(spatial)):
            pad += [padding[a], padding[a]]
        out = conv(F.pad(out, pad, mode="replicate"), weight, groups=b * c)
    return out.reshape(x.shape)
