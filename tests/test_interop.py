"""Weights in and out: position-embedding resampling, reference .npz, big_vision, timm, bad files.

Fixtures are generated from our own randomly initialised models (no downloaded weights). timm
tests need the test extra (`pip install -e .[test]`: torch, timm) and are skipped without it.
"""

import importlib.util
import json
import logging
import os
import pathlib
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.ndimage

import vit_jax
from vit_jax import convert, interop, models, posemb
from vit_jax.interop import npz, tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_params(name, *, num_classes, image_size, seed=0, **overrides):
    """(module, flat numpy params) with every leaf random, the head included.

    Drawn with NumPy from the model's shapes: compiling `module.init` of a 12-block model costs
    tens of seconds of XLA time on a small CPU, for nothing a test needs.
    """
    module = models.create(name, num_classes=num_classes, **overrides)
    abstract = interop.abstract_params(module, image_size, models.spec(name).channels)
    rs = np.random.RandomState(seed)
    flat = {}
    for key, leaf in tree.flatten(abstract).items():
        fan_in = int(np.prod(leaf.shape[:-1])) or 1
        value = rs.standard_normal(leaf.shape) / np.sqrt(fan_in)
        flat[key] = (value + (key.endswith("/scale"))).astype(leaf.dtype)
    return module, flat


def images(n=2, size=8, channels=1, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


def apply(module, flat, x):
    return np.asarray(jax.jit(module.apply)({"params": tree.unflatten(flat)}, x))


# --- Position embeddings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "old,new",
    [
        ((7, 7), (12, 12)),
        ((14, 14), (24, 24)),
        ((24, 24), (14, 14)),
        ((3, 3), (1, 1)),
        ((4, 6), (6, 9)),
        ((5, 3), (2, 7)),
    ],
)
@pytest.mark.parametrize("prefix", [0, 1])
def test_resample_equals_scipy_zoom_order1(old, new, prefix):
    rs = np.random.RandomState(0)
    pe = rs.standard_normal((1, prefix + old[0] * old[1], 8)).astype(np.float32)
    out = posemb.resample(pe, new_grid=new, old_grid=old, num_prefix_tokens=prefix)
    zoom = (new[0] / old[0], new[1] / old[1], 1)
    expected = scipy.ndimage.zoom(pe[0, prefix:].reshape(*old, 8), zoom, order=1)
    assert out.shape == (1, prefix + new[0] * new[1], 8) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :prefix], pe[0, :prefix])  # Class-token row as is.
    np.testing.assert_allclose(out[0, prefix:].reshape(*new, 8), expected, atol=1e-6)


def test_resample_same_grid_is_identity_and_non_square_needs_the_grid():
    pe = np.random.RandomState(0).standard_normal((1, 1 + 16, 4)).astype(np.float32)
    np.testing.assert_array_equal(posemb.resample(pe, new_grid=(4, 4)), pe)
    with pytest.raises(ValueError, match="square grid"):
        posemb.resample(pe[:, :13], new_grid=(4, 4))


# --- Original vit_jax .npz (pre-Linen names) ---------------------------------------------------


