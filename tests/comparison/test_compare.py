"""``monai-supmix compare``: one-line errors, resumable runs, claims/report/curve outputs, one real bundle run."""

from __future__ import annotations

import json

import pytest

from monai_supmix import cli
from monai_supmix.comparison import compare as compare_module
from monai_supmix.data import write_covid_phantoms

CLAIM_KEYS = {"claim", "dataset", "num_labeled", "delta_miou", "ci_low", "ci_high", "verdict", "n_images", "n_runs",
              "interval_method", "p_value", "p_holm"}


@pytest.fixture(scope="module")
def covid_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("covid")
    write_covid_phantoms(str(root), num_labeled=16, num_unlabeled=8, size=(64, 64))
    return root


def _fake_train_and_evaluate(calls):
    """A stand-in for the bundle run: ``ours`` is 10 TP better per class on every image than ``supervised``."""

    def fake(bundle_dir, out_dir, train_list, test_list, overrides, threads):
        with open(test_list) as f:
            test = json.load(f)["validation"]
        with open(train_list) as f:
            labeled = json.load(f)["labeled"]
        calls.append((out_dir.name, overrides))
        bonus = {"none": 0, "classmix": 5, "both": 10}[overrides["mix"]] + len(labeled)
        per_image = [{"id": i["id"], "tp": [100, 20 + bonus + k % 3, 10 + bonus], "fp": [5, 10, 10], "fn": [5, 10, 10]}
                     for k, i in enumerate(test)]
        return {"per_image": per_image, "class_names": ["background", "ggo", "consolidation"], "pooled_miou": 0.5,
                "train_seconds": 1.0, "val_curve": [], "threads": threads}

    return fake


def test_compare_writes_claims_report_and_curve_and_resumes(covid_dir, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(compare_module, "train_and_evaluate", _fake_train_and_evaluate(calls))
    argv = ["compare", "covid19", str(covid_dir), "--output", str(tmp_path / "out"), "--num_labeled", "2", "4",
            "--folds", "4", "--methods", "supervised", "conventional", "ours", "--override", "max_epochs=1"]
    assert cli.main(argv) == 0
    assert len(calls) == 2 * 4 * 3
    assert all(o["max_epochs"] == 1 and o["val_interval"] == 5 for _, o in calls)
    out = tmp_path / "out"
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 24 and all(len(r["labeled_ids"]) == r["num_labeled"] for r in records)
    by_key = {(r["num_labeled"], r["fold"]): r["labeled_ids"] for r in records if r["method"] == "ours"}
    assert all(r["labeled_ids"] == by_key[(r["num_labeled"], r["fold"])] for r in records)  # paired draws
    assert len({tuple(v) for k, v in by_key.items() if k[0] == 4}) == 4  # a different labeled set per fold
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 2 * 3  # every pair of methods at both counts
    assert all(CLAIM_KEYS <= set(c) for c in claims)
    assert {c["claim"] for c in claims} == {"conventional > supervised", "ours > supervised", "ours > conventional"}
    ours = next(c for c in claims if c["claim"] == "ours > supervised" and c["num_labeled"] == 4)
    assert ours["delta_miou"] > 0 and ours["verdict"] == "holds" and ours["n_runs"] == 4 and ours["n_images"] == 16
    report = (out / "report.md").read_text()
    assert "ours beats supervised by" in report and "| 4 | ours |" in report
    assert (out / "labels_curve.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "about" in printed and "left" in printed and "(24/24)" in printed
    # a second identical call trains nothing; --force trains again
    assert cli.main(argv) == 0
    assert len(calls) == 24 and "0 run(s) to do (24 already done)" in capsys.readouterr().out
    assert cli.main(argv[:7] + ["4", "--methods", "supervised", "ours", "--folds", "4", "--force"]) == 0
    assert len(calls) == 24 + 2 * 4 * 2


def test_resuming_with_another_thread_count_is_flagged_in_the_report(covid_dir, tmp_path, monkeypatch):
    """Runs of one pair made with different --threads are named in the report; --threads 0 is refused."""
    calls = []
    monkeypatch.setattr(compare_module, "train_and_evaluate", _fake_train_and_evaluate(calls))
    out = tmp_path / "out"
    argv = ["compare", "covid19", str(covid_dir), "--output", str(out), "--num_labeled", "2", "--folds", "2",
            "--methods", "supervised", "ours", "--override", "max_epochs=1"]
    assert cli.main(argv + ["--threads", "1"]) == 0
    assert "Warning" not in (out / "report.md").read_text()
    records = json.loads((out / "results.json").read_text())
    assert {r["threads"] for r in records} == {1}
    records = [r for r in records if not (r["method"] == "ours" and r["fold"] == 1)]
    (out / "results.json").write_text(json.dumps(records))
    assert cli.main(argv + ["--threads", "2"]) == 0  # resumes: only the removed run trains, with 2 threads
    assert len(calls) == 5 and calls[-1][0].endswith("ours_s0")
    report = (out / "report.md").read_text()
    assert "*Warning*: the runs f1/s0 of the two methods were made with different CPU thread counts" in report
    assert json.loads((out / "claims.json").read_text())[0]["mixed_threads"] == ["f1/s0"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "supervised", "fixmatch"], "--methods: unknown method"),
        (["--num_labeled", "13"], "--num_labeled 13 is more than the 12 labeled images"),
        (["--folds", "1"], "--folds must be >= 2"),
        (["--folds", "17"], "at most 16 folds"),
        (["--group", r"^(patient\d+)"], "matches none of the 16 labeled image ids"),
        (["--override", "max_epochs"], "expected KEY=VALUE"),
        (["--override", "mix=none"], "--override mix: this key is set by the comparison"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(covid_dir, tmp_path, capsys, extra, message):
    argv = ["compare", "covid19", str(covid_dir), "--output", str(tmp_path / "out"), "--num_labeled", "2"] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("monai-supmix compare: error:")


def test_unknown_bundle_and_missing_folder(tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path), str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "configs/train.json" in capsys.readouterr().err
    assert cli.main(["compare", "covid19", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_shows_how_to_train_evaluate_infer_and_compare(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for needle in ("compare", "run training", "evaluate.json", "inference.json", "phantoms", "check-data"):
        assert needle in text


def test_one_real_comparison_through_the_bundle(covid_dir, tmp_path):
    """The real path: 2 folds x supervised/ours, two iterations each, through the covid19 bundle."""
    out = tmp_path / "real"
    argv = ["compare", "covid19", str(covid_dir), "--output", str(out), "--num_labeled", "2", "--folds", "2",
            "--methods", "supervised", "ours", "--override", "spatial_size=[64,64]", "patch_size=[32,32]",
            "max_epochs=1", "iterations_per_epoch=2", "num_workers=0"]
    assert cli.main(argv) == 0
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 4 and all(len(r["per_image"]) == 8 for r in records)
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 1 and CLAIM_KEYS <= set(claims[0]) and claims[0]["n_images"] == 16
    assert (out / "report.md").is_file() and not (out / "labels_curve.png").exists()
