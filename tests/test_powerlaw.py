"""The scaling-law fit keeps a degree of freedom, gives each constant an uncertainty, and says
when it is underdetermined (no fit, no curve) instead of passing a law through every point."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import analysis, plots, powerlaw

A, B, C, D = 0.02, 0.45, 0.06, 2e-6


def law(compute):
    return powerlaw.saturating_power_law(compute, A, B, C, D)


def test_known_constants_recovered_with_small_uncertainties():
    compute = np.geomspace(1e-6, 1e-1, 16)  # exaFLOPs-like tiny units: the fit must rescale.
    fit = powerlaw.fit_power_law(compute, law(compute))
    assert fit["free"] == ("a", "b", "c", "d") and fit["points"] == 16
    for key, true in zip("abcd", (A, B, C, D), strict=True):
        assert fit[key] == pytest.approx(true, rel=0.05), key
        assert 0 <= fit[f"{key}_err"] < 0.05 * true, key  # Exact data: tiny uncertainties.


def test_noisy_constants_lie_within_their_uncertainty():
    compute = np.geomspace(1e-6, 1e-1, 24)
    noise = np.exp(np.random.default_rng(0).normal(0, 0.02, len(compute)))
    fit = powerlaw.fit_power_law(compute, law(compute) * noise)
    for key, true in (("b", B), ("c", C)):
        assert abs(fit[key] - true) < 4 * fit[f"{key}_err"], (key, fit[key], fit[f"{key}_err"])
        assert fit[f"{key}_err"] < 0.5 * true, key  # The data do pin them down.


def test_few_points_free_fewer_constants():
    """3 points fit a pure power law (2 constants), 4 add c; d and c are held at 0 and said so."""
    compute = np.array([1e-3, 1e-2, 1e-1, 1.0])
    error = 0.3 * compute**-0.2
    three = powerlaw.fit_power_law(compute[:3], error[:3])
    assert three["free"] == ("a", "b") and three["c"] == 0 and three["d"] == 0
    assert three["b"] == pytest.approx(0.2, rel=1e-3) and three["a"] == pytest.approx(0.3, rel=1e-3)
    assert three["c_err"] == 0 and three["d_err"] == 0
    text = powerlaw.describe(three, points=3, x_key="C")
    assert "c, d held at 0" in text and "1 degree(s) of freedom" in text and "b = 0.2 ±" in text
    assert powerlaw.fit_power_law(compute, error)["free"] == ("a", "b", "c")


def test_two_points_are_underdetermined_no_fit_no_curve(tmp_path, monkeypatch):
    assert powerlaw.fit_power_law([1.0, 2.0], [0.5, 0.4]) is None
    assert "No power-law fit: 2 point(s)" in powerlaw.describe(None, points=2, x_key="C")
    drawn = []
    monkeypatch.setattr(plots, "_draw_fit", lambda *a, **k: drawn.append(k["label"]))
    rows = [  # One family, two models: a frontier of 2 points.
        {"name": f"m{i}", "family": "vit", "model": f"m{i}", "train_exaflops": c, "accuracy": a}
        for i, (c, a) in enumerate([(1e-9, 0.5), (1e-8, 0.6)])
    ]
    out = analysis.analyze(rows, tmp_path)
    assert out["fit"] is None and drawn == []
    summary = (tmp_path / "summary.md").read_text()
    assert "Frontier: No power-law fit: 2 point(s) are too few" in summary
    assert "vit frontier: No power-law fit" in summary


def test_enough_points_draw_the_frontier_and_family_curves(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_draw_fit", lambda *a, **k: drawn.append(k["label"]))
    compute = np.geomspace(1e-9, 1e-6, 6)
    rows = [
        {"name": f"{fam}{i}", "family": fam, "model": f"{fam}{i}", "train_exaflops": c * k,
         "accuracy": 1 - float(law(c * 1e3)) * k}
        for fam, k in (("vit", 1.0), ("resnet", 1.1)) for i, c in enumerate(compute)
    ]  # fmt: skip
    out = analysis.analyze(rows, tmp_path)
    assert drawn == ["frontier fit", "resnet fit", "vit fit"]
    assert out["family_fits"]["vit"]["fit"]["b"] == pytest.approx(B, rel=0.05)
    assert "± " in (tmp_path / "summary.md").read_text()
