"""``gpen enhance --ray``: the planned jobs as a Ray Data dataset, run by workers that load the networks once.

The driver (this process) plans and checks everything as the local run does; the jobs then become a
dataset of one job per block, mapped by :class:`JobWorker` actors (one runtime each, from the picklable
:class:`~gpen_core.tools.jobs.RuntimeSpec`) that call the same :func:`~gpen_core.tools.jobs.run_job` as the
local loop and write the outputs themselves (atomically, into the shared output folder). The driver
collects one :class:`~gpen_core.tools.jobs.JobResult` per job into the same
:class:`~gpen_core.tools.batch_report.BatchReport` as the local loop: same progress line, failure list
and exit status.

Faults: a job whose worker process ends (killed, out of memory) is retried by Ray on the restarted
worker, at most :data:`JOB_TRIES` times in all; each worker restarts at most :data:`WORKER_RESTARTS` times.
A job that keeps ending its worker is listed as failed and the batch goes on. A bad input is no fault:
:func:`run_job` returns its error, which is listed once and never retried. On Ctrl-C (or a full disk) the
dataset is cancelled, its workers are ended, and the temporary files of unfinished outputs are removed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..images.files import partial_path
from .batch import Failures, Job, UsageError
from .batch_report import DISK_FULL, BatchReport
from .jobs import JobResult, JobSettings, Runtime, RuntimeSpec, load_runtime, run_job
from .ray_options import RayOptions, import_ray

__all__ = ["JOB_TRIES", "WORKER_RESTARTS", "JobWorker", "as_given", "connect", "run_ray", "shipped_job",
           "shipped_spec"]

logger = logging.getLogger(__name__)

JOB_TRIES = 3
"""Most times a job is started when its worker process ends during it (Ray's ``max_task_retries`` + 1)."""
WORKER_RESTARTS = 8
"""Most times one worker is restarted after its process ended (Ray's ``max_restarts``)."""
WORKERS_END_SECONDS = 30.0
"""Longest wait, after a cancel, for the workers of a cluster this run did not start to end."""
WORKER_CLASS_PREFIX = "MapWorker("
"""How the class names of Ray Data's actors begin, e.g. ``MapWorker(MapBatches(JobWorker))`` (a driver runs
one dataset: every such actor of its Ray job is one of its workers)."""


def shipped_job(job: Job) -> Job:
    """``job`` with absolute paths: the workers' current folder is not the driver's."""
    values = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)}
    paths: dict[str, Any] = {name: value.absolute() for name, value in values.items() if isinstance(value, Path)}
    return dataclasses.replace(job, **paths)


def as_given(text: str, job: Job) -> str:
    """``text`` from a worker (an error naming a file) with the paths of ``job`` as the user gave them, so
    that the failure list reads as the local run's."""
    for path in (job.source, *job.outputs, *map(partial_path, job.outputs)):
        if not path.is_absolute():
            text = text.replace(str(path.absolute()), str(path))
    return text


def shipped_spec(spec: RuntimeSpec) -> RuntimeSpec:
    """``spec`` with its paths absolute (a detector or parser name stays a name)."""

    def absolute(name: str) -> str:
        return str(Path(name).absolute()) if os.path.lexists(name) else name

    where = spec.parser_where
    return dataclasses.replace(
        spec, model=absolute(spec.model), detector=None if spec.detector is None else absolute(spec.detector),
        detector_dirs=tuple(absolute(d) for d in spec.detector_dirs),
        parser_where=absolute(where) if isinstance(where, str) else tuple(absolute(w) for w in where),
    )


def _job_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    """One dataset row per job: its index and the pickled :func:`shipped_job` (a binary column, which Arrow
    stores as it is; whatever fields a job has travel with it)."""
    return [{"index": index, "job": pickle.dumps(shipped_job(job))} for index, job in enumerate(jobs)]


