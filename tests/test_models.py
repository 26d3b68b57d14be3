"""The model zoo: registry, parameter names/counts/annotations, forward behaviour of every family.

Big models are only traced (`jax.eval_shape`); forward passes use the tiny 28×28 variants.
"""

import dataclasses
import functools
import multiprocessing
import os
import pathlib
import subprocess
import sys
from concurrent import futures

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from vit_jax import config_lib, flops, models
from vit_jax.models import attention, model_spec, registry, sizes, vit

KEY = jax.random.key(0)
# Tests compile many tiny programs: skipping LLVM's optimisations makes each ~3x cheaper. One jitted
# apply, with the module static, so each (module, shapes) compiles once across tests; parameters
# come from `_params` (no init compile).
_FAST = {"xla_backend_optimization_level": 0}


@functools.partial(jax.jit, static_argnames=("module", "train", "mutable"), compiler_options=_FAST)
def _apply_jit(variables, x, rngs, module, train, mutable):
    return module.apply(variables, x, train=train, rngs=rngs, mutable=mutable)


def _images(batch=2, size=28, channels=1, seed=1):
    # numpy, not jax.random: an eager jax.random call compiles an RNG program (seconds on CPU).
    shape = (batch, size, size, channels)
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _params(module, x, seed=0):
    """Random parameters in `module`'s shapes, without compiling its (RNG-heavy) init.

    Kernels ~ N(0, 1/fan-in), norm scales ~ 1 + N(0, 0.1²), the rest ~ N(0, 0.1²): unlike the real
    init (zero head, zero-scale gn3) every branch and the head carry signal.
    """
    abstract = nn.meta.unbox(jax.eval_shape(lambda x: module.init(KEY, x, train=False), x))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        z = rng.standard_normal(leaf.shape)
        name = path[-1].key
        if name == "kernel":
            z = z / np.sqrt(max(np.prod(leaf.shape[:-1]), 1))
        else:
            z = 0.1 * z + (name == "scale")
        return jnp.asarray(z, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


@functools.partial(jax.jit, static_argnames="module", compiler_options=_FAST)
def _init_head_and_stem(key, x, module):
    """The initial `head` and first conv of `module` (XLA prunes every other initializer)."""
    params = nn.meta.unbox(module.init(key, x, train=False))["params"]
    return params["head"], params["conv_root" if "conv_root" in params else "embedding"]


def _apply(module, variables, x, *, train=False, rngs=None, mutable=False):
    return _apply_jit(variables, x, rngs, module=module, train=train, mutable=mutable)


def _features(module, variables, x, **kw):
    """The logits and the sown pooled pre-logit features."""
    logits, state = _apply(module, variables, x, mutable=("intermediates",), **kw)
    return logits, state["intermediates"]["pre_logits"]["features"][0]


def _abstract(module, size, channels, **apply_kw):
    images = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    return jax.eval_shape(lambda x: module.init_with_output(KEY, x, train=False), images)


def _flat_shapes(variables):
    params = nn.meta.unbox(variables["params"])
    return {"/".join(k): v.shape for k, v in traverse_util.flatten_dict(params).items()}


# --- Registry ---------------------------------------------------------------------------------


REFERENCE_NAMES = {
    "ViT-Ti_16": "Ti/16",
    "ViT-S_16": "S/16",
    "ViT-S_32": "S/32",
    "ViT-B_8": "B/8",
    "ViT-B_16": "B/16",
    "ViT-B_32": "B/32",
    "ViT-L_16": "L/16",
    "ViT-L_32": "L/32",
    "ViT-H_14": "H/14",
    "ViT-g_14": "g/14",
    "ViT-G_14": "G/14",
    "R50+ViT-B_16": "R50+B/16",
    "R26+ViT-S_32": "R26+S/32",
    "R26+ViT-B_32": "R26+B/32",
    "R50+ViT-L_32": "R50+L/32",
    "R+ViT-Ti_16": "Rstem+Ti/32",
    "ViT-B_16-gap-norep": "B/16-gap",
    "R50": "R50x1",
    "R152": "R152x1",
}


def test_aliases_are_their_canonical_models():
    names = models.names()
    assert len(names) == len(set(names))
    for alias, name in REFERENCE_NAMES.items():
        assert alias in names and name in names
        assert models.spec(alias) == models.spec(name)
        assert models.family(alias) == models.family(name)
    assert models.spec("R50+ViT-B_16").resnet.units == (3, 4, 9)
    assert models.spec("ViT-B_16-gap-norep").classifier == "gap"


def test_registry_covers_the_brief():
    names = set(models.names())
    for size in ("mu", "Ti", "S", "M", "B", "L", "H", "g", "G"):
        assert {f"{size}/{p}" for p in (8, 14, 16, 32)} <= names
    for size in ("mu", "Ti", "S", "M", "B"):
        assert {f"{size}/{p}" for p in (2, 4, 7)} <= names
    for depth in (26, 50, 101, 152):
        assert {f"R{depth}x{w}" for w in (1, 2, 3, 4)} | {f"R{depth}"} <= names
    for depth in (11, 14, 20, 26):
        assert {f"R{depth}-w{b}" for b in (8, 16, 32, 64)} <= names
        for base in (8, 16, 32):
            assert {f"R{depth}-w{base}+{s}/4" for s in ("mu", "Ti", "S", "M")} <= names
    assert {"R50+B/16", "R50+B/32", "R50+L/32", "R26+S/32", "R50x2+B/16"} <= names
    assert models.spec("R26-w16").resnet == models.ResNetSpec(
        units=(2, 3, 3), width=16, stem="small"
    )
    assert models.spec("R50x2+B/16").resnet.width == 128
    stem = models.spec("Cstem-w32+XXS/4")
    assert stem.resnet == models.ResNetSpec(units=(), width=32, stem="conv4")
    assert (stem.family, stem.total_stride, stem.patch_size) == ("hybrid", 4, 1)
    stem8 = models.spec("Cstem-w32+XXS/8")
    assert stem8.resnet == models.ResNetSpec(units=(), width=32, stem="conv8")
    assert (stem8.total_stride, stem8.patch_size) == (8, 1)


@pytest.mark.parametrize(
    "name, size, side",
    [
        ("XS/7", 28, 4),
        ("B/16", 384, 24),
        ("Cstem-w32+XXS/4", 28, 7),
        ("Cstem-w32+XXS/8", 28, 4),  # 28 → 14 → 7 → 4: SAME convs round up.
        ("Cstem-w32+XXS/8", 32, 4),
        ("R11-w8", 28, 7),
        ("R50+B/16", 384, 24),
        ("Rstem+Ti/32", 224, 7),
    ],
)
def test_grid_side(name, size, side):
    """The predicted grid is what the built model makes: its position embeddings (or, for a
    ResNet, the logits exist at all) at that input size."""
    spec = models.spec(name)
    assert models.grid_side(spec, size) == side
    module = models.create(name, num_classes=3, scan=spec.family != "resnet" or None)
    (logits, variables) = _abstract(module, size, spec.channels)
    assert logits.shape == (1, 3)
    if spec.family != "resnet":
        posemb = _flat_shapes(variables)["Transformer/posembed_input/pos_embedding"]
        assert posemb == (1, side * side + 1, spec.hidden_size)


def test_grid_side_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"image_size=30 .* patch/stride 7 of model XS/7"):
        models.grid_side(models.spec("XS/7"), 30)
    with pytest.raises(ValueError, match=r"do not tile its 50×50 feature map"):
        models.grid_side(models.spec("Rstem+Ti/32"), 200)


