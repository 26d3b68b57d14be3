r"""Pre-training as in the ViT paper's Table 3 (ImageNet, ImageNet-21k).

  python -m vit_jax.main --config=configs/pretrain.py:model=B/16,dataset=imagenet2012 \
      --workdir=gs://BUCKET/vit_b16_i1k --config.data.data_dir=gs://BUCKET/tensorflow_datasets

Recipe: Adam(0.9, 0.999), batch 4096, 10k warm-up steps, global-norm clip 1.0, 224px, sigmoid
cross-entropy, a representation (pre_logits) layer. ImageNet: 300 epochs, lr 3e-3, cosine, weight
decay 0.3, dropout 0.1. ImageNet-21k: 90 epochs, lr 1e-3, linear decay, weight decay 0.03.
Expected (paper Table 5 / Fig. 3): ViT-B/16 from ImageNet-1k alone reaches ~77.9% top-1 at 224;
ImageNet-21k pre-training pays off after fine-tuning (configs/finetune.py).
Needs the TFDS dataset prepared in data_dir (ImageNet is a manual download).
"""

from vit_jax import config_lib

_DATASETS = {
    # name: (train split, eval split, epochs, lr, schedule, weight decay, dropout, train size)
    "imagenet2012": ("train[:99%]", "train[99%:]", 300, 3e-3, "cosine", 0.3, 0.1, 1_281_167),
    "imagenet21k": ("full[:-102400]", "full[-102400:]", 90, 1e-3, "linear", 0.03, 0.0, 13_000_000),
}


def get_config(arg=None):
    args = config_lib.parse_arg(arg, model="B/16", dataset="imagenet2012", batch=4096, epochs=0)
    if args.dataset not in _DATASETS:
        raise config_lib.ConfigError(
            f"configs/pretrain.py: dataset={args.dataset!r}: one of {tuple(_DATASETS)}"
        )
    train, evals, epochs, lr, sched, wd, dropout, size = _DATASETS[args.dataset]
    c = config_lib.base_config()
    c.model.name = args.model
    c.model.representation_size = -1  # -1: a pre_logits layer as wide as the model.
    c.model.dropout_rate = dropout
    c.batch_size = args.batch
    c.total_steps = (args.epochs or epochs) * size // args.batch
    c.eval_every = 5000
    c.checkpoint_every = 2000
    c.keep_checkpoints_every = 50_000
    c.log_every = 100

    c.data.name = args.dataset
    c.data.train_split = train
    c.data.eval_split = evals
    c.data.image_size = 224
    c.data.augment = "inception_crop"
    c.data.flip = True
    c.data.shuffle_buffer = 250_000
    c.data.cache = False
    c.data.prefetch = 4

    c.optim.name = "adam"
    c.optim.lr = lr
    c.optim.weight_decay = wd
    c.optim.schedule = sched
    c.optim.warmup_steps = 10_000
    c.optim.grad_clip_norm = 1.0
    c.loss = "sigmoid_xent"
    c.model.dtype = "bfloat16"
    c.sharding = "fsdp"
    return c
