"""vit_jax: Vision Transformers in JAX/Flax — train, scale, fine-tune, load."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "absl-py>=1.4",
    "numpy>=1.26",
    "jax>=0.6,<0.12",
    "flax>=0.10.4,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "ml-collections>=1.0,<2",
    "tensorflow-cpu>=2.18,<3",  # tf.data only; the models never run in TensorFlow.
    "tensorflow-datasets>=4.9.7,<5",
    "importlib_resources",  # TFDS's download path imports it without declaring it.
    "tensorboard>=2.18",  # tf.summary's event-file writer (metrics.py) needs it.
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "safetensors>=0.4",
    "scikit-learn>=1.3",  # Ships the digits: the studies' offline transfer task (data/digits.py).
]

EXTRAS = {
    "test": [
        "pytest>=8",
        "ruff>=0.6",
        "scipy>=1.11",  # posemb resampling checked against scipy.ndimage.zoom.
        "timm>=1.0",  # timm interop parity (pulls torch, torchvision); safetensors only.
        "torch>=2.4",
        "nbclient>=0.10",  # Executes notebooks/ in CI.
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
    "tpu": ["jax[tpu]"],
    "cuda": ["jax[cuda12]"],
}

setup(
    name="vit_jax",
    version="0.1.0",
    description="Vision Transformers in JAX/Flax: sharded training, scaling studies, checkpoints.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["vit_jax", "vit_jax.*", "experiments", "experiments.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
