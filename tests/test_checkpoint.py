"""Checkpoints: retention, restore onto other meshes / devices / process counts, unreadable steps
skipped, and exact resume of `python -m vit_jax.main` after SIGKILL (also mid-save).

Also a worker: `python tests/test_checkpoint.py worker DIR PORT PROC` is one of two processes
writing an FSDP checkpoint together.
"""

import atexit
import glob
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vit_jax
from vit_jax import checkpoint, config_lib, models, optim, sharding, steps

ROOT = pathlib.Path(__file__).resolve().parents[1]


def placed_state(strategy, mesh_axes, *, devices=None, num_classes=3):
    """(Placed, state): abstract train state of mu/4 on a mesh, and a state with known values.

    The values are NumPy draws put shard by shard (make_array_from_callback), so they do not
    depend on the mesh or the process count and no init function is compiled.
    """
    c = config_lib.base_config()
    mesh = sharding.make_mesh(mesh_axes, devices=devices)
    model = models.create("mu/4", num_classes=num_classes)
    tx_fn = lambda p: optim.make(c.optim, total_steps=10, params=p)  # noqa: E731
    with jax.set_mesh(mesh):
        placed = steps.place_state(
            model,
            tx_fn,
            input_shape=(1, 16, 16, 1),
            mesh=mesh,
            rules=sharding.rules_for(strategy, mesh),
        )
    rs = np.random.RandomState(0)
    host = jax.tree.map(lambda a: rs.standard_normal(a.shape).astype(a.dtype), placed.abstract)
    state = jax.tree.map(
        lambda h, a: jax.make_array_from_callback(h.shape, a.sharding, lambda i: h[i]),
        host,
        placed.abstract,
    )
    return placed, state


def assert_same(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 5
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def fsdp8():
    return placed_state("fsdp", (("data", 8),))


def test_keeps_last_k_and_every_mth_for_good(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, keep_every=4)
    for step in range(1, 11):
        ckpt.save(step, {"step": jnp.asarray(step), "x": jnp.full((4,), step, jnp.float32)})
    ckpt.close()
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, keep_every=4)
    assert ckpt.all_steps() == [4, 8, 9, 10] and ckpt.latest_step() == 10
    target = {
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "x": jax.ShapeDtypeStruct((4,), jnp.float32),
    }
    assert float(ckpt.restore(target, step=8)["x"][0]) == 8.0
    ckpt.close()


def test_fsdp_checkpoint_restores_onto_tp_mesh_and_one_device(tmp_path, fsdp8):
    _, state = fsdp8
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(5, state)
    ckpt.close()
    for strategy, axes, devices in [
        ("tp", (("data", 2), ("model", 4)), None),
        ("dp", (("data", 1),), jax.devices()[:1]),
    ]:
        placed, _ = placed_state(strategy, axes, devices=devices)
        ckpt = checkpoint.Checkpointer(str(tmp_path))
        restored = ckpt.restore(placed.abstract)
        ckpt.close()
        assert_same(restored, state)
        pairs = zip(jax.tree.leaves(restored), jax.tree.leaves(placed.shardings), strict=True)
        for leaf, want in pairs:
            assert leaf.sharding == want
    host = checkpoint.load_params(str(tmp_path))  # Params alone, as host numpy.
    assert isinstance(host["head"]["kernel"], np.ndarray)
    assert_same(host, state.params)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_checkpoint_of_two_processes_restores_on_one_device(tmp_path, fsdp8):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", str(tmp_path), port, str(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    placed, _ = placed_state("dp", (("data", 1),), devices=jax.devices()[:1])
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    assert_same(ckpt.restore(placed.abstract), fsdp8[1])
    ckpt.close()


def _worker(directory, port, proc):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(proc))
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    _, state = placed_state("fsdp", (("data", 8),))
    ckpt = checkpoint.Checkpointer(directory)
    ckpt.save(1, state)
    ckpt.close()


def _truncate_data(step_dir):
    for f in glob.glob(f"{step_dir}/default/d/*"):
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)


