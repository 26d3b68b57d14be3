"""Runs a sweep: every point through the training engine in DIR/<name>, then the analysis.

    python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling.py --workdir=runs/fmnist
        [--smoke] [--dry-run] [--only=REGEX] [--parallel=N] [--backend=local|tpu_vm ...]

Resumable: a point with DIR/<name>/result.json is skipped; any other point (never run, failed,
interrupted) is run again in the same directory, where the engine resumes from its checkpoint.
DIR/results.jsonl and DIR/results.csv are rewritten after every point, in sweep order.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shlex
import signal
import sys
import time

from experiments import analysis, backends, results, sweep
from experiments.progress import Progress
from vit_jax import paths


def write_point_config(point: sweep.Point, path: pathlib.Path, *, stage: str = "") -> None:
    """A self-contained configs-style file holding every value of the point's config.

    Values are Python literals (repr), so tuples stay tuples and floats round-trip exactly; the
    file only needs vit_jax.config_lib, so it works wherever the engine is installed.
    """
    paths.write_text(path, point_config_text(point, stage=stage))


def point_config_text(point: sweep.Point, *, stage: str = "") -> str:
    """The file's text for the point's run config, or (stage='finetune') its transfer stage's."""
    config = point.finetune if stage == sweep.FINETUNE else point.config
    values = _flatten(config.to_dict())
    body = ",\n".join(f"    {k!r}: {v!r}" for k, v in values.items())
    what = f"{stage} stage of sweep point" if stage else "sweep point"
    return (
        f'"""Run config of {what} {point.name} (written by experiments.run)."""\n\n'
        "from vit_jax import config_lib\n\n"
        f"VALUES = {{\n{body},\n}}\n\n\n"
        "def get_config(arg=None):\n"
        "    config = config_lib.base_config()\n"
        "    for key, value in VALUES.items():\n"
        '        *parents, leaf = key.split(".")\n'
        "        node = config\n"
        "        for part in parents:\n"
        "            node = node[part]\n"
        "        node[leaf] = value\n"
        "    return config\n"
    )


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


class RunError(RuntimeError):
    """The sweep cannot run as asked; one line."""


