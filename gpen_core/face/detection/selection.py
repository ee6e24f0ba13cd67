"""Which detected faces to use, and in which order: one implementation for the core, the nodes
and the command line.

A :class:`FaceSelection` is applied to one image's :class:`.result.FaceDetections` in four steps:

1. **size bounds**: keep faces whose *box side* ``max(width, height)`` (pixels of the detected
   box, see :attr:`.result.FaceDetections.box_sizes`) is ``>= min_face_size`` and
   ``<= max_face_size``; a bound of 0 means no bound;
2. **order** (:data:`FACE_ORDERS`): ``score`` (detector confidence, highest first), ``largest``
   (box area, largest first), ``left_to_right`` / ``right_to_left`` / ``top_to_bottom`` (box
   centre), ``center`` (box centre closest to the image centre first). Ties keep score order.
   ``all`` is accepted as an old name of ``score`` (saved workflows use it);
3. **indices** over that order (0 = first): ``"0"``, ``"0,2"``, ``"1-3"`` (inclusive), mixed
   ``"0, 2-4"``; empty = every face. The chosen faces come back in the order's sequence
   (ascending index), each once. An index beyond the faces found is skipped with a log line,
   never an error, so one image with fewer faces cannot fail a batch;
4. **max_faces**: keep at most this many (``None`` or 0: no limit).

Example::

    from gpen_core.face.detection import FaceSelection, detect_faces

    # the second and third faces from the left, ignoring faces under 40 px
    faces = detect_faces(detector, image, selection=FaceSelection("left_to_right", "1-2", min_face_size=40))
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from .result import FaceDetections

logger = logging.getLogger(__name__)

FaceOrder = Literal["score", "largest", "left_to_right", "right_to_left", "top_to_bottom", "center"]
FACE_ORDERS: tuple[str, ...] = get_args(FaceOrder)
"""Every order, the first being the default; the option list of node widgets and CLI flags."""

ORDER_ALIASES: dict[str, str] = {"all": "score"}
"""Older names still accepted (workflows saved with ``selection: "all"``)."""

_INDEX_ITEM = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


def normalise_order(order: str) -> FaceOrder:
    """``order`` with :data:`ORDER_ALIASES` resolved; ValueError if it is not an order."""
    resolved = ORDER_ALIASES.get(order, order)
    if resolved not in FACE_ORDERS:
        raise ValueError(f"face order must be one of {', '.join(FACE_ORDERS)}; got {order!r}")
    return resolved  # type: ignore[return-value]


def parse_face_indices(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """Parse an index list such as ``"0"``, ``"0,2"``, ``"1-3"`` or ``"0, 2-4"``.

    Args:
        text: the list as typed by a user; or already a sequence of ints; empty, blank or
            ``None`` means every face.

    Returns:
        Sorted unique indices (``(1, 2, 3)`` for ``"1-3"``), or ``None`` for every face.

    Raises:
        ValueError: a malformed item, a negative index or a reversed range, naming the item.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        values = [int(v) for v in text]
        if any(v < 0 for v in values):
            raise ValueError(f"face indices must be >= 0; got {list(text)}")
        return tuple(sorted(set(values))) if values else None
    if not text.strip():
        return None
    chosen: set[int] = set()
    for item in text.split(","):
        match = _INDEX_ITEM.match(item.strip())
        if match is None:
            raise ValueError(
                f"face indices {text!r}: cannot read {item.strip()!r}; write indices from 0 and "
                'inclusive ranges separated by commas, e.g. "0", "0,2", "1-3"'
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"face indices {text!r}: range {item.strip()!r} is reversed; write {last}-{first}")
        chosen.update(range(first, last + 1))
    return tuple(sorted(chosen))


