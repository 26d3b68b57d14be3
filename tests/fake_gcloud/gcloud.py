"""A fake `gcloud` for the tests: it EXECUTES the tpu_vm backend's commands on this machine.

State lives under $FAKE_GCLOUD_STATE: calls.txt (one line per call), vms/NAME/{state,create.txt,
w0,w1,...} (a VM and its workers' home directories), qrs/NAME (queued resources). gs://BUCKET/...
maps to $FAKE_GCS_ROOT/BUCKET/....

`tpu-vm ssh NAME --worker=all --command=CMD` runs CMD with bash in each worker's home, as
$FAKE_GCLOUD_WORKERS local processes with what a TPU VM worker has: its own GCE metadata server
(GCE_METADATA_IP → a server on localhost answering agent-worker-number, worker-network-endpoints,
tpu-env), 4 CPU devices standing in for its chips, and the image's python3 (vm_bin/python3).

Knobs (environment): FAKE_GCLOUD_LOGGED_OUT, FAKE_GCLOUD_NO_QUOTA, FAKE_GCLOUD_ACCELERATORS
(space-separated types the zone offers), FAKE_GCLOUD_PREEMPT_AT_STEP=S (one-shot: once the run's
metrics.jsonl reaches step S, SIGTERM every worker and mark the VM PREEMPTED).
"""

import http.server
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
STATE = pathlib.Path(os.environ["FAKE_GCLOUD_STATE"])
ACCELERATORS = "v4-8 v4-16 v5litepod-8 v5litepod-16 v6e-8 v6e-16"


def main(argv):
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "calls.txt", "a") as f:
        f.write(shlex.join(["gcloud", *argv]) + "\n")
    args = [a for a in argv if not a.startswith("-")]
    flags = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in argv if a[:2] == "--")
    verb = " ".join(args[:4])
    if args[:2] == ["auth", "list"]:
        return 0 if os.environ.get("FAKE_GCLOUD_LOGGED_OUT") else print("user@example.com")
    if verb.startswith("compute tpus accelerator-types list"):
        print("\n".join(os.environ.get("FAKE_GCLOUD_ACCELERATORS", ACCELERATORS).split()))
        return 0
    if args[:3] == ["storage", "buckets", "describe"]:
        return 0 if _local(args[3]).is_dir() else _fail(f"bucket {args[3]} not found: 404")
    if args[:2] == ["storage", "cp"]:
        return _copy(_local(args[2]), _local(args[3]))
    kind, action = args[2], args[3]
    return ACTIONS[(kind, action)](args[4], flags)


def _fail(message, rc=1):
    print(f"ERROR: (gcloud) {message}", file=sys.stderr)
    return rc


def _local(path):
    return pathlib.Path(os.environ["FAKE_GCS_ROOT"], path[5:]) if path.startswith("gs://") else (
        pathlib.Path(os.path.expanduser(path)))  # fmt: skip


def _copy(src, dst):
    if not src.is_file():
        return _fail(f"{src}: No such object")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return 0


def _vm(name):
    return STATE / "vms" / name


def create(name, flags):
    if os.environ.get("FAKE_GCLOUD_NO_QUOTA"):
        return _fail("Quota limit 'TPUV4sPodPerProjectPerZoneForTPUAPI' has been exceeded.")
    vm = _vm(name)
    vm.mkdir(parents=True, exist_ok=True)
    (vm / "state").write_text("READY")
    (vm / "create.txt").write_text(shlex.join(f"--{k}={v}" for k, v in flags.items()))
    for i in range(int(os.environ.get("FAKE_GCLOUD_WORKERS", "2"))):
        (vm / f"w{i}").mkdir(exist_ok=True)
    return 0


def describe(name, flags):
    if not _vm(name).is_dir():
        return _fail(f"Resource '{name}' was not found", rc=1)
    print((_vm(name) / "state").read_text())
    return 0


def delete(name, flags):
    shutil.rmtree(_vm(name), ignore_errors=True)
    return 0


def qr_create(qr, flags):
    (STATE / "qrs").mkdir(exist_ok=True)
    (STATE / "qrs" / qr).write_text(flags["node-id"])
    return create(flags["node-id"], flags)


def qr_describe(qr, flags):
    print("ACTIVE" if (STATE / "qrs" / qr).exists() else "")
    return 0 if (STATE / "qrs" / qr).exists() else 1


