"""Scaling analysis: Pareto frontier, saturating power law, plots and a markdown summary.

    python -m experiments.analysis --workdir=DIR            # a sweep's DIR/results.jsonl
    python -m experiments.analysis --paper [--out=DIR]      # the ViT paper's Table 6, same code

The law is Zhai et al. (2022)'s E(C) = a·(C + d)^(−b) + c, fit on the compute-optimal frontier only
(off-frontier runs are under- or over-sized for their compute and would bend the fit), and on each
family's own frontier. c is the irreducible error; d shifts the low-compute end, where small runs
saturate near chance. experiments.powerlaw keeps every fit overdetermined and gives each constant
a standard error; where the points are too few there is no fit and no curve, and the summary
says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

from experiments import powerlaw
from experiments.powerlaw import fit_power_law, saturating_power_law  # noqa: F401 (re-exported)
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
    families = family_fits(done, x_key=x_key)
    written = [
        plots.plot_vs(
            done, out_dir / f"{stem}.png", x_key=x_key, frontier=front, fit=fit, title=title,
            family_fits={f: v["fit"] for f, v in families.items()},
        )
    ]  # fmt: skip
    for key in ("params", "images_seen"):
        if done and all(r.get(key) for r in done):
            written.append(plots.plot_vs(done, out_dir / f"{key}.png", x_key=key, title=title))
    summary = markdown_summary(done, front=front, fit=fit, x_key=x_key, title=title)
    summary += "".join(
        f"\n{powerlaw.describe(v['fit'], points=v['points'], x_key=x_key, what=f'{f} frontier')}\n"
        for f, v in families.items()
    )
    from experiments import data_size

    if data_size.is_data_sweep(done):  # A data-size study: accuracy vs training-set size.
        path, section = data_size.report(done, out_dir, title=title)
        written.append(path)
        summary += "\n" + section
    (out_dir / "summary.md").write_text(summary, encoding="utf-8")
    return {
        "frontier": [done[i]["name"] for i in front],
        "fit": fit,
        "family_fits": families,
        "plots": written,
        "summary": summary,
    }


def family_fits(rows, *, x_key: str) -> dict[str, dict]:
    """Each family's own frontier and its fit: family → {'points': n, 'fit': dict | None}."""
    out = {}
    for fam in sorted({r.get("family", "") for r in rows}):
        members = [r for r in rows if r.get("family", "") == fam]
        compute = np.array([r[x_key] for r in members], float)
        error = np.array([1.0 - r["accuracy"] for r in members], float)
        front = pareto_frontier(compute, error)
        out[fam] = {"points": len(front), "fit": fit_power_law(compute[front], error[front])}
    return out


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
    lines.append(powerlaw.describe(fit, points=len(front), x_key=x_key))
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
