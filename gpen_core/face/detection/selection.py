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
   ``"0, 2-4"``; empty = every face; at most :data:`MAX_INDEX_ITEMS` items, indices up to
   :data:`MAX_FACE_INDEX`. Lists are kept as ranges (:class:`FaceIndices`), never expanded:
   ``"0-1000000000"`` costs what ``"0"`` costs. The chosen faces come back in the order's
   sequence (ascending index), each once. An index beyond the faces found is skipped with a log
   line (a bounded one: at most :data:`SHOWN_SKIPPED_RANGES` ranges), never an error, so one
   image with fewer faces cannot fail a batch;
4. **max_faces**: keep at most this many (``None`` or 0: no limit).

Example::

    from gpen_core.face.detection import FaceSelection, detect_faces

    # the second and third faces from the left, ignoring faces under 40 px
    faces = detect_faces(detector, image, selection=FaceSelection("left_to_right", "1-2", min_face_size=40))
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

import torch

from .result import FaceDetections

logger = logging.getLogger(__name__)

FaceOrder = Literal["score", "largest", "left_to_right", "right_to_left", "top_to_bottom", "center"]
FACE_ORDERS: tuple[str, ...] = get_args(FaceOrder)
"""Every order, the first being the default; the option list of node widgets and CLI flags."""

ORDER_ALIASES: dict[str, str] = {"all": "score"}
"""Older names still accepted (workflows saved with ``selection: "all"``)."""

MAX_FACE_INDEX = 2**31 - 1
"""The largest face index accepted (a larger number is refused, naming it). Index lists are kept as
ranges, never expanded, so ``"5-2147483647"`` (every face from the sixth) costs no more than ``"5"``."""

MAX_INDEX_ITEMS = 1000
"""At most this many comma-separated items in an index list (``"0,2,5-9"`` has 3); more is refused."""

SHOWN_SKIPPED_RANGES = 8
"""At most this many ranges of skipped indices are written in the warning line (then a count)."""

_INDEX_ITEM = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


def normalise_order(order: str) -> FaceOrder:
    """``order`` with :data:`ORDER_ALIASES` resolved; ValueError if it is not an order."""
    resolved = ORDER_ALIASES.get(order, order)
    if resolved not in FACE_ORDERS:
        raise ValueError(f"face order must be one of {', '.join(FACE_ORDERS)}; got {order!r}")
    return resolved  # type: ignore[return-value]


