"""The one path layer: every file a user names (workdirs, checkpoints, weights, sweep results, data
roots) is read and written through here, so `gs://bucket/...` works wherever a local path does.

Built on etils.epath, the layer Orbax itself uses: local paths go to the OS, gs:// to TensorFlow's
GCS client or (EPATH_USE_TF=false) to gcsfs. TensorFlow's client has no emulator setting, so the
tests run gcsfs against a local GCS server (tests/gcs_fake.py). GCS objects cannot be appended to
or renamed atomically: `append_text` rewrites the object and `replace` copies then deletes.
"""

from __future__ import annotations

import os
import tempfile

from etils import epath

from vit_jax import errors

Path = epath.Path


def is_remote(p) -> bool:
    """True for a URL-style path (gs://, s3://, ...), False for a local one."""
    return "://" in os.fspath(p)


def path(p) -> epath.Path:
    """`p` as an epath.Path; local paths made absolute (Orbax needs that)."""
    return epath.Path(p) if is_remote(p) else epath.Path(os.path.abspath(os.fspath(p)))


def exists(p) -> bool:
    return path(p).exists()


def isdir(p) -> bool:
    return path(p).is_dir()


def makedirs(p) -> epath.Path:
    """Creates folder `p` (and parents) if missing; GCS folders are implicit: a no-op there."""
    p = path(p)
    if not is_remote(p):
        p.mkdir(parents=True, exist_ok=True)
    return p


def read_text(p) -> str:
    return path(p).read_text(encoding="utf-8")


def read_bytes(p) -> bytes:
    return path(p).read_bytes()


def write_text(p, text: str) -> None:
    """Writes `text` to file `p` (parents created), replacing it."""
    p = path(p)
    makedirs(p.parent)
    p.write_text(text, encoding="utf-8")


def write_bytes(p, data: bytes) -> None:
    p = path(p)
    makedirs(p.parent)
    p.write_bytes(data)


def append_text(p, text: str) -> None:
    """Appends to file `p`. A GCS object is immutable: it is read and written back whole."""
    p = path(p)
    if is_remote(p):
        p.write_text((p.read_text(encoding="utf-8") if p.exists() else "") + text, encoding="utf-8")
        return
    makedirs(p.parent)
    with p.open("a", encoding="utf-8") as f:
        f.write(text)


def remove(p) -> None:
    """Deletes file or folder `p` if it exists."""
    p = path(p)
    if p.is_dir():
        p.rmtree()
    elif p.exists():
        p.unlink()


def replace(src, dst) -> None:
    """Moves file or folder `src` onto `dst` (an atomic rename locally; copy + delete on GCS)."""
    src, dst = path(src), path(dst)
    if not is_remote(dst) and not is_remote(src):
        os.replace(src, dst)
        return
    remove(dst)
    src.rename(dst)


def write_atomic(p, data: bytes) -> None:
    """Writes file `p` so that a reader never sees it half-written (temporary name, then rename)."""
    p = path(p)
    tmp = p.parent / f"{p.name}.tmp-{os.getpid()}"
    try:
        write_bytes(tmp, data)
        replace(tmp, p)
    finally:
        remove(tmp)


def staging_dir(p) -> str:
    """A local folder standing in for remote `p` where a tool needs a local file (a process's log,
    a config file absl loads): the same folder on every call, so a re-run finds it again."""
    if not is_remote(p):
        return os.fspath(path(p))
    scheme, rest = os.fspath(p).split("://", 1)
    local = os.path.join(tempfile.gettempdir(), "vit_jax-staging", scheme, rest.strip("/"))
    os.makedirs(local, exist_ok=True)
    return local


class StorageError(errors.UserError, OSError):
    """A workdir the run cannot use (missing bucket, no write permission); one line with the fix."""


def check_writable(directory) -> None:
    """Creates `directory` and proves a file can be written there, before any work is done.

    On GCS a missing bucket or a denied write is otherwise only seen at the first checkpoint.
    """
    if not is_remote(directory):
        makedirs(directory)
        return
    bucket = os.fspath(directory).split("://", 1)[1].split("/", 1)[0]
    if not path(f"gs://{bucket}").exists():
        raise StorageError(
            f"bucket gs://{bucket} does not exist: create it "
            f"(gcloud storage buckets create gs://{bucket}) or fix the path {directory}"
        )
    probe = path(directory) / f".write-probe-{os.getpid()}"
    try:
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except (PermissionError, OSError) as e:
        raise StorageError(
            f"cannot write to gs://{bucket} ({_first_line(e)}): grant this account "
            f"roles/storage.objectAdmin on it (gcloud storage buckets add-iam-policy-binding "
            f"gs://{bucket} --member=user:YOU --role=roles/storage.objectAdmin)"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]
