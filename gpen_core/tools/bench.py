"""Benchmark: time, peak memory and error per size, precision and strategy, with seeded weights.

Rows are precision x strategy (plain, tiled, recompute, tiled + recompute, and a
checkpointed forward+backward); columns are peak activation memory, peak with weights
(parameters, buffers and the tensors derived from them, :mod:`gpen_core.arch.prepared`),
time, the non-view ATen operators of one forward (:class:`gpen_core.tools.opcount.OpCounter`,
after a warm-up call: on a GPU each is a kernel launch), and the max and mean abs error
against the fp32 plain output. CUDA peaks come from ``torch.cuda.max_memory_allocated``;
CPU peaks count live tensors (:class:`gpen_core.runtime.memory.LiveTensorPeak`). Times are
the best of ``repeat`` runs, taken without the memory or operator counter.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..arch.config import OFFICIAL_CONFIGS, GPENConfig
from ..arch.generator import GPEN
from ..arch.seeded import seeded_input, seeded_state_dict
from ..face.parsing import MaskDifference, mask_difference
from ..loading import build_model
from ..runtime.memory import MiB, peak_memory
from ..runtime.precision import DTYPES, resolve_device
from .opcount import count_ops


def official_config(size: int) -> GPENConfig:
    """The official release's layout at ``size`` (:data:`OFFICIAL_CONFIGS`); other sizes get a small test layout."""
    cm, narrow = OFFICIAL_CONFIGS.get(size, (2, 0.125))
    return GPENConfig(size, cm, narrow)


@dataclass
class Row:
    size: int
    precision: str
    strategy: str
    peak_bytes: int
    weight_bytes: int
    seconds: float
    max_error: float | None
    ops: int | None = None
    """Non-view ATen operators of one forward (inference mode, after a warm-up call)."""
    mean_error: float | None = None


