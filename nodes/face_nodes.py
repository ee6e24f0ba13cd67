"""ComfyUI v3 nodes for whole photos: Load Face Detector, GPEN Face Restore."""
from __future__ import annotations

import comfy.model_management as mm
from comfy_api.latest import io

from ..gpen_core.face.detection.loader import load_detector
from .glue import FaceDetector, GPENModel, interruptible_progress, load_for_run
from .logic import AUTO_TILE, DETECTOR_DEVICES, DETECTOR_OPTIONS, NODE_MIN_TILE, SELECTION_OPTIONS, restore_comfy_images
from .model_folders import facedetection_folders


class LoadFaceDetector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENFaceDetectorLoader",
            display_name="Load Face Detector (GPEN)",
            category="GPEN",
            description="RetinaFace (detection_Resnet50_Final.pth / detection_mobilenet0.25_Final.pth in "
                        "models/facedetection) or MTCNN (pip install --no-deps facenet-pytorch==2.6.0). "
                        "auto: the first one found. Nothing is downloaded.",
            inputs=[
                io.Combo.Input("detector", options=list(DETECTOR_OPTIONS), default="auto"),
                io.Combo.Input("device", options=list(DETECTOR_DEVICES), default="auto"),
            ],
            outputs=[FaceDetector.Output(display_name="face_detector")],
        )

    @classmethod
    def execute(cls, detector: str, device: str) -> io.NodeOutput:
        target = mm.get_torch_device() if device == "auto" else "cpu"
        return io.NodeOutput(load_detector(detector, facedetection_folders(), device=target))


class GPENFaceRestore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENFaceRestore",
            display_name="GPEN Face Restore",
            category="GPEN",
            description="Detect every face, align it to GPEN's template, restore it, and paste it back with a "
                        "feathered mask. Pixels outside the faces are left exactly as they were.",
            inputs=[
                io.Image.Input("image"),
                GPENModel.Input("gpen_model"),
                FaceDetector.Input("face_detector"),
                io.Float.Input("fidelity", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="1: the restored face, 0: the original face (official alpha)"),
                io.Float.Input("score_threshold", default=0.0, min=0.0, max=0.99, step=0.01,
                               tooltip="detector confidence; 0 = the detector's default (RetinaFace 0.97, MTCNN 0.7)"),
                io.Int.Input("min_face_size", default=0, min=0, max=4096, tooltip="ignore smaller faces (px)"),
                io.Combo.Input("selection", options=list(SELECTION_OPTIONS), default="score",
                               tooltip="which faces come first: score (detector confidence; 'all' in older "
                                       "workflows), largest, left_to_right ... center"),
                io.Int.Input("max_faces", default=0, min=0, max=1000, tooltip="0 = no limit"),
                io.Int.Input("tile_size", default=AUTO_TILE, min=AUTO_TILE, max=2048, step=16,
                             tooltip=f"GPEN tile size; 0 = automatic from free memory, else at least {NODE_MIN_TILE}"),
            ],
            outputs=[
                io.Image.Output(display_name="image"),
                io.Image.Output(display_name="faces_before"),
                io.Image.Output(display_name="faces_after"),
                io.Mask.Output(display_name="paste_mask"),
            ],
        )

    @classmethod
    def execute(cls, image, gpen_model, face_detector, fidelity, score_threshold, min_face_size, selection,
                max_faces, tile_size) -> io.NodeOutput:
        gpen = gpen_model.model.gpen
        budget = load_for_run(gpen_model, 1, tile_size)
        out, before, after, mask = restore_comfy_images(
            gpen, face_detector, image.to(gpen.device), fidelity=fidelity, score_threshold=score_threshold,
            min_face_size=min_face_size, selection=selection, max_faces=max_faces, tile_size=tile_size,
            memory_budget=budget, progress=interruptible_progress(1),
        )
        return io.NodeOutput(out, before, after, mask)
