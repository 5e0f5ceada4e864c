"""The paper-benchmark scripts: folds, overrides that the bundles accept, bootstrap and claims."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monai_supmix.bundle import validate_values
from monai_supmix.data import write_chase_phantoms, write_covid_phantoms

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _load("run_paper_benchmark")
stats = _load("paired_stats")
report = _load("report_paper_benchmark")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_chase_phantoms(str(root / "chase"), num_images=24, size=(32, 32))
    write_covid_phantoms(str(root / "covid19"), num_labeled=50, num_unlabeled=6, size=(32, 32))
    return root


@pytest.mark.parametrize("dataset", ["chase", "covid19"])
def test_every_override_is_a_valid_bundle_key(dataset):
    with open(REPO / "bundles" / dataset / "configs" / "train.json") as f:
        config = json.load(f)
    for name in run.ALL_METHODS:
        if run.DATASET_ONLY.get(name, dataset) != dataset:
            continue
        for protocol in run.PROTOCOLS:
            merged = run.run_overrides(protocol, dataset, 4 if dataset == "chase" else 10, name, 0)
            missing = sorted(set(merged) - set(config))
            assert not missing, f"{name}: {missing} are not keys of {dataset}/train.json"
            validate_values({**config, **merged})


def _ids(items):
    return [i["id"] for i in items]


@pytest.mark.parametrize("labeled", [1, 2, 4, 20])
def test_chase_folds_are_patient_wise_and_test_every_image_once(data_dir, labeled):
    tested = []
    for fold in range(run.NUM_FOLDS["chase"]):
        split = run.fold_split("chase", fold, labeled, data_dir)
        test, train = set(_ids(split["test"])), _ids(split["labeled"]) + _ids(split["unlabeled"])
        assert len(test) == 4 and len(set(train)) == len(train) == 20
        assert not test & set(train), "an image is both trained on and tested"
        patients = lambda ids: {i.split("_")[1][:2] for i in ids}  # noqa: E731
        assert not patients(test) & patients(train), "a patient is both in the test and the training pool"
        assert len(split["labeled"]) == labeled
        if labeled % 2 == 0:  # drawn patient-wise: both eyes of a labeled patient are labeled
            counts = {}
            for i in _ids(split["labeled"]):
                counts[i.split("_")[1][:2]] = counts.get(i.split("_")[1][:2], 0) + 1
            assert set(counts.values()) == {2}
        assert split["labeled"] == run.fold_split("chase", fold, labeled, data_dir)["labeled"]  # reproducible
        assert all("label" not in i for i in split["unlabeled"])
        if fold == run.DEV_FOLD:
            assert _ids(split["validation"]) == _ids(split["test"])
        else:  # never validate on a reporting fold's test images
            assert not set(_ids(split["validation"])) & test
        tested += sorted(test)
    assert sorted(tested) == sorted(_ids(run.fold_split("chase", 0, 1, data_dir)["test"]) + [
        i for f in range(1, 6) for i in _ids(run.fold_split("chase", f, 1, data_dir)["test"])
    ])
    assert len(tested) == len(set(tested)) == 24
    if labeled < 20:  # the labeled set changes with the fold (and the seed), unless the pool forces it
        draws = {tuple(sorted(_ids(run.fold_split("chase", f, labeled, data_dir, seed=s)["labeled"])))
                 for f in range(run.NUM_FOLDS["chase"]) for s in (0, 1)}
        assert len(draws) == 2 * run.NUM_FOLDS["chase"]


def test_covid_folds_use_the_fixed_rule_and_the_extra_unlabeled_slices(data_dir):
    tested, draws = [], set()
    for fold in range(run.NUM_FOLDS["covid19"]):
        split = run.fold_split("covid19", fold, 10, data_dir)
        test = _ids(split["test"])
        assert test == [str(i) for i in range(10 * fold, 10 * fold + 10)]
        labeled = [int(i) for i in _ids(split["labeled"])]
        assert len(set(labeled)) == 10 and not any(10 * fold <= i < 10 * fold + 10 for i in labeled)
        draws.add(tuple(sorted(labeled)))
        trained = [i["image"] for i in split["labeled"] + split["unlabeled"]]
        assert not {i["image"] for i in split["test"]} & set(trained), "a test slice is in the training pool"
        assert not set(test) & set(_ids(split["labeled"]))
        assert len(split["unlabeled"]) == 30 + 6  # the rest of the pool + the unlabeled-only slices
        tested += test
    assert sorted(tested, key=int) == [str(i) for i in range(50)]
    assert len(draws) == run.NUM_FOLDS["covid19"]  # a different labeled draw on every fold
    assert run.fold_split("covid19", 1, 10, data_dir, seed=1)["labeled"] != run.fold_split("covid19", 1, 10, data_dir)["labeled"]
    with pytest.raises(ValueError, match="num_labeled"):
        run.fold_split("covid19", 1, 41, data_dir)
    with pytest.raises(ValueError, match="folds 0..4"):
        run.fold_split("covid19", 5, 10, data_dir)


def test_matched_unlabeled_variant_drops_the_slices_of_another_intensity_window(data_dir, tmp_path):
    """ours_matched_unlabeled's run keeps the unlabeled slices whose intensity range matches the labeled draw's: the
    benchmark's datalist as the bundle reads it with the variant's unlabeled_intensity_ratio."""
    import shutil

    from PIL import Image

    from monai_supmix.bundle import task_datalists

    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    dim = sorted((copy / "covid19" / "unlabeled" / "images").iterdir())[:4]
    for path in dim:  # exported with a narrower window: half the intensities
        pixels = np.asarray(Image.open(path)).astype(np.float32) * 0.4
        Image.fromarray(pixels.astype(np.uint8)).save(path)
    ratio = run.run_overrides("cpu2", "covid19", 10, "ours_matched_unlabeled", 0)["unlabeled_intensity_ratio"]
    assert ratio == 0.75 and "unlabeled_intensity_ratio" not in run.run_overrides("cpu2", "covid19", 10, "ours", 0)
    train, _, labeled_ids = run.write_datalists("covid19", 1, 10, tmp_path / "lists", 0, data_dir=copy)
    plain = task_datalists("covid19", datalist_file=str(train))
    matched = task_datalists("covid19", datalist_file=str(train), unlabeled_intensity_ratio=ratio)
    assert [i["id"] for i in matched["labeled"]] == [i["id"] for i in plain["labeled"]] == labeled_ids
    assert (len(plain["unlabeled"]), len(matched["unlabeled"])) == (30 + 6, 30 + 6 - len(dim))
    kept = {i["image"] for i in matched["unlabeled"]}
    assert not kept & {str(p) for p in dim}


def test_grid_puts_headline_first_and_skips_the_development_fold_by_default():
    folds = run._parse_folds(None)
    assert run.DEV_FOLD not in folds["chase"] and run.DEV_FOLD not in folds["covid19"]
    order = run.grid(folds, [0, 1])
    assert order[0] == ("covid19", 10, 1, "supervised", 0)
    assert len(order) == len(set(order))
    assert ("chase", 20, 1, "supervised", 0) in order
    assert not [g for g in order if g[0] == "chase" and g[1] == 20 and g[3] != "supervised"]
    assert run.parse_run_id(run.run_id("cpu", "covid19", 10, 3, "ours", 1)) == ("cpu", "covid19", 10, 3, "ours", 1)


def _record(method, fold, seed, counts, names=("bg", "fg")):
    return {
        "dataset": "chase", "num_labeled": 4, "method": method, "fold": fold, "seed": seed, "class_names": list(names),
        "pooled_miou": float(stats.pooled_miou(np.stack(counts))),
        "per_image": [{"id": f"img{i}", "tp": c[:, 0].tolist(), "fp": c[:, 1].tolist(), "fn": c[:, 2].tolist()}
                      for i, c in enumerate(counts)],
    }


def _counts(rng, n, fg_tp):
    """n images with 1,000 fg pixels each, ``fg_tp`` of them found."""
    out = []
    for _ in range(n):
        tp = int(rng.normal(fg_tp, 30))
        out.append(np.array([[9000, 1000 - tp, 1000 - tp], [tp, 1000 - tp, 1000 - tp]]))
    return out


def test_bootstrap_recovers_a_known_difference_and_centres_a_null_one():
    rng = np.random.default_rng(0)
    base = _counts(rng, 40, 700)
    better = [c + np.array([[0, 0, 0], [50, -50, -50]]) for c in base]  # +50 fg pixels on every image
    a, b, keys, n = stats.paired_counts([_record("x", 1, 0, better)], [_record("y", 1, 0, base)])
    assert n == 1 and len(keys) == 40
    result = stats.bootstrap_delta(a, b)
    tp = sum(int(c[1, 0]) for c in base)
    fg_delta = 100 * ((tp + 2000) / (tp + 2000 + 2 * (40_000 - tp - 2000)) - tp / (tp + 2 * (40_000 - tp)))
    assert result["per_class_delta"][1] == pytest.approx(fg_delta)
    assert result["ci_low"] > 0 and stats.verdict(result["ci_low"], result["ci_high"]) == "holds"
    assert result["ci_low"] <= result["delta"] <= result["ci_high"]
    # a zero difference: a CI around 0
    noise = [c + np.array([[0, 0, 0], [d, -d, -d]]) for c, d in zip(base, rng.integers(-40, 41, size=40))]
    a, b, _, _ = stats.paired_counts([_record("x", 1, 0, noise)], [_record("y", 1, 0, base)])
    null = stats.bootstrap_delta(a, b)
    assert null["ci_low"] < 0 < null["ci_high"]
    assert stats.verdict(null["ci_low"], null["ci_high"]) == "cannot tell"
    assert stats.verdict(-2.0, -0.5) == "does not hold"


def test_fold_level_bootstrap_widens_the_interval_when_folds_disagree():
    rng = np.random.default_rng(3)
    records_a, records_b = [], []
    for fold, gain in zip((1, 2, 3, 4), (120, -100, 110, -90)):  # every image gains inside a fold, folds disagree
        base = _counts(rng, 10, 600)
        records_b.append(_record("b", fold, 0, base))
        records_a.append(_record("a", fold, 0, [c + np.array([[0, 0, 0], [gain, -gain, -gain]]) for c in base]))
    a, b, keys, _ = stats.paired_counts(records_a, records_b)
    groups = stats.fold_groups(keys)
    assert groups.tolist() == [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10
    images_only = stats.bootstrap_delta(a, b)
    two_level = stats.bootstrap_delta(a, b, groups=groups)
    assert two_level["delta"] == images_only["delta"]
    assert two_level["ci_high"] - two_level["ci_low"] > 2 * (images_only["ci_high"] - images_only["ci_low"])
    assert two_level["ci_low"] < 0 < two_level["ci_high"]
    # the two-level draw keeps every resample's total at N images
    weights = stats._resample_weights(40, 50, 0, groups)
    assert weights.shape == (50, 40) and np.all(weights.sum(axis=1) == 40)


def test_runs_won_counts_shared_runs():
    a = [{"fold": 1, "seed": 0, "pooled_miou": 0.6}, {"fold": 2, "seed": 0, "pooled_miou": 0.5},
         {"fold": 3, "seed": 0, "pooled_miou": 0.9}]
    b = [{"fold": 1, "seed": 0, "pooled_miou": 0.5}, {"fold": 2, "seed": 0, "pooled_miou": 0.55}]
    assert stats.runs_won(a, b) == (1, 2)


def test_paired_counts_use_shared_runs_and_sum_seeds():
    rng = np.random.default_rng(1)
    c = _counts(rng, 3, 600)
    a_runs = [_record("a", 1, 0, c), _record("a", 1, 1, c), _record("a", 2, 0, c)]
    b_runs = [_record("b", 1, 0, c), _record("b", 1, 1, c)]  # no fold 2
    a, b, keys, n = stats.paired_counts(a_runs, b_runs)
    assert n == 2 and keys == ["f1/img0", "f1/img1", "f1/img2"]
    np.testing.assert_array_equal(a, 2 * np.stack(c))


def test_claims_writer_lists_every_claim_with_its_interval(tmp_path):
    rng = np.random.default_rng(2)
    records = []
    for dataset, labeled in (("chase", 4), ("covid19", 10)):
        for fold in (1, 2):
            base = _counts(rng, 5, 600)
            for method, gain in (("supervised", 0), ("conventional", 40), ("ours", 80), ("supmix", 60), ("sufd", 40)):
                counts = [x + np.array([[0, 0, 0], [gain, -gain, -gain]]) for x in base]
                records.append(dict(_record(method, fold, 0, counts), dataset=dataset, num_labeled=labeled))
    claims = stats.compute_claims(records, "cpu", [("chase", 4), ("covid19", 10)])
    names = {(c["claim"], c["dataset"]) for c in claims}
    for claim, _, _ in stats.CLAIMS:
        assert (claim, "chase") in names and (claim, "covid19") in names
    assert ("ours > conventional", "average") in names
    for c in claims:
        assert set(c) >= {"claim", "dataset", "num_labeled", "protocol", "delta_miou", "ci_low", "ci_high",
                          "n_images", "n_runs", "runs_won", "per_class_delta", "verdict", "interval_method",
                          "p_value", "p_holm"}
        assert c["ci_low"] <= c["fold_mean_delta"] + 1e-6 and c["fold_mean_delta"] <= c["ci_high"] + 1e-6
        assert c["p_holm"] >= c["p_value"]
    conv = next(c for c in claims if c["claim"] == "conventional > supervised" and c["dataset"] == "chase")
    assert conv["verdict"] == "holds" and conv["n_images"] == 10 and conv["n_runs"] == 2
    table = report.claims_table(claims)
    assert table[0].startswith("| claim |") and len(table) == 2 + len(claims)
    json.dumps(claims)  # serialisable as written to claims.json


def test_gap_closed_is_a_share_only_when_there_is_a_gap():
    rng = np.random.default_rng(4)

    def records(full_gain):
        out = []
        for fold in (1, 2, 3, 4):
            base = _counts(rng, 6, 600)
            for method, labeled, gain in (("supervised", 4, 0), ("supervised", 20, full_gain), ("conventional", 4, 50)):
                counts = [x + np.array([[0, 0, 0], [gain, -gain, -gain]]) for x in base]
                out.append(dict(_record(method, fold, 0, counts), num_labeled=labeled))
        return out

    lines = report.gap_closed(records(100))
    assert len(lines) == 1 and "chase, 4 labeled" in lines[0]
    share = float(lines[0].split("**")[1].rstrip(" %"))
    assert 40 <= share <= 60  # +50 of a +100 gap in pixels: about half in pooled IoU
    lines = report.gap_closed(records(0))
    assert len(lines) == 1 and "not defined" in lines[0]


def test_labels_curve_report_finds_the_gap_and_the_share_closed(tmp_path):
    """Planted: supervised 40 labeled ≫ supervised 2 labeled; ours halfway between; every file written."""
    curve = _load("report_labels_curve")
    level = {("supervised", 2): 500, ("ours", 2): 650, ("conventional", 2): 500, ("supervised", 40): 800}
    records = []
    for (method, labeled), tp in level.items():
        for fold in (1, 2, 3, 4):
            for seed in (0, 1):
                r = _record(method, fold, seed, _counts(np.random.default_rng(100 * fold + seed), 10, tp))
                r.update(dataset="covid19", num_labeled=labeled, protocol="cpu2", train_seconds=60.0, device="cpu")
                records.append(r)
    records.append({**records[0], "fold": 0, "role": "development"})  # the development fold never counts
    (tmp_path / "results.json").write_text(json.dumps(records))
    curve.main(["--results", str(tmp_path / "results.json"), "--output-dir", str(tmp_path)])
    tables = json.loads((tmp_path / "labels_curve.json").read_text())["covid19"]
    assert tables["counts"] == [2, 40]
    claims = {(c["num_labeled"], c["claim"]): c for c in tables["claims"]}
    assert claims[(2, "ours > supervised")]["verdict"] == "holds"
    assert claims[(2, "conventional > supervised")]["verdict"] == "cannot tell"
    gap = tables["gaps"][0]
    assert gap["num_labeled"] == 2 and gap["verdict"] == "holds" and gap["delta_miou"] > 10
    assert 0.3 < gap["closed"]["ours"]["share"] < 0.7 and abs(gap["closed"]["conventional"]["share"]) < 0.1
    assert all(s["n_folds"] == 4 and s["seeds"] == [0, 1] for s in tables["scores"])
    text = (tmp_path / "labels_curve.md").read_text()
    assert "| 2 | ours > supervised |" in text and (tmp_path / "labels_curve.png").exists()
    assert all(s["area_ratio"]["fg"] > 0 for s in tables["scores"]) and "predicted / true area" in text


def test_labels_curve_report_adds_a_variant_with_its_claims(tmp_path):
    """A variant of ours gets its rows and the claims against ours and supervised; other variants stay out."""
    curve = _load("report_labels_curve")
    level = {"supervised": 500, "ours": 520, "ours_adaptive": 700, "ours_other": 900}
    records = []
    for method, tp in level.items():
        for fold in (1, 2, 3, 4):
            r = _record(method, fold, 0, _counts(np.random.default_rng(fold), 10, tp))
            r.update(dataset="chase", num_labeled=1, protocol="cpu2", train_seconds=60.0, device="cpu")
            records.append(r)
    (tmp_path / "results.json").write_text(json.dumps(records))
    curve.main(["--results", str(tmp_path / "results.json"), "--output-dir", str(tmp_path), "--variants", "ours_adaptive"])
    tables = json.loads((tmp_path / "labels_curve.json").read_text())["chase"]
    assert {s["method"] for s in tables["scores"]} == {"supervised", "ours", "ours_adaptive"}
    claims = {c["claim"]: c for c in tables["claims"]}
    assert claims["ours_adaptive > ours"]["verdict"] == "holds" and claims["ours_adaptive > ours"]["delta_miou"] > 5
    assert "ours_adaptive > supervised" in claims and "--variants ours_adaptive" in (tmp_path / "labels_curve.md").read_text()


def test_labels_curve_variants_form_their_own_holm_family(tmp_path):
    """Adding ablation variants leaves the primary claims' Holm-adjusted p-values as they were."""
    curve = _load("report_labels_curve")
    level = {"supervised": 500, "ours": 560, "conventional": 520, "ours_a": 700, "ours_b": 510}
    records = []
    for method, tp in level.items():
        for fold in (1, 2, 3, 4):
            r = _record(method, fold, 0, _counts(np.random.default_rng(fold), 10, tp))
            r.update(dataset="chase", num_labeled=1, protocol="cpu2", train_seconds=60.0, device="cpu")
            records.append(r)
    alone = curve.curve_tables(records)["chase"]["claims"]
    with_variants = curve.curve_tables(records, ("ours_a", "ours_b"))["chase"]["claims"]
    primary = {c["claim"]: c["p_holm"] for c in with_variants if c["holm_family"] == "primary"}
    assert primary == {c["claim"]: c["p_holm"] for c in alone}
    one_fold = [dict(r, num_labeled=2) for r in records if r["fold"] == 1 and r["method"] in ("supervised", "ours")]
    partial = {c["claim"]: c for c in curve.curve_tables(records + one_fold)["chase"]["claims"] if c["num_labeled"] == 1}
    assert {k: c["p_holm"] for k, c in partial.items()} == {c["claim"]: c["p_holm"] for c in alone}
    started = curve.curve_tables(records + one_fold)["chase"]["claims"]
    assert [c["verdict"] for c in started if c["num_labeled"] == 2] == ["cannot tell (one fold)"]
    variant_p = sorted(c["p_value"] for c in with_variants if c["holm_family"] == "variants")
    variant_holm = sorted(c["p_holm"] for c in with_variants if c["holm_family"] == "variants")
    assert len(variant_p) == 4 and variant_holm[0] == pytest.approx(min(1.0, 4 * variant_p[0]))
    assert {c["interval_method"].rsplit(", ", 1)[1] for c in with_variants} == {
        "Holm within the primary family", "Holm within the variants family"}


