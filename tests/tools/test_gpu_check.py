"""gpu-check's CPU-side logic: arguments, the no-CUDA exit, the plan of rows, the report writer, and
every section's control flow on the CPU with torch.cuda faked (the real run needs a CUDA GPU)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gpen_core as g
from gpen_core.tools import gpu_check
from gpen_core.tools.cli import build_parser, main
from gpen_core.tools.gpu_report import (
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


def test_arguments_and_defaults():
    args = build_parser().parse_args(["gpu-check"])
    assert (args.out, args.device, args.sizes, args.timing_sizes) == (None, "cuda", [256, 512, 1024, 2048], [512])
    assert args.time_limit == gpu_check.TIME_LIMIT and args.reference_dir.endswith("tests/data")
    args = build_parser().parse_args(["gpu-check", "--out", "r.md", "--sizes", "512", "--device", "cuda:1"])
    assert (args.out, args.sizes, args.device) == ("r.md", [512], "cuda:1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gpu-check", "--sizes", "300"])


def test_without_cuda_it_says_so_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report.md"
    assert main(["gpu-check", "--out", str(out)]) == gpu_check.EXIT_NO_CUDA == 2
    assert "gpu-check needs a CUDA GPU" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert main(["gpu-check", "--device", "cpu"]) == 2


def test_plan_of_rows():
    rows = vram_plan()
    assert len(rows) == 4 * 3 * 3 == len(set(rows))
    assert rows[:3] == [VramCase(256, s, "fp32") for s in ("plain", "tiled", "recompute")]
    assert rows[-1] == VramCase(2048, "recompute", "bf16")
    assert [c.label for c in rows[:3]] == ["plain", "tiled 128", "tiled 128 + recompute"]
    assert VramCase(2048, "tiled", "fp16").forward_options() == {"tile_size": 256, "recompute": False}
    assert VramCase(512, "recompute", "fp16").forward_options() == {"tile_size": 256, "recompute": True}
    assert VramCase(512, "plain", "fp16").forward_options() == {}
    timing = timing_plan()
    assert len(timing) == 3 * 2 * 2
    assert timing[:2] == [TimingCase(512, "fp32", 1, "off"), TimingCase(512, "fp32", 8, "off")]
    assert {c.compile for c in timing} == {"off", "cuda_graphs"}


def fake_check() -> GpuCheck:
    plain = VramCase(512, "plain", "fp32")
    return GpuCheck(
        environment={"GPU": "Fake GPU (compute capability 8.9, 24.0 GiB)", "precision auto": "bf16"},
        exact=[ExactRow(512, False, 3e-6), ExactRow(512, True, 2e-3)],
        vram=[
            VramRow(plain, 257 * 2**20, 271 * 2**20, 300 * 2**20, 580 * 2**20, 0.0123, 0.0, 0.0),
            VramRow(VramCase(512, "plain", "fp16"), 129 * 2**20, 136 * 2**20, None, None, 0.005, 0.05, 0.004, 12),
            VramRow(VramCase(2048, "plain", "fp32"), note="out of memory"),
        ],
        timing=[TimingRow(TimingCase(512, "bf16", 8, "off"), 0.04), TimingRow(TimingCase(512, "bf16", 1, "off"),
                                                                              note="skipped: time limit")],
        ladder=LadderCheck(512, "fp32", 257 * 2**20, 500 * 2**20, ["whole image", "tiles of 256"], True, 1e-5,
                           "tiles of 256 + recompute", 280 * 2**20, "GPEN ran out of memory with every strategy", 0),
        fallback_error=0.0,
        memory_text="Device: cuda:0 (Fake GPU)\nLast GPEN run: peak 120 MiB",
        notes=["cuda_graphs not timed: this version's load_model has no compile option"],
        seconds=12.3,
    )


def test_report_writer_on_fake_rows():
    check = fake_check()
    assert check.failures() == []  # fp16 non-finite values and the TF32 error are shown, not judged
    text = format_report(check)
    assert text.startswith("# GPEN gpu-check\n\n**Result: passed** (12 s)")
    assert "| GPU | Fake GPU (compute capability 8.9, 24.0 GiB) |" in text
    assert "| 512 | off | 3.00e-06 | 1e-04 |" in text and "| 512 | on | 2.00e-03 | shown only |" in text
    assert "| 512 | fp16 | 5.00e-02 | 4.00e-03 | 12 |  |" in text  # section 2: half precision
    assert "| 512 | plain | fp32 | 257.0 | 528.0 | 300.0 | 580.0 | 0.012 | 0.00e+00 |  |" in text
    assert "| 2048 | plain | fp32 |  |  |  |  |  |  | out of memory |" in text
    assert "| 512 | bf16 | 8 | off | 5.00 | 40.00 |  |" in text
    assert "| 512 | bf16 | 1 | off |  |  | skipped: time limit |" in text
    assert "tried: whole image → tiles of 256; recovered, max error against the plain output 1.00e-05" in text
    assert "```\nDevice: cuda:0 (Fake GPU)\nLast GPEN run: peak 120 MiB\n```" in text
    assert "- cuda_graphs not timed" in text and "## How to read this report" in text


def test_failures_are_listed_at_the_top():
    check = fake_check()
    check.exact[0].max_error = 0.5
    assert check.ladder is not None
    check.ladder.recovered = False
    check.vram[0].non_finite = 3
    check.errors.append("time per face failed: RuntimeError: boom")
    text = format_report(check)
    assert "**Result: FAILED**" in text
    for line in ("- time per face failed: RuntimeError: boom", "- fp32 GPEN-512 differs from the reference by 5.00e-01",
                 "- GPEN-512 fp32 plain: 3 non-finite output values", "- the out-of-memory ladder did not recover"):
        assert line in text


@pytest.fixture()
def cuda_faked_on_cpu(monkeypatch):
    """torch.cuda's calls as no-ops and fixed figures, so that every section runs its CPU-side logic."""
    props = SimpleNamespace(name="Fake GPU", major=8, minor=0, total_memory=16 * 2**30)
    fakes = {
        "synchronize": lambda device=None: None, "empty_cache": lambda: None, "set_device": lambda device: None,
        "memory_allocated": lambda device=None: 0, "memory_reserved": lambda device=None: 0,
        "max_memory_allocated": lambda device=None: 2**20, "reset_peak_memory_stats": lambda device=None: None,
        "get_device_properties": lambda device=None: props,
        "set_per_process_memory_fraction": lambda fraction, device=None: None,
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(torch.cuda, name, fake)


def test_every_section_runs_with_cuda_faked(cuda_faked_on_cpu, tmp_path, monkeypatch):
    """Tiny sizes on the CPU: the control flow of each section, and a report with every table filled.

    A faked device cannot capture CUDA graphs, so the cuda_graphs column is switched off (its note is checked).
    """
    monkeypatch.setattr(gpu_check, "compile_supported", lambda: False)
    config = g.GPENConfig(32, 2, 0.125)  # the layout bench uses for sizes without an official release
    (tmp_path / "manifest-GPEN-BFR-32.json").write_text(json.dumps({"config": {
        "size": 32, "channel_multiplier": 2, "narrow": 0.125, "style_dim": 512, "n_mlp": 8}}))
    model = g.load_model(g.seeded_state_dict(config, 1), device="cpu")
    with torch.inference_mode():
        np.save(tmp_path / "GPEN-BFR-32-seed1-b1-output.npy", model(g.seeded_input(32, 1)).numpy())
    plan = CheckPlan(sizes=(32,), timing_sizes=(32,), precisions=("fp32", "bf16"), batches=(1, 2), repeat=1,
                     warmup=0, ladder_size=32, probe_size=32)
    lines: list[str] = []
    check = gpu_check.run_checks(torch.device("cpu"), plan, tmp_path, time_limit=600, log=lines.append)
    assert check.errors == []
    assert [(r.size, r.tf32, r.max_error) for r in check.exact] == [(32, False, 0.0), (32, True, 0.0)]
    assert [(r.case.precision, r.case.strategy) for r in check.vram] == [
        (p, s) for p in ("fp32", "bf16") for s in ("plain", "tiled", "recompute")]
    fp32_rows = [r for r in check.vram if r.case.precision == "fp32"]
    assert fp32_rows[0].max_error == 0.0 and all(r.max_error is not None and r.max_error < 1e-4 for r in fp32_rows)
    bf16_plain = check.vram[3]
    assert bf16_plain.max_error is not None and 0 < bf16_plain.max_error < 0.5 and bf16_plain.non_finite == 0
    assert all(r.peak_bytes == 2**20 and r.weight_bytes and r.seconds is not None for r in check.vram)
    timed = [(r.case.precision, r.case.batch) for r in check.timing]
    assert timed == [(p, b) for p in ("fp32", "bf16") for b in (1, 2)]
    assert all(r.seconds_per_forward is not None and r.seconds_per_forward > 0 for r in check.timing)
    assert check.fallback_error == 0.0  # auto is fp32 on the CPU: nothing to fall back from
    ladder = check.ladder
    assert ladder is not None and ladder.tried == ["whole image"]  # a faked allocator never runs out
    assert ladder.max_error == 0.0 and ladder.auto_strategy and ladder.leaked_bytes == 0
    assert "Last GPEN run: peak" in check.memory_text
    assert check.failures() == ["the out-of-memory ladder did not recover under the memory cap (tried: whole image)"]
    assert "cuda_graphs not timed" in " ".join(check.notes)
    text = format_report(check)
    assert "**Result: FAILED**" in text and "| 32 | tiled 16 + recompute | bf16 |" in text


def test_a_failing_section_is_recorded_and_the_others_run(cuda_faked_on_cpu, monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise RuntimeError("no reference for you")

    monkeypatch.setattr(gpu_check, "check_exactness", boom)
    for name in ("run_vram", "run_timing"):
        monkeypatch.setattr(gpu_check, name, lambda *args, **kwargs: [])
    monkeypatch.setattr(gpu_check, "check_ladder", lambda device, size: None)
    monkeypatch.setattr(gpu_check, "check_fallback_copy", lambda device, size: 0.0)
    monkeypatch.setattr(gpu_check, "memory_text", lambda device, size: "report text")
    check = gpu_check.run_checks(torch.device("cpu"), CheckPlan(), tmp_path, time_limit=600, log=lambda line: None)
    assert check.errors == ["exactness failed: RuntimeError: no reference for you"]
    assert check.memory_text == "report text"
