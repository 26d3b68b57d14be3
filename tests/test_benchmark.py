"""vit_jax.benchmark: the CLI end to end, exact step counting, padded attention, GPU import path."""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import pytest

from vit_jax import benchmark

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAST_COMPILE = '--xla_options={"xla_backend_optimization_level": 0}'  # Logic, not speed, here.


def test_cli_train_and_inference_write_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    argv = [
        "--model=mu/16",
        "--batch=2",
        "--image_size=32",
        "--mode=train,inference",
        "--dtype=float32",
        "--steps=3",
        "--repeats=2",
        "--warmup=1",
        "--peak_n=256",
        FAST_COMPILE,
        f"--json={path}",
    ]
    assert benchmark.main(argv) == 0
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["train", "inference"]
    for r in records:
        assert r["status"] == "ok", r
        for key in ("images_per_sec", "tflops", "mfu", "compile_s", "flops_per_image"):
            assert r[key] > 0, key
        assert 0 < r["mfu"] <= 1
        assert r["steps"] == 3 and len(r["times_s"]) == 2
        median = statistics.median(r["times_s"])  # img/s = batch × steps / median repeat.
        assert r["images_per_sec"] == pytest.approx(2 * 3 / median)
        assert r["step_time_s"] == pytest.approx(median / 3)
        assert r["program_bytes"] > 0
        assert r["attention"] == "xla" and r["param_dtype"] == "float32"
    assert records[0]["flops_per_image"] == 3 * records[1]["flops_per_image"]
    assert "| mu/16 | train | 2 | float32 |" in capsys.readouterr().out


class FakeClock:
    """Advances `per_call` seconds per step call; records how many calls each reading saw."""

    def __init__(self, per_call=0.0):
        self.calls, self.now, self.per_call, self.readings = 0, 0.0, per_call, []

    def __call__(self):
        self.readings.append(self.calls)
        return self.now

    def step(self, carry):
        self.calls += 1
        self.now += self.per_call
        return carry + 1, self.calls


def test_measure_times_exactly_the_counted_steps():
    clock = FakeClock(per_call=0.5)
    timing = benchmark.measure(clock.step, 0, steps=7, repeats=3, warmup=2, clock=clock)
    assert clock.calls == timing["calls"] == 2 + 3 * 7
    assert timing["steps"] == 7
    assert timing["times_s"] == [3.5, 3.5, 3.5]  # 7 steps × 0.5 s: no more, no fewer.
    # Readings come in (start, stop) pairs; each timed pair brackets exactly its own steps.
    pairs = list(zip(clock.readings[::2], clock.readings[1::2], strict=True))
    assert [b - a for a, b in pairs] == [2, 7, 7, 7]


def test_measure_calibrates_steps_to_a_target_duration():
    clock = FakeClock(per_call=0.1)
    timing = benchmark.measure(
        clock.step, 0, steps=1, repeats=2, warmup=1, target_s=1.0, clock=clock
    )
    assert timing["steps"] == 10
    assert clock.calls == timing["calls"] == 1 + 2 + 2 * 10
    assert timing["times_s"] == pytest.approx([1.0, 1.0])


def test_timed_loop_returns_the_last_carry():
    clock = FakeClock()
    seconds, carry = benchmark.timed_loop(clock.step, 10, steps=4, clock=clock)
    assert carry == 14 and clock.calls == 4 and seconds == 0.0


def test_padded_attention_path_equals_unpadded():
    """XLA attention padded to a multiple of 8 (5 tokens → 8, masked by sequence lengths) gives
    the unpadded model's features and gradients; both match the float32 reference."""
    records = benchmark.attention_numerics(
        model="mu/16",
        batch=2,
        image_size=32,
        num_layers=None,
        variants=[("xla", "float32", "xla", None), ("xla_pad8", "float32", "xla", 8)],
        compiler_options={"xla_backend_optimization_level": 0},
    )
    assert [r["status"] for r in records] == ["ok", "ok"], records
    assert all(r["ok"] and r["finite"] for r in records)
    padded = records[1]
    assert padded["features_rel_err_vs_xla"] < 1e-5
    assert padded["grads_rel_err_vs_xla"] < 1e-5


def test_run_many_records_errors_and_skips_what_does_not_fit(tmp_path):
    path = tmp_path / "r.jsonl"
    quiet = dict(json_path=str(path), log=lambda s: None)
    bad = dict(model="no-such-model", batch=2, image_size=32, dtype="float32", compile_only=True)
    results = benchmark.run_many([bad], **quiet)
    assert results[0]["status"] == "error" and "no-such-model" in results[0]["error"]
    too_big = dict(model="mu/16", batch=2, image_size=32, est_compile_s=1e6, label="too big")
    results = benchmark.run_many([too_big], deadline=time.time() + 600, **quiet)
    assert results[0]["status"] == "skipped" and results[0]["label"] == "too big"
    assert "budget" in results[0]["error"]
    # A fallback that fits replaces the item (here one that fails fast, to stay cheap).
    with_fallback = dict(too_big, fallback={"model": "no-such-model", "est_compile_s": 1.0})
    results = benchmark.run_many([with_fallback], deadline=time.time() + 600, **quiet)
    assert results[0]["label"] == "too big (fallback)" and results[0]["model"] == "no-such-model"
    assert [json.loads(line)["status"] for line in path.read_text().splitlines()] == [
        "error",
        "skipped",
        "error",
    ]


