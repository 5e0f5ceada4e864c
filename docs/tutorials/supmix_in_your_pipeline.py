# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # From a supervised MONAI pipeline to SupMix + SUFD
#
# This tutorial starts from an ordinary supervised MONAI segmentation pipeline (a
# `Compose` of dictionary transforms, a `monai.networks.nets.UNet` and a
# `monai.engines.SupervisedTrainer`) and turns it semi-supervised with
# `monai_supmix`:
#
# 1. train the supervised baseline on **2 labeled** fundus phantoms;
# 2. use `SupervisedClassMixd` in a `Compose`, on a dictionary that pairs an unlabeled
#    image (with a pseudo-label) and a labeled partner;
# 3. replace `SupervisedTrainer` with `SemiSupervisedTrainer` (EMA teacher, ClassMix
#    then SupMix, Sup-Unsup Feature Discriminator) and give it 20
#    unlabeled phantoms;
# 4. compare both models on held-out phantoms with `monai.metrics` (per-class IoU, mIoU).
#
# Everything runs on a CPU in a few minutes with the synthetic phantoms of
# `monai_supmix.data.synthetic` (thin, low-contrast vessels; no real data needed).
# Set `MONAI_SUPMIX_TUTORIAL_FAST=1` for a quick smoke run (fewer iterations; the
# comparison is then meaningless).
#
# This file is the source of `supmix_in_your_pipeline.ipynb`
# (`python docs/scripts/py_to_ipynb.py` regenerates the notebook).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.metrics import MeanIoU
from monai.networks.nets import UNet
from monai.networks.utils import one_hot
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropd,
)
from monai.utils import set_determinism

from monai_supmix.data import make_retina_phantom
from monai_supmix.engines import (
    SUFD,
    ClassMixing,
    MeanTeacher,
    PseudoLabelLoss,
    SemiSupervisedTrainer,
    SequentialMixing,
    SupervisedMixing,
    loss_terms,
)
from monai_supmix.losses import ConfidenceWeightedCELoss
from monai_supmix.networks import FeatureDiscriminator, feature_channels
from monai_supmix.transforms import (
    BatchPerturbation,
    SupervisedClassMixd,
    strong_perturbation,
)

FAST = os.environ.get("MONAI_SUPMIX_TUTORIAL_FAST", "0") == "1"
# the same number of training iterations for both models
ITERATIONS = int(os.environ.get("MONAI_SUPMIX_TUTORIAL_ITERATIONS", "40" if FAST else "800"))
SIZE = (160, 160)  # phantom size (the bundles use 256 x 256)
PATCH = (64, 64)  # training patch size
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
set_determinism(seed=0)
print(f"device: {device}, iterations per model: {ITERATIONS}")

# %% [markdown]
# ## Data: 2 labeled, 20 unlabeled and 6 test phantoms
#
# `make_retina_phantom(seed)` returns channel-first numpy arrays: `image` (3×H×W in
# [0, 1]), `label` (1×H×W, 0 background / 1 vessel) and `fov` (the circular field of
# view). A MONAI datalist is a list of such dictionaries; here the arrays are in memory
# (with files, put paths there and add `LoadImaged` at the start of the chains).

# %%
def phantom(seed: int) -> dict:
    p = make_retina_phantom(seed, size=SIZE)
    return {"image": p["image"], "label": p["label"].astype(np.int64), "fov": p["fov"]}


labeled = [phantom(s) for s in range(2)]
unlabeled = [{"image": phantom(s)["image"]} for s in range(100, 120)]  # labels never used
test = [phantom(s) for s in range(200, 206)]
print(f"{len(labeled)} labeled, {len(unlabeled)} unlabeled, {len(test)} test images of {SIZE}")
print(f"vessel pixels in the labeled set: {np.mean([d['label'].mean() for d in labeled]):.1%}")

# %% [markdown]
# ## 1. The supervised pipeline
#
# Random 64×64 patches with flips and 90° rotations, a small MONAI `UNet` and
# `SupervisedTrainer` with Dice + cross-entropy. `epoch_length` fixes the number of
# iterations per epoch, so that both models below get exactly `ITERATIONS` updates.

# %%
keys = ["image", "label"]
train_transforms = Compose(
    [
        RandSpatialCropd(keys, roi_size=PATCH, random_size=False, allow_missing_keys=True),
        RandFlipd(keys, prob=0.5, spatial_axis=0, allow_missing_keys=True),
        RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),
        RandRotate90d(keys, prob=0.5, allow_missing_keys=True),
        EnsureTyped(keys, track_meta=False, allow_missing_keys=True),
    ]
)
labeled_loader = DataLoader(Dataset(labeled, train_transforms), batch_size=4, shuffle=True)


