"""``monai-supmix compare``: does semi-supervised training pay on *my* images? A paired, cross-validated answer.

For a bundle and a folder of images in its layout:

1. the labeled images are split into ``K`` test folds (group-wise with ``--group``);
2. for every fold, seed and labeled count, the labeled images are a seeded draw from the
   fold's pool (:func:`~monai_supmix.comparison.draw_labeled`), the same for every method,
   and the rest of the pool plus the folder's unlabeled images are unlabeled;
3. every method trains through the bundle and its final EMA teacher is evaluated on the
   fold's test images (:func:`~monai_supmix.comparison.train_and_evaluate`);
4. every pair of methods is compared with fold-level statistics
   (:mod:`~monai_supmix.comparison.statistics`), Holm-corrected over the table.

Outputs in ``--output``: ``results.json`` (one record per run), ``claims.json``,
``report.md`` and, with several labeled counts, ``labels_curve.png``. A second call skips
finished runs (``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from monai_supmix.comparison.runner import METHODS, ResultStore, device_text, run_grid, train_and_evaluate
from monai_supmix.comparison.splits import draw_labeled, group_folds, group_of
from monai_supmix.utils.files import write_json_atomic

__all__ = ["RunKey", "resolve_bundle", "plan_runs", "fold_split", "run_compare", "add_compare_parser"]

#: Validation every this many epochs during a comparison's training (the curves; the
#: evaluation itself uses the final EMA teacher on the test fold, never the validation pick).
VAL_EVERY = 5


@dataclass(frozen=True)
class RunKey:
    num_labeled: int
    fold: int
    method: str
    seed: int

    @property
    def id(self) -> str:
        return f"L{self.num_labeled}_f{self.fold}_{self.method}_s{self.seed}"


def resolve_bundle(bundle: str) -> Path:
    """The bundle folder of ``chase``, ``covid19`` or a path to a bundle folder.

    Raises:
        FileNotFoundError: when the folder has no ``configs/train.json``.
    """
    if bundle in ("chase", "covid19"):
        path = Path(__file__).resolve().parents[2] / "bundles" / bundle
        if not (path / "configs" / "train.json").is_file():
            raise FileNotFoundError(
                f"bundle {bundle!r}: {path} not found (this install has no bundles folder); pass the path of "
                "the bundle folder instead, e.g. a clone's bundles/" + bundle
            )
        return path
    path = Path(bundle).expanduser().resolve()
    if not (path / "configs" / "train.json").is_file():
        raise FileNotFoundError(f"BUNDLE {bundle!r}: expected 'chase', 'covid19' or a bundle folder with "
                                f"configs/train.json, found no {path / 'configs' / 'train.json'}")
    return path


def _bundle_settings(bundle_dir: Path) -> dict:
    with open(bundle_dir / "configs" / "train.json") as f:
        config = json.load(f)
    return {"task": config.get("task"), "num_classes": config.get("num_classes")}


def _parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ValueError(f"--override {text!r}: expected KEY=VALUE, e.g. max_epochs=20")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_#]*", key):
        raise ValueError(f"--override {text!r}: {key!r} is not a bundle key")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = {"True": True, "False": False, "None": None}.get(raw, raw)
    return key, value


class Plan:
    """The folds of a folder and the split of every (fold, seed, labeled count)."""

    def __init__(self, labeled: list[dict], extra_unlabeled: list[dict], folds: int, group: str | None, seed: int = 0):
        self.items = sorted(labeled, key=lambda i: i["id"])
        self.extra = extra_unlabeled
        self.group = group_of(group)
        if group is not None:
            matched = sum(1 for i in self.items if re.search(group, i["id"]))
            if matched == 0:
                raise ValueError(f"--group {group!r} matches none of the {len(self.items)} labeled image ids "
                                 f"(e.g. {self.items[0]['id']!r})")
        self.folds = group_folds([i["id"] for i in self.items], folds, self.group, seed)
        self.num_folds = folds

    def pool(self, fold: int) -> list[dict]:
        test = set(self.folds[fold])
        return [i for i in self.items if i["id"] not in test]

    def smallest_pool(self) -> int:
        return min(len(self.pool(f)) for f in range(self.num_folds))


def fold_split(plan: Plan, key: RunKey, dataset: str) -> dict[str, list[dict]]:
    """``{"labeled", "unlabeled", "validation", "test"}`` of one run (validation: pool images, never test ones)."""
    test_ids = set(plan.folds[key.fold])
    test = [i for i in plan.items if i["id"] in test_ids]
    labeled, rest = draw_labeled(plan.pool, key.fold, key.seed, key.num_labeled, plan.num_folds, dataset, plan.group)
    strip = ("label", "label_2nd")
    unlabeled = [{k: v for k, v in i.items() if k not in strip} for i in rest] + list(plan.extra)
    monitor = max(1, min(4, len(rest) // 4))
    validation = rest[-monitor:] if rest else labeled[-1:]
    return {"labeled": labeled, "unlabeled": unlabeled, "validation": validation, "test": test}


def plan_runs(num_labeled: list[int], folds: int, methods: list[str], seeds: list[int]) -> list[RunKey]:
    """Runs in priority order: the first seed of every count and fold first, then further seeds."""
    keys = []
    for seed in seeds:
        for n in num_labeled:
            for fold in range(folds):
                for method in methods:
                    keys.append(RunKey(n, fold, method, seed))
    return keys


def _check_args(args: argparse.Namespace) -> None:
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    if len(set(args.methods)) < len(args.methods):
        raise ValueError(f"--methods: each method once, got {args.methods}")
    if any(n < 1 for n in args.num_labeled):
        raise ValueError(f"--num_labeled: counts must be >= 1, got {args.num_labeled}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1 (CPU threads of each training), got {args.threads}")


def run_compare(args: argparse.Namespace, print_fn=print) -> int:
    """The ``compare`` command (see the module docstring). Returns the exit status.

    Raises:
        ValueError / FileNotFoundError: for bad input, with a one-line message.
    """
    from monai_supmix.bundle import task_items
    from monai_supmix.comparison.report import write_outputs

    _check_args(args)
    bundle_dir = resolve_bundle(args.bundle)
    settings = _bundle_settings(bundle_dir)
    overrides = dict(_parse_override(o) for o in (args.override or []))
    reserved = sorted({k for m in METHODS.values() for k in m} | {"seed", "output_dir", "datalist_file", "dataset_dir"})
    clash = [k for k in overrides if k in reserved]
    if clash:
        raise ValueError(f"--override {clash[0]}: this key is set by the comparison itself (keys {', '.join(reserved)}); "
                         "choose methods with --methods and seeds with --seeds")
    dataset_dir = Path(args.dataset_dir).expanduser().resolve()
    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"DATASET_DIR {str(dataset_dir)!r} does not exist or is not a folder")
    labeled, extra = task_items(settings["task"], str(dataset_dir), overrides.get("num_classes", settings["num_classes"]))
    if len(labeled) < 2:
        raise ValueError(f"DATASET_DIR {str(dataset_dir)!r}: {len(labeled)} labeled image(s) found; a comparison "
                         "needs at least 2 folds of labeled images")
    plan = Plan(labeled, extra, args.folds, args.group)
    biggest = max(args.num_labeled)
    if biggest > plan.smallest_pool():
        raise ValueError(
            f"--num_labeled {biggest} is more than the {plan.smallest_pool()} labeled images of the smallest fold's "
            f"training pool ({len(plan.items)} labeled images in {args.folds} folds); lower it or use fewer folds"
        )
    out = Path(args.output).expanduser().resolve()
    (out / "datalists").mkdir(parents=True, exist_ok=True)
    dataset = dataset_dir.name
    store = ResultStore(out / "results.json")
    keys = plan_runs(sorted(set(args.num_labeled)), args.folds, list(args.methods), list(args.seeds))
    common = {"val_interval": VAL_EVERY, "progress_bar": False, **overrides}
    print_fn(f"compare: bundle {bundle_dir.name} ({settings['task']}), {len(plan.items)} labeled + {len(extra)} "
             f"unlabeled images in {dataset_dir}, {args.folds} folds, labeled {sorted(set(args.num_labeled))}, "
             f"methods {', '.join(args.methods)}, seeds {args.seeds}; results in {out}")

    def execute(key: RunKey, threads: int) -> dict:
        split = fold_split(plan, key, dataset)
        lists = out / "datalists"
        stem = f"L{key.num_labeled}_f{key.fold}_s{key.seed}"
        body = {"labeled": split["labeled"], "unlabeled": split["unlabeled"]}
        write_json_atomic({**body, "validation": split["validation"]}, str(lists / f"{stem}_train.json"))
        write_json_atomic({**body, "validation": split["test"]}, str(lists / f"{stem}_test.json"))
        run_overrides = {**common, **METHODS[key.method], "seed": key.seed}
        metrics = train_and_evaluate(bundle_dir, out / "runs" / key.id, lists / f"{stem}_train.json",
                                     lists / f"{stem}_test.json", run_overrides, threads)
        return {
            "id": key.id,
            "dataset": dataset,
            "bundle": str(bundle_dir),
            "fold": key.fold,
            "method": key.method,
            "num_labeled": key.num_labeled,
            "seed": key.seed,
            "labeled_ids": [i["id"] for i in split["labeled"]],
            "test_ids": [i["id"] for i in split["test"]],
            **metrics,
            "device": device_text(),
            "settings": run_overrides,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }

    _, failures = run_grid(keys, lambda k: k.id, execute, store, jobs=args.jobs, force=args.force,
                           time_budget=args.time_budget, print_fn=print_fn,
                           threads=getattr(args, "threads", None))
    wanted = {k.id for k in keys}
    records = [r for r in store.load() if r["id"] in wanted]
    paths = write_outputs(records, out, list(args.methods), dataset, args.folds)
    print_fn("wrote " + ", ".join(str(p) for p in paths))
    return 1 if failures else 0


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """The ``compare`` sub-command's arguments."""
    p = subparsers.add_parser(
        "compare",
        help="does semi-supervised training pay on your images? paired cross-validated comparison",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", help="'chase', 'covid19' or the path of a bundle folder")
    p.add_argument("dataset_dir", help="folder of images in the bundle's layout (labeled and unlabeled)")
    p.add_argument("--output", required=True, help="folder for results.json, claims.json, report.md")
    p.add_argument("--num_labeled", type=int, nargs="+", default=[4], help="labeled counts to compare (default 4)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--methods", nargs="+", default=["supervised", "conventional", "ours"],
                   help=f"methods among {', '.join(METHODS)} (default: supervised conventional ours)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds: each draws its own labeled sets (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (1 on a small CPU; ~6 on one GPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of each training (default: the cores shared among --jobs); the thread count "
                        "changes a run's numbers, so keep it fixed when you resume a comparison")
    p.add_argument("--time-budget", dest="time_budget", type=float, default=None,
                   help="start no new run after this many seconds (call again to continue)")
    p.add_argument("--group", default=None,
                   help="regular expression whose first group names the patient/volume of an image id, e.g. "
                        "'^(\\w+?)_\\d+$': folds and labeled draws keep a patient's images together")
    p.add_argument("--override", nargs="+", default=None, metavar="KEY=VALUE",
                   help="bundle keys for every run, e.g. max_epochs=20 'spatial_size=[128,128]'")
    p.add_argument("--force", action="store_true", help="redo runs that are already in results.json")
    return p
