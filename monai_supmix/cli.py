"""``monai-supmix`` command line: helpers around the bundles.

Training, evaluation and inference go through ``python -m monai.bundle run`` with the
bundles' configs, as in any MONAI bundle. This command adds what a bundle cannot do
for itself:

- ``monai-supmix phantoms chase OUT``: write the built-in synthetic phantoms to disk in
  the real dataset layout (to see what ``--dataset_dir`` expects, or to try the
  readers end to end);
- ``monai-supmix check-data chase DIR``: read a dataset folder (or a ``--datalist_file``)
  exactly as the bundle will (its default ``num_labeled``/``num_val`` unless given), print
  the labeled / unlabeled / validation split, and open every file with the bundle's
  preprocessing; missing or unreadable files are listed (exit status 2), so layout
  mistakes show before a training run starts;
- ``monai-supmix compare covid19 DIR --output OUT``: does semi-supervised training pay on
  *your* images? Trains supervised, conventional and our method through the bundle on
  paired cross-validated folds and writes a report with verdicts
  (:mod:`monai_supmix.comparison.compare`, ``docs/compare.md``);
- ``monai-supmix version``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def _cmd_phantoms(args: argparse.Namespace) -> int:
    from monai_supmix.data import synthetic

    if args.task == "chase":
        out = synthetic.write_chase_phantoms(args.out_dir, num_images=args.num_images, size=args.size, seed=args.seed)
    else:
        out = synthetic.write_covid_phantoms(
            args.out_dir, num_labeled=args.num_images, num_unlabeled=args.num_unlabeled, size=args.size, seed=args.seed,
            layout=args.layout,
        )
    print(f"{args.task} phantoms written to {out}")
    return 0


def _missing_files(split: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """``(where, path)`` for every file named in the datalists that does not exist."""
    missing = []
    for name, items in split.items():
        for index, item in enumerate(items):
            for key in ("image", "label", "label_2nd", "fov"):
                path = item.get(key)
                if isinstance(path, str) and not os.path.isfile(path):
                    missing.append((f"{name}[{index}][{key!r}]", path))
    return missing


def _unreadable_files(task: str, split: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """``(item id, message)`` for every item the bundle's own preprocessing cannot read.

    Every image, label and FOV mask is opened and checked with the chain the bundle
    trains with (truncated files, wrong sizes, label values outside the classes).
    """
    from monai_supmix.data import chase_transforms, covid_transforms

    preprocessing = chase_transforms if task == "chase" else covid_transforms
    labeled = preprocessing("eval", **({"scale": 1.0} if task == "chase" else {"spatial_size": None}))
    unlabeled = preprocessing("infer", **({"scale": 1.0} if task == "chase" else {"spatial_size": None}))
    problems = []
    for name, items in split.items():
        chain = unlabeled if name == "unlabeled" else labeled
        for item in items:
            try:
                chain({k: v for k, v in item.items() if k in ("image", "label", "fov")})
            except Exception as e:  # report every file, then stop: the bundle would fail on the first
                root = e
                while root.__cause__ is not None:
                    root = root.__cause__
                problems.append((str(item.get("id", item.get("image"))), " ".join(str(root).split())))
    return problems


def _cmd_check_data(args: argparse.Namespace) -> int:
    from monai_supmix.bundle import SPLIT_DEFAULTS, task_datalists

    if args.dataset_dir is None and args.datalist_file is None:
        raise SystemExit("check-data: give a dataset folder (DATASET_DIR) or --datalist_file.")
    defaults = SPLIT_DEFAULTS[args.task]
    num_labeled = defaults["num_labeled"] if args.num_labeled is None else args.num_labeled
    num_val = defaults["num_val"] if args.num_val is None else args.num_val
    split = task_datalists(
        args.task,
        dataset_dir=args.dataset_dir,
        num_labeled=num_labeled,
        num_val=num_val,
        datalist_file=args.datalist_file,
    )
    summary = {name: len(items) for name, items in split.items()}
    missing = _missing_files(split)
    unreadable = [] if missing or args.no_open else _unreadable_files(args.task, split)
    if args.json:
        print(json.dumps({"counts": summary, "missing": [f"{w}: {p}" for w, p in missing],
                          "unreadable": [f"{i}: {m}" for i, m in unreadable], **split}, indent=2))
        return 2 if missing or unreadable else 0
    source = args.datalist_file or args.dataset_dir
    print(f"{args.task} data from {source}:")
    for name, items in split.items():
        first = ", ".join(str(i.get("id") or os.path.basename(str(i.get("image")))) for i in items[:3])
        more = f", ... ({len(items) - 3} more)" if len(items) > 3 else ""
        print(f"  {name:<10} {len(items):>5}  {first}{more}")
    for where, path in missing[:10]:
        print(f"  missing: {where}: {path}", file=sys.stderr)
    if missing:
        print(f"{len(missing)} listed file(s) do not exist (relative paths are read from {os.getcwd()}).", file=sys.stderr)
        return 2
    for item_id, message in unreadable[:10]:
        print(f"  unreadable: {item_id}: {message}", file=sys.stderr)
    if unreadable:
        print(f"{len(unreadable)} item(s) cannot be read as the bundle reads them.", file=sys.stderr)
        return 2
    if not args.no_open:
        print(f"  every file opened and checked with the bundle's preprocessing ({sum(summary.values())} items)")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    import monai
    import torch

    from monai_supmix import __version__

    print(f"monai_supmix {__version__} (monai {monai.__version__}, torch {torch.__version__})")
    return 0


EPILOG = """\
train, evaluate and segment with a bundle (any top-level key as --key value):
  python -m monai.bundle run training --config_file bundles/chase/configs/train.json [--dataset_dir DIR]
  python -m monai.bundle run --config_file "['bundles/chase/configs/train.json','bundles/chase/configs/evaluate.json']"
  python -m monai.bundle run --config_file bundles/chase/configs/inference.json --dataset_dir IN --output_dir OUT
