"""The Colab notebook runs end to end (nbclient, no network) on the checkpoint of a tiny run."""

import pathlib

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
    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
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
