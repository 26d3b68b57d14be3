"""Analytic MACs against the paper's numbers and against XLA's own count; the README table."""

import jax.numpy as jnp
import pytest

from vit_jax import flops, model_table, models
from vit_jax.models import sizes


def test_vit_b16_at_224_is_17_56_gmacs():
    assert abs(flops.macs("B/16", image_size=224) / 1e9 - 17.56) < 0.01
    assert flops.macs("ViT-B_16", image_size=224) == flops.macs("B/16", image_size=224)


def test_resnet50_matches_the_usual_count():
    # 4.09 GMACs is the standard ResNet-50 figure (every tap of every conv, padding included).
    assert abs(flops.macs("R50x1", image_size=224) / 1e9 - 4.09) < 0.005
    assert flops.macs("R50", image_size=224, count_padding=False) < flops.macs(
        "R50", image_size=224
    )
    assert flops.macs("B/16", image_size=224, count_padding=False) == flops.macs(
        "B/16", image_size=224
    )


def test_macs_follow_the_overrides():
    d, mlp, n = 768, 3072, 196
    base = flops.macs("B/16", image_size=224)
    gap = flops.macs("B/16", image_size=224, classifier="gap")
    per_token = 12 * (4 * d * d + 2 * d * mlp)  # projections + MLP, per token over 12 blocks
    attention = 12 * 2 * d * ((n + 1) ** 2 - n**2)  # QKᵀ and AV
    assert base - gap == per_token + attention
    pooled = flops.macs("B/16", image_size=224, classifier="map")
    probe = 2 * d * d + 2 * n * d * d + 2 * n * d + 2 * d * mlp  # one query over n keys + MLP
    assert pooled - gap == probe
    assert flops.macs("B/16", image_size=224, representation_size=d) - base == d * d
    assert base - flops.macs("B/16", image_size=224, num_classes=0) == d * 1000


def test_train_exaflops_is_six_macs_per_image():
    macs = flops.macs("B/16", image_size=224, num_classes=21_843)
    got = flops.train_exaflops("B/16", image_size=224, images_seen=1e9, num_classes=21_843)
    assert got == pytest.approx(6 * macs * 1e9 / 1e18)


# (name, image size, channels, classes): two ViTs, a hybrid, a ResNet and 28×28 variants.
XLA_CASES = [
    ("Ti/16", 224, 3, 1000),
    ("S/32", 224, 3, 1000),
    ("Rstem+Ti/32", 224, 3, 1000),
    ("R26x1", 128, 3, 1000),
    ("S/4", 28, 1, 10),
]


@pytest.mark.parametrize("name,size,channels,classes", XLA_CASES)
def test_macs_agree_with_xla(name, size, channels, classes):
    """XLA counts 2 flops per MAC, plus elementwise work, plus work done once per batch (weight
    standardisation), and it skips conv taps that fall on padding. So `macs(count_padding=False)`
    is compared with XLA's count per image: at batch 1 where the per-batch work is negligible (ViTs;
    the hybrid's lone stem conv), else as the difference of batch 2 and batch 1 (the ResNet). What
    remains is the elementwise share (norms, softmax, GELU): 0-2 % for these models."""
    module = models.create(name, num_classes=classes)
    kw = dict(image_size=size, channels=channels)
    per_image = flops.xla_flops(module, **kw)
    if models.family(name) == "resnet":
        per_image = flops.xla_flops(module, batch_size=2, **kw) - per_image
    taps = flops.macs(name, num_classes=classes, count_padding=False, **kw)
    assert 1.0 <= per_image / 2 / taps < 1.02


@pytest.mark.parametrize("stem, shape", [("conv4", (7, 7, 32)), ("conv8", (4, 4, 128))])
def test_conv_stem_macs_agree_with_xla(stem, shape):
    """The conv stems alone (in a whole hybrid a two-conv stem is ~4% of the MACs, below what the
    elementwise share of a 64-wide transformer blurs). XLA adds GroupNorm / ReLU / weight
    standardisation: 14-20% at these widths; a count missing a conv falls far outside."""
    import flax.linen as nn

    from vit_jax.models import resnet

    spec = models.spec(f"Cstem-w32+XXS/{resnet.stem_downsampling(stem)}")
    assert spec.resnet.stem == stem

    class Stem(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            kw = dict(dtype=jnp.float32, param_dtype=jnp.float32)
            return resnet.resnet_trunk(x, width=32, units=(), stem=stem, **kw)

    xla = flops.xla_flops(Stem(), image_size=28, channels=1)
    macs, out_shape = flops._resnet_macs(spec.resnet, 28, 28, 1, count_padding=False)
    assert out_shape == shape
    assert 1.0 <= xla / 2 / macs < 1.25


def test_table_rows_and_markdown():
    assert sizes.count("mu/4") == 15_274
    text = model_table.markdown([("mu/4", "vit", 15_274, 0.0008)], title="t")
    assert "| mu/4 | vit | 15,274 | 0.0008 |" in text
