"""Capture the output of a named layer of any network during its forward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_supmix.utils.distributed import unwrap_module

__all__ = ["FeatureTap", "DEFAULT_FEATURE_LAYERS", "default_feature_layer", "feature_channels"]

#: Default layers tapped for SUFD: the last decoder stage before the segmentation head.
#: ``monai.networks.nets.UNet``: ``"model.1"`` is the top-level skip connection, i.e. the
#: concatenation of the first encoder block and the decoder's upsampled features
#: (``2 * channels[0]`` channels at half the input resolution).
#: ``monai.networks.nets.BasicUNet``: ``"upcat_1"`` is the last up-sampling block
#: (``features[5]`` channels at full resolution).
DEFAULT_FEATURE_LAYERS: dict[str, str] = {"UNet": "model.1", "BasicUNet": "upcat_1", "BasicUnet": "upcat_1"}


def default_feature_layer(network: nn.Module) -> str:
    """Return the documented default SUFD layer name for ``network``.

    Raises:
        ValueError: when the network class has no documented default.
    """
    name = type(unwrap_module(network)).__name__
    if name not in DEFAULT_FEATURE_LAYERS:
        raise ValueError(
            f"No default feature layer for {name}; pass `feature_layer` explicitly "
            f"(defaults exist for {sorted(DEFAULT_FEATURE_LAYERS)})."
        )
    return DEFAULT_FEATURE_LAYERS[name]


class FeatureTap:
    """Register a forward hook on a named submodule and keep its latest output.

    Own code rather than :class:`monai.visualize.ModelWithHooks` (MONAI's forward-hook cache):
    that class runs the network itself in eval mode (the student trains in train mode inside
    the inferer), only warns about a layer name that does not exist, and cannot remove its hooks.

    Works with any ``nn.Module`` (also DDP-wrapped ones); the hook stays attached
    until :meth:`remove` is called, and :attr:`output` holds the output of the most
    recent forward pass (with its autograd graph, so losses on it back-propagate
    into the network).

    Args:
        network: the network to tap.
        layer_name: dotted name of the submodule as in ``network.named_modules()``;
            ``None`` picks :func:`default_feature_layer`.

    Raises:
        ValueError: when ``layer_name`` does not exist; the message lists valid names.

    Example::

        tap = FeatureTap(unet, "model.1")
        logits = unet(images)
        features = tap.output
    """

    def __init__(self, network: nn.Module, layer_name: str | None = None) -> None:
        module = unwrap_module(network)
        self.layer_name = default_feature_layer(module) if layer_name is None else layer_name
        names = dict(module.named_modules())
        if self.layer_name not in names or self.layer_name == "":
            valid = [n for n in names if n]
            shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
            raise ValueError(
                f"feature_layer {self.layer_name!r} is not a submodule of {type(module).__name__}; "
                f"valid names: {shown}"
            )
        self.output: torch.Tensor | None = None
        self._handle = names[self.layer_name].register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, (list, tuple)):
            output = output[0]
        self.output = output  # type: ignore[assignment]

    def pop(self) -> torch.Tensor:
        """Return the captured output and clear it.

        Raises:
            RuntimeError: when no forward pass ran since the last call.
        """
        if self.output is None:
            raise RuntimeError(f"FeatureTap({self.layer_name!r}) captured nothing: run the network first.")
        out, self.output = self.output, None
        return out

    def remove(self) -> None:
        """Detach the hook."""
        self._handle.remove()


def feature_channels(
    network: nn.Module, layer_name: str | None, in_channels: int, spatial_size: Sequence[int]
) -> int:
    """Return the channel count of ``layer_name``'s output, found with one dry forward pass.

    Used by the bundles to size :class:`FeatureDiscriminator` for any network.

    Args:
        network: the segmentation network.
        layer_name: the tapped layer (``None`` = default for the network class; ``"output"``
            = the network's output, i.e. the number of classes, for output-space SUFD).
        in_channels: input channels of the network.
        spatial_size: a small spatial size the network accepts (e.g. ``(64, 64)``).
    """
    module = unwrap_module(network)
    tap = None if layer_name == "output" else FeatureTap(module, layer_name)
    was_training = module.training
    try:
        module.eval()
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            output = module(torch.zeros(1, in_channels, *spatial_size, device=device))
        return int((output if tap is None else tap.pop()).shape[1])
    finally:
        if tap is not None:
            tap.remove()
        module.train(was_training)
