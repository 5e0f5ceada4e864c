"""Batched functional SupMix / ClassMix and the class-selection policies.

One implementation, three doors: the trainer calls these functions on-line on
``B×C×spatial`` tensors; :mod:`.array` and :mod:`.dictionary` wrap them for single items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

__all__ = [
    "supervised_class_mix",
    "class_mix",
    "select_classes",
    "class_frequencies",
    "random_flips",
    "CLASS_POLICIES",
]

CLASS_POLICIES = ("random_half", "rarest", "inverse_frequency")

ClassesArg = Union[Sequence[int], Sequence[Sequence[int]], torch.Tensor]


def _check_tensor(name: str, value: object) -> torch.Tensor:
    """Raise unless ``value`` is a batched ``B×C×spatial`` tensor with 2-D or 3-D spatial shape.

    Raises:
        TypeError: when ``value`` is not a ``torch.Tensor``.
        ValueError: when it does not have 4 or 5 dimensions.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (B, C, *spatial), got {type(value).__name__}.")
    if value.ndim not in (4, 5):
        raise ValueError(f"`{name}` must have shape (B, C, H, W) or (B, C, D, H, W), got {tuple(value.shape)}.")
    return value


def _is_index_map(label: torch.Tensor) -> bool:
    return label.shape[1] == 1


def _to_index(name: str, label: torch.Tensor) -> torch.Tensor:
    """Return the ``B×1×spatial`` class index map of an index or soft/one-hot label.

    Raises:
        ValueError: when a 1-channel label is not of an integer dtype.
    """
    if _is_index_map(label):
        if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            raise ValueError(
                f"`{name}` is a 1-channel label of dtype {label.dtype}: expected integer class indices "
                "(or C=num_classes one-hot/probabilities)."
            )
        return label.long()
    return label.argmax(dim=1, keepdim=True)


def _num_classes_of(*labels: torch.Tensor) -> int | None:
    for label in labels:
        if not _is_index_map(label):
            return int(label.shape[1])
    return None


def _check_pair(prefix: str, image: torch.Tensor, label: torch.Tensor) -> None:
    if image.shape[0] != label.shape[0] or image.shape[2:] != label.shape[2:]:
        raise ValueError(
            f"`image_{prefix}` {tuple(image.shape)} and `label_{prefix}` {tuple(label.shape)} must share the batch "
            "size and spatial shape."
        )


def _class_table(classes: ClassesArg, batch: int, num_classes: int | None, device: torch.device) -> torch.Tensor:
    """Return a ``B×K`` bool table: ``table[b, c]`` is True when class ``c`` is pasted for sample ``b``.

    Raises:
        TypeError: when ``classes`` is neither a sequence nor a tensor.
        ValueError: for an empty top-level list, a per-sample list of the wrong length or
            an index outside ``[0, num_classes)`` (only negative ones when ``num_classes`` is unknown).
    """
    if isinstance(classes, torch.Tensor) and classes.dtype == torch.bool:
        if classes.ndim != 2 or classes.shape[0] != batch:
            raise ValueError(
                f"`classes` as a bool tensor must have shape (B={batch}, num_classes), got {tuple(classes.shape)}."
            )
        if num_classes is not None and classes.shape[1] > num_classes and bool(classes[:, num_classes:].any()):
            raise ValueError(
                f"`classes` selects class indices >= num_classes={num_classes} "
                f"(table of shape {tuple(classes.shape)}), outside [0, {num_classes - 1}]."
            )
        return classes.to(device)
    if isinstance(classes, (torch.Tensor, np.ndarray)):
        classes = classes.tolist()
    if isinstance(classes, (int, np.integer)):
        classes = [int(classes)]
    if not isinstance(classes, (list, tuple)):
        raise TypeError(
            "`classes` must be a list of class indices, a list of such lists (one per sample) or a "
            f"(B, num_classes) bool tensor, got {type(classes).__name__}."
        )
    if len(classes) == 0:
        raise ValueError("classes must not be empty: give at least one class index to paste (got []).")
    per_sample = isinstance(classes[0], (list, tuple, np.ndarray, torch.Tensor))
    if per_sample:
        if len(classes) != batch:
            raise ValueError(f"per-sample `classes` must have one list per sample (B={batch}), got {len(classes)} lists.")
        lists = [[int(c) for c in (x.tolist() if hasattr(x, "tolist") else x)] for x in classes]
    else:
        lists = [[int(c) for c in classes]] * batch
    flat = sorted({c for lst in lists for c in lst})
    bad = [c for c in flat if c < 0 or (num_classes is not None and c >= num_classes)]
    if bad:
        bound = f"[0, {num_classes - 1}]" if num_classes is not None else "[0, inf)"
        raise ValueError(f"`classes` {flat} has indices {bad} outside the label's class range {bound}.")
    width = max([num_classes or 0, *(c + 1 for c in flat), 1])
    table = torch.zeros(batch, width, dtype=torch.bool)
    for b, lst in enumerate(lists):
        if lst:
            table[b, lst] = True
    return table.to(device)