def test_spec_is_frozen_with_the_hyperparameters():
    s = models.spec("B/16")
    assert (s.family, s.hidden_size, s.num_layers, s.mlp_dim, s.num_heads) == (
        "vit",
        768,
        12,
        3072,
        12,
    )
    assert (s.patch_size, s.total_stride, s.classifier, s.posemb) == (16, 16, "token", "learn")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.hidden_size = 1  # Shared by every caller: nobody may change the registry's copy.
    assert models.resolve("B/16", {"scan": True}).scan and not models.spec("B/16").scan
    assert models.spec("R26-w8+mu/4").total_stride == 4
    assert models.spec("R50+B/16").total_stride == 16


def test_overrides_match_the_config_schema():
    keys = set(config_lib.base_config().model) - {"name"}
    assert keys == set(models.OVERRIDE_KEYS)
    defaults = dict(config_lib.base_config().model)
    del defaults["name"]
    for name in ("Ti/16", "R26+S/32", "R50x1", "R20-w8"):
        models.create(name, num_classes=10, **defaults)  # Config defaults work for every family.


def test_a_knob_added_to_the_spec_reaches_config_and_checks():
    """The config's model section and its value checks are read off ModelSpec, not retyped."""
    model = config_lib.base_config().model
    for key, knob in model_spec.KNOBS.items():
        assert model[key] == model_spec.config_default(key)
        if knob.choices and knob.kind is str:
            bad = config_lib.base_config()
            config_lib.override(bad, {f"model.{key}": "no-such-choice"})
            with pytest.raises(config_lib.ConfigError, match=f"config.model.{key}="):
                config_lib.validate(bad)
    assert model.dropout_rate is None  # Per model (L/16: 0.1): None keeps the registry's.
    assert (
        models.create("L/16", num_classes=10, dropout_rate=model.dropout_rate).dropout_rate == 0.1
    )
    # representation_size=-1 (configs/pretrain.py): a pre_logits layer as wide as the model.
    assert models.resolve("Ti/16", {"representation_size": -1}).representation_size == 192
    assert models.resolve("R50x1", {"representation_size": -1}).representation_size is None


