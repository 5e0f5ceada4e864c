"""Worker for test_distributed.py: train a few iterations with or without DDP and save the weights.

Run as ``torchrun --nproc_per_node=2 ddp_equivalence_worker.py OUT`` (DDP, gloo) or
``python ddp_equivalence_worker.py OUT`` (single process, same global batch).
"""

import os
import sys

import torch
import torch.distributed as dist
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch.utils.data import DataLoader, DistributedSampler

from monai_supmix.engines import SUFD, PseudoLabelLoss, SemiSupervisedTrainer
from monai_supmix.losses import ConfidenceWeightedCELoss
from monai_supmix.networks import FeatureDiscriminator, feature_channels
from monai_supmix.utils.distributed import init_distributed, shutdown_distributed

GLOBAL_BATCH = 4


def items(n, labeled, seed):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.rand(1, 32, 32, generator=gen)
        out.append({"image": image, "label": (image > 0.6).long()} if labeled else {"image": image})
    return out


def main(out_file: str) -> None:
    distributed = "LOCAL_RANK" in os.environ
    world = 1
    if distributed:
        init_distributed("gloo")  # also registers the tear-down that joins gloo's threads (pytorch#117762)
        world = dist.get_world_size()
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    torch.manual_seed(1)
    disc = FeatureDiscriminator(2, feature_channels(net, None, 1, (32, 32)), channels=(8,), strides=(2,))
    labeled, unlabeled = items(8, True, 0), items(8, False, 1)
    if distributed:
        samplers = [DistributedSampler(d, shuffle=False) for d in (labeled, unlabeled)]
        student = torch.nn.parallel.DistributedDataParallel(net)
        disc_model = torch.nn.parallel.DistributedDataParallel(disc)
    else:
        samplers = [None, None]
        student, disc_model = net, disc
    loaders = [DataLoader(d, batch_size=GLOBAL_BATCH // world, sampler=s, shuffle=False) for d, s in zip((labeled, unlabeled), samplers)]
    trainer = SemiSupervisedTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=loaders[0],
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        unlabeled_data_loader=loaders[1],
        num_classes=2,
        mixing="none",
        pseudo_label_loss=PseudoLabelLoss(ConfidenceWeightedCELoss(0.0)),
        sufd=SUFD(disc_model, torch.optim.SGD(disc_model.parameters(), lr=0.1), weight=0.5, input="mixed"),
    )
    trainer.run()
    if not distributed or dist.get_rank() == 0:
        torch.save({"student": net.state_dict(), "teacher": trainer.teacher.state_dict(), "iteration": trainer.state.iteration}, out_file)
    if distributed:
        shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
