"""Cloud TPU VM sweeps through a fake `gcloud` that EXECUTES the backend's commands (see
tests/fake_gcloud/gcloud.py): the dry-run plan, the first errors a user meets, a 2-worker slice
whose workers find each other the way a TPU VM does (metadata server → jax.distributed over gloo),
spot preemption (SIGTERM → checkpoint → exit 75 → VM re-created → the point resumes), and a pool
of VMs running points in parallel, deleted at the end and on Ctrl-C."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_train import write_folder

from experiments import backends, progress, results, run, sweep
from vit_jax import checkpoint, preemption

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_gcloud"
TPU_FLAGS = [
    "--backend=tpu_vm", "--tpu-vm-name=vm", "--zone=us-east5-b", "--accelerator-type=v6e-16",
    "--version=v2-alpha-tpuv6e", "--project=proj",
]  # fmt: skip


@pytest.fixture
def gcloud(tmp_path, monkeypatch):
    """The fake gcloud first on PATH; returns its state directory (calls.txt, vms/, ...)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE / "gcloud.py"}" "$@"\n')
    script.chmod(0o755)
    state, gcs = tmp_path / "gcloud_state", tmp_path / "gcs"
    (gcs / "bkt").mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GCLOUD_STATE", str(state))
    monkeypatch.setenv("FAKE_GCS_ROOT", str(gcs))
    return state


def calls(state) -> list[str]:
    path = state / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def _sweep_file(tmp_path, body="", steps=2, seeds=(0,)):
    path = tmp_path / "tiny_sweep.py"
    path.write_text(
        "from experiments import sweep\nfrom vit_jax import config_lib\n\n"
        "def get_sweep(arg=None):\n"
        "    c = config_lib.base_config()\n"
        f"    c.model.name, c.total_steps = 'mu/4', {steps}\n{body}"
        f"    return sweep.Sweep(base=c, axes=sweep.axis('seed', {list(seeds)}))\n"
    )
    return str(path)


# ------------------------------------------------------------------------ plan and first errors


def test_dry_run_prints_every_command_with_the_pass_through_flags(tmp_path, gcloud, capsys):
    extra = ["--queued", "--spot", "--reserved", "--network=net", "--subnetwork=sub",
             "--service-account=sa@proj.iam.gserviceaccount.com", "--labels=team=vit,env=test",
             "--pool=2", "--remote-workdir=gs://bkt/sweep"]  # fmt: skip
    argv = [f"--sweep={_sweep_file(tmp_path, seeds=(0, 1))}", f"--workdir={tmp_path / 'sw'}"]
    assert run.main([*argv, *TPU_FLAGS, *extra, "--dry-run"]) == 0
    out = capsys.readouterr().out
    passed = (
        "--spot --reserved --network=net --subnetwork=sub "
        "--service-account=sa@proj.iam.gserviceaccount.com --labels=team=vit,env=test"
    )
    for vm in ("vm-0", "vm-1"):  # One point on each VM of the pool.
        assert (f"gcloud compute tpus queued-resources create {vm}-qr --node-id={vm} "
                f"--zone=us-east5-b --project=proj --accelerator-type=v6e-16 "
                f"--runtime-version=v2-alpha-tpuv6e {passed}") in out  # fmt: skip
        assert f"queued-resources delete {vm}-qr" in out
        assert f"tpu-vm ssh {vm} --zone=us-east5-b --project=proj --worker=all" in out
    assert "python3 -m uv venv -q --allow-existing -p 3.11 ~/vit_jax_venv" in out
    assert 'uv pip install -q -p ~/vit_jax_venv/bin/python -e ".[tpu]"' in out
    assert '"$HOME/vit_jax_venv/bin/python" -m vit_jax.main' in out
    assert "gcloud storage cp gs://bkt/sweep/ViT-mu4_s0/metrics.jsonl" in out
    assert "# check: gcloud storage buckets describe gs://bkt" in out and "gsutil" not in out
    assert calls(gcloud) == []  # A dry run runs nothing.


