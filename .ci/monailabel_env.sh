#!/usr/bin/env bash
# Create the separate virtual environment that MONAI Label needs (issue 8, docs/monailabel.md).
#
#   bash .ci/monailabel_env.sh [VENV_DIR]        (default: <repo>/.venv-monailabel, git-ignored)
#
# MONAI Label 0.8.5 pins older libraries (numpy<2, pydicom<3, ...) and needs torchvision, so it
# lives in its own venv rather than in the one the package's tests use. Roughly 8 GB (torch 2.14.1
# brings its CUDA libraries; no CPU build of torchvision exists for this torch). Idempotent: a
# stamp file records a hash of this script, setup.cfg and the checkout's path; when it matches,
# nothing is done (a re-run after a change re-installs in place, in about 20 s).
# Environment: PYTHON (interpreter for the venv, default python3), MONAILABEL_ENV_FORCE=1 to
# rebuild from scratch.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-monailabel}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.monai_supmix_monailabel_env"

# Everything this venv gets, pinned. The caps after monai are what earlier trials on these
# machines needed for `monailabel start_server` (0.8.5) to come up.
read -r -d '' CONSTRAINTS <<'PINS' || true
torch==2.14.1
torchvision==0.29.1
monailabel==0.8.5
monai==1.6.1
numpy<2
pydicom<3
pynetdicom<3
dicomweb-client<0.60
PINS

# The key covers the checkout's path too: the editable install points at it, so a venv kept
# outside the checkout (e.g. reused by CI across clones) is re-pointed when the checkout moves.
KEY="$( (cat "${BASH_SOURCE[0]}" "$ROOT/setup.cfg"; echo "$ROOT") | sha256sum | cut -d' ' -f1)"
if [[ "${MONAILABEL_ENV_FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    echo "monailabel_env: $VENV is up to date"
    exit 0
fi

start=$(date +%s)
if [[ "${MONAILABEL_ENV_FORCE:-0}" == "1" ]]; then
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
CFILE="$VENV/monailabel-constraints.txt"
printf '%s\n' "$CONSTRAINTS" > "$CFILE"

"$PY" -m pip install --quiet --upgrade pip
# 1. torch / torchvision first, so nothing below can pull in a different build.
"$PY" -m pip install -c "$CFILE" torch==2.14.1 torchvision==0.29.1
# 2. MONAI Label and MONAI with the pins the server needs.
"$PY" -m pip install -c "$CFILE" monailabel==0.8.5 "monai[fire]==1.6.1" \
    "pydicom<3" "pynetdicom<3" "dicomweb-client<0.60" "numpy<2"
# 3. This repository, editable; the constraints keep torch/numpy/pydicom where they are.
"$PY" -m pip install -c "$CFILE" -e "$ROOT"

# Smoke check: both import, the server CLI answers, and torch is the one pinned.
"$PY" - <<'PY'
import torch, torchvision, monai, monailabel, monai_supmix
import monai_supmix.apps.monailabel  # noqa: F401
print("torch", torch.__version__, "torchvision", torchvision.__version__,
      "monai", monai.__version__, "monailabel", monailabel.__version__)
assert torch.__version__.split("+")[0] == "2.14.1", torch.__version__
PY
"$PY" -m monailabel.main start_server --help >/dev/null

echo "$KEY" > "$STAMP"
end=$(date +%s)
echo "monailabel_env: $VENV ready in $((end - start)) s ($(du -sh "$VENV" | cut -f1))"
