# mypy: disable-error-code="union-attr, operator, arg-type"
# TODO(arch): type the layer access (nn.ModuleList items); then drop this line.
"""The GPEN generator (official ``FullGenerator``), as encoder stages, latent and decoder levels.

State-dict compatible with the official checkpoints (GPEN-BFR-256/512/1024/2048, and
the colorization, inpainting and Seg2face releases that share their shapes).

Data flow (S = ``config.size``, features are stored without the activation gain):

* ``encode_stage(i, x)``: stage 0 maps the image ``(B, 3, S, S)`` to ``(B, C_S, S, S)``;
  stage ``i`` halves the resolution, down to ``(B, C_4, 4, 4)``.
* ``latent(f4)``: fully connected layer over the whole 4x4 map, then the mapping
  network, giving ``w (B, style_dim)``; this is why the image itself cannot be tiled.
* ``decoder_styles(w)``: the per-layer modulation scales, computed once.
* ``decode_start`` at 4x4, then ``decode_level(level, h, rgb, feature)`` for 8 .. S: each
  level is a function of the previous level's features ``h``, its RGB skip, the
  encoder feature of the same resolution and the styles.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPENConfig
from .layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB, encoder_layer
from .ops import (
    ACTIVATION_GAIN,
    NEGATIVE_SLOPE,
    depthwise_fir,
    modulated_conv2d,
    upsample_fir,
)

Scales = tuple[torch.Tensor, "torch.Tensor | None"]


@dataclass
class LevelStyles:
    """Modulation scales of one decoder level: upsampling conv, conv, to-RGB."""

    up: Scales
    conv: Scales
    rgb: Scales


@dataclass
class DecoderState:
    """What one decoder level hands to the next, at resolution ``r``.

    Attributes:
        a: ``(B, C_r, r, r)`` activated convolution half of the official concatenated feature.
        b: ``(B, C_r, r, r)`` activated encoder ("noise") half.
        rgb: ``(B, 3, r, r)`` float32 RGB skip.

    Activations are stored without the ``sqrt(2)`` gain, which the consumers fold in.
    """

    a: torch.Tensor | None
    b: torch.Tensor | None
    rgb: torch.Tensor

    def release(self) -> list[torch.Tensor]:
        """``[a, b]``, dropping this object's references so the consumer can free them."""
        if self.a is None or self.b is None:
            raise RuntimeError("DecoderState was already released")
        parts = [self.a, self.b]
        self.a = self.b = None
        return parts


@dataclass
class DecoderStyles:
    """Modulation scales of every decoder layer for one batch (float32, shapes ``(B, C)``)."""

    start_conv: Scales
    start_rgb: Scales
    levels: list[LevelStyles]