@pytest.mark.parametrize(
    "setting,needle",
    [
        ({"PATH": "/nonexistent"}, "gcloud not found on PATH: install the Google Cloud CLI"),
        ({"FAKE_GCLOUD_LOGGED_OUT": "1"}, "no active account: run `gcloud auth login`"),
        ({"FAKE_GCLOUD_ACCELERATORS": "v5litepod-8"}, "zone us-east5-b offers no v6e-16 TPUs"),
        ({"WORKDIR": "gs://nobucket/x"}, "bucket gs://nobucket is missing or not readable: "
                                         "create it with `gcloud storage buckets create"),
        ({"FAKE_GCLOUD_NO_QUOTA": "1"}, "no quota for v6e-16 in us-east5-b: request it"),
    ],
)  # fmt: skip
def test_first_errors_are_one_line_naming_the_fix(tmp_path, gcloud, monkeypatch, capsys, setting,
                                                 needle):  # fmt: skip
    for key, value in setting.items():
        if key != "WORKDIR":
            monkeypatch.setenv(key, value)
    remote = setting.get("WORKDIR", "gs://bkt/sweep")
    argv = [f"--sweep={_sweep_file(tmp_path)}", f"--workdir={tmp_path / 'sw'}", *TPU_FLAGS,
            f"--remote-workdir={remote}", "--no-analysis"]  # fmt: skip
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not list((gcloud / "vms").glob("*")) if (gcloud / "vms").exists() else True
    if "QUOTA" not in str(setting):  # Found before any VM was asked for.
        assert not any(" create " in c for c in calls(gcloud))


# ------------------------------------------------------ the engine on a 2-worker slice, preempted

STEPS = 30  # Enough that SIGTERM at step 3 lands mid-run.


@pytest.fixture(scope="module")
def engine_case(tmp_path_factory):
    """A tiny real sweep point, run in one process (8 devices), SIGTERMed at step 3, re-run."""
    tmp = tmp_path_factory.mktemp("engine_case")
    write_folder(tmp / "data", n_per_class=(24, 24, 24))
    write_folder(tmp / "data", n_per_class=(7, 6, 6), split="test", seed=1)
    # Batch = the whole training set (72 images): every step's gradient is over the same images
    # however the processes split them, so 1 and 2 processes train alike (each process reads
    # its own half in its own order; with a smaller batch the two would see other batches).
    body = ("    c.batch_size, c.optim.warmup_steps, c.log_every, c.eval_every = 72, 0, 1, 0\n"
            "    c.optim.name, c.optim.lr = 'sgd', 0.01\n"
            f"    c.data.source, c.data.root = 'folder', {str(tmp / 'data')!r}\n"
            "    c.data.image_size, c.data.augment, c.data.flip = 16, 'resize', False\n"
            "    c.progress_bar, c.checkpoint_every = False, 0\n")  # fmt: skip
    sweep_file = _sweep_file(tmp, body, steps=STEPS)
    (point,) = sweep.expand(sweep.load_sweep(sweep_file))
    config, workdir = tmp / "config.py", tmp / "run"
    run.write_point_config(point, config)
    proc = _engine(config, workdir)
    _wait_for_step(workdir, 3, proc)
    proc.send_signal(signal.SIGTERM)  # What a spot VM gets before it is taken.
    stopped = proc.wait(timeout=240)
    saved = checkpoint.Checkpointer(str(workdir / "checkpoints"))
    saved_step = saved.latest_step()
    saved.close()
    again = _engine(config, workdir).wait(timeout=240)
    return {"sweep": sweep_file, "workdir": workdir, "exits": (stopped, again),
            "saved_step": saved_step, "params": _params(workdir)}  # fmt: skip


def _engine(config, workdir):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))  # fmt: skip
    cmd = [sys.executable, "-m", "vit_jax.main", f"--config={config}", f"--workdir={workdir}"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def _params(workdir) -> dict:
    import jax

    tree = checkpoint.load_params(str(workdir))
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree.leaves_with_path(tree)}


def _train_steps(workdir) -> list[int]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r["step"] for r in map(json.loads, lines) if r["kind"] == "train"]