def best_time(fn: Callable[[], object], repeat: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def weight_bytes(model: torch.nn.Module) -> int:
    """Parameters and buffers, plus what a :class:`GPEN` derived from them and keeps (its weight cache)."""
    stored = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return stored + (model.weight_cache.nbytes(model) if isinstance(model, GPEN) else 0)


OVERLAPS = (0, 2)
"""Cut halos measured by default: what an inexact ``overlap`` buys in time and costs in error."""


def strategies(tile_size: int, size: int, overlaps: tuple[int, ...] = OVERLAPS) -> list[tuple[str, dict]]:
    tile = min(tile_size, size)
    rows: list[tuple[str, dict]] = [
        ("plain", {}),
        (f"tiled {tile}", {"tile_size": tile}),
        ("recompute", {"recompute": True}),
        (f"tiled {tile} + recompute", {"tile_size": tile, "recompute": True}),
    ]
    return rows + [(f"tiled {tile} overlap {o}", {"tile_size": tile, "overlap": o}) for o in overlaps]


def bench_size(size: int, precisions: list[str], tile_size: int, device: torch.device, repeat: int,
               backward: bool = True, log: Callable[[str], None] = print,
               overlaps: tuple[int, ...] = OVERLAPS) -> list[Row]:
    """Rows for one model size; the fp32 plain output is the error reference."""
    config = official_config(size)
    state = seeded_state_dict(config, 1)
    x = seeded_input(size, 1).to(device)
    rows: list[Row] = []
    reference = None
    if precisions[0] != "fp32":  # the error is always against fp32, measured or not
        with torch.inference_mode():
            reference = build_model(state).to(device)(x).float()
    for precision in precisions:
        model = build_model(state).to(device)
        model.set_dtype(DTYPES[precision])
        model(x)  # warm-up: kernels and allocator
        for name, options in strategies(tile_size, size, overlaps):
            forward = functools.partial(model, x, **options)
            with torch.inference_mode():
                seconds = best_time(forward, repeat, device)
                out, peak = peak_memory(forward, device)
                _, counter = count_ops(forward)
            if reference is None:
                reference = out.float()
            diff = (out.float() - reference).abs()
            rows.append(Row(size, precision, name, peak, weight_bytes(model), seconds, float(diff.max()),
                            counter.count, float(diff.mean())))
            log(format_row(rows[-1]))
        if backward:
            rows += bench_backward(model, x, precision, device, repeat, log)
    return rows


def bench_backward(model: GPEN, x: torch.Tensor, precision: str, device: torch.device, repeat: int,
                   log: Callable[[str], None]) -> list[Row]:
    """Forward + backward to the input, without and with per-level checkpointing.

    The peak counted here is the bytes saved for backward (CPU; CUDA: the allocator peak),
    the memory that checkpointing exists to cut.
    """
    rows = []
    for name, grad_checkpoint in (("backward", False), ("backward + checkpoint", True)):
        def step(grad_checkpoint: bool = grad_checkpoint) -> int:
            image = x.detach().clone().requires_grad_(True)
            saved: dict[int, int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                storage = t.untyped_storage()
                saved[storage.data_ptr()] = storage.nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = model(image, grad_checkpoint=grad_checkpoint)
            out.float().square().mean().backward()
            return sum(saved.values())

        seconds = best_time(step, repeat, device)
        if device.type == "cuda":
            _, peak = peak_memory(step, device)
        else:
            peak = step()
        rows.append(Row(int(x.shape[-1]), precision, name, peak, weight_bytes(model), seconds, None))
        log(format_row(rows[-1]))
    return rows


HEADER = (f"{'size':>5} {'prec':>5} {'strategy':<24} {'peak MiB':>9} {'+weights':>9} {'time s':>8} {'ops':>5} "
          f"{'max err':>9} {'mean err':>9}")


def format_row(row: Row) -> str:
    err = "" if row.max_error is None else f"{row.max_error:9.2e}"
    mean = "" if row.mean_error is None else f"{row.mean_error:9.2e}"
    ops = "" if row.ops is None else str(row.ops)
    return (f"{row.size:>5} {row.precision:>5} {row.strategy:<24} {row.peak_bytes / MiB:9.1f} "
            f"{(row.peak_bytes + row.weight_bytes) / MiB:9.1f} {row.seconds:8.2f} {ops:>5} {err:>9} {mean:>9}")


@dataclass
class ParserRow:
    """One face-parser row: an implementation in a precision, per face."""

    implementation: str
    """``"ours"`` or ``"official"`` (GPEN's ``face_parse/parse_model.py``)."""
    precision: str
    batch: int
    seconds_per_face: float
    peak_bytes: int
    """Live tensors of one forward (CPU; CUDA: the allocator peak), weights and input excluded."""
    estimate_bytes: int | None
    """:func:`~gpen_core.face.parsing.parser_peak_bytes` (ours only): must bound ``peak_bytes``."""
    weight_bytes: int
    logit_error: float
    """max |logits - our fp32 logits|."""
    difference: MaskDifference
    """Class, mask and paste-mask differences against our fp32 parse."""


PARSER_HEADER = (f"{'parser':<9} {'prec':>5} {'batch':>5} {'s/face':>7} {'vs off.':>7} {'peak MiB':>9} "
                 f"{'estimate':>9} {'+weights':>9} {'logit err':>9} {'class fl':>8} {'mask fl':>7} "
                 f"{'paste max':>9} {'paste mean':>10}")


def format_parser_row(row: ParserRow, official_seconds: float | None = None) -> str:
    speed = "" if official_seconds is None else f"{official_seconds / row.seconds_per_face:6.2f}x"
    estimate = "" if row.estimate_bytes is None else f"{row.estimate_bytes / MiB:9.1f}"
    d = row.difference
    return (f"{row.implementation:<9} {row.precision:>5} {row.batch:>5} {row.seconds_per_face:7.2f} {speed:>7} "
            f"{row.peak_bytes / MiB:9.1f} {estimate:>9} {(row.peak_bytes + row.weight_bytes) / MiB:9.1f} "
            f"{row.logit_error:9.2e} {d.class_flips:>8} {d.mask_flips:>7} {d.paste_max:9.2e} {d.paste_mean:10.2e}")


def load_official_parser(checkout: str | Path, state: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    """GPEN's own ``ParseNet`` (``face_parse/parse_model.py`` of a yangxy/GPEN checkout), built as
    ``FaceParse.load_model`` builds it, with ``state`` loaded strictly, in eval mode."""
    folder = Path(checkout) / "face_parse"
    if not (folder / "parse_model.py").is_file():
        raise FileNotFoundError(f"{checkout}: no face_parse/parse_model.py (not a yangxy/GPEN checkout)")
    sys.path.insert(0, str(folder))  # parse_model.py does `from blocks import *`
    official_class = importlib.import_module("parse_model").ParseNet
    official = official_class(512, 512, 32, 64, 19, norm_type="bn", relu_type="LeakyReLU", ch_range=[32, 256])
    official.load_state_dict(state)
    return official.to(device).eval()


def bench_parser(precisions: list[str], device: torch.device, repeat: int,
                 log: Callable[[str], None] = print, config=None, official: str | Path | None = None,
                 batch: int = 1) -> list[ParserRow]:
    """ParseNet at 512 (the paste-mask parser; ``config`` default: the official one) on the reference
    crop (seeded weights, seeded crop, ``batch`` copies): ours in fp32 and each of ``precisions``, and
    GPEN's own code in fp32 when ``official`` names a yangxy/GPEN checkout. Times alternate between
    the rows (best of ``repeat`` per row, per face); errors are against our fp32 parse."""
    from ..face.parsing import (
        PadWorkspace,
        ParseNet,
        kept_classes,
        load_parser,
        parser_input,
        parser_peak_bytes,
        seeded_parse_images,
        seeded_parsenet_state_dict,
    )

    state = seeded_parsenet_state_dict(config)
    crop = torch.from_numpy(seeded_parse_images(8)[..., ::-1].copy()).permute(0, 3, 1, 2)
    x = parser_input(crop.to(device)).expand(batch, -1, -1, -1).contiguous()
    # (timed run, run for the peak, module); the timed runs of ours keep one padded-input buffer, as
    # parse_paste_masks does across the face batches of a photo; the peak counts a fresh one
    runs: dict[tuple[str, str], tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor], torch.nn.Module]] = {}
    for precision in dict.fromkeys(["fp32", *precisions]):
        parser = load_parser(state, device=device, dtype=DTYPES[precision])
        runs[("ours", precision)] = (functools.partial(parser.logits, x, PadWorkspace()),
                                     functools.partial(parser.logits, x), parser)
    if official is not None:
        model = load_official_parser(official, state, device)
        runs[("official", "fp32")] = (lambda: model(x)[0], lambda: model(x)[0], model)
    outputs: dict[tuple[str, str], torch.Tensor] = {}
    seconds = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        for key, (run, _, _) in runs.items():
            outputs[key] = run().float()  # warm-up, and the output compared
        for _ in range(repeat):  # alternate, so that every row sees the same machine state
            for key, (run, _, _) in runs.items():
                seconds[key] = min(seconds[key], best_time(run, 1, device) / batch)
    reference = outputs[("ours", "fp32")]
    kept = kept_classes(num_classes=reference.shape[1])
    rows = []
    for key, (_, fresh, module) in runs.items():
        with torch.inference_mode():
            _, peak = peak_memory(fresh, device)
        estimate = parser_peak_bytes(module.config, DTYPES[key[1]], batch) if isinstance(module, ParseNet) else None
        difference = mask_difference(reference.argmax(dim=1), outputs[key].argmax(dim=1), kept)
        error = float((outputs[key] - reference).abs().max())
        rows.append(ParserRow(key[0], key[1], batch, seconds[key], peak, estimate, weight_bytes(module), error,
                              difference))
    official_seconds = seconds.get(("official", "fp32"))
    log(PARSER_HEADER)
    for row in rows:
        log(format_parser_row(row, official_seconds))
    return rows


def time_official(checkout: str, size: int, device: torch.device, repeat: int) -> tuple[float, float, float]:
    """(official seconds, ours seconds, max abs difference) for fp32 at ``size``, same weights, same run."""
    root = Path(checkout)
    for path in (root, root / "face_model"):
        sys.path.insert(0, str(path))
    FullGenerator = importlib.import_module("face_model.gpen_model").FullGenerator
    config = official_config(size)
    state = seeded_state_dict(config, 1)
    official = FullGenerator(size, config.style_dim, config.n_mlp, config.channel_multiplier,
                             narrow=config.narrow, device=device.type).to(device).eval()
    official.load_state_dict(state)
    ours = build_model(state).to(device)
    x = seeded_input(size, 1).to(device)
    with torch.inference_mode():
        theirs_out, ours_out = official(x)[0], ours(x)
        t_official = t_ours = float("inf")
        for _ in range(repeat):  # alternate, so that both see the same machine state
            t_official = min(t_official, best_time(lambda: official(x), 1, device))
            t_ours = min(t_ours, best_time(lambda: ours(x), 1, device))
    return t_official, t_ours, float((theirs_out - ours_out).abs().max())


def run_bench(args: argparse.Namespace) -> tuple[list[Row], list[ParserRow]]:
    device = resolve_device(args.device)
    threads = torch.get_num_threads() if device.type == "cpu" else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    print(f"GPEN benchmark on {device} ({name}), torch {torch.__version__}, seeded weights, batch 1")
    print("peak = activations (weights and input excluded); ops = non-view ATen operators per forward; "
          "max/mean err = max/mean |out - fp32 plain out|")
    print(HEADER)
    rows: list[Row] = []
    for size in args.sizes:
        rows += bench_size(size, args.precisions, args.tile_size, device, args.repeat, backward=not args.no_backward,
                           overlaps=tuple(args.overlaps))
    parser_rows: list[ParserRow] = []
    if not args.no_parser:
        print("face parser ParseNet at 512, per face (seeded weights, reference crop): peak and estimate = live "
              "tensors of one forward and parser_peak_bytes; logit err and flips (class, 0/1 mask pixels) and "
              "paste-mask differences against our fp32; vs off. = official time / this time")
        official = args.official
        if official is not None and not (Path(official) / "face_parse" / "parse_model.py").is_file():
            print(f"  (no official parser row: {official} has no face_parse/parse_model.py)")
            official = None
        parser_rows = bench_parser(args.precisions, device, args.repeat, official=official)
    if args.official:
        for size in args.sizes:
            t_off, t_ours, diff = time_official(args.official, size, device, args.repeat)
            print(f"official vs ours at {size} fp32: {t_off:.2f} s / {t_ours:.2f} s = {t_off / t_ours:.2f}x "
                  f"(max abs difference {diff:.2e})")
    if args.plot:
        from .bench_plot import plot_rows

        plot_rows(rows).save(args.plot)
        print(f"plot written to {args.plot}")
    return rows, parser_rows
