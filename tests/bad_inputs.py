"""Shared by the bad-input catalogue (tests/test_bad_inputs_*.py): one finished tiny run, copied
per case, and the checks every case makes — the exit status, ONE line naming the problem, and
every good file byte-identical afterwards (metrics.jsonl may only have grown)."""

import hashlib
import os
import pathlib
import shutil

import numpy as np
from test_train import small_config, write_folder

from vit_jax import main

STEPS = 4  # The good run: 4 steps, checkpoints at 2 and 4.


def run_config(root, **overrides):
    """The tiny run of the catalogue: mu/4 on 16×16 folder images, 2 devices, no progress bar."""
    c = small_config(**{"total_steps": STEPS, "checkpoint_every": 2, "eval_every": 0} | overrides)
    c.data.source, c.data.root, c.data.augment = "folder", str(root), "pad_crop"
    c.mesh = (("data", 2),)
    c.progress_bar = False
    c.log_every = 1
    return c


def make_folder(root, classes=3):
    write_folder(root, n_per_class=(8,) * classes)
    write_folder(root, n_per_class=(3,) * classes, split="test", seed=1)
    return root


_FINISHED = {}  # One run for the whole session, whichever catalogue module asks first.


def finished_run(tmp_path_factory):
    """(data folder, workdir of a finished run) for a module fixture; cases work on `copy_run`."""
    if not _FINISHED:
        base = tmp_path_factory.mktemp("good")
        root = make_folder(base / "data")
        main.train_or_exit(run_config(root), str(base / "run"))
        _FINISHED["run"] = root, base / "run"
    return _FINISHED["run"]


def copy_run(good_run, tmp_path) -> pathlib.Path:
    workdir = tmp_path / "run"
    shutil.copytree(good_run[1], workdir, symlinks=True)
    return workdir


def snapshot(root) -> dict[str, str]:
    """{relative path: sha256} of every file under `root`."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def assert_intact(before: dict, root, *, appended=()) -> None:
    """Every file of `before` is still byte-identical; files in `appended` only grew."""
    after = snapshot(root)
    for name, digest in before.items():
        if name in appended:
            continue
        assert after.get(name) == digest, f"{name} changed or vanished"


def assert_prefix(old: bytes, path) -> None:
    """An append-only file: the old bytes are still its start."""
    assert pathlib.Path(path).read_bytes()[: len(old)] == old


def fails(capsys, fn, *args, code=1, needle="", **kwargs) -> str:
    """Runs fn expecting SystemExit(code) (or that return code) and ONE stderr line with needle."""
    capsys.readouterr()
    try:
        got = fn(*args, **kwargs)
    except SystemExit as e:
        got = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), err[-2000:]
    assert needle in lines[0], lines[0]
    return lines[0]


def check_loads(workdir) -> None:
    """The run still loads as a Classifier and gives finite logits."""
    import vit_jax

    clf = vit_jax.load(str(workdir))
    assert clf.image_size == 16 and len(clf.class_names) == 3
    assert np.isfinite(clf(np.zeros((1, 16, 16, 3), np.float32))).all()