def test_models_import_without_ml_collections():
    """The model zoo is plain dataclasses + Flax: no ml_collections (the GPU image lacks it)."""
    script = (
        "import sys; sys.modules['ml_collections'] = None; "
        "from vit_jax import flops, models; "
        "m = models.create('R50+B/16', num_classes=10, scan=True, dtype='bfloat16'); "
        "assert m.scan and m.resnet_units == (3, 4, 9) and m.dropout_rate == 0.1; "
        "print(flops.macs('B/16', image_size=224))"
    )
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=root, env=env, capture_output=True
    )
    assert int(out.stdout) == flops.macs("B/16", image_size=224)


def test_bad_names_and_overrides_raise():
    with pytest.raises(ValueError, match="NoSuch/16"):
        models.create("NoSuch/16", num_classes=10)
    with pytest.raises(ValueError, match="NoSuch"):
        models.spec("NoSuch")
    with pytest.raises(ValueError, match="posembb"):
        models.create("Ti/16", num_classes=10, posembb="learn")
    with pytest.raises(ValueError, match="classifier"):
        models.create("Ti/16", num_classes=10, classifier="cls")
    with pytest.raises(ValueError, match="dtype"):
        models.create("Ti/16", num_classes=10, dtype="int32")
    with pytest.raises(ValueError, match="posemb"):
        models.create("R50x1", num_classes=10, posemb="sincos2d")
    with pytest.raises(ValueError, match="scan"):
        models.create("R20-w8", num_classes=10, scan=True)
    m = models.create("R50x1", num_classes=10, posemb=None, classifier="gap", dtype=jnp.bfloat16)
    assert m.dtype == jnp.bfloat16
    m = models.create("B/16", num_classes=10, classifier=None, param_dtype=jnp.float32)
    assert m.classifier == "token"


# --- Parameters -------------------------------------------------------------------------------

PAPER_COUNTS = {
    "Ti/16": 5_717_416,
    "S/16": 22_050_664,
    "B/16": 86_567_656,
    "B/32": 88_224_232,
    "B/8": 86_576_872,
    "L/16": 304_326_632,
    "L/32": 306_535_400,
    "H/14": 632_045_800,
    "R50+B/16": 98_659_112,
}


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_parameter_counts_at_224(name):
    module = models.create(name, num_classes=1000, scan=True)
    assert sizes.num_params(module, image_size=224) == PAPER_COUNTS[name]


def test_parameter_counts_unrolled_and_small_variants():
    assert sizes.num_params(models.create("Ti/16", num_classes=1000), image_size=224) == 5_717_416
    assert sizes.num_params(models.create("R50", num_classes=1000), image_size=224) == 25_557_032
    small = {
        "mu/4": 15_274,
        "Ti/4": 5_353_738,
        "R20-w16": 220_090,
        "R11-w8+mu/4": 50_658,
        "R20-w16+Ti/4": 5_617_338,
        "Cstem-w32+XXS/4": 215_722,  # 9,632 in the two-conv stem; XXS on 7×7 tokens.
        "Cstem-w32+XXS/8": 303_018,  # 92,896 in the three-conv stem (32, 64, 128); 4×4 tokens.
    }
    for name, count in small.items():
        assert sizes.count(name) == count, name