def _drop_metadata(step_dir):
    os.remove(f"{step_dir}/default/_METADATA")


@pytest.mark.parametrize("damage", [_truncate_data, _drop_metadata])
def test_unreadable_step_is_skipped_and_moved_aside(tmp_path, fsdp8, caplog, damage):
    placed, state = fsdp8
    directory = tmp_path / "checkpoints"
    ckpt = checkpoint.Checkpointer(str(directory))
    ckpt.save(3, state)
    ckpt.save(6, state.replace(step=state.step + 6))
    ckpt.close()
    damage(directory / "6")
    with pytest.raises(ValueError, match="step 6: (unreadable|no metadata)"):
        checkpoint.load_params(str(directory / "6"))  # That step alone: an error.
    assert_same(checkpoint.load_params(str(tmp_path)), state.params)  # Read-only: skips it.
    assert not (tmp_path / "checkpoints.corrupt").exists()
    ckpt = checkpoint.Checkpointer(str(directory))
    with caplog.at_level(logging.WARNING):
        restored = ckpt.restore(placed.abstract)
    assert int(restored.step) == int(state.step) and "step 6" in caplog.text
    assert ckpt.all_steps() == [3]
    assert os.listdir(tmp_path / "checkpoints.corrupt")[0].startswith("6-")
    ckpt.save(6, restored)  # The step can be written again.
    ckpt.close()


def test_config_mismatch_names_the_key_and_keeps_the_checkpoint(tmp_path, fsdp8):
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(2, fsdp8[1])
    ckpt.close()
    other, _ = placed_state("fsdp", (("data", 8),), num_classes=4)
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match=r"step 2: key '.*head/bias' has shape \(3,\), the model"):
        ckpt.restore(other.abstract)
    assert ckpt.all_steps() == [2] and not (tmp_path / "ckpt.corrupt").exists()
    ckpt.close()


# --- Exact resume of real runs killed with SIGKILL ----------------------------------------------

_HANG = """
import os, time
hang = os.environ.get("VIT_JAX_TEST_HANG", "")
mark = os.environ.get("VIT_JAX_TEST_MARK", "")
if hang.startswith("commit:"):  # Hold the async commit (rename) of one step forever.
    import asyncio
    from orbax.checkpoint._src.path import atomicity
    cls = atomicity.AtomicRenameTemporaryPath
    original = cls.finalize
    async def finalize(self):
        if self.get_final().name == hang[7:]:
            open(mark, "w").close()
            await asyncio.sleep(3600)
        return await original(self)
    cls.finalize = finalize
elif hang.startswith("batch:"):  # Block the input before batch k (training waits for it).
    from vit_jax import data
    original_iterator = data.train_iterator
    def train_iterator(*args, start_step=0, **kwargs):
        batches = original_iterator(*args, start_step=start_step, **kwargs)
        for i, batch in enumerate(batches, start_step):
            if i + 1 == int(hang[6:]):
                open(mark, "w").close()
                time.sleep(3600)
            yield batch
    data.train_iterator = train_iterator
"""


def write_folder(root, n_per_class, split, seed, size=16):
    """Grayscale PNGs root/split/class{i}/{j}.png, each class a different brightness."""
    import tensorflow as tf

    rs = np.random.RandomState(seed)
    for label, n in enumerate(n_per_class):
        folder = root / split / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = 60 * label + rs.randint(0, 40, (size, size, 1))
            tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(img.astype(np.uint8)))
    return root


_SHARED: dict = {}


def _shared_dir() -> pathlib.Path:
    if "dir" not in _SHARED:
        _SHARED["dir"] = pathlib.Path(tempfile.mkdtemp(prefix="vit_jax_tiny_run_"))
        atexit.register(shutil.rmtree, _SHARED["dir"], ignore_errors=True)
    return _SHARED["dir"]


def tiny_data() -> str:
    """Three classes of 16×16 grayscale images (48 train, 9 test); made once per session."""
    root = _shared_dir() / "data"
    if not root.exists():
        write_folder(root, (16, 16, 16), "train", 0)
        write_folder(root, (3, 3, 3), "test", 1)
    return str(root)


