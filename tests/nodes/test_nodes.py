"""Every node the extension lists, against stand-ins for ComfyUI (``tests/comfy_stubs.py``): its schema is
sound and matches ``execute``, and ``execute`` runs on tiny seeded weights with ComfyUI's types.

New nodes are picked up from ``GPENExtension.get_node_list``; a node whose input type no other node
produces fails :func:`test_every_node_executes` with the type to add to ``INPUT_VALUES``.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys

import comfy_stubs
import pytest
import torch
from standins import TemplateFaceDetector
from stub_pack import pack_module

from gpen_core.face.detection import FaceDetector

WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"}


def test_every_node_has_a_sound_schema(comfy):
    assert len(comfy.nodes) >= 6
    node_ids = set()
    for node in comfy.nodes:
        schema = node.define_schema()
        assert schema.node_id not in node_ids, f"two nodes are named {schema.node_id}"
        node_ids.add(schema.node_id)
        assert schema.category == "GPEN" and schema.display_name and schema.description
        ids = [i.id for i in schema.inputs]
        assert len(set(ids)) == len(ids), f"{schema.node_id}: an input name is used twice"
        for item in schema.inputs:
            where = f"{schema.node_id}.{item.id}"
            if item.io_type in ("INT", "FLOAT"):
                assert item.min <= item.default <= item.max, f"{where}: default outside [min, max]"
            if item.io_type == "COMBO":
                assert item.options and len(set(item.options)) == len(item.options), f"{where}: options"
                assert item.default is None or item.default in item.options, f"{where}: default not an option"
        # execute takes exactly the inputs, by name; an optional one has a default (ComfyUI leaves it out).
        # A node whose execute takes **widgets hands them to its read_widgets, which takes the other inputs.
        parameters = dict(inspect.signature(node.execute).parameters)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            parameters = {name: p for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
            widgets = inspect.signature(node.read_widgets).parameters
            assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in widgets.values()), schema.node_id
            assert not set(parameters) & set(widgets), schema.node_id
            parameters.update(widgets)
            assert sorted(parameters) == sorted(ids), f"{schema.node_id}: {sorted(parameters)} vs {sorted(ids)}"
        else:
            assert list(parameters) == ids, f"{schema.node_id}.execute takes {list(parameters)}, the schema has {ids}"
        for item in schema.inputs:
            if item.optional:
                assert parameters[item.id].default is not inspect.Parameter.empty, f"{schema.node_id}.{item.id}"
    assert {"GPENModelLoader", "GPENEnhance", "GPENFaceRestore", "GPENFaceDetectorLoader", "GPENVRAMReport",
            "GPENBenchmark"} <= node_ids


def widget_value(item):
    if item.io_type == "COMBO":
        return item.default if item.default is not None else item.options[0]
    return item.default


def check_output(kind: str, value, where: str) -> None:
    if kind == "IMAGE":
        assert value.dim() == 4 and value.shape[-1] in (1, 3, 4), f"{where}: IMAGE {tuple(value.shape)}"
        assert value.dtype == torch.float32 and value.device.type == "cpu", where
        assert float(value.min()) >= 0 and float(value.max()) <= 1, f"{where}: IMAGE outside [0, 1]"
    elif kind == "MASK":
        assert value.dim() == 3 and value.dtype == torch.float32, f"{where}: MASK {tuple(value.shape)}"
    elif kind == "STRING":
        assert isinstance(value, str) and value, where
    else:
        assert value is not None, where


def test_every_node_executes(comfy, tmp_path):
    """Run each node once its socket inputs exist (loaders first), widgets at their defaults; each output
    goes into the pool by type. The detector loader's output is then replaced by a stand-in that finds one
    face per image, so the face nodes run their whole path on tiny weights. The VIDEO is a 3-frame clip (the
    nodes taking one are left out where PyAV is missing)."""
    generator = torch.Generator().manual_seed(0)
    pool: dict[str, object] = {"IMAGE": torch.rand(2, 96, 80, 3, generator=generator), "*": "anything"}
    pending = list(comfy.nodes)
    if importlib.util.find_spec("av") is not None:
        from video_clips import write_clip

        clip = write_clip(tmp_path / "clip.mp4", torch.rand(3, 3, 96, 80, generator=generator))
        pool["VIDEO"] = comfy_stubs.VideoFromFile(str(clip))
    else:
        pending = [n for n in pending if all(i.io_type != "VIDEO" for i in n.define_schema().inputs)]
    ran = []
    while pending:
        for node in pending:
            schema = node.define_schema()
            sockets = [i for i in schema.inputs if i.io_type not in WIDGET_TYPES]
            if all(i.optional or i.io_type in pool for i in sockets):
                break
        else:
            missing = {n.define_schema().node_id: [i.io_type for i in n.define_schema().inputs
                                                   if i.io_type not in WIDGET_TYPES and i.io_type not in pool]
                       for n in pending}
            raise AssertionError(f"no node produces these input types (add a value to the pool): {missing}")
        pending.remove(node)
        kwargs = {}
        for item in schema.inputs:
            if item.io_type in WIDGET_TYPES:
                kwargs[item.id] = widget_value(item)
            elif item.io_type in pool:
                kwargs[item.id] = pool[item.io_type]
        result = node.execute(**kwargs)
        assert len(result.args) == len(schema.outputs), f"{schema.node_id}: outputs"
        for output, value in zip(schema.outputs, result.args, strict=True):
            check_output(output.io_type, value, f"{schema.node_id} -> {output.display_name}")
            pool.setdefault(output.io_type, value)
        if schema.node_id == "GPENFaceDetectorLoader":
            assert isinstance(result.args[0], FaceDetector)
            pool["GPEN_FACE_DETECTOR"] = TemplateFaceDetector()
        ran.append((schema.node_id, result))
    outputs = dict(ran)
    # Face Restore found the stand-in's face in both images and pasted a restored face back
    image, before, after, mask = outputs["GPENFaceRestore"].args
    assert image.shape == pool["IMAGE"].shape and before.shape == after.shape == (2, 64, 64, 3)
    assert float(mask.max()) > 0 and not torch.equal(image, pool["IMAGE"])
    # Enhance asked ComfyUI for the memory its run needs, and showed progress
    assert any(models == [pool["GPEN_MODEL"]] and needed > 0 for models, needed in comfy.stubs.mm.loaded)
    assert comfy.stubs.progress, "no progress was shown"
    # the report and the benchmark show their text on the node
    assert outputs["GPENVRAMReport"].ui.value == outputs["GPENVRAMReport"].args[1]
    assert "GPEN benchmark on cpu" in outputs["GPENBenchmark"].args[0]


def test_small_tiles_are_refused_before_loading(comfy):
    nodes = {n.define_schema().node_id: n for n in comfy.nodes}
    model = nodes["GPENModelLoader"].execute("GPEN-TINY-64.pth", "fp32", "cpu", "[-1,1]").args[0]
    with pytest.raises(ValueError, match="at least 64"):
        nodes["GPENEnhance"].execute(torch.rand(1, 64, 64, 3), model, 32, -1, False, "model size", 1)
    assert comfy.stubs.mm.loaded == []


def test_cancel_stops_enhance(comfy):
    nodes = {n.define_schema().node_id: n for n in comfy.nodes}
    model = nodes["GPENModelLoader"].execute("GPEN-TINY-64.pth", "fp32", "cpu", "[-1,1]").args[0]
    comfy.stubs.mm.interrupted = True
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        nodes["GPENEnhance"].execute(torch.rand(1, 64, 64, 3), model, 0, -1, False, "model size", 1)


def test_loader_shares_one_model_per_file_and_options(comfy):
    loader = next(n for n in comfy.nodes if n.define_schema().node_id == "GPENModelLoader")
    first = loader.execute("GPEN-TINY-64.pth", "fp32", "cpu", "[-1,1]").args[0]
    assert loader.execute("GPEN-TINY-64.pth", "fp32", "cpu", "[-1,1]").args[0] is first
    assert loader.execute("GPEN-TINY-64.pth", "auto", "cpu", "[-1,1]").args[0] is not first
    with pytest.raises(FileNotFoundError, match="GPEN-BFR-512.pth"):
        loader.execute("missing.pth", "fp32", "cpu", "[-1,1]")


def test_loader_offers_official_files_and_never_defaults_to_a_download_when_a_file_is_there(comfy, tmp_path):
    loader = next(n for n in comfy.nodes if n.define_schema().node_id == "GPENModelLoader")
    model_name = loader.define_schema().inputs[0]
    assert model_name.options == ["GPEN-TINY-64.pth", "GPEN-BFR-256.pth (download)", "GPEN-BFR-512.pth (download)",
                                  "GPEN-BFR-1024.pth (download)", "GPEN-BFR-2048.pth (download)"]
    assert model_name.default is None  # ComfyUI shows the first: the file on disk
    for name in ("GPEN-TINY-64.pth", "GPEN-BFR-1024.pth (download)", "GPEN-BFR-1024.pth"):
        assert loader.validate_inputs(name) is True, name  # saved before or after the download
    assert "neither in models/gpen nor an official name" in loader.validate_inputs("GPEN-BFR-300.pth")
    (tmp_path / "models" / "gpen" / "GPEN-TINY-64.pth").unlink()
    assert loader.define_schema().inputs[0].default == "GPEN-BFR-512.pth (download)"  # a fresh install


@pytest.mark.parametrize(("prompt", "measured"), [
    (None, True),  # prompt unknown: measure
    ({"1": {"class_type": "GPENEnhance", "inputs": {}}}, False),
    ({"1": {"class_type": "GPENEnhance", "inputs": {}}, "2": {"class_type": "GPENVRAMReport", "inputs": {}}}, True),
])
def test_cpu_runs_are_measured_only_for_a_report(comfy, monkeypatch, prompt, measured):
    """On the CPU, measuring counts live tensors (slow): Enhance measures only when the prompt shows the report."""
    from comfy_stubs import HiddenHolder

    nodes = {n.define_schema().node_id: n for n in comfy.nodes}
    enhance = nodes["GPENEnhance"]
    last_run = sys.modules[enhance.__module__].LastRun
    monkeypatch.setattr(last_run, "record", None)
    monkeypatch.setattr(enhance, "hidden", HiddenHolder(prompt=prompt))
    model = nodes["GPENModelLoader"].execute("GPEN-TINY-64.pth", "fp32", "cpu", "[-1,1]").args[0]
    enhance.execute(torch.rand(1, 64, 64, 3), model, 0, -1, False, "model size", 1)
    assert (last_run.record is not None) == measured


def test_every_combo_lists_a_core_constant(comfy):
    """One source per option list: each node combo is the core's constant (or the node layer's own, read from
    the core, in ``nodes/logic.py``); the model list is the files found."""
    logic = pack_module("nodes.logic")
    core = pack_module("gpen_core")
    face = pack_module("gpen_core.face")
    expected = {
        ("GPENModelLoader", "precision"): core.PRECISIONS,
        ("GPENModelLoader", "device"): logic.DEVICES,
        ("GPENModelLoader", "input_range"): tuple(pack_module("gpen_core.arch.config").INPUT_RANGES),
        ("GPENEnhance", "output_size"): logic.OUTPUT_SIZES,
        ("GPENBenchmark", "size"): tuple(str(s) for s in pack_module("gpen_core.tools.bench").OFFICIAL_CONFIGS),
        ("GPENBenchmark", "precisions"): logic.BENCH_PRECISIONS,
        ("GPENFaceDetectorLoader", "detector"): ("auto", *face.DETECTOR_NAMES),
        ("GPENFaceDetectorLoader", "device"): logic.DETECTOR_DEVICES,
        ("selection",): (*face.FACE_ORDERS, *pack_module("gpen_core.face.detection").ORDER_ALIASES),
        ("mask",): face.MASK_MODE_NAMES,
        ("color_match",): pack_module("gpen_core.face.finish").COLOR_SPACES,
        ("parser_precision",): pack_module("gpen_core.face.parsing").PARSER_PRECISIONS,
    }
    for node in comfy.nodes:
        schema = node.define_schema()
        for item in schema.inputs:
            if item.io_type != "COMBO" or item.id == "model_name":
                continue
            key = (schema.node_id, item.id) if (schema.node_id, item.id) in expected else (item.id,)
            assert key in expected, f"{schema.node_id}.{item.id}: a combo without a core constant in this table"
            assert tuple(item.options) == tuple(expected[key]), f"{schema.node_id}.{item.id}: {item.options}"