@dataclass(frozen=True)
class FaceSelection:
    """Which faces of one image to use, in which order (see the module docstring).

    Attributes:
        order: one of :data:`FACE_ORDERS` (or an alias of :data:`ORDER_ALIASES`, stored
            resolved).
        indices: positions in that order: a string such as ``"0,2"`` / ``"1-3"``, or a
            sequence of ints; stored as sorted unique ints, ``None`` (or empty) = every face.
        min_face_size: smallest box side ``max(w, h)`` kept, in pixels; 0 = no bound.
        max_face_size: largest box side ``max(w, h)`` kept, in pixels; 0 = no bound.
        max_faces: at most this many faces after the indices; ``None`` or 0 = no limit.

    Raises:
        ValueError: unknown order, malformed indices, negative sizes or counts, or
        ``max_face_size < min_face_size`` when both are set.
    """

    order: str = "score"
    indices: str | Sequence[int] | None = None
    min_face_size: float = 0.0
    max_face_size: float = 0.0
    max_faces: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", normalise_order(self.order))
        object.__setattr__(self, "indices", parse_face_indices(self.indices))
        for name in ("min_face_size", "max_face_size"):
            value = float(getattr(self, name))
            if not value >= 0.0:  # also rejects NaN
                raise ValueError(f"{name} must be >= 0 pixels (0 = no bound); got {value}")
            object.__setattr__(self, name, value)
        if 0 < self.max_face_size < self.min_face_size:
            raise ValueError(
                f"max_face_size ({self.max_face_size:g}) is below min_face_size ({self.min_face_size:g}): "
                "no face could pass; raise max_face_size or set it to 0 (no bound)"
            )
        if self.max_faces is not None and self.max_faces < 0:
            raise ValueError(f"max_faces must be >= 0 (0 or None = no limit); got {self.max_faces}")


def order_faces(detections: FaceDetections, order: str) -> torch.Tensor:
    """(N,) int64 indices of ``detections`` in ``order`` (see the module docstring); ties keep
    score order (highest first), and equal scores keep detector order."""
    order = normalise_order(order)
    boxes = detections.boxes
    by_score = torch.sort(detections.scores, descending=True, stable=True).indices
    if order == "score":
        return by_score
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    if order == "largest":
        key, descending = detections.box_areas, True
    elif order == "left_to_right":
        key, descending = centres[:, 0], False
    elif order == "right_to_left":
        key, descending = centres[:, 0], True
    elif order == "top_to_bottom":
        key, descending = centres[:, 1], False
    else:  # center
        height, width = detections.image_size
        image_centre = torch.tensor([width / 2, height / 2], dtype=centres.dtype, device=centres.device)
        key, descending = ((centres - image_centre) ** 2).sum(dim=1), False
    return by_score[torch.sort(key[by_score], descending=descending, stable=True).indices]


def select_face_indices(detections: FaceDetections, selection: FaceSelection) -> torch.Tensor:
    """(K,) int64 indices into ``detections`` of the selected faces, in selection order."""
    sizes = detections.box_sizes
    passes = torch.ones(len(detections), dtype=torch.bool, device=sizes.device)
    if selection.min_face_size > 0:
        passes &= sizes >= selection.min_face_size
    if selection.max_face_size > 0:
        passes &= sizes <= selection.max_face_size
    ordered = order_faces(detections, selection.order)
    ordered = ordered[passes[ordered]]
    wanted = parse_face_indices(selection.indices)  # already parsed: a sorted tuple or None
    if wanted is not None:
        present = [i for i in wanted if i < ordered.numel()]
        if len(present) < len(wanted):  # never an error: one image with fewer faces must not fail a batch
            logger.warning(
                "face indices %s skipped: only %d face(s) in %s order after the size bounds",
                ",".join(str(i) for i in wanted if i >= ordered.numel()),
                ordered.numel(),
                selection.order,
            )
        ordered = ordered[torch.tensor(present, dtype=torch.int64, device=ordered.device)]
    if selection.max_faces:
        ordered = ordered[: selection.max_faces]
    return ordered


def select_faces(detections: FaceDetections, selection: FaceSelection) -> FaceDetections:
    """The faces ``selection`` picks from ``detections``, in selection order."""
    return detections.take(select_face_indices(detections, selection))
