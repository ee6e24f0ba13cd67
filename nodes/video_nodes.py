"""ComfyUI v3 node GPEN Restore Video: a VIDEO in, its faces restored (streamed, in chunks), a VIDEO out."""
from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import InputImpl, io

from .comfy_nodes import LastRun
from .face_nodes import prepare_restore, restore_inputs, restore_options
from .glue import interruptible_progress
from .video_logic import restore_comfy_video

TEMP_SUBFOLDER = "gpen"
"""The restored videos go to ComfyUI's temp folder (emptied when ComfyUI starts), in this subfolder."""


class GPENRestoreVideo(io.ComfyNode):
    read_widgets = staticmethod(restore_options)
    """What ``execute`` makes of its ``**widgets`` (the node test checks they are the schema's other inputs)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENRestoreVideo",
            display_name="GPEN Restore Video",
            category="GPEN",
            description="Restore every face of a video (from Load Video or any node that gives a VIDEO): frames are "
                        "decoded one at a time, restored in chunks and encoded as they come (H.264 MP4 at the "
                        "source's frame times, its audio copied), so memory follows a chunk, never the length. "
                        "Faces are followed over the frames: a face the detector misses for a few frames is "
                        "restored there too, brief false detections are dropped, nothing carries across a scene "
                        "cut. Connect the VIDEO to Save Video to keep it (the file is written to ComfyUI's temp "
                        "folder).",
            inputs=restore_inputs(io.Video.Input("video", tooltip="the clip (a rotated phone clip comes out upright; "
                                                                  "odd sizes are padded to even by one pixel)")),
            outputs=[io.Video.Output(display_name="video", tooltip="the restored clip (MP4, H.264, with the audio)")],
            hidden=[io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, video, gpen_model, face_detector, **widgets) -> io.NodeOutput:
        options = cls.read_widgets(**widgets)
        networks, options, stats = prepare_restore(gpen_model, face_detector, cls.hidden.prompt, options)
        folder = Path(folder_paths.get_temp_directory()) / TEMP_SUBFOLDER
        result = restore_comfy_video(networks, video, options, folder, progress=interruptible_progress(1),
                                     stats=stats)
        LastRun.keep(stats.record)
        return io.NodeOutput(InputImpl.VideoFromFile(str(result.target)))
