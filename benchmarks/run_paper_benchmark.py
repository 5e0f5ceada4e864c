"""Cross-validated comparison of the paper's methods on real data, through the bundles (resumable grid).

Every run is the bundle's own training command (``python -m monai.bundle run training``)
with overrides, followed by the bundle's evaluation of the *final* EMA teacher on the
fold's test images. Finished runs are recorded in ``docs/benchmarks/results.json`` (with
per-image confusion counts, so that any paired statistic can be recomputed) and skipped
when the script is started again.

Folds (see docs/benchmarks/README.md):
- CHASE_DB1: 6 patient-wise folds over the 12 patients of ``../shared/data/chase``; fold
  ``k`` tests patients ``2k+1`` and ``2k+2`` (4 images); the other 10 patients are the pool.
- COVID-19: 5 folds over the 50 labeled slices sorted by numeric name; fold ``k`` tests
  slices ``10k .. 10k+9`` of that order; the other 40 are the pool, the 1,600 unlabeled
  slices are always unlabeled.
- For each (fold, seed) the N labeled images are a seeded random draw from the pool
  (CHASE patient-wise: both eyes of a patient together where N allows;
  :func:`monai_supmix.comparison.draw_labeled`), the same for every method of that
  (fold, seed), distinct between folds unless the pool forces it; the rest of the pool is
  unlabeled. Every record stores its ``labeled_ids``.
- **Fold 0 is the development fold**: every choice (hyper-parameters, variants,
  schedules) is made on it; claims are reported on the other folds only. On fold 0 the
  bundle validates on the test images during training (learning curves for those
  choices); on a reporting fold it validates on a slice of its own training pool
  (the last images of the pool, whose labels are never trained on), never on the test images.

Usage::

    python benchmarks/run_paper_benchmark.py --list                       # the grid and what is done
    python benchmarks/run_paper_benchmark.py --protocol cpu               # reporting grid, priority order
    python benchmarks/run_paper_benchmark.py --protocol cpu2 --plan labels_curve   # the labels curve, drawn labeled sets
    python benchmarks/run_paper_benchmark.py --folds 0 --methods conventional ours   # development fold
    python benchmarks/run_paper_benchmark.py --run cpu_covid19_L10_f2_ours_s0 --force  # re-run one record
    python benchmarks/run_paper_benchmark.py --protocol gpu --jobs 6      # on one GPU (about 8 minutes budget)
    python benchmarks/run_paper_benchmark.py --merge-from ../grid/docs/benchmarks/results.json  # a worktree's runs
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the package, when run from a checkout without installing

from monai_supmix.utils.files import write_json_atomic  # noqa: E402

RESULTS = REPO / "docs" / "benchmarks" / "results.json"
RUNS = REPO / "benchmarks" / "_runs"
DATA = Path(os.environ.get("MONAI_SUPMIX_DATA", REPO.parent / "shared" / "data"))

DEV_FOLD = 0
NUM_FOLDS = {"chase": 6, "covid19": 5}

#: Settings shared by every semi-supervised method, chosen on the development fold (fold 0)
#: and given explicitly, so that the grid does not depend on the bundles' defaults: the
#: student's strong view at half strength; SupMix inside the FOV / lungs with feathered
#: edges, a flipped source and a paste on half of the images; output-space SUFD on the
#: masked mixed images (pasted ground truth and a margin around paste edges left out; no extra
#: student pass) with label smoothing and a 32-64 discriminator on the softmax average-pooled 2x
#: (since 2026-12-03, session 3: docs/benchmarks/README.md, "Development fold"; issue "A
#: semi-supervised step at most 2.5x a supervised one").
COMMON = {
    "strong_perturbation": True,
    "perturbation_strength": 0.5,
    "supmix_classes": "rarest",
    "supmix_within_region": True,
    "supmix_feather_sigma": 1.0,
    "supmix_flip_source": True,
    "supmix_prob": 0.5,
    "feature_layer": "output",
    "discriminator_input": "mixed_masked",
    "paste_margin": 8,
    "discriminator_channels": [32, 64],
    "discriminator_pool": 2,
    "discriminator_label_smoothing": 0.2,
    "adversarial_weight": 0.01,
    "class_adaptive_threshold": False,
    "unsupervised_dice_weight": 0.0,
}

#: The paper's five methods as bundle overrides (same network, schedule and evaluation).
METHODS = {
    "supervised": {"mix": "none", "sufd": False, "unsupervised_weight": 0.0},
    "conventional": {**COMMON, "mix": "classmix", "sufd": False},
    "supmix": {**COMMON, "mix": "both", "sufd": False},
    "sufd": {**COMMON, "mix": "classmix", "sufd": True},
    # since 2026-12-03 (session 4, bundles 0.5.0) with class-adaptive thresholds: docs/benchmarks/README.md,
    # "Development fold"; conventional, +SupMix and +SUFD keep the fixed threshold of COMMON
    "ours": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True},
}

#: Method settings that differ by dataset, as the bundles' defaults do: since 0.5.1 the CHASE bundle
#: pastes SupMix with hard edges (a feathered edge fades thin vessels into a halo labelled background;
#: docs/benchmarks/README.md, "Development fold", session 5); the COVID-19 bundle keeps feathered edges.
#: The session-6 variants are CHASE's ours with one change each, so they take its hard edges too.
PER_DATASET = {(method, "chase"): {"supmix_feather_sigma": 0.0}
               for method in ("ours", "ours_ema999", "ours_unsup2", "ours_supmix025")}

#: COMMON before 2026-12-03 (session 3): SUFD on the full-resolution softmax. The variants of ours
#: tested on it keep it, so that they re-run as they ran.
FULLRES = {**COMMON, "discriminator_pool": 1}

#: The bundles' settings when the development-fold variants below were measured (protocol
#: ``cpu1500``); every variant is spelled out on top of them so that it re-runs as it ran.
DEV_BASE = {
    "strong_perturbation": True,
    "perturbation_strength": 1.0,
    "supmix_classes": "rarest",
    "supmix_within_region": True,
    "supmix_feather_sigma": 0.0,
    "supmix_flip_source": False,
    "supmix_prob": 1.0,
    "feature_layer": "model.1",
    "discriminator_input": "mixed",
    "discriminator_label_smoothing": 0.0,
    "adversarial_weight": 0.01,
    "class_adaptive_threshold": False,
    "unsupervised_dice_weight": 0.0,
}

#: Design changes measured on the development fold (``--variants``); see docs/benchmarks/README.md.
VARIANTS: dict[str, dict] = {
    # conventional with the full-strength strong view
    "conventional_strong": {**DEV_BASE, "mix": "classmix", "sufd": False},
    # the previous engine: the student sees the teacher's weak view (no strong perturbation)
    "conventional_weak": {**DEV_BASE, "mix": "classmix", "sufd": False, "strong_perturbation": False},
    "ours_v0": {**DEV_BASE, "mix": "both", "sufd": True, "strong_perturbation": False, "supmix_within_region": False},
    # Dice + CE on the confident pseudo-labels (the supervised loss's form) instead of CE alone
    "conventional_dice": {**DEV_BASE, "mix": "classmix", "sufd": False, "unsupervised_dice_weight": 1.0},
    # a milder strong view
    "conventional_mild": {**DEV_BASE, "mix": "classmix", "sufd": False, "perturbation_strength": 0.5},
    # the supervised baseline trained twice as long: is 1,500 iterations enough?
    "supervised_long": {"mix": "none", "sufd": False, "unsupervised_weight": 0.0, "max_epochs": 60},
    # class-adaptive confidence thresholds (FlexMatch-like)
    "conventional_adaptive": {**DEV_BASE, "mix": "classmix", "sufd": False, "class_adaptive_threshold": True},
    # SupMix pasted anywhere with hard edges (the paper's description) vs like anatomy
    "supmix_anywhere": {**DEV_BASE, "mix": "both", "sufd": False, "supmix_within_region": False},
    "supmix_anatomy": {**DEV_BASE, "mix": "both", "sufd": False, "supmix_within_region": True,
                       "supmix_feather_sigma": 1.0, "supmix_flip_source": True, "supmix_prob": 0.5},
    # SUFD on the plain unlabeled images; and output-space SUFD with label smoothing
    "sufd_plain": {**DEV_BASE, "mix": "classmix", "sufd": True, "discriminator_input": "unlabeled"},
    "sufd_output": {**DEV_BASE, "mix": "classmix", "sufd": True, "discriminator_input": "unlabeled",
                    "feature_layer": "output", "discriminator_label_smoothing": 0.2},
    # the previous SUFD (before the step-cost work): the plain unlabeled images in one more student
    # pass, a 64-128 discriminator; the strong view is the batched one in both
    "ours_plain_sufd": {**FULLRES, "mix": "both", "sufd": True, "discriminator_input": "unlabeled",
                        "discriminator_channels": [64, 128]},
    # a cheaper SUFD candidate (issue on step time): the masked mixed softmax average-pooled 2x first;
    # the bundles' default since 2026-12-03 (session 3), so the same as ours from then on
    "ours_pooled_sufd": {**COMMON, "mix": "both", "sufd": True, "discriminator_pool": 2},
    # ours before that: SUFD on the full-resolution masked mixed softmax (the labels-curve and
    # development runs of ours made before the change were relabelled to this name)
    "ours_fullres_sufd": {**FULLRES, "mix": "both", "sufd": True},
    # COVID-19: per-slice percentile intensity scaling (the unlabeled slices are darker than the labeled)
    "supervised_pct": {"mix": "none", "sufd": False, "unsupervised_weight": 0.0, "intensity_normalization": "percentile"},
    "conventional_pct": {**COMMON, "mix": "classmix", "sufd": False, "intensity_normalization": "percentile"},
    # hypotheses for the lowest labeled counts (issue "Where unlabeled images pay"), on ours:
    # a longer labeled-only phase before self-training (the unsupervised and adversarial terms
    # ramp up over 1,500 of the 2,500 iterations instead of 600: a better teacher first)
    "ours_warmup": {**FULLRES, "mix": "both", "sufd": True, "rampup_iterations": 1500},
    # a stronger SUFD (5x the adversarial weight): the unlabeled COVID-19 slices are darker than
    # the labeled ones, the shift SUFD exists to align
    "ours_adv05": {**FULLRES, "mix": "both", "sufd": True, "adversarial_weight": 0.05},
    # bidirectional SupMix (BCP's idea): half of the mixed batch becomes labeled images that carry
    # the unlabeled images' pseudo-labelled classes, so labeled and unlabeled content meet both ways
    "ours_bidirectional": {**FULLRES, "mix": "bidirectional", "sufd": True},
    # UniMatch's feature perturbation: channel dropout (0.5) on the student's bottleneck features of
    # the mixed images, inside its one pass
    "ours_fp": {**FULLRES, "mix": "both", "sufd": True, "feature_dropout": 0.5},
    # the step-cost issue: ours with mixed precision (bfloat16 autocast on a CPU, float16 on CUDA);
    # 1.3-1.5x faster on an AVX512-BF16 CPU (step_time.md): does it give up accuracy?
    "ours_amp": {**FULLRES, "mix": "both", "sufd": True, "amp": True},
    # the step-cost issue: SUFD's arithmetic is 0.37x a supervised step (FLOPs, step_time.md); a
    # 16-32 discriminator does a quarter of it at full resolution (the pooled one sees a quarter of the pixels)
    "ours_disc16": {**FULLRES, "mix": "both", "sufd": True, "discriminator_channels": [16, 32]},
    # the confidence threshold at the lowest counts: by the last fifth of training the teacher is confident
    # (>= 0.9) on 91-98 % of the mixed pixels at 2-5 labeled slices (conventional 97-100 %), a sign of
    # confirmation bias; a stricter threshold keeps only its surest pseudo-labels
    "ours_thr097": {**FULLRES, "mix": "both", "sufd": True, "confidence_threshold": 0.97},
    # CHASE at 1-2 labeled retinas: self-training collapses by under-segmenting the vessels (predicted
    # vessel area 0.07-0.62x the truth for conventional on the collapsing folds, precision unchanged).
    # Hypothesis: cross-entropy on the confident pseudo-label pixels is dominated by background while the
    # less confident vessel pixels are filtered out. Two remedies on the current step (COMMON):
    # Dice + cross-entropy on the pseudo-labels (Dice weighs every class alike) ...
    "ours_dice": {**COMMON, "mix": "both", "sufd": True, "unsupervised_dice_weight": 1.0},
    # ... and per-class thresholds from the teacher's running confidence (FlexMatch-like); the bundles'
    # default since 0.5.0, so the same as ours from then on
    "ours_adaptive": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True},
    # ours before 0.5.0: one fixed threshold (0.9) for every class (the runs of ours made before the
    # change were relabelled to this name)
    "ours_fixed_threshold": {**COMMON, "mix": "both", "sufd": True},
    # conventional with the same class-adaptive thresholds: how much of ours' gain at the lowest counts
    # is the thresholds alone (still to run: docs/benchmarks/README.md)
    "conventional_adaptive_thr": {**COMMON, "mix": "classmix", "sufd": False, "class_adaptive_threshold": True},
    # ... and each of ours' two components alone on top of those thresholds: at 1 labeled retina
    # conventional_adaptive_thr is ahead of ours; which of SupMix and SUFD costs the points?
    "supmix_adaptive_thr": {**COMMON, "mix": "both", "sufd": False, "class_adaptive_threshold": True},
    "sufd_adaptive_thr": {**COMMON, "mix": "classmix", "sufd": True, "class_adaptive_threshold": True},
    # the same settings as ours, from the commit on that keeps SupMix's pasted ground truth (confidence 1)
    # out of the class-adaptive thresholds' learning status (0.5.0 counted it, so the pasted classes
    # looked learnt and kept their full threshold): the development-fold test of that change
    "ours_teacher_status": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True},
    # ... and SupMix with hard paste edges (CHASE's ours since 0.5.1, whose records of it were relabelled
    # to ours): the feathered paste fades a pasted vessel's intensity into a
    # halo outside the paste mask, where the label is the destination's pseudo-label (background), which
    # may teach thin structures to shrink
    "ours_hard_paste": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True,
                        "supmix_feather_sigma": 0.0},
    # ours 0.5.0 on CHASE_DB1 (feathered edges, and a learning status that counted SupMix's pasted pixels):
    # the CHASE records of ours made before 0.5.1 were relabelled to this name; the code fix cannot be
    # switched off, so re-running it now runs ours_teacher_status
    "ours_0_5_0": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True},
    # ... and distribution alignment (ReMixMatch): the teacher's class probabilities rescaled so that
    # their running mean matches the labeled class shares, before the pseudo-labels are taken
    "ours_da": {**COMMON, "mix": "both", "sufd": True, "distribution_alignment": True},
    # (2026-12-07, session 6) CHASE's ours 0.5.1 with one change each, on the development fold's hard
    # draws: a slower EMA teacher (a horizon of ~1,000 iterations instead of ~100): with one labeled
    # retina the teacher follows the student's drift within ~100 steps, so thinning vessels feed back fast
    # (each dataset's ours: PER_DATASET gives it CHASE's hard edges)
    "ours_ema999": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True, "ema_decay": 0.999},
    # ... and a doubled pseudo-label weight: with one labeled retina the unlabeled term is the only
    # regulariser of a model that otherwise fits one vessel tree
    "ours_unsup2": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True,
                    "unsupervised_weight": 2.0},
    # ... and half as many SupMix pastes (supmix_prob 0.25 instead of 0.5; each dataset's ours: PER_DATASET)
    "ours_supmix025": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True, "supmix_prob": 0.25},
    # (2026-12-07, session 7) COVID-19 with 2 labeled slices, where the labels gap is resolved (+8.6) and ours
    # closes 3 % of it: ours still shrinks ground-glass (predicted area 0.57 of the truth, supervised 0.72).
    # Two remedies of that shrinkage on top of ours 0.5.1 (the class-adaptive thresholds kept): distribution
    # alignment (ReMixMatch) rescales the teacher's class probabilities towards the labeled class shares ...
    "ours_da_adaptive": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True,
                         "distribution_alignment": True},
    # ... and Dice + cross-entropy on the pseudo-labels (Dice weighs the rare classes like background)
    "ours_dice_adaptive": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True,
                           "unsupervised_dice_weight": 1.0},
    # ... and SupMix on every unlabeled image (supmix_prob 1.0 instead of 0.5): at 2 labeled slices SupMix is
    # what ours adds over ClassMix with the same thresholds (conventional_adaptive_thr is 1.7 behind ours), the
    # only source of exact lesion labels in the unlabeled images' context, so more of it may pay more
    "ours_supmix100": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True, "supmix_prob": 1.0},
    # ... and a self-training gate: with 2 labeled slices some runs pass through a phase in which the network
    # predicts background everywhere (fold 0, seed 1: every method until ~750 iterations); the teacher's confident
    # all-background pseudo-labels, ramped in during that phase, keep the student there (Dice on pseudo-labels
    # never left it). The pseudo-label and adversarial terms start once the student's running Dice on its labeled
    # patches is >= 0.5 for every labeled class (SelfTrainingGate), and ramp up from there
    "ours_gate": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True,
                  "self_training_min_dice": 0.5},
    # (2026-12-08, session 8; a yardstick check) supervised trained twice as long (5,000 iterations): does the
    # protocol's 2,500 undertrain the models with many labeled images and so hide the labels gap (COVID-19
    # 40 - 10 labeled is +0.2 on the folds, +6.5 on the 48 slices outside ../shared)?
    "supervised_x2": {"mix": "none", "sufd": False, "unsupervised_weight": 0.0, "max_epochs": 100},
    # (same session) ours on the unlabeled images whose intensity range matches the labeled ones' only: 1,119 of the
    # 1,600 unlabeled COVID-19 slices (10 'coronacases' volumes) were exported with another window (95th intensity
    # percentile 84-147 against 208-254 for the labeled slices), so their lesions show at about half the contrast
    # (the bundle key unlabeled_intensity_ratio: monai_supmix.data.match_intensity_range, 0.75 of the labeled draw's
    # median; its six records of 2026-12-08 were made with the same filter applied to the benchmark's datalist, before
    # the key existed, and carry the filtered count in num_unlabeled)
    "ours_matched_unlabeled": {**COMMON, "mix": "both", "sufd": True, "class_adaptive_threshold": True,
                               "unlabeled_intensity_ratio": 0.75},
}
ALL_METHODS = {**METHODS, **VARIANTS}
#: Methods that exist for one dataset only (keys the other bundle does not have).
DATASET_ONLY = {"supervised_pct": "covid19", "conventional_pct": "covid19"}

#: Reduced settings for a 2-core CPU and full-resolution settings for a GPU. 2,500 iterations:
#: on the development fold the supervised baseline gains +1.5 points between 1,500 and 3,000
#: iterations and has levelled off by about 2,500 (docs/benchmarks/README.md).
PROTOCOLS = {
    "cpu": {
        "chase": {"scale": 0.5, "patch_size": [96, 96], "max_epochs": 50, "iterations_per_epoch": 50,
                  "rampup_iterations": 600},
        "covid19": {"spatial_size": [192, 192], "patch_size": [96, 96], "max_epochs": 50, "iterations_per_epoch": 50,
                    "rampup_iterations": 600},
    },
    # the first protocol (1,500 iterations), kept to re-run the development-fold records made with it
    "cpu1500": {
        "chase": {"scale": 0.5, "patch_size": [96, 96], "max_epochs": 30, "iterations_per_epoch": 50,
                  "rampup_iterations": 400},
        "covid19": {"spatial_size": [192, 192], "patch_size": [96, 96], "max_epochs": 30, "iterations_per_epoch": 50,
                    "rampup_iterations": 400},
    },
    "gpu": {
        "chase": {"scale": 1.0, "patch_size": [192, 192], "max_epochs": 50, "iterations_per_epoch": 50,
                  "rampup_iterations": 600, "batch_size": 8, "num_workers": 2},
        "covid19": {"spatial_size": [352, 352], "patch_size": [192, 192], "max_epochs": 50,
                    "iterations_per_epoch": 50, "rampup_iterations": 600, "batch_size": 8, "num_workers": 2},
    },
}
#: The CPU protocol with labeled sets drawn per fold and seed (since 2026-12-03; ``labeled_ids`` in
#: every record): same settings as ``cpu``, its own run ids, so that its claims never mix with the
#: ``cpu`` records, whose reporting folds all trained on the first N images of the pool.
PROTOCOLS["cpu2"] = PROTOCOLS["cpu"]
#: Validation every this many epochs (the curves of the development fold).
VAL_EVERY = 5

#: Labeled-set sizes: the semi-supervised settings and the all-labeled upper bounds.
SETTINGS = {"chase": (1, 2, 4, 20), "covid19": (10, 40)}
#: The labels curve: supervised at every count, conventional and ours at the two lowest.
LABELS_CURVE = {"covid19": (2, 5, 10, 20, 40), "chase": (1, 2, 4, 20)}
UPPER_BOUND = {"chase": 20, "covid19": 40}


# ----------------------------------------------------------------------------------- folds
def _patient(item: dict) -> str:
    match = re.match(r"Image_(\d+)[LR]", item["id"])
    if not match:
        raise ValueError(f"CHASE id {item['id']!r} does not follow Image_NNX")
    return match.group(1)


def _fold_items(dataset: str, data_dir: Path) -> tuple[list[dict], list[dict], int]:
    """``(labeled items in fold order, extra unlabeled items, monitor count)`` of a dataset."""
    from monai_supmix.data import chase_datalist, covid_datalist

    if dataset == "chase":
        items = sorted(chase_datalist(str(data_dir / "chase")), key=lambda i: i["id"])
        patients = sorted({_patient(i) for i in items})
        if len(patients) != 2 * NUM_FOLDS["chase"]:
            raise ValueError(f"expected 12 CHASE patients, found {len(patients)}")
        return items, [], 2
    found = covid_datalist(str(data_dir / "covid19"))
    items = sorted(found["labeled"], key=lambda i: int(i["id"]))
    return items, [{"image": i["image"], "id": i["id"]} for i in found["unlabeled"]], 4


def _test_and_pool(dataset: str, items: list[dict], fold: int) -> tuple[list[dict], list[dict]]:
    if dataset == "chase":
        patients = sorted({_patient(i) for i in items})
        test_patients = set(patients[2 * fold : 2 * fold + 2])
        return [i for i in items if _patient(i) in test_patients], [i for i in items if _patient(i) not in test_patients]
    return items[10 * fold : 10 * fold + 10], items[: 10 * fold] + items[10 * fold + 10 :]


def fold_split(dataset: str, fold: int, num_labeled: int, data_dir: Path = DATA, seed: int = 0) -> dict[str, list[dict]]:
    """``{"labeled", "unlabeled", "validation", "test"}`` of one fold and seed (see the module docstring).

    The labeled images are a seeded draw from the fold's pool (CHASE patient-wise),
    :func:`monai_supmix.comparison.draw_labeled`: the same for every method of a (fold, seed).

    Raises:
        ValueError: for an unknown dataset, a fold out of range, or more labeled images than the pool holds.
    """
    from monai_supmix.comparison import draw_labeled

    if dataset not in NUM_FOLDS:
        raise ValueError(f"dataset must be one of {sorted(NUM_FOLDS)}, got {dataset!r}")
    if not 0 <= fold < NUM_FOLDS[dataset]:
        raise ValueError(f"{dataset} has folds 0..{NUM_FOLDS[dataset] - 1}, got {fold}")
    items, extra, monitor = _fold_items(dataset, data_dir)
    test, pool = _test_and_pool(dataset, items, fold)
    if not 1 <= num_labeled <= len(pool):
        raise ValueError(f"num_labeled must be in 1..{len(pool)} for {dataset}, got {num_labeled}")
    group = (lambda image_id: image_id.split("_")[1][:2]) if dataset == "chase" else None
    labeled, rest = draw_labeled(lambda f: _test_and_pool(dataset, items, f)[1], fold, seed, num_labeled,
                                 NUM_FOLDS[dataset], dataset, group)
    unlabeled = [{k: v for k, v in i.items() if k not in ("label", "label_2nd")} for i in rest] + extra
    # training-time validation: the test images on the development fold only; elsewhere the
    # last images of the drawn pool order (used as unlabeled images, their labels never trained on)
    validation = test if fold == DEV_FOLD else (rest[-monitor:] if rest else labeled[-monitor:])
    return {"labeled": labeled, "unlabeled": unlabeled, "validation": validation, "test": test}


def write_datalists(dataset: str, fold: int, num_labeled: int, out_dir: Path, seed: int = 0,
                    data_dir: Path | None = None) -> tuple[Path, Path, list[str]]:
    """The bundle's ``datalist_file`` for training and for the test evaluation of one fold and seed, and the labeled ids."""
    split = fold_split(dataset, fold, num_labeled, DATA if data_dir is None else data_dir, seed=seed)
    train = out_dir / f"{dataset}_f{fold}_L{num_labeled}_s{seed}_train.json"
    test = out_dir / f"{dataset}_f{fold}_L{num_labeled}_s{seed}_test.json"
    body = {k: split[k] for k in ("labeled", "unlabeled")}
    write_json_atomic({**body, "validation": split["validation"]}, str(train))
    write_json_atomic({**body, "validation": split["test"]}, str(test))
    return train, test, [i["id"] for i in split["labeled"]]


