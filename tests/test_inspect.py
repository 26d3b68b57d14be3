"""vit_jax.inspect: each analysis on weights or maps whose answer is known by construction."""

import itertools
import json
import math
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from vit_jax import classifier, interop, models
from vit_jax.inspect import analyse, attention, embeddings, translation
from vit_jax.interop import tree
from vit_jax.models import vit


def make_classifier(name, *, edit=None, num_classes=3, **overrides):
    """A Classifier of `name` at its native size with random weights (numpy, no init compile:
    norm scales 1, biases 0, kernels N(0, 1/fan_in)), its flat params changed by `edit`."""
    spec = models.spec(name)
    module = models.create(name, num_classes=num_classes, **overrides)
    abstract = tree.flatten(interop.abstract_params(module, spec.image_size, spec.channels))
    rng = np.random.default_rng(0)
    flat = {}
    for key, want in abstract.items():
        if key.endswith("scale"):
            flat[key] = np.ones(want.shape, np.float32)
        elif key.endswith("bias"):
            flat[key] = np.zeros(want.shape, np.float32)
        else:
            fan_in = np.prod(want.shape[:-1]) if len(want.shape) > 1 else 1
            flat[key] = (rng.normal(size=want.shape) / np.sqrt(fan_in)).astype(np.float32)
    if edit:
        edit(flat)
    weights = interop.Weights(
        params=flat, model=name, overrides=overrides, source="test", image_size=spec.image_size
    )
    return classifier.Classifier(weights)


def zero_query_key(flat):
    """Query and key projections zero → every attention logit 0 → exactly uniform attention."""
    for key in flat:
        if "/query/" in key or "/key/" in key:
            flat[key] = np.zeros_like(flat[key])


def centred_images(count, side, channels=1, *, margin=8, seed=0):
    """Random images on a black (-1) background that is `margin` pixels wide on every side."""
    rng = np.random.default_rng(seed)
    images = np.full((count, side, side, channels), -1.0, np.float32)
    inner = rng.uniform(-1, 1, (count, side - 2 * margin, side - 2 * margin, channels))
    images[:, margin : side - margin, margin : side - margin] = inner
    return images


def grid_mean_distance(side, stride):
    """Mean distance in pixels over all ordered pairs of patch centres (self pairs included)."""
    centres = [((i + 0.5) * stride, (j + 0.5) * stride) for i in range(side) for j in range(side)]
    return sum(math.dist(a, b) for a, b in itertools.product(centres, centres)) / len(centres) ** 2


def test_attention_to_self_only_has_distance_zero():
    eye = np.eye(1 + 16)  # Class token + 4×4 patches, each token attending only to itself.
    maps = np.broadcast_to(eye, (3, 2, 4, 17, 17))
    assert np.array_equal(
        attention.mean_attention_distance(maps, stride=4, num_prefix_tokens=1), np.zeros((3, 4))
    )


@pytest.mark.parametrize(
    "name, overrides, stride",
    [
        ("mu/4", {}, 4),
        ("mu/4", {"classifier": "gap", "posemb": "sincos2d"}, 4),  # No class token.
        ("R11-w8+mu/4", {}, 4),  # Hybrid: tokens are the ResNet's 4-pixel cells.
    ],
)
def test_uniform_attention_has_the_grids_mean_distance(tmp_path, name, overrides, stride):
    """Zero query/key weights → every head's distance is the mean over all pairs of patches."""
    clf = make_classifier(name, edit=zero_query_key, **overrides)
    images = centred_images(3, clf.image_size)
    out = analyse(clf, images, np.arange(3) % 3, out_dir=str(tmp_path), max_shift=1)
    layers, heads = clf.spec.num_layers, clf.spec.num_heads
    distance = np.array(out["mean_attention_distance"])
    assert distance.shape == (layers, heads)
    np.testing.assert_allclose(distance, grid_mean_distance(7, stride), rtol=1e-6)
    assert out["token_stride_pixels"] == stride
    assert out["position_embedding"]["kind"] == clf.spec.posemb
    if clf.spec.posemb == "sincos2d":  # The fixed table's own similarity, as drawn.
        sim = embeddings.cosine_grid(vit.posemb_sincos2d(7, 7, clf.spec.hidden_size))
        expect = embeddings.similarity_by_distance(sim)
        assert out["position_embedding"]["similarity_by_distance"] == expect
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["mean_attention_distance"] == out["mean_attention_distance"]
    assert all((tmp_path / f).stat().st_size > 0 for f in out["figures"])


