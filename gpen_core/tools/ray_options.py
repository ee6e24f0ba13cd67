"""``gpen enhance --ray [ADDRESS] --workers N --gpus-per-worker F``: the options of the Ray runner,
checked before anything loads. Ray itself is imported only when ``--ray`` is given (:func:`import_ray`):
it is an optional extra, and its absence is an error that names it.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from types import ModuleType

from .batch import UsageError

__all__ = ["INSTALL_RAY", "LOCAL_RAY_ENVIRONMENT", "RayOptions", "add_ray_arguments", "import_ray", "ray_options"]

INSTALL_RAY = "pip install '.[ray]' in the repository (the 'ray' extra), or pip install 'ray[data]'"
"""How to get Ray: the package's ``ray`` extra (``[project.optional-dependencies]`` of pyproject.toml)."""

LOCAL_RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Read by Ray when it is imported: 0 makes a local cluster's node address the loopback one, so that every
    # server of the cluster (GCS, raylet, workers) listens on 127.0.0.1 only (measured with ss -ltnp, Ray 2.60).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
"""Environment of a local cluster (``--ray`` without an address): no usage statistics sent, loopback only.
Set before Ray is imported; inherited by the cluster's processes; a value already set wins."""


@dataclass(frozen=True)
class RayOptions:
    """How to run a batch on Ray.

    Attributes:
        address: None for a new local cluster (loopback only, this machine's CPUs and GPUs); ``auto`` for the
            cluster this machine belongs to (``ray start``); ``HOST:PORT`` or ``ray://HOST:PORT`` for another.
        workers: the number of workers (actors, each loading the networks once); None: one per GPU share of the
            cluster (``gpus_per_worker``), or one per CPU when it has no GPU.
        gpus_per_worker: GPUs reserved by each worker (0.5: two workers share a GPU); None: 1 when the cluster
            has GPUs and ``--device`` is not ``cpu``, else 0.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (pip install '.[ray]'; see docs/ray.md)")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run the jobs on Ray workers: no ADDRESS starts a local cluster (loopback only); "
                            "auto joins the cluster of this machine (ray start); or HOST:PORT. The inputs, --model "
                            "and -o must be at the same paths on every node (a shared file system). Put --ray after "
                            "the inputs, or write --ray=ADDRESS")
    group.add_argument("--workers", type=int, default=None,
                       help="--ray: number of workers, each loading the networks once (default: one per GPU, or "
                            "one per CPU on a cluster without GPUs)")
    group.add_argument("--gpus-per-worker", type=float, default=None,
                       help="--ray: GPUs reserved by each worker, e.g. 0.5 for two workers per GPU (default 1 when "
                            "the cluster has GPUs, else 0); see the memory report of gpen gpu-check")


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The checked Ray options, None without ``--ray``; Ray is imported here (so a missing extra is found first).

    Raises:
        UsageError: ``--workers``/``--gpus-per-worker`` without ``--ray``, values out of range, an address that
            is an input path (``--ray`` took the next argument), or Ray not installed.
    """
    if args.ray is None:
        given = [flag for flag, value in (("--workers", args.workers), ("--gpus-per-worker", args.gpus_per_worker))
                 if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --ray")
        return None
    address = args.ray.strip() or None
    if address is not None and os.path.lexists(address):
        raise UsageError(f"--ray took {address!r} as the cluster address, but it is a file or folder: put --ray "
                         "after the inputs, or write --ray=auto / --ray=HOST:PORT")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1; got {args.workers}")
    if args.gpus_per_worker is not None and not 0 <= args.gpus_per_worker <= 64:
        raise UsageError(f"--gpus-per-worker must be between 0 and 64; got {args.gpus_per_worker}")
    import_ray(local=address is None)
    return RayOptions(address, args.workers, args.gpus_per_worker)


def import_ray(*, local: bool) -> ModuleType:
    """``ray`` with Ray Data, imported now (with :data:`LOCAL_RAY_ENVIRONMENT` first for a ``local`` cluster).

    Raises:
        UsageError: Ray (or Ray Data's dependencies) is not installed; the message says what to install.
    """
    if local and "ray" not in sys.modules:
        for name, value in LOCAL_RAY_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    try:
        import ray
        import ray.data  # noqa: F401 -- pandas and pyarrow: Ray Data's own dependencies
    except ImportError as err:
        raise UsageError(f"--ray needs Ray Data, which is not installed ({err}): {INSTALL_RAY}") from None
    return ray
