r"""Fashion-MNIST from scratch: the default job, offline, on a 2-core CPU.

  python -m vit_jax.main --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist

A narrow ViT (XXS: 64 wide, 4 deep, 4 heads) on 4×4 patches (49 tokens + class token), Adam with
warm-up and cosine decay, pad-and-crop + flip augmentation. Arguments:
`configs/fashion_mnist.py:model=XXS/4,steps=2000,batch=128,lr=0.002`.
Expected: ~89-90% test accuracy after 2000 steps (4.3 epochs); see README for measured numbers.
"""

from vit_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, model="XXS/4", steps=2000, batch=128, lr=0.002)
    c = config_lib.base_config()
    c.model.name = args.model
    c.total_steps = args.steps
    c.batch_size = args.batch
    c.eval_every = 500
    c.checkpoint_every = 500
    c.log_every = 50

    c.data.name = "fashion_mnist"
    c.data.image_size = 28
    c.data.augment = "pad_crop"
    c.data.crop_padding = 2
    c.data.flip = True

    c.optim.name = "adam"
    c.optim.lr = args.lr
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 150
    c.optim.schedule = "cosine"
    c.optim.grad_clip_norm = 1.0
    c.label_smoothing = 0.0
    return c
