"""``python -m gpen_core gpu-check [--out report.md]``: validate the pack on a CUDA GPU in one command.

No weights file is needed (seeded weights in the official layouts). In a few minutes on one GPU it
measures: exactness of fp32 CUDA against the stored reference outputs (``tests/data``); fp16 and bf16
error against fp32; a VRAM table (256/512/1024/2048 x plain/tiled/recompute x fp32/fp16/bf16, from
``torch.cuda.max_memory_allocated`` and NVML, weights included and excluded); time per face at batch
1 and 8, eager and with CUDA graphs when the loader offers them; the out-of-memory ladder against the
real allocator, capped with ``torch.cuda.set_per_process_memory_fraction``; the memory report text.
It writes a markdown report (:mod:`gpen_core.tools.gpu_report`). Without CUDA it says so and exits
with status 2; a failed check exits with 1.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..arch.config import GPENConfig
from ..arch.generator import GPEN
from ..arch.graphs import COMPILE_MODES
from ..arch.seeded import seeded_input, seeded_state_dict
from ..enhance import enhance_images
from ..loading import load_model, safer_copy
from ..runtime.precision import NAMES, bf16_supported, resolve_dtype
from ..runtime.report import memory_report
from ..runtime.strategy import GPENOutOfMemoryError, Strategy, run_with_ladder
from .bench import official_config, weight_bytes
from .gpu_report import (
    SIZES,
    CheckPlan,
    ExactRow,
    GpuCheck,
    LadderCheck,
    TimingCase,
    TimingRow,
    VramCase,
    VramRow,
    format_report,
    timing_plan,
    vram_plan,
)

EXIT_OK, EXIT_FAILED, EXIT_NO_CUDA = 0, 1, 2
DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
TIME_LIMIT = 270.0
"""Seconds the measurements may take (the goal is under 5 minutes); rows left when it is spent are skipped."""


def add_gpu_check_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``gpu-check`` subcommand of :mod:`gpen_core.tools.cli`."""
    p = sub.add_parser("gpu-check", parents=[common], help="validate the pack on a CUDA GPU (no weights file needed)",
                       description="Exactness, half-precision error, VRAM, speed, the out-of-memory ladder and the "
                                   "memory report on this CUDA GPU; writes a markdown report. Exit status 0: all "
                                   "checks passed, 1: a check failed, 2: no CUDA.")
    p.add_argument("--out", default=None, help="write the markdown report here (it is printed either way)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cuda:N")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=SIZES, help="VRAM table sizes")
    p.add_argument("--timing-sizes", type=int, nargs="+", default=[512], choices=SIZES, help="time-per-face sizes")
    p.add_argument("--time-limit", type=float, default=TIME_LIMIT,
                   help=f"seconds the measurements may take (default {TIME_LIMIT:.0f}); later rows are skipped")
    p.add_argument("--reference-dir", default=str(DEFAULT_REFERENCE_DIR),
                   help="folder of the reference outputs (manifest-GPEN-BFR-*.json, *-output.npy)")
    p.set_defaults(func=cmd_gpu_check)


