"""Whole runs through train_and_evaluate: files written, determinism, resume, non-finite stop."""

import json

import jax
import numpy as np
import pytest
from test_train import small_config, write_folder

from vit_jax import checkpoint, data, metrics, train


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_folder(root, n_per_class=(24, 24, 24))
    write_folder(root, n_per_class=(7, 6, 6), split="test", seed=1)
    return root


def folder_config(root, **overrides):
    c = small_config(**overrides)
    c.data.source, c.data.root, c.data.augment = "folder", str(root), "pad_crop"
    c.mesh = (("data", 2),)
    c.progress_bar = False
    c.log_every = 1
    return c


def final_params(workdir):
    ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
    step = ckpt.latest_step()
    restored = ckpt._manager.restore(step)  # Raw restore: numpy trees, no target needed.
    ckpt.close()
    return step, restored


def test_run_writes_config_metrics_and_checkpoint(folder, tmp_path):
    c = folder_config(folder, total_steps=6, eval_every=3, checkpoint_every=3)
    summary = train.train_and_evaluate(c, str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 6
    evals = metrics.read(str(tmp_path), "eval")
    assert [e["step"] for e in evals] == [3, 6]
    assert all(0.0 <= e["accuracy"] <= 1.0 for e in evals)
    assert evals[-1]["eval_examples"] == 19
    assert len(metrics.read(str(tmp_path), "train")) == 6
    assert summary["images_seen"] == 6 * 16 and summary["accuracy"] == evals[-1]["accuracy"]
    assert list((tmp_path / "tensorboard").iterdir())
    step, _ = final_params(tmp_path)
    assert step == 6


def test_same_seed_same_params_and_resume_is_exact(folder, tmp_path):
    c = folder_config(folder, total_steps=6, checkpoint_every=3, eval_every=0)
    train.train_and_evaluate(c, str(tmp_path / "a"))
    train.train_and_evaluate(c, str(tmp_path / "b"))
    # Interrupted run: stop after the step-3 checkpoint, then the same command resumes.
    c_stop = folder_config(folder, total_steps=6, checkpoint_every=3, eval_every=0)
    with pytest.raises(KeyboardInterrupt):
        _run_until(c_stop, tmp_path / "c", stop_at=4)
    assert checkpoint.Checkpointer(str(tmp_path / "c" / "checkpoints")).latest_step() == 3
    train.train_and_evaluate(c, str(tmp_path / "c"))
    _, a = final_params(tmp_path / "a")
    for other in ("b", "c"):
        _, b = final_params(tmp_path / other)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)


def _run_until(c, workdir, stop_at):
    """Runs the engine but raises KeyboardInterrupt when batch `stop_at` is requested."""
    original = data.train_iterator

    def interrupting(*args, start_step=0, **kwargs):
        for i, batch in enumerate(original(*args, start_step=start_step, **kwargs), start_step):
            if i + 1 == stop_at:
                raise KeyboardInterrupt
            yield batch

    train.data.train_iterator = interrupting
    try:
        train.train_and_evaluate(c, str(workdir))
    finally:
        train.data.train_iterator = original


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(folder, tmp_path, monkeypatch):
    c = folder_config(folder, total_steps=8, checkpoint_every=2, eval_every=0)
    original = data.train_iterator

    def poisoned(*args, start_step=0, **kwargs):
        for i, batch in enumerate(original(*args, start_step=start_step, **kwargs), start_step):
            if i + 1 >= 4:
                batch = dict(batch, image=np.full_like(batch["image"], np.nan))
            yield batch

    monkeypatch.setattr(train.data, "train_iterator", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite .* step 4.*step 2"):
        train.train_and_evaluate(c, str(tmp_path))
    step, state = final_params(tmp_path)
    assert step == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


def test_fewshot_probe_runs_at_eval(folder, tmp_path):
    c = folder_config(folder, total_steps=2, eval_every=0)
    c.fewshot.dataset = "folder"  # With source=folder the run's own folder is used.
    c.fewshot.shots, c.fewshot.seeds = (1, 3), 2
    summary = train.train_and_evaluate(c, str(tmp_path))
    final = metrics.read(str(tmp_path), "eval")[-1]
    for key in ("fewshot_1shot", "fewshot_3shot"):
        assert 0.0 <= final[key] <= 1.0 and summary[key] == final[key]
