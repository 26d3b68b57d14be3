"""Bad-input catalogue, part 2: wrong configs and data, pointed at a workdir holding a good run.

The first cases go through the real CLI (`python -m vit_jax.main`), the rest in-process through
`vit_jax.main.train_or_exit` (the CLI's error path). Each checks the exit status, the one-line
message and that the good run's files are byte-identical afterwards and still load.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import pytest
from bad_inputs import (
    assert_intact,
    check_loads,
    copy_run,
    fails,
    finished_run,
    run_config,
    snapshot,
)

from vit_jax import config_lib, main, sharding, workdir

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    return finished_run(tmp_path_factory)


def config_file(path, config) -> str:
    """A configs/-style file whose get_config() is `config` (for the CLI cases)."""
    values = workdir._flat(json.loads(config.to_json_best_effort()))
    path.write_text(
        "from vit_jax import config_lib\n\n\n"
        "def get_config(arg=None):\n"
        "    c = config_lib.base_config()\n"
        f"    config_lib.override(c, {values!r})\n"
        "    return c\n"
    )
    return str(path)


def cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "vit_jax.main", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


# TensorFlow's C++ start-up log (glog format), printed before any of our code runs.
_TF_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog)")


def one_line(out, *, code, needle) -> str:
    lines = [x for x in out.stderr.strip().splitlines() if x.strip() and not _TF_LOG.match(x)]
    assert out.returncode == code, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.stderr
    return lines[0]


@pytest.mark.parametrize(
    "flag,needle",
    [("--config.modle.name=mu/8", "modle"), ("--config.total_steps=abc", "total_steps")],
)
def test_cli_misspelled_key_or_wrong_type(good_run, tmp_path, flag, needle):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    cfg = config_file(tmp_path / "cfg.py", run_config(good_run[0]))
    one_line(cli(f"--config={cfg}", flag, f"--workdir={w}"), code=2, needle=needle)
    assert_intact(before, w)
    assert set(snapshot(w)) == set(before)


def test_cli_rerun_with_another_model_keeps_the_run_loadable(good_run, tmp_path):
    """The issue's report: the same command with another model, by mistake."""
    w = copy_run(good_run, tmp_path)
    before, config_json = snapshot(w), (w / "config.json").read_bytes()
    cfg = config_file(tmp_path / "cfg.py", run_config(good_run[0]))
    out = cli(f"--config={cfg}", "--config.model.name=XXS/4", f"--workdir={w}")
    line = one_line(out, code=1, needle="model.name: 'mu/4' → 'XXS/4'")
    assert "--restart" in line
    assert (w / "config.json").read_bytes() == config_json
    assert_intact(before, w)
    check_loads(w)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"model.name": "mu/5"}, "config.model.name='mu/5': unknown model"),
        ({"data.image_size": 18}, "image_size"),
        ({"batch_size": 15}, "not divisible by the mesh's data axis (2 devices)"),
        (
            {"data.source": "tfds", "data.name": "no_such_dataset"},
            "config.data.name='no_such_dataset': unknown TFDS dataset",
        ),
    ],
    ids=["unknown-model", "image-not-tiling", "batch-vs-devices", "unknown-dataset"],
)
def test_bad_config_value_is_one_line_and_touches_nothing(
    good_run, tmp_path, capsys, overrides, needle
):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    c = run_config(good_run[0])
    c.data.data_dir = str(tmp_path / "tfds")  # Hermetic: no TFDS data dir of the machine's.
    config_lib.override(c, overrides)
    fails(capsys, main.train_or_exit, c, str(w), needle=needle)
    assert_intact(before, w)
    assert set(snapshot(w)) == set(before)


def test_batch_not_divisible_by_processes(good_run, tmp_path, capsys, monkeypatch):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    make_mesh = sharding.make_mesh

    def mesh_then_three_processes(*args, **kwargs):  # The mesh of this process's 8 devices,
        mesh = make_mesh(*args, **kwargs)  # then the batch check as if 3 processes shared it.
        monkeypatch.setattr(jax, "process_count", lambda: 3)
        return mesh

    monkeypatch.setattr(sharding, "make_mesh", mesh_then_three_processes)
    c = run_config(good_run[0])
    fails(capsys, main.train_or_exit, c, str(w), needle="batch_size=16 is not divisible by 3")
    assert_intact(before, w)


def _data_copy(good_run, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(good_run[0], root)
    return root


def test_empty_class_folder_is_named(good_run, tmp_path, capsys):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    root = _data_copy(good_run, tmp_path)
    (root / "train" / "class3").mkdir()
    c = run_config(root)
    fails(capsys, main.train_or_exit, c, str(w), needle="train/class3: class folder has no")
    assert_intact(before, w)
    check_loads(w)


@pytest.mark.parametrize("cache", [True, False])
def test_corrupt_image_is_named_and_no_checkpoint_is_written(good_run, tmp_path, capsys, cache):
    w = copy_run(good_run, tmp_path)
    before = snapshot(w)
    root = _data_copy(good_run, tmp_path)
    (root / "train" / "class1" / "zz_broken.png").write_bytes(b"GIF89a? not a png at all")
    c = run_config(root, total_steps=8)
    c.data.cache = cache
    fails(capsys, main.train_or_exit, c, str(w), needle="zz_broken.png: not an image file")
    steps = sorted(os.listdir(w / "checkpoints"))
    assert [s for s in steps if s.isdigit()] == ["2", "4"]
    assert_intact(before, w, appended=("metrics.jsonl", "config.json"))
    check_loads(w)
