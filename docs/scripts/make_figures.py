"""Make the method figures of the documentation from the built-in phantoms.

Writes ``docs/_static/supmix.png`` (SupMix on a fundus phantom and a CT phantom: the
unlabeled image, its EMA-teacher pseudo-label, a labeled image with its ground truth,
the mixed image and the mixed pseudo-label with the paste mask) and
``docs/_static/sufd.png`` (a schematic of the Sup-Unsup Feature Discriminator, and
real outputs: the student's feature maps of a labeled and of an unlabeled image, the
discriminator's per-patch probabilities and its accuracy during training).

Nothing is drawn by hand: a small MONAI ``UNet`` is trained for a few hundred
iterations with :class:`monai_supmix.engines.SemiSupervisedTrainer` (mean teacher,
SupMix, SUFD) on :mod:`monai_supmix.data.synthetic` phantoms, and the panels show
what its teacher, student and discriminator produce. Deterministic for a given
PyTorch build (``--seed``); about two minutes of CPU time on one core.

Usage (from the repository root)::

    python docs/scripts/make_figures.py            # writes docs/_static/*.png
    python docs/scripts/make_figures.py --out /tmp/figs --iterations 50
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from ignite.engine import Events
from matplotlib.colors import ListedColormap
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from monai.data import DataLoader, Dataset
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import Compose, RandFlipd, RandSpatialCropd

from monai_supmix.data import make_ct_phantom, make_retina_phantom
from monai_supmix.engines import (
    SUFD,
    MeanTeacher,
    PseudoLabelLoss,
    SemiSupervisedTrainer,
    SupervisedMixing,
)
from monai_supmix.networks import FeatureDiscriminator, FeatureTap, feature_channels
from monai_supmix.transforms import select_classes, supervised_class_mix

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "_static")

#: label colours: background transparent, vessel / GGO yellow-green, consolidation red
LABEL_CMAP = ListedColormap([(0, 0, 0, 0), (1.0, 0.85, 0.1, 0.85), (0.95, 0.2, 0.2, 0.85)])

TASKS = {
    "fundus": {
        "make": make_retina_phantom,
        "in_channels": 3,
        "num_classes": 2,
        "names": ["background", "vessel"],
        "size": (192, 192),
    },
    "ct": {
        "make": make_ct_phantom,
        "in_channels": 1,
        "num_classes": 3,
        "names": ["background", "ground-glass", "consolidation"],
        "size": (192, 192),
    },
}


def _phantoms(task: str, seeds: range, labeled: bool) -> list[dict]:
    spec = TASKS[task]
    items = []
    for s in seeds:
        p = spec["make"](s, size=spec["size"])
        item = {"image": p["image"].astype(np.float32)}
        if labeled:
            item["label"] = p["label"].astype(np.int64)
        items.append(item)
    return items


def train(task: str, iterations: int, seed: int) -> tuple[SemiSupervisedTrainer, list[dict], list[dict], dict]:
    """Train a small UNet semi-supervised (SupMix + SUFD) on phantoms; return the trainer and data."""
    spec = TASKS[task]
    torch.manual_seed(seed)
    offset = 0 if task == "fundus" else 1000
    labeled = _phantoms(task, range(offset, offset + 3), labeled=True)
    unlabeled = _phantoms(task, range(offset + 100, offset + 112), labeled=False)
    keys = ["image", "label"]
    aug = [RandSpatialCropd(keys, roi_size=(96, 96), random_size=False, allow_missing_keys=True),
           RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True)]
    labeled_loader = DataLoader(Dataset(labeled, Compose(aug)), batch_size=4, shuffle=True)
    unlabeled_loader = DataLoader(Dataset(unlabeled, Compose(aug)), batch_size=4, shuffle=True, drop_last=True)

    def unet() -> UNet:
        return UNet(2, spec["in_channels"], spec["num_classes"], channels=(16, 32, 64), strides=(2, 2), num_res_units=1)

    net = unet()
    disc = FeatureDiscriminator(2, feature_channels(net, None, spec["in_channels"], (64, 64)), channels=(32, 64), strides=(2, 2))
    trainer = SemiSupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        epoch_length=iterations,
        train_data_loader=labeled_loader,
        network=net,
        optimizer=torch.optim.AdamW(net.parameters(), 2e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        unlabeled_data_loader=unlabeled_loader,
        num_classes=spec["num_classes"],
        mean_teacher=MeanTeacher(decay=0.95, network=unet()),
        mixing=SupervisedMixing("rarest"),
        pseudo_label_loss=PseudoLabelLoss(rampup_iterations=iterations // 3),
        decollate=False,  # the history below reads engine.state.output as one dict of terms
        sufd=SUFD(disc, torch.optim.Adam(disc.parameters(), 1e-4, betas=(0.5, 0.999)), weight=0.01,
                  input="mixed", collapse_patience=10**9),
        seed=seed,
    )
    history: dict[str, list[float]] = {"discriminator_accuracy": [], "supervised_loss": [], "unsupervised_loss": []}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine) -> None:
        for key, values in history.items():
            values.append(float(engine.state.output[key]))

    trainer.run()
    return trainer, labeled, unlabeled, history


def _predict(network: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    network.eval()
    inferer = SlidingWindowInferer(roi_size=(96, 96), sw_batch_size=4, overlap=0.25)
    with torch.no_grad():
        return inferer(torch.as_tensor(image)[None], network)[0].softmax(0).numpy()


def _show_image(ax, image: np.ndarray, title: str) -> None:
    if image.shape[0] == 3:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
    else:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _show_label(ax, image: np.ndarray, label: np.ndarray, title: str, mask: np.ndarray | None = None) -> None:
    gray = image.mean(0)
    ax.imshow(gray, cmap="gray", vmin=0, vmax=1, alpha=0.6)
    ax.imshow(label, cmap=LABEL_CMAP, vmin=0, vmax=2, interpolation="nearest")
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=["cyan"], linewidths=0.6)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def supmix_figure(runs: dict, path: str) -> None:
    """One row per phantom: unlabeled image, pseudo-label, labeled image, GT, mixed image, mixed label."""
    fig, axes = plt.subplots(len(runs), 6, figsize=(13.2, 2.8 * len(runs) + 0.4))
    axes = np.atleast_2d(axes)
    for row, (task, (trainer, labeled, unlabeled, _)) in enumerate(runs.items()):
        spec = TASKS[task]
        image_u = unlabeled[0]["image"]
        probs = _predict(trainer.teacher, image_u)
        pseudo = probs.argmax(0)[None].astype(np.int64)
        source = max(labeled, key=lambda item: int((item["label"] > 0).sum()))
        image_l, label_l = source["image"], source["label"]
        label_l_t = torch.as_tensor(label_l)[None]
        classes = select_classes("rarest", label_l_t, spec["num_classes"])
        mixed, mixed_label, mask = supervised_class_mix(
            torch.as_tensor(image_u)[None], torch.as_tensor(pseudo)[None], torch.as_tensor(image_l)[None], label_l_t, classes
        )
        names = ", ".join(spec["names"][c] for c in classes[0])
        ax = axes[row]
        _show_image(ax[0], image_u, "unlabeled image\n")
        _show_label(ax[1], image_u, pseudo[0], "its EMA-teacher\npseudo-label")
        _show_image(ax[2], image_l, "labeled image\n")
        _show_label(ax[3], image_l, label_l[0], "its ground truth\n")
        _show_image(ax[4], mixed[0].numpy(), f"SupMix image\n(pasted: {names})")
        _show_label(ax[5], mixed[0].numpy(), mixed_label[0, 0].numpy(), "mixed pseudo-label\n(paste mask in cyan)", mask[0, 0].numpy())
        ax[0].text(-0.08, 0.5, task, transform=ax[0].transAxes, rotation=90, va="center", ha="right", fontsize=10)
    fig.suptitle(
        "Supervised ClassMix: ground-truth pixels of the rare classes of a labeled image are pasted onto an unlabeled "
        "image and its pseudo-label",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(fig, path)


def _save(fig, path: str, dpi: int = 80) -> None:
    """Save as a 256-colour PNG (the phantoms' noise makes true-colour PNGs several times larger)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _box(ax, xy, text, color, width=0.15, height=0.16) -> None:
    x, y = xy
    ax.add_patch(
        FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.01", fc=color, ec="0.3", lw=0.8)
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, start, end, text="", color="0.25", style="-|>") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=color, lw=1.0))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.04, text, ha="center", fontsize=7.5, color=color)