def test_parameter_names_and_shapes():
    module = models.create("mu/4", num_classes=10, representation_size=16)
    shapes = _flat_shapes(_abstract(module, 28, 1)[1])
    block = "Transformer/encoderblock_0"
    attn = f"{block}/MultiHeadDotProductAttention_0"
    expected = {
        "embedding/kernel": (4, 4, 1, 32),
        "embedding/bias": (32,),
        "cls": (1, 1, 32),
        "Transformer/posembed_input/pos_embedding": (1, 50, 32),
        f"{block}/LayerNorm_0/scale": (32,),
        f"{block}/LayerNorm_0/bias": (32,),
        f"{block}/LayerNorm_1/scale": (32,),
        f"{block}/LayerNorm_1/bias": (32,),
        f"{block}/MlpBlock_0/Dense_0/kernel": (32, 128),
        f"{block}/MlpBlock_0/Dense_0/bias": (128,),
        f"{block}/MlpBlock_0/Dense_1/kernel": (128, 32),
        f"{block}/MlpBlock_0/Dense_1/bias": (32,),
        f"{attn}/out/kernel": (2, 16, 32),
        f"{attn}/out/bias": (32,),
        "Transformer/encoder_norm/scale": (32,),
        "Transformer/encoder_norm/bias": (32,),
        "pre_logits/kernel": (32, 16),
        "pre_logits/bias": (16,),
        "head/kernel": (16, 10),
        "head/bias": (10,),
    }
    for proj in ("query", "key", "value"):
        expected[f"{attn}/{proj}/kernel"] = (32, 2, 16)
        expected[f"{attn}/{proj}/bias"] = (2, 16)
    assert shapes == expected


def test_parameter_names_of_variants():
    hybrid = _flat_shapes(_abstract(models.create("R11-w8+mu/4", num_classes=10), 28, 1)[1])
    assert hybrid["conv_root/kernel"] == (3, 3, 1, 8)
    assert hybrid["gn_root/scale"] == (8,)
    assert hybrid["block2/unit1/conv_proj/kernel"] == (1, 1, 32, 64)
    assert hybrid["block3/unit1/gn3/bias"] == (128,)
    assert hybrid["embedding/kernel"] == (1, 1, 128, 32)
    assert hybrid["Transformer/posembed_input/pos_embedding"] == (1, 50, 32)  # 7×7 + cls
    assert not any(k.endswith("conv1/bias") for k in hybrid)

    bit = _flat_shapes(_abstract(models.create("R26x1", num_classes=10), 32, 3)[1])
    assert bit["conv_root/kernel"] == (7, 7, 3, 64)
    assert bit["block4/unit2/conv3/kernel"] == (1, 1, 512, 2048)
    assert bit["head/kernel"] == (2048, 10)

    pooled = models.create("mu/4", num_classes=10, classifier="map", posemb="sincos2d")
    shapes = _flat_shapes(_abstract(pooled, 28, 1)[1])
    assert shapes["MAPHead_0/probe"] == (1, 1, 32)
    assert shapes["MAPHead_0/MultiHeadDotProductAttention_0/key/kernel"] == (32, 2, 16)
    assert shapes["MAPHead_0/MlpBlock_0/Dense_0/kernel"] == (32, 128)
    assert shapes["MAPHead_0/LayerNorm_0/scale"] == (32,)
    assert not any(k.startswith(("cls", "Transformer/posembed_input")) for k in shapes)

    scanned = _flat_shapes(_abstract(models.create("Ti/7", num_classes=10, scan=True), 28, 1)[1])
    blocks = "Transformer/encoderblock/MultiHeadDotProductAttention_0"
    assert scanned[f"{blocks}/query/kernel"] == (12, 192, 3, 64)
    assert scanned["Transformer/encoderblock/LayerNorm_0/scale"] == (12, 192)
    assert not any("encoderblock_" in k for k in scanned)