def test_labels_curve_summary_row_gives_scores_deltas_and_the_share_of_the_gap_closed():
    """Planted: supervised finds 500 fg pixels with 1 labeled, 700 with all 20; ours 600: half the gap closed."""
    curve = _load("report_labels_curve")
    records = []
    for method, n, tp in (("supervised", 1, 500), ("conventional", 1, 450), ("ours", 1, 600), ("supervised", 20, 700)):
        for fold in (1, 2, 3, 4):
            r = _record(method, fold, 0, _counts(np.random.default_rng(fold), 10, tp))
            r.update(dataset="chase", num_labeled=n, protocol="cpu2", train_seconds=60.0, device="cpu")
            records.append(r)
    tables = curve.curve_tables(records)
    header, rule, row = curve.summary_rows(tables)
    cells = [c.strip() for c in row.strip("|").split("|")]
    scores = {s["method"]: s["miou"] for s in tables["chase"]["scores"] if s["num_labeled"] == 1}
    assert cells[:5] == ["CHASE_DB1", "1", f"{scores['supervised']:.1f}", f"{scores['conventional']:.1f}",
                         f"{scores['ours']:.1f}"]
    assert cells[5].endswith("(4/4)") and cells[5].startswith("+") and cells[6].endswith("(4/4)")
    share = tables["chase"]["gaps"][0]["closed"]["ours"]["share"]
    assert cells[8] == f"{100 * share:.0f} %" and 0.3 < share < 0.7
    assert len(header.split("|")) == len(row.split("|"))


