"""Forward compute of a model per image: analytic MACs, XLA's count, and the paper's compute axis.

`macs` counts the multiply-accumulates of matmuls and convolutions only: the patch embedding (or
the ResNet convs, weight-standardised convs counted as plain convs), Q/K/V/out projections, the two
attention contractions (QKᵀ and AV), the MLPs, the MAP head, the representation layer and the
classifier head. It leaves out all elementwise and reducing work — LayerNorm/GroupNorm, softmax,
GELU/ReLU/tanh, residual adds, biases, pooling, position embeddings, weight standardisation — the
convention of the paper's Table 6 and of most FLOP tables (ViT-B/16 at 224: 17.56 GMACs). SAME
convolutions count every kernel tap, padding included (what dense hardware executes; ResNet-50 at
224: 4.09 GMACs); `count_padding=False` counts only the taps that touch the image.

`xla_flops` is XLA's `cost_analysis()['flops']` of the compiled forward pass. XLA counts a MAC as
2 flops, counts only non-padding conv taps, and adds elementwise work and work done once per batch
(weight standardisation of the ResNet kernels). So the like-for-like check is
`(xla_flops(batch_size=2) - xla_flops(batch_size=1)) / 2 ≈ macs(count_padding=False)`, larger by
the elementwise share: ~1-2 % for the paper's models, more for very narrow ones (e.g. 3-7 % for
the 28×28 CNNs, whose GroupNorms are large next to their convs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vit_jax import models
from vit_jax.models import resnet


def macs(
    name: str,
    *,
    image_size: int,
    num_classes: int = 1000,
    channels: int = 3,
    count_padding: bool = True,
    **overrides,
) -> int:
    """Analytic forward multiply-accumulates for one `image_size`² image of model `name`.

    `overrides` are those of `vit_jax.models.create` (e.g. classifier='map', representation_size).
    `count_padding=False` leaves out conv taps that fall on SAME padding (as XLA counts).
    """
    c = models.resolve(name, overrides)
    h = w = image_size
    total = 0
    if c.resnet is not None:
        trunk, (h, w, channels) = _resnet_macs(c.resnet, h, w, channels, count_padding)
        total += trunk
    if c.family == "resnet":
        return total + channels * (num_classes or 0)
    p, d = c.patch_size, c.hidden_size
    grid = (h // p) * (w // p)
    tokens = grid + (c.classifier == "token")
    total += grid * p * p * channels * d
    total += c.num_layers * _block_macs(tokens, tokens, d, c.mlp_dim)
    if c.classifier == "map":
        total += _map_head_macs(tokens, d, c.mlp_dim)
    features = d
    if c.representation_size:
        total += d * c.representation_size
        features = c.representation_size
    return total + features * (num_classes or 0)


def _block_macs(q_len, kv_len, d, mlp):
    """One encoder block: Q and out projections on queries, K/V on keys, QKᵀ, AV, MLP."""
    projections = 2 * q_len * d * d + 2 * kv_len * d * d
    contractions = 2 * q_len * kv_len * d
    return projections + contractions + 2 * q_len * d * mlp


def _map_head_macs(tokens, d, mlp):
    """MAP head: one probe query attends over `tokens`, then an MLP on the pooled token."""
    return _block_macs(1, tokens, d, mlp)


def _conv_macs(h, w, cin, cout, kernel, stride, count_padding):
    """A SAME-padded conv: output size ceil(h / stride); returns (macs, oh, ow)."""
    oh, ow = math.ceil(h / stride), math.ceil(w / stride)
    if count_padding:
        return oh * ow * kernel * kernel * cin * cout, oh, ow
    return _taps(h, kernel, stride) * _taps(w, kernel, stride) * cin * cout, oh, ow


def _taps(n, kernel, stride):
    """Kernel taps on real (non-padding) input, summed over the outputs of one SAME axis."""
    out = math.ceil(n / stride)
    low = max((out - 1) * stride + kernel - n, 0) // 2
    return sum(min(n, o * stride - low + kernel) - max(0, o * stride - low) for o in range(out))


def _resnet_macs(r, h, w, c, count_padding):
    """MACs of the BiT trunk (stem + bottleneck stages); returns (macs, (h, w, channels) out)."""
    stem_kernel, stem_stride = resnet.STEMS[r.stem]
    total, h, w = _conv_macs(h, w, c, r.width, stem_kernel, stem_stride, count_padding)
    c = r.width
    for mult in resnet.CONV_STEM_WIDENING.get(r.stem, ()):
        conv, h, w = _conv_macs(h, w, c, r.width * mult, 3, 2, count_padding)
        total, c = total + conv, r.width * mult
    if r.stem == "bit":
        h, w = math.ceil(h / 2), math.ceil(w / 2)  # 3×3/2 SAME max-pool
    for i, num_units in enumerate(r.units):
        features = r.width * 2**i
        for j in range(num_units):
            stride = 2 if (i > 0 and j == 0) else 1
            unit, (h, w, c) = _unit_macs(h, w, c, features, stride, count_padding)
            total += unit
    return total, (h, w, c)


def _unit_macs(h, w, cin, features, stride, count_padding):
    out = 4 * features
    total, _, _ = _conv_macs(h, w, cin, features, 1, 1, count_padding)
    conv2, oh, ow = _conv_macs(h, w, features, features, 3, stride, count_padding)
    total += conv2 + oh * ow * features * out
    if cin != out or stride != 1:
        total += _conv_macs(h, w, cin, out, 1, stride, count_padding)[0]
    return total, (oh, ow, out)


def xla_flops(module, *, image_size: int, channels: int = 3, batch_size: int = 1) -> float:
    """XLA's flop count of `module`'s forward pass on a batch (compiled, never run).

    Parameters are abstract (`jax.eval_shape`), so no memory is allocated for them. The count
    includes once-per-batch work; see the module docstring for a per-image difference.
    """
    images = jax.ShapeDtypeStruct((batch_size, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), images)
    forward = jax.jit(lambda v, x: module.apply(v, x, train=False))
    # The count comes from the optimised HLO; the program never runs, so skip LLVM's optimisation
    # (same flops, 2-3x faster compile on CPU).
    options = {"xla_backend_optimization_level": 0}
    cost = forward.lower(variables, images).compile(compiler_options=options).cost_analysis()
    if isinstance(cost, list | tuple):  # Older JAX: one dict per device program.
        cost = cost[0]
    return float(cost["flops"])


def train_exaflops(
    name: str, *, image_size: int, images_seen: float, num_classes: int = 1000, channels: int = 3
) -> float:
    """The paper's compute axis (Table 6): 6 × forward MACs per image × images seen, in 1e18.

    6 = 2 flops per MAC × 3 (forward + backward ≈ 2× forward).
    """
    per_image = macs(name, image_size=image_size, num_classes=num_classes, channels=channels)
    return 6 * per_image * images_seen / 1e18
