"""Scaling experiments: sweep expansion, compute accounting, frontier and law fit, plots, the
runner's resume and failure handling, the TPU VM command sequence, and the default study's smoke
run through the real engine."""

import importlib.util
import json
import pathlib
import stat
import subprocess
import sys

import numpy as np
import pytest

from experiments import analysis, backends, progress, results, run, sweep
from vit_jax import config_lib, flops

ROOT = pathlib.Path(__file__).resolve().parents[1]
JFT_IMAGES, JFT_CLASSES = 303e6, 18291


def _sweep(axes, **kw):
    base = config_lib.base_config()
    base.total_steps = 2
    return sweep.Sweep(base=base, axes=axes, **kw)


# ------------------------------------------------------------------------------ definitions


def test_product_of_zips_names_and_families():
    axes = sweep.product(
        sweep.zip_(
            sweep.axis("model.name", ["Ti/4", "R14-w16", "R11-w8+mu/4"]),
            sweep.axis("total_steps", [2000, 1000, 500]),
        ),
        sweep.axis("optim.lr", [1e-3, 3e-4]),
        sweep.axis("seed", [0]),
    )
    pts = sweep.expand(_sweep(axes))
    assert [p.name for p in pts] == [
        "ViT-Ti4_steps2000_lr1e-3_s0",
        "ViT-Ti4_steps2000_lr3e-4_s0",
        "R14-w16_steps1000_lr1e-3_s0",
        "R14-w16_steps1000_lr3e-4_s0",
        "R11-w8+mu4_steps500_lr1e-3_s0",
        "R11-w8+mu4_steps500_lr3e-4_s0",
    ]
    assert [p.family for p in pts[::2]] == ["vit", "resnet", "hybrid"]
    assert pts[3].config.optim.lr == 3e-4 and pts[3].config.total_steps == 1000
    assert pts[0].config.model.name == "Ti/4"


def test_names_are_filesystem_safe_and_model_prefixed():
    pts = sweep.expand(_sweep(sweep.axis("data.train_split", ["train[:10%]", "train[10%:20%]"])))
    assert [p.name for p in pts] == ["ViT-Ti16_train-10pct", "ViT-Ti16_train10pct-20pct"]
    assert pts[0].config.data.train_split == "train[:10%]"
    assert sweep.sanitize("a b/c:d%?*") == "a-b-c-dpct"


@pytest.mark.parametrize(
    "axes,match",
    [
        (sweep.axis("optim.lrr", [1.0]), "unknown config key 'optim.lrr'"),
        (sweep.axis("nope", [1]), "unknown config key 'nope'"),
        (sweep.axis("total_steps", ["many"]), "config key 'total_steps'"),
        (sweep.axis("model.name", ["Q/99"]), "config.model.name='Q/99'"),
    ],
)
def test_bad_override_fails_at_expansion_with_one_line(axes, match):
    with pytest.raises(sweep.SweepError, match=match) as err:
        sweep.expand(_sweep(axes))
    assert "\n" not in str(err.value)


def test_zip_needs_equal_lengths_and_product_rejects_clashes():
    with pytest.raises(sweep.SweepError, match="different lengths"):
        sweep.zip_(sweep.axis("seed", [0, 1]), sweep.axis("optim.lr", [1.0]))
    with pytest.raises(sweep.SweepError, match="'seed' set by two"):
        sweep.product(sweep.axis("seed", [0]), sweep.axis("seed", [1]))
    with pytest.raises(sweep.SweepError, match="two points named"):
        sweep.expand(_sweep(sweep.axis("seed", [0, 0])))


def test_smoke_variant_and_epochs():
    s = _sweep(
        sweep.axis("seed", [0, 1, 2]),
        smoke_axes=sweep.axis("epochs", [0.5]),
        smoke_overrides={"batch_size": 100},
        train_examples=1000,
    )
    assert len(sweep.expand(s)) == 3
    (p,) = sweep.expand(s, smoke=True)
    assert (p.name, p.config.total_steps, p.config.batch_size) == ("ViT-Ti16_ep0.5", 5, 100)