def reference_logits(w, x, *, num_layers, patch):
    """The reference ViT forward pass in float64 NumPy, reading the *pre-Linen* npz keys."""
    gelu = lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))  # noqa: E731

    def ln(v, name):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * w[name + "/scale"] + w[name + "/bias"]

    b, s = x.shape[0], x.shape[1] // patch
    p = x.reshape(b, s, patch, s, patch, -1).transpose(0, 1, 3, 2, 4, 5).reshape(b, s * s, -1)
    kernel = w["embedding/kernel"].reshape(-1, w["embedding/kernel"].shape[-1])
    t = p @ kernel + w["embedding/bias"]
    t = np.concatenate([np.broadcast_to(w["cls"], (b, 1, t.shape[-1])), t], 1)
    t = t + w["Transformer/posembed_input/pos_embedding"]
    for i in range(num_layers):
        blk = f"Transformer/encoderblock_{i}/"
        att = blk + "MultiHeadDotProductAttention_1/"
        y = ln(t, blk + "LayerNorm_0")
        q, k, v = (
            np.einsum("btd,dhk->bthk", y, w[att + n + "/kernel"]) + w[att + n + "/bias"]
            for n in ("query", "key", "value")
        )
        logits = np.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(q.shape[-1])
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("bhqt,bthk->bqhk", a, v)
        t = t + np.einsum("bqhk,hkd->bqd", o, w[att + "out/kernel"]) + w[att + "out/bias"]
        y = ln(t, blk + "LayerNorm_2")
        mlp = blk + "MlpBlock_3/"
        y = gelu(y @ w[mlp + "Dense_0/kernel"] + w[mlp + "Dense_0/bias"])
        t = t + y @ w[mlp + "Dense_1/kernel"] + w[mlp + "Dense_1/bias"]
    h = ln(t, "Transformer/encoder_norm")[:, 0]
    if "pre_logits/kernel" in w:
        h = np.tanh(h @ w["pre_logits/kernel"] + w["pre_logits/bias"])
    return h @ w["head/kernel"] + w["head/bias"]


@pytest.mark.parametrize("name,representation", [("Ti/4", True), ("mu/4", False)])
def test_reference_npz_gives_reference_logits(tmp_path, name, representation):
    """A 21k-class head, with or without pre_logits, exported with the published pre-Linen names,
    loads (model inferred) and matches an independent forward pass. Ti/4 has 12 blocks, so
    encoderblock_10 must sort after encoderblock_9."""
    width = models.spec(name).hidden_size
    layers = models.spec(name).num_layers
    rep = dict(representation_size=width) if representation else {}
    _, flat = random_params(name, num_classes=21843, image_size=8, **rep)
    path = str(tmp_path / "ViT.npz")
    npz.write(path, npz.from_canonical(flat, pre_linen=True))
    stored = dict(np.load(path, allow_pickle=False))
    last = f"Transformer/encoderblock_{layers - 1}/"
    assert last + "MultiHeadDotProductAttention_1/query/kernel" in stored
    assert last + "MlpBlock_3/Dense_1/bias" in stored and last + "LayerNorm_2/scale" in stored
    assert ("pre_logits/kernel" in stored) == representation
    clf = vit_jax.load(path)
    assert (clf.model_name, clf.num_classes, clf.image_size) == (name, 21843, 8)
    assert clf.spec.representation_size == (width if representation else None)
    x = images(channels=1)  # Ti/4 is a 28×28 grayscale variant.
    expected = reference_logits(
        {k: v.astype(np.float64) for k, v in stored.items()},
        x.astype(np.float64),
        num_layers=layers,
        patch=4,
    )
    got = clf(x)
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
    assert np.abs(expected).max() > 1.0  # A random head: real logits, not zeros.


def test_big_vision_npz_layout_loads_exactly(tmp_path):
    """params/ prefix, scanned blocks, top-level pos_embedding without the class-token row."""
    module, flat = random_params("mu/4", num_classes=5, image_size=16)
    x = images(size=16)
    ours = apply(module, flat, x)
    bv = tree.stack_blocks(flat)
    pe = bv.pop(interop.POSEMB)
    bv["cls"] = bv["cls"] + pe[:, :1]  # big_vision adds no position to the class token.
    bv["pos_embedding"] = pe[:, 1:]
    path = str(tmp_path / "bv.npz")
    npz.write(path, {f"params/{k}": v for k, v in bv.items()} | {"opt/acc": np.zeros(3)})
    np.testing.assert_allclose(vit_jax.load(path)(x), ours, atol=1e-5)


