r"""The default scaling study: ViT vs ResNet vs hybrid on Fashion-MNIST 28×28, on a 2-core CPU.

  python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling.py --workdir=runs/fmnist \
      --parallel=2
  python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling.py --workdir=/tmp/s --smoke

A miniature of the ViT paper's Fig. 5 / Table 6: each family at four sizes, each trained for a
fixed number of steps, so training compute (6 × MACs × images seen) grows with model size; the
error-vs-compute frontier and its saturating power law come out of experiments.analysis.
Arguments (`:k=v,...`): steps, lr, seed, batch, eval (the eval split), source (tfds | arrays:
the numpy-only input path, for machines without TensorFlow).

Measured (experiments/README.md): 717 s wall on the idle 2-core CPU with --parallel=2;
compute 1.5e-8 to 8.9e-7 exaFLOPs (61×); hybrids and ViTs lead, plain ResNets trail at equal
compute in this 1/6-epoch regime. --smoke: 3 points with the few-shot probe, ~2 min.
"""

from experiments.sweep import Sweep, axis, points, product
from vit_jax import config_lib

# Four sizes per family, all small enough for a 2-core CPU. XLA's CPU convolutions are slow at
# these channel counts (~75 img/s/core for R11-w8 training vs ~1000 for mu/7), so the CNN and
# hybrid ladders step in depth at width 8 rather than in width.
MODELS = {
    "vit": ("mu/7", "mu/4", "XXS/7", "XXS/4"),
    "resnet": ("R11-w8", "R14-w8", "R20-w8", "R26-w8"),
    "hybrid": ("R11-w8+mu/4", "R14-w8+mu/4", "R20-w8+mu/4", "R11-w8+XXS/4"),
}


def get_sweep(arg=None) -> Sweep:
    args = config_lib.parse_arg(
        arg, steps=300, lr=3e-3, seed=0, batch=32, eval="test[:50%]", source="tfds"
    )
    base = config_lib.base_config()
    base.batch_size = args.batch
    base.eval_every = 0  # Only the final eval: the study compares end points.
    base.checkpoint_every = 150  # An interrupted point loses little.
    base.keep_checkpoints = 1
    base.log_every = 25
    base.progress_bar = False
    base.data.name = "fashion_mnist"
    base.data.source = args.source  # arrays: no TensorFlow (other batches and eval half).
    base.data.eval_split = args.eval  # Half the test set: ±0.6% noise, half the eval cost.
    base.data.image_size = 28
    # Under one epoch nothing overfits: augmentation would only slow learning down.
    base.data.augment = "resize"
    base.data.flip = False
    base.optim.lr = args.lr
    base.optim.weight_decay = 0.05
    base.seed = args.seed

    # Same steps (images seen) for every model, as the paper's Table 6 (7 epochs for all):
    # compute then grows with model size, over ~50x here.
    models = points(
        *(
            {"model.name": name, "total_steps": args.steps}
            for family in MODELS.values()
            for name in family
        )
    )
    base.optim.warmup_steps = max(1, args.steps // 10)
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
            # The few-shot probe on the frozen features, small (results get fewshot_{k}shot).
            "fewshot.dataset": "fashion_mnist",
            "fewshot.train_split": "train[:5%]",
            "fewshot.eval_split": "test[:5%]",
            "fewshot.shots": (1, 10),
            "fewshot.seeds": 2,
        },
    )
