"""Tensors derived from the GPEN parameters, computed once per weights, device and dtype.

A forward needs some weights in forms the checkpoint does not store: blur taps flipped,
scaled and spread over the channels, biases in the compute dtype, the demodulation norms.
Computing them on every call costs a kernel each (about two hundred per forward) and, for
the norms, a pass over every decoder weight. Only small tensors are derived, plus the
norms (``C_out x C_in`` per layer, float32): the large weights are used as stored, their
scales folded into something small (an ``addmm`` alpha, the blur taps before an encoder
conv, the modulation scales of a decoder conv). :class:`WeightCache` keeps them and rebuilds them when the weights
change: the key holds every parameter's storage, version counter, dtype and device,
so ``load_state_dict``, ``.to()``, ``set_dtype`` and in-place edits are all seen.
Parameters created under ``torch.inference_mode`` have no version counter; for them
``load_state_dict`` and ``.to()`` clear the cache explicitly (:meth:`WeightCache.clear`),
and in-place edits made by hand must be followed by a ``clear()``.

With gradients enabled for the parameters nothing is cached: the tensors are rebuilt,
differentiably, on every call.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .layers import StyledConv, ToRGB
from .levels import LevelLayers, RGBLayer, StyledLayer
from .ops import ACTIVATION_GAIN, fir_taps
from .styles import ModulationStack, StyleConstants, style_constants

if TYPE_CHECKING:
    from .generator import GPEN


@dataclass
class EncoderStage:
    """One encoder stage: ``leaky_relu(conv(blur(x), weight) + bias)``, stride 2 after a blur.

    The equalised-lr scale of the conv and the gain its input lacks are folded into the
    blur taps (``(C_in, 1, 4, 4)``, flipped), so that the large weight is used as stored;
    the first stage (a 1x1 conv on the image, no blur) has a small scaled copy instead.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    blur_taps: torch.Tensor | None
    stride: int


@dataclass
class PreparedWeights:
    """Everything a forward reads besides the stored parameters (see the module docstring).

    Attributes:
        dtype: the compute dtype of the convolutions.
        encoder: one entry per encoder stage.
        styles: see :class:`gpen_core.arch.styles.StyleConstants`.
        const: ``(1, C_4, 4, 4)`` constant input, channels-last.
        start_conv, start_rgb: the 4x4 level's layers.
        levels: one entry per decoder level (8 .. S).
    """

    dtype: torch.dtype
    encoder: list[EncoderStage]
    styles: StyleConstants
    const: torch.Tensor
    start_conv: StyledLayer
    start_rgb: RGBLayer
    levels: list[LevelLayers]


def _styled(layer: StyledConv, dtype: torch.dtype) -> StyledLayer:
    c = int(layer.conv.weight.shape[1])
    bias = layer.activate.bias.to(dtype)
    taps = fir_taps(layer.conv.blur_kernel(), c, dtype, flip=True) if layer.conv.upsample else None
    return StyledLayer(
        layer.conv.weight.to(dtype), bias[:c].contiguous(), (layer.noise.weight * ACTIVATION_GAIN).to(dtype),
        bias[c:].reshape(1, -1, 1, 1), taps,
    )


def _rgb(layer: ToRGB, dtype: torch.dtype) -> RGBLayer:
    kernel = layer.skip_kernel()
    taps = None if kernel is None else fir_taps(kernel, 3, torch.float32, flip=False)
    return RGBLayer(layer.conv.weight.to(dtype), layer.bias.reshape(3).to(dtype), taps)


def prepare(model: GPEN, stack: ModulationStack) -> PreparedWeights:
    """:class:`PreparedWeights` of ``model`` in its current dtype (differentiable in the weights)."""
    dtype = model.dtype
    encoder = []
    for index in range(model.num_stages):
        layer = getattr(model, f"ecd{index}")[0]
        if index == 0:
            conv, bias = layer[0], layer[1]
            stage = EncoderStage((conv.weight * conv.scale).to(dtype).contiguous(memory_format=torch.channels_last),
                                 bias.bias.to(dtype), None, 1)
        else:
            blur, conv, bias = layer[0], layer[1], layer[2]
            taps = fir_taps(blur.kernel * (conv.scale * ACTIVATION_GAIN), int(conv.weight.shape[1]), dtype, flip=True)
            stage = EncoderStage(conv.weight.to(dtype), bias.bias.to(dtype), taps, 2)
        encoder.append(stage)
    g = model.generator
    convs = g.styled_convs()
    levels = [
        LevelLayers(_styled(convs[2 * j], dtype), _styled(convs[2 * j + 1], dtype), _rgb(rgb, dtype))
        for j, rgb in enumerate(g.rgb_layers())
    ]
    const = g.input.input.to(dtype).contiguous(memory_format=torch.channels_last)
    return PreparedWeights(dtype, encoder, style_constants(stack), const,
                           _styled(g.conv1, dtype), _rgb(g.to_rgb1, dtype), levels)


def _tensors(value: object) -> list[torch.Tensor]:
    """Every tensor held by a (nested) prepared-weights dataclass."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for f in dataclasses.fields(value) for t in _tensors(getattr(value, f.name))]
    return []


def _version(t: torch.Tensor) -> int:
    return -1 if torch.is_inference(t) else t._version


def weights_key(module: nn.Module) -> Hashable:
    """Changes whenever a parameter or buffer of ``module`` is replaced, moved, converted or
    (outside inference mode) modified in place."""
    return tuple(
        (t.untyped_storage().data_ptr(), t.storage_offset(), _version(t), t.dtype, t.device)
        for t in (*module.parameters(), *module.buffers())
    )


class WeightCache:
    """Holds the :class:`PreparedWeights` of one model; see the module docstring."""

    def __init__(self) -> None:
        self._key: Hashable = None
        self._value: PreparedWeights | None = None

    def clear(self) -> None:
        """Forget the prepared tensors (they are rebuilt on the next forward)."""
        self._key = self._value = None

    def nbytes(self, model: nn.Module) -> int:
        """Bytes the prepared tensors hold beyond the model's own parameters and buffers."""
        if self._value is None:
            return 0
        own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
        seen: dict[int, int] = {}
        for t in _tensors(self._value):
            storage = t.untyped_storage()
            if storage.data_ptr() not in own:
                seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values())

    def get(self, model: GPEN, stack: ModulationStack) -> PreparedWeights:
        """The prepared tensors for the current weights, rebuilt only when they changed."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
            return prepare(model, stack)  # differentiable, never kept
        stack.matrices()  # re-stack first if needed: that replaces storages the key holds
        key = weights_key(model)
        if self._value is None or key != self._key:
            with torch.no_grad(), torch.inference_mode(False):  # usable outside inference mode too
                self._value = prepare(model, stack)
            self._key = key
        return self._value
