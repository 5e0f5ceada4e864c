"""What a semi-supervised run costs in minutes: validation mIoU against wall-clock seconds, per method, one fold.

Reads the training logs the grid keeps (``benchmarks/_runs/<run id>/train.log``; every
validation line carries a time stamp) of the development-fold runs of one setting, and the
records in ``results.json`` for the final test score, and writes
``docs/benchmarks/time_to_accuracy.{json,md,png}``: for each method, the validation mIoU
(the fold's test images, as the development fold validates on them) against the seconds
since its training started, averaged over seeds, and the seconds it took to first reach
the supervised run's final validation mIoU.

Usage::

    python benchmarks/time_to_accuracy.py --dataset covid19 --labeled 10 --methods supervised conventional ours \\
        [--runs-dir benchmarks/_runs] [--results docs/benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_supmix.comparison.runner import validation_curve  # noqa: E402
from monai_supmix.utils.files import atomic_write, write_json_atomic  # noqa: E402

OUT = REPO / "docs" / "benchmarks"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="covid19")
    parser.add_argument("--labeled", type=int, default=10)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--methods", nargs="+", default=["supervised", "conventional", "ours"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to average (the same for every method)")
    parser.add_argument("--runs-dir", default=str(REPO / "benchmarks" / "_runs"))
    parser.add_argument("--results", default=str(OUT / "results.json"))
    parser.add_argument("--output-dir", default=str(OUT))
    args = parser.parse_args(argv)
    with open(args.results) as f:
        records = {r["id"]: r for r in json.load(f)}
    runs = Path(args.runs_dir)
    summary: dict[str, dict] = {}
    for method in args.methods:
        prefix = f"{args.protocol}_{args.dataset}_L{args.labeled}_f{args.fold}_{method}_s"
        curves, finals, seconds, devices = [], [], [], set()
        for log in sorted(runs.glob(prefix + "*/train.log")):
            rid = log.parent.name
            if rid not in records or not rid[len(prefix):].isdigit() or int(rid[len(prefix):]) not in args.seeds:
                continue
            curve = validation_curve(log.read_text())
            if curve:
                curves.append(curve)
                finals.append(records[rid]["pooled_miou"])
                seconds.append(records[rid]["train_seconds"])
                devices.add(records[rid]["device"])
        if not curves:
            continue
        n = min(len(c) for c in curves)
        summary[method] = {
            "seeds": len(curves),
            "seconds": [statistics.mean(c[i][0] for c in curves) for i in range(n)],
            "val_miou": [statistics.mean(c[i][1] for c in curves) for i in range(n)],
            "train_seconds": statistics.mean(seconds),
            "test_pooled_miou": statistics.mean(finals),
            "devices": sorted(devices),
        }
    if "supervised" in summary:
        target = summary["supervised"]["val_miou"][-1]
        for s in summary.values():
            reached = [t for t, v in zip(s["seconds"], s["val_miou"]) if v >= target]
            s["seconds_to_supervised_final"] = reached[0] if reached else None
    out = Path(args.output_dir)
    write_json_atomic({"settings": vars(args), "methods": summary}, str(out / "time_to_accuracy.json"))
    lines = [
        "# Time to accuracy",
        "",
        f"`python benchmarks/time_to_accuracy.py --dataset {args.dataset} --labeled {args.labeled} --methods "
        f"{' '.join(args.methods)} --seeds {' '.join(map(str, args.seeds))}`: development fold {args.fold} of the "
        f"`{args.protocol}` protocol, validation "
        "mIoU on the fold's test images against the seconds since training started (mean over seeds), from the "
        "grid's training logs. Wall-clock seconds on the machine the grid ran on "
        f"({', '.join(sorted({d for s in summary.values() for d in s['devices']}))}), which at times ran other "
        "work beside the grid: read the ratios, not the absolute times, and take the step ratios of "
        "[step_time.md](step_time.md), measured on the quiet machine, as the cost of a step.",
        "",
        "| method | seeds | training time (s) | final validation mIoU | test pooled mIoU | seconds to reach supervised's final validation mIoU |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        reach = s.get("seconds_to_supervised_final")
        lines.append(f"| {method} | {s['seeds']} | {s['train_seconds']:.0f} | {100 * s['val_miou'][-1]:.1f} | "
                     f"{100 * s['test_pooled_miou']:.1f} | {'not reached' if reach is None else f'{reach:.0f}'} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for method, s in summary.items():
            ax.plot([t / 60 for t in s["seconds"]], [100 * v for v in s["val_miou"]], marker=".", label=method)
        ax.set_xlabel("minutes of training")
        ax.set_ylabel("validation mIoU (%)")
        ax.set_title(f"{args.dataset}, {args.labeled} labeled, fold {args.fold}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_write(str(out / "time_to_accuracy.png"), lambda tmp: fig.savefig(tmp, dpi=120))
        plt.close(fig)
        lines += ["", "![time to accuracy](time_to_accuracy.png)"]
    except ImportError:
        pass
    text = "\n".join(lines) + "\n"
    atomic_write(str(out / "time_to_accuracy.md"), lambda tmp: Path(tmp).write_text(text))
    print(text)


if __name__ == "__main__":
    main()
