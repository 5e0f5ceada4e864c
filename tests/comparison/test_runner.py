"""``run_grid``: every run gets the same thread count, fixed by the caller or shared out among the jobs."""

from __future__ import annotations

import os

import pytest

from monai_supmix.comparison import ResultStore, run_grid


def _grid(tmp_path, **kwargs) -> list[int]:
    seen: list[int] = []

    def execute(key, threads):
        seen.append(threads)
        return {"id": f"run{key}", "threads": threads}

    finished, failed = run_grid([0, 1, 2], lambda k: f"run{k}", execute, ResultStore(tmp_path / "results.json"),
                                print_fn=lambda _: None, **kwargs)
    assert (finished, failed) == (3, 0)
    assert {r["threads"] for r in ResultStore(tmp_path / "results.json").load()} == set(seen)
    return seen


def test_threads_fixed_by_the_caller_whatever_the_jobs(tmp_path):
    assert _grid(tmp_path, jobs=2, threads=1) == [1, 1, 1]


def test_threads_default_to_the_cores_shared_among_the_jobs(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert _grid(tmp_path, jobs=2) == [2, 2, 2]


def test_a_bad_thread_count_is_refused_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="threads must be a positive"):
        _grid(tmp_path, threads=0)
    assert not (tmp_path / "results.json").exists()