def make_unet() -> UNet:
    return UNet(
        spatial_dims=2, in_channels=3, out_channels=2, channels=(16, 32, 64), strides=(2, 2), num_res_units=1
    ).to(device)


torch.manual_seed(0)
supervised_net = make_unet()
supervised = SupervisedTrainer(
    device=device,
    max_epochs=1,
    epoch_length=ITERATIONS,
    train_data_loader=labeled_loader,
    network=supervised_net,
    optimizer=torch.optim.AdamW(supervised_net.parameters(), 2e-3),
    loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
)
start = time.time()
supervised.run()
print(f"supervised training: {time.time() - start:.0f} s, last loss {supervised.state.output[0]['loss']:.3f}")

# %% [markdown]
# ## Evaluation with `monai.metrics`
#
# Sliding-window inference over whole test images, argmax, one-hot, and
# `MeanIoU(reduction="mean_batch")` for the IoU of each class; pixels outside the
# field of view are left out (as the CHASE bundle does). mIoU is the mean over the two
# classes.

# %%
def evaluate(network: torch.nn.Module) -> dict:
    network.eval()
    inferer = SlidingWindowInferer(roi_size=PATCH, sw_batch_size=8, overlap=0.25, mode="gaussian")
    metric = MeanIoU(include_background=True, reduction="mean_batch")
    with torch.no_grad():
        for item in test:
            image = torch.as_tensor(item["image"])[None].to(device)
            pred = inferer(image, network).argmax(1, keepdim=True).cpu()
            fov = torch.as_tensor(item["fov"])[None].bool()
            pred_1hot = one_hot(pred, 2) * fov
            label_1hot = one_hot(torch.as_tensor(item["label"])[None], 2) * fov
            metric(pred_1hot, label_1hot)
    iou = metric.aggregate().tolist()
    return {"IoU background": iou[0], "IoU vessel": iou[1], "mIoU": float(np.mean(iou))}


results = {"supervised (2 labeled)": evaluate(supervised_net)}
print(results)

# %% [markdown]
# ## 2. SupMix as a dictionary transform
#
# `SupervisedClassMixd` works on one sample that pairs an **unlabeled** item (`image`,
# `label` = its pseudo-label) with a **labeled** partner in the same dictionary
# (`labeled_image`, `labeled_label` by default). It pastes the ground-truth pixels of
# the chosen classes of the partner onto the unlabeled image *and* onto its
# pseudo-label. `classes="rarest"` picks every class but the most frequent one
# (here: vessel) automatically; `[1]` would name it by hand, and `"inverse_frequency"`
# and `"random_half"` are the other policies.
#
# Here the pseudo-labels come offline from the supervised model: a complete
# "offline pseudo-label" pipeline is this `Compose` in a `Dataset`. (Pairs can also be
# built with `monai.data.ZipDataset` and a merging transform.)