# ------------------------------------------------------------------------------------ grid
def run_id(protocol: str, dataset: str, labeled: int, fold: int, method: str, seed: int) -> str:
    return f"{protocol}_{dataset}_L{labeled}_f{fold}_{method}_s{seed}"


def parse_run_id(rid: str) -> tuple[str, str, int, int, str, int]:
    match = re.fullmatch(r"(\w+?)_(chase|covid19)_L(\d+)_f(\d+)_(\w+)_s(\d+)", rid)
    if not match:
        raise ValueError(f"not a run id: {rid!r} (expected e.g. cpu_chase_L4_f1_ours_s0)")
    protocol, dataset, labeled, fold, method, seed = match.groups()
    return protocol, dataset, int(labeled), int(fold), method, int(seed)


def labels_curve_grid(folds: dict[str, list[int]], seeds: list[int]) -> list[tuple]:
    """Runs ``(dataset, labeled, fold, method, seed)`` of the labels curve, in priority order.

    1. supervised at every count of :data:`LABELS_CURVE`, first seed (COVID-19 first: its labels
       gap is the one to resolve);
    2. conventional and ours at the two lowest counts of each dataset, first seed;
    3. the same for every further seed.
    """
    order: list[tuple] = []
    for seed in seeds:
        for dataset in ("covid19", "chase"):
            for labeled in LABELS_CURVE[dataset]:
                order += [(dataset, labeled, f, "supervised", seed) for f in folds.get(dataset, [])]
        for dataset in ("covid19", "chase"):
            for labeled in LABELS_CURVE[dataset][:2]:
                for method in ("conventional", "ours"):
                    order += [(dataset, labeled, f, method, seed) for f in folds.get(dataset, [])]
    return order


