"""Tensor functions of the GPEN network: blurs, resampling and modulated convolutions.

Every function here computes what the official GPEN code computes (yangxy/GPEN,
``face_model/gpen_model.py`` with the pure-PyTorch ``upfirdn2d_native`` and
``fused_leaky_relu`` paths), rewritten for speed:

* FIR filters run as depthwise convolutions, never on zero-inserted tensors.
* A modulated convolution is one shared-weight convolution: the style scales the
  input channels and the demodulation scales the output channels
  (``conv(x * s, w) * d``), which batches and suits channels-last kernels.
* The activation gain ``sqrt(2)`` is folded into the weights of whatever consumes
  an activation, so activations are stored as plain ``leaky_relu(x + b, 0.2)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ACTIVATION_GAIN = math.sqrt(2.0)
"""Gain of the official fused leaky ReLU (``sqrt(2) * leaky_relu(x + b, 0.2)``)."""

NEGATIVE_SLOPE = 0.2


def fir_taps(kernel: torch.Tensor, channels: int, dtype: torch.dtype, *, flip: bool) -> torch.Tensor:
    """Depthwise convolution weights ``(channels, 1, k, k)`` for a ``(k, k)`` FIR kernel.

    Args:
        kernel: taps as stored in the checkpoint (a true convolution kernel).
        flip: True for :func:`depthwise_fir` (``upfirdn2d`` convolves, ``conv2d`` correlates);
            False for :func:`upsample_fir` (a transposed convolution flips by itself).
    """
    taps = kernel.flip(0, 1) if flip else kernel
    return taps.to(dtype).expand(channels, 1, *kernel.shape).contiguous()


def depthwise_fir(
    x: torch.Tensor, taps: torch.Tensor, padding: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Convolve every channel with the same FIR filter (official ``upfirdn2d``, up=down=1).

    Args:
        x: ``(B, C, H, W)``.
        taps: ``(C, 1, k, k)`` from :func:`fir_taps` with ``flip=True``, in ``x``'s dtype.
        padding: zeros added on every side.
        bias: ``(C,)`` added to the result (fused into the convolution), or None.

    Returns:
        ``(B, C, H + 2 * padding - k + 1, W + 2 * padding - k + 1)``.
    """
    return F.conv2d(x, taps, bias, padding=padding, groups=x.shape[1])


