"""Convert a jupytext "percent" script (``# %%`` cells) into a Jupyter notebook, without jupytext.

The tutorials are written as ``.py`` files (reviewable diffs, runnable with ``python``)
and committed together with the notebook made from them. The conversion is
deterministic (no outputs, no execution counts, fixed cell ids), so ``--check`` can
tell whether a committed notebook is in sync with its script.

Format understood (the subset of jupytext's percent format the tutorials use):

- an optional leading YAML header in ``# ---`` ... ``# ---`` comment lines (dropped);
- ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
  comments (``# `` is stripped); text after ``# %%`` is ignored;
- leading and trailing blank lines of a cell are removed.

Usage (from the repository root)::

    python docs/scripts/py_to_ipynb.py                 # rewrite docs/tutorials/*.ipynb
    python docs/scripts/py_to_ipynb.py --check         # exit 1 if a notebook is out of date
    python docs/scripts/py_to_ipynb.py path/to/script.py [--check]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIALS = os.path.join(os.path.dirname(HERE), "tutorials")
_CELL = re.compile(r"^# %%(?P<rest>.*)$")


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _uncomment(line: str) -> str:
    if line.startswith("# "):
        return line[2:]
    if line.strip() == "#":
        return ""
    raise ValueError(f"markdown cell line is not a comment: {line!r}")


def script_to_notebook(text: str) -> nbformat.NotebookNode:
    """Build the notebook of a percent-format script.

    Args:
        text: the script's source.

    Returns:
        an ``nbformat`` v4 notebook without outputs.

    Raises:
        ValueError: when a markdown cell holds a line that is not a comment.
    """
    lines = text.splitlines()
    if lines and lines[0].strip() == "# ---":  # YAML header
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "# ---")
        lines = lines[end + 1 :]
    cells: list[tuple[str, list[str]]] = []
    kind, body = None, []
    for line in lines:
        match = _CELL.match(line)
        if match:
            if kind is not None:
                cells.append((kind, body))
            kind = "markdown" if "[markdown]" in match.group("rest") else "code"
            body = []
        elif kind is not None:
            body.append(line)
    if kind is not None:
        cells.append((kind, body))
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for index, (kind, body) in enumerate(cells):
        body = _strip_blank(body)
        if kind == "markdown":
            source = "\n".join(_uncomment(line) for line in body)
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(body))
        cell.id = f"cell-{index:03d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text(script_path: str) -> str:
    """The notebook file content (JSON text) made from ``script_path``."""
    with open(script_path, encoding="utf-8") as f:
        nb = script_to_notebook(f.read())
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scripts", nargs="*", help="percent scripts (default: docs/tutorials/*.py)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when a notebook differs")
    args = parser.parse_args(argv)
    scripts = args.scripts or sorted(glob.glob(os.path.join(TUTORIALS, "*.py")))
    stale = []
    for script in scripts:
        target = os.path.splitext(script)[0] + ".ipynb"
        text = notebook_text(script)
        current = None
        if os.path.isfile(target):
            with open(target, encoding="utf-8") as f:
                current = f.read()
        if current == text:
            print(f"up to date: {target}")
        elif args.check:
            stale.append(target)
            print(f"OUT OF DATE: {target} (run: python docs/scripts/py_to_ipynb.py {script})")
        else:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