LOGICAL = {
    "embed", "mlp", "heads", "kv", "classes", "patch", "posemb", "conv_in", "conv_out", "norm",
    "layers", None,
}  # fmt: skip


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("mu/4", dict(representation_size=16)),
        ("mu/4", dict(classifier="map", scan=True)),
        ("R11-w8+mu/4", {}),
        ("R11-w8", {}),
    ],
)
def test_every_parameter_has_logical_axes(name, overrides):
    variables = _abstract(models.create(name, num_classes=10, **overrides), 28, 1)[1]
    flat = traverse_util.flatten_dict(variables["params"])
    specs = {}
    for path, box in flat.items():
        assert isinstance(box, nn.LogicallyPartitioned), path
        assert len(box.names) == box.value.ndim, path
        assert set(box.names) <= LOGICAL, (path, box.names)
        specs["/".join(path)] = tuple(box.names)
    if "scan" in overrides:
        assert all(names[0] == "layers" for k, names in specs.items() if "encoderblock/" in k)
        attn = "Transformer/encoderblock/MultiHeadDotProductAttention_0"
        assert specs[f"{attn}/query/kernel"] == ("layers", "embed", "heads", "kv")
        assert specs[f"{attn}/out/kernel"] == ("layers", "heads", "kv", "embed")
        assert specs["MAPHead_0/probe"] == (None, None, "embed")
    if name == "mu/4" and "scan" not in overrides:
        block = "Transformer/encoderblock_0"
        assert specs["embedding/kernel"] == ("patch", "patch", "patch", "embed")
        assert specs["Transformer/posembed_input/pos_embedding"] == (None, "posemb", "embed")
        assert specs[f"{block}/MultiHeadDotProductAttention_0/value/bias"] == ("heads", "kv")
        assert specs[f"{block}/MlpBlock_0/Dense_0/kernel"] == ("embed", "mlp")
        assert specs[f"{block}/LayerNorm_1/scale"] == ("embed",)
        assert specs["head/kernel"] == ("embed", "classes")
    if name.startswith("R11"):
        assert specs["block1/unit1/conv2/kernel"] == (None, None, "conv_in", "conv_out")
        assert specs["block1/unit1/gn2/scale"] == ("norm",)


def test_apply_with_boxed_and_unboxed_params_and_under_sharding_rules():
    module = models.create("mu/4", num_classes=10, **FORWARD_CASES[1][1])
    x = _images()
    plain = _params(module, x)
    boxes = jax.eval_shape(lambda x: module.init(KEY, x), x)
    boxed = jax.tree.map(
        lambda box, value: box.replace_boxed(value),
        boxes,
        plain,
        is_leaf=lambda b: isinstance(b, nn.LogicallyPartitioned),
    )
    assert isinstance(boxed["params"]["head"]["kernel"], nn.LogicallyPartitioned)
    out = _features(module, boxed, x)[0]  # No mesh, no rules: the constraints are no-ops.
    np.testing.assert_array_equal(out, _features(module, plain, x)[0])

    auto = (jax.sharding.AxisType.Auto,) * 2  # As vit_jax.sharding: XLA places intermediates.
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=auto, devices=jax.devices()[:4])
    rules = [("batch", "data"), ("mlp", "model"), ("heads", "model"), ("act_mlp", "model")]
    rules += [("conv_out", "model")]
    table_ = dict(rules)  # Not nn.logical_to_mesh_sharding: it rejects ('patch', 'patch', ...).

    def shardings(variables):
        def place(spec):
            spec = jax.sharding.PartitionSpec(*map(table_.get, spec))
            return jax.sharding.NamedSharding(mesh, spec)

        specs = nn.get_partition_spec(variables)
        return jax.tree.map(
            place, specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec)
        )

    placed = jax.device_put(plain, shardings(boxed))
    mlp = placed["params"]["MAPHead_0"]["MlpBlock_0"]["Dense_0"]["kernel"]
    assert mlp.sharding.spec == jax.sharding.PartitionSpec(None, "model")
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        sharded = _features(module, placed, x)[0]
    np.testing.assert_allclose(sharded, out, atol=1e-5)

    hybrid = models.create("R11-w8+mu/4", num_classes=10)
    hybrid_boxed = _abstract(hybrid, 28, 1)[1]
    hybrid_vars = _params(hybrid, _images())
    conv = jax.device_put(hybrid_vars, shardings(hybrid_boxed))
    conv = conv["params"]["block1"]["unit1"]["conv2"]["kernel"]
    assert conv.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "model")