def grid(folds: dict[str, list[int]], seeds: list[int], variants: list[str] = ()) -> list[tuple]:
    """Runs ``(dataset, labeled, fold, method, seed)`` in priority order.

    1. the headline methods (supervised, conventional, ours) on COVID-19 with 10 labeled
       slices and CHASE with 4 labeled images, first seed, every fold;
    2. the all-labeled upper bounds (supervised), for the labels-matter gaps;
    3. the ablations (+SupMix, +SUFD), first seed;
    4. further seeds of the headline methods;
    5. the labels-matter settings CHASE 2- and 1-labeled (headline methods, first seed);
    6. design-change variants, if asked for.
    """
    order: list[tuple] = []

    def add(dataset, labeled, method, seed):
        if DATASET_ONLY.get(method, dataset) != dataset:
            return
        for fold in folds.get(dataset, []):
            key = (dataset, labeled, fold, method, seed)
            if key not in order:
                order.append(key)

    first, more = seeds[0], seeds[1:]
    headline = (("covid19", 10), ("chase", 4))
    for dataset, labeled in headline:
        for method in ("supervised", "conventional", "ours"):
            add(dataset, labeled, method, first)
    for dataset in ("covid19", "chase"):
        add(dataset, UPPER_BOUND[dataset], "supervised", first)
    for dataset, labeled in headline:
        for method in ("supmix", "sufd"):
            add(dataset, labeled, method, first)
    for seed in more:
        for dataset, labeled in headline:
            for method in ("supervised", "conventional", "ours"):
                add(dataset, labeled, method, seed)
    for labeled in (2, 1):
        for method in ("supervised", "conventional", "ours"):
            add("chase", labeled, method, first)
    for seed in seeds:
        for variant in variants:
            for dataset, labeled in headline:
                add(dataset, labeled, variant, seed)
    return order


