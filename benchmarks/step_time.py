"""Seconds per training step: supervised vs conventional vs ours, SUFD variants, and a per-part profile.

Same network (the bundles' MONAI UNet), batch (labeled + unlabeled) and patch size for
all; the configurations are timed in interleaved rounds in one process, so the ratios
to the supervised step are robust to background load drifting during the run.
Supervised is MONAI's own ``SupervisedTrainer`` on the labeled batch. Every
semi-supervised configuration uses the bundles' components (``BatchStrongPerturbation``,
the bundles' discriminator), so ``ours`` is the bundles' default step and
``conventional`` the grid's conventional step.

The profile times each part of one step of the trainer (teacher, mixing, strong view,
student forward, student backward and update, SUFD's adversarial term and discriminator
step, EMA) by wrapping the trainer's own methods with timers, at each shape given.

Usage::

    python benchmarks/step_time.py                    # CPU protocol shape (4 + 4 of 96²) + GPU shape (8 + 8 of 192²)
    python benchmarks/step_time.py --shapes 4x96 --rounds 3
    python benchmarks/step_time.py --threads 1 --clock cpu   # beside other work: 1 thread, the process's CPU time

Each configuration's arithmetic (FLOPs of one step) is counted too: the wall-clock ratios on a
shared 2-core VM move by ±10 % between runs, the FLOP ratios do not.

Writes ``docs/benchmarks/step_time.json`` and ``step_time.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch.utils.data import DataLoader

from monai_supmix.engines import SUFD, PseudoLabelLoss, SemiSupervisedTrainer
from monai_supmix.networks import FeatureDiscriminator, feature_channels
from monai_supmix.transforms import BatchStrongPerturbation

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
#: The bundles' discriminator (``discriminator_channels``) and the one before this profile.
DISC_CHANNELS = (32, 64)
PREVIOUS_DISC_CHANNELS = (64, 128)
#: The bundles' default step (``discriminator_pool 2`` since 0.4.0); the SUFD variants below change one thing of it.
OURS = {"mix": "both", "sufd": True, "input": "mixed_masked", "layer": "output", "pool": 2}
#: name -> (description, settings). ``ours`` is the bundles' default step; ``conventional`` the
#: grid's conventional method; the others take one component away or restore an earlier choice.
CONFIGS: dict[str, tuple[str, dict | None]] = {
    "supervised": ("supervised (MONAI SupervisedTrainer)", None),
    "conventional": ("conventional: ClassMix + strong view", {"mix": "classmix", "sufd": False}),
    "supmix": ("+ SupMix", {"mix": "both", "sufd": False}),
    "ours": ("ours: + SUFD on the masked mixed softmax average-pooled 2x, 32-64 discriminator (bundle default)", OURS),
    "ours_fullres_sufd": ("ours with the previous default SUFD: the full-resolution masked mixed softmax",
                          {**OURS, "pool": 1}),
    "ours_plain_sufd": ("ours with the SUFD before that: plain unlabeled images (one more student pass), 64-128",
                        {**OURS, "input": "unlabeled", "pool": 1, "channels": PREVIOUS_DISC_CHANNELS}),
    "ours_mixed_unmasked": ("ours, SUFD on the pooled mixed images with paste edges visible", {**OURS, "input": "mixed"}),
    "ours_disc16": ("ours with a full-resolution 16-32 discriminator (the other candidate, not the default)",
                    {**OURS, "pool": 1, "channels": (16, 32)}),
    "supervised_amp": ("supervised with `amp=True` (this package's trainer with mix none and weight 0; on a CPU: "
                       "bfloat16 autocast)", {"mix": "none", "sufd": False, "weight": 0.0, "amp": True}),
    "ours_amp": ("ours with `amp=True` (on a CPU: bfloat16 autocast)", {**OURS, "amp": True}),
}
TARGETS = {"ours": 2.5, "conventional": 2.0}
#: The clock every timing reads: wall-clock by default; ``--clock cpu`` (with ``--threads 1``) reads the
#: process's CPU time, which other processes on a shared machine do not inflate.
CLOCK = {"now": time.perf_counter}


def make_net() -> torch.nn.Module:
    return UNet(2, 3, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)


def build(name: str, batch: int, size: int, steps: int):
    """The trainer of one configuration on random data (``steps`` iterations in one epoch)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch * 2, 3, size, size, generator=gen)
    labeled = [{"image": images[i], "label": (images[i, :1] > 0.8).long()} for i in range(batch)]
    unlabeled = [{"image": images[batch + i]} for i in range(batch)]
    net = make_net()
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    lab_loader = DataLoader(labeled, batch_size=batch)
    config = CONFIGS[name][1]
    if config is None:
        return SupervisedTrainer("cpu", 1, lab_loader, net, opt, loss, epoch_length=steps, decollate=False)
    sufd = None
    if config["sufd"]:
        channels = config.get("channels", DISC_CHANNELS)
        disc = FeatureDiscriminator(2, feature_channels(net, config["layer"], 3, (64, 64)), channels=channels,
                                    strides=(2, 2))
        sufd = SUFD(disc, torch.optim.Adam(disc.parameters(), 1e-4), feature_layer=config["layer"],
                    input=config["input"], label_smoothing=0.2, feature_pool=config.get("pool", 1))
    return SemiSupervisedTrainer(
        "cpu", 1, lab_loader, net, opt, loss, DataLoader(unlabeled, batch_size=batch), num_classes=2,
        mixing=config["mix"], student_transform=BatchStrongPerturbation("fundus", 0.5, seed=0), sufd=sufd,
        pseudo_label_loss=PseudoLabelLoss(weight=config.get("weight", 1.0)), epoch_length=steps,
        amp=config.get("amp", False),
    )


