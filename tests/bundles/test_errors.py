"""Bad input ends a bundle run with the project's one-line message (exit 2); Ctrl-C with a resume hint (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, TINY
from PIL import Image

from monai_supmix.data import write_chase_phantoms, write_covid_phantoms

pytestmark = pytest.mark.slow


def _bundle(bundle: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
           str(REPO / "bundles" / bundle / "configs" / "train.json"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _tiny() -> list[str]:
    return [x for k, v in TINY.items() for x in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    chase = write_chase_phantoms(str(root / "chase"), num_images=8, size=(64, 64))
    image = os.path.join(chase, "images", "Image_04R.jpg")
    with open(image, "rb") as f:
        data = f.read()
    with open(image, "wb") as f:
        f.write(data[: len(data) // 3])  # a truncated JPEG
    covid = write_covid_phantoms(str(root / "covid19"), num_labeled=12, num_unlabeled=4, size=(48, 48))
    label = os.path.join(covid, "labeled", "labels", "0.png")
    array = np.array(Image.open(label))
    array[:3, :3] = 7
    Image.fromarray(array).save(label)
    return {"chase": chase, "covid19": covid}


@pytest.mark.parametrize(
    "bundle, args, expected",
    [
        ("chase", ["--max_epoch", "3"], "unknown config key(s): `max_epoch` (did you mean `max_epochs`?)"),
        ("chase", ["--scale", "abc"], "config key `scale`: expected a positive number"),
        ("chase", ["--device", "gpu"], "config key `device`: expected 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ("chase", ["--dataset_dir", "/does/not/exist"], "config key `dataset_dir`: folder '/does/not/exist' does not exist"),
        ("chase", ["--num_labeled", "30"], "num_labeled (30) + num_val (4) is larger than the 24 labeled CHASE images"),
        ("chase", ["--dataset_dir", "{chase}", "--num_labeled", "2", "--num_val", "2"], "cannot read image file"),
        ("covid19", ["--dataset_dir", "{covid19}", "--num_labeled", "2", "--num_val", "2"],
         "holds values [7] outside the classes 0..2"),
    ],
)
def test_bad_input_ends_with_the_message_and_exit_code_2(phantom_cache, bad_data, bundle, args, expected):
    args = [a.format(**bad_data) for a in args]
    proc = _bundle(bundle, *args, *_tiny())
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith("ERROR: ") and expected in lines[-1], lines[-3:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "terminate called" not in proc.stderr


def test_debug_keeps_the_traceback(phantom_cache):
    proc = _bundle("chase", "--scale", "abc", "--debug", "True", *_tiny())
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_ctrl_c_names_the_checkpoint_and_the_resume_command(phantom_cache, tmp_path):
    out = tmp_path / "out"
    models = out / "models"
    args = ["--output_dir", str(out), *_tiny(), "--max_epochs", "200", "--iterations_per_epoch", "2"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
           str(REPO / "bundles" / "chase" / "configs" / "train.json"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if models.is_dir() and any(f.startswith("checkpoint") for f in os.listdir(models)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("Interrupted: the last checkpoint is ") and str(models) in last
    assert last.endswith("--resume True") and f"--output_dir {out}" in last
    # no traceback and no "terminating due to exception" before it: the resume hint is the message
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "terminating due to exception" not in err
