"""Hugging Face ViT folders: `convert --to hf` → transformers, transformers → `vit_jax.load`.

Models are built from a config with random weights (nothing is downloaded). transformers runs in
a subprocess without TensorFlow, as timm does in test_interop.py (torch after TensorFlow in one
process can segfault); these tests need the test extra and are skipped without transformers.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from test_interop import apply, images, random_params

import vit_jax
from vit_jax import convert, interop
from vit_jax.interop import npz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GELUS = ("tanh", "exact")
NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt")


def hf_worker(directory):
    """In a fresh process: load our exports strictly and run them; make an HF model of its own."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    d = pathlib.Path(directory)
    inputs = np.load(d / "inputs.npz")
    out = {}

    def logits(model, x):
        with torch.no_grad():
            return model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).logits.numpy()

    for gelu in GELUS:
        model, info = ViTForImageClassification.from_pretrained(
            d / f"hf_{gelu}", output_loading_info=True
        )
        assert not any(info.values()), info  # No missing, unexpected or mismatched keys.
        out[gelu] = logits(model, inputs["ours"])
        out[f"{gelu}_label"] = np.array(model.config.id2label[0])
    # HF's own defaults: exact GELU, LayerNorm eps 1e-12, 3 channels; the shapes of our mu/4.
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        image_size=16,
        patch_size=4,
        num_labels=5,
    )
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(d / "theirs")
    out["theirs"] = logits(model, inputs["theirs"])
    np.savez(d / "hf_out.npz", **out)


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """Our mu/4 (tanh and exact GELU) exported with the CLI; transformers' outputs on both sides."""
    if importlib.util.find_spec("transformers") is None:  # Not imported here: see above.
        pytest.skip("transformers is not installed (pip install -e .[test])")
    d = tmp_path_factory.mktemp("hf")
    inputs = {"ours": images(3, size=16, channels=1, seed=1), "theirs": images(2, 16, 3, seed=2)}
    ours = {}
    for gelu in GELUS:
        module, flat = random_params("mu/4", num_classes=7, image_size=16, gelu=gelu)
        src = d / f"ours_{gelu}"
        weights = interop.read(_npz(d / f"ours_{gelu}.npz", flat), model="mu/4")
        weights.overrides["gelu"] = gelu
        weights.class_names = NAMES
        convert.export(weights, str(src), to="orbax")
        assert convert.main([str(src), str(d / f"hf_{gelu}"), "--to", "hf"]) == 0
        ours[gelu] = apply(module, flat, inputs["ours"])
    np.savez(d / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, __file__, "hf-worker", str(d)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return d, inputs, ours, dict(np.load(d / "hf_out.npz"))


@pytest.mark.parametrize("gelu", GELUS)
def test_export_to_hf_loads_strictly_and_gives_our_logits(hf_run, gelu):
    d, inputs, ours, hf_out = hf_run
    tol = 1e-4 * np.abs(ours[gelu]).max()
    np.testing.assert_allclose(hf_out[gelu], ours[gelu], atol=tol)
    assert str(hf_out[f"{gelu}_label"]) == NAMES[0]
    config = json.loads((d / f"hf_{gelu}" / "config.json").read_text())
    assert config["hidden_act"] == {"tanh": "gelu_pytorch_tanh", "exact": "gelu"}[gelu]
    assert config["layer_norm_eps"] == 1e-6
    back = vit_jax.load(str(d / f"hf_{gelu}"))  # And back: the same model, GELU and classes.
    assert (back.model_name, back.spec.gelu, back.class_names) == ("mu/4", gelu, NAMES)
    np.testing.assert_allclose(back(inputs["ours"]), ours[gelu], atol=tol)


def test_hf_folder_gives_hf_logits(hf_run):
    d, inputs, _, hf_out = hf_run
    clf = vit_jax.load(str(d / "theirs"))  # mu/4 inferred from the shapes; exact GELU, as HF.
    assert (clf.model_name, clf.spec.gelu, clf.num_classes) == ("mu/4", "exact", 5)
    assert clf.class_names is None  # HF's placeholder LABEL_i names are not class names.
    expected = hf_out["theirs"]
    np.testing.assert_allclose(clf(inputs["theirs"]), expected, atol=1e-4 * np.abs(expected).max())


def test_hf_export_and_import_refuse_what_has_no_counterpart(tmp_path):
    _, flat = random_params("mu/4", num_classes=3, image_size=16, classifier="gap")
    weights = interop.read(_npz(tmp_path / "gap.npz", flat), model="mu/4")
    with pytest.raises(ValueError, match="only class-token ViTs"):
        convert.export(weights, str(tmp_path / "gap_hf"), to="hf")
    assert not os.path.exists(tmp_path / "gap_hf")  # Nothing half-written.
    _, flat = random_params("mu/4", num_classes=3, image_size=16)
    weights = interop.read(_npz(tmp_path / "tok.npz", flat), model="mu/4")
    folder = tmp_path / "hf"
    convert.export(weights, str(folder), to="hf")
    config = json.loads((folder / "config.json").read_text())
    for key, value, message in (
        ("hidden_act", "relu", "hidden_act 'relu' unsupported"),
        ("layer_norm_eps", 1e-3, "layer_norm_eps 0.001 differs"),
    ):
        (folder / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=message):
            vit_jax.load(str(folder))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").rename(folder / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors: file not found"):
        vit_jax.load(str(folder))


def _npz(path, flat):
    npz.write(str(path), flat)
    return str(path)


if __name__ == "__main__" and sys.argv[1] == "hf-worker":
    hf_worker(sys.argv[2])