def _check_index_range(name: str, index: torch.Tensor, num_classes: int | None) -> tuple[int, int]:
    """Return ``(min, max)`` of an index map, raising when it holds indices outside ``[0, num_classes)``."""
    if index.numel() == 0:
        return 0, 0
    low, high = (int(v) for v in torch.aminmax(index))
    if low < 0 or (num_classes is not None and high >= num_classes):
        bound = f"[0, {num_classes - 1}]" if num_classes is not None else "[0, inf)"
        raise ValueError(f"`{name}` holds class indices in [{low}, {high}], outside {bound}.")
    return low, high


def _paste(
    image_dst: torch.Tensor,
    label_dst: torch.Tensor,
    image_src: torch.Tensor,
    label_src: torch.Tensor,
    classes: ClassesArg,
    names: tuple[str, str],
    num_classes: int | None,
    region: torch.Tensor | None = None,
    feather_sigma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared implementation: paste the pixels of ``src`` whose class is selected onto ``dst``.

    ``names`` are the suffixes of the destination and source arguments (``("u", "l")`` or
    ``("a", "b")``) used in error messages.
    """
    dst, src = names
    for name, value in (
        (f"image_{dst}", image_dst),
        (f"label_{dst}", label_dst),
        (f"image_{src}", image_src),
        (f"label_{src}", label_src),
    ):
        _check_tensor(name, value)
    _check_pair(dst, image_dst, label_dst)
    _check_pair(src, image_src, label_src)
    if image_dst.shape != image_src.shape:
        raise ValueError(
            f"`image_{dst}` {tuple(image_dst.shape)} and `image_{src}` {tuple(image_src.shape)} must have the same shape."
        )
    if label_dst.shape[2:] != label_src.shape[2:] or label_dst.shape[0] != label_src.shape[0]:
        raise ValueError(
            f"`label_{dst}` {tuple(label_dst.shape)} and `label_{src}` {tuple(label_src.shape)} must share the batch "
            "size and spatial shape."
        )
    k = _num_classes_of(label_dst, label_src)
    if num_classes is not None:
        if k is not None and k != num_classes:
            raise ValueError(f"num_classes={num_classes} does not match the {k} channels of the soft/one-hot label.")
        k = int(num_classes)
    for name, label in ((f"label_{dst}", label_dst), (f"label_{src}", label_src)):
        if not _is_index_map(label) and label.shape[1] != k:
            raise ValueError(f"`{name}` {tuple(label.shape)} has {label.shape[1]} channels, expected 1 (indices) or {k}.")
    index_dst = _to_index(f"label_{dst}", label_dst)
    index_src = _to_index(f"label_{src}", label_src)
    if k is not None and _is_index_map(label_dst):
        _check_index_range(f"label_{dst}", index_dst, k)
    high = _check_index_range(f"label_{src}", index_src, k)[1] if _is_index_map(label_src) else 0
    table = _class_table(classes, image_dst.shape[0], k, index_src.device)
    # per-sample lookup table gathered at every pixel: mask[b, 0, ...] = table[b, index_src[b, 0, ...]]
    width = table.shape[1]
    lookup = index_src.clamp(max=width - 1) if high >= width else index_src
    mask = torch.gather(table, 1, lookup.reshape(lookup.shape[0], -1)).reshape(index_src.shape)
    if high >= width:  # classes beyond the table (possible only without num_classes) are never selected
        mask &= index_src < width
    inside = None if region is None else _region_mask(region, index_src.shape, f"region (of image_{dst})")
    if inside is not None:
        mask &= inside
    if feather_sigma > 0:
        weight = _feathered(mask, float(feather_sigma)).to(image_dst.dtype)
        if inside is not None:
            weight = weight * inside  # the soft edge stays inside the region too
        image = weight * image_src.to(image_dst.dtype) + (1 - weight) * image_dst
    else:
        image = torch.where(mask, image_src.to(image_dst.dtype), image_dst)
    if _is_index_map(label_dst):
        label = torch.where(mask, index_src.to(label_dst.dtype), label_dst)
    else:
        onehot = torch.zeros_like(label_dst).scatter_(1, index_src, 1.0)
        label = torch.where(mask, onehot, label_dst)
    return image, label, mask


def _region_mask(region: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """A ``B×1×spatial`` bool mask from a region tensor (non-zero = inside).

    Raises:
        ValueError: when its batch or spatial shape differs from the labels'.
    """
    _check_tensor(name, region)
    if region.shape[0] != shape[0] or region.shape[2:] != shape[2:] or region.shape[1] != 1:
        raise ValueError(f"`{name}` {tuple(region.shape)} must have shape {(shape[0], 1, *shape[2:])}.")
    return region != 0


def _feathered(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blend weight of a paste: 1 on the mask, fading out as a Gaussian of ``sigma`` pixels around it."""
    from monai.networks.layers import GaussianFilter

    dims = mask.ndim - 2
    blurred = GaussianFilter(dims, sigma).to(mask.device)(mask.float())
    # the mask's own pixels keep the source content; a thin structure is not washed out
    return torch.maximum(mask.float(), (2 * blurred).clamp(max=1.0))


def supervised_class_mix(
    image_u: torch.Tensor,
    label_u: torch.Tensor,
    image_l: torch.Tensor,
    label_l: torch.Tensor,
    classes: ClassesArg,
    num_classes: int | None = None,
    region: torch.Tensor | None = None,
    feather_sigma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Supervised ClassMix (SupMix): paste ground-truth classes of labeled images onto unlabeled ones.

    Pixels whose ground-truth class in ``label_l`` is in ``classes`` are copied from
    ``image_l`` into ``image_u``, and their ground-truth class into the pseudo-label
    ``label_u``. Everything else is left exactly as it was.

    Args:
        image_u: unlabeled images ``B×C×spatial`` (2-D or 3-D spatial).
        label_u: their pseudo-labels: an integer index map ``B×1×spatial`` or soft /
            one-hot ``B×K×spatial``; a soft label stays soft outside the mask and is
            one-hot inside it.
        image_l: labeled images, same shape as ``image_u``.
        label_l: their ground truth, index map or one-hot (argmax is taken).
        classes: classes to paste: a list of class indices for every sample, a list of
            such lists (one per sample; an empty one pastes nothing), or a ``B×K`` bool
            tensor. See :func:`select_classes` for policies.
        num_classes: number of classes, to validate indices when both labels are index maps.
        region: optional ``B×1×spatial`` mask of where the unlabeled images may receive
            pasted pixels (non-zero inside, e.g. the field of view or the lungs).
        feather_sigma: when > 0, the pasted *image* content fades out over a Gaussian of
            this width (pixels) around the pasted region instead of a hard edge; the
            label and the returned mask stay hard.

    Returns:
        ``(image, label, mask)``: the mixed images (dtype of ``image_u``), the mixed
        labels (format and dtype of ``label_u``) and the ``B×1×spatial`` bool paste mask.

    Raises:
        TypeError: when an input is not a tensor or ``classes`` has a wrong type.
        ValueError: for mismatched shapes, an empty class list, class indices out of
            range or a float index map.
    """
    return _paste(image_u, label_u, image_l, label_l, classes, ("u", "l"), num_classes, region, feather_sigma)


def class_mix(
    image_a: torch.Tensor,
    label_a: torch.Tensor,
    image_b: torch.Tensor,
    label_b: torch.Tensor,
    classes: ClassesArg,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conventional ClassMix between two (unlabeled) images with pseudo-labels.

    Same convention as :func:`supervised_class_mix`: the first pair is the destination.
    Pixels of ``image_b`` whose (pseudo-)label in ``label_b`` (argmax when soft) is in
    ``classes`` are pasted onto ``image_a``, and their class onto ``label_a``.

    Returns:
        ``(image, label, mask)`` as in :func:`supervised_class_mix`.

    Raises:
        TypeError, ValueError: as :func:`supervised_class_mix`.
    """
    return _paste(image_a, label_a, image_b, label_b, classes, ("a", "b"), num_classes)


def class_frequencies(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pixel counts per class of a batch of index or one-hot labels.

    Args:
        labels: ``B×1×spatial`` integer index maps or ``B×K×spatial`` one-hot/soft labels
            (their argmax is counted).
        num_classes: number of classes ``K``.

    Returns:
        a float tensor of length ``num_classes`` (on the CPU) with the pixel count of each class.

    Raises:
        TypeError: when ``labels`` is not a tensor.
        ValueError: for a float index map or indices outside ``[0, num_classes)``.
    """
    index = _to_index("labels", _check_tensor("labels", labels))
    if int(num_classes) < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    _check_index_range("labels", index, int(num_classes))
    return torch.bincount(index.reshape(-1).cpu(), minlength=int(num_classes)).float()


def _uniform(generator: torch.Generator | np.random.RandomState | None, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform ``[0, 1)`` draws on the CPU from a torch generator, a numpy ``RandomState`` or the global RNG."""
    if isinstance(generator, np.random.RandomState):
        return torch.from_numpy(generator.random_sample(shape)).float()
    if generator is None:
        return torch.rand(shape)
    return torch.rand(shape, generator=generator, device=generator.device).cpu()


def random_flips(
    images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | np.random.RandomState | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample of a ``B×C×spatial`` batch along each spatial axis with probability 1/2, images and labels alike.

    SupMix's ``flip_source``: the pasted structures then do not sit where the supervised
    batch already shows them.
    """
    flips = _uniform(generator, (images.shape[0], images.ndim - 2)) < 0.5
    out_images, out_labels = images.clone(), labels.clone()
    for b in range(images.shape[0]):
        dims = [1 + d for d in range(images.ndim - 2) if flips[b, d]]  # spatial axes of one sample
        if dims:
            out_images[b] = images[b].flip(dims)
            out_labels[b] = labels[b].flip(dims)
    return out_images, out_labels


def select_classes(
    policy: str | Sequence[int],
    labels: torch.Tensor,
    num_classes: int,
    generator: torch.Generator | np.random.RandomState | None = None,
    class_frequencies: Sequence[float] | torch.Tensor | None = None,
    num_select: int | None = None,
) -> list[list[int]]:
    """Choose the classes to paste, one list per sample.

    Args:
        policy: a sequence of class indices (the same for every sample; the paper's manual
            choice, e.g. ``[1]`` for vessels or ``[1, 2]`` for GGO and consolidation), or one of
            :data:`CLASS_POLICIES`:

            - ``"random_half"``: ClassMix's rule, a random half (rounded up) of the classes
              present in each sample's source label;
            - ``"rarest"``: the ``num_select`` classes with the lowest pixel frequency
              (default ``None``: all classes but the most frequent, i.e. every minority class);
            - ``"inverse_frequency"``: each class drawn independently with probability
              ``min_freq / freq_c`` (proportional to ``1 / freq_c``, 1 for the rarest present
              class, and 1 for classes of zero frequency); never empty (falls back to the rarest).
        labels: source labels ``B×C×spatial`` (integer index map or one-hot/soft), the items
            whose pixels will be pasted.
        num_classes: number of classes ``K``.
        generator: ``torch.Generator`` or ``numpy.random.RandomState`` for reproducible draws
            (the global torch RNG when ``None``).
        class_frequencies: pixel counts or fractions per class (length ``K``, e.g. of the
            labeled set); computed from ``labels`` when ``None``.
        num_select: number of classes picked by ``"rarest"``.

    Returns:
        one sorted list of class indices per sample (``B`` lists).

    Raises:
        ValueError: for an unknown policy (listing the valid names), an empty list, indices
            outside ``[0, num_classes)``, frequencies of the wrong length or a bad ``num_select``.
        TypeError: when ``labels`` is not a tensor.
    """
    _check_tensor("labels", labels)
    batch = int(labels.shape[0])
    num_classes = int(num_classes)
    if not isinstance(policy, str):
        if isinstance(policy, (torch.Tensor, np.ndarray)):
            policy = policy.tolist()
        chosen = sorted({int(c) for c in policy})
        if not chosen:
            raise ValueError("classes must not be empty: give at least one class index to paste (got []).")
        bad = [c for c in chosen if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"`classes` {chosen} has indices {bad} outside [0, {num_classes - 1}].")
        return [list(chosen) for _ in range(batch)]
    if policy not in CLASS_POLICIES:
        raise ValueError(
            f"unknown class policy {policy!r}; expected a list of class indices or one of {list(CLASS_POLICIES)}."
        )
    if policy == "random_half":
        index = _to_index("labels", labels)
        result = []
        for b in range(batch):
            present = torch.unique(index[b]).cpu()
            order = torch.argsort(_uniform(generator, (len(present),)))
            count = (len(present) + 1) // 2
            result.append(sorted(int(present[i]) for i in order[:count]))
        return result
    if class_frequencies is None:
        freqs = globals()["class_frequencies"](labels, num_classes)
    else:
        freqs = class_frequencies
    freqs = torch.as_tensor(freqs, dtype=torch.float64).detach().cpu().reshape(-1)
    if freqs.numel() != num_classes:
        raise ValueError(f"`class_frequencies` has {freqs.numel()} entries, expected num_classes={num_classes}.")
    if bool((freqs < 0).any()):
        raise ValueError(f"`class_frequencies` must be non-negative, got {freqs.tolist()}.")
    if policy == "rarest":
        k = max(num_classes - 1, 1) if num_select is None else int(num_select)
        if not 1 <= k <= num_classes:
            raise ValueError(f"`num_select` must be in [1, {num_classes}], got {num_select}.")
        order = torch.argsort(freqs, stable=True)
        chosen = sorted(int(c) for c in order[:k])
        return [list(chosen) for _ in range(batch)]
    # inverse_frequency: p_c = min(1, f_min / f_c), f_min the smallest positive frequency
    positive = freqs > 0
    if bool(positive.any()):
        f_min = freqs[positive].min()
        prob = torch.where(positive, f_min / freqs.clamp(min=f_min), torch.ones_like(freqs)).float()
        rarest = int(torch.nonzero(freqs == f_min)[0])
    else:
        prob, rarest = torch.ones(num_classes), 0
    draws = _uniform(generator, (batch, num_classes)) < prob.unsqueeze(0)
    result = []
    for b in range(batch):
        chosen = [int(c) for c in torch.nonzero(draws[b]).flatten()]
        result.append(chosen or [rarest])
    return result
