"""ParseNet, the PSFRGAN face-parsing network that GPEN and facexlib use for their paste masks.

One network, two official homes with the same 238 state-dict keys: GPEN's
``face_parse/parse_model.py`` (``weights/ParseNet-latest.pth``) and facexlib's
``facexlib/parsing/parsenet.py`` (``parsing_parsenet.pth``). Both build it with LeakyReLU(0.2),
BatchNorm and channels clipped to [32, 256]; that is the only variant written here.

Layout (module names are the state-dict names):

* ``encoder.0``: biased 3x3 conv, 3 -> ``base_ch``.
* ``encoder.1..D``: down blocks, channels doubling (clipped), each halving the size.
* ``body.0..R-1``: residual blocks with an identity shortcut, wrapped in a long skip
  (``x + body(x)``).
* ``decoder.0..U-1``: up blocks, channels halving (clipped), each doubling the size.
* ``out_mask_conv`` (parsing logits) and ``out_img_conv`` (an auxiliary RGB image): biased convs.

Every 3x3 conv pads by reflection (1 px); an up conv first upsamples by 2 (nearest).

The forward is inference-only and lean, with the official arithmetic in float32:

* the padded input of each conv is written into one reused buffer (:mod:`.workspace`),
  and a residual block pads its input once for its shortcut and its first conv (the
  official code pads, and upsamples, twice);
* BatchNorm runs in place on the conv output (PyTorch's own kernel, ``out=`` the input:
  the official values bit for bit), LeakyReLU and the residual sums in place too;
* in half precision (:meth:`ParseNet.set_dtype`) each BatchNorm is folded into its conv
  (computed in float64, rounded once), the convs read channels-last inputs, and the
  parsing head ``out_mask_conv`` stays float32: its logits decide the argmax, and bf16
  would round logits near 10 to steps of 1/16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .workspace import PadWorkspace

HALF_DTYPES = (torch.float16, torch.bfloat16)

__all__ = ["ConvLayer", "NormLayer", "ParseNet", "ParseNetConfig", "ResidualBlock", "batch_norm_"]

LEAKY_SLOPE = 0.2
SCALES = ("none", "down", "up")


@dataclass(frozen=True)
class ParseNetConfig:
    """Constructor arguments of the official ``ParseNet`` (LeakyReLU, BatchNorm variant).

    Attributes:
        in_size: input side the network was built for; ``log2(in_size / min_feat_size)``
            down blocks. The network is fully convolutional: any side divisible by
            ``2 ** down_steps`` runs.
        out_size: output side; ``log2(out_size / min_feat_size)`` up blocks.
        min_feat_size: side at the bottleneck for an ``in_size`` input.
        base_ch: channels after ``encoder.0``.
        parsing_ch: parsing classes (19 for the CelebAMask-HQ table).
        res_depth: residual blocks in the body.
        ch_range: ``(min, max)`` channel clip.
    """

    in_size: int = 512
    out_size: int = 512
    min_feat_size: int = 32
    base_ch: int = 64
    parsing_ch: int = 19
    res_depth: int = 10
    ch_range: tuple[int, int] = (32, 256)

    def __post_init__(self) -> None:
        for name in ("in_size", "out_size", "min_feat_size", "base_ch", "parsing_ch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ParseNetConfig.{name} must be a positive int, got {value!r}")
        if self.res_depth < 0:
            raise ValueError(f"ParseNetConfig.res_depth must be >= 0, got {self.res_depth}")
        low, high = self.ch_range
        if not 1 <= low <= high:
            raise ValueError(f"ParseNetConfig.ch_range must be (min, max) with 1 <= min <= max, got {self.ch_range}")
        for name in ("in_size", "out_size"):
            ratio = max(getattr(self, name) // min(self.min_feat_size, getattr(self, name)), 1)
            if ratio & (ratio - 1):
                raise ValueError(
                    f"ParseNetConfig.{name} / min_feat_size must be a power of two, got "
                    f"{getattr(self, name)} / {self.min_feat_size}"
                )

    @property
    def down_steps(self) -> int:
        """Down blocks (``encoder.1..``), as the official ``int(log2(in_size // min_feat))``."""
        return int(math.log2(self.in_size // min(self.in_size, self.min_feat_size)))

    @property
    def up_steps(self) -> int:
        """Up blocks (``decoder.*``)."""
        return int(math.log2(self.out_size // min(self.in_size, self.min_feat_size)))

    def clip(self, channels: int) -> int:
        """``channels`` clipped to ``ch_range``."""
        return max(self.ch_range[0], min(channels, self.ch_range[1]))


class NormLayer(nn.Module):
    """BatchNorm2d under the official name ``norm`` (keys ``<conv>.norm.norm.*``); eval mode, in place."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm_(x, self.norm)


def batch_norm_(x: torch.Tensor, norm: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode BatchNorm of ``x`` in place (``x`` is returned).

    PyTorch's kernel writing into its input: the values of ``F.batch_norm(x, ...)`` bit for
    bit, without a second image-sized tensor.
    """
    torch.ops.aten.native_batch_norm.out(
        x, norm.weight, norm.bias, norm.running_mean, norm.running_var, False, 0.0, norm.eps,
        out=x, save_mean=x.new_empty(0), save_invstd=x.new_empty(0),  # not written in eval mode
    )
    return x


class ConvLayer(nn.Module):
    """Optional nearest 2x upsample, reflection pad 1, 3x3 conv, optional BatchNorm, optional LeakyReLU.

    The conv has a bias only without BatchNorm (and after :meth:`fold_norm`). ``scale="down"``
    uses stride 2.

    Args:
        cin, cout: channels in and out.
        scale: ``"none"``, ``"down"`` or ``"up"``.
        norm: BatchNorm after the conv (then no conv bias).
        act: LeakyReLU(0.2) last.
    """

    def __init__(self, cin: int, cout: int, scale: str = "none", *, norm: bool = False, act: bool = False) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale
        self.act = act
        self.folded = False
        self.conv2d = nn.Conv2d(cin, cout, 3, stride=2 if scale == "down" else 1, bias=not norm)
        self.norm = NormLayer(cout) if norm else None

    def run(self, padded: torch.Tensor) -> torch.Tensor:
        """The layer on an input already padded (and upsampled): conv, then norm and activation in place."""
        x = self.conv2d(padded)
        if self.norm is not None:
            x = self.norm(x)
        if self.act:
            x = F.leaky_relu_(x, LEAKY_SLOPE)
        return x

    def forward(self, x: torch.Tensor, workspace: PadWorkspace | None = None) -> torch.Tensor:
        """Pad (and upsample) ``x`` into ``workspace`` (default: a new one), then :meth:`run`."""
        workspace = workspace if workspace is not None else PadWorkspace()
        return self.run(workspace.pad(x, upsample=self.scale == "up", weight=self.conv2d.weight))

    def fold_norm(self, dtype: torch.dtype) -> None:
        """Fold the BatchNorm into the conv: ``W * s``, ``beta - mean * s`` with
        ``s = gamma / sqrt(var + eps)``, computed in float64 from the current weights and rounded
        once to ``dtype``.

        Inexact in float32 (the official code normalises after the conv): only
        :meth:`ParseNet.set_dtype` calls it, for half precisions.
        """
        if self.norm is None:
            return
        bn = self.norm.norm
        mean, var = bn.running_mean, bn.running_var
        if mean is None or var is None:  # pragma: no cover - BatchNorm2d keeps them by default
            raise ValueError("a BatchNorm without running statistics cannot be folded")
        weight = self.conv2d.weight
        scale = _float64(bn.weight) / torch.sqrt(_float64(var) + bn.eps)
        folded_weight = _float64(weight) * scale[:, None, None, None]
        folded_bias = _float64(bn.bias) - _float64(mean) * scale
        self.conv2d.weight = nn.Parameter(folded_weight.to(weight.device, dtype), requires_grad=False)
        self.conv2d.bias = nn.Parameter(folded_bias.to(weight.device, dtype), requires_grad=False)
        self.norm = None
        self.folded = True


def _float64(t: torch.Tensor) -> torch.Tensor:
    """A float64 CPU copy (float64 is not on every device, e.g. MPS)."""
    return t.detach().to("cpu", torch.float64)


class ResidualBlock(nn.Module):
    """``shortcut(x) + conv2(conv1(x))``, no activation after the sum.

    ``conv1`` (BN + LeakyReLU) upsamples first in an up block; ``conv2`` (BN, no activation)
    is the stride-2 conv in a down block. The shortcut is the identity for ``scale="none"``
    with equal channels, else a biased conv that rescales (``shortcut_func``); it reads the
    same padded (upsampled) input as ``conv1``.
    """

    def __init__(self, cin: int, cout: int, scale: str = "none") -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale
        self.shortcut_func = None if scale == "none" and cin == cout else ConvLayer(cin, cout, scale)
        self.conv1 = ConvLayer(cin, cout, "up" if scale == "up" else "none", norm=True, act=True)
        self.conv2 = ConvLayer(cout, cout, "down" if scale == "down" else "none", norm=True)

    def forward(self, x: torch.Tensor, workspace: PadWorkspace | None = None) -> torch.Tensor:
        """The block on ``x`` (left unchanged), its padded inputs in ``workspace`` (default: a new one)."""
        workspace = workspace if workspace is not None else PadWorkspace()
        weight = self.conv1.conv2d.weight  # the shortcut's has the same dtype and layout
        padded = workspace.pad(x, upsample=self.scale == "up", weight=weight)
        shortcut = x if self.shortcut_func is None else self.shortcut_func.run(padded)
        res = self.conv1.run(padded)
        del padded  # before the next pad: the workspace may grow
        padded = workspace.pad(res, upsample=False, weight=weight)
        del res
        res = self.conv2.run(padded)
        del padded
        return res.add_(shortcut)  # the official shortcut + res: the same sum


class ParseNet(nn.Module):
    """The face-parsing network; state-dict compatible with GPEN's and facexlib's files.

    Inference only (its forward works in place); see the module docstring for what it does
    beyond the official code and :meth:`set_dtype` for half precision.

    Args:
        config: architecture (default: the one both official pipelines build).

    Shape:
        input ``(B, 3, H, W)`` RGB in [-1, 1] (H, W divisible by ``2 ** config.down_steps``;
        the official pipelines use 512 x 512); any float dtype (converted while padding);
        output ``(logits, image)``:
        ``(B, parsing_ch, H', W')`` raw class scores and ``(B, 3, H', W')`` the auxiliary
        image head, with ``H' = H * out_size / in_size``.
    """

    def __init__(self, config: ParseNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ParseNetConfig()
        clip = config.clip
        head = config.base_ch
        encoder: list[nn.Module] = [ConvLayer(3, config.base_ch)]
        for _ in range(config.down_steps):
            encoder.append(ResidualBlock(clip(head), clip(head * 2), "down"))
            head *= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*(ResidualBlock(clip(head), clip(head)) for _ in range(config.res_depth)))
        decoder: list[nn.Module] = []
        for _ in range(config.up_steps):
            decoder.append(ResidualBlock(clip(head), clip(head // 2), "up"))
            head //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head), 3)
        self.out_mask_conv = ConvLayer(clip(head), config.parsing_ch)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the trunk computes in (the parsing head may be float32, see :meth:`set_dtype`)."""
        return self.out_img_conv.conv2d.weight.dtype  # the image head is in the trunk's dtype

    @property
    def device(self) -> torch.device:
        return self.out_img_conv.conv2d.weight.device

    @property
    def folded(self) -> bool:
        """Whether the BatchNorms were folded into the convs (:meth:`set_dtype` to a half precision)."""
        return any(isinstance(m, ConvLayer) and m.folded for m in self.modules())

    def set_dtype(self, dtype: torch.dtype) -> ParseNet:
        """Compute in ``dtype`` (float32, bfloat16 or float16); returns ``self``.

        Half precisions fold every BatchNorm into its conv first (from the current weights, in
        float64), keep ``out_mask_conv`` in float32 (its input is converted while padding) and
        store every conv weight channels-last, so that every conv reads channels-last inputs
        (oneDNN's bf16 kernels and cuDNN's tensor-core kernels are channels-last; on this
        project's CPU a bf16 conv 128 -> 64 at 512 x 512 took 151 ms channels-last, 270 ms NCHW,
        and the float32 head 81 ms against 188). float32 keeps NCHW, the official layout:
        another layout picks other conv algorithms and moves the logits by ~5e-5.
        Folding cannot be undone: a folded parser refuses float32; load the weights again for
        the exact float32 network.

        Raises:
            ValueError: another dtype, or float32 asked of a folded parser.
        """
        if dtype not in (torch.float32, *HALF_DTYPES):
            raise ValueError(f"ParseNet computes in float32, bfloat16 or float16, not {dtype}")
        if dtype == torch.float32 and self.folded:
            raise ValueError(
                "this ParseNet's BatchNorms were folded into its convolutions for half precision, which is not "
                "the exact float32 network; load the weights again (load_parser(..., dtype=torch.float32))"
            )
        if dtype != torch.float32:
            for module in self.modules():
                if isinstance(module, ConvLayer):
                    module.fold_norm(dtype)
        for child in self.children():
            child.to(torch.float32 if child is self.out_mask_conv else dtype)
        fmt = torch.contiguous_format if dtype == torch.float32 else torch.channels_last
        return self._apply(lambda t: t.contiguous(memory_format=fmt) if t.ndim == 4 else t)

    def _check_inference(self, x: torch.Tensor) -> None:
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            raise RuntimeError(
                "ParseNet's forward is inference-only (it works in place); run it under torch.inference_mode() "
                "or torch.no_grad() with parameters that do not require gradients"
            )

    def _trunk(self, x: torch.Tensor, workspace: PadWorkspace) -> torch.Tensor:
        self._check_inference(x)
        for layer in self.encoder:
            x = layer(x, workspace)
        feat = x
        for block in self.body:
            x = block(x, workspace)
        x = x + feat if x is feat else x.add_(feat)  # the official feat + body(feat)
        del feat
        for block in self.decoder:
            x = block(x, workspace)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        workspace = PadWorkspace()
        x = self._trunk(x, workspace)
        return self.out_mask_conv(x, workspace), self.out_img_conv(x, workspace)

    def logits(self, x: torch.Tensor, workspace: PadWorkspace | None = None) -> torch.Tensor:
        """Only the parsing logits ``(B, parsing_ch, H', W')`` (skips the image head).

        ``workspace``: a :class:`~.workspace.PadWorkspace` to reuse across calls (e.g. the face
        batches of one photo), else a fresh one.
        """
        workspace = workspace if workspace is not None else PadWorkspace()
        return self.out_mask_conv(self._trunk(x, workspace), workspace)