def _schematic(ax) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    _box(ax, (0.1, 0.78), "labeled image\n(with GT)", "#dbe9f6")
    _box(ax, (0.1, 0.30), "unlabeled image\n(SupMix-mixed)", "#fde2cf")
    _box(ax, (0.34, 0.54), "student\nsegmentation net\n(MONAI UNet)", "#e6e6e6", height=0.3)
    _box(ax, (0.60, 0.78), "features\n(layer model.1)", "#dbe9f6")
    _box(ax, (0.60, 0.30), "features\n(layer model.1)", "#fde2cf")
    _box(ax, (0.86, 0.54), "feature\ndiscriminator D\n(per-patch logits)", "#e3f1dc", height=0.3)
    _arrow(ax, (0.18, 0.76), (0.26, 0.62))
    _arrow(ax, (0.18, 0.32), (0.26, 0.46))
    _arrow(ax, (0.42, 0.62), (0.52, 0.76))
    _arrow(ax, (0.42, 0.46), (0.52, 0.32))
    _arrow(ax, (0.68, 0.76), (0.78, 0.62))
    _arrow(ax, (0.68, 0.32), (0.78, 0.46))
    ax.text(0.86, 0.92, "D learns: labeled = real (1), unlabeled = fake (0)", ha="center", fontsize=8, color="#2b6b1f")
    _arrow(ax, (0.86, 0.38), (0.42, 0.14), color="#b03a2e")
    ax.text(
        0.63, 0.10, "adversarial loss: student makes unlabeled features look labeled", ha="center", fontsize=8, color="#b03a2e"
    )
    ax.set_title("Sup-Unsup Feature Discriminator (SUFD)", fontsize=10)