def test_rollout_rows_sum_to_one_and_match_closed_forms():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 2, 3, 10, 10))
    maps = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(attention.rollout(maps).sum(-1), 1.0, rtol=1e-12)
    eye = np.broadcast_to(np.eye(10), maps.shape)
    np.testing.assert_allclose(attention.rollout(eye), np.broadcast_to(np.eye(10), (2, 10, 10)))
    # Uniform U over L layers: (½U + ½I)^L = 2^-L·I + (1 - 2^-L)·U, since U² = U.
    uniform = np.full(maps.shape, 0.1)
    expect = 2.0**-4 * np.eye(10) + (1 - 2.0**-4) * np.full((10, 10), 0.1)
    np.testing.assert_allclose(attention.rollout(uniform), np.broadcast_to(expect, (2, 10, 10)))
    # One layer by hand: heads averaged, then the residual identity mixed in.
    one = attention.rollout(maps[:1])
    np.testing.assert_allclose(one, 0.5 * maps[0].mean(1) + 0.5 * np.eye(10), rtol=1e-12)


def test_rollout_refuses_maps_that_are_not_distributions():
    with pytest.raises(ValueError, match="sum to 1"):
        attention.rollout(np.ones((1, 1, 1, 5, 5)))


def test_classifier_rollout_shows_the_class_tokens_row(tmp_path):
    clf = make_classifier("mu/4")
    maps = clf.attention_maps(centred_images(2, 28))
    heat = classifier.attention_rollout(maps)
    joint = attention.rollout(maps)
    assert heat.shape == (2, 7, 7) and np.allclose(heat.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(
        heat.reshape(2, -1), joint[:, 0, 1:] / joint[:, 0, 1:].max(-1)[:, None]
    )


def test_sincos_position_similarity_has_its_known_pattern():
    """cos θ of two sin-cos embeddings = ½(f(dx) + f(dy)), f(t) = mean_k cos(ω_k·t)."""
    h, w, width = 5, 7, 64
    sim = embeddings.cosine_grid(vit.posemb_sincos2d(h, w, width), grid=(h, w))
    omega = 1.0 / 10_000.0 ** (np.arange(width // 4) / (width // 4 - 1))
    f = lambda t: np.cos(omega * t).mean()  # noqa: E731
    for (i, j), (k, m) in itertools.product(np.ndindex(h, w), np.ndindex(h, w)):
        assert sim[i, j, k, m] == pytest.approx(0.5 * (f(k - i) + f(m - j)), abs=1e-6)
    flat = sim.reshape(h * w, h * w)
    np.testing.assert_allclose(flat, flat.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(flat), 1.0, atol=1e-12)
    row = sim[2, 3, 2]  # Centre position against its own row: falls off on both sides.
    assert row[3] > row[2] > row[1] > row[0] and row[3] > row[4] > row[5] > row[6]
    by_distance = embeddings.similarity_by_distance(sim)
    assert by_distance[0] == [0.0, pytest.approx(1.0)] and by_distance[1][1] < 1.0


def test_filter_components_recover_the_patterns_the_filters_are_made_of():
    """Filters = mean + a·u + b·v with Σa² = 9·Σb², Σab = 0: PCs ±u then ±v, 90% / 10%."""
    rng = np.random.default_rng(0)
    u, v = np.linalg.qr(rng.normal(size=(4 * 4 * 3, 2)))[0].T
    mean = rng.normal(size=4 * 4 * 3)
    a, b = np.array([3.0, -3.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0, -1.0])
    filters = mean + a[:, None] * u + b[:, None] * v  # [D=4, pixels]
    kernel = filters.T.reshape(4, 4, 3, 4)
    components, explained = embeddings.filter_components(kernel, count=28)
    assert components.shape == (4, 4, 4, 3)
    assert abs(components[0].ravel() @ u) == pytest.approx(1.0)
    assert abs(components[1].ravel() @ v) == pytest.approx(1.0)
    np.testing.assert_allclose(explained[:2], [0.9, 0.1], atol=1e-9)


def test_shift_moves_pixels_and_fills_the_border():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    right = translation.shift(x, dy=0, dx=1, fill=-1.0)[0, ..., 0]
    np.testing.assert_array_equal(right[:, 1:], x[0, :, :3, 0])
    np.testing.assert_array_equal(right[:, 0], -1.0)
    up = translation.shift(x, dy=-2, dx=0, fill=0.0)[0, ..., 0]
    np.testing.assert_array_equal(up[:2], x[0, 2:, :, 0])
    np.testing.assert_array_equal(up[2:], 0.0)
    with pytest.raises(ValueError, match="not smaller than the image"):
        translation.shift(x, dy=4, dx=0, fill=0.0)


def test_a_model_that_ignores_its_input_agrees_at_every_shift():
    def no_input(flat):
        flat["embedding/kernel"] = np.zeros_like(flat["embedding/kernel"])

    clf = make_classifier("mu/4", edit=no_input)
    images, labels = centred_images(6, 28, seed=1), np.arange(6) % 3
    out = translation.probe(clf, images, labels, max_shift=3)
    assert out["shift"] == [0, 1, 2, 3] and out["agreement"] == [1.0] * 4
    assert len(set(out["accuracy"])) == 1


def test_a_gap_vit_without_position_embedding_is_invariant_to_whole_patch_shifts():
    """Self-attention is permutation-equivariant and gap pooling symmetric: moving the object by
    one patch (4 px) on a background equal to the fill permutes the tokens, nothing else."""

    def no_posemb(flat):
        flat[interop.POSEMB] = np.zeros_like(flat[interop.POSEMB])

    clf = make_classifier("mu/4", edit=no_posemb, classifier="gap")
    images, labels = centred_images(8, 28, seed=2), np.arange(8) % 3
    for dy, dx in translation.DIRECTIONS:
        moved = translation.shift(images, dy=4 * dy, dx=4 * dx, fill=-1.0)
        np.testing.assert_allclose(clf(moved), clf(images), atol=1e-5)
    out = translation.probe(clf, images, labels, max_shift=4)
    assert out["agreement"][4] == 1.0 and out["accuracy"][4] == out["accuracy"][0]


def test_resnet_gets_the_analyses_it_has(tmp_path):
    clf = make_classifier("R11-w8")
    images, labels = centred_images(4, 28), np.arange(4) % 3
    out = analyse(clf, images, labels, out_dir=str(tmp_path), max_shift=2)
    assert "mean_attention_distance" not in out and out["family"] == "resnet"
    assert out["filter_components"]["kernel"] == "conv_root/kernel"
    assert out["translation"]["shift"] == [0, 1, 2] and out["translation"]["agreement"][0] == 1.0
    assert sorted(out["figures"]) == ["filters.png", "shift.png"]
    with pytest.raises(ValueError, match="as many labels as images"):
        analyse(clf, images, labels[:2], out_dir=str(tmp_path))


def test_cli_on_a_finished_run_writes_pngs_and_json_within_two_minutes(tmp_path):
    from test_checkpoint import tiny_run

    workdir = tiny_run()
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "vit_jax.inspect", f"--workdir={workdir}", f"--out={tmp_path}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The 2-minute bar as CPU seconds (≈ wall time on an idle machine; ~12 s here), so a busy
    # shared CI machine does not fail it while a slow analysis still does.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 120, f"inspect CLI used {cpu:.0f} CPU seconds"
    result = json.loads((tmp_path / "analysis.json").read_text())
    spec = models.spec("mu/4")
    distance = result["mean_attention_distance"]
    assert len(distance) == spec.num_layers and all(len(r) == spec.num_heads for r in distance)
    assert all(0 <= d <= 16 * math.sqrt(2) for row in distance for d in row)
    assert result["rollout_row_sum_max_error"] < 1e-5
    assert {p.name for p in tmp_path.glob("*.png")} == set(result["figures"])
    assert len(result["figures"]) == 5 and result["num_images"] == 9


def test_cli_on_weights_and_an_image_folder(tmp_path):
    from test_checkpoint import tiny_data, tiny_run

    weights = tiny_run() / "checkpoints" / "8"
    images = os.path.join(tiny_data(), "test")  # class0..class2, 3 images each.
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "vit_jax.inspect", f"--weights={weights}", f"--images={images}"]
    cmd += [f"--out={tmp_path}", "--num_images=6", "--max_shift=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "analysis.json").read_text())
    assert result["num_images"] == 6 and result["translation"]["shift"] == [0, 1, 2]
    bad = subprocess.run(cmd[:4], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--weights needs --images" in bad.stderr
