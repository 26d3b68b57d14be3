"""gs:// end to end, against a real GCS server (fake-gcs-server, tests/gcs_fake.py): a run, a
SIGKILL and resume, load/convert, a sweep and the errors a user meets first, all with the bucket as
the only place anything is written. TensorBoard is the one writer left out: TensorFlow's GCS client
cannot be pointed at an emulator, so under one no events are written (metrics.jsonl is the record).
"""

import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jax
import numpy as np
import pytest
from test_data import data_config
from test_train import write_folder

ROOT = Path(__file__).resolve().parent.parent
STEPS = 12

CONFIG = """
from vit_jax import config_lib


def get_config(arg=None):
    c = config_lib.base_config()
    c.model.name = "mu/4"
    c.batch_size = 16
    c.optim.warmup_steps = 0
    c.data.source, c.data.root, c.data.augment = "folder", {root!r}, "pad_crop"
    c.data.image_size = 16
    c.mesh = (("data", 2),)
    c.progress_bar = False
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 4
    c.total_steps = int(arg or {steps})
    return c
"""


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    """A tiny run's config file (the input a user gives, so on local disk, as its image folder)."""
    root = tmp_path_factory.mktemp("gcs_data")
    write_folder(root, n_per_class=(16, 16))
    write_folder(root, n_per_class=(4, 4), split="test", seed=1)
    path = root / "config.py"
    path.write_text(CONFIG.format(root=str(root), steps=STEPS))
    return path


def engine(config, workdir, env, *, steps=STEPS, cwd=ROOT, wait=True, site=None):
    """`python -m vit_jax.main` as a user runs it, pointed at the emulator (`site`: a folder
    with a sitecustomize.py put first on the path, e.g. to hang the run at a known step)."""
    cmd = [
        sys.executable,
        "-m",
        "vit_jax.main",
        f"--config={config}:{steps}",
        f"--workdir={workdir}",
    ]
    pythonpath = os.pathsep.join([str(site), str(ROOT)] if site else [str(ROOT)])
    full_env = {**os.environ, **env, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu"}
    full_env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=full_env, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def trained(gcs_server, run_config, tmp_path_factory):
    """One uninterrupted run into gs://runs/plain, started in an empty folder (to see strays)."""
    cwd = tmp_path_factory.mktemp("cwd")
    before = set(os.listdir(tempfile.gettempdir()))
    proc = engine(run_config, f"{gcs_server.bucket('runs')}/plain", gcs_server.env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"workdir": "gs://runs/plain", "cwd": cwd, "tmp_before": before}


def bucket_files(gcs_server, bucket, prefix):
    return [n[len(prefix) :] for n in gcs_server.objects(bucket) if n.startswith(prefix)]


def test_run_writes_every_file_to_the_bucket_and_none_locally(gcs_server, trained):
    files = bucket_files(gcs_server, "runs", "plain/")
    assert {"config.json", "dataset.json", "metrics.jsonl"} <= set(files)
    assert any(f.startswith(f"checkpoints/{STEPS}/") for f in files), files
    assert not any(".write-probe" in f for f in files)
    lines = [json.loads(x) for x in gcs_read(gcs_server, "runs", "plain/metrics.jsonl")]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, STEPS + 1))
    assert os.listdir(trained["cwd"]) == []  # No local folder named "gs:".
    assert not (ROOT / "gs:").exists()
    new = set(os.listdir(tempfile.gettempdir())) - trained["tmp_before"]
    assert not [n for n in new if n.startswith("gs")], new


def gcs_read(gcs_server, bucket, name) -> list[str]:
    url = f"{gcs_server.url}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode().splitlines()


def final_params(workdir):
    from vit_jax import checkpoint

    return checkpoint.load_params(workdir)


def test_sigkill_then_same_command_resumes_from_the_bucket_bit_identical(
    gcs_server, run_config, trained, tmp_path
):
    from test_checkpoint import _HANG  # The hang-at-a-step sitecustomize of the local test.

    workdir = f"{gcs_server.bucket('runs')}/killed"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_HANG)
    mark = tmp_path / "mark"
    hang = {"VIT_JAX_TEST_HANG": "batch:7", "VIT_JAX_TEST_MARK": str(mark)}  # After step 6.
    proc = engine(
        run_config, workdir, {**gcs_server.env, **hang}, wait=False, site=tmp_path / "site"
    )
    deadline = time.monotonic() + 180
    while not (mark.exists() and _committed_steps(gcs_server, "killed/")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached step 7"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert max(_committed_steps(gcs_server, "killed/")) == 4  # checkpoint_every=4; step 8 never.
    again = engine(run_config, workdir, gcs_server.env)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [json.loads(x) for x in gcs_read(gcs_server, "runs", "killed/metrics.jsonl")]
    assert max(r["step"] for r in lines if r["kind"] == "train") == STEPS
    a, b = final_params(workdir), final_params(trained["workdir"])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)  # Same program, same machine: exact.


def _committed_steps(gcs_server, prefix) -> list[int]:
    done = [n.split("/") for n in bucket_files(gcs_server, "runs", f"{prefix}checkpoints/")]
    return [int(p[0]) for p in done if p[0].isdigit() and p[-1] == "commit_success.txt"]


