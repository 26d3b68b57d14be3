"""The data-size study: its sweep's points, and the report that says whether the CNN–ViT gap
shrinks, holds or flips as the training set grows (on synthetic rows: no training here)."""

from __future__ import annotations

import json

import pytest

from experiments import analysis, data_size, results, run, sweep

SWEEP = "experiments/sweeps/fmnist_data_scaling.py"


def _rows(acc: dict, *, n_eval=10_000):
    """acc: family → accuracies at 100, 1000, 10000 examples (one model per family)."""
    return [
        {"name": f"{fam}_n{n}", "family": fam, "model": f"{fam}-s", "train_examples": n,
         "accuracy": a, "eval_examples": n_eval, "train_exaflops": 1e-9}
        for fam, accs in acc.items() for n, a in zip((100, 1000, 10_000), accs, strict=True)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "resnet, vit, verdict",
    [((0.70, 0.80, 0.85), (0.55, 0.72, 0.83), "shrinks"),
     ((0.70, 0.80, 0.85), (0.55, 0.75, 0.90), "flips"),
     ((0.70, 0.80, 0.85), (0.60, 0.70, 0.755), "holds"),
     ((0.70, 0.80, 0.90), (0.68, 0.70, 0.70), "grows")],
)  # fmt: skip
def test_gap_verdicts(resnet, vit, verdict):
    trend = data_size.gap_trend(_rows({"resnet": resnet, "vit": vit}), family="resnet")
    assert trend["verdict"] == verdict
    assert trend["sizes"] == [100, 1000, 10_000]
    assert trend["gaps"][0] == pytest.approx(resnet[0] - vit[0])
    assert f"**{verdict}**" in data_size.describe(trend)


def test_a_change_within_test_noise_holds():
    """A 3-point change is beyond noise on 10,000 test images (2 s.e. ≈ 1.9) but not on 500."""
    rows = {"resnet": (0.70, 0.75, 0.80), "vit": (0.60, 0.66, 0.73)}
    assert data_size.gap_trend(_rows(rows), family="resnet")["verdict"] == "shrinks"
    assert data_size.gap_trend(_rows(rows, n_eval=500), family="resnet")["verdict"] == "holds"


def test_analysis_of_a_data_sweep_writes_the_plot_and_the_verdicts(tmp_path):
    rows = _rows(
        {"resnet": (0.7, 0.8, 0.85), "hybrid": (0.72, 0.8, 0.86), "vit": (0.55, 0.7, 0.83)}
    )
    out = analysis.analyze(rows, tmp_path, title="data")
    png = (tmp_path / "data_size.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and tmp_path / "data_size.png" in out["plots"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| resnet | resnet-s | 70.0 | 80.0 | 85.0 |" in summary
    assert "ResNet − ViT gap" in summary and "hybrid − ViT gap" in summary
    assert not data_size.is_data_sweep([r for r in rows if r["train_examples"] == 100])


def test_the_study_spans_32x_with_the_same_images_for_every_point():
    points = sweep.expand(sweep.load_sweep(SWEEP))
    assert len(points) == 24
    by_family = {}
    for p in points:
        by_family.setdefault(p.family, set()).add(p.model)
    assert {f: len(m) for f, m in by_family.items()} == {"vit": 2, "resnet": 2, "hybrid": 2}
    sizes = sorted({p.config.data.train_examples for p in points})
    assert len(sizes) >= 4 and sizes[-1] / sizes[0] >= 30
    assert {p.config.total_steps * p.config.batch_size for p in points} == {6_400}
    assert {p.config.data.eval_split for p in points} == {"test"}  # The full test set.
    assert points[3].name == "ViT-mu7_n3200"


def test_smoke_rows_carry_train_examples_and_family(tmp_path, monkeypatch):
    """The smoke sweep's points through results.point_row, from an engine-like metrics file."""
    monkeypatch.setattr(results, "dataset_shape", lambda data_config: (10, 1))
    points = sweep.expand(sweep.load_sweep(SWEEP), smoke=True)
    assert {p.config.data.train_examples for p in points} == {20, 600}
    point = next(p for p in points if p.family == "resnet")
    run.write_point_config(point, tmp_path / "config.py")
    line = {"step": 12, "kind": "eval", "accuracy": 0.5, "eval_examples": 500}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(line) + "\n")
    row = results.point_row(point, workdir=tmp_path, wall_s=1.0, cores=1)
    assert (row["family"], row["train_examples"], row["eval_examples"]) == ("resnet", 20, 500)
    assert "train_examples" in results.COLUMNS


def test_the_accelerator_version_reaches_the_full_training_set():
    points = sweep.expand(sweep.load_sweep("experiments/sweeps/fmnist_data_scaling_full.py"))
    sizes = sorted({p.config.data.train_examples for p in points})
    assert sizes[-1] == 60_000 and len(sizes) == 6 and len(points) == 9 * len(sizes)
    assert {p.config.total_steps * p.config.batch_size for p in points} == {1_280_000}