def test_area_ratio_reports_under_segmentation():
    """Planted: a model that finds 300 of 1,000 foreground pixels and adds 60 false ones predicts 0.36 of the area."""
    curve = _load("report_labels_curve")
    counts = [np.array([[9000, 700, 60], [300, 60, 700]]) for _ in range(3)]
    assert curve.area_ratios([_record("conventional", 1, 0, counts)]) == {"fg": pytest.approx(0.36)}
    exact = [np.array([[9000, 100, 100], [900, 100, 100]])]
    assert curve.area_ratios([_record("supervised", 1, 0, exact)])["fg"] == pytest.approx(1.0)


def test_development_table_lists_each_seeds_labeled_draw():
    """Fold-0 rows pool the seeds and also give each seed's (each labeled draw's) own mIoU."""
    rng = np.random.default_rng(5)
    records = []
    for seed, tp in ((0, 800), (7, 400)):
        for method, gain in (("supervised", 0), ("ours", 50)):
            counts = [c + np.array([[0, 0, 0], [gain, -gain, -gain]]) for c in _counts(rng, 4, tp)]
            r = _record(method, 0, seed, counts)
            records.append(dict(r, protocol="cpu2", steps=2500, id=f"dev_{method}_s{seed}", miou=r["pooled_miou"],
                                infnet_dice={"bg": 0.9, "fg": 0.5}, train_seconds=60.0))
    lines = report.development(records)
    row = next(line for line in lines if "`ours`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    per_seed = dict(part.split(": ") for part in cells[6].split(", "))
    assert list(per_seed) == ["0", "7"] and float(per_seed["0"]) > float(per_seed["7"])
    assert float(cells[4]) > 0  # ours ahead of supervised, paired on the same images and seeds


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_source_commit_names_the_checkout_and_flags_code_changes(tmp_path):
    """Results files under docs/benchmarks may change while a grid runs; any other tracked change is dirty."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    (tmp_path / "docs" / "benchmarks" / "results.json").write_text("[]")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert run.source_commit(tmp_path) == head
    (tmp_path / "docs" / "benchmarks" / "results.json").write_text("[{}]")
    assert run.source_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert run.source_commit(tmp_path) == head + "-dirty"
    assert run.source_commit(tmp_path / "missing") is None


def test_merge_results_adds_new_records_once_and_refuses_a_silent_overwrite(tmp_path):
    """A grid's worktree copy brings its new runs back; relabelled names stay retired; conflicts need --force."""
    target, source = tmp_path / "results.json", tmp_path / "grid.json"
    here = [{"id": "a", "miou": 0.5}, {"id": "b_new", "miou": 0.6, "relabeled_from": "b_old"}]
    target.write_text(json.dumps(here))
    grid = [{"id": "a", "miou": 0.5}, {"id": "b_old", "miou": 0.6}, {"id": "c", "miou": 0.7}]
    source.write_text(json.dumps(grid))
    lines = []
    assert run.merge_results(target, [source], print_fn=lines.append) == (1, 2)
    merged = json.loads(target.read_text())
    assert [r["id"] for r in merged] == ["a", "b_new", "c"]
    assert "merged 1 record(s)" in lines[0]
    assert run.merge_results(target, [source], print_fn=lines.append) == (0, 3)  # idempotent

    source.write_text(json.dumps([{"id": "c", "miou": 0.1}]))
    with pytest.raises(ValueError, match="'c' differs"):
        run.merge_results(target, [source], print_fn=lines.append)
    assert json.loads(target.read_text()) == merged  # nothing half-written
    assert run.merge_results(target, [source], replace=True, print_fn=lines.append) == (1, 0)
    assert [r["miou"] for r in json.loads(target.read_text()) if r["id"] == "c"] == [0.1]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        run.merge_results(target, [tmp_path / "missing.json"], print_fn=lines.append)


def test_merge_results_keeps_what_a_replaced_record_was(tmp_path):
    """--force replaces a record and keeps a summary of the old one (e.g. a 2-thread run re-run at 1 thread)."""
    target, source = tmp_path / "results.json", tmp_path / "grid.json"
    target.write_text(json.dumps([{"id": "a", "pooled_miou": 0.50, "threads": 2, "commit": "old", "per_image": []}]))
    source.write_text(json.dumps([{"id": "a", "pooled_miou": 0.47, "threads": 1, "commit": "new", "per_image": []}]))
    assert run.merge_results(target, [source], replace=True, print_fn=lambda _: None) == (1, 0)
    (record,) = json.loads(target.read_text())
    assert (record["pooled_miou"], record["threads"]) == (0.47, 1)
    assert record["superseded"] == [{"commit": "old", "threads": 2, "pooled_miou": 0.50}]
    # merging the same grid again is a no-op, with or without --force
    assert run.merge_results(target, [source], print_fn=lambda _: None) == (0, 1)
    assert run.merge_results(target, [source], replace=True, print_fn=lambda _: None) == (0, 1)
    # a third version keeps the whole history, oldest first
    source.write_text(json.dumps([{"id": "a", "pooled_miou": 0.48, "threads": 1, "commit": "newer"}]))
    run.merge_results(target, [source], replace=True, print_fn=lambda _: None)
    (record,) = json.loads(target.read_text())
    assert [h["commit"] for h in record["superseded"]] == ["old", "new"]


def test_a_replaced_record_keeps_its_old_names_retired(tmp_path):
    target, source = tmp_path / "results.json", tmp_path / "grid.json"
    target.write_text(json.dumps([{"id": "a", "pooled_miou": 0.5, "relabeled_from": "a_old"}]))
    source.write_text(json.dumps([{"id": "a", "pooled_miou": 0.4}]))
    run.merge_results(target, [source], replace=True, print_fn=lambda _: None)
    (record,) = json.loads(target.read_text())
    assert "relabeled_from" not in record and record["superseded"][0]["relabeled_from"] == "a_old"
    source.write_text(json.dumps([{"id": "a_old", "pooled_miou": 0.5}]))  # a grid copy with the old name
    assert run.merge_results(target, [source], print_fn=lambda _: None) == (0, 1)


def test_the_grid_runs_one_thread_per_training_whatever_the_jobs(tmp_path, monkeypatch):
    """The thread count changes a run's numbers, so it is the protocol's (1), not a share of the cores per --jobs."""
    import monai_supmix.comparison as comparison

    for name in ("chase", "covid19"):
        (tmp_path / "data" / name).mkdir(parents=True)
    monkeypatch.setattr(run, "DATA", tmp_path / "data")
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results.json")
    calls = []
    monkeypatch.setattr(comparison, "run_grid", lambda keys, *a, **kw: calls.append((keys, kw)) or (0, 0))
    run.main(["--jobs", "2", "--run", "cpu2_covid19_L40_f1_supervised_x2_s0"])
    run.main(["--run", "cpu2_covid19_L40_f1_supervised_x2_s0", "--threads", "2"])
    assert [kw["threads"] for _, kw in calls] == [1, 2]
    assert calls[0][0] == [("covid19", 40, 1, "supervised_x2", 0)]
    assert [kw["jobs"] for _, kw in calls] == [2, 1]


def test_labels_curve_figure_draws_every_variant(tmp_path, monkeypatch):
    """Seven variants: seven dashed lines besides the three methods (the colour list once dropped all past four)."""
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    curve = _load("report_labels_curve")
    variants = tuple(f"ours_v{i}" for i in range(7))
    records = []
    for i, method in enumerate(("supervised", "conventional", "ours") + variants):
        for fold in (1, 2):
            r = _record(method, fold, 0, _counts(np.random.default_rng(fold), 4, 500 + 10 * i))
            r.update(dataset="chase", num_labeled=1, protocol="cpu2", train_seconds=1.0, device="cpu")
            records.append(r)
    labels = []
    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **kw: labels.append((kw["label"], kw["color"], kw["marker"])) or real_plot(self, *a, **kw))
    assert curve.plot(curve.curve_tables(records, variants), tmp_path / "curve.png")
    assert [label for label, _, _ in labels] == ["supervised", "conventional", "ours", *variants]
    assert len({(colour, marker) for _, colour, marker in labels}) == 10  # every line told apart


