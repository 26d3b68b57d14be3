r"""Fashion-MNIST from scratch: the default job, offline, on a 2-core CPU.

  python -m vit_jax.main --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist

Expected: ≥ 90% test accuracy in under 15 minutes on a 2-core CPU (see README for the measured
number). Arguments: `configs/fashion_mnist.py:model=Ti/4,steps=3000`.
"""

from vit_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, model="Ti/4", steps=3000, batch=128)
    c = config_lib.base_config()
    c.model.name = args.model
    c.total_steps = args.steps
    c.batch_size = args.batch
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.log_every = 50

    c.data.name = "fashion_mnist"
    c.data.image_size = 28
    c.data.augment = "pad_crop"
    c.data.crop_padding = 2
    c.data.flip = True

    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 200
    c.optim.schedule = "cosine"
    c.optim.grad_clip_norm = 1.0
    c.label_smoothing = 0.0
    return c
