"""A real MONAI Label server (in its own virtual environment) serving the CHASE bundle.

Starts ``monailabel start_server`` on 127.0.0.1 with an app made by
``monai_supmix.apps.monailabel.create_app`` (both bundles; CHASE with a checkpoint,
COVID-19 untrained) and a datastore of synthetic phantoms (two labeled, four not), then
over HTTP: lists the model, auto-segments an image, submits a
label, trains semi-supervised for two iterations and checks the new checkpoint and that
the unlabeled images were given to the bundle as its unlabeled set; then the same
protocol through MONAI Label's own Python client (``monailabel.client.MONAILabelClient``,
what viewer plug-ins use): info, inference on a 2-D image and on a NIfTI volume uploaded
to the datastore (geometry kept), a saved label, a training run started and stopped.

Needs the venv of ``.ci/monailabel_env.sh`` (``.venv-monailabel`` in the repository, or
``MONAI_SUPMIX_MONAILABEL_VENV``); skips without it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_supmix.apps.monailabel import DATALIST_FILENAME, create_app
from monai_supmix.data import write_chase_phantoms

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MONAI_SUPMIX_MONAILABEL_VENV", REPO / ".venv-monailabel"))
STAMP = ".monai_supmix_monailabel_env"  # written by .ci/monailabel_env.sh when the venv is complete
IMAGE_SIZE = (128, 160)  # (H, W): not square, so a transposed label would be caught
LABELED = ("Image_01L", "Image_01R")
SERVER_START_S = 180
TRAIN_S = 300


def _venv_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"MONAI Label venv not found at {VENV}; run .ci/monailabel_env.sh")
    if not (VENV / STAMP).is_file():
        pytest.skip(f"MONAI Label venv at {VENV} is incomplete (no {STAMP}); run .ci/monailabel_env.sh")
    return python


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """A few HTTP calls with urllib (no client library needed)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=120):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.headers.get("content-type", ""), response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("content-type", ""), e.read()

    def json(self, method: str, path: str, payload: dict | None = None):
        body = None if payload is None else json.dumps(payload).encode()
        status, _, data = self.request(method, path, body, {"Content-Type": "application/json"} if body else None)
        assert status == 200, f"{method} {path} -> {status}: {data[:2000]!r}"
        return json.loads(data)

    def put_file(self, path: str, field: str, filename: str, content: bytes, form: dict | None = None):
        boundary = uuid.uuid4().hex
        parts = []
        for key, value in (form or {}).items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
            )
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        status, _, data = self.request(
            "PUT", path, b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert status == 200, f"PUT {path} -> {status}: {data[:2000]!r}"
        return json.loads(data)


def _random_checkpoint(bundle: Path) -> None:
    """A checkpoint with the bundle's network and untrained weights (enough to exercise auto-segmentation)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    (bundle / "models").mkdir(parents=True, exist_ok=True)
    torch.save({"model": network.state_dict()}, bundle / "models" / "model.pt")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    python = _venv_python()
    root = tmp_path_factory.mktemp("monailabel")
    phantoms = write_chase_phantoms(str(root / "phantoms"), num_images=6, size=IMAGE_SIZE, seed=3)
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for name in sorted(os.listdir(os.path.join(phantoms, "images"))):
        shutil.copy(os.path.join(phantoms, "images", name), studies / name)
        stem = os.path.splitext(name)[0]
        if stem in LABELED:
            shutil.copy(os.path.join(phantoms, "labels", f"{stem}_1stHO.png"), studies / "labels" / "final" / f"{stem}.png")
    bundles = [str(REPO / "bundles" / "chase"), str(REPO / "bundles" / "covid19")]
    app = Path(create_app(str(root / "app"), bundles, copy_weights=False))
    _random_checkpoint(app / "model" / "chase")  # covid19 stays untrained

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
        MONAI_LABEL_SESSION_PATH=str(root / "sessions"),
        MONAI_SUPMIX_CACHE=str(root / "cache"),
        PYTHONUNBUFFERED="1",
    )
    log_path = root / "server.log"
    log = open(log_path, "w")
    cmd = [str(python), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies)]
    cmd += ["--conf", "models", "chase,covid19", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    client = Client(port)

    def log_tail() -> str:
        log.flush()
        return log_path.read_text()[-6000:]

    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"monailabel start_server exited with {process.returncode}:\n{log_tail()}")
            try:
                status, _, _ = client.request("GET", "/info/", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /info/ within {SERVER_START_S} s:\n{log_tail()}")
            time.sleep(1)
        yield {"client": client, "app": app, "studies": studies, "log_tail": log_tail}
    finally:
        # the server and its training subprocesses share the session started for it
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        log.close()


def _image_hw(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size[1], im.size[0]


def _infer(client: Client, image_id: str) -> np.ndarray:
    status, content_type, data = client.request("POST", f"/infer/chase?image={image_id}&output=image")
    assert status == 200, f"/infer/chase -> {status}: {data[:2000]!r}"
    assert content_type.startswith("image/png"), content_type
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def test_label_infer_submit_train(server):
    client, app, studies = server["client"], server["app"], server["studies"]
    bundle = app / "model" / "chase"

    # 1. the model and its trainer are listed; the datastore holds 6 images, 2 labeled
    info = client.json("GET", "/info/")
    assert "chase" in info["models"], info["models"]
    assert info["models"]["chase"]["labels"] == {"vessel": 1}
    assert info["models"]["chase"]["dimension"] == 2
    assert set(info["trainers"]) == {"chase", "covid19"}
    # a bundle without a checkpoint can be trained but offers no auto-segmentation yet
    assert "covid19" not in info["models"]
    status, _, _ = client.request("POST", "/infer/covid19?image=Image_02R&output=image")
    assert status >= 400
    assert info["datastore"]["total"] == 6 and info["datastore"]["completed"] == 2, info["datastore"]

    # 2. auto-segmentation: a label map in the image's geometry with class indices
    image_id = "Image_02R"
    label = _infer(client, image_id)
    assert label.shape == _image_hw(studies / f"{image_id}.jpg") == IMAGE_SIZE
    assert set(np.unique(label).tolist()) <= {0, 1}

    # 3. an annotator submits the (corrected) label as final
    corrected = label.copy()
    corrected[60:68, :] = 1  # a "vessel" the annotator drew
    buffer = io.BytesIO()
    Image.fromarray(corrected.astype(np.uint8)).save(buffer, format="PNG")
    saved = client.put_file(
        f"/datastore/label?image={image_id}&tag=final", "label", f"{image_id}.png", buffer.getvalue(),
        form={"params": json.dumps({"annotator": "test"})},
    )  # fmt: skip
    assert saved["image"] == image_id
    stored = studies / "labels" / "final" / f"{image_id}.png"
    assert stored.is_file()
    np.testing.assert_array_equal(np.asarray(Image.open(stored)), corrected)
    assert client.json("GET", "/info/")["datastore"]["completed"] == 3

    # 4. a short semi-supervised training run from the datastore
    model = bundle / "models" / "model.pt"
    before = (model.stat().st_mtime_ns, model.read_bytes())
    request = {
        "max_epochs": 1,
        "iterations_per_epoch": 2,
        "batch_size": 2,
        "num_workers": 0,
        "sufd": False,
        "device": "cpu",
        "val_split": 0.2,
    }
    task = client.json("POST", "/train/chase", request)
    assert task["status"] in ("SUBMITTED", "RUNNING"), task
    deadline = time.monotonic() + TRAIN_S
    while True:
        status = client.json("GET", "/train/")
        if status["status"] not in ("SUBMITTED", "RUNNING"):
            break
        assert time.monotonic() < deadline, f"training did not finish in {TRAIN_S} s:\n{server['log_tail']()}"
        time.sleep(2)
    details = "\n".join(status.get("details", []))
    assert status["status"] == "DONE", f"training ended {status['status']}:\n{details}\n{server['log_tail']()}"

    # 5. a new checkpoint, trained on the datastore's labeled AND unlabeled images
    assert (bundle / "models" / "checkpoint_epoch=1.pt").is_file()
    assert model.stat().st_mtime_ns != before[0] and model.read_bytes() != before[1], "model.pt was not rewritten"
    datalist = json.loads((bundle / "models" / DATALIST_FILENAME).read_text())
    labeled = {Path(i["image"]).stem for i in datalist["labeled"] + datalist["validation"]}
    assert labeled == {*LABELED, image_id}
    assert {Path(i["image"]).stem for i in datalist["unlabeled"]} == {"Image_02L", "Image_03L", "Image_03R"}
    assert datalist["validation"], "no validation split"
    assert "Training finished" in details

    # 6. auto-segmentation now uses the new checkpoint
    label = _infer(client, "Image_03L")
    assert label.shape == IMAGE_SIZE and set(np.unique(label).tolist()) <= {0, 1}


CLIENT_SCRIPT = r"""
import json, shutil, sys, time
import nibabel as nib
import numpy as np
from PIL import Image
from monailabel.client import MONAILabelClient

url, workdir, nifti, label_png = sys.argv[1:5]
client = MONAILabelClient(url, tmpdir=workdir)
out = {}
info = client.info()
out["models"] = sorted(info["models"])
out["labels"] = info["models"]["chase"]["labels"]
# infer a 2-D image of the datastore
path, params = client.infer("chase", "Image_03R", {})
with Image.open(path) as im:
    out["infer_2d"] = {"shape": list(np.asarray(im).shape), "values": sorted(np.unique(np.asarray(im)).tolist())}
# a NIfTI volume: uploaded into the datastore, then inferred by id
image_id = client.upload_image(nifti, image_id="ct_volume")
path, params = client.infer("chase", "ct_volume", {})
seg = nib.load(path)
out["infer_nifti"] = {"shape": list(seg.shape), "affine": seg.affine.tolist(), "max": int(np.asarray(seg.dataobj).max())}
# an annotator's final label
out["save_label"] = client.save_label("Image_03R", label_png, tag="final", params={"annotator": "client"})
# start a long training run, see it run, stop it
started = client.train_start("chase", {"max_epochs": 200, "iterations_per_epoch": 50, "batch_size": 2,
                                       "num_workers": 0, "sufd": False, "device": "cpu", "val_split": 0.2})
out["train_started"] = started.get("status")
deadline = time.time() + 120
while time.time() < deadline and client.train_status().get("status") == "SUBMITTED":
    time.sleep(1)
out["train_running"] = client.train_status().get("status")
client.train_stop()
deadline = time.time() + 120
while time.time() < deadline and client.train_status().get("status") in ("SUBMITTED", "RUNNING"):
    time.sleep(1)
out["train_after_stop"] = client.train_status().get("status")
print("RESULT " + json.dumps(out))
"""


def test_monai_label_python_client(server, tmp_path):
    """The protocol as MONAI Label's own client (the code viewer plug-ins use) speaks it: info, infer of a 2-D
    image and of a NIfTI volume in the datastore, saving a label, starting and stopping training."""
    import nibabel as nib

    python = _venv_python()
    client, studies = server["client"], server["studies"]
    volume = np.random.default_rng(0).integers(-1000, 400, size=(64, 80, 3)).astype(np.int16)
    affine = np.array([[0.7, 0, 0, -20.0], [0, 0.7, 0, 5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    nifti = tmp_path / "ct_volume.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), str(nifti))
    label = np.zeros(IMAGE_SIZE, np.uint8)
    label[40:44, :] = 1
    label_png = tmp_path / "Image_03R.png"
    Image.fromarray(label).save(label_png)
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    (tmp_path / "client_tmp").mkdir()
    proc = subprocess.run(
        [str(python), str(script), client.base, str(tmp_path / "client_tmp"), str(nifti), str(label_png)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{proc.stderr[-4000:]}\n{server['log_tail']()}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert "chase" in result["models"] and result["labels"] == {"vessel": 1}
    assert result["infer_2d"]["shape"] == list(IMAGE_SIZE) and set(result["infer_2d"]["values"]) <= {0, 1}
    assert result["infer_nifti"]["shape"] == list(volume.shape) and result["infer_nifti"]["max"] <= 1
    np.testing.assert_allclose(np.array(result["infer_nifti"]["affine"]), affine)
    assert result["save_label"]["image"] == "Image_03R"
    np.testing.assert_array_equal(np.asarray(Image.open(studies / "labels" / "final" / "Image_03R.png")), label)
    assert result["train_started"] in ("SUBMITTED", "RUNNING") and result["train_running"] == "RUNNING"
    assert result["train_after_stop"] not in ("SUBMITTED", "RUNNING"), result
