"""Modulation styles of every decoder layer for a latent: one matmul, cached demodulation norms.

Each ``ModulatedConv`` of the decoder has its own ``EqualLinear`` modulation ``s = A w + b``
(official ``ModulatedConv2d.modulation``) and, when it demodulates, the per-sample output
scale ``d = rsqrt(sum_{in, taps} (W s / sqrt(fan_in))^2 + 1e-8)``. Written layer by layer
that is ~4 small kernels per layer (32 layers at 512). Here:

* the modulation weights of all layers are the row blocks of one matrix
  (:class:`ModulationStack`), so every style of a latent is one ``addmm``;
* ``d`` needs ``sum_taps W^2``, which depends on the weights only: it is computed once per
  weights and dtype (:class:`StyleConstants`, cached by :mod:`gpen_core.arch.prepared`),
  stacked per layer shape, so all demodulations are one batched matmul per shape.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from .layers import ModulatedConv

Scales = tuple[torch.Tensor, "torch.Tensor | None"]
"""``(input_scale (B, C_in), output_scale (B, C_out) or None)``, float32; the input scale
includes ``1 / sqrt(fan_in)`` and the gain the layer's input lacks."""

DEMODULATION_EPS = 1e-8

log = logging.getLogger(__name__)


@dataclass
class LevelStyles:
    """Modulation scales of one decoder level: upsampling conv, conv, to-RGB."""

    up: Scales
    conv: Scales
    rgb: Scales


@dataclass
class DecoderStyles:
    """Modulation scales of every decoder layer for one batch."""

    start_conv: Scales
    start_rgb: Scales
    levels: list[LevelStyles]


@dataclass(frozen=True)
class _Slot:
    layer: ModulatedConv
    lo: int
    hi: int
    input_gain: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(C_in, C_out)`` of the convolution."""
        return int(self.layer.weight.shape[2]), int(self.layer.weight.shape[1])


class ModulationStack:
    """The modulation weights of all decoder layers as the row blocks of one matrix.

    Each layer's ``modulation.weight`` / ``modulation.bias`` parameter is made a view of its
    block of :attr:`weight` / :attr:`bias`: state-dict keys and values are unchanged, the
    weights are stored once, and the styles of all layers are one ``addmm``. Rows are
    ordered demodulating layers first, grouped by convolution shape, then the others.

    Moving or converting the parameters (``.to``, ``.float()``, ``load_state_dict`` with
    ``assign``) replaces their storage; :meth:`matrices` notices and stacks them again.

    Args:
        layers: ``(layer, input_gain)`` of every decoder layer in decoder order: ``conv1``,
            ``to_rgb1``, then per level the upsampling conv, the conv and the to-RGB layer.
    """

    def __init__(self, layers: list[tuple[ModulatedConv, float]]) -> None:
        order = sorted(range(len(layers)), key=lambda i: (not layers[i][0].demodulate, _shape(layers[i][0]), i))
        slots: dict[int, _Slot] = {}
        lo = 0
        for i in order:
            layer, gain = layers[i]
            c_in = int(layer.weight.shape[2])
            slots[i] = _Slot(layer, lo, lo + c_in, gain)
            lo += c_in
        self.slots = [slots[i] for i in range(len(layers))]  # decoder order
        self.stack_order = [slots[i] for i in order]
        self.columns = lo
        groups: dict[tuple[int, int], list[int]] = {}
        for i in order:
            if layers[i][0].demodulate:
                groups.setdefault(self.slots[i].shape, []).append(i)
        self.groups = list(groups.values())
        """Decoder indices of the demodulating layers, one list per ``(C_in, C_out)``, in row order."""
        self.demodulated_columns = sum(self.slots[g[0]].shape[0] * len(g) for g in self.groups)
        self.weight = self.bias = torch.empty(0)
        self.restack()

    def restack(self) -> None:
        """Copy the modulation parameters into fresh matrices and make them views of those.

        The matrices are inference tensors exactly when the parameters are (a model built
        under ``torch.inference_mode``, as ComfyUI runs its nodes): ``set_data`` needs both
        kinds to match. When they are mixed, nothing is stacked and :meth:`matrices`
        concatenates on every call.
        """
        mods = [s.layer.modulation for s in self.stack_order]
        if any(m.weight.is_meta for m in mods):  # shapes only (a checkpoint's shapes checked): no storage to share
            self.weight = self.bias = torch.empty(0)
            return
        kinds = {torch.is_inference(t) for m in mods for t in (m.weight, m.bias)}
        if len(kinds) != 1:
            log.debug("modulation parameters mix inference and normal tensors: not stacked")
            self.weight = self.bias = torch.empty(0)
            return
        with torch.no_grad(), torch.inference_mode(kinds.pop()):
            weight = torch.cat([m.weight.detach() for m in mods])
            bias = torch.cat([m.bias.detach() for m in mods])
            for slot, m in zip(self.stack_order, mods, strict=True):
                m.weight.data = weight[slot.lo : slot.hi]
                m.bias.data = bias[slot.lo : slot.hi]
        self.weight, self.bias = weight, bias

    def is_stacked(self) -> bool:
        """Whether every modulation parameter is still a view of :attr:`weight` / :attr:`bias`."""
        if self.weight.numel() == 0:
            return False
        w_ptr, b_ptr = self.weight.untyped_storage().data_ptr(), self.bias.untyped_storage().data_ptr()
        dim = self.weight.shape[1]
        for slot in self.stack_order:
            m = slot.layer.modulation
            if (m.weight.untyped_storage().data_ptr() != w_ptr or m.weight.storage_offset() != slot.lo * dim
                    or m.bias.untyped_storage().data_ptr() != b_ptr or m.bias.storage_offset() != slot.lo):
                return False
        return True

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (columns, style_dim), bias (columns,))`` holding the current parameters.

        With gradients enabled for the parameters this is a differentiable concatenation
        (the gradients reach the parameters); otherwise the shared matrices, re-stacked
        first when a conversion replaced the parameters' storage.
        """
        mods = [s.layer.modulation for s in self.stack_order]
        if torch.is_grad_enabled() and any(m.weight.requires_grad or m.bias.requires_grad for m in mods):
            return torch.cat([m.weight for m in mods]), torch.cat([m.bias for m in mods])
        if not self.is_stacked():
            self.restack()
            if not self.is_stacked():
                return torch.cat([m.weight for m in mods]), torch.cat([m.bias for m in mods])
        return self.weight, self.bias


