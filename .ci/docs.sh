#!/usr/bin/env bash
# Documentation check (called by .ci/run): the Sphinx site builds without a single
# warning, the tutorial notebook matches its .py source, and the notebook runs top to
# bottom. Nothing in the repository is rewritten: the notebook executes in a temporary
# folder and its outputs are discarded; the HTML goes to docs/_build (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

pip install -e ".[docs]"

# 1. the committed notebook is what docs/scripts/py_to_ipynb.py makes from the script
python docs/scripts/py_to_ipynb.py --check

# 2. Sphinx, warnings as errors (every one is listed before failing)
rm -rf docs/_build/html
python -m sphinx -W --keep-going -b html docs docs/_build/html

# 3. execute the tutorial notebook(s) with nbclient, cwd in a temporary folder.
# One intra-op thread by default: on a small, shared CPU machine PyTorch's default
# thread pool can be many times slower than one thread (override OMP_NUM_THREADS).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND=Agg
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
python - "$workdir" docs/tutorials/*.ipynb <<'PY'
import os
import sys
import time

import nbformat
from nbclient import NotebookClient

workdir, notebooks = sys.argv[1], sys.argv[2:]
for path in notebooks:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
    print(f"executed {path} in {time.time() - t0:.0f} s ({len(nb.cells)} cells)")
    for cell in nb.cells:  # the last printed lines of the last code cell: the comparison table
        if cell.cell_type == "code" and cell.outputs:
            last = cell
    text = "".join(o.get("text", "") for o in last.outputs if o.get("output_type") == "stream")
    print(text.rstrip())
PY
echo "docs check passed in $((SECONDS - start)) s"
