"""The labels curve: where do unlabeled images pay, and how much of the labels gap do they close?

Reads the ``cpu2`` records of ``docs/benchmarks/results.json`` (labeled sets drawn per fold
and seed; ``python benchmarks/run_paper_benchmark.py --protocol cpu2 --plan labels_curve``)
and writes into ``docs/benchmarks/``:

- ``labels_curve.png``: pooled out-of-fold mIoU against the labeled count, one panel per
  dataset, one line per method, fold-level 95 % interval bands;
- ``labels_curve.json`` and ``labels_curve.md``: per (dataset, count, method) the pooled
  out-of-fold mIoU (every reporting test image scored by its own fold's model; counts summed
  over seeds) with its fold-level interval; the paired claims at each count (conventional and
  ours against supervised, ours against conventional; one Holm correction over them and the
  gaps, another over the ``--variants`` claims); the
  labels gap (supervised with every pool image labeled minus supervised at the count, paired on
  the same test images) and the share of it each semi-supervised method closes.

Only reporting folds count (fold 0 is the development fold). A cell lists how many folds and
seeds it holds: the grid runs over several sessions, so early tables are partial.

Usage: ``python benchmarks/report_labels_curve.py [--protocol cpu2]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from monai_supmix.comparison import compare_methods  # noqa: E402
from monai_supmix.comparison.report import _finite_or_none, _interval, method_scores  # noqa: E402
from monai_supmix.comparison.statistics import INTERVAL_METHOD, apply_holm, image_counts  # noqa: E402
from monai_supmix.utils.files import atomic_write, write_json_atomic  # noqa: E402

OUT = HERE.parent / "docs" / "benchmarks"
DEV_FOLD = 0
METHODS = ("supervised", "conventional", "ours")
#: the count at which every pool image is labeled (the top of the labels gap)
ALL_LABELED = {"covid19": 40, "chase": 20}
TITLES = {"covid19": "COVID-19 CT slices (4 reporting folds of 10 test slices)",
          "chase": "CHASE_DB1 retinas (5 reporting folds of 2 patients)"}


def area_ratios(records: list[dict]) -> dict[str, float]:
    """Predicted over true area of every foreground class, confusion counts summed over the records.

    Below 1 the models under-segment the class, above 1 they over-segment it: the diagnostic of
    how self-training fails at the lowest counts (on CHASE_DB1 the vessels shrink).
    """
    total = np.sum([c for r in records for c in image_counts(r).values()], axis=0)  # C×3 (TP, FP, FN)
    tp, fp, fn = total[:, 0], total[:, 1], total[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (tp + fp) / (tp + fn)
    return {name: float(ratio[c]) for c, name in enumerate(records[0]["class_names"]) if c > 0}


def curve_tables(records: list[dict], variants: tuple[str, ...] = ()) -> dict:
    """Per dataset: the scores of each (count, method), the paired claims and the labels gaps.

    ``variants`` (benchmark variants, e.g. ``ours_fixed_threshold``) get rows of their own where
    they ran and the claims "variant > ours" and "variant > supervised". Two Holm families: the
    primary one (the three method claims at each count and every labels gap, both datasets) and
    the variants' claims. The variants are ablations whose number grows as hypotheses are tried:
    in one family with the primary claims, every extra ablation would raise the bar for the
    headline claims, so that the yardstick would depend on how many ideas we had tested.
    """
    out: dict = {}
    methods = METHODS + tuple(variants)
    for dataset in ("covid19", "chase"):
        cells: dict = defaultdict(list)
        for r in records:
            if r["dataset"] == dataset and r["method"] in methods:
                cells[(int(r["num_labeled"]), r["method"])].append(r)
        if not cells:
            continue
        counts = sorted({n for n, _ in cells})
        scores = []
        for n in counts:
            for m in methods:
                if (n, m) in cells:
                    s = method_scores(cells[(n, m)])
                    seeds = sorted({int(r["seed"]) for r in cells[(n, m)]})
                    scores.append({"num_labeled": n, "method": m, "seeds": seeds, **{k: s[k] for k in (
                        "miou", "ci_low", "ci_high", "per_class", "n_runs", "n_folds", "train_seconds")},
                                   "area_ratio": area_ratios(cells[(n, m)])})
        claims = []
        for n in counts:
            pairs = [("supervised", "conventional"), ("supervised", "ours"), ("conventional", "ours")]
            pairs += [(base, v) for v in variants for base in ("ours", "supervised")]
            for a, b in pairs:
                result = compare_methods(cells.get((n, b), []), cells.get((n, a), []))
                if result is not None:
                    family = "variants" if b in variants else "primary"
                    claims.append({"claim": f"{b} > {a}", "dataset": dataset, "num_labeled": n,
                                   "holm_family": family, **result})
        top = ALL_LABELED[dataset]
        gaps = []
        for n in counts:
            if n == top or (top, "supervised") not in cells or (n, "supervised") not in cells:
                continue
            gap = compare_methods(cells[(top, "supervised")], cells[(n, "supervised")])
            if gap is None:
                continue
            entry = {"claim": f"supervised {top} labeled > supervised {n} labeled", "dataset": dataset,
                     "num_labeled": n, "holm_family": "primary", **gap, "closed": {}}
            for m in ("conventional", "ours"):
                gain = compare_methods(cells.get((n, m), []), cells[(n, "supervised")])
                # a share of a gap that the folds do not resolve (its interval reaches 0) would be a ratio of
                # noise (562 % of a +0.2 gap at COVID-19 10 labeled): stated only where the gap's interval is above 0
                if gain is not None and gap["delta_miou"] > 0 and gap.get("ci_low") is not None and gap["ci_low"] > 0:
                    entry["closed"][m] = {"share": gain["delta_miou"] / gap["delta_miou"],
                                          "gain": gain["delta_miou"], "gain_ci": [gain["ci_low"], gain["ci_high"]]}
            gaps.append(entry)
        out[dataset] = {"counts": counts, "scores": scores, "claims": claims, "gaps": gaps}
    every = [c for d in out.values() for c in d["claims"] + d["gaps"]]
    for family in ("primary", "variants"):  # one correction per family over every interval it states
        members = [c for c in every if c["holm_family"] == family and _states_interval(c)]
        for c in apply_holm(members):
            c["interval_method"] = INTERVAL_METHOD.replace("over the table", f"within the {family} family")
    for c in every:  # a cell with one fold so far states no interval, so it does not count in the correction
        if not _states_interval(c):
            c.update(p_holm=None, verdict="cannot tell (one fold)")
    return out


def mixed_thread_claims(tables: dict) -> list[str]:
    """``"<dataset> <count> <claim>: f1/s0, ..."`` for every claim or gap whose paired runs differ in thread count."""
    return [f"{d} {c['num_labeled']} labeled, {c['claim']}: {', '.join(c['mixed_threads'])}"
            for d, table in tables.items() for c in table["claims"] + table["gaps"] if c.get("mixed_threads")]


def _states_interval(claim: dict) -> bool:
    return claim["ci_low"] is not None and math.isfinite(claim["ci_low"])


def _holm_text(claim: dict) -> str:
    return "–" if claim["p_holm"] is None else f"{claim['p_holm']:.3f}"


#: Colours and markers of the variants' lines (cycled when there are more variants than entries).
VARIANT_COLOURS = ("tab:orange", "tab:purple", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
VARIANT_MARKERS = ("s", "^", "v", "D", "P", "X", "*", "<", ">")


def plot(tables: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.9), squeeze=False)
    # one colour and marker per variant across both panels
    every_variant = sorted({s["method"] for table in tables.values() for s in table["scores"]} - set(METHODS))
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        present = {s["method"] for s in table["scores"]}
        # the three methods as solid lines with interval bands; every variant (however many) its own colour and
        # marker, dashed, without a band, so that the methods' bands stay readable
        styles = [(m, c, "-", "o", True) for m, c in zip(METHODS, ("tab:gray", "tab:blue", "tab:red"))]
        styles += [(v, VARIANT_COLOURS[i % len(VARIANT_COLOURS)], "--", VARIANT_MARKERS[i % len(VARIANT_MARKERS)], False)
                   for i, v in enumerate(every_variant) if v in present]
        for m, colour, line, marker, band in styles:
            rows = [s for s in table["scores"] if s["method"] == m]
            if not rows:
                continue
            x = [s["num_labeled"] for s in rows]
            y = [s["miou"] for s in rows]
            ax.plot(x, y, marker=marker, color=colour, linestyle=line, label=m, markersize=5 if band else 6)
            if band:
                low = [s["ci_low"] if math.isfinite(s["ci_low"]) else s["miou"] for s in rows]
                high = [s["ci_high"] if math.isfinite(s["ci_high"]) else s["miou"] for s in rows]
                ax.fill_between(x, low, high, color=colour, alpha=0.12)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(table["counts"], [str(c) for c in table["counts"]])
        ax.set_xlabel("labeled images")
        ax.set_ylabel("pooled out-of-fold mIoU (points)")
        ax.set_title(TITLES[dataset], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(styles) > 5 else 1)
    fig.tight_layout()
    atomic_write(str(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return True


def summary_rows(tables: dict) -> list[str]:
    """One markdown row per (dataset, count) where a semi-supervised method ran: the three pooled scores, ours'
    two paired deltas (fold mean, interval, folds ahead), the labels gap and the share of it ours closes."""

    def delta(c: dict | None) -> str:
        if c is None:
            return "–"
        return f"{c['fold_mean_delta']:+.1f} {_interval(c['ci_low'], c['ci_high'])} ({c['sign_positive']}/{c['sign_n']})"

    rows = ["| dataset | labeled | supervised | conventional | ours | ours − supervised, per fold (folds ahead) "
            "| ours − conventional | labels gap (all labeled − this count) | ours closes |",
            "|---|---|---|---|---|---|---|---|---|"]
    for dataset, table in tables.items():
        score = {(s["num_labeled"], s["method"]): s["miou"] for s in table["scores"]}
        claim = {(c["num_labeled"], c["claim"]): c for c in table["claims"]}
        gap = {g["num_labeled"]: g for g in table["gaps"]}
        for n in table["counts"]:
            if (n, "ours") not in score and (n, "conventional") not in score:
                continue
            cells = [f"{score[(n, m)]:.1f}" if (n, m) in score else "–" for m in METHODS]
            g = gap.get(n)
            closed = g["closed"].get("ours") if g else None
            share = "–" if closed is None else f"{100 * closed['share']:.0f} %"
            rows.append(f"| {TITLES[dataset].split(' ')[0]} | {n} | " + " | ".join(cells)
                        + f" | {delta(claim.get((n, 'ours > supervised')))} | {delta(claim.get((n, 'ours > conventional')))}"
                        + f" | {delta(g)} | {share} |")
    return rows


def markdown(tables: dict, records: list[dict], protocol: str, variants: list[str] = ()) -> str:
    hours = sum(r.get("train_seconds", 0.0) for r in records) / 3600
    devices = sorted({r.get("device", "?") for r in records})
    commits = sorted({r.get("commit") or "?" for r in records})
    lines = [
        "# Labels curve: where unlabeled images pay",
        "",
        f"Generated by `python benchmarks/report_labels_curve.py --protocol {protocol}"
        f"{' --variants ' + ' '.join(variants) if variants else ''}` from {len(records)} reporting runs "
        f"of `results.json` (protocol `{protocol}`: 2,500 iterations at 96² patches, labeled sets drawn per fold and "
        f"seed; {hours:.1f} h of training on {', '.join(devices)}; commits {', '.join(commits)}). "
        "Resume the grid with `python benchmarks/run_paper_benchmark.py --protocol cpu2 --plan labels_curve --seeds 0 1`.",
        "",
        "![labels curve](labels_curve.png)",
        "",
        "Pooled out-of-fold mIoU: every reporting test image scored by its own fold's model, confusion counts summed "
        "over folds and seeds; the interval is a fold-level 95 % t-interval (per-fold mIoU, seeds averaged). "
        "Claims are paired on the same (fold, seed) labeled draw; their intervals are t-intervals over per-fold "
        "deltas (the column beside the pooled Δ gives their mean), and *holds* means the interval excludes 0 "
        "after a Holm correction: one over the three method claims at every count and the labels gaps of both "
        "datasets (the primary family), another over the variants' claims (ablations, whose number grows with "
        "every hypothesis tried and should not raise the bar for the primary claims). "
        "*Predicted / true area*: each foreground class's predicted area over its true area on the test images "
        "(summed confusion counts): below 1 the models under-segment it.",
        "",
        "## Summary",
        "",
        "Pooled mIoU in %; the deltas are the mean of the per-fold paired deltas with their fold-level 95 % "
        "interval and the folds ahead; *ours closes* is ours' pooled gain over supervised over the pooled labels gap, "
        "given only where the gap's fold-level interval lies above 0 (a share of an unresolved gap is a ratio of noise) "
        "(the tables below give the pooled Δs, the p-values and the Holm verdicts).",
        "",
        *summary_rows(tables),
    ]
    for dataset, table in tables.items():
        lines += ["", f"## {TITLES[dataset]}", "", "| labeled | method | mIoU [95 % interval] | folds | seeds | runs | predicted / true area |",
                  "|---|---|---|---|---|---|---|"]
        for s in table["scores"]:
            lines.append(f"| {s['num_labeled']} | {s['method']} | {s['miou']:.1f} "
                         f"{_interval(s['ci_low'], s['ci_high']).replace('+', '')} | {s['n_folds']} | "
                         f"{','.join(map(str, s['seeds']))} | {s['n_runs']} | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in s["area_ratio"].items()) + " |")
        if table["claims"]:
            # the pooled Δ (summed counts) can sit outside the interval, which is centred on the mean of
            # the per-fold deltas when folds differ in size or class content: both are shown
            lines += ["", "| labeled | claim | Δ pooled mIoU | Δ per fold, mean [95 % interval] | folds ahead | p (Holm) | verdict |",
                      "|---|---|---|---|---|---|---|"]
            for c in table["claims"]:
                lines.append(f"| {c['num_labeled']} | {c['claim']} | {c['delta_miou']:+.2f} | "
                             f"{c['fold_mean_delta']:+.2f} {_interval(c['ci_low'], c['ci_high'])} "
                             f"| {c['sign_positive']}/{c['sign_n']} | {c['p_value']:.3f} ({_holm_text(c)}) | {c['verdict']} |")
        if table["gaps"]:
            lines += ["", f"Labels gap: supervised with all {ALL_LABELED[dataset]} pool images labeled minus supervised "
                      "at the count (same test images), and the share of it each method closes (its gain over supervised "
                      "at that count divided by the gap; the gain's interval beside it; only where the gap's interval "
                      "lies above 0).", "",
                      "| labeled | labels gap [95 % interval] | verdict | conventional closes | ours closes |",
                      "|---|---|---|---|---|"]
            for g in table["gaps"]:
                closed = []
                for m in ("conventional", "ours"):
                    c = g["closed"].get(m)
                    closed.append("–" if c is None else
                                  f"{100 * c['share']:.0f} % ({c['gain']:+.1f} {_interval(*c['gain_ci'])})")
                lines.append(f"| {g['num_labeled']} | {g['delta_miou']:+.2f} {_interval(g['ci_low'], g['ci_high'])} | "
                             f"{g['verdict']} | {closed[0]} | {closed[1]} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="cpu2")
    parser.add_argument("--results", default=str(OUT / "results.json"))
    parser.add_argument("--output-dir", default=str(OUT))
    parser.add_argument("--variants", nargs="*", default=[],
                        help="benchmark variants to add as rows and claims against ours and supervised "
                             "(e.g. ours_fixed_threshold)")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        records = [r for r in json.load(f) if r["protocol"] == args.protocol and r["fold"] != DEV_FOLD]
    if not records:
        sys.exit(f"no reporting records of protocol {args.protocol!r} in {args.results}")
    tables = curve_tables(records, tuple(args.variants))
    mixed = mixed_thread_claims(tables)
    if mixed:
        sys.exit("error: paired runs made with different CPU thread counts (`threads` in the records), which alone "
                 "moves a run by points: " + "; ".join(mixed) + ". Re-run one side of each pair with "
                 "`run_paper_benchmark.py --run <id> --force` (one thread, the protocol's) and merge it back.")
    out = Path(args.output_dir)
    write_json_atomic(_finite_or_none(tables), str(out / "labels_curve.json"))
    shown = set(METHODS) | set(args.variants)
    text = markdown(tables, [r for r in records if r["method"] in shown], args.protocol, args.variants)
    atomic_write(str(out / "labels_curve.md"), lambda tmp: Path(tmp).write_text(text))
    plot(tables, out / "labels_curve.png")
    print(text)


if __name__ == "__main__":
    main()