class Runner:
    """Runs the points of a sweep with a backend and keeps DIR's result files current."""

    def __init__(self, points, workdir: pathlib.Path, backend, *, out=print):
        self.points = {p.name: p for p in points}
        self.workdir, self.backend, self.out = workdir, backend, out

    def run(self, *, only: str | None = None, dry_run: bool = False) -> list[dict]:
        paths.makedirs(self.workdir)
        selected = [p for p in self.points.values() if not only or re.search(only, p.name)]
        jobs = [
            backends.Job(p.name, self.workdir / p.name, finetune=p.finetune is not None)
            for p in selected
        ]
        self._check_configs(jobs)
        for job in jobs:
            for stage, path in job.stages():
                write_point_config(self.points[job.name], path, stage=stage)
                if paths.is_remote(job.dir):
                    write_point_config(self.points[job.name], job.record(stage), stage=stage)
        todo = [j for j in jobs if not (j.dir / "result.json").exists()]
        for j in jobs:
            if j not in todo:
                self.out(f"skip {j.name}: finished (result.json)")
        if dry_run:
            self._print_plan(todo)
            return []
        compute = {j.name: self._predicted(j.name) for j in todo}
        if len(getattr(self.backend, "groups", ())) > 1:
            # Parallel slots: longest first, so no slot is left with one long point at the end.
            todo.sort(key=lambda j: -compute[j.name])
        steps = {j.name: self.points[j.name].config.total_steps for j in todo}
        self.progress = Progress(compute, steps=steps, out=self.out)
        try:
            self.backend.run(
                todo,
                self._on_done,
                lambda job: self.progress.start(job.name, job.dir),
                on_tick=self.progress.tick,
            )
        finally:
            self.progress.close()
        return self.write_tables()

    def _check_configs(self, jobs) -> None:
        """Resuming (or skipping) a point run under another config would mix two experiments."""
        for job in jobs:
            for stage, _ in job.stages():
                path = job.record(stage)
                if path.exists() and path.read_text() != point_config_text(
                    self.points[job.name], stage=stage
                ):
                    raise RunError(
                        f"{job.dir} was run with a different config than the sweep now gives "
                        "this point; use another --workdir or delete that directory"
                    )

    def _predicted(self, name: str) -> float:
        c = self.points[name].config
        return results.train_flops(
            macs_per_image=results.model_macs(c), images_seen=c.total_steps * c.batch_size
        )

    def _print_plan(self, todo) -> None:
        self.out(f"{len(todo)} point(s) to run of {len(self.points)}:")
        lines = getattr(self.backend, "dry_run_lines", None)
        if lines is not None:  # A remote backend: its whole command sequence.
            for p in todo:
                self.out(f"  {p.name}  {json.dumps(self.points[p.name].overrides)}")
            for line in lines(todo):
                self.out(line)
            return
        for job in todo:
            point = self.points[job.name]
            self.out(f"  {job.name}  family={point.family}  {json.dumps(point.overrides)}")
            for line in self.backend.describe(job):
                self.out(f"    {line}")

    def _on_done(self, job, returncode: int, wall_s: float, cores: int, cpu_s=None) -> None:
        attempts = job.dir / "attempts.jsonl"
        attempt = {"returncode": returncode, "wall_s": wall_s, "cpu_s": cpu_s, "t": time.time()}
        paths.append_text(attempts, json.dumps(attempt) + "\n")
        # A resumed point's cost is the sum over its attempts.
        past = [json.loads(x) for x in attempts.read_text().splitlines() if x]
        total_wall = sum(a["wall_s"] for a in past)
        point = self.points[job.name]
        if returncode == 0:
            row = results.point_row(point, workdir=job.dir, wall_s=total_wall, cores=cores)
            if all(a.get("cpu_s") is not None for a in past):
                row["cpu_s"] = round(sum(a["cpu_s"] for a in past), 2)
        else:
            row = self._failed_row(point, job, returncode, total_wall)
        ok = row["status"] == "ok"
        (job.dir / ("result.json" if ok else "failed.json")).write_text(json.dumps(row, indent=1))
        if ok:
            (job.dir / "failed.json").unlink(missing_ok=True)
        if paths.is_remote(job.dir) and job.log_path.exists():  # The log joins the results.
            paths.write_bytes(job.dir / "log.txt", job.log_path.read_bytes())
        acc = f" accuracy={row['accuracy']:.4f}" if ok else f" ({row.get('error', '')})"
        self.progress.finish(job.name, wall_s, row["status"] + acc)
        self.write_tables()

    def _failed_row(self, point, job, returncode, wall_s) -> dict:
        log = (
            job.log_path.read_text(errors="replace").strip().splitlines()
            if job.log_path.exists()
            else []
        )
        error = next((line for line in reversed(log) if line.strip()), f"exit {returncode}")
        return {"name": point.name, "family": point.family, "model": point.model,
                "status": "failed", "returncode": returncode, "error": error[-300:],
                "accuracy": None, "wall_s": round(wall_s, 2)}  # fmt: skip

    def write_tables(self) -> list[dict]:
        """results.jsonl/csv from every point's result (or failure) file, in sweep order."""
        rows = []
        for name in self.points:
            for fname in ("result.json", "failed.json"):
                path = self.workdir / name / fname
                if path.exists():
                    rows.append(json.loads(path.read_text()))
                    break
        results.write_tables(rows, self.workdir)
        return rows


