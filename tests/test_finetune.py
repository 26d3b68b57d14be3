"""Fine-tuning (paper §3.2): `finetune.init_params` on every source, and a pre-train → fine-tune
run at another resolution with another class count, with frozen parameters."""

import importlib.util

import jax
import numpy as np
import pytest
from test_checkpoint import tiny_run, write_folder
from test_interop import random_params

from vit_jax import config_lib, convert, finetune, interop, models, posemb, train
from vit_jax.interop import npz, tree

POSEMB = interop.POSEMB


def config_for(path, *, name="mu/4", image_size=24, **init_from):
    c = config_lib.base_config()
    c.model.name = name
    c.data.image_size = image_size
    c.init_from.path = str(path)
    for key, value in init_from.items():
        c.init_from[key] = value
    return c


def abstract(num_classes, image_size=24, name="mu/4", **overrides):
    module = models.create(name, num_classes=num_classes, **overrides)
    return interop.abstract_params(module, image_size, models.spec(name).channels)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 'pre-trained' mu/4: 16 px (4×4 grid), class token, pre_logits, 10 classes."""
    _, flat = random_params("mu/4", num_classes=10, image_size=16, representation_size=32)
    path = tmp_path_factory.mktemp("src") / "pretrained.npz"
    npz.write(str(path), npz.from_canonical(flat, pre_linen=True))
    return str(path), flat


def test_new_zero_head_no_pre_logits_resampled_posemb(source):
    path, src = source
    params = tree.flatten(finetune.init_params(config_for(path), abstract_params=abstract(3)))
    np.testing.assert_array_equal(params["head/kernel"], np.zeros((32, 3), np.float32))
    np.testing.assert_array_equal(params["head/bias"], np.zeros(3, np.float32))
    assert not any(k.startswith("pre_logits") for k in params)
    expected = posemb.resample(src[POSEMB], new_grid=(6, 6))  # 1 + 16 → 1 + 36 tokens.
    np.testing.assert_array_equal(params[POSEMB], expected)
    assert params[POSEMB].shape == (1, 37, 32)
    for key, value in params.items():
        if not key.startswith(("head/", POSEMB)):
            np.testing.assert_array_equal(value, src[key], err_msg=key)


def test_keep_head_representation_scan_and_gap_targets(source):
    path, src = source
    kept = finetune.init_params(
        config_for(path, image_size=16, keep_head=True),
        abstract_params=abstract(10, 16, representation_size=32),
    )
    for key, value in tree.flatten(kept).items():  # Same model, same size: all as stored.
        np.testing.assert_array_equal(value, src[key], err_msg=key)
    with pytest.raises(
        ValueError,
        match=r"pretrained.npz: key 'head/bias' has shape \(10,\), the model wants \(3,\)",
    ):
        finetune.init_params(config_for(path, keep_head=True), abstract_params=abstract(3))
    scanned = finetune.init_params(config_for(path), abstract_params=abstract(3, scan=True))
    stacked = scanned["Transformer"]["encoderblock"]["MlpBlock_0"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(
        stacked[0], src["Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"]
    )
    gap = tree.flatten(
        finetune.init_params(config_for(path), abstract_params=abstract(3, classifier="gap"))
    )
    assert "cls" not in gap and gap[POSEMB].shape == (1, 36, 32)  # Class-token row dropped.
    np.testing.assert_array_equal(gap[POSEMB], posemb.resample(src[POSEMB], new_grid=(6, 6))[:, 1:])


def test_from_safetensors_and_one_line_errors(source, tmp_path):
    path, src = source
    weights = interop.read(path)
    weights.params.pop("pre_logits/kernel"), weights.params.pop("pre_logits/bias")
    weights.overrides.pop("representation_size")
    st = str(tmp_path / "w.safetensors")
    convert.export(weights, st, to="timm")
    params = tree.flatten(finetune.init_params(config_for(st), abstract_params=abstract(3)))
    key = "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"
    np.testing.assert_allclose(params[key], src[key], rtol=1e-6)
    with pytest.raises(ValueError, match=r"pretrained.npz: key '.*' has shape \(32,\), the model"):
        finetune.init_params(
            config_for(path, name="Ti/4"), abstract_params=abstract(3, name="Ti/4")
        )
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="weights.pth: pickle-based"):
        finetune.init_params(config_for(bad), abstract_params=abstract(3))


def load_finetune_config(arg):
    spec = importlib.util.spec_from_file_location("finetune_config", "configs/finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_pretrain_then_finetune_at_another_resolution(tmp_path, monkeypatch):
    """From a tiny run (mu/4, 16 px, 3 classes, pre_logits) to 24 px and 2 classes, one block's
    MLP frozen: the head starts at zero, the posemb is resampled, frozen weights stay put."""
    pretrain = tiny_run()
    pretrained = tree.flatten(jax.tree.map(np.asarray, _final_params(pretrain)))
    ft_root = write_folder(tmp_path / "ft", (10, 10), "train", 2, size=24)
    write_folder(ft_root, (3, 3), "test", 3, size=24)
    c = load_finetune_config(f"model=mu/4,batch=16,res=24,steps=3,init={pretrain}")
    c.data.source, c.data.root, c.data.train_split = "folder", str(ft_root), "train"
    c.model.dtype, c.mesh, c.progress_bar, c.optim.warmup_steps = (
        "float32",
        (("data", 1),),
        False,
        0,
    )
    c.optim.freeze = ("^Transformer/encoderblock_0/MlpBlock_0/",)
    captured = {}
    original = finetune.init_params

    def spy(config, *, abstract_params):
        captured.update(tree.flatten(original(config, abstract_params=abstract_params)))
        return tree.unflatten(captured)

    monkeypatch.setattr(finetune, "init_params", spy)
    train.train_and_evaluate(c, str(tmp_path / "finetune"))
    assert captured["head/kernel"].shape == (32, 2) and not captured["head/kernel"].any()
    assert "pre_logits/kernel" in pretrained and "pre_logits/kernel" not in captured
    expected = posemb.resample(pretrained[POSEMB], new_grid=(6, 6))
    np.testing.assert_array_equal(captured[POSEMB], expected)
    final = tree.flatten(jax.tree.map(np.asarray, _final_params(tmp_path / "finetune")))
    for key, value in final.items():
        if key.endswith("/key/bias"):
            # q·b_k adds the same number to every logit of a query row, so softmax makes this
            # gradient exactly zero: whether it moves is rounding noise, not behaviour.
            continue
        frozen = key.startswith("Transformer/encoderblock_0/MlpBlock_0/")
        assert np.array_equal(value, captured[key]) == frozen, key
        if frozen:
            np.testing.assert_array_equal(value, pretrained[key])
    assert final["head/kernel"].any()


def _final_params(workdir):
    from vit_jax import checkpoint

    return checkpoint.load_params(str(workdir))