# (name, overrides): every family and pooling, sincos2d, a representation layer, exact GELU.
FORWARD_CASES = [
    ("mu/4", {}),
    ("mu/4", dict(classifier="map", posemb="sincos2d")),
    ("mu/7", dict(classifier="gap", representation_size=24, gelu="exact")),
    ("R11-w8+mu/4", dict(classifier="map", representation_size=16)),
    ("R11-w8", {}),
]


@pytest.mark.parametrize("name,overrides", FORWARD_CASES)
def test_forward_small_variants(name, overrides):
    module = models.create(name, num_classes=10, **overrides)
    x = _images()
    variables = _params(module, x)
    logits, feats = _features(module, variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert np.isfinite(logits).all() and np.std(np.asarray(logits)) > 1e-3
    width = overrides.get("representation_size") or models.spec(name).hidden_size or 128
    assert feats.shape == (2, width) and np.isfinite(feats).all()
    np.testing.assert_array_equal(_features(module, variables, x)[0], logits)

    head, stem = _init_head_and_stem(KEY, x, module=module)  # The real initializers.
    assert all((np.asarray(p) == 0).all() for p in jax.tree.leaves(head))
    zero_head = {"params": variables["params"] | {"head": head}}
    np.testing.assert_array_equal(_features(module, zero_head, x)[0], 0.0)
    again = _init_head_and_stem(KEY, x, module=module)[1]
    other = _init_head_and_stem(jax.random.key(1), x, module=module)[1]
    np.testing.assert_array_equal(again["kernel"], stem["kernel"])  # Seeded.
    assert not np.allclose(other["kernel"], stem["kernel"])


def test_num_classes_zero_returns_the_features():
    x = _images()
    name, overrides = FORWARD_CASES[2]
    module = models.create(name, num_classes=10, **overrides)
    variables = _params(module, x)
    bare = models.create(name, num_classes=None, **overrides)
    params = {k: v for k, v in variables["params"].items() if k != "head"}
    out = _apply(bare, {"params": params}, x)
    assert out.shape == (2, 24) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, _features(module, variables, x)[1], atol=1e-6)


def test_sincos2d_matches_its_definition():
    pe = vit.posemb_sincos2d(2, 3, 8)
    assert pe.shape == (1, 6, 8)
    np.testing.assert_allclose(pe[0, 0], [0, 0, 1, 1, 0, 0, 1, 1])
    # Token 5 is (y=1, x=2); frequencies 1 and 1/10000; layout [sin x, cos x, sin y, cos y].
    expect = [np.sin(2), np.sin(2e-4), np.cos(2), np.cos(2e-4)]
    expect += [np.sin(1), np.sin(1e-4), np.cos(1), np.cos(1e-4)]
    np.testing.assert_allclose(pe[0, 5], expect, rtol=1e-6)


def _tiny_vit(**kw):
    base = dict(num_classes=0, patch_size=7, hidden_size=32, num_layers=2, mlp_dim=64, num_heads=2)
    return vit.VisionTransformer(**(base | kw))


def _restack(params):
    """Unrolled `encoderblock_{i}` → one scanned `encoderblock` with a leading layer axis."""
    params = dict(nn.meta.unbox(params))
    enc = dict(params["Transformer"])
    blocks = sorted((k for k in enc if k.startswith("encoderblock_")), key=lambda k: int(k[13:]))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[enc.pop(k) for k in blocks])
    params["Transformer"] = enc | {"encoderblock": stacked}
    return params


def _tiny_params(x):
    """Unrolled and restacked parameters of `_tiny_vit()`."""
    params = _params(_tiny_vit(), x)["params"]
    return {"params": params}, {"params": _restack(params)}


@functools.partial(jax.jit, static_argnames="module", compiler_options=_FAST)
def _grads(variables, x, module):
    loss = lambda v: jnp.sum(module.apply(v, x) ** 2)  # noqa: E731
    return jax.grad(loss)(variables)["params"]


