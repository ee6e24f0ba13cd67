"""The rows ``gpu-check`` plans and measures, and the markdown report it writes (no GPU needed here).

Everything in this module is plain data and text, so it is tested on the CPU with fake rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..arch.graphs import COMPILE_MODES
from ..runtime.memory import MiB
from ..runtime.precision import DTYPES

SIZES = (256, 512, 1024, 2048)
STRATEGIES = ("plain", "tiled", "recompute")
PRECISIONS: tuple[str, ...] = tuple(DTYPES)
"""The explicit precisions (``auto`` resolves to one of them)."""
BATCHES = (1, 8)
EXACT_LIMIT = 1e-4
"""Max abs error of fp32 CUDA (TF32 off) against the stored reference outputs: the CPU tests' limit."""


@dataclass(frozen=True)
class VramCase:
    """One row of the VRAM table: a model size, a memory strategy and a precision."""

    size: int
    strategy: str
    precision: str

    @property
    def tile(self) -> int:
        """The tile of the tiled rows: 256, or half the model at 256."""
        return min(256, self.size // 2)

    @property
    def label(self) -> str:
        return {"plain": "plain", "tiled": f"tiled {self.tile}", "recompute": f"tiled {self.tile} + recompute"}[
            self.strategy
        ]

    def forward_options(self) -> dict[str, object]:
        """Keyword arguments of ``GPEN.forward`` for this row."""
        if self.strategy == "plain":
            return {}
        return {"tile_size": self.tile, "recompute": self.strategy == "recompute"}


@dataclass(frozen=True)
class TimingCase:
    """One row of the timing table."""

    size: int
    precision: str
    batch: int
    compile: str


def vram_plan(sizes: tuple[int, ...] = SIZES, precisions: tuple[str, ...] = PRECISIONS) -> list[VramCase]:
    """Rows in run order: per size, per precision (one model each), the three strategies."""
    return [VramCase(s, strategy, p) for s in sizes for p in precisions for strategy in STRATEGIES]


def timing_plan(
    sizes: tuple[int, ...] = (512,), precisions: tuple[str, ...] = PRECISIONS, batches: tuple[int, ...] = BATCHES,
    compile_modes: tuple[str, ...] = COMPILE_MODES,
) -> list[TimingCase]:
    """Rows in run order: per size, precision and compile mode (one model each), the batch sizes."""
    return [TimingCase(s, p, b, c) for s in sizes for p in precisions for c in compile_modes for b in batches]


@dataclass(frozen=True)
class CheckPlan:
    """What ``gpu-check`` measures (the command line's defaults; tests use tiny sizes).

    Attributes:
        sizes: model sizes of the VRAM table.
        timing_sizes: model sizes of the time-per-face table.
        precisions: of both tables (bf16 is dropped on GPUs without native bf16).
        batches: of the time-per-face table.
        repeat: timed forwards per timing row (the best counts).
        warmup: untimed forwards before them (kernel choice, graph capture).
        ladder_size: model size of the out-of-memory ladder and the memory report run.
        probe_size: model size of the precision-fallback copy check.
    """

    sizes: tuple[int, ...] = SIZES
    timing_sizes: tuple[int, ...] = (512,)
    precisions: tuple[str, ...] = PRECISIONS
    batches: tuple[int, ...] = BATCHES
    repeat: int = 10
    warmup: int = 3
    ladder_size: int = 512
    probe_size: int = 256


@dataclass
class ExactRow:
    """fp32 CUDA output against a stored reference output (``tests/data``)."""

    size: int
    tf32: bool
    max_error: float

    @property
    def passed(self) -> bool:
        return self.tf32 or self.max_error <= EXACT_LIMIT  # with TF32 the error is reported, not judged


@dataclass
class VramRow:
    """Measured figures of one :class:`VramCase`; ``note`` says why a figure is missing.

    Attributes:
        peak_bytes: ``torch.cuda.max_memory_allocated`` during the forward, above what was allocated
            before it (weights and input excluded, output included).
        weight_bytes: parameters and buffers on the GPU.
        nvml_bytes: NVML's device "used" memory after the forward (the allocator's cache still holds
            the peak), minus the same figure with the weights loaded and the cache emptied.
        nvml_with_weights: the same, minus the figure before the model was loaded (weights included;
            the CUDA context excluded).
        max_error, mean_error: against the fp32 plain output of the same size.
    """

    case: VramCase
    peak_bytes: int | None = None
    weight_bytes: int | None = None
    nvml_bytes: int | None = None
    nvml_with_weights: int | None = None
    seconds: float | None = None
    max_error: float | None = None
    mean_error: float | None = None
    non_finite: int = 0
    note: str = ""


@dataclass
class TimingRow:
    case: TimingCase
    seconds_per_forward: float | None = None
    note: str = ""


@dataclass
class LadderCheck:
    """The out-of-memory ladder against the real allocator, capped with ``set_per_process_memory_fraction``."""

    size: int
    precision: str
    plain_peak_bytes: int
    cap_bytes: int
    tried: list[str] = field(default_factory=list)
    recovered: bool = False
    """The plain forward ran out of memory and a leaner strategy then succeeded."""
    max_error: float | None = None
    auto_strategy: str = ""
    floor_cap_bytes: int = 0
    floor_error: str = ""
    leaked_bytes: int = 0


@dataclass
class GpuCheck:
    """Everything ``gpu-check`` found; :func:`format_report` writes it."""

    environment: dict[str, str] = field(default_factory=dict)
    exact: list[ExactRow] = field(default_factory=list)
    vram: list[VramRow] = field(default_factory=list)
    timing: list[TimingRow] = field(default_factory=list)
    ladder: LadderCheck | None = None
    fallback_error: float | None = None
    memory_text: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def failures(self) -> list[str]:
        """What went wrong, one line each (empty: every check passed)."""
        out = list(self.errors)
        out += [f"fp32 GPEN-{r.size} differs from the reference by {r.max_error:.2e} (limit {EXACT_LIMIT:.0e})"
                for r in self.exact if not r.passed]
        out += [f"GPEN-{r.case.size} {r.case.precision} {r.case.label}: {r.non_finite} non-finite output values"
                for r in self.vram if r.non_finite and r.case.precision != "fp16"]
        if self.ladder is not None and not self.ladder.recovered:
            out.append(f"the out-of-memory ladder did not recover under the memory cap (tried: "
                       f"{', '.join(self.ladder.tried) or 'nothing'})")
        if self.fallback_error is not None and self.fallback_error > EXACT_LIMIT:
            out.append(f"the safer-precision copy differs from an fp32 load by {self.fallback_error:.2e}")
        return out


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / MiB:,.1f}"