# ----------------------------------------------------------------------------------- runs
def run_overrides(protocol: str, dataset: str, labeled: int, method: str, seed: int) -> dict:
    """Bundle overrides of one run (without the per-run paths)."""
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(ALL_METHODS)}")
    if DATASET_ONLY.get(method, dataset) != dataset:
        raise ValueError(f"method {method!r} exists for {DATASET_ONLY[method]} only")
    if labeled == UPPER_BOUND[dataset] and dataset == "chase" and ALL_METHODS[method].get("mix") != "none":
        raise ValueError("CHASE with every pool image labeled has no unlabeled images left")
    overrides = dict(PROTOCOLS[protocol][dataset])
    overrides.update(ALL_METHODS[method])
    overrides.update(PER_DATASET.get((method, dataset), {}))
    overrides.update(seed=seed, progress_bar=False, val_interval=VAL_EVERY)
    return overrides


def source_commit(repo: Path = REPO) -> str | None:
    """The short commit of the checkout that trains, ``-dirty`` when tracked files outside ``docs/benchmarks``
    differ from it (the grid's own results file changes as it runs); ``None`` outside a git checkout.

    Every record carries it, so that a table can say which code produced each number (long grids run from
    a ``git worktree`` of a fixed commit).
    """
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    dirty = [line for line in changed if not line[3:].startswith("docs/benchmarks/")]
    return head + ("-dirty" if dirty else "")


