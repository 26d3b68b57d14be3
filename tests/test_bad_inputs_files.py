"""Bad-input catalogue, part 3: damaged weights files and broken sweeps.

Weights go through `python -m vit_jax.convert`'s main (exit status + one line) and `vit_jax.load`
(one-line ValueError); the good weights file and an existing output stay byte-identical and load.
Sweeps go through `python -m experiments.run`'s main with a stand-in engine: a sweep that already
has results keeps them byte-identical whatever goes wrong next.
"""

import json
import pickle
import shutil

import numpy as np
import pytest
from bad_inputs import assert_intact, fails, snapshot
from test_experiments import _script
from test_interop import _Evil, random_params

import vit_jax
from experiments import run
from vit_jax import convert
from vit_jax.interop import npz, timm

KERNEL = "embedding/kernel"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A good mu/4 .npz and .safetensors (5 classes, 16×16) in a module folder."""
    d = tmp_path_factory.mktemp("weights")
    _, flat = random_params("mu/4", num_classes=5, image_size=16)
    npz.write(str(d / "good.npz"), flat)
    assert convert.main([str(d / "good.npz"), str(d / "good.safetensors"), "--to=timm"]) == 0
    return d


def _loads(path) -> None:
    clf = vit_jax.load(str(path))
    assert clf.num_classes == 5 and clf.model_name == "mu/4"
    assert np.isfinite(clf(np.zeros((1, 16, 16, clf.channels), np.float32))).all()


def _truncated(d, tmp_path):
    data = (d / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated.npz", "truncated.npz"


def _pickled_npz(d, tmp_path):
    np.savez(tmp_path / "objects.npz", **{KERNEL: np.array([_Evil()], dtype=object)})
    return tmp_path / "objects.npz", f"objects.npz: key '{KERNEL}' holds pickled"


def _wrong_shape_npz(d, tmp_path):
    flat = dict(np.load(d / "good.npz"))
    flat[KERNEL] = np.zeros((5, 5, 3, flat[KERNEL].shape[-1]), np.float32)
    npz.write(str(tmp_path / "wrong.npz"), flat)
    return tmp_path / "wrong.npz", f"wrong.npz: key '{KERNEL}' has shape (5, 5, 3, "


def _pth(d, tmp_path):
    (tmp_path / "model.pth").write_bytes(pickle.dumps(_Evil()))
    return tmp_path / "model.pth", "model.pth: pickle-based"


def _wrong_shape_safetensors(d, tmp_path):
    sd, meta = timm.read(str(d / "good.safetensors"))
    sd["head.weight"] = np.zeros((7, sd["head.weight"].shape[1]), np.float32)
    sd["head.bias"] = np.zeros((5,), np.float32)
    timm.write(str(tmp_path / "wrong.safetensors"), sd, metadata=meta)
    return tmp_path / "wrong.safetensors", "wrong.safetensors: key 'head/"


def _missing(d, tmp_path):
    return tmp_path / "no_such_run", "no_such_run: not found"


def _empty_dir(d, tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", "empty: no Orbax checkpoint"


@pytest.mark.parametrize(
    "make",
    [
        _truncated,
        _pickled_npz,
        _wrong_shape_npz,
        _pth,
        _wrong_shape_safetensors,
        _missing,
        _empty_dir,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_bad_weights_file_is_one_line_and_harms_nothing(
    weights, tmp_path, capsys, monkeypatch, make
):
    marker = tmp_path / "executed"
    monkeypatch.setenv("VIT_JAX_PICKLE_MARKER", str(marker))
    before = snapshot(weights)
    src, needle = make(weights, tmp_path)
    src_before = snapshot(tmp_path)
    out = tmp_path / "out.npz"
    fails(capsys, convert.main, [str(src), str(out), "--model=mu/4"], needle=needle)
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        vit_jax.load(str(src), model="mu/4")
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and not marker.exists()  # Nothing written, no pickle executed.
    assert_intact(src_before, tmp_path)
    assert_intact(before, weights)
    _loads(weights / "good.npz")


def test_convert_never_overwrites_a_good_file(weights, tmp_path, capsys):
    out = tmp_path / "mine.safetensors"
    shutil.copy(weights / "good.safetensors", out)
    before = snapshot(tmp_path)
    fails(capsys, convert.main, [str(weights / "good.npz"), str(out)], needle="mine.safetensors")
    assert_intact(before, tmp_path)
    _loads(out)


# --- Sweeps -----------------------------------------------------------------------------------

SWEEP = """
from experiments import sweep
from vit_jax import config_lib


