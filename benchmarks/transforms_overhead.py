"""Overhead of the batched SupMix paste relative to one UNet training step (CPU).

Times :func:`monai_supmix.transforms.supervised_class_mix` on a ``B×3×S×S`` batch with
2-class index labels (``classes=[1]``) against one training step (forward, DiceCE
backward, Adam step) of a 2-D MONAI UNet on the same batch: a few warm-up runs, then the
median over ``--repeats``. Writes ``transforms_overhead.json`` and ``transforms_overhead.md``
into ``--output-dir``.

Usage::

    python benchmarks/transforms_overhead.py --repeats 5 --batch 8 --size 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import monai
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from monai_supmix.transforms import supervised_class_mix

TARGET_RATIO = 0.02


def _time(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the training step (median)")
    parser.add_argument("--mix-repeats", type=int, default=30, help="timed repeats of the paste (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs of each")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    wall_start = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    torch.manual_seed(args.seed)
    shape = (args.batch, 3, args.size, args.size)
    image_u, image_l = torch.rand(shape), torch.rand(shape)
    label_u = torch.randint(0, 2, (args.batch, 1, args.size, args.size))
    label_l = torch.randint(0, 2, (args.batch, 1, args.size, args.size))

    def mix():
        supervised_class_mix(image_u, label_u, image_l, label_l, [1])

    net = UNet(
        spatial_dims=2,
        in_channels=3,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    image, label, _ = supervised_class_mix(image_u, label_u, image_l, label_l, [1])

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(image), label)
        loss.backward()
        optimizer.step()

    mix_times = _time(mix, args.warmup, args.mix_repeats)
    step_times = _time(step, args.warmup, args.repeats)
    mix_median, step_median = statistics.median(mix_times), statistics.median(step_times)
    ratio = mix_median / step_median
    command = "python benchmarks/transforms_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "benchmark": "supervised_class_mix overhead vs one UNet training step (CPU)",
        "batch_shape": list(shape),
        "labels": "index maps, 2 classes, classes=[1]",
        "mix_median_s": mix_median,
        "mix_times_s": mix_times,
        "train_step_median_s": step_median,
        "train_step_times_s": step_times,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "mix_repeats": args.mix_repeats,
        "command": command.strip(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15_min_at_start": load_before,
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result["total_wall_time_s"] = time.perf_counter() - wall_start
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "transforms_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    markdown = f"""# SupMix paste overhead (CPU)

`supervised_class_mix` on a {"×".join(map(str, shape))} batch (2-class index labels, `classes=[1]`)
versus one training step (forward + DiceCE backward + Adam step) of
`UNet(spatial_dims=2, in_channels=3, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)`
on the same batch. Median after {args.warmup} warm-up runs.

| operation | repeats | median (ms) |
|---|---:|---:|
| `supervised_class_mix` | {args.mix_repeats} | {mix_median * 1e3:.2f} |
| UNet training step | {args.repeats} | {step_median * 1e3:.1f} |
| **ratio** (target ≤ {TARGET_RATIO:.0%}) | | **{ratio:.3%}** {"(met)" if ratio <= TARGET_RATIO else "(missed)"} |

Machine: {m["platform"]}, {m["cpu_count"]} CPUs, torch {m["torch"]} ({m["torch_threads"]} threads),
MONAI {m["monai"]}; {result["date"]}; script wall time {result["total_wall_time_s"]:.0f} s;
1-min load average at start {load_before[0] if load_before else float("nan"):.1f} (other processes share the CPUs).

Command:

```bash
{result["command"]}
```
"""
    (args.output_dir / "transforms_overhead.md").write_text(markdown)
    print(json.dumps({k: result[k] for k in ("mix_median_s", "train_step_median_s", "ratio", "total_wall_time_s")}))
    return result


if __name__ == "__main__":
    main()
