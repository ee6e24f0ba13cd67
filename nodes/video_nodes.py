"""ComfyUI v3 node GPEN Restore Video: a VIDEO in, its faces restored (streamed, in chunks), a VIDEO out."""
from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import InputImpl, io

from ..gpen_core.face.options import (
    DEFAULT_BRIDGE_FRAMES,
    DEFAULT_MIN_TRACK_FRAMES,
    DEFAULT_SCENE_CUT,
    DEFAULT_SHORT_TRACK_SCORE,
    RestoreOptions,
)
from ..gpen_core.run_options import RunOptions
from .comfy_nodes import LastRun
from .face_logic import detect_options
from .face_nodes import paste_options, prepare_restore, restore_inputs, track_options
from .glue import interruptible_progress
from .video_logic import restore_comfy_video

TEMP_SUBFOLDER = "gpen"
"""The restored videos go to ComfyUI's temp folder (emptied when ComfyUI starts), in this subfolder."""


class GPENRestoreVideo(io.ComfyNode):
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
    def execute(cls, video, gpen_model, face_detector, fidelity, score_threshold, min_face_size, selection,
                max_faces, tile_size, upscale_factor=1.0, landmark_smoothing=0.0, face_indices="", max_face_size=0,
                mask="auto", keep_hair=True, keep_neck=True, smooth_small_faces=True, keep_grey=True,
                color_match="off", bridge_frames=DEFAULT_BRIDGE_FRAMES, min_track_frames=DEFAULT_MIN_TRACK_FRAMES,
                short_track_score=DEFAULT_SHORT_TRACK_SCORE, scene_cut=DEFAULT_SCENE_CUT,
                parser_precision="model") -> io.NodeOutput:
        options = RestoreOptions(
            detect_options(score_threshold, min_face_size, selection, max_faces, face_indices, max_face_size),
            track_options(landmark_smoothing, bridge_frames, min_track_frames, short_track_score, scene_cut),
            paste_options(fidelity, upscale_factor, mask, keep_hair, keep_neck, smooth_small_faces, keep_grey,
                          color_match, parser_precision),
            RunOptions(tile_size),
        )
        networks, options, stats = prepare_restore(gpen_model, face_detector, cls.hidden.prompt, options)
        folder = Path(folder_paths.get_temp_directory()) / TEMP_SUBFOLDER
        result = restore_comfy_video(networks, video, options, folder, progress=interruptible_progress(1),
                                     stats=stats)
        if stats.record is not None:
            LastRun.keep(stats.record)
        return io.NodeOutput(InputImpl.VideoFromFile(str(result.target)))
