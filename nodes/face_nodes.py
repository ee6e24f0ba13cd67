"""ComfyUI v3 nodes for whole photos: Load Face Detector, GPEN Face Restore, and its two halves
GPEN Detect & Align Faces and GPEN Paste Faces (another node can work on the crops in between)."""
from __future__ import annotations

from dataclasses import replace

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..gpen_core.face.detection.loader import load_detector
from ..gpen_core.face.finish import COLOR_SPACES
from ..gpen_core.face.masks import MASK_MODE_NAMES
from ..gpen_core.face.options import (
    DEFAULT_BRIDGE_FRAMES,
    DEFAULT_MIN_TRACK_FRAMES,
    DEFAULT_SCENE_CUT,
    DEFAULT_SHORT_TRACK_SCORE,
    MAX_SMOOTHING,
    MAX_TRACK_FRAMES,
    MAX_UPSCALE,
    PasteOptions,
    RestoreOptions,
    TrackOptions,
)
from ..gpen_core.face.parsing import PARSER_PRECISIONS, FaceParser, load_parser_for_mask, resolve_parser_dtype
from ..gpen_core.face.pipeline import FaceNetworks
from ..gpen_core.face.stats import RestoreStats
from .comfy_nodes import LastRun
from .face_logic import (
    detect_comfy_images,
    detect_options,
    linked_outputs,
    paste_comfy_images,
    restore_comfy_images,
    restore_memory,
)
from .glue import FaceDetector, GPENModel, free_bytes, interruptible_progress, load_for_run
from .logic import (
    AUTO_TILE,
    DETECTOR_DEVICES,
    DETECTOR_OPTIONS,
    NODE_MIN_TILE,
    SELECTION_OPTIONS,
    measure_wanted,
    node_run_options,
)
from .model_folders import facedetection_folders, fetch_auto_detector, fetch_auto_parser, parser_folders

Faces = io.Custom("GPEN_FACES")
"""A :class:`gpen_core.face.faces.AlignedFaces`: where each aligned crop came from."""
CROP_OUTPUTS = (1, 2)
"""Face Restore's faces_before / faces_after outputs: kept only when some node takes them."""


class LoadFaceDetector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENFaceDetectorLoader",
            display_name="Load Face Detector (GPEN)",
            category="GPEN",
            description="RetinaFace (detection_Resnet50_Final.pth / detection_mobilenet0.25_Final.pth in "
                        "models/facedetection) or MTCNN (pip install --no-deps facenet-pytorch==2.6.0). "
                        "auto: the first one found; when no RetinaFace file is there, detection_Resnet50_Final.pth is "
                        "fetched and verified first (GPEN_NO_DOWNLOAD=1: never).",
            inputs=[
                io.Combo.Input("detector", options=list(DETECTOR_OPTIONS), default="auto",
                               tooltip="auto: the first one whose weights are found, in the order RetinaFace "
                                       "ResNet-50, RetinaFace mobile0.25, MTCNN"),
                io.Combo.Input("device", options=list(DETECTOR_DEVICES), default="auto",
                               tooltip="auto: ComfyUI's device; cpu keeps the GPU memory for GPEN"),
            ],
            outputs=[FaceDetector.Output(display_name="face_detector",
                                         tooltip="for GPEN Face Restore and GPEN Detect & Align Faces")],
        )

    @classmethod
    def execute(cls, detector: str, device: str) -> io.NodeOutput:
        target = mm.get_torch_device() if device == "auto" else "cpu"
        fetch_auto_detector(detector)  # auto / RetinaFace: the file downloaded when missing (GPEN_NO_DOWNLOAD=1: never)
        return io.NodeOutput(load_detector(detector, facedetection_folders(), device=target))


def selection_inputs() -> list:
    """Detection and selection widgets of the first release (Face Restore and Detect & Align)."""
    return [
        io.Float.Input("score_threshold", default=0.0, min=0.0, max=0.99, step=0.01,
                       tooltip="detector confidence; 0 = the detector's default (RetinaFace 0.97, MTCNN 0.7)"),
        io.Int.Input("min_face_size", default=0, min=0, max=4096,
                     tooltip="ignore faces whose box side (the larger of width and height) is smaller (px); "
                             "0 = no bound"),
        io.Combo.Input("selection", options=list(SELECTION_OPTIONS), default="score",
                       tooltip="the order faces are numbered (face_indices) and kept (max_faces) in: score (detector "
                               "confidence; 'all' in older workflows), largest, left_to_right ... center"),
        io.Int.Input("max_faces", default=0, min=0, max=1000, tooltip="keep the first N in that order; 0 = no limit"),
    ]