def flops_per_step(name: str, batch: int, size: int) -> float:
    """Floating-point operations of one training step of ``name`` (convolutions and matrix products).

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` over two steps: a count
    of the arithmetic, the same on every machine and free of the load noise that wall-clock
    ratios on a shared CPU carry. Normalisation, activations and the optimizer are not
    counted (they are memory-bound and a few per cent of a step).
    """
    from torch.utils.flop_counter import FlopCounterMode

    trainer = build(name, batch, size, 2)
    with FlopCounterMode(display=False) as counter:
        trainer.run()
    return counter.get_total_flops() / 2


def time_once(name: str, batch: int, size: int, steps: int) -> float:
    trainer = build(name, batch, size, steps)
    start = CLOCK["now"]()
    trainer.run()
    return (CLOCK["now"]() - start) / steps


#: the trainer's methods (and their owners) that make up one step, with the name the profile gives them
PARTS = (
    ("trainer", "_next_unlabeled", "unlabeled batch"),
    ("trainer", "_pseudo_labels", "teacher forward"),
    ("trainer", "mixing", "mixing (ClassMix, SupMix)"),
    ("trainer", "_strong_view", "strong view"),
    ("trainer", "_student_pass", "student forward"),
    ("sufd", "student_loss", "SUFD adversarial term (forward)"),
    ("trainer", "_step", "student backward + update"),
    ("sufd", "discriminator_step", "SUFD discriminator step"),
    ("ema", "_update_ema_model", "EMA teacher update"),
)


def profile(name: str, batch: int, size: int, steps: int) -> dict[str, float]:
    """Seconds per step spent in each part of ``name``'s step (``"total"`` and ``"other"`` included)."""
    trainer = build(name, batch, size, steps)
    spent: dict[str, float] = defaultdict(float)
    owners = {"trainer": trainer, "sufd": getattr(trainer, "sufd", None), "ema": getattr(trainer, "ema_handler", None)}

    def timed(function, label):
        def wrapper(*args, **kwargs):
            start = CLOCK["now"]()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += CLOCK["now"]() - start

        return wrapper

    for owner, attribute, label in PARTS:
        target = owners[owner]
        if owner == "ema" and target is not None:  # Ignite holds the bound method: wrap its registration
            from ignite.engine import Events

            handlers = trainer._event_handlers[Events.ITERATION_COMPLETED]
            for i, (handler, args, kwargs) in enumerate(handlers):
                if handler == target._update_ema_model:
                    handlers[i] = (timed(handler, label), args, kwargs)
        elif target is not None and getattr(target, attribute, None) is not None:
            setattr(target, attribute, timed(getattr(target, attribute), label))
    start = CLOCK["now"]()
    trainer.run()
    total = CLOCK["now"]() - start
    result = {label: seconds / steps for label, seconds in spent.items()}
    result["other (losses, events, data)"] = total / steps - sum(result.values())
    result["total"] = total / steps
    return result


