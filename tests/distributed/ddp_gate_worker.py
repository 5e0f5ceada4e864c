"""Worker for test_distributed.py: :class:`SelfTrainingGate` on 2 ranks whose labeled batches differ.

Run as ``torchrun --nproc_per_node=2 ddp_gate_worker.py OUT_DIR``. Rank 0's student finds its
labeled class exactly, rank 1's predicts background everywhere; each rank saves the running Dice
and the gate's decision to ``OUT_DIR/rank<r>.pt``. Both must be the Dice of the two batches
together, so that every rank opens the gate at the same iteration.
"""

import sys

import torch
import torch.distributed as dist

from monai_supmix.engines import SelfTrainingGate
from monai_supmix.utils.distributed import init_distributed, shutdown_distributed


def main(out_dir: str) -> None:
    init_distributed("gloo")
    rank = dist.get_rank()
    labels = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    labels[0, 0, 2:4, 2:4] = 1  # 4 pixels of class 1 on each rank
    pred = labels[:, 0] if rank == 0 else torch.zeros(1, 8, 8, dtype=torch.long)
    logits = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    running, ready = SelfTrainingGate(0.5)(logits, labels, None)
    torch.save({"running": running, "ready": ready}, f"{out_dir}/rank{rank}.pt")
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