def make_backend(args, workdir: pathlib.Path, *, out=print):
    if args.backend == "local":
        cache_dir = pathlib.Path(paths.staging_dir(workdir)) / "jax_cache"  # Local: a cache.
        return backends.LocalBackend(parallel=args.parallel, cache_dir=cache_dir)
    missing = [
        f for f in ("tpu_vm_name", "zone", "accelerator_type", "version") if not getattr(args, f)
    ]
    if missing:
        raise SystemExit(f"--backend=tpu_vm needs --{missing[0].replace('_', '-')}")
    opts = backends.TpuVmOptions(
        name=args.tpu_vm_name, zone=args.zone, accelerator_type=args.accelerator_type,
        version=args.version, project=args.project, queued=args.queued,
        remote_workdir=args.remote_workdir or str(workdir), code=args.code,
        repo_url=args.repo_url, ref=args.ref, keep_vm=args.keep_vm, pool=args.pool,
        spot=args.spot, reserved=args.reserved, network=args.network, subnetwork=args.subnetwork,
        service_account=args.service_account, labels=args.labels,
    )  # fmt: skip
    return backends.TpuVmBackend(opts, sweep_dir=workdir, log=out)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", required=True, help="FILE.py[:arg] defining get_sweep(arg).")
    p.add_argument("--workdir", required=True, help="Sweep directory (one subdirectory a point).")
    p.add_argument("--smoke", action="store_true", help="The sweep's small smoke variant.")
    p.add_argument("--dry-run", action="store_true", help="Print points and commands; run nothing.")
    p.add_argument("--only", help="Run only points whose name matches this regex.")
    p.add_argument("--parallel", type=int, default=1, help="local: points at once (CPUs split).")
    p.add_argument("--backend", choices=("local", "tpu_vm"), default="local")
    p.add_argument("--no-analysis", action="store_true", help="Skip plots and summary.md.")
    tpu = p.add_argument_group("tpu_vm")
    tpu.add_argument("--tpu-vm-name")
    tpu.add_argument("--zone")
    tpu.add_argument("--accelerator-type", help="e.g. v4-8, v5litepod-16")
    tpu.add_argument("--version", help="TPU software version, e.g. tpu-ubuntu2204-base")
    tpu.add_argument("--project")
    tpu.add_argument("--queued", action="store_true", help="Use queued-resources create.")
    tpu.add_argument("--remote-workdir", help="gs://bucket/path for the points' workdirs.")
    tpu.add_argument("--code", choices=("copy", "git"), default="copy")
    tpu.add_argument("--repo-url", default="")
    tpu.add_argument("--ref", default="HEAD")
    tpu.add_argument("--keep-vm", action="store_true")
    tpu.add_argument("--pool", type=int, default=1, help="TPU VMs at once, one point on each.")
    tpu.add_argument("--spot", action="store_true", help="Spot VMs: cheaper, preemptible.")
    tpu.add_argument("--reserved", action="store_true", help="Use the project's reservation.")
    tpu.add_argument("--network", default="")
    tpu.add_argument("--subnetwork", default="")
    tpu.add_argument("--service-account", default="")
    tpu.add_argument("--labels", default="", help="KEY=VALUE,... on each VM.")
    return p.parse_args(argv)


def main(argv=None) -> int:
    # SIGTERM (timeout, a scheduler) unwinds like Ctrl-C, so the backends stop their children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = paths.path(args.workdir)  # gs:// as well (pathlib would collapse the "//").
    try:
        points = sweep.expand(sweep.load_sweep(args.sweep), smoke=args.smoke)
    except sweep.SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"sweep {args.sweep}: {len(points)} point(s) → {workdir}  ({shlex.join(sys.argv[1:])})")
    runner = Runner(points, workdir, make_backend(args, workdir))
    try:
        rows = runner.run(only=args.only, dry_run=args.dry_run)
    except (RunError, backends.LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    failed = [r["name"] for r in rows if r.get("status") != "ok"]
    if not args.no_analysis and any(r.get("status") == "ok" for r in rows):
        summary = analysis.analyze(rows, workdir, title=pathlib.Path(args.sweep.split(":")[0]).stem)
        print(summary["summary"])
        print(f"plots: {', '.join(str(p) for p in summary['plots'])}")
    print(f"results: {workdir / 'results.jsonl'}, {workdir / 'results.csv'}")
    if failed:
        print(f"{len(failed)} failed point(s): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
