"""Feature perturbation of the student on the mixed images, as one component of the trainer (UniMatch's idea).

UniMatch (Yang et al., CVPR 2023) adds a perturbation in feature space to the image-level
ones: channel dropout on the encoder's features of unlabeled images, trained on the same
pseudo-labels. Here it acts inside the student's one pass over labeled and mixed images:
only the mixed images' rows of the hooked layer's output are dropped out, so it costs no
extra pass and leaves the supervised rows untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from monai_supmix.utils.distributed import unwrap_module

__all__ = ["FeaturePerturbation", "bottleneck_layer"]


def bottleneck_layer(network: nn.Module) -> str:
    """The name of the deepest layer of a MONAI ``UNet`` (its innermost ``SkipConnection``'s submodule) or
    ``BasicUNet`` (``down_4``): the features the decoder starts from.

    Raises:
        ValueError: for another network class (name a layer explicitly).
    """
    from monai.networks.layers import SkipConnection

    net = unwrap_module(network)
    if type(net).__name__ in ("BasicUNet", "BasicUnet"):
        return "down_4"
    skips = [name for name, module in net.named_modules() if isinstance(module, SkipConnection)]
    if not skips:
        raise ValueError(f"no default feature-perturbation layer for {type(net).__name__}; pass `layer` explicitly.")
    return skips[-1] + ".submodule"


class FeaturePerturbation:
    """Channel dropout on a hidden layer of the student, applied to the mixed images' rows of its pass.

    Args:
        p: the share of channels dropped (``Dropout2d``/``Dropout3d``; UniMatch uses 0.5).
        layer: the dotted name of the student's layer whose output is perturbed; ``None``:
            :func:`bottleneck_layer`.

    Raises:
        ValueError: for ``p`` outside (0, 1), or a layer name the network does not have (listing valid names).
    """

    def __init__(self, p: float = 0.5, layer: str | None = None) -> None:
        if not 0.0 < float(p) < 1.0:
            raise ValueError(f"feature dropout p must be in (0, 1), got {p!r}.")
        self.p = float(p)
        self.layer = layer
        self._rows: tuple[int, int] | None = None
        self._generator: torch.Generator | None = None
        self._handle = None

    def attach(self, network: nn.Module) -> None:
        """Hook the student's layer (called by the trainer after the teacher's copy, so the teacher has no hook)."""
        net = unwrap_module(network)
        self.layer = self.layer or bottleneck_layer(net)
        modules = dict(net.named_modules())
        if self.layer not in modules:
            raise ValueError(f"feature-perturbation layer {self.layer!r} is not a submodule of {type(net).__name__}; "
                             f"valid names: {', '.join(n for n in modules if n)}.")
        self._handle = modules[self.layer].register_forward_hook(self._hook)

    def remove(self) -> None:
        """Remove the hook."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @contextlib.contextmanager
    def on_rows(self, start: int, stop: int, generator: torch.Generator | None = None) -> Iterator[None]:
        """Perturb rows ``start:stop`` of the batch in the forward passes inside this block (training mode only).

        ``generator`` (a CPU generator) draws the dropped channels; the trainer passes its rank-aware
        stream of the iteration, so every rank drops its own channels and a resumed run drops the same.
        ``None``: PyTorch's global generator.
        """
        self._rows = (int(start), int(stop))
        self._generator = generator
        try:
            yield
        finally:
            self._rows, self._generator = None, None

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
        if self._rows is None or not module.training or not torch.is_tensor(output):
            return None
        start, stop = self._rows
        rows = output[start:stop]
        # channel dropout (as Dropout2d/3d: whole channels zeroed, the rest scaled by 1 / (1 - p)), drawn
        # from the given generator, which torch.nn.functional.dropout2d cannot take
        shape = (*rows.shape[:2], *([1] * (rows.ndim - 2)))
        keep = torch.rand(shape, generator=self._generator) >= self.p
        perturbed = rows * (keep.to(device=rows.device, dtype=rows.dtype) / (1.0 - self.p))
        return torch.cat([output[:start], perturbed, output[stop:]])
