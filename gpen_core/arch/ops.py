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


def depthwise_fir(
    x: torch.Tensor, kernel: torch.Tensor, padding: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Convolve every channel with the same 2-D FIR ``kernel`` (official ``upfirdn2d``, up=down=1).

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(k, k)`` FIR taps as stored in the checkpoint (a true convolution kernel).
        padding: zeros added on every side.
        bias: ``(C,)`` added to the result (fused into the convolution), or None.

    Returns:
        ``(B, C, H + 2 * padding - k + 1, W + 2 * padding - k + 1)``.
    """
    channels = x.shape[1]
    # upfirdn2d convolves (flips the kernel); conv2d correlates.
    taps = kernel.flip(0, 1).to(x.dtype).expand(channels, 1, *kernel.shape)
    return F.conv2d(x, taps, None if bias is None else bias.to(x.dtype), padding=padding, groups=channels)


def upsample_fir(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Upsample by 2 with the FIR ``kernel`` (official ``Upsample``: upfirdn2d up=2, pad=(2, 1)).

    Zero insertion followed by a 4x4 filter is a stride-2 transposed convolution with
    the same taps and padding 1, which never touches the inserted zeros.

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(4, 4)`` taps, already scaled by 4 as in the checkpoint.

    Returns:
        ``(B, C, 2H, 2W)``.
    """
    channels = x.shape[1]
    taps = kernel.to(x.dtype).expand(channels, 1, *kernel.shape)
    return F.conv_transpose2d(x, taps, stride=2, padding=1, groups=channels)


def modulation_scales(
    squared_norms: torch.Tensor | None, fan_in: int, style: torch.Tensor, input_gain: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample input and output scales of a modulated convolution, in float32.

    The official layer builds ``w' = W * s / sqrt(fan_in)`` per sample and, when
    demodulating, multiplies by ``d = rsqrt(sum(w'^2) + 1e-8)`` per output channel. Both
    factors are returned instead, so the convolution itself can share ``W`` across the batch.

    Args:
        squared_norms: ``(C_out, C_in)`` float32, ``sum over the taps of W^2``; None when the
            layer does not demodulate.
        fan_in: ``C_in * k * k``.
        style: ``(B, C_in)`` modulation output.
        input_gain: gain of the incoming activation that was not applied to it.

    Returns:
        ``(input_scale (B, C_in), output_scale (B, C_out) or None)``; the input scale
        includes ``1 / sqrt(fan_in)`` and ``input_gain``.
    """
    style = style.float()
    fan_in_scale = 1.0 / math.sqrt(fan_in)
    demod = None
    if squared_norms is not None:
        demod = torch.rsqrt((fan_in_scale * fan_in_scale) * (style * style) @ squared_norms.t() + 1e-8)
    return style * (fan_in_scale * input_gain), demod


def modulated_conv2d(
    parts: list[torch.Tensor],
    weight: torch.Tensor,
    input_scale: torch.Tensor,
    output_scale: torch.Tensor | None,
    *,
    upsample: bool = False,
    blur_kernel: torch.Tensor | None = None,
    pad: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated (optionally demodulated) convolution of ``cat(parts, dim=1)``, plus ``bias``.

    The concatenation is never built: a convolution over ``cat(a, b)`` is one over ``a``
    plus one over ``b``. ``parts`` is emptied as it is consumed, so a caller that hands
    over its only references lets each part be freed as soon as it has been used.

    Args:
        parts: tensors ``(B, C_i, H, W)`` with ``sum(C_i) = C_in``; emptied.
        weight: ``(1, C_out, C_in, k, k)`` stored weight.
        input_scale: ``(B, C_in)`` float32, from :func:`modulation_scales`.
        output_scale: ``(B, C_out)`` float32 or None.
        upsample: official ``upsample=True``: transposed stride-2 convolution, then the
            upsampling blur (``blur_kernel``, padding 1).
        blur_kernel: ``(4, 4)`` taps, required when ``upsample``.
        pad: zero padding as officially ('same' size); False computes only the outputs whose
            whole receptive field lies in the input ("valid"), as tiled computation needs.
        bias: ``(C_out,)`` added after the (de)modulated convolution and blur, or None.

    Returns:
        ``(B, C_out, H, W)``, or ``(B, C_out, 2H, 2W)`` when upsampling; without ``pad``,
        ``(B, C_out, H - k + 1, W - k + 1)``, or ``(B, C_out, 2H - 2, 2W - 2)`` when upsampling.
    """
    if upsample and blur_kernel is None:
        raise ValueError("modulated_conv2d: upsample=True needs blur_kernel")
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
    out: torch.Tensor | None = None
    while parts:
        x = parts.pop()
        lo, hi = starts[len(parts)], starts[len(parts) + 1]
        w = weight[0, :, lo:hi]
        if fold:
            scale = input_scale[0, lo:hi].view(1, -1)
            if output_scale is not None:
                scale = output_scale[0].view(-1, 1) * scale
            w = w * scale.to(w.dtype)[:, :, None, None]
        else:
            x = x * input_scale[:, lo:hi].to(x.dtype)[:, :, None, None]
        w = w.to(x.dtype)
        if upsample:
            # conv_transpose2d takes (C_in, C_out, k, k); the official code does not flip it.
            # The stored layout (gpen_core.arch.layers.ModulatedConv) makes this channels-last.
            y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        else:
            fused = bias.to(x.dtype) if fold and bias is not None and out is None else None
            y = F.conv2d(x, w, fused, padding=w.shape[-1] // 2 if pad else 0)
        del x, w
        out = y if out is None else out.add_(y)
        del y
    assert out is not None
    if upsample:
        assert blur_kernel is not None  # checked at the top
        out = depthwise_fir(out, blur_kernel, padding=1 if pad else 0, bias=bias if fold else None)
    if not fold:
        if output_scale is not None:
            out.mul_(output_scale.to(out.dtype)[:, :, None, None])
        if bias is not None:
            out.add_(bias.to(out.dtype)[None, :, None, None])
    return out
