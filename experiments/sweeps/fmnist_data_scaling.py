r"""The data-size study: ViT vs ResNet vs hybrid as the training set grows (Fashion-MNIST, CPU).

  python -m experiments.run --sweep=experiments/sweeps/fmnist_data_scaling.py \
      --workdir=runs/data_scaling --parallel=2
  python -m experiments.run --sweep=experiments/sweeps/fmnist_data_scaling.py \
      --workdir=/tmp/d --smoke

The paper's Fig. 3/4 in miniature: two models per family, each trained on class-balanced, nested
subsets of Fashion-MNIST's train split (`data.train_examples`: 100 to 3,200, 32×), evaluated on
the full 10,000-image test set. Every point sees the same number of images (`images`, default
6,400 = 200 steps × 32), so a model's training compute is the same at every data size and only
the number of distinct images varies: the smallest subset is seen 64 times, the largest twice.
The report (experiments.data_size) plots accuracy against training-set size per family and says
whether the CNN–ViT gap shrinks, holds or flips as the data grows.

Measured (experiments/README.md): 24 points in 59 min under a load of 10–25 (1,210 CPU-s,
≈ 10 min idle by estimate). The ResNets trail the best ViT by ~10 points at every size (the
gap holds), but no family gains from more data at this budget: 200 steps measure
learning speed; mu/7 at `:images=25600` does gain (60.1% → 66.4% from 100 to 3,200 images).
Arguments (`:k=v,...`): images, lr, seed, batch, sizes ('400-1600-...'), source (tfds | arrays).
The accelerator version, with more sizes up to the full 60,000 and longer training, is
`fmnist_data_scaling_full.py`.
"""

from experiments.sweep import Sweep, axis, points, product
from vit_jax import config_lib

# Two sizes per family, the cheapest of the default study's ladders (XLA's CPU convolutions
# make the CNN and hybrid points cost ~10× a ViT's per image).
MODELS = {
    "vit": ("mu/7", "XXS/7"),
    "resnet": ("R11-w8", "R14-w8"),
    "hybrid": ("R11-w8+mu/4", "R14-w8+mu/4"),
}
SIZES = (100, 320, 1_000, 3_200)  # 32×; at 6,400 images the largest is seen twice.


def get_sweep(arg=None) -> Sweep:
    args = config_lib.parse_arg(
        arg, images=6_400, lr=3e-3, seed=0, batch=32, sizes="", source="arrays"
    )
    sizes = tuple(int(s) for s in args.sizes.split("-")) if args.sizes else SIZES
    return study(MODELS, sizes=sizes, args=args)


def study(models: dict, *, sizes, args, checkpoint_every: int = 200) -> Sweep:
    """Every model of `models` (family → names) at every size; `args` as get_sweep parses them.

    Shared with the accelerator version, which passes more models, sizes and images.
    """
    steps = -(-args.images // args.batch)
    base = config_lib.base_config()
    base.batch_size = args.batch
    base.total_steps = steps
    base.eval_every = 0  # Only the final eval, on the full test set.
    base.checkpoint_every = checkpoint_every
    base.keep_checkpoints = 1
    base.log_every = 50
    base.progress_bar = False
    base.data.name = "fashion_mnist"
    base.data.source = args.source
    base.data.eval_split = "test"
    base.data.image_size = 28
    # Small subsets are seen many times: the standard pad-and-crop augmentation (no flips,
    # as in the default config) keeps them from being memorised outright, for every family.
    base.data.augment = "pad_crop"
    base.data.flip = False
    base.optim.lr = args.lr
    base.optim.weight_decay = 0.05
    base.optim.warmup_steps = max(1, steps // 10)
    base.seed = args.seed
    names = points(*({"model.name": m} for family in models.values() for m in family))
    return Sweep(
        base=base,
        axes=product(names, axis("data.train_examples", sizes)),
        # Smoke: one model per family at two sizes 30× apart, a few steps, a slice of the test set.
        smoke_axes=product(
            points({"model.name": "mu/7"}, {"model.name": "R11-w8"}, {"model.name": "R11-w8+mu/4"}),
            axis("data.train_examples", [20, 600]),
        ),
        smoke_overrides={
            "total_steps": 12,
            "data.eval_split": "test[:500]",
            "checkpoint_every": 0,
            "optim.warmup_steps": 2,
        },
    )