def cmd_gpu_check(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        print(f"gpu-check needs a CUDA GPU, and this PyTorch ({torch.__version__}, CUDA build: "
              f"{torch.version.cuda or 'none'}) sees none. Nothing was measured.", file=sys.stderr)
        return EXIT_NO_CUDA
    device = torch.device(args.device)
    if device.type != "cuda":
        print(f"gpu-check runs on a CUDA device; got --device {args.device}", file=sys.stderr)
        return EXIT_NO_CUDA
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    plan = CheckPlan(sizes=tuple(args.sizes), timing_sizes=tuple(args.timing_sizes))
    check = run_checks(device, plan, Path(args.reference_dir), args.time_limit,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    text = format_report(check)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"report written to {args.out}", file=sys.stderr)
    return EXIT_FAILED if check.failures() else EXIT_OK


# ------------------------------------------------------------------------------------------- helpers


class Clock:
    """The time left for the measurements."""

    def __init__(self, limit: float) -> None:
        self.start, self.limit = time.perf_counter(), limit

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out(self) -> bool:
        return self.elapsed() > self.limit


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for fp32 convolutions and matmuls on or off inside the block (new flag API where torch has it)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
        conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = old
        return
    old_flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_flags


def nvml_used(device: torch.device) -> int | None:
    """NVML's "used" memory of the device (None without NVML)."""
    return memory_report(device).used_bytes


def settle(device: torch.device) -> None:
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()


def errors(out: torch.Tensor, reference: torch.Tensor | None) -> tuple[float | None, float | None, int]:
    """(max abs error, mean abs error, non-finite count) of ``out`` against ``reference`` (CPU float32)."""
    out = out.float().cpu()
    bad = int((~torch.isfinite(out)).sum())
    if reference is None:
        return None, None, bad
    diff = (out - reference).abs()
    return float(diff.max()), float(diff.mean()), bad


def compile_supported() -> bool:
    """Whether :func:`load_model` takes ``compile=`` (the ``cuda_graphs`` option)."""
    return "compile" in inspect.signature(load_model).parameters


def environment(device: torch.device) -> dict[str, str]:
    props = torch.cuda.get_device_properties(device)
    report = memory_report(device)
    driver = "n/a"
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = str(pynvml.nvmlSystemGetDriverVersion())
        pynvml.nvmlShutdown()
    except Exception as err:  # NVML is optional: say why it is missing  # noqa: BLE001
        driver = f"n/a ({type(err).__name__})"
    return {
        "GPU": f"{props.name} (compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB)",
        "driver": driver,
        "torch / CUDA / cuDNN": f"{torch.__version__} / {torch.version.cuda} / {torch.backends.cudnn.version()}",
        "precision auto": NAMES[resolve_dtype("auto", device)],
        "bf16 native": str(bf16_supported(device)),
        "cuDNN benchmark": str(torch.backends.cudnn.benchmark),
        "NVML used before the check": "n/a" if report.used_bytes is None else f"{report.used_bytes / 2**20:,.0f} MiB",
    }


# ---------------------------------------------------------------------------------------------- checks


def check_exactness(device: torch.device, reference_dir: Path, notes: list[str]) -> list[ExactRow]:
    """fp32 on CUDA against every stored reference output, with TF32 off (judged) and on (shown)."""
    rows = []
    manifests = sorted(reference_dir.glob("manifest-GPEN-BFR-*.json"))
    if not manifests:
        notes.append(f"exactness not checked: no manifest-GPEN-BFR-*.json in {reference_dir} (use --reference-dir)")
    for manifest in manifests:
        meta = json.loads(manifest.read_text())
        c = meta["config"]
        size = int(c["size"])
        output = reference_dir / f"GPEN-BFR-{size}-seed1-b1-output.npy"
        if not output.exists():
            notes.append(f"exactness at {size} not checked: {output} is missing")
            continue
        reference = torch.from_numpy(np.load(output))
        config = GPENConfig(size, c["channel_multiplier"], c["narrow"], c["style_dim"], c["n_mlp"])
        model = load_model(seeded_state_dict(config, 1), device=device, precision="fp32")
        x = seeded_input(size, 1).to(device)
        for enabled in (False, True):
            with tf32(enabled), torch.inference_mode():
                out = model(x).cpu()
            rows.append(ExactRow(size, enabled, float((out - reference).abs().max())))
        del model, x
        settle(device)
    return rows


def usable_precisions(plan: CheckPlan, device: torch.device) -> tuple[str, ...]:
    return tuple(p for p in plan.precisions if p != "bf16" or bf16_supported(device))


def run_vram(device: torch.device, plan: CheckPlan, clock: Clock, log: Callable[[str], None],
             notes: list[str]) -> list[VramRow]:
    """The VRAM table; also the half-precision and tiling errors against fp32 plain."""
    rows: list[VramRow] = []
    precisions = usable_precisions(plan, device)
    if len(precisions) < len(plan.precisions):
        notes.append("bf16 rows skipped: this GPU has no native bf16 (compute capability < 8.0)")
    for size in plan.sizes:
        cases = vram_plan((size,), precisions)
        if clock.out():
            rows += [VramRow(c, note="skipped: time limit") for c in cases]
            continue
        state = seeded_state_dict(official_config(size), 1)
        x = seeded_input(size, 1).to(device)
        reference: torch.Tensor | None = None
        for precision in precisions:
            settle(device)
            before_model = nvml_used(device)
            model = load_model(state, device=device, precision=precision)
            settle(device)
            with_weights = nvml_used(device)
            weights = weight_bytes(model)
            for case in (c for c in cases if c.precision == precision):
                if clock.out():
                    rows.append(VramRow(case, weight_bytes=weights, note="skipped: time limit"))
                    continue
                row, out = measure_vram_row(model, x, case, device, weights, before_model, with_weights, reference)
                if case.strategy == "plain" and precision == "fp32" and out is not None:
                    reference = out
                    row.max_error = row.mean_error = 0.0  # the reference itself
                rows.append(row)
                log(f"vram {size} {precision} {case.label}: alloc {row.peak_bytes} B {row.note}")
            del model
        del state, x
        settle(device)
    return rows


def measure_vram_row(model: GPEN, x: torch.Tensor, case: VramCase, device: torch.device, weights: int,
                     before_model: int | None, with_weights: int | None,
                     reference: torch.Tensor | None) -> tuple[VramRow, torch.Tensor | None]:
    """One measured forward: the row, and the output on the CPU (None after an out-of-memory error)."""
    options = case.forward_options()
    row = VramRow(case, weight_bytes=weights)
    try:
        with torch.inference_mode():
            model(x, **options)  # warm-up: kernels, cuDNN plans
            settle(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            out = model(x, **options)
            torch.cuda.synchronize(device)
            row.seconds = time.perf_counter() - start
            row.peak_bytes = torch.cuda.max_memory_allocated(device) - base
            used = nvml_used(device)  # before the cache is emptied: the pool still holds the peak
            if used is not None and with_weights is not None and before_model is not None:
                row.nvml_bytes, row.nvml_with_weights = used - with_weights, used - before_model
            cpu_out = out.float().cpu()
            del out
    except torch.OutOfMemoryError:
        row.note = "out of memory"
    settle(device)  # after the except block: the error's traceback no longer holds the forward's tensors
    if row.note:
        return row, None
    row.max_error, row.mean_error, row.non_finite = errors(cpu_out, reference)
    return row, cpu_out


def run_timing(device: torch.device, plan: CheckPlan, clock: Clock, log: Callable[[str], None],
               notes: list[str]) -> list[TimingRow]:
    modes = COMPILE_MODES if compile_supported() else COMPILE_MODES[:1]
    if len(modes) == 1:
        notes.append("cuda_graphs not timed: this version's load_model has no compile option")
    rows: list[TimingRow] = []
    for size in plan.timing_sizes:
        state = seeded_state_dict(official_config(size), 1)
        for precision in usable_precisions(plan, device):
            for mode in modes:
                cases = timing_plan((size,), (precision,), plan.batches, (mode,))
                if clock.out():
                    rows += [TimingRow(c, note="skipped: time limit") for c in cases]
                    continue
                options = {} if mode == "off" else {"compile": mode}
                model = load_model(state, device=device, precision=precision, **options)
                for case in cases:
                    rows.append(time_row(model, case, device, plan.repeat, plan.warmup))
                    log(f"time {size} {precision} batch {case.batch} {mode}: {rows[-1].seconds_per_forward} s")
                del model
                settle(device)
    return rows


def time_row(model: GPEN, case: TimingCase, device: torch.device, repeat: int, warmup: int) -> TimingRow:
    x = seeded_input(case.size, 1, batch=case.batch).to(device)
    row = TimingRow(case)
    try:
        with torch.inference_mode():
            for _ in range(warmup):  # kernel choice, graph capture
                model(x)
            best = float("inf")
            for _ in range(repeat):
                torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(x)
                torch.cuda.synchronize(device)
                best = min(best, time.perf_counter() - start)
        row.seconds_per_forward = best
    except torch.OutOfMemoryError:
        row.note = "out of memory"
    del x
    settle(device)
    return row


def check_ladder(device: torch.device, size: int = 512, precision: str = "fp32") -> LadderCheck:
    """Cap the process below the plain forward's need; the ladder must recover, then fail below its floor."""
    model = load_model(seeded_state_dict(official_config(size), 1), device=device, precision=precision)
    x = seeded_input(size, 1).to(device)
    total = torch.cuda.get_device_properties(device).total_memory

    def forward(strategy: Strategy) -> torch.Tensor:
        return model(x, tile_size=strategy.tile_size, recompute=strategy.recompute)

    with torch.inference_mode():
        settle(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        plain = forward(Strategy())
        torch.cuda.synchronize(device)
        plain_peak = torch.cuda.max_memory_allocated(device) - base
        plain_cpu = plain.float().cpu()
        del plain
        settle(device)
        before = torch.cuda.memory_allocated(device)
        reserved = torch.cuda.memory_reserved(device)  # the cap applies to what the allocator reserves
        cap = reserved + plain_peak * 6 // 10
        check = LadderCheck(size, precision, plain_peak, cap)
        try:
            torch.cuda.set_per_process_memory_fraction(cap / total, device)
            try:
                ladder = run_with_ladder(forward, Strategy(), size)
                check.tried = [s.describe() for s in ladder.tried]
                check.recovered = len(ladder.tried) > 1
                check.max_error = float((ladder.output.float().cpu() - plain_cpu).abs().max())
                del ladder
            except GPENOutOfMemoryError as err:
                check.tried = [str(err)]
            settle(device)
            images = ((x + 1) / 2).clamp(0, 1)
            try:
                check.auto_strategy = enhance_images(model, images, tile_size="auto", measure=True).record.strategy
            except GPENOutOfMemoryError as err:
                check.auto_strategy = f"failed: {err}"
            del images
            settle(device)
            check.floor_cap_bytes = reserved + plain_peak // 64
            torch.cuda.set_per_process_memory_fraction(check.floor_cap_bytes / total, device)
            try:
                run_with_ladder(forward, Strategy(), size)
                check.floor_error = "no error: the floor fitted under this cap"
            except GPENOutOfMemoryError as err:
                check.floor_error = str(err).split(" Last error:")[0]
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
            settle(device)
        check.leaked_bytes = torch.cuda.memory_allocated(device) - before
    return check


def check_fallback_copy(device: torch.device, size: int = 256) -> float:
    """The ``auto`` fallback's copy on this GPU, in fp32, against an fp32 load: max difference (must be 0)."""
    state = seeded_state_dict(official_config(size), 1)
    auto = load_model(state, device=device, precision="auto")
    if auto.dtype == torch.float32:
        return 0.0
    exact = load_model(state, device=device, precision="fp32")
    x = seeded_input(size, 1).to(device)
    with torch.inference_mode():
        difference = float((safer_copy(auto, torch.float32)(x) - exact(x)).abs().max())
    del auto, exact, x
    settle(device)
    return difference


def memory_text(device: torch.device, size: int = 512) -> str:
    """What GPEN VRAM Report shows after a GPEN Enhance run (precision auto, tile_size auto)."""
    model = load_model(seeded_state_dict(official_config(size), 1), device=device, precision="auto")
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        run = enhance_images(model, images, tile_size="auto", batch_size=2, measure=True)
    text = memory_report(device, last=run.record).format()
    del model, run
    settle(device)
    return text


def run_checks(device: torch.device, plan: CheckPlan, reference_dir: Path, time_limit: float,
               log: Callable[[str], None] = print) -> GpuCheck:
    """Every section in turn; an exception in one is recorded as a failure and the next one runs."""
    clock = Clock(time_limit)
    check = GpuCheck(environment=environment(device))
    torch.cuda.set_device(device)

    def section(name: str, run: Callable[[], None]) -> None:
        if clock.out():
            check.notes.append(f"{name} skipped: time limit of {time_limit:.0f} s spent")
            return
        log(f"gpu-check: {name} ({clock.elapsed():.0f} s)")
        try:
            run()
        except Exception as err:  # recorded in the report; the other sections still run  # noqa: BLE001
            check.errors.append(f"{name} failed: {type(err).__name__}: {err}")
            settle(device)

    def exactness() -> None:
        check.exact = check_exactness(device, reference_dir, check.notes)

    def vram() -> None:
        check.vram = run_vram(device, plan, clock, log, check.notes)

    def fallback() -> None:
        check.fallback_error = check_fallback_copy(device, plan.probe_size)

    def timing() -> None:
        check.timing = run_timing(device, plan, clock, log, check.notes)

    def ladder() -> None:
        check.ladder = check_ladder(device, plan.ladder_size)

    def report() -> None:
        check.memory_text = memory_text(device, plan.ladder_size)

    for name, run in (("exactness", exactness), ("VRAM table", vram), ("precision fallback copy", fallback),
                      ("time per face", timing), ("out-of-memory ladder", ladder), ("memory report", report)):
        section(name, run)
    check.seconds = clock.elapsed()
    return check