def _err(value: float | None) -> str:
    return "" if value is None else f"{value:.2e}"


def _table(header: list[str], rows: list[list[str]], right: int = 1) -> list[str]:
    """A markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


HOW_TO_READ = """\
## How to read this report
- **Exactness**: fp32 on CUDA with TF32 off must match the stored reference outputs (the official
  generator's, on seeded weights) within 1e-4, as on the CPU. With PyTorch's default (cuDNN may use TF32
  for fp32 convolutions) the error is larger; it is shown, not judged.
- **Half precision**: error of fp16/bf16 against fp32 on the same seeded weights and input ([-1, 1] scale;
  1/255 of the [0, 1] image is 7.8e-3 here). fp16 may overflow (non-finite values): under precision `auto`
  the pack then reruns in a safer precision by itself.
- **VRAM**: *alloc* is `torch.cuda.max_memory_allocated` during one forward above what was allocated before
  (activations and output; weights and input excluded); *+weights* adds the weights. *NVML* is the driver's
  "used" memory after the forward (the allocator's cache still holds the peak) minus the same figure with the
  weights loaded (*NVML*) or before loading (*NVML+w*): what other programs see, with the allocator's rounding.
  The tiled rows must stay near their tile's figure as the model grows: that is what lets 2048 run on small cards.
  *max err* is against the fp32 plain output (tiled rows: the tiling's exactness on this GPU).
- **Time per face**: best of several forwards divided by the batch; `cuda_graphs` replays a captured graph
  (fixed shapes), which removes the per-kernel launch cost that dominates at batch 1.
- **Out-of-memory ladder**: with the process capped below the plain forward's need, a plain run must fall back
  to smaller tiles and recompute and still give the plain output; below the floor it must fail with the list of
  what it tried; afterwards no memory may stay allocated.
- **Memory report**: the text the GPEN VRAM Report node shows after a GPEN Enhance run.
Please attach the whole file to an issue together with your GPU model and driver version.
"""


def format_report(check: GpuCheck) -> str:
    """The markdown report."""
    failures = check.failures()
    lines = ["# GPEN gpu-check", ""]
    lines.append(f"**Result: {'FAILED' if failures else 'passed'}** ({check.seconds:.0f} s)")
    lines += [f"- {f}" for f in failures]
    lines += ["", "## Environment", ""]
    lines += _table(["item", "value"], [[k, v] for k, v in check.environment.items()], right=9)
    lines += ["", "## 1. Exactness: fp32 CUDA against the stored reference outputs", ""]
    if check.exact:
        lines += _table(["size", "TF32", "max abs error", "limit"], [
            [str(r.size), "on" if r.tf32 else "off", _err(r.max_error),
             "shown only" if r.tf32 else f"{EXACT_LIMIT:.0e}"] for r in check.exact])
    else:
        lines.append("not run (see notes)")
    lines += ["", "## 2. Half precision against fp32 (plain forward)", ""]
    half = [r for r in check.vram if r.case.strategy == "plain" and r.case.precision != "fp32"]
    lines += _table(["size", "precision", "max abs error", "mean abs error", "non-finite", "note"], [
        [str(r.case.size), r.case.precision, _err(r.max_error), _err(r.mean_error), str(r.non_finite), r.note]
        for r in half], right=2)
    if check.fallback_error is not None:
        lines += ["", f"Safer-precision copy (the `auto` fallback) against an fp32 load: max difference "
                      f"{check.fallback_error:.2e} (0 expected: the same stored weights; limit {EXACT_LIMIT:.0e})."]
    lines += ["", "## 3. VRAM (MiB) per size, strategy and precision, batch 1", ""]
    lines += _table(
        ["size", "strategy", "precision", "alloc", "+weights", "NVML", "NVML+w", "time s", "max err", "note"],
        [[str(r.case.size), r.case.label, r.case.precision, _mib(r.peak_bytes),
          _mib(None if r.peak_bytes is None or r.weight_bytes is None else r.peak_bytes + r.weight_bytes),
          _mib(r.nvml_bytes), _mib(r.nvml_with_weights), "" if r.seconds is None else f"{r.seconds:.3f}",
          _err(r.max_error), r.note] for r in check.vram], right=3)
    lines += ["", "## 4. Time per face (ms)", ""]
    lines += _table(["size", "precision", "batch", "compile", "ms per face", "ms per forward", "note"], [
        [str(r.case.size), r.case.precision, str(r.case.batch), r.case.compile,
         "" if r.seconds_per_forward is None else f"{1000 * r.seconds_per_forward / r.case.batch:.2f}",
         "" if r.seconds_per_forward is None else f"{1000 * r.seconds_per_forward:.2f}", r.note]
        for r in check.timing], right=2)
    lines += ["", "## 5. Out-of-memory ladder against the real allocator", ""]
    ladder = check.ladder
    if ladder is None:
        lines.append("not run (see notes)")
    else:
        error = "" if ladder.max_error is None else f", max error against the plain output {_err(ladder.max_error)}"
        lines += [
            f"GPEN-{ladder.size} {ladder.precision}: the plain forward needs {_mib(ladder.plain_peak_bytes)} MiB above "
            f"the weights; the process was capped at {_mib(ladder.cap_bytes)} MiB in all.",
            f"- tried: {' → '.join(ladder.tried) or 'nothing'}; "
            f"{'recovered' if ladder.recovered else 'did NOT recover'}{error}",
            f"- `tile_size=\"auto\"` under the same cap chose: {ladder.auto_strategy or 'n/a'}",
            f"- capped at {_mib(ladder.floor_cap_bytes)} MiB (below the floor): {ladder.floor_error or 'no error?'}",
            f"- allocated after the ladder, above before: {_mib(ladder.leaked_bytes)} MiB",
        ]
    lines += ["", "## 6. GPEN VRAM Report text after a GPEN Enhance run", "", "```", check.memory_text or "(not run)",
              "```", ""]
    if check.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in check.notes] + [""]
    lines.append(HOW_TO_READ)
    return "\n".join(lines)
