"""The ComfyUI extension object listing the GPEN nodes (imported only by ComfyUI)."""
from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import ComfyExtension, io

from .example_inputs import install_example_inputs
from .model_folders import register_model_folders

register_model_folders()
install_example_inputs(Path(folder_paths.get_input_directory()))

from .comfy_nodes import GPENBenchmark, GPENEnhance, GPENVRAMReport, LoadGPENModel  # noqa: E402
from .face_nodes import GPENDetectAlignFaces, GPENFaceRestore, GPENPasteFaces, LoadFaceDetector  # noqa: E402
from .video_nodes import GPENRestoreVideo  # noqa: E402


class GPENExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LoadGPENModel, GPENEnhance, GPENFaceRestore, GPENDetectAlignFaces, GPENPasteFaces, LoadFaceDetector,
                GPENVRAMReport, GPENBenchmark, GPENRestoreVideo]