def execute(protocol: str, dataset: str, labeled: int, fold: int, method: str, seed: int, threads: int) -> dict:
    """Train one run through the bundle, evaluate its final EMA teacher on the fold's test images.

    The training and evaluation are the package's (:func:`monai_supmix.comparison.train_and_evaluate`,
    as ``monai-supmix compare`` runs them); this adds the benchmark's folds and record fields.
    """
    from monai_supmix.comparison import train_and_evaluate
    from monai_supmix.comparison.runner import device_text

    rid = run_id(protocol, dataset, labeled, fold, method, seed)
    train_list, test_list, labeled_ids = write_datalists(dataset, fold, labeled, RUNS / "datalists", seed)
    overrides = run_overrides(protocol, dataset, labeled, method, seed)
    metrics = train_and_evaluate(REPO / "bundles" / dataset, RUNS / rid, train_list, test_list, overrides, threads,
                                 cwd=REPO)
    return {
        "id": rid,
        "protocol": protocol,
        "dataset": dataset,
        "fold": fold,
        "role": "development" if fold == DEV_FOLD else "reporting",
        "method": method,
        "num_labeled": labeled,
        "seed": seed,
        "labeled_ids": labeled_ids,
        **metrics,
        "steps": overrides["max_epochs"] * overrides["iterations_per_epoch"],
        "device": device_text(),
        "commit": source_commit(),
        "settings": overrides,
        "date": time.strftime("%Y-%m-%d"),
    }


