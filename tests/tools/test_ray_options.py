"""The parts of ``gpen enhance --ray`` that need no Ray: its options, the message when Ray is missing, what is
sent to the workers, and the report shared with the local run (results in any order, the same list)."""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpen_core.images.files import partial_path
from gpen_core.tools.batch import Failures, Job
from gpen_core.tools.batch_report import DISK_FULL, BatchReport
from gpen_core.tools.cli import build_parser, main
from gpen_core.tools.enhance_cmd import enhance_settings, runtime_spec
from gpen_core.tools.jobs import JobResult
from gpen_core.tools.ray_runner import as_given, shipped_job, shipped_spec


@pytest.fixture()
def weights(tmp_path, tiny_state):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_state, path)
    return path


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def no_ray(monkeypatch):
    """Ray not installed: ``import ray`` raises ImportError (whether it is installed here or not)."""
    for name in [name for name in sys.modules if name == "ray" or name.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_without_ray_the_option_names_the_extra(image, weights, tmp_path, capsys, no_ray, no_model_load):
    out = tmp_path / "out"
    code, err = run(capsys, "enhance", image, "--model", weights, "-o", out, "--ray")
    assert code == 2
    assert err.startswith("error: --ray needs Ray Data, which is not installed")
    assert "pip install '.[ray]'" in err and "the 'ray' extra" in err
    assert not out.exists()


def test_without_ray_the_local_run_is_untouched(image, weights, tmp_path, capsys, no_ray):
    code, err = run(capsys, "enhance", image, "--aligned", "--model", weights, "-o", tmp_path / "out")
    assert code == 0 and "wrote 1 image(s)" in err
    assert sys.modules["ray"] is None  # nothing tried to import it


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "2"], "--workers: only with --ray"),
    (["--gpus-per-worker", "0.5", "--workers", "1"], "--workers, --gpus-per-worker: only with --ray"),
    (["--ray", "--workers", "0"], "--workers must be at least 1; got 0"),
    (["--ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be between 0 and 64; got -1.0"),
])
def test_ray_option_errors_come_before_anything_loads(image, weights, tmp_path, capsys, no_model_load, argv,
                                                       message):
    code, err = run(capsys, "enhance", image, "--model", weights, "-o", tmp_path / "out", *argv)
    assert code == 2 and f"error: {message}" in err
    assert not (tmp_path / "out").exists()


def test_an_input_taken_as_the_address_is_refused(image, weights, tmp_path, capsys, no_model_load):
    code, err = run(capsys, "enhance", image, "--ray", image, "--model", weights, "-o", tmp_path / "out")
    assert code == 2
    assert f"--ray took '{image}' as the cluster address, but it is a file or folder: put --ray after" in err


def test_what_the_workers_get_pickles_and_has_absolute_paths(monkeypatch, tmp_path, weights):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["enhance", "x.png", "--model", "tiny.pth", "-o", "out", "--faces", "0-2",
                                      "--detector", "mtcnn", "--detector-dir", "dets"])
    (tmp_path / "dets").mkdir()
    settings = enhance_settings(args)
    spec = shipped_spec(runtime_spec(args))
    job = shipped_job(Job(Path("in/x.png"), 2, Path("out/x_f0003.png"), Path("out/x_f0003_mask.png")))
    result = JobResult("in/x.png (frame 3)", ["out/x_f0003.png"], 2, None, False, "summary")
    for value in (settings, spec, job, result):
        assert pickle.loads(pickle.dumps(value)) == value
    assert spec.model == str(tmp_path / "tiny.pth") and spec.detector == "mtcnn"  # a name stays a name
    assert spec.detector_dirs == (str(tmp_path / "dets"),)
    assert spec.parser_where == (str(tmp_path / "dets"), str(tmp_path))  # the folder of --model
    assert job == Job(tmp_path / "in/x.png", 2, tmp_path / "out/x_f0003.png", tmp_path / "out/x_f0003_mask.png")


def test_results_in_any_order_give_the_list_of_the_planned_order(capsys):
    jobs = [Job(Path(f"{name}.png"), None, Path(f"out/{name}.png")) for name in "abcde"]
    results = {0: JobResult("a.png", ["out/a.png"], 1), 1: JobResult("b.png", error="cannot decode"),
               3: JobResult("d.png", ["out/d.png"], 0), 4: JobResult("e.png", error="bad")}
    in_order, shuffled = Failures(), Failures()
    for failures, order in ((in_order, [0, 1, 3, 4]), (shuffled, [4, 3, 1, 0])):
        failures.add("z.png", "planning")
        report = BatchReport(jobs, failures)
        for index in order:
            report.record(index, results[index])
        report.fail_unrecorded("never ran")
        report.end_line()
        assert len(report.finish()) == 2
        assert [report.succeeded(i) for i in range(5)] == [True, False, False, True, False]
    assert in_order.items == shuffled.items == [("z.png", "planning"), ("b.png", "cannot decode"),
                                                ("c.png", "never ran"), ("e.png", "bad")]
    assert capsys.readouterr().err.count("no face found (written unchanged) in 1 image(s): d.png") == 2


def test_a_full_disk_fails_every_job_without_a_result():
    jobs = [Job(Path(f"{name}.png"), None, Path(f"out/{name}.png")) for name in "abc"]
    failures = Failures()
    report = BatchReport(jobs, failures)
    assert report.record(2, JobResult("c.png", ["out/c.png"], 1)) is False
    assert report.record(1, JobResult("b.png", error="cannot write the output", disk_full=True)) is True
    report.fail_unrecorded(DISK_FULL)
    report.end_line()
    assert len(report.finish()) == 1
    assert failures.items == [("a.png", DISK_FULL), ("b.png", "cannot write the output")]


def test_errors_from_the_workers_name_the_files_as_given(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    job = Job(Path("in/x.png"), None, Path("out/x.png"), Path("out/x_mask.png"))
    shipped = shipped_job(job)
    text = f"cannot write the output ({partial_path(shipped.mask)}): Permission denied; read {shipped.source}"
    assert as_given(text, job) == "cannot write the output (out/.x_mask.png.partial): Permission denied; read in/x.png"
    absolute = Job(tmp_path / "x.png", None, tmp_path / "o.png")
    assert as_given(f"{absolute.target}: bad", absolute) == f"{absolute.target}: bad"
