"""Shared test setup: 8 fake CPU devices (set before jax is imported) for the sharding tests;
Fashion-MNIST prepared once per session."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import pytest  # noqa: E402
from gcs_fake import gcs_server  # noqa: E402, F401  (a real GCS server: tests/gcs_fake.py)

from vit_jax.data import fashion_mnist  # noqa: E402


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
    if not os.path.isdir(fashion_mnist.SOURCE_DIR):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    start = time.perf_counter()
    assert fashion_mnist.prepare(data_dir=data_dir) == data_dir
    print(f"\nprepared Fashion-MNIST in {time.perf_counter() - start:.1f}s")
    return data_dir


@pytest.fixture(scope="session")
def raw_test():
    return fashion_mnist.read_split(fashion_mnist.SOURCE_DIR, "test")