def test_scanned_model_and_other_resolution(tmp_path):
    module, flat = random_params("mu/4", num_classes=5, image_size=16)
    path = str(tmp_path / "w.npz")
    npz.write(path, flat)
    x = images(size=16)
    weights = interop.read(path)
    scanned = models.create("mu/4", num_classes=5, scan=True)
    params = interop.fit(weights.params, interop.abstract_params(scanned, 16, 1), source=path)
    assert params["Transformer"]["encoderblock"]["LayerNorm_0"]["scale"].shape == (1, 32)
    np.testing.assert_allclose(
        scanned.apply({"params": params}, x), apply(module, flat, x), atol=1e-5
    )
    big = vit_jax.load(path, image_size=24)  # 6×6 grid, resampled from 4×4.
    pe = big.params["Transformer"]["posembed_input"]["pos_embedding"]
    np.testing.assert_allclose(pe, posemb.resample(flat[interop.POSEMB], new_grid=(6, 6)))
    assert big(big.preprocess(np.zeros((1, 30, 30, 1), np.uint8))).shape == (1, 5)
    assert vit_jax.load(path, num_classes=0)(x).shape == (2, 32)  # Head dropped: features.


def test_hybrid_npz_with_pre_linen_group_norm(tmp_path):
    """ResNet + ViT: pre-Linen GroupNorm params (1, 1, 1, C); the trunk is read from the names."""
    module, flat = random_params("R11-w8+mu/4", num_classes=5, image_size=28)
    path = _save(tmp_path / "hybrid.npz", npz.from_canonical(flat, pre_linen=True))
    assert np.load(path)["block1/unit1/gn1/scale"].shape == (1, 1, 1, 8)
    clf = vit_jax.load(path)
    x = images(size=28)
    assert clf.model_name == "R11-w8+mu/4" and clf.image_size == 28
    np.testing.assert_allclose(clf(x), apply(module, flat, x), atol=1e-5)


def test_preprocess_matches_the_eval_pipeline(tmp_path):
    from vit_jax.data import preprocess

    _, flat = random_params("mu/4", num_classes=5, image_size=16)
    clf = vit_jax.load(_save(tmp_path / "w.npz", flat))
    pixels = np.random.RandomState(0).randint(0, 256, (3, 21, 27, 1)).astype(np.uint8)
    expected = preprocess.eval_batch(pixels, 16).numpy()
    np.testing.assert_allclose(clf.preprocess(pixels), expected, atol=1e-4)
    rgb = np.repeat(pixels, 3, -1)
    np.testing.assert_allclose(clf.preprocess(rgb[0]), expected[:1], atol=1e-4)


# --- timm ----------------------------------------------------------------------------------------
# torch runs in a subprocess without TensorFlow: importing torch (its triton) after TensorFlow in
# one process can segfault, and other test files import TensorFlow first.

POOLS = ("token", "avg", "map")
# GELU form → (our model, image size, channels) exported to timm. Exact: timm's own
# vit_tiny_patch16_224; tanh: a VisionTransformer built from the export's `timm_kwargs`.
EXPORTS = {"exact": ("Ti/16", 32, 3), "tanh": ("mu/4", 16, 1)}
GELUS = tuple(EXPORTS)