does semi-supervised training pay on your images?
  monai-supmix compare covid19 DIR --output OUT --num_labeled 4 10 --folds 5
see docs/own_data.md and docs/compare.md
"""


def _cmd_compare(args: argparse.Namespace) -> int:
    from monai_supmix.comparison.compare import run_compare

    return run_compare(args, print_fn=lambda line: print(line, flush=True))


def build_parser() -> argparse.ArgumentParser:
    """The ``monai-supmix`` argument parser."""
    parser = argparse.ArgumentParser(prog="monai-supmix", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantoms", help="write synthetic phantoms in a real dataset layout")
    p.add_argument("task", choices=("chase", "covid19"))
    p.add_argument("out_dir")
    p.add_argument("--num_images", type=int, default=12, help="images (chase) or labeled slices (covid19)")
    p.add_argument("--num_unlabeled", type=int, default=40, help="unlabeled slices (covid19 only)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=("slices", "nifti"), default="slices", help="covid19 only: JPEG/PNG slices or NIfTI volumes")
    p.set_defaults(func=_cmd_phantoms)

    p = sub.add_parser("check-data", help="show the labeled/unlabeled/validation split a bundle will use")
    p.add_argument("task", choices=("chase", "covid19"))
    p.add_argument("dataset_dir", nargs="?", default=None)
    p.add_argument("--datalist_file", default=None, help="JSON with 'labeled', 'unlabeled', 'validation' lists")
    p.add_argument("--num_labeled", type=int, default=None, help="default: the bundle's (chase 4, covid19 10)")
    p.add_argument("--num_val", type=int, default=None, help="default: the bundle's (chase 4, covid19 10)")
    p.add_argument("--no_open", action="store_true", help="only check that the files exist, do not open them")
    p.add_argument("--json", action="store_true", help="print the full datalists as JSON")
    p.set_defaults(func=_cmd_check_data)

    from monai_supmix.comparison.compare import add_compare_parser

    add_compare_parser(sub).set_defaults(func=_cmd_compare)

    p = sub.add_parser("version", help="print the versions of monai_supmix, MONAI and PyTorch")
    p.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``monai-supmix``; returns the exit status.

    Errors from reading the data (missing files, wrong layout, impossible counts) are
    printed as one line naming the file or argument, without a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as e:
        print(f"monai-supmix {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