def _shape(layer: ModulatedConv) -> tuple[int, int]:
    return int(layer.weight.shape[2]), int(layer.weight.shape[1])


@dataclass
class StyleConstants:
    """What the styles need beyond the modulation matrices, derived from the weights.

    Attributes:
        alpha: ``EqualLinear`` scale of the modulation layers (``1 / sqrt(style_dim)``).
        column_scale: ``(columns,)`` float32, ``input_gain / sqrt(fan_in)`` per style column.
        norms: per demodulation group, ``(G, C_in, C_out)`` float32 ``sum_taps W^2 / fan_in``.
        eps: the demodulation epsilon as a float32 scalar tensor on the device.
    """

    alpha: float
    column_scale: torch.Tensor
    norms: list[torch.Tensor]
    eps: torch.Tensor


def style_constants(stack: ModulationStack) -> StyleConstants:
    """:class:`StyleConstants` from the current parameters (differentiable in the weights)."""
    first = stack.stack_order[0].layer
    device = first.weight.device
    scale = torch.empty(stack.columns, dtype=torch.float32, device=device)
    for slot in stack.stack_order:
        scale[slot.lo : slot.hi] = slot.input_gain / math.sqrt(slot.layer.fan_in)
    norms = [
        torch.stack([stack.slots[i].layer.squared_norms().t() for i in group]) / stack.slots[group[0]].layer.fan_in
        for group in stack.groups
    ]
    eps = torch.tensor(DEMODULATION_EPS, dtype=torch.float32, device=device)
    return StyleConstants(float(first.modulation.scale), scale, norms, eps)


def decoder_styles(stack: ModulationStack, constants: StyleConstants, w: torch.Tensor) -> DecoderStyles:
    """Modulation scales of every decoder layer for the latent ``w (B, style_dim)`` float32.

    About a dozen kernels whatever the depth: one ``addmm`` for all styles, one scale,
    one square, one batched matmul per demodulation group, one ``rsqrt``.
    """
    weight, bias = stack.matrices()
    batch = w.shape[0]
    styles = torch.addmm(bias, w, weight.t(), alpha=constants.alpha)  # (B, columns): every s = A w + b
    inputs = styles * constants.column_scale
    demod_styles = styles[:, : stack.demodulated_columns]
    squares = demod_styles * demod_styles
    outputs, col = [], 0
    for norms in constants.norms:
        count, c_in = norms.shape[0], norms.shape[1]
        sq = squares[:, col : col + count * c_in].reshape(batch, count, c_in).transpose(0, 1)
        outputs.append(torch.baddbmm(constants.eps, sq, norms).reshape(-1))  # (G, B, C_out)
        col += count * c_in
    out_scale: dict[int, torch.Tensor] = {}
    demod = torch.cat(outputs).rsqrt_() if outputs else torch.empty(0)
    start = 0
    for group, norms in zip(stack.groups, constants.norms, strict=True):
        c_out = norms.shape[2]
        block = demod[start : start + len(group) * batch * c_out].view(len(group), batch, c_out)
        for k, i in enumerate(group):
            out_scale[i] = block[k]
        start += len(group) * batch * c_out
    scales: list[Scales] = [(inputs[:, s.lo : s.hi], out_scale.get(i)) for i, s in enumerate(stack.slots)]
    levels = [LevelStyles(*scales[2 + 3 * j : 5 + 3 * j]) for j in range((len(scales) - 2) // 3)]
    return DecoderStyles(scales[0], scales[1], levels)