def test_point_config_file_round_trips(tmp_path):
    (p,) = sweep.expand(_sweep(sweep.points({"model.name": "S/4", "optim.decay_rules": ["x$"]})))
    run.write_point_config(p, tmp_path / "config.py")
    spec = importlib.util.spec_from_file_location("point_config", tmp_path / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.get_config().to_dict() == p.config.to_dict()
    assert module.get_config().optim.decay_rules == ("x$",)


def test_sweep_files_load_and_expand():
    for name in ("fmnist_scaling", "fmnist_scaling_full"):
        s = sweep.load_sweep(f"experiments/sweeps/{name}.py")
        pts = sweep.expand(s)
        families = {p.family for p in pts}
        assert families == {"vit", "resnet", "hybrid"}, name
        for fam in families:
            assert len({p.model for p in pts if p.family == fam}) >= 4, (name, fam)
    assert len(sweep.expand(sweep.load_sweep("experiments/sweeps/fmnist_scaling.py"), smoke=True))


# -------------------------------------------------------------------------- compute accounting


@pytest.mark.parametrize("model,exaflops", [("B/16", 224), ("L/16", 783)])
def test_compute_reproduces_paper_table6(model, exaflops):
    macs = flops.macs(model, image_size=224, num_classes=JFT_CLASSES)
    got = results.train_flops(macs_per_image=macs, images_seen=7 * JFT_IMAGES) / results.EXA
    assert abs(got / exaflops - 1) < 0.02, (model, got)


def test_paper_table_loads_with_its_source():
    rows = analysis.load_paper_rows()
    assert len(rows) == 18 and {r["family"] for r in rows} == {"vit", "resnet", "hybrid"}
    b16 = next(r for r in rows if r["model"] == "ViT-B/16")
    assert (b16["train_exaflops"], b16["accuracy"]) == (224.0, 0.8415)
    assert "2010.11929" in analysis.PAPER_TABLE.read_text()


# --------------------------------------------------------------------------- frontier and fit


def test_pareto_frontier_on_a_hand_made_set():
    compute = [1, 2, 2, 4, 8, 8, 16, 3]
    error = [0.5, 0.4, 0.45, 0.42, 0.3, 0.3, 0.35, 0.39]
    assert list(analysis.pareto_frontier(compute, error)) == [0, 1, 7, 4]


def test_law_fit_recovers_known_constants():
    c = np.geomspace(1e-6, 1e-1, 16)  # exaFLOPs-like tiny units: the fit must rescale.
    a, b, irreducible, d = 0.02, 0.45, 0.06, 2e-6
    e = analysis.saturating_power_law(c, a, b, irreducible, d)
    fit = analysis.fit_power_law(c, e)
    assert fit["b"] == pytest.approx(b, rel=0.02)
    assert fit["c"] == pytest.approx(irreducible, rel=0.02)
    assert fit["d"] == pytest.approx(d, rel=0.05)
    assert fit["a"] == pytest.approx(a, rel=0.05)
    noisy = e * np.exp(np.random.default_rng(0).normal(0, 0.01, len(e)))
    pred = analysis.saturating_power_law(c, fit["a"], fit["b"], fit["c"], fit["d"])
    refit = analysis.fit_power_law(c, noisy)
    assert refit["rmse_log"] < 0.02 and np.allclose(pred, e, rtol=1e-3)


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for fam, shift in (("vit", 1.0), ("resnet", 0.8), ("hybrid", 0.9)):
        for size in range(4):
            for steps in (1, 2):
                c = 10.0 ** (size + np.log10(steps))
                rows.append(
                    {
                        "name": f"{fam}{size}_{steps}",
                        "family": fam,
                        "model": f"{fam}{size}",
                        "params": 1000 * 4**size,
                        "images_seen": 64 * steps,
                        "train_exaflops": c * 1e-9,
                        "accuracy": 1 - (0.05 + shift * 0.3 * c**-0.3) * rng.uniform(0.95, 1.05),
                        "fewshot_5shot": 0.5,
                    }
                )
    return rows


def test_analysis_writes_plots_and_summary(tmp_path):
    out = analysis.analyze(
        _rows() + [{"name": "x", "status": "failed", "accuracy": None}], tmp_path
    )
    for name in ("compute.png", "params.png", "images_seen.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    summary = (tmp_path / "summary.md").read_text()
    assert "| name | family |" in summary and "fewshot_5shot" in summary
    assert out["fit"] is not None and "b = " in summary
    assert out["frontier"][0] == "resnet0_1"


def test_paper_mode_draws_table6(tmp_path, capsys):
    assert analysis.main(["--paper", f"--out={tmp_path}"]) == 0
    assert (tmp_path / "imagenet" / "compute.png").stat().st_size > 10_000
    assert "ViT-H/14 (14 ep)" in (tmp_path / "average5" / "summary.md").read_text()
    assert "Frontier fit" in capsys.readouterr().out


# ------------------------------------------------------------------------- runner and resume

FAKE_ENGINE = r"""#!/usr/bin/env bash
# Stands in for `python -m vit_jax.main`: records the call, writes an eval line, fails on demand.
echo "$@" >> "$FAKE_LOG"
for a in "$@"; do case "$a" in --workdir=*) wd="${a#--workdir=}";; esac; done
case "$wd" in *steps3*|*"${FAKE_FAIL:-none}") echo "error: boom" >&2; exit 1;; esac
echo '{"step": 2, "kind": "eval", "accuracy": 0.75, "fewshot_10shot": 0.5}' >> "$wd/metrics.jsonl"
"""


def _script(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_shapes(monkeypatch):
    """Fashion-MNIST's shape without reading the dataset: these tests are about the runner."""
    monkeypatch.setattr(results, "dataset_shape", lambda data_config: (10, 1))
    monkeypatch.setattr(results, "train_examples", lambda data_config: 60_000)


def _points():
    axes = sweep.product(
        sweep.axis("model.name", ["mu/7", "R11-w8"]), sweep.axis("total_steps", [2, 3])
    )
    return sweep.expand(_sweep(axes))


def test_runner_resumes_and_records_failures(tmp_path, monkeypatch, fake_shapes):
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_LOG", str(log))
    engine = _script(tmp_path / "fake_python", FAKE_ENGINE)
    workdir, lines = tmp_path / "sweep", []
    backend = backends.LocalBackend(parallel=2, python=str(engine))
    rows = run.Runner(_points(), workdir, backend, out=lines.append).run()
    assert len(log.read_text().splitlines()) == 4
    by_name = {r["name"]: r for r in rows}
    ok = by_name["ViT-mu7_steps2"]
    assert ok["status"] == "ok" and ok["accuracy"] == 0.75 and ok["fewshot_10shot"] == 0.5
    assert ok["train_flops"] == 6 * ok["macs_per_image"] * ok["images_seen"]
    assert ok["images_seen"] == 2 * 256 and ok["params"] > 0 and ok["cores"] == 1
    assert by_name["R11-w8_steps3"]["status"] == "failed"
    assert "boom" in by_name["R11-w8_steps3"]["error"]
    assert any("ETA" in line and "[4/4]" in line for line in lines)
    assert len((workdir / "results.jsonl").read_text().splitlines()) == 4
    assert (workdir / "results.csv").read_text().startswith("name,family,model,status")

    # Second run: finished points are skipped, failed ones retried in their own directory.
    run.Runner(_points(), workdir, backend, out=lines.append).run()
    calls = log.read_text().splitlines()
    assert len(calls) == 6 and all("steps3" in c for c in calls[4:])
    (workdir / "ViT-mu7_steps2" / "result.json").unlink()  # An interrupted point: re-run.
    run.Runner(_points(), workdir, backend, out=lines.append).run(only="mu7")
    assert len(log.read_text().splitlines()) == 8
    assert f"--workdir={workdir / 'ViT-mu7_steps2'}" in log.read_text()

    # The same names under another base config: refuse rather than mix two experiments.
    changed = _points()
    changed[0].config.optim.lr = 0.5
    with pytest.raises(run.RunError, match="different config"):
        run.Runner(changed, workdir, backend, out=lines.append).run()


def _finetune_sweep():
    stage = sweep.Finetune(
        base=sweep.load_config("configs/finetune.py:dataset=mnist"),
        overrides={"total_steps": 7, "data.train_split": "train[:10%]"},
        smoke_overrides={"data.name": "fashion_mnist"},
    )
    axes = sweep.product(sweep.axis("model.name", ["mu/7"]), sweep.axis("total_steps", [2]))
    base = config_lib.base_config()
    base.model.classifier = "gap"
    return sweep.Sweep(base=base, axes=axes, finetune=stage)


def test_finetune_stage_config_takes_the_points_model():
    (p,) = sweep.expand(_finetune_sweep())
    ft = p.finetune
    assert ft.model.name == "mu/7" and ft.model.classifier == "gap"  # The point's model keys.
    assert ft.model.dtype == "float32"  # Pre-training's numerics, not the recipe's bfloat16.
    assert ft.optim.name == "sgd" and ft.data.name == "mnist" and ft.data.image_size == 28
    assert ft.total_steps == 7 and ft.data.train_split == "train[:10%]"
    assert ft.data.flip is False and ft.data.augment == "pad_crop"  # Digits: crops, no flips.
    (smoke,) = sweep.expand(_finetune_sweep(), smoke=True)
    assert smoke.finetune.data.name == "fashion_mnist"
    bad = _finetune_sweep()
    bad.finetune.overrides["optim.lrr"] = 1.0
    with pytest.raises(sweep.SweepError, match="finetune of point ViT-mu7_steps2.*optim.lrr"):
        sweep.expand(bad)


def test_runner_runs_the_finetune_stage_from_the_points_weights(tmp_path, monkeypatch, fake_shapes):
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_LOG", str(log))
    engine = _script(tmp_path / "fake_python", FAKE_ENGINE)
    workdir = tmp_path / "sweep"
    backend = backends.LocalBackend(python=str(engine))
    (row,) = run.Runner(sweep.expand(_finetune_sweep()), workdir, backend, out=print).run()
    pre, ft = log.read_text().splitlines()
    point = workdir / "ViT-mu7_steps2"
    assert f"--workdir={point}" in pre.split() and "init_from" not in pre
    assert f"--workdir={point / 'finetune'}" in ft.split()
    assert f"--config.init_from.path={point}" in ft.split()
    assert "'data.name': 'mnist'" in (point / "finetune" / "config.py").read_text()
    assert row["status"] == "ok" and row["finetune_accuracy"] == 0.75 and row["cpu_s"] >= 0
    assert row["finetune_dataset"] == "mnist" and row["finetune_steps"] == 7
    assert "finetune_accuracy" in (workdir / "results.csv").read_text().splitlines()[0]
    # A transfer stage without an eval line fails the point (and it runs again next time).
    (point / "result.json").unlink()
    (point / "finetune" / "metrics.jsonl").unlink()
    monkeypatch.setenv("FAKE_FAIL", "finetune")
    (row,) = run.Runner(sweep.expand(_finetune_sweep()), workdir, backend, out=print).run()
    assert row["status"] == "failed" and "boom" in row["error"]


def test_dry_run_prints_points_without_running(tmp_path, fake_shapes):
    lines = []
    backend = backends.LocalBackend(python="/nonexistent/python")
    assert run.Runner(_points(), tmp_path, backend, out=lines.append).run(dry_run=True) == []
    text = "\n".join(lines)
    assert "4 point(s) to run" in text and "R11-w8_steps3" in text and "vit_jax.main" in text
    assert not (tmp_path / "results.jsonl").exists()


def test_progress_bar_counts_running_points_by_their_steps(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    # A tail that starts mid-line and ends in a line still being written: both are skipped.
    (a / "metrics.jsonl").write_text(
        "x" * 5000 + '\n{"step": 25, "kind": "train"}\n{"step": 50, "kind": "train"}\n{"st'
    )
    assert progress.latest_step(a) == 50 and progress.latest_step(b) == 0
    lines = []
    p = progress.Progress({"a": 1.0, "b": 2.0, "c": 3.0}, steps={"a": 100, "b": 200, "c": 300},
                          out=lines.append, bar=True)  # fmt: skip
    p.start("a", a)
    p.start("b", b)
    p.tick()
    assert p.bar.n == pytest.approx(0.5)  # a half done, b not started its steps yet
    p.finish("a", 10.0, "ok")
    assert p.bar.n == pytest.approx(1.0) and p.eta() > 0
    p.close()
    assert lines == []  # With a bar, the lines go through tqdm.write, not the plain printer.


# ------------------------------------------------------------------ the default study, for real


def test_default_study_smoke_run_end_to_end(tmp_path):
    workdir = tmp_path / "fmnist"
    cmd = [sys.executable, "-m", "experiments.run", "--sweep=experiments/sweeps/fmnist_scaling.py",
           f"--workdir={workdir}", "--smoke", "--parallel=2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {r["family"] for r in rows} == {"vit", "resnet", "hybrid"}
    required = {"name", "family", "model", "params", "macs_per_image", "images_seen",
                "train_flops", "train_exaflops", "core_hours", "accuracy", "wall_s"}  # fmt: skip
    for r in rows:
        assert required <= set(r) and r["status"] == "ok", r
        assert 0.0 <= r["accuracy"] <= 1.0 and r["cpu_s"] > 0
        assert 0.0 <= r["fewshot_10shot"] <= 1.0 and "fewshot_1shot" in r
    assert (workdir / "compute.png").stat().st_size > 10_000
    assert (workdir / "summary.md").exists() and (workdir / "results.csv").exists()
    assert f"plots: {workdir / 'compute.png'}" in proc.stdout
    # Resume: everything is finished, nothing runs again.
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("skip ") == 3


def test_full_study_smoke_runs_the_transfer_stage_through_the_engine(tmp_path):
    workdir = tmp_path / "full"
    cmd = [sys.executable, "-m", "experiments.run", f"--workdir={workdir}", "--smoke",
           "--sweep=experiments/sweeps/fmnist_scaling_full.py", "--only=ViT"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "ok" and 0.0 <= row["finetune_accuracy"] <= 1.0
    # The offline transfer task (scikit-learn's digits) in both probes: no download anywhere.
    assert row["finetune_dataset"] == "digits" and 0.0 <= row["fewshot_10shot"] <= 1.0
    ft = workdir / row["name"] / "finetune"
    assert json.loads((ft / "config.json").read_text())["data"]["train_split"] == "train"
    assert json.loads((ft / "config.json").read_text())["init_from"]["path"] == str(
        workdir / row["name"]
    )  # The engine got the point's weights through the command line.
    assert "finetune_accuracy" in (workdir / "summary.md").read_text()
