"""What a trained model learns: the ViT paper's Fig. 6–7 analyses and a translation probe.

    clf = vit_jax.load(workdir)
    numbers = vit_jax.inspect.analyse(clf, images, labels, out_dir="inspect")

or from the shell, on a finished run: `python -m vit_jax.inspect --workdir=DIR`. The pieces
(`attention`, `embeddings`, `translation`) are plain numpy functions of maps and weights.
"""

from vit_jax.inspect.analyse import JSON_NAME, analyse

__all__ = ["JSON_NAME", "analyse"]