def _feature_image(features: torch.Tensor, basis: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """First three principal components of a ``C×H×W`` feature map as an RGB image."""
    flat = features.reshape(features.shape[0], -1).T
    flat = flat - flat.mean(0)
    if basis is None:
        _, _, v = torch.linalg.svd(flat, full_matrices=False)
        basis = v[:3].T
    rgb = (flat @ basis).T.reshape(3, *features.shape[1:])
    low = rgb.amin(dim=(1, 2), keepdim=True)
    high = rgb.amax(dim=(1, 2), keepdim=True)
    return ((rgb - low) / (high - low + 1e-8)).permute(1, 2, 0).numpy(), basis


def sufd_figure(run, path: str) -> None:
    trainer, labeled, unlabeled, history = run
    net = trainer.network.eval()
    disc = trainer.discriminator.eval()
    tap = FeatureTap(net, "model.1")
    rows = []
    basis = None
    with torch.no_grad():
        for name, item in (("labeled", labeled[0]), ("unlabeled", unlabeled[1])):
            crop = torch.as_tensor(item["image"][:, 48:144, 48:144])[None]
            net(crop)
            features = tap.pop()[0]
            # 2x2 average pooling for display only: hides the checkerboard of the strided up-convolutions
            pooled = torch.nn.functional.avg_pool2d(features[None], 2)[0]
            feat_rgb, basis = _feature_image(pooled, basis)
            prob = torch.sigmoid(disc(features[None]))[0, 0].numpy()
            rows.append((name, crop[0].numpy(), feat_rgb, prob))
    tap.remove()
    fig = plt.figure(figsize=(13.2, 5.8))
    grid = fig.add_gridspec(2, 6, height_ratios=[1.0, 1.0])
    _schematic(fig.add_subplot(grid[0, :4]))
    ax = fig.add_subplot(grid[0, 4:])
    acc = np.asarray(history["discriminator_accuracy"])
    window = max(len(acc) // 20, 1)
    smooth = np.convolve(acc, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(len(smooth)) + window, smooth, color="#2b6b1f", lw=1.2)
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.02)
    ax.set_xlabel("iteration", fontsize=8)
    ax.set_title("D's accuracy during training\n(0.5: cannot tell labeled from unlabeled)", fontsize=9)
    ax.tick_params(labelsize=7)
    for col, (name, image, feat, prob) in enumerate(rows):
        a = fig.add_subplot(grid[1, col * 3])
        _show_image(a, image, f"{name} image (crop)")
        a = fig.add_subplot(grid[1, col * 3 + 1])
        a.imshow(feat, interpolation="nearest")
        a.set_title(f"{name}: student features\n(layer model.1, 3 PCA components)", fontsize=8)
        a.axis("off")
        a = fig.add_subplot(grid[1, col * 3 + 2])
        shown = a.imshow(prob, cmap="RdYlGn", vmin=0.3, vmax=0.7, interpolation="nearest")
        a.set_title(f"{name}: D's per-patch P(labeled)\nmean {prob.mean():.3f}", fontsize=8)
        a.axis("off")
        fig.colorbar(shown, ax=a, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    fig.tight_layout()
    _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: docs/_static)")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations per phantom type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    runs = {task: train(task, args.iterations, args.seed) for task in TASKS}
    supmix_figure(runs, os.path.join(args.out, "supmix.png"))
    sufd_figure(runs["fundus"], os.path.join(args.out, "sufd.png"))
    for name in ("supmix.png", "sufd.png"):
        path = os.path.join(args.out, name)
        print(f"{path}: {os.path.getsize(path) / 1024:.0f} KB")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