def measure(batch: int, size: int, steps: int, rounds: int, names) -> dict:
    """Median seconds per step and the ratio to supervised, with the range of the per-round ratios.

    A round times every configuration once, back to back; a round's ratio divides by that
    round's supervised step, so load that drifts between rounds cancels, and the range of the
    per-round ratios shows how far one measurement can be trusted on this machine.
    """
    for name in names:  # warm-up
        time_once(name, batch, size, 2)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            samples[name].append(time_once(name, batch, size, steps))
    median = {k: statistics.median(v) for k, v in samples.items()}
    per_round = {k: [t / s for t, s in zip(samples[k], samples["supervised"])] for k in names}
    flops = {name: flops_per_step(name, batch, size) for name in names}
    return {
        "batch": batch,
        "size": size,
        "flops_per_step": flops,
        "flop_ratio_to_supervised": {k: v / flops["supervised"] for k, v in flops.items()},
        "seconds_per_step": median,
        "ratio_to_supervised": {k: statistics.median(per_round[k]) for k in names},
        "ratio_range": {k: [min(v), max(v)] for k, v in per_round.items()},
        "profile": {k: profile(k, batch, size, steps) for k in ("conventional", "ours", "ours_fullres_sufd",
                                                                 "ours_plain_sufd")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["4x96", "8x192"],
                        help="BATCHxSIZE: labeled batch (= unlabeled batch) x patch side; first = the CPU protocol")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own); the CPU protocol's trainings run 1 each")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the process's CPU time, for measuring with --threads 1 beside other work")
    parser.add_argument("--output-dir", default=str(OUT))
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu counts every thread's time (idle spinning included): use it with --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK["now"] = time.process_time
    torch.manual_seed(0)
    wall = time.time()
    shapes = []
    for spec in args.shapes:
        batch, size = (int(v) for v in spec.lower().split("x"))
        rounds = args.rounds if not shapes else max(1, args.rounds // 2)
        shapes.append({**measure(batch, size, args.steps, rounds, list(CONFIGS)), "rounds": rounds})
    cpu = shapes[0]["ratio_to_supervised"]
    result = {
        "ratio_to_supervised": cpu,
        "flop_ratio_to_supervised": shapes[0]["flop_ratio_to_supervised"],
        "targets": {k: f"<= {v}x supervised at {args.shapes[0]}" for k, v in TARGETS.items()},
        "meets_target": {k: cpu[k] <= v for k, v in TARGETS.items()},
        "descriptions": {k: v[0] for k, v in CONFIGS.items()},
        "shapes": shapes,
        "settings": vars(args),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": "cpu"},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_seconds": round(time.time() - wall, 1),
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_time.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Training step time",
        "",
        f"`python benchmarks/step_time.py --shapes {' '.join(args.shapes)} --steps {args.steps} --rounds {args.rounds}"
        f"{f' --threads {args.threads}' if args.threads else ''}{' --clock cpu' if args.clock == 'cpu' else ''}` "
        f"on {result['machine']['platform']}, {result['machine']['cpus']} CPU cores ({torch.get_num_threads()} "
        f"threads), torch {torch.__version__}, {result['date']}; whole script {result['wall_seconds']} s; seconds are "
        f"{'CPU time of the process' if args.clock == 'cpu' else 'wall-clock'}. MONAI UNet "
        "(16-128, 2 res units), labeled + unlabeled patches; × supervised is the median over rounds of each round's "
        "ratio (every configuration timed once per round, back to back), the range its smallest and largest. Every shape was "
        "measured on this CPU (no GPU was lent for this measurement).",
        "",
        "| configuration | " + " | ".join(f"s/step {s['batch']}+{s['batch']} of {s['size']}² | × supervised (range) "
                                          "| FLOP × supervised" for s in shapes) + " |",
        "|---|" + "---|---|---|" * len(shapes),
    ]
    for name, (text, _) in CONFIGS.items():
        cells = " | ".join(f"{s['seconds_per_step'][name]:.3f} | {s['ratio_to_supervised'][name]:.2f} "
                           f"({s['ratio_range'][name][0]:.2f}–{s['ratio_range'][name][1]:.2f}) | "
                           f"{s['flop_ratio_to_supervised'][name]:.2f}" for s in shapes)
        lines.append(f"| `{name}`: {text} | {cells} |")
    lines += ["", "FLOP × supervised: the arithmetic of one step (convolutions and matrix products, counted by "
              "`torch.utils.flop_counter.FlopCounterMode`) over the supervised step's; it is the same on every "
              "machine, so it shows which differences in the wall-clock columns are work and which are noise, "
              f"and the floor under any implementation of that step in float32 before any overhead (supervised: "
              f"{shapes[0]['flops_per_step']['supervised'] / 1e9:.2f} GFLOP per step at {args.shapes[0]}).", ""]
    flop_cpu = shapes[0]["flop_ratio_to_supervised"]
    for name, limit in TARGETS.items():
        lines.append(f"Target `{name}` ≤ {limit}× supervised at {args.shapes[0]}: "
                     f"{'met' if result['meets_target'][name] else 'missed'} ({cpu[name]:.2f}×; its arithmetic "
                     f"alone is {flop_cpu[name]:.2f}×).  ")
    for s in shapes:
        t = s["seconds_per_step"]
        lines.append(f"At {s['batch']}x{s['size']} with `amp=True` on both sides (bfloat16 autocast on this CPU): ours "
                     f"{t['ours_amp']:.3f} s, supervised {t['supervised_amp']:.3f} s, ratio "
                     f"{t['ours_amp'] / t['supervised_amp']:.2f}×; ours with AMP is {t['ours'] / t['ours_amp']:.2f}× "
                     "faster than ours in float32.  ")
    for s in shapes:
        lines += ["", f"## Where a step's time goes ({s['batch']} + {s['batch']} of {s['size']}², seconds per step)", "",
                  "| part | " + " | ".join(f"`{k}`" for k in s["profile"]) + " |",
                  "|---|" + "---|" * len(s["profile"])]
        labels = [label for _, _, label in PARTS] + ["other (losses, events, data)", "total"]
        for label in labels:
            if any(label in p for p in s["profile"].values()):
                lines.append(f"| {label} | " + " | ".join(
                    f"{p[label]:.4f}" if label in p else "–" for p in s["profile"].values()) + " |")
    lines.append("")
    (out / "step_time.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