def upsample_fir(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Upsample by 2 with a FIR filter (official ``Upsample``: upfirdn2d up=2, pad=(2, 1)).

    Zero insertion followed by a 4x4 filter is a stride-2 transposed convolution with
    the same taps and padding 1, which never touches the inserted zeros.

    Args:
        x: ``(B, C, H, W)``.
        taps: ``(C, 1, 4, 4)`` from :func:`fir_taps` with ``flip=False`` (kernel scaled by 4
            as in the checkpoint), in ``x``'s dtype.

    Returns:
        ``(B, C, 2H, 2W)``.
    """
    return F.conv_transpose2d(x, taps, stride=2, padding=1, groups=x.shape[1])


def modulated_conv2d(
    parts: list[torch.Tensor],
    weight: torch.Tensor,
    input_scale: torch.Tensor,
    output_scale: torch.Tensor | None,
    *,
    upsample: bool = False,
    blur_taps: torch.Tensor | None = None,
    pad: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated (optionally demodulated) convolution of ``cat(parts, dim=1)``, plus ``bias``.

    The official layer builds ``w' = W * s / sqrt(fan_in)`` per sample and, when
    demodulating, multiplies it by ``d = rsqrt(sum(w'^2) + 1e-8)`` per output channel
    (see :mod:`gpen_core.arch.styles` for ``s`` and ``d``). Here the weight is shared:
    the input is scaled by ``s`` and the output by ``d`` -- or, for one sample, both
    scales fold into the weight.

    The concatenation is never built: a convolution over ``cat(a, b)`` is one over ``a``
    plus one over ``b``. ``parts`` is emptied as it is consumed, so a caller that hands
    over its only references lets each part be freed as soon as it has been used.

    Args:
        parts: tensors ``(B, C_i, H, W)`` with ``sum(C_i) = C_in``; emptied.
        weight: ``(1, C_out, C_in, k, k)`` stored weight, in the parts' dtype.
        input_scale: ``(B, C_in)`` float32, including ``1 / sqrt(fan_in)`` and the gain the
            input lacks.
        output_scale: ``(B, C_out)`` float32 demodulation, or None.
        upsample: official ``upsample=True``: transposed stride-2 convolution, then the
            upsampling blur (``blur_taps``, padding 1).
        blur_taps: ``(C_out, 1, 4, 4)`` flipped taps (:func:`gpen_core.arch.ops.fir_taps`),
            required when ``upsample``.
        pad: zero padding as officially ('same' size); False computes only the outputs whose
            whole receptive field lies in the input ("valid"), as tiled computation needs.
        bias: ``(C_out,)`` in the parts' dtype, added after the (de)modulated convolution
            and blur, or None.

    Returns:
        ``(B, C_out, H, W)``, or ``(B, C_out, 2H, 2W)`` when upsampling; without ``pad``,
        ``(B, C_out, H - k + 1, W - k + 1)``, or ``(B, C_out, 2H - 2, 2W - 2)`` when upsampling.
    """
    if upsample and blur_taps is None:
        raise ValueError("modulated_conv2d: upsample=True needs blur_taps")
    starts = [0]
    for x in parts:
        starts.append(starts[-1] + x.shape[1])
    if starts[-1] != weight.shape[2]:
        raise ValueError(f"inputs have {starts[-1]} channels, the weight expects {weight.shape[2]}")
    batch = parts[0].shape[0]
    # With one sample both scales can fold into the weight: one pass over the weight instead
    # of a pass over the input and one over the output. Worth it where the weight is the
    # smaller tensor (high resolutions); at low resolutions the feature maps are smaller.
    fold = batch == 1 and weight[0].numel() <= sum(x.numel() for x in parts)
    scale: torch.Tensor | None = None
    if fold:  # (C_out, C_in): one small outer product, sliced per part
        scale = input_scale if output_scale is None else output_scale.view(-1, 1) * input_scale
        scale = scale.to(weight.dtype)[:, :, None, None]
    out: torch.Tensor | None = None
    while parts:
        x = parts.pop()
        lo, hi = starts[len(parts)], starts[len(parts) + 1]
        w = weight[0, :, lo:hi]
        if scale is not None:
            w = w * scale[:, lo:hi]
        else:
            x = x * input_scale[:, lo:hi].to(x.dtype)[:, :, None, None]
        if upsample:
            # conv_transpose2d takes (C_in, C_out, k, k); the official code does not flip it.
            # The stored layout (gpen_core.arch.layers.ModulatedConv) makes this channels-last.
            y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        else:
            fused = bias if fold and bias is not None and out is None else None
            y = F.conv2d(x, w, fused, padding=w.shape[-1] // 2 if pad else 0)
        del x, w
        out = y if out is None else out.add_(y)
        del y
    assert out is not None
    if blur_taps is not None and upsample:
        out = depthwise_fir(out, blur_taps, padding=1 if pad else 0, bias=bias if fold else None)
    if not fold:
        if output_scale is not None and bias is not None:  # one pass: out * d + b, in place unless autograd records
            in_place = out if not (torch.is_grad_enabled() and out.requires_grad) else None
            d = output_scale.to(out.dtype)[:, :, None, None]
            out = torch.addcmul(bias[None, :, None, None], out, d, out=in_place)
        elif output_scale is not None:
            out.mul_(output_scale.to(out.dtype)[:, :, None, None])
        elif bias is not None:
            out.add_(bias[None, :, None, None])
    return out
