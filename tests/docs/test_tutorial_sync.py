"""The committed tutorial notebooks are exactly what docs/scripts/py_to_ipynb.py makes from their .py scripts."""

from __future__ import annotations

import glob
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "docs", "tutorials", "*.py")))


def _converter():
    spec = importlib.util.spec_from_file_location("py_to_ipynb", os.path.join(ROOT, "docs", "scripts", "py_to_ipynb.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_tutorial():
    assert SCRIPTS, "no tutorial scripts in docs/tutorials"


@pytest.mark.parametrize("script", SCRIPTS, ids=[os.path.basename(s) for s in SCRIPTS])
def test_notebook_in_sync_with_script(script):
    notebook = os.path.splitext(script)[0] + ".ipynb"
    assert os.path.isfile(notebook), f"{notebook} is missing: run python docs/scripts/py_to_ipynb.py"
    with open(notebook, encoding="utf-8") as f:
        committed = f.read()
    assert committed == _converter().notebook_text(script), (
        f"{os.path.basename(notebook)} is out of date with {os.path.basename(script)}: "
        "run python docs/scripts/py_to_ipynb.py and commit both files"
    )


def test_converter_cells():
    nb = _converter().script_to_notebook(
        "# ---\n# jupyter:\n#   kernelspec: {}\n# ---\n\n# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\nprint(x)\n"
    )
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[0].source == "# Title\n\ntext"
    assert nb.cells[1].source == "x = 1"
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")


def test_converter_rejects_code_in_markdown_cell():
    with pytest.raises(ValueError, match="not a comment"):
        _converter().script_to_notebook("# %% [markdown]\nx = 1\n")
