"""``gpen enhance --ray`` on a local Ray cluster of 2 CPUs (loopback only): the same outputs, failure list and
exit status as the local run; a worker killed mid-write loses nothing; Ctrl-C leaves no temporary file and
``--skip-existing`` finishes the rest. Skipped when Ray Data is not installed (``pip install '.[ray]'``)."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gpen_core as g
from gpen_core.tools import ray_runner
from gpen_core.tools.batch_report import BatchReport
from gpen_core.tools.cli import main
from gpen_core.tools.ray_options import RayOptions
from helpers import TINY

# find_spec does not import Ray: the cluster fixture imports it after setting the local cluster's environment.
if any(importlib.util.find_spec(name) is None for name in ("ray", "pandas", "pyarrow")):
    pytest.skip("Ray Data is not installed (pip install '.[ray]')", allow_module_level=True)

pytestmark = pytest.mark.slow  # a Ray cluster and its workers start in seconds, not milliseconds

FACES = 26
NOISE = 6
GIF_FRAMES = 6
BAD = ("truncated.png", "notes.png")


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 CPUs, started the way ``--ray`` starts one, shared by the tests of this module."""
    started = ray_runner.connect(RayOptions(), num_cpus=2)
    import ray

    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """40 images in 35 files: 26 photos of one face (shifted, scaled, mirrored), 6 of noise, a 6-frame animated
    GIF of faces, a truncated PNG and a text file named .png; and the arguments of the run (tiny seeded GPEN,
    MTCNN)."""
    from gpen_core.face.detection.mtcnn import find_facenet_pytorch_data_dir
    from helpers import PHOTOS_DIR

    if not (PHOTOS_DIR / "portrait-1947.png").is_file():
        pytest.skip(f"test photos not available at {PHOTOS_DIR}")
    mtcnn_weights_dir = find_facenet_pytorch_data_dir()
    if mtcnn_weights_dir is None:
        pytest.skip("facenet-pytorch not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    root = tmp_path_factory.mktemp("ray")
    weights = root / "tiny.pth"
    torch.save(g.seeded_state_dict(TINY, 7), weights)
    inputs = root / "in"
    inputs.mkdir()
    portrait = Image.open(PHOTOS_DIR / "portrait-1947.png").convert("RGB")
    faces = []
    for i in range(FACES):
        width = 96 + 4 * (i % 7)
        face = portrait.resize((width, width * 439 // 328), Image.Resampling.BICUBIC)
        face = face.crop((i % 5, i % 3, face.width, face.height))
        faces.append(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else face)
        faces[-1].save(inputs / f"face{i:02d}.png")
    rng = np.random.default_rng(3)
    for i in range(NOISE):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(inputs / f"noise{i}.png")
    frames = [faces[i].resize((100, 133)) for i in range(GIF_FRAMES)]
    frames[0].save(inputs / "clip.gif", save_all=True, append_images=frames[1:], duration=40)
    full = root / "full.png"
    faces[0].save(full)
    (inputs / BAD[0]).write_bytes(full.read_bytes()[:2000])
    (inputs / BAD[1]).write_text("not an image")
    args = ["enhance", str(inputs), "--model", str(weights), "--detector", str(mtcnn_weights_dir), "--device", "cpu"]
    return root, args


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def failure_list(err: str) -> list[str]:
    """The lines of the failure list at the end of a run."""
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\d+ file\(s\) failed:", line))
    return [line for line in lines[start:] if line.startswith("  ") or line == lines[start]]


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def local_run(corpus) -> tuple[dict[str, bytes], int, str]:
    """The single-process run: outputs, exit status, what it printed."""
    root, args = corpus
    out = root / "local" / "out"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*args, "-o", str(out)])
    assert "Traceback" not in err.getvalue()
    return contents(out), code, err.getvalue()


def faults(root: Path, name: str, **files: str) -> tuple[Path, Path]:
    """The output folder of run ``name``, and the folder steering :class:`ray_faults.FaultyWorker` there."""
    folder = root / name / "faults"
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    return root / name / "out", folder


def started(folder: Path) -> Counter[str]:
    return Counter((folder / "started.log").read_text().splitlines())


@pytest.fixture()
def faulty(cluster, monkeypatch):
    """Runs use :class:`ray_faults.FaultyWorker` (sent by value: the workers cannot import tests/)."""
    import ray_faults

    cluster.cloudpickle.register_pickle_by_value(ray_faults)
    monkeypatch.setattr(ray_runner, "JobWorker", ray_faults.FaultyWorker)
    yield
    cluster.cloudpickle.unregister_pickle_by_value(ray_faults)


def test_a_local_cluster_listens_on_loopback_only(cluster):
    assert [node["NodeManagerAddress"] for node in cluster.nodes()] == ["127.0.0.1"]
    assert cluster.cluster_resources()["CPU"] == 2


def test_ray_run_equals_the_local_run(cluster, corpus, local_run, capsys):
    root, args = corpus
    outputs, local_code, local_err = local_run
    assert local_code == 1 and len(outputs) == FACES + NOISE + GIF_FRAMES
    out = root / "ray" / "out"
    code, err = run_cli(capsys, *args, "-o", str(out), "--ray", "--workers", "2")
    assert (code, contents(out)) == (local_code, outputs)
    assert failure_list(err) == failure_list(local_err)
    assert failure_list(err) == [
        "2 file(s) failed:",
        f"  {root / 'in' / BAD[1]}: not an image Pillow can read (unknown or corrupt format)",
        f"  {root / 'in' / BAD[0]}: cannot decode the image, truncated or corrupt (OSError: image file is truncated)",
    ]
    assert f"wrote {len(outputs)} image(s) to {out}" in err
    summaries = {line.split(": ")[0] for line in err.splitlines() if " face(s) found, " in line}
    assert len(summaries) == len(outputs)  # one summary line per photo, as in the local run


def test_a_worker_killed_mid_write_loses_nothing(cluster, corpus, local_run, faulty, capsys):
    root, args = corpus
    out, folder = faults(root, "killed", kill="face07.png")
    code, err = run_cli(capsys, *args, "-o", str(out), "--ray", "--workers", "2")
    outputs, local_code, _ = local_run
    assert (folder / "killed").exists()  # the worker did end during the job
    assert (code, contents(out)) == (local_code, outputs)  # no temporary file either: the folder holds exactly these
    runs = started(folder)
    assert runs["face07.png None"] == 2  # retried once, on the restarted worker
    assert runs[f"{BAD[0]} None"] == 1  # a bad input fails once: nothing to retry
    assert set(runs.values()) == {1, 2} and sum(runs.values()) == len(outputs) + 1 + 1
    assert failure_list(err)[0] == "2 file(s) failed:"


def test_a_job_that_always_ends_its_worker_is_listed_after_its_tries(cluster, corpus, local_run, faulty, capsys):
    root, args = corpus
    out, folder = faults(root, "poison", kill="face03.png\nalways")
    code, err = run_cli(capsys, *args, "-o", str(out), "--ray", "--workers", "2")
    outputs, _, _ = local_run
    assert code == 1
    assert contents(out) == {name: data for name, data in outputs.items() if name != "face03.png"}
    assert started(folder)["face03.png None"] == ray_runner.JOB_TRIES
    assert (f"  {root / 'in' / 'face03.png'}: its worker process ended (killed, or out of memory) each of "
            f"{ray_runner.JOB_TRIES} times it ran this job") in failure_list(err)


def test_ctrl_c_leaves_no_partial_file_and_skip_existing_finishes(cluster, corpus, local_run, faulty, monkeypatch,
                                                                  capsys):
    root, args = corpus
    out, folder = faults(root, "interrupted", hang="face00.png")
    record = BatchReport.record
    seen = []

    def interrupted_while_face00_is_written(self, index, result):
        seen.append(index)
        if len(seen) >= 5 and (folder / "hanging").exists():
            raise KeyboardInterrupt  # as Ctrl-C in the driver
        return record(self, index, result)

    monkeypatch.setattr(BatchReport, "record", interrupted_while_face00_is_written)
    code, err = run_cli(capsys, *args, "-o", str(out), "--ray", "--workers", "2")
    assert code == 130 and err.rstrip().endswith("interrupted")
    assert started(folder)["face00.png None"] == 1  # it was writing when the run was cancelled
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}
    outputs, local_code, _ = local_run
    assert set(before) < set(outputs)  # outputs only, none partial
    monkeypatch.setattr(BatchReport, "record", record)
    (folder / "hang").unlink()
    (folder / "started.log").unlink()
    code, err = run_cli(capsys, *args, "-o", str(out), "--ray", "--workers", "2", "--skip-existing")
    assert (code, contents(out)) == (local_code, outputs)
    assert f"skipping {len(before)} image(s) or clip(s) whose output exists (--skip-existing)" in err
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if p.name in before} == before
    assert sum(started(folder).values()) == len(outputs) - len(before) + 1  # the missing ones and the bad input


def test_a_runtime_that_does_not_load_stops_the_run_with_its_reason(cluster, corpus, capsys):
    root, args = corpus
    bad = root / "bad.pth"
    bad.write_text("nope")
    out = root / "bad-checkpoint" / "out"
    argv = [*args, "-o", str(out), "--ray", "--workers", "1"]
    argv[argv.index("--model") + 1] = str(bad)
    code, err = run_cli(capsys, *argv)
    assert code == 2
    assert (f"error: a worker on 127.0.0.1 could not load the networks: {bad}: not a PyTorch checkpoint: a text "
            "file, starting 'nope'") in err
    assert not out.exists()  # nothing written: the folder this run created is removed