class JobWorker:
    """A Ray Data actor: loads the networks of ``spec`` once, then runs batches of jobs.

    A runtime that cannot load (a checkpoint missing on this node, a corrupt file) is no fault to retry:
    the worker answers every batch with the reason (``load_error``), and the driver stops the run with it.

    Args:
        spec: what to load (:func:`shipped_spec`: absolute paths, the same on every node).
        settings: the batch's options.
    """

    def __init__(self, spec: RuntimeSpec, settings: JobSettings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self.load_error = ""
        try:
            self.runtime = load_runtime(spec)
        except Exception as err:  # noqa: BLE001 -- reported to the driver, which stops the run with it
            ray = import_ray(local=False)
            text = str(err) if isinstance(err, (OSError, ValueError)) else f"{type(err).__name__}: {err}"
            self.load_error = f"a worker on {ray.util.get_node_ip_address()} could not load the networks: {text}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch`` of job rows -> ``{"index": (N,), "result": (N,) pickled JobResults, "load_error": (N,)}``
        (empty results when the networks did not load)."""
        count = len(batch["index"])
        if self.runtime is None:
            results = [b""] * count
        else:
            results = [pickle.dumps(self.run(pickle.loads(job))) for job in batch["job"]]
        return {"index": np.asarray(batch["index"]), "result": np.asarray(results, dtype=object),
                "load_error": np.asarray([self.load_error] * count, dtype=object)}

    def run(self, job: Job) -> JobResult:
        assert self.runtime is not None
        return run_job(job, self.settings, self.runtime)


def connect(options: RayOptions, *, num_cpus: int | None = None) -> bool:
    """Join the cluster of ``options`` (or start a local one); returns whether this call started Ray here.

    A process already connected (``ray.init`` done, e.g. by a test or a notebook) is used as it is.
    A local cluster listens on the loopback address only, without dashboard or usage statistics.

    Args:
        num_cpus: CPUs of a local cluster (None: this machine's).

    Raises:
        UsageError: no cluster answers at ``options.address``.
    """
    ray = import_ray(local=options.address is None)
    if ray.is_initialized():
        return False
    settings: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    if options.address is None:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **settings)  # never RAY_ADDRESS
    else:
        try:
            ray.init(address=options.address, **settings)
        except ConnectionError as err:
            raise UsageError(f"--ray {options.address}: {err} Start one with ray start --head, or give no address "
                             "for a local cluster") from err
    return True


def _worker_resources(ray: Any, spec: RuntimeSpec, options: RayOptions) -> tuple[int, float]:
    """(workers, GPUs per worker) for the cluster now connected."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_worker = options.gpus_per_worker
    if per_worker is None:
        per_worker = 1.0 if gpus and not spec.device.startswith("cpu") else 0.0
    if options.workers is not None:
        return options.workers, per_worker
    if per_worker > 0:
        return max(1, int(gpus // per_worker)), per_worker
    return max(1, int(ray.cluster_resources().get("CPU", 1))), per_worker


def _dataset(ray: Any, jobs: list[Job], settings: JobSettings, spec: RuntimeSpec, options: RayOptions) -> Any:
    """The jobs as a dataset (one job per block: the unit Ray retries) mapped by :class:`JobWorker` actors."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver draws its own progress line
    context.print_on_execution_start = False
    context.max_errored_blocks = -1  # a job that ended its worker on every try is listed; the others go on
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    workers, gpus = _worker_resources(ray, spec, options)
    dataset = ray.data.from_items(_job_rows(jobs), override_num_blocks=len(jobs))
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_restarts / max_task_retries this way (for 2.64) without naming another.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return dataset.map_batches(
            JobWorker, fn_constructor_kwargs={"spec": shipped_spec(spec), "settings": settings}, batch_size=1,
            # One job at a time per worker: a job queued behind one that ends its worker would lose a try too.
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1), num_cpus=1,
            num_gpus=gpus,
            max_restarts=WORKER_RESTARTS, max_task_retries=JOB_TRIES - 1,
        )


def run_ray(jobs: list[Job], settings: JobSettings, spec: RuntimeSpec, failures: Failures, options: RayOptions,
            *, debug: bool = False, num_cpus: int | None = None) -> list[Job]:
    """Run every job on Ray workers; each failing file is recorded and the others go on. Returns the jobs
    whose outputs were written. ``KeyboardInterrupt`` cancels the run (no temporary file is left) and propagates.

    Args:
        jobs: the planned jobs (outputs checked, output folder prepared).
        spec: what each worker loads; its paths (and the jobs') must name the same files on every node.
        num_cpus: CPUs of a local cluster (None: this machine's).
    """
    ray = import_ray(local=options.address is None)
    started = connect(options, num_cpus=num_cpus)
    report = BatchReport(jobs, failures, debug=debug)
    complete = False
    try:
        rows = iter(_dataset(ray, jobs, settings, spec, options).iter_rows())
        try:
            for row in rows:
                if row["load_error"]:
                    raise UsageError(row["load_error"])
                index, result = int(row["index"]), pickle.loads(row["result"])
                if result.error is not None:
                    result.error = as_given(result.error, jobs[index])
                if report.record(index, result):
                    break
            else:
                complete = True
        finally:
            getattr(rows, "close", lambda: None)()  # cancels what is still running
            report.end_line()
    finally:
        if started:
            ray.shutdown()  # ends every process of the local cluster
        elif not complete:
            _end_workers(ray)
        _remove_partials(jobs, report)
    if report.disk_full:
        report.fail_unrecorded(DISK_FULL)
    else:
        report.fail_unrecorded(f"its worker process ended (killed, or out of memory) each of {JOB_TRIES} times it "
                               "ran this job")
    return report.finish()


def _end_workers(ray: Any) -> None:
    """End this run's workers (those still running a job after the cancel) and wait, at most
    :data:`WORKERS_END_SECONDS`, until they have, so that none is still writing when the temporary files are
    removed. Ray marks a killed actor dead before its process has exited: on this node the process itself is
    waited for; on other nodes, Ray's word is taken.

    Ray Data's cancel lets a worker finish its job before it ends (and a job may take minutes); this driver
    owns the workers, so it kills them as ``ray.kill`` does, by their ids from Ray's actor table (there are no
    handles to them outside Ray Data).
    """
    from ray._private import state  # developer API: the actor table, without a dashboard

    job_id = ray.get_runtime_context().get_job_id()
    here = ray.util.get_node_ip_address()
    killed: set[str] = set()
    deadline = time.monotonic() + WORKERS_END_SECONDS
    while time.monotonic() < deadline:
        workers = [actor for actor in state.actors().values() if actor.get("JobID") == job_id
                   and str(actor.get("ActorClassName")).startswith(WORKER_CLASS_PREFIX)]
        for actor in workers:
            if actor.get("State") != "DEAD" and actor["ActorID"] not in killed:
                killed.add(actor["ActorID"])
                with contextlib.suppress(Exception):  # ended meanwhile, or no longer known here
                    ray._private.worker.global_worker.core_worker.kill_actor(ray.ActorID.from_hex(actor["ActorID"]),
                                                                             True)
        alive = [actor for actor in workers if actor.get("State") != "DEAD" or _running_here(actor, here)]
        if not alive:
            return
        time.sleep(0.05)
    logger.warning("%d Ray worker(s) still running %.0f s after the cancel", len(alive), WORKERS_END_SECONDS)


def _running_here(actor: dict[str, Any], here: str) -> bool:
    """Whether the process of ``actor`` (an entry of Ray's actor table) runs on this node and has not exited
    (a zombie, exited but not yet reaped, has ended)."""
    if actor.get("Address", {}).get("IPAddress") != here or not actor.get("Pid"):
        return False
    try:
        stat = Path(f"/proc/{int(actor['Pid'])}/stat").read_text()
    except OSError:  # no such process (or no /proc: nothing more to learn)
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _remove_partials(jobs: list[Job], report: BatchReport) -> None:
    """Remove the temporary file (:func:`partial_path`) of every output not known to be written: a worker
    ended during a write leaves one."""
    for index, job in enumerate(jobs):
        if report.succeeded(index):
            continue
        for output in job.outputs:
            partial = partial_path(output)
            if partial.exists():
                partial.unlink()