def _wait_for_step(workdir, step, proc):
    while proc.poll() is None:
        if any(s >= step for s in _train_steps(workdir)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended (exit {proc.returncode}) before step {step}")


def test_sigterm_checkpoints_exits_75_and_the_same_command_resumes(engine_case):
    assert (
        engine_case["exits"] == (preemption.EXIT_PREEMPTED, 0) and preemption.EXIT_PREEMPTED == 75
    )
    saved = engine_case["saved_step"]
    assert 3 <= saved < STEPS  # The step it was on when the signal came, not the end.
    # The re-run went on from the saved step: every step once before it, once after.
    assert _train_steps(engine_case["workdir"]) == list(range(1, STEPS + 1))


def test_two_worker_slice_preempted_resumes_and_matches_one_process(
    tmp_path, gcloud, monkeypatch, engine_case
):
    """The user's command on a 2-worker VM: each worker's engine finds its slice through its
    metadata server and joins over gloo; the VM is preempted at step 3 (SIGTERM to both), the
    runner sees PREEMPTED, re-creates the VM and the point resumes from its checkpoint."""
    monkeypatch.setenv("FAKE_GCLOUD_PREEMPT_AT_STEP", "3")
    workdir, remote, lines = tmp_path / "sweep", tmp_path / "remote", []
    args = run.parse_args([f"--sweep={engine_case['sweep']}", f"--workdir={workdir}", *TPU_FLAGS,
                           f"--remote-workdir={remote}"])  # fmt: skip
    points = sweep.expand(sweep.load_sweep(args.sweep))
    backend = run.make_backend(args, workdir, out=lines.append)
    (row,) = run.Runner(points, workdir, backend, out=lines.append).run()
    name = points[0].name
    log = (workdir / name / "log.txt").read_text()
    assert row["status"] == "ok", log[-3000:]
    assert "vit_jax: process 0 of 2" in log and "vit_jax: process 1 of 2" in log
    assert log.count("preempted (SIGTERM): checkpoint saved at step") == 2  # Both, same step.
    made = [c for c in calls(gcloud) if c.startswith("gcloud compute tpus tpu-vm create vm ")]
    assert len(made) == 2 and (gcloud / "preempted").exists()  # Re-created once.
    assert not list((gcloud / "vms").iterdir())  # Deleted at the end.
    attempts = (workdir / name / "attempts.jsonl").read_text().splitlines()
    assert [json.loads(a)["returncode"] for a in attempts] == [0]  # Never recorded as failed.
    assert not (workdir / name / "failed.json").exists()
    steps = checkpoint.Checkpointer(str(remote / name / "checkpoints")).all_steps()
    assert len(steps) == 2 and 3 <= steps[0] < STEPS == steps[1]  # Preemption save, then the end.
    assert _train_steps(remote / name) == list(range(1, STEPS + 1))  # Process 0 logs, once.
    params = _params(remote / name)
    # 2 processes x 4 devices vs 1 x 8: the same sharded program, but the cross-process all-reduce
    # (gloo) sums the gradient in another order than XLA's in-process one: equal up to rounding
    # (measured: max |difference| 2e-8 over 15k params after 30 steps).
    for key, ref in engine_case["params"].items():
        np.testing.assert_allclose(params[key], ref, atol=1e-6, rtol=0, err_msg=key)


# ----------------------------------------------------------------------------- a pool of VMs

FAKE_ENGINE = r"""#!/usr/bin/env bash
# Stands in for the venv's `python -m vit_jax.main` on one TPU VM worker (HOME = that worker).
for a in "$@"; do case "$a" in --workdir=*) wd="${a#--workdir=}";; esac; done
echo "start $(date +%s.%N) $wd $HOME" >> "$FAKE_ENGINE_LOG"
sleep "$FAKE_ENGINE_SLEEP"
mkdir -p "$wd"
line='{"step": 2, "kind": "eval", "accuracy": 0.75}'
case "$HOME" in */w0) echo "$line" >> "$wd/metrics.jsonl";; esac  # Process 0 writes metrics.
echo "end $(date +%s.%N) $wd" >> "$FAKE_ENGINE_LOG"
"""


@pytest.fixture
def pool(tmp_path, gcloud, monkeypatch):
    """Three points for a pool of two VMs whose workers run FAKE_ENGINE; returns (runner, log)."""
    monkeypatch.setattr(results, "dataset_shape", lambda data_config: (10, 1))
    engine, log = tmp_path / "fake_engine", tmp_path / "engine.txt"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    monkeypatch.setenv("FAKE_VM_PYTHON", str(engine))
    monkeypatch.setenv("FAKE_ENGINE_LOG", str(log))
    workdir, out = tmp_path / "sweep", []
    args = run.parse_args([f"--sweep={_sweep_file(tmp_path, seeds=(0, 1, 2))}",
                           f"--workdir={workdir}", *TPU_FLAGS, "--pool=2",
                           f"--remote-workdir={tmp_path / 'remote'}"])  # fmt: skip
    points = sweep.expand(sweep.load_sweep(args.sweep))
    backend = run.make_backend(args, workdir, out=out.append)
    return run.Runner(points, workdir, backend, out=out.append), log, out


def test_pool_runs_points_in_parallel_one_per_vm_and_deletes_its_vms(pool, gcloud, monkeypatch):
    runner, log, out = pool
    monkeypatch.setenv("FAKE_ENGINE_SLEEP", "2")
    rows = runner.run()
    assert [r["status"] for r in rows] == ["ok"] * 3 and rows[0]["accuracy"] == 0.75
    made = sorted(c.split()[5] for c in calls(gcloud) if "tpu-vm create" in c)
    gone = sorted(c.split()[5] for c in calls(gcloud) if "tpu-vm delete" in c)
    assert made == gone == ["vm-0", "vm-1"] and not list((gcloud / "vms").iterdir())
    events = [line.split() for line in log.read_text().splitlines()]
    spans = {}  # workdir → (first start, last end): a point on two workers.
    for kind, t, wd, *_ in events:
        lo, hi = spans.get(wd, (float("inf"), 0.0))
        spans[wd] = (min(lo, float(t)), hi) if kind == "start" else (lo, max(hi, float(t)))
    (a0, a1), (b0, b1), _ = sorted(spans.values())
    assert b0 < a1  # The second point started before the first ended: two VMs at once.
    assert any("[3/3]" in line for line in out) and any("ETA" in line for line in out), out


def test_ctrl_c_deletes_the_pools_vms_and_records_nothing(pool, gcloud, monkeypatch):
    runner, log, _ = pool
    monkeypatch.setenv("FAKE_ENGINE_SLEEP", "60")
    real_tick = progress.Progress.tick

    def tick(self):  # Ctrl-C once both VMs' workers are running their point.
        real_tick(self)
        if log.exists() and log.read_text().count("start") == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.Progress, "tick", tick)
    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert time.time() - t0 < 55  # The engines were stopped, not waited for.
    assert not list((gcloud / "vms").iterdir())
    assert sum("tpu-vm delete" in c for c in calls(gcloud)) == 2
    assert not list(runner.workdir.glob("*/result.json"))
    assert not list(runner.workdir.glob("*/failed.json"))  # Interrupted is not failed.
    assert "end" not in log.read_text()