def test_scan_equals_unrolled():
    x = _images()
    unrolled, restacked = _tiny_params(x)
    scanned = _tiny_vit(scan=True)
    out, state = _apply(_tiny_vit(), unrolled, x, mutable=("attention",))
    out_scan, state_scan = _apply(scanned, restacked, x, mutable=("attention",))
    np.testing.assert_allclose(out_scan, out, atol=1e-5)
    weights = state["attention"]["Transformer"]
    weights = [
        weights[f"encoderblock_{i}"]["MultiHeadDotProductAttention_0"]["weights"][0]
        for i in range(2)
    ]
    scan_weights = state_scan["attention"]["Transformer"]["encoderblock"]
    scan_weights = scan_weights["MultiHeadDotProductAttention_0"]["weights"][0]
    assert scan_weights.shape == (2, 2, 2, 17, 17)  # layers, batch, heads, q, k
    np.testing.assert_allclose(scan_weights, np.stack(weights), atol=1e-6)


@pytest.mark.parametrize("remat_policy", ["full", "dots", "dots_no_batch"])
def test_remat_policies_keep_the_gradients(remat_policy):
    """Same gradients as without remat (scan = unrolled is checked on the forward pass above)."""
    x = _images()
    _, restacked = _tiny_params(x)
    reference = _grads(restacked, x, module=_tiny_vit(scan=True))
    grads = _grads(restacked, x, module=_tiny_vit(scan=True, remat_policy=remat_policy))
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("scan", [False, True])
def test_train_mode_regularisers(scan):
    x = _images()
    variables = _tiny_params(x)[scan]
    module = _tiny_vit(
        scan=scan, dropout_rate=0.1, attention_dropout_rate=0.1, stochastic_depth=0.3
    )
    evaluated = _apply(module, variables, x)
    np.testing.assert_allclose(evaluated, _apply(_tiny_vit(scan=scan), variables, x), atol=1e-6)

    def train(seed):
        return _apply(module, variables, x, train=True, rngs={"dropout": jax.random.key(seed)})

    trained = train(3)
    assert np.isfinite(trained).all()
    assert not np.allclose(trained, evaluated)
    np.testing.assert_array_equal(trained, train(3))
    assert not np.allclose(trained, train(4))


def test_stochastic_depth_is_per_example_and_linear_in_depth():
    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x):
            return vit.drop_path(self, x, 0.5)

    y = Drop().apply({}, jnp.ones((64, 3, 4)), rngs={"dropout": KEY})
    per_example = np.asarray(y).reshape(64, -1)
    assert set(np.unique(per_example)) <= {0.0, 2.0}
    assert (per_example.min(1) == per_example.max(1)).all()  # Whole examples dropped.
    assert 0 < (per_example[:, 0] == 0).sum() < 64
    encoder = vit.Encoder(num_layers=4, mlp_dim=8, num_heads=1, stochastic_depth=0.3)
    np.testing.assert_allclose(encoder._drop_rates(), [0.0, 0.1, 0.2, 0.3])


def _dtypes(tree):
    return {leaf.dtype for leaf in jax.tree.leaves(nn.meta.unbox(tree))}


def test_bfloat16_compute_with_float32_params():
    """The hybrid exercises every layer kind: StdConv, GroupNorm, LayerNorm, attention, MAP head,
    representation layer, Dense."""
    x = _images()
    overrides = FORWARD_CASES[3][1]  # Shares the float32 compile with the forward test.
    module = models.create("R11-w8+mu/4", num_classes=10, dtype="bfloat16", **overrides)
    assert _dtypes(_abstract(module, 28, 1)[1]) == {jnp.dtype(jnp.float32)}
    reference = models.create("R11-w8+mu/4", num_classes=10, **overrides)
    variables = _params(reference, x)  # The same parameters as `module` would create.
    logits, feats = _features(module, variables, x)
    assert logits.dtype == jnp.float32 and feats.dtype == jnp.bfloat16
    assert np.isfinite(np.asarray(feats, np.float32)).all()
    want = _features(reference, variables, x)[1]
    np.testing.assert_allclose(np.asarray(feats, np.float32), want, atol=0.1, rtol=0.1)
    for name in ("R11-w8+mu/4", "R11-w8"):
        half = models.create(name, num_classes=10, dtype="bfloat16", param_dtype="bfloat16")
        assert _dtypes(_abstract(half, 28, 1)[1]) == {jnp.dtype(jnp.bfloat16)}
    half = models.create("mu/4", num_classes=10, dtype="bfloat16", param_dtype="bfloat16")
    half_vars = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _params(half, x))
    assert _apply(half, half_vars, x).dtype == jnp.float32