def get_sweep(arg=None):
    base = config_lib.base_config()
    base.total_steps = 2
    axes = sweep.product(sweep.axis("{key}", {values!r}), sweep.axis("total_steps", [2]))
    return sweep.Sweep(base=base, axes=axes)
"""


def sweep_file(path, *, key="model.name", values=("mu/7", "mu/14"), text=None) -> str:
    path.write_text(text or SWEEP.format(key=key, values=list(values)))
    return str(path)


ENGINE = r"""#!/usr/bin/env bash
# Stands in for `python -m vit_jax.main`: logs the call, writes an eval line; SIGKILLs itself
# mid-run (after a train line) on the point FAKE_KILL names while the file FAKE_KILL_ONCE exists.
echo "$@" >> "$FAKE_LOG"
for a in "$@"; do case "$a" in --workdir=*) wd="${a#--workdir=}";; esac; done
echo '{"step": 1, "kind": "train", "loss": 2.0}' >> "$wd/metrics.jsonl"
if [[ -n "$FAKE_KILL" && "$wd" == *"$FAKE_KILL" && -e "$FAKE_KILL_ONCE" ]]; then
  rm -f "$FAKE_KILL_ONCE"; kill -9 $$
fi
echo '{"step": 2, "kind": "eval", "accuracy": 0.75}' >> "$wd/metrics.jsonl"
"""


@pytest.fixture
def engine_log(tmp_path, monkeypatch):
    """Sweeps run by the stand-in engine (see ENGINE); returns the log of its calls."""
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setattr(run.results, "dataset_shape", lambda data_config: (10, 1))
    engine = str(_script(tmp_path / "engine", ENGINE))
    backend = lambda args, workdir, **_: run.backends.LocalBackend(python=engine)  # noqa: E731
    monkeypatch.setattr(run, "make_backend", backend)
    return log


def sweep_main(sweep_path, workdir):
    return run.main([f"--sweep={sweep_path}", f"--workdir={workdir}", "--no-analysis"])


def rows(workdir) -> dict:
    lines = (workdir / "results.jsonl").read_text().splitlines()
    return {r["name"]: r for r in map(json.loads, lines)}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("def get_sweep(arg=None):\n    return sweep.Sweep(base=\n", "bad.py' line 2: '('"),
        (SWEEP.format(key="model.nmae", values=["mu/7"]), "model.nmae"),
    ],
    ids=["syntax-error", "unknown-key"],
)
def test_broken_sweep_file_is_one_line_and_keeps_results(
    engine_log, tmp_path, capsys, text, needle
):
    workdir = tmp_path / "sweep"
    assert sweep_main(sweep_file(tmp_path / "good.py"), workdir) == 0
    before, calls = snapshot(workdir), engine_log.read_text()
    bad = sweep_file(tmp_path / "bad.py", text=text)
    fails(capsys, sweep_main, bad, workdir, code=2, needle=needle)
    assert_intact(before, workdir)
    assert set(snapshot(workdir)) == set(before)
    assert engine_log.read_text() == calls  # The engine was never started.


def test_point_killed_mid_run_then_rerun_finishes_only_it(engine_log, tmp_path, monkeypatch):
    workdir, good = tmp_path / "sweep", sweep_file(tmp_path / "good.py")
    monkeypatch.setenv("FAKE_KILL", "ViT-mu14_steps2")
    monkeypatch.setenv("FAKE_KILL_ONCE", str(tmp_path / "once"))
    (tmp_path / "once").touch()
    assert sweep_main(good, workdir) == 1
    assert rows(workdir)["ViT-mu14_steps2"]["status"] == "failed"
    assert rows(workdir)["ViT-mu7_steps2"]["status"] == "ok"
    survivor, calls = snapshot(workdir / "ViT-mu7_steps2"), len(engine_log.read_text().split("\n"))
    assert sweep_main(good, workdir) == 0  # The same command again.
    new_calls = engine_log.read_text().split("\n")[calls - 1 : -1]
    assert len(new_calls) == 1 and "ViT-mu14_steps2" in new_calls[0]
    assert_intact(survivor, workdir / "ViT-mu7_steps2")
    assert all(r["status"] == "ok" and r["accuracy"] == 0.75 for r in rows(workdir).values())
