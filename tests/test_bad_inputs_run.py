"""Bad-input catalogue, part 1: wrong re-runs and faults during a run leave the good run intact.

Each case starts from a copy of one finished tiny run (see bad_inputs.py), runs a wrong command
in-process through `vit_jax.main.train_or_exit` (the CLI's error path) and checks the exit status,
the one-line message and that every good file is byte-identical and still loads or resumes.
"""

import errno
import glob
import json
import logging
import os
import subprocess

import numpy as np
import pytest
from bad_inputs import (
    STEPS,
    assert_intact,
    assert_prefix,
    check_loads,
    copy_run,
    fails,
    finished_run,
    make_folder,
    run_config,
    snapshot,
)

from vit_jax import checkpoint, main, metrics, train


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    return finished_run(tmp_path_factory)


def test_mismatched_rerun_names_both_configs_and_touches_nothing(good_run, tmp_path, capsys):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    c = run_config(good_run[0])
    c.model.name, c.data.image_size = "mu/8", 32
    line = fails(capsys, main.train_or_exit, c, str(w), needle="holds another run")
    assert "model.name: 'mu/4' → 'mu/8'" in line and "data.image_size: 16 → 32" in line
    assert "--restart" in line and "new --workdir" in line
    assert_intact(before, w)
    assert set(snapshot(w)) == set(before)  # Not even a new file.
    check_loads(w)


def test_rerun_on_other_classes_is_refused(good_run, tmp_path, capsys):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    c = run_config(make_folder(tmp_path / "four", classes=4))
    fails(capsys, main.train_or_exit, c, str(w), needle="classes: 3 → 4")
    assert_intact(before, w)
    check_loads(w)


def test_restart_moves_the_old_run_aside_never_deletes(good_run, tmp_path, capsys):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    c = run_config(good_run[0], total_steps=2)
    c.model.name = "mu/8"
    main.train_or_exit(c, str(w), restart=True)
    (old,) = glob.glob(f"{w}.old-*")
    assert_intact(before, old)
    check_loads(old)
    assert json.loads((w / "config.json").read_text())["model"]["name"] == "mu/8"
    assert checkpoint.Checkpointer(str(w / "checkpoints")).all_steps() == [2]


def test_compatible_change_resumes_and_is_recorded(good_run, tmp_path):
    w = copy_run(good_run, tmp_path)
    before, old_metrics = snapshot(w), (w / "metrics.jsonl").read_bytes()
    c = run_config(good_run[0], total_steps=STEPS + 2, eval_every=5)
    summary = main.train_or_exit(c, str(w))
    assert summary["step"] == STEPS + 2
    assert_prefix(old_metrics, w / "metrics.jsonl")
    (note,) = metrics.read(str(w), "config_change")
    assert note["step"] == STEPS
    assert note["changes"] == {"total_steps": [STEPS, STEPS + 2], "eval_every": [0, 5]}
    assert [r["step"] for r in metrics.read(str(w), "train")][-2:] == [STEPS + 1, STEPS + 2]
    kept = {k: v for k, v in before.items() if k.startswith(("checkpoints/2/", "checkpoints/4/"))}
    assert kept
    assert_intact(kept, w)


def test_truncated_newest_checkpoint_is_skipped_and_previous_resumed(good_run, tmp_path, caplog):
    w = copy_run(good_run, tmp_path)
    for f in glob.glob(f"{w}/checkpoints/{STEPS}/default/d/*"):
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    step2 = {k: v for k, v in snapshot(w).items() if k.startswith("checkpoints/2/")}
    with caplog.at_level(logging.WARNING):
        summary = main.train_or_exit(run_config(good_run[0]), str(w))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"step {STEPS}: unreadable" in m and "\n" not in m for m in warnings), warnings
    assert summary["step"] == STEPS and np.isfinite(summary["loss"])
    assert_intact(step2, w)
    assert os.listdir(f"{w}/checkpoints.corrupt")[0].startswith(f"{STEPS}-")  # Kept, not deleted.
    check_loads(w)


@pytest.fixture
def read_only(tmp_path):
    """Makes a directory read-only even for root (a read-only bind mount); undone afterwards."""
    mounted = []

    def make(path):
        if os.geteuid() != 0:
            os.chmod(path, 0o555)
            for sub in path.rglob("*"):
                sub.chmod(0o555 if sub.is_dir() else 0o444)
            return
        for args in (["--bind", str(path), str(path)], ["-o", "remount,ro,bind", str(path)]):
            if subprocess.run(["mount", *args], capture_output=True).returncode:
                pytest.skip("root without mount rights: cannot make a read-only directory")
        mounted.append(path)

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_workdir_is_one_line_before_any_work(good_run, tmp_path, capsys, read_only):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    read_only(w)
    c = run_config(good_run[0], total_steps=STEPS + 2)
    fails(capsys, main.train_or_exit, c, str(w), needle=f"workdir {w} is not writable")
    assert_intact(before, w)
    check_loads(w)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    good_run, tmp_path, capsys, monkeypatch
):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    real_save = checkpoint.Checkpointer.save

    def full_disk(self, step, state):  # The device fills up once the next step is written.
        if step > STEPS:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{self.directory}/{step}")
        real_save(self, step, state)

    monkeypatch.setattr(checkpoint.Checkpointer, "save", full_disk)
    c = run_config(good_run[0], total_steps=STEPS + 4)
    fails(capsys, main.train_or_exit, c, str(w), needle="No space left on device")
    assert checkpoint.Checkpointer(str(w / "checkpoints")).latest_step() == STEPS
    assert_intact(before, w, appended=("metrics.jsonl", "config.json"))
    check_loads(w)


def _poison_from(monkeypatch, first_bad_step):
    original = train.data.train_iterator

    def poisoned(*args, start_step=0, **kwargs):
        for i, batch in enumerate(original(*args, start_step=start_step, **kwargs), start_step):
            if i + 1 >= first_bad_step:
                batch = dict(batch, image=np.full_like(batch["image"], np.nan))
            yield batch

    monkeypatch.setattr(train.data, "train_iterator", poisoned)


def test_nan_after_a_checkpoint_keeps_it_the_latest(good_run, tmp_path, capsys, monkeypatch):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    _poison_from(monkeypatch, STEPS + 2)
    c = run_config(good_run[0], total_steps=STEPS + 4)
    fails(capsys, main.train_or_exit, c, str(w), needle=f"checkpoint (step {STEPS}) is intact")
    assert checkpoint.Checkpointer(str(w / "checkpoints")).all_steps() == [2, STEPS]
    assert_intact(before, w, appended=("metrics.jsonl", "config.json"))
    check_loads(w)


def test_nan_before_the_first_checkpoint_says_none_was_written(
    good_run, tmp_path, capsys, monkeypatch
):
    _poison_from(monkeypatch, 1)
    w = tmp_path / "fresh"
    line = fails(capsys, main.train_or_exit, run_config(good_run[0]), str(w), needle="step 1")
    assert "no checkpoint had been written yet" in line and "None" not in line
    assert checkpoint.Checkpointer(str(w / "checkpoints")).all_steps() == []
