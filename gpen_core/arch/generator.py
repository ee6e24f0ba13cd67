"""The GPEN generator (official ``FullGenerator``): parameters, encoder, latent, plain forward.

State-dict compatible with the official checkpoints (GPEN-BFR-256/512/1024/2048, and
the colorization, inpainting and Seg2face releases that share their shapes).

Data flow (S = ``config.size``, features are stored without the activation gain):

* ``encode_stage(i, x)``: stage 0 maps the image ``(B, 3, S, S)`` to ``(B, C_S, S, S)``;
  stage ``i`` halves the resolution, down to ``(B, C_4, 4, 4)``.
* ``latent(f4)``: fully connected layer over the whole 4x4 map, then the mapping
  network, giving ``w (B, style_dim)``; this is why the image itself cannot be tiled.
* ``decoder_styles(w)``: the per-layer modulation scales (:mod:`gpen_core.arch.styles`).
* the decoder levels, 4x4 then 8 .. S (:mod:`gpen_core.arch.levels`, the one copy of
  their math): whole here, tile by tile in :mod:`gpen_core.arch.tiled`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_choice, check_flag
from .config import GPENConfig
from .graphs import COMPILE_MODES, CudaGraphs, graph_refusal
from .layers import ConstantInput, EqualLinear, ModulatedConv, PixelNorm, StyledConv, ToRGB, encoder_layer
from .levels import DecoderState, LevelRegions, decode_level, decode_start
from .ops import ACTIVATION_GAIN, NEGATIVE_SLOPE, depthwise_fir
from .prepared import PreparedWeights, WeightCache, weights_key
from .regions import Crop, Region
from .styles import DecoderStyles, ModulationStack, decoder_styles
from .tiled import TiledRun, check_tiling, effective_tile


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

    def styled_convs(self) -> list[StyledConv]:
        """``convs`` typed: per level, the upsampling conv then the 3x3 conv."""
        return [cast(StyledConv, m) for m in self.convs]

    def rgb_layers(self) -> list[ToRGB]:
        """``to_rgbs`` typed, one per level from 8x8."""
        return [cast(ToRGB, m) for m in self.to_rgbs]

    def modulated_layers(self) -> list[tuple[ModulatedConv, float]]:
        """Every modulated conv with the gain its input lacks, in decoder order: ``conv1``, ``to_rgb1``,
        then per level the upsampling conv, the conv and the to-RGB layer."""
        convs, rgbs = self.styled_convs(), self.rgb_layers()
        layers = [(self.conv1.conv, 1.0), (self.to_rgb1.conv, ACTIVATION_GAIN)]
        for j, rgb in enumerate(rgbs):  # every decoder input but the constant lacks the activation gain
            layers += [(convs[2 * j].conv, ACTIVATION_GAIN), (convs[2 * j + 1].conv, ACTIVATION_GAIN),
                       (rgb.conv, ACTIVATION_GAIN)]
        return layers


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
        self.modulation_stack = ModulationStack(self.generator.modulated_layers())
        self.weight_cache = WeightCache()
        self.graphs: CudaGraphs | None = None
        self.register_load_state_dict_post_hook(lambda module, incompatible: module.weight_cache.clear())

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> GPEN:
        # .to(), .half(), .cuda() ... replace the parameters: stack the modulations again, forget
        # what was derived from the old weights.
        super()._apply(fn, recurse)
        self.modulation_stack.restack()
        self.weight_cache.clear()
        if self.graphs is not None:
            self.graphs.clear()
        return self

    precision: str = "fp32"
    """The precision asked for at load time (``auto`` may resolve to different dtypes)."""
    fallback_weights: dict[str, torch.Tensor] | None = None
    """float32 CPU copies of the tensors held in half precision (kept under precision ``auto``, for
    :func:`gpen_core.loading.safer_copy`); None otherwise."""

    def set_dtype(self, dtype: torch.dtype) -> GPEN:
        """Run convolutions in ``dtype``; the latent and modulation layers stay float32.

        Those small layers feed every modulation scale, so keeping them exact costs
        almost no memory and keeps half-precision runs close to float32. They are never
        converted, so their values stay exactly the stored ones.
        """
        for module in self.modules():
            if isinstance(module, EqualLinear):
                module._apply(lambda t: t.float(), recurse=False)  # a no-op for float32
            elif module is not self:
                module._apply(lambda t: t.to(dtype) if t.is_floating_point() else t, recurse=False)
        self.modulation_stack.restack()
        self.weight_cache.clear()
        if self.graphs is not None:
            self.graphs.clear()
        return self

    @property
    def compile_mode(self) -> str:
        """``"off"`` or ``"cuda_graphs"`` (see :meth:`set_compile`)."""
        return "off" if self.graphs is None else "cuda_graphs"

    def set_compile(self, mode: str) -> GPEN:
        """``"cuda_graphs"``: plain forwards on CUDA replay one captured graph per input shape
        (:mod:`gpen_core.arch.graphs`; what a graph cannot serve runs eagerly, the reason logged);
        ``"off"``: always eager. The device is checked by :func:`gpen_core.loading.load_model`."""
        check_choice(mode, COMPILE_MODES, "compile")
        if mode == "off":
            self.graphs = None
        elif self.graphs is None:
            self.graphs = CudaGraphs(self._forward_plain, lambda: weights_key(self))
        return self

    def prepared(self) -> PreparedWeights:
        """Tensors derived from the weights for the current dtype, cached (:mod:`gpen_core.arch.prepared`)."""
        return self.weight_cache.get(self, self.modulation_stack)

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
    def encode_stage(self, index: int, x: torch.Tensor, *, pad: bool = True,
                     prepared: PreparedWeights | None = None) -> torch.Tensor:
        """Encoder stage ``index``.

        Args:
            index: 0 (1x1 conv on the image) to ``num_stages - 1`` (output 4x4).
            x: stage 0: the image ``(B, 3, S, S)``; else the previous stage's output.
            pad: zero padding as officially; False computes only the outputs whose receptive
                field lies inside ``x`` (``(h - 4) // 2`` rows from ``h``), for crops.
            prepared: :meth:`prepared`, when the caller has it at hand.

        Returns:
            ``(B, C_r, r, r)`` with ``r = S / 2**index``: ``leaky_relu(conv + b)``, i.e. the
            official feature divided by ``sqrt(2)``.
        """
        stage = (prepared or self.prepared()).encoder[index]
        if stage.blur_taps is not None:
            x = depthwise_fir(x, stage.blur_taps, padding=2 if pad else 0)
        out = F.conv2d(x, stage.weight, stage.bias, stride=stage.stride)  # bias fused into the conv
        return F.leaky_relu_(out, NEGATIVE_SLOPE)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """All encoder features, ``[f_S, f_S/2, ..., f_4]`` (see :meth:`encode_stage`)."""
        prepared = self.prepared()
        features = []
        x = image
        for i in range(self.num_stages):
            x = self.encode_stage(i, x, prepared=prepared)
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
        """``w (B, style_dim)`` float32 from the 4x4 feature ``(B, C_4, 4, 4)`` (which lacks the gain)."""
        flat = f4.float().reshape(f4.shape[0], -1)
        return self.generator.style(self.final_linear[0](flat, input_gain=ACTIVATION_GAIN))

    def decoder_styles(self, w: torch.Tensor) -> DecoderStyles:
        """Modulation scales of every decoder layer for the latent ``w (B, style_dim)``."""
        return decoder_styles(self.modulation_stack, self.prepared().styles, w)

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

        Raises:
            TypeError: ``tile_size`` / ``overlap`` not an int or None, ``recompute`` /
                ``grad_checkpoint`` not a bool (``tile_size="64"`` is refused, never compared).
            ValueError: ``tile_size`` below 16, ``overlap`` negative, or ``overlap`` without tiling.
        """
        check_tiling(tile_size, overlap)
        check_flag(recompute, "recompute", error=TypeError, show_type=True)
        check_flag(grad_checkpoint, "grad_checkpoint", error=TypeError, show_type=True)
        tiled = tile_size is not None or recompute
        if self.graphs is not None:
            reason = graph_refusal(image, tiled=tiled, grad_checkpoint=grad_checkpoint, progress=progress is not None,
                                   grad_enabled=torch.is_grad_enabled())
            if reason is None and overlap is None:
                return self.graphs(image)
            self.graphs.note_eager(reason or "overlap given")
        if tiled:
            x = self.prepare_input(image, channels_last=False)
            return TiledRun(self, x, effective_tile(tile_size, self.config.size), overlap, recompute, progress).run()
        if overlap is not None:
            raise ValueError("overlap only applies to a tiled forward; give tile_size too")
        return self._forward_plain(image, grad_checkpoint=grad_checkpoint)

    def _forward_plain(self, image: torch.Tensor, *, grad_checkpoint: bool = False) -> torch.Tensor:
        """The whole-image forward (see :meth:`forward`)."""
        prepared = self.prepared()
        x = self.prepare_input(image)
        features = self.encode(x)
        del x
        styles = self.decoder_styles(self.latent(features[-1]))
        state = decode_start(prepared.const, prepared.start_conv, prepared.start_rgb, features.pop(), styles)
        use_checkpoint = grad_checkpoint and torch.is_grad_enabled()
        for level in range(1, self.num_levels + 1):
            r = 4 * 2**level
            feature = Crop(features.pop(), Region.whole(r))
            if use_checkpoint:
                state = self._checkpointed_level(prepared, level, state, feature, styles)
            else:
                state = decode_level(prepared.levels[level - 1], styles.levels[level - 1], state, feature,
                                     LevelRegions.whole(r), r, consume_feature=True)
            del feature
        return state.rgb.tensor

    def _checkpointed_level(
        self, prepared: PreparedWeights, level: int, state: DecoderState, feature: Crop, styles: DecoderStyles
    ) -> DecoderState:
        """:func:`~gpen_core.arch.levels.decode_level` (whole) under non-reentrant activation checkpointing."""
        from torch.utils.checkpoint import checkpoint

        r = 4 * 2**level
        whole, half = Region.whole(r), Region.whole(r // 2)

        def run(a: torch.Tensor, b: torch.Tensor, rgb: torch.Tensor, f: torch.Tensor) -> Any:
            # owned=False: the inputs are saved for the recomputation during backward.
            state = DecoderState(Crop(a, half), Crop(b, half), Crop(rgb, half), owned=False)
            out = decode_level(prepared.levels[level - 1], styles.levels[level - 1], state, Crop(f, whole),
                               LevelRegions.whole(r), r)
            assert out.a is not None and out.b is not None
            return out.a.tensor, out.b.tensor, out.rgb.tensor

        a, b = state.release()
        out = checkpoint(run, a.tensor, b.tensor, state.rgb.tensor, feature.tensor, use_reentrant=False)
        return DecoderState(Crop(out[0], whole), Crop(out[1], whole), Crop(out[2], whole))