# %%
def pseudo_label(network: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    network.eval()
    inferer = SlidingWindowInferer(roi_size=PATCH, sw_batch_size=8, overlap=0.25)
    with torch.no_grad():
        logits = inferer(torch.as_tensor(image)[None].to(device), network)
    return logits.argmax(1).cpu().numpy().astype(np.int64)  # 1 x H x W index map


rng = np.random.default_rng(0)
pairs = []
for item in unlabeled[:4]:
    partner = labeled[rng.integers(len(labeled))]
    pairs.append(
        {
            "image": item["image"],
            "label": pseudo_label(supervised_net, item["image"]),
            "labeled_image": partner["image"],
            "labeled_label": partner["label"],
        }
    )

mix_pipeline = Compose(
    [
        SupervisedClassMixd(
            keys="image",
            label_key="label",
            labeled_keys=("labeled_image", "labeled_label"),
            classes="rarest",
            num_classes=2,
            prob=1.0,
            mask_key="paste_mask",
        ),
        EnsureTyped(["image", "label"], track_meta=False),
    ]
)
mix_pipeline.set_random_state(seed=0)
mixed = Dataset(pairs, mix_pipeline)[0]
print({k: tuple(v.shape) for k, v in mixed.items()})
print(f"pasted pixels: {float(np.mean(mixed['paste_mask'])):.1%} of the image")

fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
panels = [
    (pairs[0]["image"].transpose(1, 2, 0), "unlabeled image"),
    (pairs[0]["label"][0], "pseudo-label (supervised model)"),
    (pairs[0]["labeled_label"][0], "labeled partner: ground truth"),
    (np.clip(mixed["image"].numpy().transpose(1, 2, 0), 0, 1), "SupMix image"),
    (mixed["label"][0].numpy(), "SupMix label"),
]
for ax, (array, title) in zip(axes, panels):
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 3. The semi-supervised trainer
#
# `SemiSupervisedTrainer` is a `SupervisedTrainer` with one more loader (unlabeled
# images) and an EMA teacher. Each iteration it takes a labeled and an unlabeled
# batch, predicts pseudo-labels with the teacher, mixes (ClassMix between unlabeled
# images, then SupMix from the labeled batch, on-line with the same function that
# `SupervisedClassMixd` wraps), perturbs the mixed images photometrically (the student's
# strong view), trains the student on labeled and mixed images, and, with a `SUFD`
# component, adds the adversarial term computed on the features of the layer `model.1`
# of the UNet (the documented default for MONAI's `UNet`; `feature_channels` tells the
# discriminator how many channels it gets).
#
# Everything else stays as it was: the same network class, optimizer, loss, labeled
# loader, transforms (the unlabeled chain is the same crops and flips without labels),
# and the same number of iterations.

# %%
unlabeled_loader = DataLoader(Dataset(unlabeled, train_transforms), batch_size=4, shuffle=True, drop_last=True)

torch.manual_seed(0)
student = make_unet()
discriminator = FeatureDiscriminator(
    spatial_dims=2,
    in_channels=feature_channels(student, "model.1", in_channels=3, spatial_size=PATCH),
    channels=(32, 64),
    strides=(2, 2),
).to(device)
semi = SemiSupervisedTrainer(
    device=device,
    max_epochs=1,
    epoch_length=ITERATIONS,
    train_data_loader=labeled_loader,
    network=student,
    optimizer=torch.optim.AdamW(student.parameters(), 2e-3),
    loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
    unlabeled_data_loader=unlabeled_loader,
    num_classes=2,
    mean_teacher=MeanTeacher(decay=0.99, network=make_unet()),
    mixing=SequentialMixing([ClassMixing("random_half"), SupervisedMixing("rarest")]),
    student_transform=BatchPerturbation(strong_perturbation("fundus"), seed=0),
    pseudo_label_loss=PseudoLabelLoss(ConfidenceWeightedCELoss(0.9), weight=1.0, rampup_iterations=ITERATIONS // 4),
    sufd=SUFD(
        discriminator,
        torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)),
        feature_layer="model.1",
        weight=0.01,
    ),
    seed=0,
)
start = time.time()
semi.run()
print(f"semi-supervised training: {time.time() - start:.0f} s")
print({k: round(v, 4) for k, v in loss_terms(semi.state.output).items()})

# %% [markdown]
# `engine.state.output` holds every loss term of the last iteration (`supervised_loss`,
# `unsupervised_loss`, `adversarial_loss`, `discriminator_loss`,
# `discriminator_accuracy`, the ramped weights and the fraction of confident
# pseudo-label pixels); `monai_supmix.engines.loss_terms` is the `output_transform`
# that hands them to `StatsHandler` / `TensorBoardStatsHandler`.
#
# ## 4. Comparison on the held-out phantoms
#
# The EMA teacher is the model to keep (it is what the bundles save and validate).

# %%
results["SupMix + SUFD (2 labeled + 20 unlabeled), teacher"] = evaluate(semi.teacher)
results["SupMix + SUFD, student"] = evaluate(semi.network)
print(f"{'model':52s} {'IoU bg':>8s} {'IoU vessel':>11s} {'mIoU':>8s}")
for name, r in results.items():
    print(f"{name:52s} {r['IoU background']:8.4f} {r['IoU vessel']:11.4f} {r['mIoU']:8.4f}")
gain = results["SupMix + SUFD (2 labeled + 20 unlabeled), teacher"]["mIoU"] - results["supervised (2 labeled)"]["mIoU"]
print(f"mIoU difference, semi-supervised teacher - supervised: {100 * gain:+.2f} points")

# %% [markdown]
# One seed and a short schedule: differences of a point or so are within seed noise
# (see `docs/benchmarks/README.md` for the protocol we use to compare methods: equal
# iterations, a supervised run that has plateaued, several seeds). To go further:
#
# - compare `mixing=ClassMixing()` (the conventional mean teacher + ClassMix) with
#   the sequence above, and `sufd=None` (no SUFD);
# - try `SupervisedMixing([1])` (the paper's manual choice) or `"inverse_frequency"`;
# - the CHASE bundle (`bundles/chase`) runs this pipeline on files, with validation,
#   checkpoints, resume and multi-GPU training.