def test_missing_bucket_is_one_line_before_training(gcs_server, run_config):
    proc = engine(run_config, "gs://no-such-bucket/run", gcs_server.env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: bucket gs://no-such-bucket does not exist")
    assert "gcloud storage buckets create gs://no-such-bucket" in lines[-1]
    assert "step" not in proc.stderr.lower()


def test_load_and_convert_read_and_write_the_bucket(gcs_server, trained):
    import vit_jax
    from vit_jax import convert, interop

    source = interop.read(trained["workdir"])
    clf = vit_jax.load(trained["workdir"])
    assert clf.num_classes == 2 and clf.class_names == ("class0", "class1")
    images = np.random.RandomState(0).randint(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    logits = clf(images)
    out = gcs_server.bucket("weights")
    env = {**os.environ, **gcs_server.env, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    for name in ("orbax", "w.npz", "w.safetensors"):  # The command line once, then in-process.
        cmd = [sys.executable, "-m", "vit_jax.convert", trained["workdir"], f"{out}/{name}"]
        if name == "orbax":
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            assert convert.main(cmd[3:]) == 0
        converted = interop.read(f"{out}/{name}")
        assert converted.params.keys() == source.params.keys(), name
        for key, value in source.params.items():
            np.testing.assert_array_equal(converted.params[key], value, err_msg=f"{name} {key}")
    np.testing.assert_array_equal(vit_jax.load(f"{out}/orbax")(images), logits)
    files = gcs_server.objects("weights")
    assert "w.npz" in files and "w.safetensors" in files and "orbax/config.json" in files
    assert not [f for f in files if ".tmp-" in f or ".old-" in f], files
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "exists; pass --overwrite" in again.stderr


SWEEP = """
from experiments.sweep import Sweep, axis
from vit_jax import config_lib


def get_sweep(arg=None):
    base = config_lib.load_file({config!r}).get_config()
    return Sweep(base=base, axes=axis("total_steps", [2, 4]))
"""


def test_sweep_with_a_gs_workdir_collects_every_point_in_the_bucket(
    gcs_server, run_config, tmp_path
):
    sweep_file = tmp_path / "tiny_sweep.py"
    sweep_file.write_text(SWEEP.format(config=str(run_config)))
    workdir = f"{gcs_server.bucket('sweeps')}/tiny"
    cmd = [sys.executable, "-m", "experiments.run", f"--sweep={sweep_file}",
           f"--workdir={workdir}", "--parallel=2"]  # fmt: skip
    env = {**os.environ, **gcs_server.env, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(x) for x in gcs_read(gcs_server, "sweeps", "tiny/results.jsonl")]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert sorted(r["images_seen"] for r in rows) == [2 * 16, 4 * 16]
    files = gcs_server.objects("sweeps")
    for r in rows:
        point = f"tiny/{r['name']}/"
        assert {"result.json", "metrics.jsonl", "config.json", "log.txt"} <= {
            f[len(point) :] for f in files if f.startswith(point)
        }, files
    assert "tiny/results.csv" in files and "tiny/compute.png" in files
    assert "tiny/summary.md" in files
    assert not (ROOT / "gs:").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("skip ") == 2  # Resumed from the bucket.


def test_data_root_in_the_bucket_reads_the_same_arrays(gcs_server):
    from vit_jax import paths
    from vit_jax.data import arrays, fashion_mnist

    if not os.path.isdir(fashion_mnist.SOURCE_DIR):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    root = f"{gcs_server.bucket('data')}/fashion-mnist"
    for name in fashion_mnist.SPLIT_FILES["test"]:
        local = Path(fashion_mnist.SOURCE_DIR) / name
        paths.write_bytes(f"{root}/{name}", local.read_bytes())
    config = {"name": "fashion_mnist", "source": "arrays", "augment": "resize", "image_size": 28}
    images, labels = arrays.load(data_config(**config, root=root), "test[:500]")
    local_images, local_labels = arrays.load(data_config(**config), "test[:500]")
    np.testing.assert_array_equal(images, local_images)
    np.testing.assert_array_equal(labels, local_labels)


class _DenyWrites:
    """An HTTP proxy in front of the emulator that answers every write with GCS's 403, as a bucket
    the account may only read does."""

    def __init__(self, upstream: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command in ("POST", "PUT", "PATCH", "DELETE"):
                    return self._reply(403, b'{"error": {"code": 403, "message": "denied"}}')
                request = urllib.request.Request(upstream + self.path, data=body)
                request.method = self.command
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        self._reply(r.status, r.read())
                except urllib.error.HTTPError as e:
                    self._reply(e.code, e.read())

            def _reply(self, code, payload):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                return None  # Quiet: no request log on stderr.

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_denied_write_is_one_line_before_training(gcs_server, run_config):
    gcs_server.bucket("readonly")
    proxy = _DenyWrites(gcs_server.url)
    env = {**gcs_server.env, "STORAGE_EMULATOR_HOST": proxy.url}
    env["TENSORSTORE_GCS_HTTP_URL"] = proxy.url
    try:
        proc = engine(run_config, "gs://readonly/run", env)
    finally:
        proxy.server.shutdown()
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write to gs://readonly"), line
    assert "roles/storage.objectAdmin" in line
    assert gcs_server.objects("readonly") == []