def test_labels_curve_report_refuses_pairs_made_with_different_thread_counts(tmp_path):
    curve = _load("report_labels_curve")
    records = []
    for method, tp in (("supervised", 500), ("ours", 600)):
        for fold in (1, 2):
            r = _record(method, fold, 0, _counts(np.random.default_rng(fold), 4, tp))
            r.update(dataset="covid19", num_labeled=2, protocol="cpu2", train_seconds=1.0, device="cpu", threads=1)
            records.append(r)
    records[1]["threads"] = 2  # supervised, fold 2
    (tmp_path / "results.json").write_text(json.dumps(records))
    with pytest.raises(SystemExit, match=r"different CPU thread counts.*covid19 2 labeled, ours > supervised: f2/s0"):
        curve.main(["--results", str(tmp_path / "results.json"), "--output-dir", str(tmp_path)])
    assert not (tmp_path / "labels_curve.json").exists()  # nothing written


def test_all_labeled_chase_runs_only_supervised_methods():
    """With all 20 CHASE pool images labeled no unlabeled image is left: supervised and its variants run, the rest are refused."""
    assert run.run_overrides("cpu2", "chase", 20, "supervised_x2", 0)["max_epochs"] == 100
    assert run.run_overrides("cpu2", "chase", 20, "supervised", 0)["mix"] == "none"
    with pytest.raises(ValueError, match="no unlabeled images left"):
        run.run_overrides("cpu2", "chase", 20, "ours", 0)
