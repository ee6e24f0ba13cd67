"""Stand-ins for the ComfyUI modules the nodes import (importable as ``comfy_stubs``).

``install(monkeypatch, models_dir)`` puts fake ``comfy.model_management``, ``comfy.utils``,
``comfy.model_patcher``, ``comfy_api.latest`` (``io``, ``ui``, ``ComfyExtension``, ``InputImpl.VideoFromFile``) and
``folder_paths`` (its temp and output folders beside ``models_dir``) into ``sys.modules`` for one test. They
mirror the signatures of ComfyUI's own (``comfy_api/latest/_io.py``) for what the nodes use and refuse anything
else (a misspelt keyword is a TypeError, as in ComfyUI), and they record what the nodes asked of ComfyUI (models
loaded, memory asked for, progress shown).
"""
from __future__ import annotations

import enum
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

FREE_MEMORY = 8 * 2**30
"""What the fake ``get_free_memory`` reports, in bytes."""


# ------------------------------------------------------------------------------ comfy.model_management
class InterruptProcessingException(Exception):
    pass


@dataclass
class ModelManagement:
    """The state behind the fake ``comfy.model_management`` module."""

    loaded: list[tuple[list, int]] = field(default_factory=list)
    """``(models, memory_required)`` of every ``load_models_gpu`` call."""
    interrupted: bool = False
    unloaded_all: int = 0

    def module(self) -> types.ModuleType:
        m = types.ModuleType("comfy.model_management")
        m.InterruptProcessingException = InterruptProcessingException  # type: ignore[attr-defined]
        cpu = torch.device("cpu")
        m.get_torch_device = lambda: cpu  # type: ignore[attr-defined]
        m.unet_offload_device = lambda: cpu  # type: ignore[attr-defined]
        m.intermediate_device = lambda: cpu  # type: ignore[attr-defined]

        def get_free_memory(dev=None, torch_free_too=False):
            return FREE_MEMORY

        def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                            force_full_load=False):
            self.loaded.append((list(models), memory_required))

        def unload_all_models():
            self.unloaded_all += 1

        def throw_exception_if_processing_interrupted():
            if self.interrupted:
                self.interrupted = False
                raise InterruptProcessingException()

        m.get_free_memory = get_free_memory  # type: ignore[attr-defined]
        m.load_models_gpu = load_models_gpu  # type: ignore[attr-defined]
        m.unload_all_models = unload_all_models  # type: ignore[attr-defined]
        m.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted  # type: ignore[attr-defined]
        return m


# --------------------------------------------------------------------------- comfy.utils, model_patcher
class ProgressBar:
    shown: list[tuple[int, int]] = []
    """``(value, total)`` of every update, over all bars (reset per test by :func:`install`)."""

    def __init__(self, total: int, node_id=None) -> None:
        self.total = total
        self.current = 0

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        if total is not None:
            self.total = total
        self.current = value
        ProgressBar.shown.append((value, self.total))

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


class ModelPatcher:
    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device, size: int = 0,
                 weight_inplace_update: bool = False) -> None:
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device


# ------------------------------------------------------------------------------------- comfy_api.latest
class Hidden(str, enum.Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


class Input:
    io_type = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, extra_dict=None) -> None:
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: Any = None, socketless: bool | None = None,
                 widget_type: str | None = None, force_input: bool | None = None, extra_dict=None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default


class Output:
    io_type = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False) -> None:
        self.id, self.display_name, self.tooltip = id, display_name, tooltip


def _comfy_type(io_type: str, input_base: type = Input) -> type:
    """A ComfyUI type with its ``Input`` and ``Output`` classes (``io.Image``, ``io.Custom("X")`` ...)."""
    input_cls = type("Input", (input_base,), {"io_type": io_type})
    output_cls = type("Output", (Output,), {"io_type": io_type})
    return type(io_type, (), {"io_type": io_type, "Input": input_cls, "Output": output_cls})


class _NumberInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default=None, min=None, max=None, step=None,
                 control_after_generate: bool | None = None, display_mode=None, socketless: bool | None = None,
                 force_input: bool | None = None, round=None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.min, self.max, self.step = min, max, step


class _BooleanInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: bool | None = None, label_on: str | None = None,
                 label_off: str | None = None, socketless: bool | None = None, force_input: bool | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)


class _StringInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, multiline: bool = False, placeholder: str | None = None,
                 default: str | None = None, dynamic_prompts: bool | None = None, socketless: bool | None = None,
                 force_input: bool | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)