def timm_worker(directory):
    """In a fresh process: make timm models' state dicts and logits; load our exports strictly."""
    import timm
    import torch
    from safetensors.torch import load_file, save_file
    from timm.models.vision_transformer import VisionTransformer

    d = pathlib.Path(directory)
    inputs = np.load(d / "inputs.npz")
    out = {}

    def logits(model, x):
        with torch.no_grad():
            return model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()

    for pool in POOLS:
        torch.manual_seed(0)
        t = VisionTransformer(
            img_size=16,
            patch_size=4,
            num_classes=5,
            embed_dim=32,
            depth=1,
            num_heads=2,
            mlp_ratio=4,
            class_token=pool == "token",
            global_pool=pool,
            fc_norm=False,
        )
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.2 * torch.randn_like(p))
        save_file({k: v.contiguous() for k, v in t.state_dict().items()}, d / f"{pool}.safetensors")
        out[pool] = logits(t, inputs["timm"])
    for gelu in GELUS:
        path = d / f"ours_{gelu}.safetensors"
        if gelu == "exact":  # timm's own definition of the model, as published.
            t = timm.create_model(
                "vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=7
            )
        else:
            t = VisionTransformer(**json.loads((d / "kwargs.json").read_text()))
        t.load_state_dict(load_file(path), strict=True)
        out[gelu] = logits(t, inputs[gelu])
    np.savez(d / "timm_out.npz", **out)


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory):
    """Our exports (exact and tanh GELU) → timm; timm's models → state dicts and logits."""
    if importlib.util.find_spec("timm") is None:  # Not imported here: see above.
        pytest.skip("timm is not installed (pip install -e .[test])")
    d = tmp_path_factory.mktemp("timm")
    inputs = {"timm": images(3, size=16, channels=3)}
    ours = {}
    for gelu, (name, size, channels) in EXPORTS.items():
        module, flat = random_params(name, num_classes=7, image_size=size, gelu=gelu)
        weights = interop.read(_save(d / f"ours_{gelu}.npz", flat), model=name)
        weights.overrides["gelu"] = gelu
        convert.export(weights, str(d / f"ours_{gelu}.safetensors"), to="timm")
        inputs[gelu] = images(2, size=size, channels=channels, seed=1)
        ours[gelu] = apply(module, flat, inputs[gelu])
    np.savez(d / "inputs.npz", **inputs)
    meta = interop.timm.read(str(d / "ours_tanh.safetensors"))[1]
    (d / "kwargs.json").write_text(json.dumps(meta["timm_kwargs"]))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, __file__, "timm-worker", str(d)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return d, inputs["timm"], ours, dict(np.load(d / "timm_out.npz"))


