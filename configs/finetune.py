r"""Fine-tuning as in the ViT paper's Table 4 (CIFAR-10/100, ImageNet at 384px).

  python -m vit_jax.main --config=configs/finetune.py:model=B/16,dataset=cifar10 \
      --config.init_from.path=gs://BUCKET/vit_b16_i21k --workdir=runs/b16_cifar10

Recipe: SGD momentum 0.9, batch 512, no weight decay, global-norm clip 1.0, 500 warm-up steps,
cosine decay, 384px (position embeddings resampled to the new grid), a fresh zero head.
Steps: ImageNet 20k, CIFAR 10k; lr from {0.001, 0.003, 0.01, 0.03} (the paper's sweep).
The 28×28 grey datasets (digits — scikit-learn's, offline —, mnist, kmnist, fashion_mnist: the
scaling studies' transfer targets) default to res=28, a padded random crop and 500 steps at lr 0.01.
Expected (paper Table 2/5, from ImageNet-21k B/16): CIFAR-10 ~98.9%, CIFAR-100 ~92%, ImageNet ~84%.
"""

from vit_jax import config_lib

_DATASETS = {  # name: (train split, eval split, steps, lr)
    "cifar10": ("train[:98%]", "test", 10_000, 0.03),
    "cifar100": ("train[:98%]", "test", 10_000, 0.03),
    "imagenet2012": ("train[:99%]", "validation", 20_000, 0.03),
    "oxford_iiit_pet": ("train[:90%]", "test", 500, 0.003),
    "oxford_flowers102": ("train[:90%]", "test", 500, 0.003),
    # 28×28 grey transfer targets of the Fashion-MNIST studies (experiments/sweeps).
    "digits": ("train", "test", 500, 0.01),  # vit_jax/data/digits.py: 1,297 / 500 images.
    "mnist": ("train", "test", 500, 0.01),
    "kmnist": ("train", "test", 500, 0.01),
    "fashion_mnist": ("train", "test", 500, 0.01),
}
# Small images: a padded random crop instead of the inception crop; no flips for characters.
_SMALL = {"digits": False, "mnist": False, "kmnist": False, "fashion_mnist": True}  # name: flip


def get_config(arg=None):
    args = config_lib.parse_arg(
        arg, model="B/16", dataset="cifar10", batch=512, res=0, steps=0, lr=0.0, init=""
    )
    if args.dataset not in _DATASETS:
        raise config_lib.ConfigError(
            f"configs/finetune.py: dataset={args.dataset!r}: one of {tuple(_DATASETS)}"
        )
    train, evals, steps, lr = _DATASETS[args.dataset]
    c = config_lib.base_config()
    c.model.name = args.model
    c.batch_size = args.batch
    c.total_steps = args.steps or steps
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.log_every = 50

    c.data.name = args.dataset
    c.data.train_split = train
    c.data.eval_split = evals
    c.data.image_size = args.res or (28 if args.dataset in _SMALL else 384)
    c.data.augment = "pad_crop" if args.dataset in _SMALL else "inception_crop"
    c.data.flip = _SMALL.get(args.dataset, True)
    c.data.shuffle_buffer = 50_000
    c.data.cache = False

    c.optim.name = "sgd"
    c.optim.lr = args.lr or lr
    c.optim.momentum = 0.9
    c.optim.weight_decay = 0.0
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = min(500, c.total_steps // 10)
    c.optim.grad_clip_norm = 1.0
    c.loss = "softmax_xent"
    c.model.dtype = "bfloat16"
    c.init_from.path = args.init or None
    return c