def test_an_existing_vm_is_reused_and_left_up(pool, gcloud, monkeypatch):
    runner, _, _ = pool
    monkeypatch.setenv("FAKE_ENGINE_SLEEP", "0")
    fake = [sys.executable, str(FAKE / "gcloud.py"), "compute", "tpus", "tpu-vm", "create", "vm-0"]
    subprocess.run(fake, check=True)  # The user's own VM, up before the sweep.
    assert [r["status"] for r in runner.run()] == ["ok"] * 3
    made = [c.split()[5] for c in calls(gcloud) if "tpu-vm create" in c or "tpu-vm delete" in c]
    assert made == ["vm-0", "vm-1", "vm-1"]  # Ours (vm-1) created and deleted; vm-0 untouched.
    assert (gcloud / "vms" / "vm-0" / "state").read_text() == "READY"


def test_finetune_stage_runs_on_all_workers_from_the_points_remote_workdir(tmp_path):
    opts = backends.TpuVmOptions(
        name="vm", zone="z", accelerator_type="v6e-16", version="v2", remote_workdir="gs://bkt/sw"
    )
    backend = backends.TpuVmBackend(opts, sweep_dir=tmp_path)
    job = backends.Job("p", tmp_path / "p", finetune=True)
    pre, ft = backend.point_cmds(job, backend.vms[0])
    assert "--worker=all" in ft["run"] and "init_from" not in pre["run"][-1]
    assert "--workdir=gs://bkt/sw/p/finetune --config.init_from.path=gs://bkt/sw/p" in ft["run"][-1]
    assert ft["collect"] == ["gcloud", "storage", "cp", "gs://bkt/sw/p/finetune/metrics.jsonl",
                             f"{tmp_path}/p/finetune/metrics.jsonl"]  # fmt: skip


def test_tpu_worker_is_read_from_the_metadata_server_in_both_endpoint_forms(monkeypatch):
    from vit_jax import tpu_cluster

    monkeypatch.delenv("GCE_METADATA_IP", raising=False)
    monkeypatch.setattr(tpu_cluster, "tpu_chips_present", lambda: False)
    assert tpu_cluster.worker() is None  # Not a TPU VM: the metadata server is not even asked.
    answers = {"agent-worker-number": "1", "worker-network-endpoints": "a:0:10.0.0.2,b:1:10.0.0.3"}
    monkeypatch.setattr(tpu_cluster, "_metadata", answers.__getitem__)
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:1")
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    w = tpu_cluster.worker()
    assert w == tpu_cluster.Worker(index=1, hosts=("10.0.0.2", "10.0.0.3"))
    assert tpu_cluster.coordinator(w) == "10.0.0.2:8482"  # JAX's port for Cloud TPU.
    answers["worker-network-endpoints"] = "t1v-w-0,t1v-w-1"  # The newer form: host names.
    assert tpu_cluster.worker().hosts == ("t1v-w-0", "t1v-w-1")
