"""ComfyUI nodes over gpen_core.

``logic`` is plain Python/PyTorch (tested without ComfyUI); the other modules import ComfyUI
and only adapt types: ComfyUI's ``(B, H, W, C)`` images, model folders, progress bars,
model management.
"""
