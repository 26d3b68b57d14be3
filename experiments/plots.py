"""Error-versus-scale plots (log–log), one colour per model family, as in the ViT paper's Fig. 5.

Matplotlib runs headless (Agg): sweeps run on machines without a display.
"""

from __future__ import annotations

import io
import os
import pathlib
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from vit_jax import paths  # noqa: E402

FAMILY_STYLE = {  # Paper Fig. 5: Transformer (ViT), ResNet (BiT), Hybrid.
    "vit": dict(color="tab:blue", marker="o", label="ViT"),
    "resnet": dict(color="tab:gray", marker="s", label="ResNet"),
    "hybrid": dict(color="tab:orange", marker="^", label="Hybrid"),
}
AXIS_LABELS = {
    "train_exaflops": "training compute (exaFLOPs)",
    "train_flops": "training compute (FLOPs)",
    "params": "parameters",
    "images_seen": "images seen",
    "core_hours": "core-hours",
}


def plot_vs(
    rows, path, *, x_key, frontier=None, fit=None, title="", family_fits=None
) -> pathlib.Path:
    """Error (1 − accuracy) against rows[x_key]; frontier indices and a law fit drawn if given.

    Runs of the same model (different lengths or data sizes) are joined by a faint line, so
    each model's own scaling curve shows under the cross-model frontier. A fit (the frontier's,
    or a family's in `family_fits`) is drawn only where one exists: an underdetermined law gets
    no curve. The legend sits outside the axes, off the data.
    """
    x = np.array([r[x_key] for r in rows], float)
    err = np.array([1.0 - r["accuracy"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(8.4, 4.8), dpi=110)
    by_family = defaultdict(list)
    for i, r in enumerate(rows):
        by_family[r.get("family", "vit")].append(i)
    for fam, idx in sorted(by_family.items()):
        style = FAMILY_STYLE.get(fam, dict(color="tab:purple", marker="x", label=fam))
        ax.scatter(x[idx], err[idx], s=28, alpha=0.85, edgecolors="none", **style)
        _join_models(ax, rows, idx, x, err, color=style["color"])
    if frontier is not None and len(frontier):
        ax.plot(x[frontier], err[frontier], "k-", lw=1.2, alpha=0.7, label="Pareto frontier")
    if fit:
        _draw_fit(ax, fit, x[frontier], color="k", label="frontier fit")
    for fam, fam_fit in sorted((family_fits or {}).items()):
        if fam_fit:
            color = FAMILY_STYLE.get(fam, {}).get("color", "tab:purple")
            members = np.array([r.get("family", "vit") == fam for r in rows])
            _draw_fit(ax, fam_fit, x[members], color=color, label=f"{fam} fit", style=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel(AXIS_LABELS.get(x_key, x_key))
    ax.set_ylabel("error (1 − top-1 accuracy)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format=os.path.splitext(os.fspath(path))[1][1:] or "png", bbox_inches="tight"
    )
    plt.close(fig)
    paths.write_bytes(path, buffer.getvalue())  # Local or gs:// alike.
    return paths.path(path)


def _draw_fit(ax, fit, xs_data, *, color, label, style="--"):
    xs = np.geomspace(xs_data.min() / 2, xs_data.max() * 2, 200)
    ys = fit["a"] * np.power(xs + fit["d"], -fit["b"]) + fit["c"]
    text = f"{label}: b={fit['b']:.2g}±{fit['b_err']:.1g}, c={fit['c']:.2g}"
    ax.plot(xs, ys, style, color=color, lw=1.0, label=text)


def _join_models(ax, rows, idx, x, err, *, color):
    by_model = defaultdict(list)
    for i in idx:
        by_model[rows[i].get("model", rows[i]["name"])].append(i)
    for members in by_model.values():
        if len(members) > 1:
            members = sorted(members, key=lambda i: x[i])
            ax.plot(x[members], err[members], "-", color=color, lw=0.6, alpha=0.35)
