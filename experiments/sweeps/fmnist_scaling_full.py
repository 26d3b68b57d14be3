r"""The longer Fashion-MNIST scaling study: the default study's families, trained ~10× longer.

  python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling_full.py --workdir=runs/full

Same models as fmnist_scaling.py plus a larger ViT, more steps and a step-count axis, so each
family's frontier reaches the saturating regime; its best ViT reaches ≥ 93% test accuracy.
Arguments (`:k=v,...`): steps (the longest run), lr, seed, batch.
"""

from experiments.sweep import Sweep, axis, points, product
from experiments.sweeps import fmnist_scaling
from vit_jax import config_lib


def get_sweep(arg=None) -> Sweep:
    args = config_lib.parse_arg(arg, steps=6000, lr=1e-3, seed=0, batch=128)
    small = fmnist_scaling.get_sweep(f"lr={args.lr},seed={args.seed},batch={args.batch}")
    base = small.base
    base.checkpoint_every = 1000
    base.optim.warmup_steps = 300
    models = [name for family in fmnist_scaling.MODELS.values() for name, _ in family]
    return Sweep(
        base=base,
        axes=product(
            points(*({"model.name": m} for m in models)),
            axis("total_steps", [args.steps // 4, args.steps]),
        ),
        smoke_axes=small.smoke_axes,
        smoke_overrides=small.smoke_overrides,
    )
