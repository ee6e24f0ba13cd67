"""Parameter holders with the official GPEN state-dict layout.

These modules only own parameters and buffers under the names the official
checkpoints use (``conv.weight``, ``conv.modulation.bias``, ``noise.weight``,
``activate.bias``, ``blur.kernel`` ...). The arithmetic lives in
:mod:`gpen_core.arch.ops` and is driven by :class:`gpen_core.arch.generator.GPEN`, which
can then schedule it level by level, tile by tile.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops import ACTIVATION_GAIN, NEGATIVE_SLOPE


def fir_kernel(upsample_factor: int = 1) -> torch.Tensor:
    """The official ``[1, 3, 3, 1]`` blur as a normalised ``(4, 4)`` kernel times ``factor**2``.

    Computed in Python numbers: every value, ``a * b / 64 * factor**2``, is exact in float32, the same as the
    official tensor arithmetic gives; and a GPEN built on the meta device (its shapes checked against a
    file's) runs no tensor op, which there would load torch's Python meta kernels (78 MB, 0.9 s).
    """
    taps = (1.0, 3.0, 3.0, 1.0)
    total = sum(taps) ** 2
    return torch.tensor([[a * b / total * upsample_factor**2 for b in taps] for a in taps])


class FIRKernel(nn.Module):
    """Holds a ``(4, 4)`` blur kernel buffer named ``kernel`` (official ``Blur``/``Upsample``)."""

    kernel: torch.Tensor

    def __init__(self, upsample_factor: int = 1) -> None:
        super().__init__()
        self.upsample_factor = upsample_factor
        self.register_buffer("kernel", fir_kernel(upsample_factor))


class Bias(nn.Module):
    """Holds the bias of the official ``FusedLeakyReLU`` (``bias`` of shape ``(C,)``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))


class NoiseScale(nn.Module):
    """Holds the official ``NoiseInjection`` scalar (``weight`` of shape ``(1,)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class EqualLinear(nn.Module):
    """Official ``EqualLinear``: ``y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul``, optional activation.

    Shape: ``(B, in_dim) -> (B, out_dim)``. Computed in float32 whatever the storage dtype:
    these layers are tiny and feed every modulation scale.
    """

    def __init__(
        self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor, *, input_gain: float = 1.0) -> torch.Tensor:
        """``(B, in_dim)`` -> ``(B, out_dim)`` float32; ``input_gain`` multiplies ``x`` (folded into the matmul).

        One ``addmm`` (scales as its alpha and beta, so the stored weight is used as is) and,
        with the activation, one in-place leaky ReLU whose gain is folded into both scales
        (``sqrt2 * leaky(z) = leaky(sqrt2 * z)``).
        """
        gain = ACTIVATION_GAIN if self.activation else 1.0
        out = torch.addmm(self.bias.float(), x.float(), self.weight.float().t(),
                          beta=self.lr_mul * gain, alpha=self.scale * input_gain * gain)
        return F.leaky_relu_(out, NEGATIVE_SLOPE) if self.activation else out


class PixelNorm(nn.Module):
    """Official ``PixelNorm``: ``x * rsqrt(mean(x^2, dim=1) + 1e-8)``, shape ``(B, D)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[1],), eps=1e-8)


def _weight_storage(c_out: int, c_in: int, k: int, *, transposed: bool) -> torch.Tensor:
    """Zeros of shape ``(1, C_out, C_in, k, k)`` laid out for channels-last convolutions.

    Plain layers store ``(C_out, kh, kw, C_in)``: the modulated weight built from any slice
    of input channels (``w[0, :, lo:hi] * scale``) comes out channels-last. Transposed
    (upsampling) layers store ``(C_in, kh, kw, C_out)``, so ``[0, :, lo:hi].transpose(0, 1)``
    is channels-last as it is. Values and state-dict keys are unaffected;
    ``load_state_dict`` and ``.to()`` keep these strides.
    """
    if transposed:
        return torch.zeros(1, c_in, k, k, c_out).permute(0, 4, 1, 2, 3)
    return torch.zeros(1, c_out, k, k, c_in).permute(0, 1, 4, 2, 3)