class StyleDecoder(nn.Module):
    """Official ``Generator`` parameters: mapping network ``style``, ``input``, ``conv1``,
    ``to_rgb1``, ``convs`` and ``to_rgbs`` (keys under ``generator.``)."""

    def __init__(self, config: GPENConfig) -> None:
        super().__init__()
        dim = config.style_dim
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(dim, dim, lr_mul=0.01, activation=True) for _ in range(config.n_mlp)]
        )
        c4 = config.channels(4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, dim, upsample=False)
        self.to_rgb1 = ToRGB(2 * c4, dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        c_in = c4
        for r in config.resolutions[1:]:
            c_out = config.channels(r)
            self.convs.append(StyledConv(2 * c_in, c_out, dim, upsample=True))
            self.convs.append(StyledConv(2 * c_out, c_out, dim, upsample=False))
            self.to_rgbs.append(ToRGB(2 * c_out, dim, upsample=True))
            c_in = c_out


class GPEN(nn.Module):
    """GPEN face-restoration generator, equal to the official ``FullGenerator`` forward.

    Args:
        config: hyper-parameters; see :func:`gpen_core.arch.config.config_from_state_dict`.

    Shape:
        ``forward``: ``(B, 3, S, S)`` RGB in ``config.input_range`` -> ``(B, 3, S, S)`` in the
        same range, unclamped (the official first output). Runs in the dtype of the
        parameters (float32, float16 or bfloat16); the latent and modulation math is float32.
    """

    def __init__(self, config: GPENConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = StyleDecoder(config)
        s = config.size
        self.ecd0 = encoder_layer(3, config.channels(s), downsample=False)
        for i, r in enumerate(reversed(config.resolutions[:-1]), start=1):
            self.add_module(f"ecd{i}", encoder_layer(config.channels(2 * r), config.channels(r), downsample=True))
        self.final_linear = nn.Sequential(EqualLinear(config.channels(4) * 16, config.style_dim, activation=True))

    precision: str = "fp32"
    """The precision asked for at load time (``auto`` may resolve to different dtypes)."""
    fallback_weights: dict[str, torch.Tensor] | None = None
    """float32 CPU copies of the tensors held in half precision (kept under precision ``auto``, for
    :func:`gpen_core.loading.safer_copy`); None otherwise."""

    def set_dtype(self, dtype: torch.dtype) -> GPEN:
        """Run convolutions in ``dtype``; the latent and modulation layers stay float32.

        Those small layers feed every modulation scale, so keeping them exact costs
        almost no memory and keeps half-precision runs close to float32.
        """
        self.to(dtype=dtype)
        for module in self.modules():
            if isinstance(module, EqualLinear):
                module.float()
        return self

    # ------------------------------------------------------------------ properties
    @property
    def num_stages(self) -> int:
        """Encoder stages; stage ``i`` outputs resolution ``S / 2**i``."""
        return self.config.log_size - 1

    @property
    def num_levels(self) -> int:
        """Decoder levels after the 4x4 start; level ``j`` (1-based) outputs ``4 * 2**j``."""
        return self.config.log_size - 2

    @property
    def dtype(self) -> torch.dtype:
        return self.generator.input.input.dtype

    @property
    def device(self) -> torch.device:
        return self.generator.input.input.device

    # ------------------------------------------------------------------ encoder
    def encode_stage(self, index: int, x: torch.Tensor, *, pad: bool = True) -> torch.Tensor:
        """Encoder stage ``index``.

        Args:
            index: 0 (1x1 conv on the image) to ``num_stages - 1`` (output 4x4).
            x: stage 0: the image ``(B, 3, S, S)``; else the previous stage's output.
            pad: zero padding as officially; False computes only the outputs whose receptive
                field lies inside ``x`` (``(h - 4) // 2`` rows from ``h``), for crops.

        Returns:
            ``(B, C_r, r, r)`` with ``r = S / 2**index``: ``leaky_relu(conv + b)``, i.e. the
            official feature divided by ``sqrt(2)``.
        """
        layer = getattr(self, f"ecd{index}")[0]
        if index == 0:
            conv, bias = layer[0], layer[1]
            weight = conv.weight * conv.scale
            stride = 1
        else:
            blur, conv, bias = layer[0], layer[1], layer[2]
            weight = conv.weight * (conv.scale * ACTIVATION_GAIN)
            x = depthwise_fir(x, blur.kernel, padding=2 if pad else 0)
            stride = 2
        weight = weight.to(x.dtype).contiguous(memory_format=torch.channels_last)
        out = F.conv2d(x, weight, bias.bias.to(x.dtype), stride=stride)  # bias fused into the conv
        return F.leaky_relu_(out, NEGATIVE_SLOPE)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """All encoder features, ``[f_S, f_S/2, ..., f_4]`` (see :meth:`encode_stage`)."""
        features = []
        x = image
        for i in range(self.num_stages):
            x = self.encode_stage(i, x)
            features.append(x)
        return features

    def prepare_input(self, image: torch.Tensor, *, channels_last: bool = True) -> torch.Tensor:
        """Check ``(B, 3, S, S)`` and move the image to the model's device and dtype (and channels-last
        layout, unless the caller converts crops itself: the tiled forward never copies the whole image)."""
        s = self.config.size
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] != s or image.shape[3] != s:
            raise ValueError(f"GPEN-{s} expects an image of shape (B, 3, {s}, {s}); got {tuple(image.shape)}")
        image = image.to(self.device, self.dtype)
        return image.contiguous(memory_format=torch.channels_last) if channels_last else image

    # ------------------------------------------------------------------ latent
    def latent(self, f4: torch.Tensor) -> torch.Tensor:
        """``w (B, style_dim)`` float32 from the 4x4 feature ``(B, C_4, 4, 4)``."""
        flat = f4.float().reshape(f4.shape[0], -1) * ACTIVATION_GAIN
        return self.generator.style(self.final_linear(flat))

    def decoder_styles(self, w: torch.Tensor) -> DecoderStyles:
        """Modulation scales of every decoder layer for the latent ``w (B, style_dim)``."""
        g = self.generator
        gain = ACTIVATION_GAIN  # every decoder input but the constant lacks the activation gain
        levels = [
            LevelStyles(
                up=g.convs[2 * j].conv.scales(w, gain),
                conv=g.convs[2 * j + 1].conv.scales(w, gain),
                rgb=g.to_rgbs[j].conv.scales(w, gain),
            )
            for j in range(self.num_levels)
        ]
        return DecoderStyles(g.conv1.conv.scales(w, 1.0), g.to_rgb1.conv.scales(w, gain), levels)

    # ------------------------------------------------------------------ decoder
    @staticmethod
    def _noise_half(layer: StyledConv, feature: torch.Tensor, *, overwrite: bool = False) -> torch.Tensor:
        """Second half of a styled conv's output: ``leaky_relu(noise_w * sqrt2 * feature + b[C:])``."""
        c = feature.shape[1]
        bias = layer.activate.bias[c:].to(feature.dtype).view(1, -1, 1, 1)
        scale = (layer.noise.weight * ACTIVATION_GAIN).to(feature.dtype)
        out = feature if overwrite else None  # at the feature's last use, reuse its memory
        return F.leaky_relu_(torch.addcmul(bias, feature, scale, out=out), NEGATIVE_SLOPE)  # one pass: b + w * f

    @staticmethod
    def _styled_conv(
        layer: StyledConv, parts: list[torch.Tensor], feature: torch.Tensor, scales: Scales,
        *, last_use: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Official ``StyledConv`` with ``isconcat``: ``leaky_relu(cat(conv(x), noise) + b)``.

        Args:
            parts: the input as channel groups, emptied (see :func:`modulated_conv2d`).
            feature: encoder feature ``(B, C_out, r, r)`` (the official "noise").
            last_use: ``feature`` is not needed afterwards: its memory holds the noise half.

        Returns:
            The two halves of the official ``(B, 2 C_out, r, r)`` output, never concatenated.
        """
        conv = layer.conv
        c = conv.weight.shape[1]
        y = modulated_conv2d(
            parts, conv.weight, scales[0], scales[1], upsample=conv.upsample,
            blur_kernel=conv.blur.kernel if conv.upsample else None, bias=layer.activate.bias[:c],
        )
        if y.shape[-2:] != feature.shape[-2:]:
            raise ValueError(f"decoder features {tuple(y.shape)} and encoder feature {tuple(feature.shape)} differ")
        return F.leaky_relu_(y, NEGATIVE_SLOPE), GPEN._noise_half(layer, feature, overwrite=last_use)

    @staticmethod
    def _to_rgb(
        layer: ToRGB, a: torch.Tensor, b: torch.Tensor, scales: Scales, skip: torch.Tensor | None
    ) -> torch.Tensor:
        """RGB of one level, float32 ``(B, 3, r, r)``, plus the upsampled ``skip`` when given."""
        rgb = modulated_conv2d([a, b], layer.conv.weight, scales[0], scales[1], bias=layer.bias.view(3)).float()
        if skip is not None:
            rgb.add_(upsample_fir(skip, layer.upsample.kernel.float()))
        return rgb

    def decode_start(self, f4: torch.Tensor, styles: DecoderStyles) -> DecoderState:
        """Level 0 (4x4): constant input, ``conv1`` with the encoder feature ``f4``, ``to_rgb1``."""
        g = self.generator
        const = g.input.input.to(f4.dtype).expand(f4.shape[0], -1, -1, -1).contiguous(memory_format=torch.channels_last)
        a, b = self._styled_conv(g.conv1, [const], f4, styles.start_conv)
        return DecoderState(a, b, self._to_rgb(g.to_rgb1, a, b, styles.start_rgb, None))

    def decode_level(
        self, level: int, state: DecoderState, feature: torch.Tensor, styles: DecoderStyles,
        *, consume_feature: bool = False,
    ) -> DecoderState:
        """Decoder level ``level`` (1 .. ``num_levels``), output resolution ``r = 4 * 2**level``.

        Args:
            state: the previous level's output (resolution ``r / 2``); released here, so
                its tensors are freed as soon as they have been used.
            feature: encoder feature ``(B, C_r, r, r)``.
            styles: from :meth:`decoder_styles`.
            consume_feature: the caller will not use ``feature`` again (it is overwritten).

        Returns:
            This level's :class:`DecoderState`.
        """
        g = self.generator
        s = styles.levels[level - 1]
        up, conv = g.convs[2 * level - 2], g.convs[2 * level - 1]
        skip = state.rgb
        # No local names for the upsampling conv's output: the 3x3 conv frees each half
        # as soon as it has used it.
        # The feature's memory is reused at its last use, unless autograd may need it.
        last_use = consume_feature and not torch.is_grad_enabled()
        a, b = self._styled_conv(conv, list(self._styled_conv(up, state.release(), feature, s.up)), feature, s.conv,
                                 last_use=last_use)
        return DecoderState(a, b, self._to_rgb(g.to_rgbs[level - 1], a, b, s.rgb, skip))

    # ------------------------------------------------------------------ whole forward
    def forward(
        self,
        image: torch.Tensor,
        *,
        tile_size: int | None = None,
        overlap: int | None = None,
        recompute: bool = False,
        grad_checkpoint: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Enhance ``image (B, 3, S, S)``; returns ``(B, 3, S, S)`` float32, unclamped.

        Args:
            tile_size: compute the decoder levels from ``tile_size`` up tile by tile
                (``tile_size x tile_size`` output tiles, exact halos); None: whole image.
            overlap: None (default): exact, equal to the untiled forward. An int limits
                every crop to the tile plus ``overlap`` pixels per level and blends
                overlapping tiles: faster, inexact near tile edges.
            recompute: keep only low-resolution encoder features and recompute the others
                per tile, so that peak memory follows the tile size, not the image size.
                Without ``tile_size``, tiles of half the image are used (crops are what
                make recomputation pay: the top level is where the memory peaks).
            grad_checkpoint: with gradients enabled, wrap every decoder level in non-reentrant
                ``torch.utils.checkpoint`` so its activations are recomputed during backward
                instead of kept (fine-tuning, latent optimisation). No effect without
                gradients, where nothing is kept for backward anyway.
            progress: ``progress(done, total)`` after each tile (may raise to interrupt).
        """
        if tile_size is not None or recompute:
            from .tiled import TiledRun, effective_tile

            x = self.prepare_input(image, channels_last=False)
            return TiledRun(self, x, effective_tile(tile_size, self.config.size), overlap, recompute, progress).run()
        if overlap is not None:
            raise ValueError("overlap only applies to a tiled forward; give tile_size too")
        x = self.prepare_input(image)
        features = self.encode(x)
        del x
        styles = self.decoder_styles(self.latent(features[-1]))
        state = self.decode_start(features.pop(), styles)
        use_checkpoint = grad_checkpoint and torch.is_grad_enabled()
        for level in range(1, self.num_levels + 1):
            if use_checkpoint:
                state = self._checkpointed_level(level, state, features.pop(), styles)
            else:
                state = self.decode_level(level, state, features.pop(), styles, consume_feature=True)
        return state.rgb

    def _checkpointed_level(
        self, level: int, state: DecoderState, feature: torch.Tensor, styles: DecoderStyles
    ) -> DecoderState:
        """:meth:`decode_level` under non-reentrant activation checkpointing."""
        from torch.utils.checkpoint import checkpoint

        def run(a: torch.Tensor, b: torch.Tensor, rgb: torch.Tensor, f: torch.Tensor):
            out = self.decode_level(level, DecoderState(a, b, rgb), f, styles)
            return out.a, out.b, out.rgb

        a, b = state.release()
        return DecoderState(*checkpoint(run, a, b, state.rgb, feature, use_reentrant=False))
