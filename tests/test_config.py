"""Config schema: every key typed and locked, one-line errors, every config file loads."""

import pathlib
import subprocess
import sys

import pytest

from vit_jax import config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name, arg=None):
    return config_lib.load(f"{ROOT / 'configs' / name}.py" + (f":{arg}" if arg else ""))


def test_misspelled_key_in_a_config_file_fails():
    c = config_lib.base_config()
    with pytest.raises(AttributeError, match="totl_steps"):
        c.totl_steps = 3
    with pytest.raises(AttributeError, match="lrr"):
        c.optim.lrr = 3


def test_wrong_type_fails():
    c = config_lib.base_config()
    with pytest.raises(TypeError):
        c.total_steps = "many"
    with pytest.raises(TypeError):
        c.model.dropout_rate = "high"


def test_parse_arg_types_and_unknown_keys():
    args = config_lib.parse_arg("model=S/16,steps=7,flip=false", model="B/16", steps=1, flip=True)
    assert (args.model, args.steps, args.flip) == ("S/16", 7, False)
    with pytest.raises(config_lib.ConfigError, match="unknown key 'stepz'"):
        config_lib.parse_arg("stepz=7", steps=1)
    with pytest.raises(config_lib.ConfigError, match="steps="):
        config_lib.parse_arg("steps=many", steps=1)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("model.dtype", "float8", "model.dtype"),
        ("sharding", "zero3", "config.sharding"),
        ("data.augment", "mixup", "data.augment"),
        ("model.name", "ViT-Q/3", "unknown model"),
        ("grad_accum_steps", 3, "grad_accum_steps"),
    ],
)
def test_validate_names_the_key(key, value, match):
    c = load_config("fashion_mnist")
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(config_lib.ConfigError, match=match):
        config_lib.validate(c)


@pytest.mark.parametrize(
    "name,arg",
    [
        ("fashion_mnist", None),
        ("fashion_mnist", "model=mu/7,steps=10"),
        ("pretrain", "model=B/16,dataset=imagenet2012"),
        ("pretrain", "model=L/16,dataset=imagenet21k"),
        ("finetune", "model=B/16,dataset=cifar100"),
    ],
)
def test_config_files_load_and_validate(name, arg):
    c = load_config(name, arg)
    config_lib.validate(c)
    assert c.total_steps > 0


def test_paper_recipes():
    pre = load_config("pretrain", "model=B/16,dataset=imagenet2012")
    assert (pre.optim.name, pre.optim.b1, pre.optim.b2) == ("adam", 0.9, 0.999)
    assert pre.optim.warmup_steps == 10_000 and pre.optim.grad_clip_norm == 1.0
    assert pre.total_steps == 300 * 1_281_167 // 4096
    ft = load_config("finetune", "model=B/16,dataset=cifar10")
    assert (ft.optim.name, ft.optim.momentum, ft.optim.weight_decay) == ("sgd", 0.9, 0.0)
    assert (ft.data.image_size, ft.total_steps, ft.batch_size) == (384, 10_000, 512)


def test_bad_dataset_argument():
    with pytest.raises(config_lib.ConfigError, match="dataset='mnist'"):
        load_config("pretrain", "dataset=mnist")


@pytest.mark.parametrize(
    "flag,needle",
    [
        ("--config.modle.name=x", "modle"),
        ("--config.total_steps=abc", "total_steps"),
        ("--config=configs/fashion_mnist.py:modle=x", "modle"),
        ("--config=configs/missing.py", "configs/missing.py"),
    ],
)
def test_cli_config_errors_are_one_line(flag, needle, tmp_path):
    cmd = [sys.executable, "-m", "vit_jax.main", "--config=configs/fashion_mnist.py", flag]
    out = subprocess.run(
        cmd + [f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.stderr


def test_load_and_override_dotted_keys():
    c = config_lib.load(f"{ROOT / 'configs' / 'fashion_mnist.py'}:steps=30")
    assert c.total_steps == 30
    config_lib.override(c, {"optim.lr": 0.5, "model.name": "mu/7", "mesh": [["data", 2]]})
    assert (c.optim.lr, c.model.name, c.mesh) == (0.5, "mu/7", (("data", 2),))
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'optim.lrr'"):
        config_lib.override(c, {"optim.lrr": 1.0})
    with pytest.raises(config_lib.ConfigError, match="'batch_size' = 'big'"):
        config_lib.override(c, {"batch_size": "big"})
    with pytest.raises(config_lib.ConfigError, match="not found"):
        config_lib.load("configs/nope.py")
