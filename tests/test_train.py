"""Training engine: sharding strategies agree, accumulation, eval coverage, errors, learning."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vit_jax import config_lib, models, optim, sharding, steps, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def small_config(**overrides):
    c = config_lib.base_config()
    c.model.name = "mu/4"
    c.batch_size = 16
    c.optim.warmup_steps = 0
    c.data.image_size = 16
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def one_step(c, strategy, mesh_axes, batch, devices=None):
    mesh = sharding.make_mesh(mesh_axes, devices=devices)
    rules = sharding.rules_for(strategy, mesh)
    model = train.build_model(c, num_classes=10)
    with jax.set_mesh(mesh):
        placed, step = steps.setup(model, c, mesh=mesh, input_shape=(1, 16, 16, 1), rules=rules)
        state = placed.init(jax.random.key(0))
        state, metrics = step(state, sharding.to_global(batch, mesh), jax.random.key(1))
    return state, metrics


def random_batch(n=16, size=16, seed=0):
    rs = np.random.RandomState(seed)
    return {
        "image": rs.uniform(-1, 1, (n, size, size, 1)).astype(np.float32),
        "label": rs.randint(0, 10, n).astype(np.int32),
    }


@pytest.mark.parametrize(
    "strategy,mesh_axes",
    [
        ("dp", (("data", 8), ("model", 1))),
        ("fsdp", (("data", 8), ("model", 1))),
        ("tp", (("data", 2), ("model", 4))),
        ("fsdp_tp", (("data", 2), ("model", 4))),
    ],
)
def test_strategies_equal_single_device_step(strategy, mesh_axes):
    c, batch = small_config(), random_batch()
    ref, ref_metrics = one_step(c, "dp", (("data", 1), ("model", 1)), batch, jax.devices()[:1])
    got, metrics = one_step(c, strategy, mesh_axes, batch)
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], atol=1e-5)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(ref.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    mlp = got.params["Transformer"]["encoderblock_0"]["MlpBlock_0"]["Dense_0"]["kernel"]
    expected = {"dp": P(None, None), "fsdp": P("data", None), "tp": P(None, "model")}
    assert mlp.sharding.spec == expected.get(strategy, P("data", "model"))
    mu = got.opt_state[1].mu["Transformer"]["encoderblock_0"]["MlpBlock_0"]["Dense_0"]["kernel"]
    assert mu.sharding.spec == mlp.sharding.spec  # Adam moments live where the weights live.


@pytest.mark.parametrize("strategy", ["dp", "fsdp", "tp", "fsdp_tp"])
def test_placement_of_a_big_model_is_as_configured(strategy):
    """B/16 (abstract, no memory): every weight lands where the strategy's rules say."""
    mesh = sharding.make_mesh((("data", 2), ("model", 4)))
    model = models.create("B/16", num_classes=1000)
    c = config_lib.base_config()
    tx_fn = lambda p: optim.make(c.optim, total_steps=10, params=p)  # noqa: E731
    placed = steps.place_state(
        model,
        tx_fn,
        input_shape=(1, 224, 224, 3),
        mesh=mesh,
        rules=sharding.rules_for(strategy, mesh),
    )
    block = placed.shardings.params["Transformer"]["encoderblock_0"]
    data = "data" if "fsdp" in strategy else None
    model_axis = "model" if "tp" in strategy else None
    assert block["MlpBlock_0"]["Dense_0"]["kernel"].spec == P(data, model_axis)
    assert block["MlpBlock_0"]["Dense_1"]["kernel"].spec == P(model_axis, data)
    q = block["MultiHeadDotProductAttention_0"]["query"]["kernel"].spec
    assert q == P(data, model_axis, None)
    opt = jax.tree.leaves(placed.shardings.opt_state)
    assert sum(s.spec != P() for s in opt) >= (0 if strategy == "dp" else 2 * 12 * 4)


