"""Is this process a worker of a Cloud TPU VM slice? Read as JAX reads it: the metadata server.

A Cloud TPU VM (GCE) sets no environment variable that names its slice: JAX's own GceTpuCluster
asks the metadata server (`http://$GCE_METADATA_IP`, default metadata.google.internal) for
`agent-worker-number` and `worker-network-endpoints`. We read the same two keys so the engine
knows when to call `jax.distributed.initialize()`, and so the same start-up joins CPU processes
over gloo when those keys are served to them (the fake TPU VM of the tests).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import urllib.error
import urllib.request

from vit_jax import errors

COORDINATOR_PORT = 8482  # JAX's choice for Cloud TPU (jax._src.clusters.cloud_tpu_cluster).


@dataclasses.dataclass(frozen=True)
class Worker:
    index: int  # agent-worker-number
    hosts: tuple[str, ...]  # worker-network-endpoints, worker 0 first


def tpu_chips_present() -> bool:
    """TPU chips on this host (what libtpu opens): /dev/accel* (v4, v5p) or /dev/vfio (v5e, v6e)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def worker() -> Worker | None:
    """This host's place in its TPU VM slice; None when not on a TPU VM.

    The metadata server is asked only where one can answer: on a host with TPU chips, or where
    GCE_METADATA_IP names it. (JAX's TPU_SKIP_MDS_QUERY is no guide: importing jax sets it on
    every host without TPU chips.)
    """
    if not (os.environ.get("GCE_METADATA_IP") or tpu_chips_present()):
        return None
    try:
        index = int(_metadata("agent-worker-number"))
    except (OSError, ValueError):
        return None  # A GCE VM without a TPU, or no metadata server.
    return Worker(index=index, hosts=tuple(_hosts(_metadata("worker-network-endpoints"))))


def coordinator(w: Worker) -> str:
    """host:port of process 0; JAX_COORDINATOR_ADDRESS (a JAX setting) overrides it."""
    return os.environ.get("JAX_COORDINATOR_ADDRESS") or f"{w.hosts[0]}:{COORDINATOR_PORT}"


def _hosts(endpoints: str) -> list[str]:
    """Either `host,host,...` or the older `name:id:ip,...` (the two forms JAX accepts)."""
    out = []
    for item in endpoints.strip().split(","):
        parts = item.split(":")
        if len(parts) not in (1, 3):
            raise errors.UserError(f"unsupported worker-network-endpoints entry: {item!r}")
        out.append(parts[-1])
    return out


def _metadata(key: str) -> str:
    host = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
    url = f"http://{host}/computeMetadata/v1/instance/attributes/{key}"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()
