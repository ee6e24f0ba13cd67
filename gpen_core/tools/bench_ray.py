"""Scaling of ``gpen enhance --ray`` on this machine: images per minute with 1, 2 ... CPU workers.

``python -m gpen_core.tools.bench_ray --inputs PHOTOS [--model GPEN.pth | --size 256] [--workers 1 2]``

Starts a local Ray cluster (loopback only), then for each worker count runs the whole folder through
:func:`gpen_core.tools.ray_runner.run_ray` into a fresh output folder and prints a markdown table: wall time
from submitting the dataset to the last result (workers loading their networks included), images per
minute over that time, and over the steady part (first result to last). The machine's load average
(``/proc/loadavg``) is printed before and after. Needs Ray (``pip install '.[ray]'``) and the face detector
weights (as ``gpen enhance``); without ``--model`` the GPEN weights are seeded (no file needed).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from .batch import Failures, collect_inputs, plan_jobs
from .batch_report import BatchReport
from .jobs import JobResult, JobSettings, RuntimeSpec
from .ray_options import RayOptions, import_ray


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_once(inputs: list[Path], out: Path, spec: RuntimeSpec, workers: int) -> tuple[int, float, float]:
    """(images written, seconds to the last result, seconds from the first result to the last)."""
    from . import ray_runner

    times: list[float] = []
    record = BatchReport.record

    def timed(self: BatchReport, index: int, result: JobResult) -> bool:
        times.append(time.perf_counter())
        return record(self, index, result)

    failures = Failures()
    jobs = plan_jobs(inputs, out, "", failures)
    out.mkdir(parents=True)
    with mock.patch.object(BatchReport, "record", timed):
        started = time.perf_counter()
        written = ray_runner.run_ray(jobs, JobSettings(), spec, failures, RayOptions(workers=workers))
    return len(written), times[-1] - started, times[-1] - times[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help="a folder of photos")
    parser.add_argument("--model", default=None, help="a GPEN checkpoint (default: seeded weights of --size)")
    parser.add_argument("--size", type=int, default=256, help="GPEN size of the seeded weights")
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local cluster (default: this machine's)")
    args = parser.parse_args(argv)
    from . import ray_runner

    with tempfile.TemporaryDirectory(prefix="gpen-bench-ray-") as scratch:
        model = args.model
        if model is None:
            from ..arch.seeded import seeded_state_dict
            from .bench import official_config

            model = str(Path(scratch) / f"seeded-{args.size}.pth")
            torch.save(seeded_state_dict(official_config(args.size), 1), model)
        spec = RuntimeSpec(model=model, device="cpu", precision="fp32", detector=args.detector)
        inputs, _ = collect_inputs([args.inputs])
        print(f"load average before: {load_average()}; {len(inputs)} inputs; model {Path(model).name}", flush=True)
        ray_runner.connect(RayOptions(), num_cpus=args.cpus)
        rows = []
        for workers in args.workers:
            written, wall, steady = run_once(inputs, Path(scratch) / f"out-{workers}", spec, workers)
            rows.append((workers, written, wall, steady))
        import_ray(local=True).shutdown()
        print(f"load average after: {load_average()}")
    print("\n| workers | images | wall s | images/min (wall) | images/min (first to last result) |")
    print("|---:|---:|---:|---:|---:|")
    for workers, written, wall, steady in rows:
        steady_rate = f"{60 * (written - 1) / steady:.1f}" if steady > 0 else "-"
        print(f"| {workers} | {written} | {wall:.1f} | {60 * written / wall:.1f} | {steady_rate} |")


if __name__ == "__main__":
    main()