def qr_delete(qr, flags):
    path = STATE / "qrs" / qr
    if path.exists():
        delete(path.read_text(), flags)
        path.unlink()
    return 0


def _workers(name):
    vm = _vm(name)
    if not vm.is_dir() or (vm / "state").read_text() != "READY":
        return None
    return sorted(vm.glob("w[0-9]*"), key=lambda p: int(p.name[1:]))


def scp(src, flags):
    dst = next(a for a in sys.argv[1:] if ":" in a and not a.startswith("-"))
    name, path = dst.split(":", 1)
    homes = _workers(name)
    if homes is None:
        return _fail(f"TPU VM {name} is not READY", rc=255)
    for home in homes:
        _copy(pathlib.Path(src), home / path.removeprefix("~/"))
    return 0


def ssh(name, flags):
    homes = _workers(name)
    if homes is None:
        return _fail(f"TPU VM {name} is not READY", rc=255)
    servers = [_metadata_server(i, len(homes)) for i in range(len(homes))]
    env = _worker_env()
    procs = []
    for i, home in enumerate(homes):
        env_i = env | {"HOME": str(home), "GCE_METADATA_IP": f"127.0.0.1:{servers[i].port}"}
        procs.append(subprocess.Popen(["bash", "-c", flags["command"]], cwd=home, env=env_i,
                                      start_new_session=True))  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: _kill(procs, signal.SIGTERM))
    at_step = os.environ.get("FAKE_GCLOUD_PREEMPT_AT_STEP")
    if at_step and "vit_jax.main" in flags["command"] and not (STATE / "preempted").exists():
        threading.Thread(target=_preempt, args=(name, flags["command"], int(at_step), procs),
                         daemon=True).start()  # fmt: skip
    codes = [p.wait() for p in procs]
    deadline = time.time() + 120
    for p in procs:  # A signalled bash leaves its children running: wait for them too.
        while _group_alive(p.pid) and time.time() < deadline:
            time.sleep(0.05)
    for server in servers:
        server.shutdown()
    if (_vm(name) / "state").exists() and (_vm(name) / "state").read_text() != "READY":
        return _fail(f"connection to {name} lost", rc=255)  # As ssh to a preempted VM ends.
    return next((c for c in codes if c), 0)


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _worker_env():
    """The test's environment, less its Python path and device count, plus the VM's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    port = _free_port()
    return env | {
        "PATH": f"{HERE / 'vm_bin'}{os.pathsep}{env['PATH']}",
        "FAKE_VM_PYTHON": os.environ.get("FAKE_VM_PYTHON", sys.executable),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",  # 4 chips a worker.
        "JAX_PLATFORMS": "cpu",
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",  # Not JAX's fixed 8482: tests share a host.
    }


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _metadata_server(index, count):
    values = {
        "agent-worker-number": str(index),
        "worker-network-endpoints": ",".join(["localhost"] * count),
        "tpu-env": f"WORKER_ID: '{index}'\nACCELERATOR_TYPE: 'fake'\n",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            key = self.path.rsplit("/", 1)[-1]
            ok = self.headers.get("Metadata-Flavor") == "Google" and key in values
            body = values.get(key, "not found").encode()
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return None  # Quiet: no request log on stderr.

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _preempt(name, command, at_step, procs):
    """Like a spot VM's end: SIGTERM to every worker once the run logged step `at_step`."""
    workdir = _local(shlex.split(command.split("--workdir=", 1)[1])[0])
    while all(p.poll() is None for p in procs):
        lines = (workdir / "metrics.jsonl").read_text().splitlines() if (
            workdir / "metrics.jsonl").exists() else []  # fmt: skip
        if any(f'"step": {at_step},' in line for line in lines):
            (STATE / "preempted").write_text(name)
            (_vm(name) / "state").write_text("PREEMPTED")
            _kill(procs, signal.SIGTERM)
            return
        time.sleep(0.05)


def _kill(procs, sig):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, sig)


ACTIONS = {
    ("tpu-vm", "create"): create,
    ("tpu-vm", "describe"): describe,
    ("tpu-vm", "delete"): delete,
    ("tpu-vm", "scp"): scp,
    ("tpu-vm", "ssh"): ssh,
    ("queued-resources", "create"): qr_create,
    ("queued-resources", "describe"): qr_describe,
    ("queued-resources", "delete"): qr_delete,
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
