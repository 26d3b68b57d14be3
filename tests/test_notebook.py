"""The Colab notebook runs end to end (nbclient, no network) on a checkpoint of a tiny run.

The run trains with FSDP over 8 fake devices; the notebook's kernel has one device, so this also
shows `vit_jax.load` restoring a sharded checkpoint on a single CPU.
"""

import pathlib

import pytest
from test_train import small_config, write_folder

from vit_jax import train

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "vit_jax_colab.ipynb"


def test_colab_notebook_runs_on_a_tiny_run(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = write_folder(tmp_path / "data", n_per_class=(8, 8, 8))
    write_folder(tmp_path / "data", n_per_class=(2, 1, 1), split="test", seed=1)
    c = small_config(total_steps=2, eval_every=0, sharding="fsdp", mesh=(("data", 8),))
    c.data.source, c.data.root, c.progress_bar = "folder", str(root), False
    train.train_and_evaluate(c, str(tmp_path / "run"))

    for key, value in {
        "VIT_JAX_CHECKPOINT": str(tmp_path / "run"),
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
    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    images = [
        o for cell in nb.cells for o in cell.get("outputs", ()) if "image/png" in o.get("data", {})
    ]
    assert "Classifier('mu/4', num_classes=3, image_size=16)" in text
    assert "classes: ('class0', 'class1', 'class2')" in text
    assert "4 images -> (4, 16, 16, 3)" in text and "attention maps: (1, 4, 2, 17, 17)" in text
    assert "0.png [('class" in text  # Predictions carry class names.
    assert len(images) == 2  # Predictions and attention plots.
