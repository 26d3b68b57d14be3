"""Accuracy against training-set size per family, and what the CNN–ViT gap does as data grows.

The paper's central claim (Fig. 3/4): CNNs win on small data through their inductive bias, ViT
catches up and overtakes as the data grows. For a sweep whose rows vary `train_examples`, this
draws accuracy against the subset size (a line per model, a colour per family) and compares each
family's best model with the ViTs' best at the smallest and largest size both families ran. The
verdict accounts for test-set noise: a gap's standard error is the binomial one of its two
accuracies (sqrt(p(1 − p)/n) each, n = the eval examples), and a change smaller than twice its
standard error is reported as "holds".
"""

from __future__ import annotations

import math
import pathlib
from collections import defaultdict

from experiments import plots

plt = plots.plt
Z = 2.0  # Standard errors a change must exceed to count.
NAMES = {"vit": "ViT", "resnet": "ResNet", "hybrid": "hybrid"}


def is_data_sweep(rows) -> bool:
    """True when finished rows ran at more than one training-set size."""
    return len({r.get("train_examples") for r in _finished(rows)}) > 1


def _finished(rows):
    return [r for r in rows if r.get("accuracy") is not None and r.get("train_examples")]


def best_by_size(rows, family: str) -> dict[int, dict]:
    """train_examples → the family's most accurate row at that size."""
    best: dict[int, dict] = {}
    for r in _finished(rows):
        n = int(r["train_examples"])
        if r.get("family") == family and (n not in best or r["accuracy"] > best[n]["accuracy"]):
            best[n] = r
    return best


def _stderr(row) -> float:
    n, p = row.get("eval_examples"), row["accuracy"]
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def gap_trend(rows, *, family: str, versus: str = "vit") -> dict | None:
    """Best `family` minus best `versus` accuracy at the smallest and largest shared size."""
    a, b = best_by_size(rows, family), best_by_size(rows, versus)
    sizes = sorted(set(a) & set(b))
    if len(sizes) < 2:
        return None
    gaps = {n: a[n]["accuracy"] - b[n]["accuracy"] for n in sizes}
    se = {n: math.hypot(_stderr(a[n]), _stderr(b[n])) for n in sizes}
    small, large = sizes[0], sizes[-1]
    g0, g1 = gaps[small], gaps[large]
    change_se = math.hypot(se[small], se[large])
    if g0 * g1 < 0 and abs(g0) > Z * se[small] and abs(g1) > Z * se[large]:
        verdict = "flips"
    elif abs(g1) < abs(g0) - Z * change_se:
        verdict = "shrinks"
    elif abs(g1) > abs(g0) + Z * change_se:
        verdict = "grows"
    else:
        verdict = "holds"
    return {
        "family": family,
        "versus": versus,
        "sizes": sizes,
        "gaps": [gaps[n] for n in sizes],
        "stderr": [se[n] for n in sizes],
        "change_stderr": change_se,
        "verdict": verdict,
    }


def describe(trend: dict) -> str:
    """One sentence with the measured gaps and the verdict."""
    who = f"{NAMES.get(trend['family'], trend['family'])} − {NAMES.get(trend['versus'])}"
    steps = ", ".join(
        f"{100 * g:+.1f} at {n:,}" for n, g in zip(trend["sizes"], trend["gaps"], strict=True)
    )
    noise = f"±{100 * Z * trend['change_stderr']:.1f}"
    return (
        f"{who} gap (best model of each, accuracy points by training examples): {steps}; "
        f"from the smallest to the largest size it **{trend['verdict']}** "
        f"(a change counts beyond {noise} points, {Z:g} standard errors of test-set noise)."
    )


def markdown(rows) -> str:
    """A table of accuracy by model and training-set size, then the gap verdicts."""
    done = _finished(rows)
    sizes = sorted({int(r["train_examples"]) for r in done})
    by_model = defaultdict(dict)
    for r in done:
        by_model[(r.get("family", ""), r.get("model", r["name"]))][int(r["train_examples"])] = r
    lines = ["## Accuracy by training-set size", ""]
    lines.append("| family | model | " + " | ".join(f"{n:,}" for n in sizes) + " |")
    lines.append("|---|---|" + "---|" * len(sizes))
    for (fam, model), cells in sorted(by_model.items()):
        accs = [f"{100 * cells[n]['accuracy']:.1f}" if n in cells else "" for n in sizes]
        lines.append(f"| {fam} | {model} | " + " | ".join(accs) + " |")
    lines.append("")
    for family in ("resnet", "hybrid"):
        trend = gap_trend(rows, family=family)
        if trend:
            lines += [describe(trend), ""]
    return "\n".join(lines)


def plot(rows, path, *, title: str = "") -> pathlib.Path:
    """Accuracy vs training-set size (log x): a line per model, a colour per family."""
    path = pathlib.Path(path)
    by_model = defaultdict(list)
    for r in _finished(rows):
        by_model[(r.get("family", ""), r.get("model", r["name"]))].append(r)
    fig, ax = plt.subplots(figsize=(7.6, 4.6), dpi=110)
    seen_family = defaultdict(int)
    for (fam, model), members in sorted(by_model.items()):
        members.sort(key=lambda r: r["train_examples"])
        style = plots.FAMILY_STYLE.get(fam, dict(color="tab:purple", marker="x"))
        dash = ("-", "--", ":", "-.")[seen_family[fam] % 4]
        seen_family[fam] += 1
        xs = [r["train_examples"] for r in members]
        ys = [100 * r["accuracy"] for r in members]
        ax.plot(xs, ys, dash, color=style["color"], marker=style["marker"], ms=5,
                label=f"{NAMES.get(fam, fam)} {model}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training examples (class-balanced subset)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def report(rows, out_dir, *, title: str = "") -> tuple[pathlib.Path, str]:
    """DIR/data_size.png and the markdown section (empty when the sweep has one size)."""
    path = plot(rows, pathlib.Path(out_dir) / "data_size.png", title=title)
    return path, markdown(rows)
