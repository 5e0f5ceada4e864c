"""Seconds per training step: supervised-only vs conventional vs + SupMix vs ours (+ SUFD), and SUFD variants.

Same network (the bundles' MONAI UNet), batch (labeled + unlabeled) and patch size for
all; the configurations are timed in interleaved rounds in one process, so the ratios
to the supervised step are robust to background load drifting during the run.
Supervised-only is MONAI's own ``SupervisedTrainer`` on the labeled batch.

Usage: ``python benchmarks/step_time.py [--batch 4] [--size 96] [--steps 10] [--rounds 5]``
Writes ``docs/benchmarks/step_time.json`` and ``step_time.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch.utils.data import DataLoader

from monai_supmix.engines import SUFD, SemiSupervisedTrainer
from monai_supmix.transforms import BatchPerturbation, strong_perturbation
from monai_supmix.networks import FeatureDiscriminator, feature_channels

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
#: The bundles' semi-supervised step is "ours": ClassMix + SupMix, the student's strong view,
#: output-space SUFD on the plain unlabeled images (one more student pass); the others take
#: one component away at a time.
CONFIGS = {
    "supervised": None,
    "conventional (classmix + strong view)": {"mix": "classmix", "sufd": False, "strong": True},
    "+ supmix": {"mix": "both", "sufd": False, "strong": True},
    "ours (+ sufd on plain images, output space)": {"mix": "both", "sufd": True, "strong": True,
                                                    "input": "unlabeled", "layer": "output"},
    "ours, sufd on the mixed images (no extra pass)": {"mix": "both", "sufd": True, "strong": True,
                                                       "input": "mixed", "layer": "output"},
    "ours, sufd on hidden features (model.1)": {"mix": "both", "sufd": True, "strong": True,
                                                "input": "unlabeled", "layer": None},
}
OURS = "ours (+ sufd on plain images, output space)"


def make_net() -> torch.nn.Module:
    return UNet(2, 3, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)


def build(name: str, batch: int, size: int, steps: int):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch * 2, 3, size, size, generator=gen)
    labeled = [{"image": images[i], "label": (images[i, :1] > 0.8).long()} for i in range(batch)]
    unlabeled = [{"image": images[batch + i]} for i in range(batch)]
    net = make_net()
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    lab_loader = DataLoader(labeled, batch_size=batch)
    if CONFIGS[name] is None:
        return SupervisedTrainer("cpu", 1, lab_loader, net, opt, loss, epoch_length=steps, decollate=False)
    config = CONFIGS[name]
    sufd = None
    if config["sufd"]:
        disc = FeatureDiscriminator(2, feature_channels(net, config["layer"], 3, (64, 64)), channels=(64, 128), strides=(2, 2))
        sufd = SUFD(disc, torch.optim.Adam(disc.parameters(), 1e-4), feature_layer=config["layer"], input=config["input"],
                    label_smoothing=0.2)
    strong = BatchPerturbation(strong_perturbation("fundus"), seed=0) if config.get("strong") else None
    return SemiSupervisedTrainer(
        "cpu", 1, lab_loader, net, opt, loss, DataLoader(unlabeled, batch_size=batch), num_classes=2,
        mixing=config["mix"], student_transform=strong, sufd=sufd, epoch_length=steps,
    )


def time_once(name: str, batch: int, size: int, steps: int) -> float:
    trainer = build(name, batch, size, steps)
    trainer.state.max_epochs = 1
    start = time.perf_counter()
    trainer.run()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=4, help="labeled batch = unlabeled batch")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output-dir", default=str(OUT))
    args = parser.parse_args()
    torch.manual_seed(0)
    wall = time.time()
    for name in CONFIGS:  # warm-up
        time_once(name, args.batch, args.size, 2)
    samples = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name in CONFIGS:
            samples[name].append(time_once(name, args.batch, args.size, args.steps))
    median = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {k: median[k] / median["supervised"] for k in CONFIGS}
    result = {
        "seconds_per_step": median,
        "ratio_to_supervised": ratios,
        "target": f"{OURS} <= 2.5x supervised",
        "meets_target": ratios[OURS] <= 2.5,
        "settings": vars(args),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_seconds": round(time.time() - wall, 1),
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_time.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Training step time",
        "",
        f"`python benchmarks/step_time.py --batch {args.batch} --size {args.size} --steps {args.steps} --rounds {args.rounds}`",
        f"on {result['machine']['platform']}, {result['machine']['cpus']} CPU cores, torch {torch.__version__}, "
        f"{result['date']}; whole script {result['wall_seconds']} s. MONAI UNet (16-128, 2 res units), "
        f"{args.batch} labeled + {args.batch} unlabeled patches of {args.size}², median of {args.rounds} interleaved rounds.",
        "",
        "| configuration | s / step | × supervised |",
        "|---|---|---|",
        *[f"| {k} | {median[k]:.3f} | {ratios[k]:.2f} |" for k in CONFIGS],
        "",
        f"Target: {OURS} ≤ 2.5× supervised — {'met' if result['meets_target'] else 'missed'}.",
        "",
    ]
    (out / "step_time.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
