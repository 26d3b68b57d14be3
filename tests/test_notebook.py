"""The Colab notebook runs end to end (nbclient, no network) on the checkpoint of a tiny run."""

import os
import pathlib
import subprocess
import sys

import pytest
from test_checkpoint import tiny_data, tiny_run

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "vit_jax_colab.ipynb"


def test_colab_notebook_runs_on_a_tiny_run(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = pathlib.Path(tiny_data())
    for key, value in {
        "VIT_JAX_CHECKPOINT": str(tiny_run()),
        "VIT_JAX_IMAGES": str(root / "test"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # The kernel: one CPU device.
    monkeypatch.delenv("MPLBACKEND", raising=False)  # The kernel's inline backend renders PNGs.
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "\n".join(  # A cell's stream may arrive in several chunks: join those as they are.
        "".join(out.get("text", "") for out in cell.outputs)
        for cell in nb.cells
        if cell.cell_type == "code"
    )
    images = [
        o for cell in nb.cells for o in cell.get("outputs", ()) if "image/png" in o.get("data", {})
    ]
    assert "Classifier('mu/4', num_classes=3, image_size=16)" in text
    assert "classes: ('class0', 'class1', 'class2')" in text
    assert "4 images -> (4, 16, 16, 1)" in text and "attention maps: (1, 4, 2, 17, 17)" in text
    assert "0.png [('class" in text  # Predictions carry class names.
    assert "mean attention distance (px), layer x head: [[" in text  # mu/4: one layer.
    assert "agreement under shifts of [0, 1, 2, 3, 4] px: [1.0," in text
    assert len(images) == 2 + 5  # Predictions, attention; inspect's five figures.


def test_colab_extra_loads_and_inspects_a_run_without_tensorflow():
    """What `pip install vit_jax[colab]` gives (no TensorFlow, no TFDS) loads and inspects a run."""
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # Any import of TensorFlow or TFDS now fails.\n"
        "sys.modules['tensorflow_datasets'] = None\n"
        "import numpy as np, vit_jax\n"
        f"clf = vit_jax.load({str(tiny_run())!r})\n"
        "x = np.zeros((2, 16, 16, 1), np.uint8)\n"
        "batch = np.concatenate([clf.preprocess(im) for im in x])\n"
        "print(clf.class_names, clf.predict(batch, top_k=1)[0][0][0] in clf.class_names)\n"
        "print(clf.attention_maps(batch).shape, clf.features(batch).shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "('class0', 'class1', 'class2') True",
        "(1, 2, 2, 17, 17) (2, 32)",
    ]