def test_cli_lists_sweep_the_product():
    args = benchmark.parse_args(["--model=Ti/16,S/16", "--scan=false,true", "--mode=train,peak"])
    items = benchmark.plan.from_args(args)
    assert [(i["model"], i["scan"], i["mode"]) for i in items] == [
        ("Ti/16", False, "train"),
        ("Ti/16", True, "train"),
        ("S/16", False, "train"),
        ("S/16", True, "train"),
    ]
    assert benchmark.parse_args(["--scan"]).scan == [True]
    with pytest.raises(ValueError):
        benchmark.BenchConfig(mode="eval")


def test_imports_without_ml_collections():
    """The GPU image has no ml_collections / TFDS / TF: importing the benchmark must not need them
    (the models' own check is tests/test_models.py::test_models_import_without_ml_collections)."""
    blocked = (
        "import sys; [sys.modules.__setitem__(m, None) for m in "
        "('ml_collections', 'tensorflow_datasets', 'tensorflow')]; import vit_jax.benchmark"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", blocked], check=True, cwd=ROOT, env=env)


def test_gpu_script_plans_every_phase_within_its_budget(tmp_path, monkeypatch, capsys):
    """The GPU sweep's --dry_run: the plan (goals, ablations, inference table, extras) with
    time estimates, nothing run; the summary files are written."""
    from vit_jax.benchmark import sweep

    monkeypatch.setenv("OUT", str(tmp_path))
    assert sweep.main(["--dry_run"]) == 0
    out = capsys.readouterr().out
    for label in ("B/16 b256:", "S/16 b512:", "L/16 b128:", "B/16 b256 scan", "B/16 b256 xla"):
        assert f"train: {label}" in out, label
    assert "remat=dots" in out and "inference: L/16 b1024" in out and "+no-cmdbuf" in out
    assert (tmp_path / "summary.md").exists() and (tmp_path / "summary.json").exists()


FAKE_ORIGINAL = '''
import flax.linen as nn
import jax.numpy as jnp


class VisionTransformer(nn.Module):
    """Stands in for the original: same constructor, a linear classifier on patches."""

    num_classes: int
    patches: object
    transformer: dict
    hidden_size: int
    classifier: str = "token"
    representation_size: object = None

    @nn.compact
    def __call__(self, inputs, *, train):
        x = nn.Conv(self.hidden_size, self.patches.size, strides=self.patches.size)(inputs)
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))
'''


def fake_reference(tmp_path, body=FAKE_ORIGINAL):
    pkg = tmp_path / "vision_transformer" / "vit_jax"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models_vit.py").write_text(body)
    return pkg.parent


def test_side_by_side_with_the_original_runs_both_in_their_own_processes(tmp_path, capsys):
    from vit_jax.benchmark import reference

    out = tmp_path / "ref.json"
    argv = [
        f"--reference_dir={fake_reference(tmp_path)}",
        f"--config={ROOT / 'configs' / 'fashion_mnist.py'}",
        "--set=model.name=mu/7",
        "--set=batch_size=16",
        "--steps=2",
        "--repeats=1",
        "--rounds=1",
        f"--json={out}",
    ]
    assert reference.main(argv) == 0
    result = json.loads(out.read_text())
    assert [r["impl"] for r in result["records"]] == ["ours", "reference"]
    summary = result["summary"]
    for impl in ("ours", "reference"):
        assert summary[impl]["images_per_sec"] > 0
    ratio = summary["ours"]["images_per_sec"] / summary["reference"]["images_per_sec"]
    assert summary["speedup"] == pytest.approx(ratio)
    assert "ours ÷ original" in capsys.readouterr().out


def test_side_by_side_errors_are_one_line(tmp_path, capsys):
    from vit_jax.benchmark import reference

    config = f"--config={ROOT / 'configs' / 'fashion_mnist.py'}"
    assert reference.main([f"--reference_dir={tmp_path}", config]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no vit_jax/models_vit.py") and "\n" not in err

    broken = fake_reference(tmp_path, body="raise ImportError('original needs clu')\n")
    argv = [f"--reference_dir={broken}", config, "--set=model.name=mu/7", "--rounds=1"]
    assert reference.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "reference worker failed" in err and "original needs clu" in err and "\n" not in err

    argv = [f"--reference_dir={broken}", config, "--set=model.name=R26"]
    assert reference.main(argv) == 2
    assert "covers plain ViTs" in capsys.readouterr().err
    # The default config's model is a conv-stem hybrid: the error says what to pass instead.
    assert reference.main([f"--reference_dir={broken}", config]) == 2
    assert "pass --set=model.name=XXS/7" in capsys.readouterr().err


def _record(label, ips, *, model="B/16", batch=256, mode="train", group="train", **extra):
    record = dict(
        kind=mode, label=label, model=model, batch=batch, mode=mode, group=group, status="ok",
        images_per_sec=ips, tflops=ips * 1e-3, mfu=0.5, compile_s=40.0, attention="cudnn",
        scan=False, remat="none",
    )  # fmt: skip
    return {**record, **extra}


def test_sweep_report_and_decisions_from_records(tmp_path):
    """The sweep's decisions and summary from given records: the goal table takes each model's
    best run, the ablations compare with the expected-best guess, the winner is rerun only when
    it beats the guess by more than 2%."""
    from vit_jax.benchmark import plan, report

    s = plan.settings(smoke=False, budget_s=None)
    guess = plan.train_item(s, "B/16")["label"]
    records = [
        _record(guess, 4000.0),
        _record("B/16 b256 scan", 4050.0, scan=True),  # Within 2%: not a winner.
        _record("S/16 b512", 12000.0, model="S/16", batch=512),
        _record("Ti/16 b64", 900.0, model="Ti/16", batch=64, mode="inference", group="inference"),
        {"kind": "train", "label": "L/16 b128", "model": "L/16", "batch": 128, "mode": "train",
         "group": "train", "status": "skipped", "error": "budget: needs ~90s, 10s left"},
    ]  # fmt: skip
    assert plan.b16_winner(records, s, guess) is None
    records.append(_record("B/16 b256 +lhs", 4600.0, group="extras"))
    assert plan.b16_winner(records, s, guess)["label"] == "B/16 b256 +lhs"
    report.write_summary(tmp_path, s, records, peak=(800.0, 8192), phases=[], elapsed_s=1.0)
    md = (tmp_path / "summary.md").read_text()
    assert "| B/16 | 256 | cudnn unrolled | 4,600 |" in md and "| 4,500 | yes |" in md
    assert "| S/16 | 512 | cudnn unrolled | 12,000 |" in md
    assert "| L/16 | 128 | not measured |" in md
    assert "| B/16 b256 +lhs | 4,600 | 1.150 |" in md  # 4600 / 4000 against the guess.
    assert "| Ti/16 | 900 |  |  |" in md
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [g["model"] for g in summary["goals"]] == ["B/16", "S/16"]
    assert summary["inference"]["Ti/16 b64"] == 900.0 and summary["inference"]["L/16 b64"] is None


def test_compile_scale_is_the_median_measured_over_estimated_and_clamped():
    from vit_jax.benchmark import plan

    assert plan.compile_scale([]) == 1.0
    recs = [{"compile_s": c, "est_compile_s": 10.0} for c in (5.0, 20.0, 30.0)]
    assert plan.compile_scale(recs) == 2.0
    assert plan.compile_scale([{"compile_s": 1000.0, "est_compile_s": 1.0}]) == 4.0
    assert plan.compile_scale([{"compile_s": 0.01, "est_compile_s": 1.0}]) == 0.3


def test_runner_goes_on_after_a_phase_process_dies(tmp_path, monkeypatch):
    """A phase process that dies mid-item: that item is recorded as crashed, the rest run in a
    fresh process, cuDNN items switched to XLA after a crash in cuDNN."""
    from vit_jax.benchmark import plan
    from vit_jax.benchmark.runner import Runner, append_record

    s = plan.settings(smoke=True, budget_s=None)
    r = Runner(tmp_path, s)
    items = [plan.train_item(s, "B/16", tag=t, attention="cudnn") for t in ("a", "b", "c")]
    calls = []

    def fake_phase(name, args, *, deadline):  # The first process finishes one item, then dies.
        plan_items = json.loads(pathlib.Path(args[0].removeprefix("--plan=")).read_text())
        calls.append([(it["label"], it["attention"]) for it in plan_items])
        if len(calls) > 1:
            return 0
        append_record(r.results, {**plan_items[0], "group": name, "status": "ok"})
        return -11

    monkeypatch.setattr(r, "say", lambda text: None)
    monkeypatch.setattr(r, "phase", fake_phase)
    r.plan_phase("train", items, deadline=time.time() + 600)
    a, b, c = (it["label"] for it in items)
    assert calls[1] == [(c + " [xla: cuDNN crashed]", "xla")]
    crashed = [x for x in r.records() if x["status"] == "error"]
    assert [x["label"] for x in crashed] == [b] and "process died (exit -11)" in crashed[0]["error"]


def test_gpu_sweep_smoke_runs_plan_runner_and_report_on_cpu(tmp_path, monkeypatch, capsys):
    """`gpu_bench.sh --smoke`'s train phase on CPU (tiny models, XLA -O0): the sweep's plan runs
    in a phase process under the runner, and the report fills the goal and ablation tables."""
    from vit_jax.benchmark import sweep

    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    assert sweep.main(["--smoke", "--phases=train"]) == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 5, records
    assert all(r["group"] == "train" and r["attention"] == "xla" for r in records)
    md = (tmp_path / "summary.md").read_text()
    for label in ("B/16", "S/16", "L/16"):
        assert f"| {label} | " in md and "not measured" not in md
    assert "| B/16 b4 scan [mu/16] |" in md and "| B/16 b4 remat=dots [mu/16] |" in md
