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
    "CLASS_POLICIES",
]

CLASS_POLICIES = ("random_half", "rarest", "inverse_frequency")

ClassesArg = Union[Sequence[int], Sequence[Sequence[int]], torch.Tensor]


def _check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (B, C, *spatial), got {type(value).__name__}.")
    if value.ndim not in (4, 5):
        raise ValueError(f"`{name}` must have shape (B, C, H, W) or (B, C, D, H, W), got {tuple(value.shape)}.")
    return value


def _is_index_map(label: torch.Tensor) -> bool:
    return label.shape[1] == 1


def _to_index(name: str, label: torch.Tensor) -> torch.Tensor:
    """Return the ``B×1×spatial`` class index map of an index or soft/one-hot label."""
    if _is_index_map(label):
        if label.is_floating_point() or label.is_complex():
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
    """Return a ``B×K`` bool table: ``table[b, c]`` is True when class ``c`` is pasted for sample ``b``."""
    if isinstance(classes, torch.Tensor) and classes.dtype == torch.bool:
        if classes.ndim != 2 or classes.shape[0] != batch:
            raise ValueError(f"`classes` as a bool tensor must have shape (B={batch}, num_classes), got {tuple(classes.shape)}.")
        if num_classes is not None and classes.shape[1] > num_classes and bool(classes[:, num_classes:].any()):
            raise ValueError(f"`classes` selects a class >= num_classes={num_classes}.")
        return classes.to(device)
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if isinstance(classes, (int, np.integer)):
        classes = [int(classes)]
    if not isinstance(classes, (list, tuple)):
        raise TypeError(f"`classes` must be a list of class indices, a list of such lists or a bool tensor, got {type(classes).__name__}.")
    if len(classes) == 0:
        raise ValueError("`classes` must not be empty: give at least one class index to paste.")
    per_sample = isinstance(classes[0], (list, tuple, np.ndarray, torch.Tensor))
    if per_sample:
        if len(classes) != batch:
            raise ValueError(f"per-sample `classes` must have one list per sample (B={batch}), got {len(classes)}.")
        lists = [[int(c) for c in (x.tolist() if hasattr(x, "tolist") else x)] for x in classes]
    else:
        lists = [[int(c) for c in classes]] * batch
    flat = [c for lst in lists for c in lst]
    if any(c < 0 for c in flat) or (num_classes is not None and any(c >= num_classes for c in flat)):
        bound = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
        raise ValueError(f"`classes` {sorted(set(flat))} contains an index outside the label's class range {bound}.")
    width = max([num_classes or 0, *(c + 1 for c in flat), 1])
    table = torch.zeros(batch, width, dtype=torch.bool)
    for b, lst in enumerate(lists):
        if lst:
            table[b, lst] = True
    return table.to(device)