def more_selection_inputs(optional: bool) -> list:
    """Selection widgets added later (optional on Face Restore, so graphs saved before still run)."""
    return [
        io.String.Input("face_indices", default="", optional=optional,
                        tooltip="which faces, counted from 0 in the selection order: '0', '0,2', '1-3'; empty = all. "
                                "An index beyond the faces found is skipped"),
        io.Int.Input("max_face_size", default=0, min=0, max=8192, optional=optional,
                     tooltip="ignore faces whose box side is larger (px); 0 = no bound"),
    ]


def smoothing_input(optional: bool) -> io.Float.Input:
    return io.Float.Input(
        "landmark_smoothing", default=0.0, min=0.0, max=MAX_SMOOTHING, step=0.05, optional=optional,
        tooltip="video frames: smooth each face's landmarks along its track over the frames (faces followed by box "
                "overlap and landmark distance; nothing is smoothed across a scene cut). 0 = off; higher = steadier "
                "but slower to follow motion",
    )


def tracking_inputs() -> list:
    """How faces are followed over the frames of a batch or clip (optional: :class:`TrackOptions`); a single
    image is unchanged by them."""
    return [
        io.Int.Input("bridge_frames", default=DEFAULT_BRIDGE_FRAMES, min=0, max=MAX_TRACK_FRAMES, optional=True,
                     tooltip="frames: a face the detector misses for up to this many frames is restored there too, "
                             "its landmarks interpolated from both sides (carried forward at the end of the clip). "
                             "0 = off"),
        io.Int.Input("min_track_frames", default=DEFAULT_MIN_TRACK_FRAMES, min=1, max=MAX_TRACK_FRAMES,
                     optional=True,
                     tooltip="frames: a face found in fewer frames than this (and than the whole clip or scene) that "
                             "scores under short_track_score is a false detection and is not restored. 1 = off"),
        io.Float.Input("short_track_score", default=DEFAULT_SHORT_TRACK_SCORE, min=0.0, max=1.0, step=0.001,
                       optional=True, tooltip="frames: the detector score that keeps a face found in only a few "
                                              "frames (see min_track_frames)"),
        io.Float.Input("scene_cut", default=DEFAULT_SCENE_CUT, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="frames: a frame that differs from the previous one by more than this (mean difference "
                               "of small thumbnails, 0..1) is a scene cut: faces are not followed, bridged or smoothed "
                               "across it. 0 = never cut on the difference"),
    ]


def restore_inputs(source: io.Input, *extra: io.Input) -> list:
    """The inputs of a whole restoration node (Face Restore, Restore Video), in order: ``source``, the model,
    the detector, fidelity, the selection, tile size, upscale, smoothing, the later selection widgets, ``extra``,
    the paste-back and the tracking widgets, the parser precision (old workflows fill widgets in this order:
    append, never insert)."""
    return [
        source,
        GPENModel.Input("gpen_model", tooltip="from Load GPEN Model"),
        FaceDetector.Input("face_detector", tooltip="from Load Face Detector (GPEN)"),
        io.Float.Input("fidelity", default=1.0, min=0.0, max=1.0, step=0.05,
                       tooltip="1: the restored face (official paste), 0: the input unchanged; in between, mixed in "
                               "image space"),
        *selection_inputs(),
        io.Int.Input("tile_size", default=AUTO_TILE, min=AUTO_TILE, max=2048, step=16,
                     tooltip=f"GPEN tile size; 0 = automatic from free memory, else at least {NODE_MIN_TILE}"),
        upscale_input(optional=True),
        smoothing_input(optional=True),
        *more_selection_inputs(optional=True),
        *extra,
        *paste_inputs(),
        *tracking_inputs(),
        parser_precision_input(),
    ]