def test_gradient_accumulation_equals_one_big_batch():
    batch = random_batch(n=32)
    big, m1 = one_step(small_config(batch_size=32), "dp", (("data", 8),), batch)
    acc, m4 = one_step(small_config(batch_size=32, grad_accum_steps=4), "dp", (("data", 8),), batch)
    np.testing.assert_allclose(m4["loss"], m1["loss"], atol=1e-5)
    for a, b in zip(jax.tree.leaves(acc.params), jax.tree.leaves(big.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def write_folder(root, n_per_class=(13, 12, 12), size=16, split="train", seed=0):
    rs = np.random.RandomState(seed)
    for label, n in enumerate(n_per_class):
        folder = root / split / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((size, size, 3), 60 * label, np.uint8) + rs.randint(
                0, 40, (size, size, 3)
            )
            tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(img.astype(np.uint8)))
    return root


def test_eval_counts_every_example_once(tmp_path):
    """37 images, batch 16 over 8 devices: neither divides; every example counted once."""
    root = write_folder(tmp_path, split="test")
    write_folder(tmp_path, split="train")
    c = small_config()
    c.data.source, c.data.root, c.data.augment = "folder", str(root), "resize"
    mesh = sharding.make_mesh(c.mesh)
    model = train.build_model(c, num_classes=3)
    variables = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    params = jax.tree.map(lambda x: x + 0.01, variables["params"])  # Non-zero head: real logits.
    params = jax.tree.map(np.asarray, params)
    with jax.set_mesh(mesh):
        shardings = jax.tree.map(lambda _: NamedSharding(mesh, P()), params)
        eval_step = steps.make_eval_step(
            model, mesh=mesh, param_shardings=shardings, loss_kind="softmax_xent"
        )
        result = train.evaluate(c, eval_step, params, mesh)
    assert result["eval_examples"] == 37
    from vit_jax import data

    images, labels = [], []
    for b in data.eval_iterator(c.data, global_batch_size=16):
        images.append(b["image"][b["mask"]])
        labels.append(b["label"][b["mask"]])
    logits = np.asarray(model.apply({"params": params}, np.concatenate(images)))
    # The eval step is another program (jitted, sharded, batches of 16), so its logits differ
    # from these by rounding: an example whose label logit is within `tol` of the best other
    # logit may go either way, every other one must be counted the same.
    labels = np.concatenate(labels)
    own = logits[np.arange(len(labels)), labels]
    margin = own - np.max(
        np.where(np.eye(logits.shape[-1], dtype=bool)[labels], -np.inf, logits), axis=-1
    )
    tol = 1e-4 * max(1.0, float(np.abs(logits).max()))
    sure, possible = np.mean(margin > tol), np.mean(margin > -tol)
    assert sure - 1e-6 <= result["accuracy"] <= possible + 1e-6, (result, sure, possible)


def test_one_line_errors(tmp_path):
    c = small_config(batch_size=12)  # 8 devices on the data axis.
    with pytest.raises(config_lib.ConfigError, match="batch_size=12 is not divisible"):
        train.train_and_evaluate(c, str(tmp_path / "a"))
    c = small_config(**{"data.image_size": 30})  # patch 4.
    with pytest.raises(config_lib.ConfigError, match="image_size=30 is not divisible"):
        train.train_and_evaluate(c, str(tmp_path / "b"))
    c = small_config(**{"data.name": "no_such_dataset_xyz"})
    with pytest.raises((ValueError, FileNotFoundError), match="no_such_dataset_xyz"):
        train.train_and_evaluate(c, str(tmp_path / "c"))


def test_cli_error_is_one_line(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "vit_jax.main",
        "--config=configs/fashion_mnist.py",
        f"--workdir={tmp_path}",
        "--config.batch_size=12",
        "--config.total_steps=2",  # 8 fake devices (conftest's XLA_FLAGS) on the data axis.
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "batch_size=12" in lines[0], out.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    root = write_folder(tmp_path / "data", n_per_class=(20, 20, 20))
    write_folder(tmp_path / "data", split="test")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    worker = [sys.executable, str(ROOT / "tests" / "mp_worker.py")]
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            worker + ["multi", str(tmp_path / "multi.npz"), str(root), port, str(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    single = subprocess.run(
        worker + ["single", str(tmp_path / "single.npz"), str(root)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert single.returncode == 0, single.stderr[-3000:]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    a, b = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 5
    # The attention key bias's gradient is exactly zero (q·b_k is the same for every key, and
    # softmax ignores a constant), so each run's key bias is Adam's normalised rounding noise,
    # which differs between layouts: it is only bounded by Adam's step, lr·(1-β1)/√(1-β2).
    o = config_lib.base_config().optim
    noise = 3 * o.lr * (1 - o.b1) / np.sqrt(1 - o.b2)  # 3 steps: mp_worker.STEPS.
    for k in a.files:
        if k.endswith("/key/bias"):
            assert max(np.abs(a[k]).max(), np.abs(b[k]).max()) <= noise, k
            continue
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
