"""Worker for test_distributed.py: the bundles' default method (ClassMix + SupMix, strong view, SUFD) under DDP.

Run as ``torchrun --nproc_per_node=2 ddp_default_method_worker.py OUT_DIR [NAN_RANK]``. Each rank
saves ``OUT_DIR/rank<r>.pt`` with its first iteration's mixing masks and mixed images, the
iterations it skipped, and its final student weights. With ``NAN_RANK``, that rank's loss is
made non-finite at iteration 2 (a test hook on the loss function): every rank must skip that
step together, or the others would wait forever in DDP's all-reduce.
"""

import os
import sys

import torch
import torch.distributed as dist
from ignite.engine import Events
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch.utils.data import DataLoader

from monai_supmix.engines import SUFD, PseudoLabelLoss, SemiSupervisedTrainer, build_mixing
from monai_supmix.losses import ConfidenceWeightedCELoss
from monai_supmix.networks import FeatureDiscriminator, feature_channels
from monai_supmix.transforms import BatchStrongPerturbation
from monai_supmix.utils.distributed import init_distributed, shutdown_distributed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddp_equivalence_worker import items  # noqa: E402  (the same small random data)


def main(out_dir: str, nan_rank: int | None) -> None:
    init_distributed("gloo")  # also registers the tear-down that joins gloo's threads (pytorch#117762)
    rank = dist.get_rank()
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    disc = FeatureDiscriminator(2, feature_channels(net, "output", 1, (32, 32)), channels=(8,), strides=(2,))
    student = torch.nn.parallel.DistributedDataParallel(net)
    disc_model = torch.nn.parallel.DistributedDataParallel(disc)
    labeled, unlabeled = items(8, True, 0), items(8, False, 1)
    # every rank reads the same batches: whatever differs between the ranks' mixed images comes
    # from their random streams (mixing sources, masks, flips, strong view), which must differ
    loaders = [DataLoader(d, batch_size=2, shuffle=False) for d in (labeled, unlabeled)]
    supervised = DiceCELoss(to_onehot_y=True, softmax=True)
    state = {"iteration": 0}

    def loss_function(logits, targets):  # the test hook: a NaN on one rank at iteration 2
        loss = supervised(logits, targets)
        return loss * float("nan") if rank == nan_rank and state["iteration"] == 2 else loss

    trainer = SemiSupervisedTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=loaders[0],
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
        loss_function=loss_function,
        unlabeled_data_loader=loaders[1],
        num_classes=2,
        mixing=build_mixing("both", supmix_prob=0.5, supmix_feather_sigma=1.0, supmix_flip_source=True),
        student_transform=BatchStrongPerturbation("ct", 0.5, seed=0),
        pseudo_label_loss=PseudoLabelLoss(ConfidenceWeightedCELoss(0.9, class_adaptive=True)),  # the 0.5.0 default
        sufd=SUFD(disc_model, torch.optim.Adam(disc_model.parameters(), 1e-3), feature_layer="output", weight=0.1,
                  paste_margin=0, label_smoothing=0.2),
        on_nonfinite="skip",
        decollate=False,  # the handler below reads engine.state.output["skipped"]
    )
    first = {}
    mixing = trainer.mixing

    def recording_mixing(batch, generator):
        mixed = mixing(batch, generator)
        if not first:
            first.update(images=mixed.images.clone(), classmix=mixed.classmix_mask.clone(),
                         supmix=mixed.supmix_mask.clone())
        return mixed

    trainer.mixing = recording_mixing
    skipped = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: state.update(iteration=e.state.iteration))
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: skipped.append(e.state.iteration) if e.state.output.get("skipped") else None
    )
    trainer.run()
    torch.save({**first, "skipped": skipped, "iteration": trainer.state.iteration, "student": net.state_dict(),
                "discriminator": disc.state_dict(), "class_counts": trainer.state.class_counts,
                "class_confidence": trainer.pseudo_label_loss.loss_function.class_confidence},
               os.path.join(out_dir, f"rank{rank}.pt"))
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