@pytest.mark.parametrize("pool", POOLS)
def test_timm_state_dict_gives_timm_logits(timm_run, pool):
    d, small, _, timm_out = timm_run
    clf = vit_jax.load(str(d / f"{pool}.safetensors"))  # mu/4 inferred; exact GELU, as timm.
    assert clf.model_name == "mu/4" and clf.spec.gelu == "exact"
    expected = timm_out[pool]
    np.testing.assert_allclose(clf(small), expected, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("gelu", GELUS)
def test_export_to_timm_loads_strictly_and_gives_our_logits(timm_run, gelu):
    d, _, ours, timm_out = timm_run
    np.testing.assert_allclose(timm_out[gelu], ours[gelu], atol=1e-4 * np.abs(ours[gelu]).max())
    assert vit_jax.load(str(d / f"ours_{gelu}.safetensors")).spec.gelu == gelu  # In metadata.


# --- Bad input -----------------------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (open, (os.environ["VIT_JAX_PICKLE_MARKER"], "w"))


def test_pickles_are_refused_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    monkeypatch.setenv("VIT_JAX_PICKLE_MARKER", str(marker))
    for name in ("model.pth", "model.pt", "pytorch_model.bin", "model.ckpt"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(_Evil()))
        with pytest.raises(ValueError, match=f"{name}: pickle-based .* refused") as e:
            vit_jax.load(str(path))
        assert "\n" not in str(e.value)
    bad = tmp_path / "objects.npz"
    np.savez(bad, **{"embedding/kernel": np.array([_Evil()], dtype=object)})
    with pytest.raises(ValueError, match="objects.npz: key 'embedding/kernel' holds pickled"):
        vit_jax.load(str(bad))
    assert not marker.exists()


def test_bad_files_give_one_line_naming_file_and_key(tmp_path):
    _, flat = random_params("mu/4", num_classes=5, image_size=16)
    good = str(tmp_path / "good.npz")
    npz.write(good, flat)
    truncated = tmp_path / "truncated.npz"
    data = open(good, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    cases = {
        str(truncated): "truncated.npz",
        str(tmp_path / "missing.npz"): "missing.npz: file not found",
        _touch(tmp_path / "weights.msgpack"): "weights.msgpack: unsupported weights",
        str(tmp_path / "no_such_run"): "no_such_run: not found",
    }
    short = str(tmp_path / "short.safetensors")
    open(short, "wb").write(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    cases[short] = "short.safetensors: not a readable .safetensors"
    ln = "Transformer/encoderblock_0/LayerNorm_1/scale"
    no_ln = _save(tmp_path / "no_ln.npz", {k: v for k, v in flat.items() if k != ln})
    cases[no_ln] = f"no_ln.npz: missing key {ln!r}"
    for path, message in cases.items():
        with pytest.raises((ValueError, FileNotFoundError)) as e:
            vit_jax.load(path, model="mu/4")
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    want = r"good.npz: key 'Transformer/encoder_norm/bias' has shape \(32,\), the model wants"
    with pytest.raises(ValueError, match=want):
        vit_jax.load(good, model="Ti/4")


def _touch(path):
    path.write_bytes(b"\x82\xa1a")
    return str(path)


def _save(path, flat):
    npz.write(str(path), flat)
    return str(path)


# --- Conversion CLI and the public face ---------------------------------------------------------


def test_convert_round_trip_and_never_overwrites(tmp_path):
    _, flat = random_params("mu/4", num_classes=5, image_size=16, representation_size=32)
    src = _save(tmp_path / "src.npz", npz.from_canonical(flat, pre_linen=True))
    orbax_dir, npz_out = str(tmp_path / "orbax"), str(tmp_path / "back.npz")
    assert convert.main([src, orbax_dir]) == 0
    assert convert.main([orbax_dir, npz_out]) == 0
    back = dict(np.load(npz_out))
    assert back.keys() == flat.keys()
    for k in flat:
        np.testing.assert_array_equal(back[k], flat[k])
    before = open(npz_out, "rb").read()
    cli = [sys.executable, "-m", "vit_jax.convert", orbax_dir, npz_out, "--pre_linen"]
    out = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "exists; pass --overwrite" in out.stderr and open(npz_out, "rb").read() == before
    assert convert.main([orbax_dir, npz_out, "--pre_linen", "--overwrite"]) == 0
    assert "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel" in np.load(npz_out).files
    assert sorted(os.listdir(tmp_path)) == ["back.npz", "orbax", "src.npz"]  # No leftovers.


def test_fit_drops_only_the_parts_a_model_may_leave_out(caplog):
    """One rule (interop.fitter) for head, pre_logits and class token, whoever calls fit."""
    _, flat = random_params("mu/4", num_classes=5, image_size=16, representation_size=8)
    gap = models.create("mu/4", num_classes=None, classifier="gap")  # No head, pre_logits, cls.
    abstract = interop.abstract_params(gap, 16, 1)
    with caplog.at_level(logging.INFO):
        params = tree.flatten(interop.fit(flat, abstract, source="w.npz"))
    assert set(params) == set(tree.flatten(abstract))
    pe = flat[interop.POSEMB]
    np.testing.assert_array_equal(params[interop.POSEMB], pe[:, 1:])  # The cls row goes too.
    for note in ("head dropped", "pre_logits dropped", "class token dropped"):
        assert note in caplog.text
    new_head = interop.fit(
        flat,
        interop.abstract_params(models.create("mu/4", num_classes=3, representation_size=8), 16, 1),
        source="w.npz",
        fresh=(r"^head/",),
    )
    assert not np.any(new_head["head"]["kernel"]) and new_head["head"]["kernel"].shape == (8, 3)
    with pytest.raises(ValueError, match=r"w.npz: unexpected key 'extra/kernel'"):
        interop.fit(flat | {"extra/kernel": pe}, abstract, source="w.npz")


def test_import_is_cheap_and_loading_an_npz_needs_no_tensorflow(tmp_path):
    _, flat = random_params("mu/4", num_classes=5, image_size=16)
    path = _save(tmp_path / "w.npz", flat)
    code = (
        "import sys, vit_jax\n"
        "print([m for m in ('jax', 'tensorflow', 'flax') if m in sys.modules])\n"
        f"c = vit_jax.load({path!r})\n"
        "print(c.num_classes, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["[]", "5 False"]


if __name__ == "__main__" and sys.argv[1] == "timm-worker":
    timm_worker(sys.argv[2])