class _ComboInput(WidgetInput):
    def __init__(self, id: str, options: list | None = None, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, default=None,
                 control_after_generate: bool | None = None, upload=None, image_folder=None, remote=None,
                 socketless: bool | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
        self.options = options


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False


class NodeOutput:
    def __init__(self, *args: Any, ui=None, expand: dict | None = None, block_execution: str | None = None) -> None:
        self.args = args
        self.ui = ui


class HiddenHolder:
    """``cls.hidden`` of a node at run time; ComfyUI gives ``None`` for anything not set."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getattr__(self, key: str) -> None:
        return None


class ComfyNode:
    hidden = HiddenHolder()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError


class PreviewText:
    def __init__(self, value: str, **kwargs) -> None:
        self.value = value


class VideoFromFile:
    """``comfy_api``'s VIDEO backed by a file or a BytesIO (the part of ``VideoInput`` the nodes use)."""

    def __init__(self, file) -> None:
        self._file = file

    def get_stream_source(self):
        if hasattr(self._file, "seek"):
            self._file.seek(0)
        return self._file


class InputImpl:
    VideoFromFile = VideoFromFile


class ComfyExtension:
    async def on_load(self) -> None:
        pass

    async def get_node_list(self) -> list[type[ComfyNode]]:
        raise NotImplementedError


def io_module() -> types.ModuleType:
    io = types.ModuleType("comfy_api.latest.io")
    io.Schema, io.ComfyNode, io.NodeOutput, io.Hidden = Schema, ComfyNode, NodeOutput, Hidden  # type: ignore[attr-defined]
    io.Input, io.WidgetInput, io.Output = Input, WidgetInput, Output  # type: ignore[attr-defined]
    io.Custom = _comfy_type  # type: ignore[attr-defined]
    for name, io_type, base in (
        ("Int", "INT", _NumberInput), ("Float", "FLOAT", _NumberInput), ("Boolean", "BOOLEAN", _BooleanInput),
        ("String", "STRING", _StringInput), ("Combo", "COMBO", _ComboInput), ("Image", "IMAGE", Input),
        ("Mask", "MASK", Input), ("Latent", "LATENT", Input), ("AnyType", "*", Input), ("Video", "VIDEO", Input),
    ):
        setattr(io, name, _comfy_type(io_type, base))
    return io


# ---------------------------------------------------------------------------------------- folder_paths
def folder_paths_module(models_dir: Path) -> types.ModuleType:
    """``folder_paths`` over ``models_dir``, with ComfyUI's lookup rules for the functions the pack uses; its
    input folder is ``input/`` beside ``models_dir`` (as in ComfyUI's base folder), not created in advance."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(models_dir)  # type: ignore[attr-defined]
    input_dir = str(models_dir.parent / "input")
    fp.folder_names_and_paths = {}  # type: ignore[attr-defined]

    def get_folder_paths(name: str) -> list[str]:
        return fp.folder_names_and_paths[name][0][:]

    def get_filename_list(name: str) -> list[str]:
        folders, extensions = fp.folder_names_and_paths[name]
        found = set()
        for folder in folders:
            if os.path.isdir(folder):
                for path in Path(folder).rglob("*"):
                    if path.is_file() and path.suffix in extensions:
                        found.add(path.relative_to(folder).as_posix())
        return sorted(found)

    def get_full_path(name: str, filename: str) -> str | None:
        for folder in fp.folder_names_and_paths[name][0]:
            path = os.path.join(folder, filename)
            if os.path.isfile(path):
                return path
        return None

    fp.get_temp_directory = lambda: str(models_dir.parent / "temp")  # type: ignore[attr-defined]
    fp.get_output_directory = lambda: str(models_dir.parent / "output")  # type: ignore[attr-defined]
    fp.get_folder_paths = get_folder_paths  # type: ignore[attr-defined]
    fp.get_input_directory = lambda: input_dir  # type: ignore[attr-defined]
    fp.get_filename_list = get_filename_list  # type: ignore[attr-defined]
    fp.get_full_path = get_full_path  # type: ignore[attr-defined]
    return fp


# --------------------------------------------------------------------------------------------- install
@dataclass
class Stubs:
    mm: ModelManagement
    folder_paths: types.ModuleType
    progress: list[tuple[int, int]]


def install(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> Stubs:
    """Put the fake ComfyUI modules into ``sys.modules`` until the test ends."""
    mm = ModelManagement()
    comfy = types.ModuleType("comfy")
    modules = {
        "comfy.model_management": mm.module(),
        "comfy.utils": types.ModuleType("comfy.utils"),
        "comfy.model_patcher": types.ModuleType("comfy.model_patcher"),
    }
    modules["comfy.utils"].ProgressBar = ProgressBar  # type: ignore[attr-defined]
    modules["comfy.model_patcher"].ModelPatcher = ModelPatcher  # type: ignore[attr-defined]
    for name, module in modules.items():
        setattr(comfy, name.split(".")[1], module)
    modules["comfy"] = comfy
    api, latest = types.ModuleType("comfy_api"), types.ModuleType("comfy_api.latest")
    latest.io, latest.ui = io_module(), types.ModuleType("comfy_api.latest.ui")  # type: ignore[attr-defined]
    latest.ui.PreviewText = PreviewText  # type: ignore[attr-defined]
    latest.ComfyExtension = ComfyExtension  # type: ignore[attr-defined]
    latest.InputImpl = InputImpl  # type: ignore[attr-defined]
    api.latest = latest  # type: ignore[attr-defined]
    modules |= {"comfy_api": api, "comfy_api.latest": latest, "folder_paths": folder_paths_module(models_dir)}
    for name, module in modules.items():
        assert name not in sys.modules, f"a real {name} is imported: these stand-ins would hide it"
        monkeypatch.setitem(sys.modules, name, module)
    ProgressBar.shown = []
    return Stubs(mm, modules["folder_paths"], ProgressBar.shown)
