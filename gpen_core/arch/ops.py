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


def records_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an op on ``tensors`` (in-place and ``out=`` writes must then be avoided)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


_MKLDNN_ADD = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise_", None)


def _accumulates_in_place(out: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether ``out += conv(x, w)`` can run as oneDNN's in-place "conv + add" (CPU, float32/bfloat16).

    One kernel instead of a convolution into a fresh tensor plus an add: no new buffer (on the
    CPU, a fresh buffer of this size costs page faults) and one pass less over ``out``. The
    fused op computes the same sum as ``out.add_(conv(x, w))``.
    """
    return (
        _MKLDNN_ADD is not None and out.device.type == "cpu" and torch.backends.mkldnn.is_available()
        and out.dtype in (torch.float32, torch.bfloat16) and x.dtype == out.dtype == w.dtype
        and not records_grad(out, x, w)
    )


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
    consume: bool = False,
    spare: list[torch.Tensor] | None = None,
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
        parts: tensors ``(B, C_i, H, W)`` with ``sum(C_i) = C_in``, channels-last; emptied.
        weight: ``(1, C_out, C_in, k, k)`` stored weight, in the parts' dtype.
        input_scale: ``(B, C_in)`` float32, including ``1 / sqrt(fan_in)`` and the gain the
            input lacks.
        output_scale: ``(B, C_out)`` float32 demodulation, or None.
        upsample: official ``upsample=True``: transposed stride-2 convolution, then the
            upsampling blur (``blur_taps``, padding 1).
        blur_taps: ``(C_out, 1, 4, 4)`` flipped taps (:func:`fir_taps`), required when ``upsample``.
        pad: zero padding as officially ('same' size); False computes only the outputs whose
            whole receptive field lies in the input ("valid"), as tiled computation needs.
        bias: ``(C_out,)`` in the parts' dtype, added after the (de)modulated convolution
            and blur, or None.
        consume: the caller does not need the parts afterwards: when the input is scaled,
            each part is scaled in place (no copy).
        spare: when upsampling, the transposed convolution's output (no longer needed after
            the blur) is appended here, so that the caller can reuse its memory.

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
    padding = weight.shape[-1] // 2 if pad else 0
    out: torch.Tensor | None = None
    while parts:
        x = parts.pop()
        lo, hi = starts[len(parts)], starts[len(parts) + 1]
        w = weight[0, :, lo:hi]
        if scale is not None:
            w = w * scale[:, lo:hi]
        else:
            s = input_scale[:, lo:hi].to(x.dtype)[:, :, None, None]
            x = x.mul_(s) if consume and not records_grad(x, s) else x * s
        if upsample:
            # conv_transpose2d takes (C_in, C_out, k, k); the official code does not flip it.
            # The stored layout (gpen_core.arch.layers.ModulatedConv) makes this channels-last.
            y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        elif out is not None and _accumulates_in_place(out, x, w):
            assert _MKLDNN_ADD is not None
            _MKLDNN_ADD.binary(out, x, w, None, [padding] * 2, [1, 1], [1, 1], 1, "add", None, None, [], None)
            del x, w
            continue
        else:
            fused = bias if fold and bias is not None and out is None else None
            y = F.conv2d(x, w, fused, padding=padding)
        del x, w
        out = y if out is None else out.add_(y)
        del y
    assert out is not None
    if upsample:
        assert blur_taps is not None
        blurred = depthwise_fir(out, blur_taps, padding=1 if pad else 0, bias=bias if fold else None)
        if spare is not None:
            spare.append(out)
        out = blurred
    if not fold:
        in_place = None if records_grad(out) else out
        if output_scale is not None and bias is not None:  # one pass: out * d + b
            d = output_scale.to(out.dtype)[:, :, None, None]
            out = torch.addcmul(bias[None, :, None, None], out, d, out=in_place)
        elif output_scale is not None:
            out = torch.mul(out, output_scale.to(out.dtype)[:, :, None, None], out=in_place)
        elif bias is not None:
            out = torch.add(out, bias[None, :, None, None], out=in_place)
    return out


def modulated_conv1x1(parts: list[torch.Tensor], weight: torch.Tensor, input_scale: torch.Tensor,
                      bias: torch.Tensor) -> torch.Tensor:
    """Modulated 1x1 convolution of ``cat(parts, dim=1)`` without demodulation (official ``ToRGB``).

    A 1x1 convolution is a matrix product over the pixels, so every sample gets its own
    modulated weight in one batched matmul per part, whatever the batch: the input is never
    scaled or copied (channels-last parts are read as ``(B, H*W, C_i)`` views).

    Args:
        parts: ``(B, C_i, H, W)`` channels-last, ``sum(C_i) = C_in``; not modified.
        weight: ``(1, C_out, C_in, 1, 1)`` stored weight, in the parts' dtype.
        input_scale: ``(B, C_in)`` float32 (see :func:`modulated_conv2d`).
        bias: ``(C_out,)`` in the parts' dtype.

    Returns:
        ``(B, C_out, H, W)`` channels-last, in the parts' dtype.
    """
    b, _, h, w = parts[0].shape
    out: torch.Tensor | None = None
    lo = 0
    for x in parts:
        hi = lo + x.shape[1]
        per_sample = weight[0, :, lo:hi, 0, 0].t()[None] * input_scale[:, lo:hi, None].to(x.dtype)  # (B, C_i, C_out)
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, hi - lo)
        if out is None:
            out = torch.baddbmm(bias[None, None, :], pixels, per_sample)  # (B, H*W, C_out)
        elif records_grad(out, pixels, per_sample):
            out = torch.baddbmm(out, pixels, per_sample)
        else:
            out.baddbmm_(pixels, per_sample)
        lo = hi
    if out is None or lo != weight.shape[2]:
        raise ValueError(f"inputs have {lo} channels, the weight expects {weight.shape[2]}")
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)
