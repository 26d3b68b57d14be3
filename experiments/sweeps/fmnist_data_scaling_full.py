r"""The data-size study for accelerators: more models, sizes up to all 60,000, longer training.

  python -m experiments.run --sweep=experiments/sweeps/fmnist_data_scaling_full.py \
      --workdir=runs/data_scaling_full [--backend=tpu_vm ...]   # or locally on a GPU

`fmnist_data_scaling.py` (the CPU study) scaled up: three models per family, six class-balanced
subsets from 250 to all 60,000 training images (240×), and every point trained on the same
1,280,000 images (10,000 steps × 128): the full set is seen ~21 times, the smallest subset ~5,000
times, with pad-and-crop augmentation. Evaluated on the full test set; the report plots accuracy
against training-set size per family and states whether the CNN–ViT gap shrinks, holds or flips.
Not run here (a 2-core CPU would take days). Arguments as the CPU study's
(`images`, `lr`, `seed`, `batch`, `sizes`, `source`).
"""

from experiments.sweep import Sweep
from experiments.sweeps import fmnist_data_scaling
from vit_jax import config_lib

MODELS = {
    "vit": ("mu/7", "XXS/4", "XS/4"),
    "resnet": ("R11-w8", "R14-w16", "R20-w32"),
    "hybrid": ("R11-w8+mu/4", "R14-w16+XXS/4", "R14-w16+XS/4"),
}
SIZES = (250, 1_000, 3_000, 10_000, 30_000, 60_000)


def get_sweep(arg=None) -> Sweep:
    args = config_lib.parse_arg(
        arg, images=1_280_000, lr=2e-3, seed=0, batch=128, sizes="", source="tfds"
    )
    sizes = tuple(int(s) for s in args.sizes.split("-")) if args.sizes else SIZES
    return fmnist_data_scaling.study(MODELS, sizes=sizes, args=args, checkpoint_every=2000)
