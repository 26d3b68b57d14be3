"""Scaling analysis: Pareto frontier, saturating power law, plots and a markdown summary.

    python -m experiments.analysis --workdir=DIR            # a sweep's DIR/results.jsonl
    python -m experiments.analysis --paper [--out=DIR]      # the ViT paper's Table 6, same code

The law is Zhai et al. (2022)'s E(C) = a·(C + d)^(−b) + c, fit on the compute-optimal frontier only
(off-frontier runs are under- or over-sized for their compute and would bend the fit). c is the
irreducible error; d shifts the low-compute end, where small runs saturate near chance.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
import warnings

import numpy as np
from scipy import optimize

from vit_jax import paths

PAPER_TABLE = pathlib.Path(__file__).with_name("paper_table6.csv")
PAPER_METRICS = ("imagenet", "imagenet_real", "cifar10", "cifar100", "pets", "flowers")


def pareto_frontier(compute, error) -> np.ndarray:
    """Indices of the points no other point beats on both axes, by increasing compute.

    A point is on the frontier when its error is strictly below that of every point with less
    or equal compute (so among equal-compute points only the best one can be).
    """
    compute, error = np.asarray(compute, float), np.asarray(error, float)
    order = np.lexsort((error, compute))
    keep, best = [], np.inf
    for i in order:
        if error[i] < best:
            keep.append(i)
            best = error[i]
    return np.asarray(keep, dtype=int)


def saturating_power_law(c, a, b, irreducible, d):
    """E(C) = a·(C + d)^(−b) + c."""
    return a * np.power(np.asarray(c, float) + d, -b) + irreducible


def fit_power_law(compute, error) -> dict[str, float] | None:
    """Fits E(C) = a·(C + d)^(−b) + c in log space; None with fewer than 2 points.

    Compute is rescaled to start at 1 for conditioning; several starts (c from 0 to just under
    min E, d from 0 to the data's scale) guard against local minima. With 3 points d is fixed at
    0, with 2 also c: a law with more constants than points would fit anything.
    """
    c_, e = np.asarray(compute, float), np.asarray(error, float)
    if len(c_) < 2 or np.any(c_ <= 0) or np.any(e <= 0):
        return None
    scale = c_.min()
    x, log_e = c_ / scale, np.log(e)
    free_c, free_d = len(x) >= 3, len(x) >= 4
    best = None
    for c0 in (0.0, 0.3, 0.6, 0.9) if free_c else (0.0,):
        for d0 in (0.0, 0.3, 3.0) if free_d else (0.0,):
            fit = _fit_from(x, log_e, c0=c0 * e.min(), d0=d0, free_c=free_c, free_d=free_d)
            if fit is not None and (best is None or fit[1] < best[1]):
                best = fit
    if best is None:
        return None
    (a, b, irreducible, d), sse = best
    # Back to the caller's units: a·(x + d)^−b = a·s^b·(C + d·s)^−b.
    return {
        "a": float(a * scale**b),
        "b": float(b),
        "c": float(irreducible),
        "d": float(d * scale),
        "rmse_log": float(np.sqrt(sse / len(x))),
        "points": len(x),
    }


def _fit_from(x, log_e, *, c0, d0, free_c, free_d):
    e = np.exp(log_e)
    slope, intercept = np.polyfit(np.log(x + d0), np.log(np.maximum(e - c0, 1e-12)), 1)
    b0 = float(np.clip(-slope, 1e-3, 4.0))
    p0 = [float(intercept), b0, c0, d0]
    lo = [-50.0, 0.0, 0.0, 0.0]
    hi = [50.0, 5.0, float(e.min()) * 0.999 if free_c else 1e-12, 10 * x.max() if free_d else 1e-12]
    p0 = list(np.clip(p0, lo, hi))

    def model(x, log_a, b, c, d):
        return np.log(np.exp(log_a) * np.power(x + d, -b) + c)

    try:
        with warnings.catch_warnings():  # As many constants as points: no covariance, fine.
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            p, _ = optimize.curve_fit(model, x, log_e, p0=p0, bounds=(lo, hi), maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    sse = float(np.sum((model(x, *p) - log_e) ** 2))
    return (np.exp(p[0]), p[1], p[2], p[3]), sse


def load_rows(path) -> list[dict]:
    """Rows of a results.jsonl (failed points included; callers filter on 'accuracy')."""
    return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]


def load_paper_rows(metric: str = "imagenet") -> list[dict]:
    """Table 6 as result rows: accuracy = `metric` / 100 (or 'average5', Fig. 5's left panel)."""
    rows = []
    with open(PAPER_TABLE, encoding="utf-8") as f:
        for rec in csv.DictReader(line for line in f if not line.startswith("#")):
            accs = {k: float(rec[k]) / 100 for k in PAPER_METRICS}
            avg5 = np.mean(
                [accs[k] for k in ("imagenet", "cifar10", "cifar100", "pets", "flowers")]
            )
            accuracy = avg5 if metric == "average5" else accs[metric]
            rows.append(
                {
                    "name": f"{rec['model']} ({rec['epochs']} ep)",
                    "model": rec["model"],
                    "family": rec["family"],
                    "epochs": int(rec["epochs"]),
                    "train_exaflops": float(rec["exaflops"]),
                    "accuracy": float(accuracy),
                    **accs,
                }
            )
    return rows


def analyze(rows, out_dir, *, title: str = "", x_key: str = "train_exaflops", stem="compute"):
    """Frontier + fit + plots + DIR/summary.md; returns {'frontier': [...], 'fit': {...}}."""
    from experiments import plots  # deferred: matplotlib, only when plotting.

    out_dir = paths.makedirs(out_dir)
    done = [r for r in rows if r.get("accuracy") is not None and r.get(x_key)]
    compute = np.array([r[x_key] for r in done], float)
    error = np.array([1.0 - r["accuracy"] for r in done], float)
    front = pareto_frontier(compute, error) if done else np.array([], int)
    fit = fit_power_law(compute[front], error[front]) if len(front) else None
    written = [
        plots.plot_vs(
            done, out_dir / f"{stem}.png", x_key=x_key, frontier=front, fit=fit, title=title
        )
    ]
    for key in ("params", "images_seen"):
        if done and all(r.get(key) for r in done):
            written.append(plots.plot_vs(done, out_dir / f"{key}.png", x_key=key, title=title))
    summary = markdown_summary(done, front=front, fit=fit, x_key=x_key, title=title)
    (out_dir / "summary.md").write_text(summary, encoding="utf-8")
    return {
        "frontier": [done[i]["name"] for i in front],
        "fit": fit,
        "plots": written,
        "summary": summary,
    }


def markdown_summary(rows, *, front, fit, x_key, title="") -> str:
    """A table of every finished point (frontier marked), then the fitted law's constants."""
    cols = ["name", "family", "params", x_key, "images_seen", "accuracy"]
    cols += sorted({k for r in rows for k in r if k.startswith("fewshot_")})
    cols += [k for k in ("finetune_accuracy",) if any(r.get(k) is not None for r in rows)]
    cols += [k for k in ("wall_s",) if any(k in r for r in rows)]
    on_front = {rows[i]["name"] for i in front}
    lines = [f"# {title or 'Scaling results'}", ""]
    lines += ["| " + " | ".join(cols + ["frontier"]) + " |", "|" + "---|" * (len(cols) + 1)]
    for r in sorted(rows, key=lambda r: r[x_key]):
        cells = [_fmt(r.get(c)) for c in cols] + ["*" if r["name"] in on_front else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if fit:
        lines.append(
            f"Frontier fit E(C) = a·(C + d)^(−b) + c with C = {x_key}: "
            f"a = {fit['a']:.4g}, b = {fit['b']:.4g}, c = {fit['c']:.4g}, d = {fit['d']:.4g} "
            f"({fit['points']} frontier points, RMSE of log E = {fit['rmse_log']:.3g})."
        )
    else:
        lines.append("No power-law fit (fewer than 2 frontier points).")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.3e}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:.3e}"
    return "" if v is None else str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="A sweep's DIR (reads DIR/results.jsonl).")
    parser.add_argument("--paper", action="store_true", help="Analyze the ViT paper's Table 6.")
    parser.add_argument("--out", help="Where plots and summary.md go (default: workdir).")
    args = parser.parse_args(argv)
    if args.paper:
        out = pathlib.Path(args.out or "runs/paper_table6")
        for metric in ("imagenet", "average5"):
            result = analyze(
                load_paper_rows(metric),
                out / metric,
                title=f"ViT paper Table 6 — {metric} (JFT-300M pre-training)",
            )
            print(result["summary"])
        return 0
    if not args.workdir:
        parser.error("give --workdir=DIR or --paper")
    result = analyze(
        load_rows(paths.path(args.workdir) / "results.jsonl"),
        args.out or args.workdir,
        title=paths.path(args.workdir).name,
    )
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