class ModulatedConv(nn.Module):
    """Official ``ModulatedConv2d`` parameters: ``weight (1, C_out, C_in, k, k)``, ``modulation``,
    and ``blur`` (upsampling layers only)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, style_dim: int, *, demodulate: bool, upsample: bool):
        super().__init__()
        self.weight = nn.Parameter(_weight_storage(c_out, c_in, kernel_size, transposed=upsample))
        self.fan_in = c_in * kernel_size * kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:  # registered before `modulation`, as officially: state-dict order
            self.blur = FIRKernel(upsample_factor=2)
        self.modulation = EqualLinear(style_dim, c_in, bias_init=1.0)

    def blur_kernel(self) -> torch.Tensor:
        """The ``(4, 4)`` upsampling blur kernel (upsampling layers only)."""
        return self.blur.kernel

    def squared_norms(self) -> torch.Tensor:
        """``(C_out, C_in)`` float32 sums of ``W^2`` over the taps (for demodulation).

        A dot product over the taps of the weight viewed in its storage order (see
        :func:`_weight_storage`): ~10x faster than reducing over the strided tap axes.
        """
        w = self.weight[0]
        first, last = (1, 0) if self.upsample else (0, 1)  # storage: (first, kh, kw, last)
        taps = w.permute(first, 2, 3, last).reshape(w.shape[first], -1, w.shape[last]).float()
        norms = torch.linalg.vecdot(taps, taps, dim=1)
        return norms.t() if self.upsample else norms


class StyledConv(nn.Module):
    """Official ``StyledConv`` (with ``isconcat``): modulated conv, encoder feature concatenated as
    "noise", fused bias + leaky ReLU over both halves (``2 * C_out`` channels)."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, *, upsample: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, 3, style_dim, demodulate=True, upsample=upsample)
        self.noise = NoiseScale()
        self.activate = Bias(2 * c_out)


class ToRGB(nn.Module):
    """Official ``ToRGB``: 1x1 modulated conv without demodulation, bias, upsampled skip."""

    def __init__(self, c_in: int, style_dim: int, *, upsample: bool) -> None:
        super().__init__()
        if upsample:
            self.upsample = FIRKernel(upsample_factor=2)
        self.conv = ModulatedConv(c_in, 3, 1, style_dim, demodulate=False, upsample=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def skip_kernel(self) -> torch.Tensor | None:
        """The ``(4, 4)`` kernel upsampling the RGB skip, or None (``to_rgb1``, no skip)."""
        return self.upsample.kernel if hasattr(self, "upsample") else None


class ConstantInput(nn.Module):
    """Official ``ConstantInput``: ``input`` of shape ``(1, C, 4, 4)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.zeros(1, channels, 4, 4))


class EqualConvWeight(nn.Module):
    """Official ``EqualConv2d`` without bias: ``weight (C_out, C_in, k, k)``, used at ``1 / sqrt(fan_in)``.

    Stored channels-last, the layout the convolutions use, so the stored weight is used as is.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__()
        weight = torch.zeros(c_out, c_in, kernel_size, kernel_size).contiguous(memory_format=torch.channels_last)
        self.weight = nn.Parameter(weight)
        self.scale = 1.0 / math.sqrt(c_in * kernel_size * kernel_size)


def encoder_layer(c_in: int, c_out: int, *, downsample: bool) -> nn.Sequential:
    """Official ``ConvLayer`` wrapped as ``ecdN``: keys ``0.0.weight, 0.1.bias`` (1x1, first stage)
    or ``0.0.kernel, 0.1.weight, 0.2.bias`` (blur + 3x3 stride 2)."""
    if downsample:
        layer = nn.Sequential(FIRKernel(1), EqualConvWeight(c_in, c_out, 3), Bias(c_out))
    else:
        layer = nn.Sequential(EqualConvWeight(c_in, c_out, 1), Bias(c_out))
    return nn.Sequential(layer)