def load_results() -> list[dict]:
    from monai_supmix.comparison import ResultStore

    return ResultStore(RESULTS).load()


def _retired_ids(records: list[dict]) -> set[str]:
    """Ids that records here carried before they were relabelled (``relabeled_from``, ``first_recorded_as``,
    ``relabel_history``, also of the records they replaced, ``superseded``): a grid copy that still holds a
    record under its old name must not bring it back."""
    retired: set[str] = set()
    for record in records:
        for entry in [record, *(record.get("superseded") or [])]:  # a replaced record's names stay retired too
            for key in ("relabeled_from", "first_recorded_as"):
                if isinstance(entry.get(key), str):
                    retired.add(entry[key])
            retired.update(entry.get("relabel_history") or [])
    return retired - {r["id"] for r in records}


#: What ``superseded`` keeps of a replaced record: enough to say which run it was and what it scored.
SUPERSEDED_FIELDS = ("commit", "commit_note", "date", "threads", "device", "pooled_miou", "train_seconds",
                     "relabeled_from", "first_recorded_as", "relabel_history")


def superseded_history(old: dict, new: dict) -> list[dict]:
    """The ``superseded`` list of ``new`` when it replaces ``old`` (the same run id): the summaries of
    ``old``'s own earlier records, then ``old``'s (``SUPERSEDED_FIELDS``), oldest first; ``new``'s own
    ``superseded`` entries are kept when it already carries them (a re-merge)."""
    history = [dict(item) for item in old.get("superseded") or []]
    history.append({k: old[k] for k in SUPERSEDED_FIELDS if k in old})
    for item in new.get("superseded") or []:
        if item not in history:
            history.append(dict(item))
    return history