def paste_parser(paste: PasteOptions, model_dtype: torch.dtype, device: torch.device) -> FaceParser | None:
    """The face parser of ``paste.mask`` on ``device`` in ``paste.parser_precision`` (None for the box mask, or for
    auto without weights): the precision checked first, then the file fetched when missing, then loaded."""
    dtype = resolve_parser_dtype(paste.parser_precision, model_dtype, device)
    fetch_auto_parser(paste.mask)
    return load_parser_for_mask(paste.mask, parser_folders(), device=device, dtype=dtype)


def prepare_restore(gpen_model, face_detector, prompt: dict | None, options: RestoreOptions, images=None,
                    upscaled=None) -> tuple[FaceNetworks, RestoreOptions, RestoreStats]:
    """Room made and the model loaded for a restoration run (options checked first, by the caller).

    The face parser (when the mask uses one) is fetched when missing and loaded on the model's device in its
    precision; ComfyUI is asked to free what the whole run needs (:func:`.face_logic.restore_memory`, for the
    ``images`` when they are known, else GPEN's own estimate). Returns the networks, the run's options (with the
    memory budget) and its stats (measured for GPEN VRAM Report when ``prompt`` shows one).
    """
    gpen = gpen_model.model.gpen
    paste = options.paste
    parser = paste_parser(paste, gpen.dtype, gpen_model.load_device)
    networks = FaceNetworks(gpen, face_detector, parser)
    needed = None if images is None else restore_memory(networks, images, options, upscaled, free_bytes(gpen_model))
    budget = load_for_run(gpen_model, options.run, needed=needed)
    stats = RestoreStats(measure=measure_wanted(prompt, gpen.device))
    return networks, replace(options, run=replace(options.run, memory_budget=budget)), stats


def upscale_input(optional: bool) -> io.Float.Input:
    return io.Float.Input(
        "upscale_factor", default=1.0, min=1.0, max=MAX_UPSCALE, step=0.25, optional=optional,
        tooltip="paste the faces into the image resized by this factor (bicubic). With an upscaled image, the "
                "scale is read from its size: leave this at 1",
    )


def paste_inputs() -> list:
    """Paste-back widgets (optional, so graphs saved before still run): :class:`PasteOptions`."""
    return [
        io.Combo.Input("mask", options=list(MASK_MODE_NAMES), default=MASK_MODE_NAMES[0], optional=True,
                       tooltip="parse: face-parsing mask as the official code (hair, hats, hands and background "
                               "keep their pixels; needs ParseNet-latest.pth or parsing_parsenet.pth in "
                               "models/facedetection or models/gpen); box: a feathered square; auto: parse when "
                               "the file is found, else box"),
        io.Boolean.Input("keep_hair", default=True, optional=True, tooltip="parse mask: paste the restored hair too"),
        io.Boolean.Input("keep_neck", default=True, optional=True,
                         tooltip="parse mask: paste the restored neck too (GPEN: yes, facexlib: no)"),
        io.Boolean.Input("smooth_small_faces", default=True, optional=True,
                         tooltip="official 3x3 smoothing of faces whose detected box is under 100 px"),
        io.Boolean.Input("keep_grey", default=True, optional=True,
                         tooltip="grey photos get grey faces (the luma of GPEN's output): no colour cast"),
        io.Combo.Input("color_match", options=list(COLOR_SPACES), default="off", optional=True,
                       tooltip="match the restored face's colour mean and spread inside the mask to the original "
                               "face's (Lab or YCbCr)"),
    ]


def parser_precision_input() -> io.Combo.Input:
    """The parse mask's precision (optional; the last widget of the paste nodes: old workflows fill widgets in
    order, so it is appended, never inserted)."""
    return io.Combo.Input(
        "parser_precision", options=list(PARSER_PRECISIONS), default=PARSER_PRECISIONS[0], optional=True,
        tooltip="parse mask: what ParseNet computes in. model: the generator's precision (bf16 for an fp16 generator "
                "on a CPU); fp32: the official network bit for bit; bf16: about 3x faster on a CPU with AVX512-BF16, "
                "moves ~0.04% of the mask's pixels; fp16: GPUs",
    )


