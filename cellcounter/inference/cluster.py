"""Predicting on a Dask distributed cluster: ``cellcounter predict --scheduler ADDRESS``.

Each image (a whole slide included, tiled on its worker as everywhere) is one task; every worker loads the
model once and keeps it; the results come back to the process that asked, which writes them exactly as a
local run does. ``local:N`` starts a ``LocalCluster`` of N single-threaded worker processes on this
machine; any other address is a running scheduler (``tcp://host:8786``, for instance one that
``dask-scheduler`` or ``dask-jobqueue`` started on a SLURM cluster; see docs/cluster.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError


@dataclass(frozen=True)
class PredictSpec:
    """What every worker needs to predict an image as the local command would."""

    model: str
    backend: str = "torch"
    device: str = "auto"
    tile: int = 0
    overlap: int = -1
    regions: tuple = field(default_factory=tuple)
    threads: int = 0  # torch threads per worker (0: torch's default)


def worker_predict(spec: PredictSpec, path: str) -> ImageAnnotation | str:
    """One image's prediction on a worker, or the reason it failed (a bad file never stops the batch); the
    worker keeps its model loaded for the next file."""
    from cellcounter.inference.run import load_predictor, predict_file

    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    predictor = load_predictor(spec.model, spec.backend, spec.device)
    return predict_file(predictor, path, spec.regions, tile=spec.tile, overlap=spec.overlap)[0]


def open_client(address: str):
    """A ``distributed.Client`` for ``address`` (``local:N`` starts N worker processes here)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CellCounterError("--scheduler needs dask.distributed: pip install 'cellcounter[cluster]'") from None
    n = _local_workers(address)
    if n is not None:
        limit = local_worker_limit()
        if not 1 <= n <= limit:
            raise CellCounterError(f"--scheduler {address}: give local:N with N workers between 1 and {limit} "
                                   f"(this machine's cores, and about 1 GB of free memory per worker)")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
        return Client(cluster)
    _check_answers_like_a_scheduler(address)
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise CellCounterError(f"--scheduler {address}: cannot reach the scheduler ({exc})") from None
    except MemoryError:  # a reply whose first bytes, read as a frame length, ask for exabytes
        raise CellCounterError(f"--scheduler {address}: what answers there is not a dask scheduler") from None


#: a scheduler's first frame (its handshake) is a few hundred bytes; anything near this is not one
_MAX_HANDSHAKE = 64 * 2**20


def _check_answers_like_a_scheduler(address: str, timeout: float = 5.0) -> None:
    """Refuse an address where something else answers (a web server, a database): dask's client would read
    that server's first bytes as a frame length and try to allocate it (3 EiB for "HTTP/1.1"). A scheduler
    greets each new connection with its handshake, a frame of a few hundred bytes."""
    import socket
    import struct
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or not parts.hostname:
        return  # tls://, inproc://, ...: left to dask
    try:
        with socket.create_connection((parts.hostname, parts.port or 8786), timeout=timeout) as sock:
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return  # says nothing yet: dask's own timeout decides
    except (OSError, ValueError) as exc:
        raise CellCounterError(f"--scheduler {address}: cannot reach the scheduler ({exc})") from None
    if len(head) == 8 and struct.unpack("<Q", head)[0] > _MAX_HANDSHAKE:
        shown = head.decode("latin-1").encode("unicode_escape").decode()
        raise CellCounterError(f"--scheduler {address}: what answers there is not a dask scheduler "
                               f"(it began with {shown!r})")


def local_worker_limit() -> int:
    """Most local workers this machine runs well: one per core, and each needs about 1 GB (a model and a tile)."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        free_gb = psutil.virtual_memory().available / 2**30
    except (ImportError, OSError):
        return cores
    return max(1, min(cores, int(free_gb)))


def _local_workers(address: str) -> int | None:
    """N of ``local:N`` (0 when N is not a number), ``None`` for a scheduler's address."""
    if not address.startswith("local:"):
        return None
    try:
        return int(address.split(":", 1)[1])
    except ValueError:
        return 0


def local_threads(address: str) -> int:
    """Torch threads per local worker: the machine's cores shared out, so N workers do not fight over them."""
    n = _local_workers(address)
    return max(1, (os.cpu_count() or 1) // max(1, n)) if n else 0


def predict_files(address: str, spec: PredictSpec | list[PredictSpec], files: list[Path]
                  ) -> Iterator[tuple[Path, ImageAnnotation | str]]:
    """Each file's result in the order given, computed on the cluster at ``address``; ``spec`` is one for all
    files or one per file (each image's own regions)."""
    specs = spec if isinstance(spec, list) else [spec] * len(files)
    client = open_client(address)
    try:
        futures = client.map(worker_predict, specs, [str(f) for f in files], pure=False)
        for f, fut in zip(files, futures):
            yield f, fut.result()
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and address.startswith("local:"):
            cluster.close()


__all__ = ["PredictSpec", "open_client", "predict_files", "worker_predict"]