def _same_record(here: dict | None, there: dict) -> bool:
    """Whether ``there`` is the record ``here`` already holds (a replacement's ``superseded`` list aside)."""
    if here is None:
        return False
    drop = ("superseded",)
    return {k: v for k, v in here.items() if k not in drop} == {k: v for k, v in there.items() if k not in drop}


def merge_results(target: Path, sources: list[Path], replace: bool = False,
                  print_fn=print) -> tuple[int, int]:
    """Copy the records of other results files (e.g. a grid's ``git worktree``) into ``target``.

    A record whose id is new is added; one equal to the record here, or recorded here under a
    newer name, is skipped. A record that differs from the one here under the same id is an
    error naming the id, unless ``replace``. ``target`` is written once, atomically.

    A replaced record's run is not lost from view: the new record's ``superseded`` lists what
    each earlier record of that id was (:func:`superseded_history`).

    Returns:
        ``(records added or replaced, records skipped)``.
    """
    from monai_supmix.comparison import ResultStore

    store = ResultStore(target)
    records = {r["id"]: r for r in store.load()}
    retired = _retired_ids(list(records.values()))
    added = skipped = 0
    for source in sources:
        if not Path(source).is_file():
            raise FileNotFoundError(f"--merge-from: {source} is not a file (expected a results.json of a grid)")
        for record in ResultStore(source).load():
            rid = record.get("id")
            if not isinstance(rid, str):
                raise ValueError(f"{source}: a record without a string 'id' ({sorted(record)[:5]}...)")
            if rid in retired or _same_record(records.get(rid), record):
                skipped += 1
                continue
            if rid in records and not replace:
                raise ValueError(f"{source}: record {rid!r} differs from the one in {target}; "
                                 "pass --force to replace it, or remove it from one of the files")
            if rid in records:
                record = {**record, "superseded": superseded_history(records[rid], record)}
            records[rid] = record
            added += 1
    if added:
        store.write(list(records.values()))
    print_fn(f"merged {added} record(s) into {target} ({skipped} already there or relabelled)")
    return added, skipped