def paste_options(fidelity: float, upscale_factor: float, mask: str, keep_hair: bool, keep_neck: bool,
                  smooth_small_faces: bool, keep_grey: bool, color_match: str, parser_precision: str) -> PasteOptions:
    """The paste widgets as the core's options (checked now, before any model runs)."""
    return PasteOptions(mask, keep_hair, keep_neck, smooth_small_faces, keep_grey, color_match, fidelity,
                        upscale_factor, parser_precision=parser_precision)


def restore_options(*, fidelity: float, score_threshold: float, min_face_size: float, selection: str,
                    max_faces: int, tile_size: int, upscale_factor: float = 1.0, landmark_smoothing: float = 0.0,
                    face_indices: str = "", max_face_size: float = 0, mask: str = "auto", keep_hair: bool = True,
                    keep_neck: bool = True, smooth_small_faces: bool = True, keep_grey: bool = True,
                    color_match: str = "off", bridge_frames: int = DEFAULT_BRIDGE_FRAMES,
                    min_track_frames: int = DEFAULT_MIN_TRACK_FRAMES,
                    short_track_score: float = DEFAULT_SHORT_TRACK_SCORE, scene_cut: float = DEFAULT_SCENE_CUT,
                    parser_precision: str = "model") -> RestoreOptions:
    """The widgets of :func:`restore_inputs` (by name; the defaults are those of widgets an old workflow lacks)
    as the core's options, checked now, before any model runs."""
    return RestoreOptions(
        detect_options(score_threshold, min_face_size, selection, max_faces, face_indices, max_face_size),
        TrackOptions(landmark_smoothing, bridge_frames, min_track_frames, short_track_score, scene_cut),
        paste_options(fidelity, upscale_factor, mask, keep_hair, keep_neck, smooth_small_faces, keep_grey,
                      color_match, parser_precision),
        node_run_options(tile_size),
    )