def _shown(text: object, limit: int = 40) -> str:
    """``repr(text)`` cut to about ``limit`` characters: error messages stay one short line."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


def _read_index(digits: str, item: str, text: str) -> int:
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(MAX_FACE_INDEX)) or int(significant) > MAX_FACE_INDEX:  # never int() of a huge text
        raise ValueError(f"face indices {_shown(text)}: {_shown(item)} is above the largest index {MAX_FACE_INDEX}")
    return int(significant)


@dataclass(frozen=True)
class FaceIndices:
    """Positions in a face order (0 = first), kept as inclusive ranges: never expanded, so the
    cost of a list is the number of its items, whatever the numbers in it.

    Attributes:
        ranges: ``(first, last)`` pairs, ``0 <= first <= last <= MAX_FACE_INDEX``, sorted, and
            neither overlapping nor touching (``"1-3,4"`` is stored as ``((1, 4),)``); not empty.

    Build one with :func:`parse_face_indices` (text or ints) or :meth:`merged` (any pairs).
    """

    ranges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ValueError("FaceIndices needs at least one range (None means every face)")
        previous_last = -2
        for first, last in self.ranges:
            if not 0 <= first <= last <= MAX_FACE_INDEX or first <= previous_last + 1:
                raise ValueError(
                    f"FaceIndices ranges must be sorted, disjoint, not touching and within [0, {MAX_FACE_INDEX}]; "
                    f"got {self.ranges}; build them with FaceIndices.merged"
                )
            previous_last = last

    @classmethod
    def merged(cls, ranges: Iterable[tuple[int, int]]) -> FaceIndices:
        """The union of inclusive ``(first, last)`` ranges (each with ``first <= last``), merged."""
        merged: list[tuple[int, int]] = []
        for first, last in sorted(ranges):
            if merged and first <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        return cls(tuple(merged))

    def below(self, count: int) -> list[int]:
        """The indices ``< count``, ascending (at most ``count`` of them, whatever the ranges)."""
        found: list[int] = []
        for first, last in self.ranges:
            if first >= count:
                break
            found.extend(range(first, min(last, count - 1) + 1))
        return found

    def at_or_above(self, count: int) -> FaceIndices | None:
        """The indices ``>= count`` (None if there are none)."""
        kept = [(max(first, count), last) for first, last in self.ranges if last >= count]
        return FaceIndices(tuple(kept)) if kept else None

    def describe(self, limit: int | None = None) -> str:
        """The list as text, ``"0,2,3,4,6-9"`` (a range of up to three indices as single items);
        with ``limit``, at most that many ranges, then ``" and N more range(s)"``."""
        shown = self.ranges if limit is None else self.ranges[:limit]
        parts = []
        for first, last in shown:
            parts.append(f"{first}-{last}" if last > first + 2 else ",".join(str(i) for i in range(first, last + 1)))
        rest = len(self.ranges) - len(shown)
        return ",".join(parts) + (f" and {rest} more range(s)" if rest else "")

    def __str__(self) -> str:
        return self.describe()


def parse_face_indices(text: str | Sequence[int] | FaceIndices | None) -> FaceIndices | None:
    """Parse an index list such as ``"0"``, ``"0,2"``, ``"1-3"`` or ``"0, 2-4"``.

    Args:
        text: the list as typed by a user; or a sequence of ints; or already parsed (returned as
            it is); empty, blank or ``None`` means every face.

    Returns:
        The indices as merged ranges (``"1-3"`` gives ``FaceIndices(((1, 3),))``), or ``None``
        for every face.

    Raises:
        ValueError: a malformed item, a negative index, a reversed range, an index above
            :data:`MAX_FACE_INDEX` or more than :data:`MAX_INDEX_ITEMS` items, naming the item.
    """
    if text is None or isinstance(text, FaceIndices):
        return text
    if not isinstance(text, str):
        values = [int(v) for v in text]
        wrong = [v for v in values if not 0 <= v <= MAX_FACE_INDEX]
        if wrong:
            raise ValueError(f"face indices must be in [0, {MAX_FACE_INDEX}]; got {_shown(wrong)}")
        return FaceIndices.merged((v, v) for v in values) if values else None
    if not text.strip():
        return None
    if text.count(",") >= MAX_INDEX_ITEMS:
        raise ValueError(
            f"face indices: {text.count(',') + 1} items, more than {MAX_INDEX_ITEMS}; write ranges such as \"0-99\""
        )
    ranges: list[tuple[int, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        match = _INDEX_ITEM.match(item)
        if match is None:
            raise ValueError(
                f"face indices {_shown(text)}: cannot read {_shown(item)}; write indices from 0 and "
                'inclusive ranges separated by commas, e.g. "0", "0,2", "1-3"'
            )
        first = _read_index(match.group(1), item, text)
        last = _read_index(match.group(2), item, text) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"face indices {_shown(text)}: range {_shown(item)} is reversed; write {last}-{first}")
        ranges.append((first, last))
    return FaceIndices.merged(ranges)


@dataclass(frozen=True)
class FaceSelection:
    """Which faces of one image to use, in which order (see the module docstring).

    Attributes:
        order: one of :data:`FACE_ORDERS` (or an alias of :data:`ORDER_ALIASES`, stored
            resolved).
        indices: positions in that order: a string such as ``"0,2"`` / ``"1-3"``, a sequence
            of ints or a :class:`FaceIndices`; stored as :class:`FaceIndices` (ranges, never
            expanded), ``None`` (or empty) = every face.
        min_face_size: smallest box side ``max(w, h)`` kept, in pixels; 0 = no bound.
        max_face_size: largest box side ``max(w, h)`` kept, in pixels; 0 = no bound.
        max_faces: at most this many faces after the indices; ``None`` or 0 = no limit.

    Raises:
        ValueError: unknown order, malformed indices, negative sizes or counts, or
        ``max_face_size < min_face_size`` when both are set.
    """

    order: str = "score"
    indices: str | Sequence[int] | FaceIndices | None = None
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
    wanted = cast("FaceIndices | None", selection.indices)  # parsed by FaceSelection.__post_init__
    if wanted is not None:
        count = ordered.numel()
        skipped = wanted.at_or_above(count)
        if skipped is not None:  # never an error: one image with fewer faces must not fail a batch
            logger.warning(
                "face indices %s skipped: only %d face(s) in %s order after the size bounds",
                skipped.describe(SHOWN_SKIPPED_RANGES),
                count,
                selection.order,
            )
        ordered = ordered[torch.tensor(wanted.below(count), dtype=torch.int64, device=ordered.device)]
    if selection.max_faces:
        ordered = ordered[: selection.max_faces]
    return ordered


def select_faces(detections: FaceDetections, selection: FaceSelection) -> FaceDetections:
    """The faces ``selection`` picks from ``detections``, in selection order."""
    return detections.take(select_face_indices(detections, selection))