def _parse_folds(values: list[str] | None) -> dict[str, list[int]]:
    """``--folds``: ``reporting`` (default), ``dev``, ``all`` or fold numbers."""
    spec = values or ["reporting"]
    folds: dict[str, list[int]] = {}
    for dataset, count in NUM_FOLDS.items():
        chosen: list[int] = []
        for value in spec:
            if value == "reporting":
                chosen += [f for f in range(count) if f != DEV_FOLD]
            elif value == "dev":
                chosen.append(DEV_FOLD)
            elif value == "all":
                chosen += list(range(count))
            elif value.isdigit():
                if int(value) < count:
                    chosen.append(int(value))
            else:
                raise SystemExit(f"--folds takes 'reporting', 'dev', 'all' or fold numbers, got {value!r}")
        folds[dataset] = sorted(set(chosen))
    return folds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--folds", nargs="+", default=None,
                        help="'reporting' (default: every fold but the development fold 0), 'dev', 'all' or numbers")
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(NUM_FOLDS), help="restrict to datasets")
    parser.add_argument("--methods", nargs="*", default=None, choices=sorted(ALL_METHODS), help="restrict to methods")
    parser.add_argument("--labeled", type=int, nargs="*", default=None, help="restrict to labeled-set sizes")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS),
                        help="add design-change variants to the grid")
    parser.add_argument("--run", nargs="*", default=None, help="run exactly these run ids (e.g. cpu_chase_L4_f1_ours_s0)")
    parser.add_argument("--force", action="store_true", help="re-run runs that are already recorded")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (1 on a 2-core CPU; ~6 on one GPU)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of each training (default 1, whatever --jobs is): the thread count changes a "
                             "run's numbers (sixteen cpu2 records made with 2 threads moved by up to 3 points when re-run "
                             "with 1), so every record of a protocol is made with the same count")
    parser.add_argument("--time-budget", type=float, default=None, help="start no new run after this many seconds")
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    parser.add_argument("--plan", choices=("claims", "labels_curve"), default="claims",
                        help="claims: the headline settings, upper bounds and ablations; labels_curve: supervised at "
                             "every labeled count, conventional and ours at the two lowest")
    parser.add_argument("--merge-from", nargs="+", default=None, metavar="RESULTS_JSON",
                        help="copy the records of these results files (a grid's git worktree) into "
                             "docs/benchmarks/results.json and exit; --force replaces records that differ")
    args = parser.parse_args(argv)
    if args.merge_from:
        try:
            merge_results(RESULTS, [Path(p) for p in args.merge_from], replace=args.force)
        except (FileNotFoundError, ValueError) as err:
            sys.exit(f"error: {err}")
        return
    if not (DATA / "chase").is_dir() or not (DATA / "covid19").is_dir():
        sys.exit(f"real data not found under {DATA}; see ../shared/data/README.md (or set MONAI_SUPMIX_DATA)")
    if args.run:
        todo = []
        for rid in args.run:
            protocol, dataset, labeled, fold, method, seed = parse_run_id(rid)
            if protocol != args.protocol:
                args.protocol = protocol
            todo.append((dataset, labeled, fold, method, seed))
    else:
        planned = (labels_curve_grid(_parse_folds(args.folds), args.seeds) if args.plan == "labels_curve"
                   else grid(_parse_folds(args.folds), args.seeds, args.variants))
        todo = [
            g for g in planned
            if (not args.only or g[0] in args.only)
            and (not args.methods or g[3] in args.methods)
            and (not args.labeled or g[1] in args.labeled)
        ]
    done = {r["id"] for r in load_results()}
    pending = [g for g in todo if args.force or run_id(args.protocol, *g) not in done]
    if args.list:
        for g in todo:
            rid = run_id(args.protocol, *g)
            print(("done " if rid in done else "todo ") + rid)
        print(f"{len(todo) - len(pending)} of {len(todo)} done")
        return
    if args.max_runs is not None:
        pending = pending[: args.max_runs]
    from monai_supmix.comparison import ResultStore, run_grid

    _, failures = run_grid(
        pending,
        lambda key: run_id(args.protocol, *key),
        lambda key, threads: execute(args.protocol, *key, threads=threads),
        ResultStore(RESULTS),
        jobs=args.jobs,
        force=True,  # already filtered above (--force or not done)
        time_budget=args.time_budget,
        print_fn=lambda line: print(line, flush=True),
        threads=args.threads,
    )
    if failures:
        sys.exit(1)

if __name__ == "__main__":
    main()