def test_r50_b16_has_196_patch_tokens_at_224():
    module = models.create("R50+B/16", num_classes=1000, scan=True)
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)

    def run(x):
        variables = module.init(KEY, x)
        return variables, module.apply(variables, x, mutable=["attention"])

    variables, (logits, state) = jax.eval_shape(run, images)
    pe = variables["params"]["Transformer"]["posembed_input"]["pos_embedding"]
    assert pe.value.shape == (1, 197, 768)
    weights = state["attention"]["Transformer"]["encoderblock"]["MultiHeadDotProductAttention_0"]
    assert weights["weights"][0].shape == (12, 1, 12, 197, 197)  # layers, batch, heads, q, k
    assert logits.shape == (1, 1000)


# --- Attention --------------------------------------------------------------------------------


def test_padded_attention_equals_unpadded():
    q, k, v = jnp.asarray(np.random.default_rng(0).standard_normal((3, 2, 197, 4, 8)), jnp.float32)

    @functools.partial(jax.jit, compiler_options=_FAST)
    def three_ways(q, k, v):
        plain = attention.fused_attention(q, k, v)
        padded = attention.fused_attention(q, k, v, implementation="xla", pad_multiple=64)
        explicit = jnp.einsum("bhqk,bkhd->bqhd", attention.attention_weights(q, k), v)
        return plain, padded, explicit

    plain, padded, explicit = three_ways(q, k, v)
    np.testing.assert_allclose(padded, plain, atol=1e-6)
    np.testing.assert_allclose(explicit, plain, atol=1e-5)
    cudnn = attention.MultiHeadDotProductAttention(num_heads=2, implementation="cudnn")
    assert cudnn._pad_multiple() == 64

    x = _images()
    for overrides in FORWARD_CASES[:2]:  # 50 tokens; MAP: one query over 49 keys.
        module = models.create(*overrides[:1], num_classes=10, **overrides[1])
        variables = _params(module, x)
        padded = _features(module.clone(pad_multiple=64), variables, x)[1]
        np.testing.assert_allclose(padded, _features(module, variables, x)[1], atol=1e-5)


def test_attention_maps_are_sown():
    x = _images()
    module = models.create("mu/4", num_classes=10)
    assert set(_abstract(module, 28, 1)[1]) == {"params"}  # init does not store attention maps.
    variables = _params(module, x)
    logits, state = _apply(module, variables, x, mutable=("attention",))
    attn = state["attention"]["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]
    weights = attn["weights"][0]
    assert weights.shape == (2, 2, 50, 50) and weights.dtype == jnp.float32
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert (weights >= 0).all()


# --- Every variant (last: its traces run in a worker process while the tests above run) ------

_BUILD_TEST = "test_every_variant_builds"


@pytest.fixture(scope="module", autouse=True)
def _background_builds(request):
    """`sizes.trace_smallest` of every canonical name, submitted to a worker process up front.

    ~200 traces are ~80 s of Python-bound work (mostly the ResNet trunks); a second core does it
    while this process runs the other tests. Only started when the build test is selected.
    """
    if not any(item.originalname == _BUILD_TEST for item in request.session.items):
        yield {}
        return
    try:
        context = multiprocessing.get_context("spawn")
        pool = futures.ProcessPoolExecutor(1, mp_context=context)
        jobs = {
            name: pool.submit(sizes.trace_smallest, name) for name in registry.canonical_names()
        }
    except OSError:  # No worker processes here: the test traces in this process.
        yield {}
        return
    yield jobs
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("name", registry.canonical_names())
def test_every_variant_builds(name, _background_builds):
    job = _background_builds.get(name)
    try:
        out_shape, num_params = job.result() if job else sizes.trace_smallest(name)
    except futures.process.BrokenProcessPool:
        out_shape, num_params = sizes.trace_smallest(name)
    assert out_shape == (1, 7) and num_params > 0
    assert models.family(name) == models.spec(name).family
