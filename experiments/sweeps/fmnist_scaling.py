r"""The default scaling study: ViT vs ResNet vs hybrid on Fashion-MNIST 28×28, on a 2-core CPU.

  python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling.py --workdir=runs/fmnist
  python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling.py --workdir=/tmp/s --smoke

A miniature of the ViT paper's Fig. 5 / Table 6: each family at four sizes, each trained for a
fixed number of steps, so training compute (6 × MACs × images seen) grows with model size; the
error-vs-compute frontier and its saturating power law come out of experiments.analysis.
Arguments (`:k=v,...`): steps (base step count), lr, seed, batch.
"""

from experiments.sweep import Sweep, axis, points, product
from vit_jax import config_lib

# (model, steps multiplier): bigger models also train a little longer, as a compute-optimal
# frontier would have them; the study spans > 30× in training compute.
MODELS = {
    "vit": (("mu/7", 1), ("Ti/7", 1), ("Ti/4", 1), ("S/4", 1)),
    "resnet": (("R11-w8", 1), ("R14-w16", 1), ("R20-w32", 1), ("R26-w64", 1)),
    "hybrid": (("R11-w8+mu/4", 1), ("R14-w8+Ti/4", 1), ("R14-w16+S/4", 1), ("R20-w16+S/4", 1)),
}


def get_sweep(arg=None) -> Sweep:
    args = config_lib.parse_arg(arg, steps=600, lr=1e-3, seed=0, batch=128)
    base = config_lib.base_config()
    base.batch_size = args.batch
    base.eval_every = 0  # Only the final eval: the study compares end points.
    base.checkpoint_every = 300  # Frequent enough that an interrupted point loses little.
    base.keep_checkpoints = 1
    base.log_every = 50
    base.progress_bar = False
    base.data.name = "fashion_mnist"
    base.data.image_size = 28
    base.data.augment = "pad_crop"
    base.optim.lr = args.lr
    base.optim.weight_decay = 0.05
    base.optim.warmup_steps = 100
    base.seed = args.seed

    models = points(
        *(
            {"model.name": name, "total_steps": args.steps * mult}
            for family in MODELS.values()
            for name, mult in family
        )
    )
    return Sweep(
        base=base,
        axes=models,
        # Smoke: one small model per family, a few steps on slices of the data (tests).
        smoke_axes=product(
            points({"model.name": "mu/7"}, {"model.name": "R11-w8"}, {"model.name": "R11-w8+mu/4"}),
            axis("total_steps", [30]),
        ),
        smoke_overrides={
            "batch_size": 32,
            "data.train_split": "train[:5%]",
            "data.eval_split": "test[:5%]",
            "data.shuffle_buffer": 3000,
            "optim.warmup_steps": 5,
            "checkpoint_every": 0,
        },
    )