def _paste(
    image_dst: torch.Tensor,
    label_dst: torch.Tensor,
    image_src: torch.Tensor,
    label_src: torch.Tensor,
    classes: ClassesArg,
    names: tuple[str, str],
    num_classes: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared implementation: paste pixels of ``src`` whose class is selected onto ``dst``."""
    dst, src = names
    for name, value in ((f"image_{dst}", image_dst), (f"label_{dst}", label_dst), (f"image_{src}", image_src), (f"label_{src}", label_src)):
        _check_tensor(name, value)
    _check_pair(dst, image_dst, label_dst)
    _check_pair(src, image_src, label_src)
    if image_dst.shape != image_src.shape:
        raise ValueError(f"`image_{dst}` {tuple(image_dst.shape)} and `image_{src}` {tuple(image_src.shape)} must have the same shape.")
    if label_dst.shape[2:] != label_src.shape[2:] or label_dst.shape[0] != label_src.shape[0]:
        raise ValueError(f"`label_{dst}` {tuple(label_dst.shape)} and `label_{src}` {tuple(label_src.shape)} must share batch and spatial shape.")
    k = num_classes if num_classes is not None else _num_classes_of(label_dst, label_src)
    for name, label in ((f"label_{dst}", label_dst), (f"label_{src}", label_src)):
        if not _is_index_map(label) and k is not None and label.shape[1] != k:
            raise ValueError(f"`{name}` has {label.shape[1]} channels, expected 1 (indices) or num_classes={k}.")
    index_dst = _to_index(f"label_{dst}", label_dst)
    index_src = _to_index(f"label_{src}", label_src)
    if k is not None:
        for name, index in ((f"label_{dst}", index_dst), (f"label_{src}", index_src)):
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= k):
                raise ValueError(f"`{name}` holds class indices in [{int(index.min())}, {int(index.max())}], outside [0, {k - 1}].")
    elif index_src.numel() and int(index_src.min()) < 0:
        raise ValueError(f"`label_{src}` holds negative class indices.")
    table = _class_table(classes, image_dst.shape[0], k, index_src.device)
    # gather the per-sample lookup table at every pixel: mask[b, 0, ...] = table[b, index_src[b, 0, ...]]
    clamped = index_src.clamp(max=table.shape[1] - 1)
    flat = clamped.reshape(clamped.shape[0], -1)
    mask = torch.gather(table, 1, flat).reshape(index_src.shape) & (index_src < table.shape[1])
    image = torch.where(mask, image_src.to(image_dst.dtype), image_dst)
    if _is_index_map(label_dst):
        label = torch.where(mask, index_src.to(label_dst.dtype), label_dst)
    else:
        onehot = torch.zeros_like(label_dst).scatter_(1, index_src, 1.0)
        label = torch.where(mask, onehot, label_dst)
    return image, label, mask


def supervised_class_mix(
    image_u: torch.Tensor,
    label_u: torch.Tensor,
    image_l: torch.Tensor,
    label_l: torch.Tensor,
    classes: ClassesArg,
    num_classes: int | None = None,
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

    Returns:
        ``(image, label, mask)``: the mixed images (dtype of ``image_u``), the mixed
        labels (format and dtype of ``label_u``) and the ``B×1×spatial`` bool paste mask.

    Raises:
        TypeError: when an input is not a tensor or ``classes`` has a wrong type.
        ValueError: for mismatched shapes, an empty class list, class indices out of
            range or a float index map.
    """
    return _paste(image_u, label_u, image_l, label_l, classes, ("u", "l"), num_classes)


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
    """Pixel counts per class (float tensor of length ``num_classes``) of index or one-hot labels."""
    index = _to_index("labels", _check_tensor("labels", labels))
    return torch.bincount(index.reshape(-1).cpu(), minlength=num_classes)[:num_classes].float()


def _uniform(generator: torch.Generator | np.random.RandomState | None, shape: tuple[int, ...]) -> torch.Tensor:
    if isinstance(generator, np.random.RandomState):
        return torch.from_numpy(generator.random_sample(shape)).float()
    return torch.rand(shape, generator=generator)


def select_classes(
    policy: str | Sequence[int],
    labels: torch.Tensor,
    num_classes: int,
    generator: torch.Generator | np.random.RandomState | None = None,
    class_frequencies: Sequence[float] | torch.Tensor | None = None,
    num_select: int | None = None,
) -> list[list[int]]:
    """Choose the classes to paste, per sample.

    Args:
        policy: a list of class indices (the same for every sample; the paper's manual
            choice, e.g. ``[1]`` for vessels), or one of:

            - ``"random_half"``: ClassMix's rule, a random half (rounded up) of the
              classes present in each sample's source label;
            - ``"rarest"``: the ``num_select`` classes with the lowest pixel frequency
              (default: all classes but the most frequent, i.e. every minority class);
            - ``"inverse_frequency"``: each class drawn independently with probability
              ``min_freq / freq_c`` (the rarest always, frequent ones seldom); never empty.
        labels: source labels ``B×C×spatial`` (index map or one-hot).
        num_classes: number of classes.
        generator: ``torch.Generator`` or ``numpy.random.RandomState`` for reproducibility.
        class_frequencies: pixel counts or fractions per class (e.g. of the labeled
            set); computed from ``labels`` when ``None``.
        num_select: number of classes for ``"rarest"``.

    Returns:
        one list of class indices per sample.

    Raises:
        ValueError: for an unknown policy, an empty list or indices out of range.
    """
    batch = int(labels.shape[0])
    if not isinstance(policy, str):
        chosen = [int(c) for c in policy]
        if not chosen:
            raise ValueError("`classes` must not be empty: give at least one class index to paste.")
        bad = [c for c in chosen if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"`classes` {chosen} has indices {bad} outside [0, {num_classes - 1}].")
        return [list(chosen) for _ in range(batch)]
    if policy not in CLASS_POLICIES:
        raise ValueError(f"unknown class policy {policy!r}; expected a list of class indices or one of {CLASS_POLICIES}.")
    if policy == "random_half":
        index = _to_index("labels", labels)
        result = []
        for b in range(batch):
            present = torch.unique(index[b]).cpu()
            order = torch.argsort(_uniform(generator, (len(present),)))
            count = (len(present) + 1) // 2
            result.append(sorted(int(present[i]) for i in order[:count]))
        return result
    freqs = class_frequencies if class_frequencies is not None else globals()["class_frequencies"](labels, num_classes)
    freqs = torch.as_tensor(freqs, dtype=torch.float64).cpu()
    if freqs.numel() != num_classes:
        raise ValueError(f"`class_frequencies` has {freqs.numel()} entries, expected num_classes={num_classes}.")
    if policy == "rarest":
        k = num_classes - 1 if num_select is None else int(num_select)
        if not 1 <= k <= num_classes:
            raise ValueError(f"`num_select` must be in [1, {num_classes}], got {num_select}.")
        order = torch.argsort(freqs, stable=True)
        chosen = sorted(int(c) for c in order[:k])
        return [list(chosen) for _ in range(batch)]
    # inverse_frequency
    safe = freqs.clamp(min=1e-12)
    prob = (safe.min() / safe).float()
    rarest = int(torch.argmin(freqs))
    draws = _uniform(generator, (batch, num_classes)) < prob.unsqueeze(0)
    result = []
    for b in range(batch):
        chosen = [int(c) for c in torch.nonzero(draws[b]).flatten()]
        result.append(chosen or [rarest])
    return result