def tiny_run() -> pathlib.Path:
    """The workdir of one finished `python -m vit_jax.main` run of `main_command` (8 steps of
    mu/4 with a representation layer), made once per session: the uninterrupted reference of
    the SIGKILL test, the pre-trained model of the fine-tuning test and the notebook's checkpoint.
    """
    workdir = _shared_dir() / "run"
    if not (workdir / "checkpoints" / "8").exists():
        out = start(main_command(workdir, tiny_data()), _shared_dir()).communicate(timeout=600)[0]
        assert "Done:" in out, out[-3000:]
    return workdir


def main_command(workdir, root, total_steps=8):
    flags = {
        "model.name": "mu/4",
        "data.source": "folder",
        "data.root": root,
        "data.image_size": 16,
        "data.augment": "pad_crop",
        "batch_size": 16,
        "total_steps": total_steps,
        "checkpoint_every": 2,
        "eval_every": 0,
        "log_every": 1,
        "progress_bar": False,
        "optim.warmup_steps": 0,
        "model.representation_size": -1,
        "mesh": "(('data', 1),)",
    }
    return [
        sys.executable,
        "-m",
        "vit_jax.main",
        "--config=configs/fashion_mnist.py",
        f"--workdir={workdir}",
    ] + [f"--config.{k}={v}" for k, v in flags.items()]


def start(cmd, tmp_path, hang=""):
    env = dict(os.environ, VIT_JAX_TEST_HANG=hang, VIT_JAX_TEST_MARK=str(tmp_path / "mark"))
    env.pop("XLA_FLAGS", None)  # One device: compiles fastest (meshes are tested above).
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(ROOT)])
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def kill_when_hung(proc, tmp_path, ready=lambda: True, timeout=300):
    """SIGKILL once the run hangs where VIT_JAX_TEST_HANG says and `ready()` holds."""
    mark = tmp_path / "mark"
    deadline = time.time() + timeout
    while not (mark.exists() and ready()):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "the run never reached the hang point"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mark.unlink()


def final_state(workdir):
    ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
    restored = ckpt._manager.restore(ckpt.latest_step())  # Raw: numpy trees as stored.
    ckpt.close()
    return restored


def test_sigkill_then_same_command_resumes_exactly(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_HANG)
    # Killed while the async save of step 4 is in flight (committed: step 2).
    run = main_command(tmp_path / "b", tiny_data())
    interrupted = start(run, tmp_path, hang="commit:4")
    straight = tiny_run()  # Meanwhile, the same run uninterrupted.
    kill_when_hung(interrupted, tmp_path)
    ckpts = tmp_path / "b" / "checkpoints"
    assert "2" in os.listdir(ckpts) and "4" not in os.listdir(ckpts)
    assert any("tmp" in name for name in os.listdir(ckpts))  # The half-written step 4.
    # Same command: resumes at 2; killed again waiting for batch 7 (between saves).
    committed = lambda: "6" in os.listdir(ckpts) and not any("tmp" in n for n in os.listdir(ckpts))  # noqa: E731
    kill_when_hung(start(run, tmp_path, hang="batch:7"), tmp_path, ready=committed)
    assert checkpoint.Checkpointer(str(ckpts)).latest_step() == 6
    out = start(run, tmp_path).communicate(timeout=300)[0]
    assert "Done:" in out, out[-3000:]
    assert not any("tmp" in name for name in os.listdir(ckpts))
    assert_same(final_state(tmp_path / "b"), final_state(straight))
    rows = [json.loads(x) for x in open(tmp_path / "b" / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["kind"] == "train"][-2:] == [7, 8]
    clf = vit_jax.load(str(ckpts / "8"))  # A step folder: config.json is two levels up.
    assert clf.class_names == ("class0", "class1", "class2") and clf.image_size == 16
    x = np.zeros((1, 16, 16, 1), np.float32)
    np.testing.assert_array_equal(clf(x), vit_jax.load(str(straight))(x))


if __name__ == "__main__" and sys.argv[1] == "worker":
    _worker(*sys.argv[2:5])