class GPENFaceRestore(io.ComfyNode):
    read_widgets = staticmethod(restore_options)
    """What ``execute`` makes of its ``**widgets`` (the node test checks they are the schema's other inputs)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENFaceRestore",
            display_name="GPEN Face Restore",
            category="GPEN",
            description="Detect every face, align it to GPEN's template, restore it, and paste it back with a "
                        "feathered mask. Pixels outside the faces are left exactly as they were. The frames of a "
                        "batch go in chunks, so a long video needs the memory of a chunk (and of its output). "
                        "The same steps as GPEN Detect & Align Faces -> GPEN Enhance -> GPEN Paste Faces.",
            inputs=restore_inputs(
                io.Image.Input("image", tooltip="whole photos or video frames (a batch), any size"),
                io.Image.Input("upscaled_image", optional=True,
                               tooltip="an upscaled copy of image (e.g. from Upscale Image (using Model)): faces are "
                                       "found in image, then cut from and pasted into this one"),
            ),
            outputs=[
                io.Image.Output(display_name="image", tooltip="the photos with the restored faces pasted in"),
                io.Image.Output(display_name="faces_before",
                                tooltip="the aligned face crops before GPEN (kept only when connected)"),
                io.Image.Output(display_name="faces_after",
                                tooltip="the same crops after GPEN (kept only when connected)"),
                io.Mask.Output(display_name="paste_mask",
                               tooltip="where faces were pasted, one mask per image at the output size"),
            ],

            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, gpen_model, face_detector, upscaled_image=None, **widgets) -> io.NodeOutput:
        options = cls.read_widgets(**widgets)
        networks, options, stats = prepare_restore(gpen_model, face_detector, cls.hidden.prompt, options, image,
                                                   upscaled_image)
        used = linked_outputs(cls.hidden.prompt, cls.hidden.unique_id)
        out, before, after, paste_mask = restore_comfy_images(
            networks, image, options, upscaled=upscaled_image,
            keep_crops=used is None or bool(used & set(CROP_OUTPUTS)), progress=interruptible_progress(1),
            stats=stats,
        )
        LastRun.keep(stats.record)
        return io.NodeOutput(out, before, after, paste_mask)


class GPENDetectAlignFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENDetectAlignFaces",
            display_name="GPEN Detect & Align Faces",
            category="GPEN",
            description="Find the faces, align each to GPEN's template and cut it out. Restore the crops with any "
                        "node (GPEN Enhance, another restorer, an edit) and put them back with GPEN Paste Faces.",
            inputs=[
                io.Image.Input("image", tooltip="whole photos or video frames (a batch), any size"),
                FaceDetector.Input("face_detector", tooltip="from Load Face Detector (GPEN)"),
                io.Int.Input("crop_size", default=512, min=64, max=2048, step=64,
                             tooltip="side of the aligned crops; with gpen_model connected, that model's size"),
                *selection_inputs(),
                *more_selection_inputs(optional=False),
                smoothing_input(optional=False),
                GPENModel.Input("gpen_model", optional=True, tooltip="crop at this model's size"),
                io.Image.Input("upscaled_image", optional=True,
                               tooltip="an upscaled copy of image: faces are found in image and cut from this one "
                                       "(more detail); paste into it too"),
                *tracking_inputs(),
            ],
            outputs=[io.Image.Output(display_name="aligned_faces",
                                     tooltip="one aligned crop per face found, in the selection order"),
                     Faces.Output(display_name="faces",
                                  tooltip="where each crop came from: for GPEN Paste Faces")],

        )

    @classmethod
    def execute(cls, image, face_detector, crop_size, score_threshold, min_face_size, selection, max_faces,
                face_indices, max_face_size, landmark_smoothing, gpen_model=None, upscaled_image=None,
                bridge_frames=DEFAULT_BRIDGE_FRAMES, min_track_frames=DEFAULT_MIN_TRACK_FRAMES,
                short_track_score=DEFAULT_SHORT_TRACK_SCORE, scene_cut=DEFAULT_SCENE_CUT) -> io.NodeOutput:
        size = gpen_model.model.gpen.config.size if gpen_model is not None else crop_size
        detect = detect_options(score_threshold, min_face_size, selection, max_faces, face_indices, max_face_size)
        track = TrackOptions(landmark_smoothing, bridge_frames, min_track_frames, short_track_score, scene_cut)
        crops, faces = detect_comfy_images(face_detector, image, size, detect, track,
                                           upscaled=upscaled_image, progress=interruptible_progress(1))
        return io.NodeOutput(crops, faces)


class GPENPasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENPasteFaces",
            display_name="GPEN Paste Faces",
            category="GPEN",
            description="Paste restored face crops back with a feathered mask, into the image the faces were found "
                        "in (resized by upscale_factor) or into an upscaled copy of it. The mask output is a MASK "
                        "for the core mask nodes.",
            inputs=[
                io.Image.Input("image", tooltip="the image given to Detect & Align, or an upscaled copy of it"),
                Faces.Input("faces", tooltip="from GPEN Detect & Align Faces"),
                io.Image.Input("restored_faces", tooltip="one crop per face, in order; resized to the crop size"),
                io.Float.Input("fidelity", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="1: the restored face (official paste), 0: the input unchanged; "
                                       "in between, mixed in image space"),
                upscale_input(optional=False),
                io.Mask.Input("face_masks", optional=True,
                              tooltip="one mask per crop (e.g. from a face-parsing or segmentation node), resized to "
                                      "the crop size and used as it is (it wins over mask); default: the mask widget"),
                *paste_inputs(),
                parser_precision_input(),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="the image with the faces pasted in"),
                     io.Mask.Output(display_name="paste_mask",
                                    tooltip="where faces were pasted, one mask per image at the output size")],
        )

    @classmethod
    def execute(cls, image, faces, restored_faces, fidelity, upscale_factor, face_masks=None, mask="auto",
                keep_hair=True, keep_neck=True, smooth_small_faces=True, keep_grey=True,
                color_match="off", parser_precision="model") -> io.NodeOutput:
        paste = paste_options(fidelity, upscale_factor, mask, keep_hair, keep_neck, smooth_small_faces, keep_grey,
                              color_match, parser_precision)
        parser = None
        if face_masks is None:  # a MASK per crop wins over the mask mode; no generator here: "model" means float32
            parser = paste_parser(paste, torch.float32, mm.get_torch_device())
        out, paste_mask = paste_comfy_images(image, faces, restored_faces, paste, face_masks=face_masks,
                                             parser=parser, progress=interruptible_progress(1))
        return io.NodeOutput(out, paste_mask)
