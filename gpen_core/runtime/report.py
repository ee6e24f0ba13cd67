"""A memory report: device, NVML totals, torch allocator figures, and a run record the caller kept.

Never raises: whatever cannot be read (no NVIDIA driver, no CUDA, no ``pynvml``) is
reported as unavailable with the reason.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)
MiB = 1024 * 1024


@dataclass(frozen=True)
class RunRecord:
    """Figures of one measured enhancement (``enhance_images(..., measure=True)``), for the report.

    Attributes:
        device: where GPEN ran, e.g. ``"cuda:0"``.
        peak_bytes: peak memory of the run above what was allocated before it (weights excluded).
        peak_method: how ``peak_bytes`` was obtained (see :class:`gpen_core.runtime.memory.PeakMeter`).
        seconds: wall time of the whole call (measurement included).
        strategy: the memory strategy of the last batch, e.g. ``"tiles of 256 + recompute"``.
        precision: the dtype that produced the output, e.g. ``"bf16"``, or ``"fp16 -> bf16"`` after a fallback.
        whole_peak_bytes: for a whole-photo run, the peak of everything it did (detection, GPEN,
            the parser, paste-back) above what was allocated before it; None for GPEN alone.
    """

    device: str
    peak_bytes: int
    peak_method: str
    seconds: float
    strategy: str
    precision: str
    whole_peak_bytes: int | None = None


def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo, else physical pages free; 8 GiB when neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


@dataclass
class MemoryReport:
    """What :func:`memory_report` found; ``None`` fields were unavailable (see ``notes``)."""

    device: str
    device_name: str
    total_bytes: int | None = None
    used_bytes: int | None = None
    free_bytes: int | None = None
    process_bytes: int | None = None
    torch_allocated: int | None = None
    torch_reserved: int | None = None
    torch_peak: int | None = None
    rss_bytes: int | None = None
    rss_peak_bytes: int | None = None
    last: RunRecord | None = None
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A few readable lines."""

        def mib(v: int | None) -> str:
            return "n/a" if v is None else f"{v / MiB:,.0f} MiB"

        lines = [f"Device: {self.device} ({self.device_name})"]
        if self.total_bytes is not None:
            lines.append(
                f"Memory: free {mib(self.free_bytes)} / used {mib(self.used_bytes)} / total {mib(self.total_bytes)}"
            )
        if self.process_bytes is not None:
            lines.append(f"This process on the GPU: {mib(self.process_bytes)}")
        if self.torch_allocated is not None:
            lines.append(
                f"PyTorch: allocated {mib(self.torch_allocated)}, reserved {mib(self.torch_reserved)}, "
                f"peak {mib(self.torch_peak)}"
            )
        if self.rss_bytes is not None:
            lines.append(f"Process RAM: {mib(self.rss_bytes)} (peak {mib(self.rss_peak_bytes)})")
        if self.last is None:
            lines.append("Last GPEN run: none yet")
        else:
            r = self.last
            lines.append(
                f"Last GPEN run: peak {mib(r.peak_bytes)} ({r.peak_method}), {r.seconds:.2f} s, "
                f"{r.strategy}, {r.precision} on {r.device}"
            )
            if r.whole_peak_bytes is not None:
                lines.append(f"Whole photo (detection, GPEN, parser, paste): peak {mib(r.whole_peak_bytes)}")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def _nvml_figures(report: MemoryReport, index: int) -> None:
    try:
        import pynvml
    except ImportError:
        report.notes.append("nvidia-ml-py is not installed: no NVML figures (pip install nvidia-ml-py)")
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        report.notes.append(f"NVML unavailable: {err}")
        return
    try:
        bus_id = getattr(torch.cuda.get_device_properties(index), "pci_bus_id", None)
        handle = (
            pynvml.nvmlDeviceGetHandleByPciBusId(bus_id) if bus_id else pynvml.nvmlDeviceGetHandleByIndex(index)
        )
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        report.total_bytes, report.used_bytes, report.free_bytes = int(info.total), int(info.used), int(info.free)
        pid = os.getpid()
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                report.process_bytes = int(proc.usedGpuMemory)
    except pynvml.NVMLError as err:
        report.notes.append(f"NVML query failed: {err}")
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def memory_report(device: str | torch.device | None = None, last: RunRecord | None = None) -> MemoryReport:
    """Memory figures for ``device`` (default: the current CUDA device, else the CPU). Never raises.

    Args:
        device: the device to report on.
        last: the caller's last measured run (``enhance_images(..., measure=True)``), shown as "Last GPEN run".
    """
    try:
        if device is None or str(device) == "auto":
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
    except (RuntimeError, ValueError) as err:
        report = MemoryReport("cpu", "CPU")
        report.notes.append(f"device unavailable ({err}); showing CPU figures")
        device = torch.device("cpu")
    else:
        report = MemoryReport(str(device), "CPU")
    rss, hwm = _proc_status_kib("VmRSS"), _proc_status_kib("VmHWM")
    report.rss_bytes = rss * 1024 if rss is not None else None
    report.rss_peak_bytes = hwm * 1024 if hwm is not None else None
    report.last = last
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        report.device_name = torch.cuda.get_device_name(index)
        report.torch_allocated = torch.cuda.memory_allocated(index)
        report.torch_reserved = torch.cuda.memory_reserved(index)
        report.torch_peak = torch.cuda.max_memory_allocated(index)
        _nvml_figures(report, index)
    else:
        if device.type == "cuda":
            report.notes.append("CUDA is not available in this PyTorch; showing CPU figures")
        elif device.type != "cpu":
            report.notes.append(f"no device memory figures for {device.type} in this report; showing system RAM")
        available = available_ram_bytes()
        report.free_bytes = available
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            report.total_bytes, report.used_bytes = total, total - available
        except (ValueError, OSError, AttributeError):
            report.notes.append("total RAM unknown on this system")
    return report


class ProcessPeak:
    """The peak memory of a stretch of work: the process's resident set (RAM) and, on CUDA, the allocator.

    :meth:`start` resets the process's high-water mark where Linux allows it (``/proc/self/clear_refs``),
    so each stretch gets its own figure; elsewhere the figure is the process's peak so far (said in
    :meth:`describe`). Never raises.

    Args:
        device: the device the work runs on.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset_works = False

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5: reset the peak resident set size (VmHWM)
            self.reset_works = True
        except OSError:
            self.reset_works = False
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(self.device)

    def ram_bytes(self) -> int | None:
        """The peak resident set since :meth:`start` (since the process began when it could not be reset)."""
        hwm = _proc_status_kib("VmHWM")
        return None if hwm is None else hwm * 1024

    def describe(self) -> str:
        """``"RAM 1.21 GiB"`` (plus ``", CUDA 0.8 GiB"``), or ``"unknown"``."""
        parts = []
        ram = self.ram_bytes()
        if ram is not None:
            parts.append(f"RAM {ram / 2**30:.2f} GiB" + ("" if self.reset_works else " (process peak)"))
        if self.device.type == "cuda" and torch.cuda.is_available():
            parts.append(f"{self.device} {torch.cuda.max_memory_allocated(self.device) / 2**30:.2f} GiB")
        return ", ".join(parts) or "unknown"
