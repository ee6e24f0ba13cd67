"""The lean ParseNet forward (issue 20): bit-exact float32, BatchNorm folding for half precision,
the reused padded-input buffer, the precision option, and the memory estimate in every dtype.

The float32 forward is compared bit for bit with a plain transcription of the official forward
(``F.pad`` / ``F.interpolate`` / ``F.batch_norm`` / ``F.leaky_relu``, new tensors everywhere);
test_parsing_reference.py checks it against the official outputs themselves. The bf16 mask error
at 512 is pinned there too (it reuses the float32 forward of the reference crop).
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from gpen_core.face.parsing import (
    PARSER_PRECISIONS,
    PadWorkspace,
    ParseNet,
    ParseNetConfig,
    kept_classes,
    load_parser,
    mask_difference,
    parse_classes,
    parse_paste_masks,
    parser_peak_bytes,
    resolve_parser_dtype,
    seeded_parsenet_state_dict,
)
from gpen_core.face.parsing.network import ConvLayer, ResidualBlock
from gpen_core.runtime.memory import peak_memory

SMALL = ParseNetConfig(in_size=64, out_size=64, min_feat_size=16, base_ch=8, parsing_ch=5, res_depth=2,
                       ch_range=(4, 16))
"""Every kind of block: clipped channels, 2 down, 2 body, 2 up."""
NO_BODY = ParseNetConfig(in_size=32, out_size=32, min_feat_size=8, base_ch=4, parsing_ch=3, res_depth=0,
                         ch_range=(4, 8))
PEAK_CONFIG = ParseNetConfig(in_size=64, out_size=64, min_feat_size=16, base_ch=4, parsing_ch=19, res_depth=2,
                             ch_range=(4, 8))


def plain_conv(layer: ConvLayer, x: torch.Tensor) -> torch.Tensor:
    """The official ``ConvLayer.forward``: new tensors, no buffer, no in-place op."""
    if layer.scale == "up":
        x = F.interpolate(x, scale_factor=2, mode="nearest")
    x = layer.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"))
    if layer.norm is not None:
        bn = layer.norm.norm
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.leaky_relu(x, 0.2) if layer.act else x


def plain_block(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    identity = x if block.shortcut_func is None else plain_conv(block.shortcut_func, x)
    return identity + plain_conv(block.conv2, plain_conv(block.conv1, x))


def plain_forward(net: ParseNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``ParseNet.forward``, transcribed."""
    feat = plain_conv(net.encoder[0], x)
    for block in net.encoder[1:]:
        feat = plain_block(block, feat)
    body = feat
    for block in net.body:
        body = plain_block(block, body)
    x = feat + body
    for block in net.decoder:
        x = plain_block(block, x)
    return plain_conv(net.out_mask_conv, x), plain_conv(net.out_img_conv, x)


def probe(batch: int, side: int, seed: int = 3) -> torch.Tensor:
    return torch.rand((batch, 3, side, side), generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(("config", "side"), [(SMALL, 64), (NO_BODY, 32), (ParseNetConfig(), 64)],
                         ids=["small", "no-body", "official-layout"])
def test_float32_forward_is_the_official_forward_bit_for_bit(config: ParseNetConfig, side: int) -> None:
    net = load_parser(seeded_parsenet_state_dict(config, base=21, gain=0.9))
    x = probe(2, side)
    with torch.inference_mode():
        expected = plain_forward(net, x)
        logits, image = net(x)
        assert torch.equal(logits, expected[0]) and torch.equal(image, expected[1])
        workspace = PadWorkspace()
        assert torch.equal(net.logits(x, workspace), expected[0])
        assert torch.equal(net.logits(x, workspace), expected[0])  # a reused buffer changes nothing
    assert torch.equal(x, probe(2, side))  # the input is left as it was


def test_forward_is_inference_only() -> None:
    net = ParseNet(SMALL)  # parameters require gradients: training is not what this forward is for
    with pytest.raises(RuntimeError, match="inference-only"):
        net.logits(probe(1, 64))
    with torch.no_grad():
        assert net.logits(probe(1, 64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pad_is_reflect_pad_of_the_upsampled_input(upsample: bool, dtype: torch.dtype, channels_last: bool) -> None:
    x = torch.randn(2, 5, 6, 9, generator=torch.Generator().manual_seed(1))
    weight = torch.empty(4, 5, 3, 3, dtype=dtype)
    if channels_last:
        weight = weight.contiguous(memory_format=torch.channels_last)
    out = PadWorkspace().pad(x, upsample=upsample, weight=weight)
    source = F.interpolate(x, scale_factor=2, mode="nearest") if upsample else x
    assert torch.equal(out, F.pad(source, (1, 1, 1, 1), mode="reflect").to(dtype))
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_pad_buffer_is_reused_and_grows_only_when_needed() -> None:
    workspace = PadWorkspace()
    weight = torch.empty(1, 8, 3, 3)
    first = workspace.pad(torch.rand(1, 8, 16, 16), upsample=False, weight=weight)
    address, size = first.data_ptr(), workspace.nbytes
    assert size == 8 * 18 * 18 * 4
    del first
    assert workspace.pad(torch.rand(1, 4, 16, 16), upsample=False, weight=weight).data_ptr() == address
    assert workspace.nbytes == size
    workspace.pad(torch.rand(1, 8, 16, 16), upsample=True, weight=weight)
    assert workspace.nbytes == 8 * 34 * 34 * 4
    with pytest.raises(ValueError, match="too small for its reflection padding"):
        workspace.pad(torch.rand(1, 8, 1, 4), upsample=False, weight=weight)


def test_fold_norm_is_the_conv_then_the_norm() -> None:
    """In float64 the folded layer computes the same function (to rounding)."""
    layer = ConvLayer(6, 7, norm=True, act=True).double().eval()
    torch.manual_seed(4)
    bn = layer.norm.norm
    for tensor, value in ((bn.weight, 1.0), (bn.bias, 0.0), (bn.running_mean, 0.0), (bn.running_var, 1.0)):
        tensor.data = value + 0.3 * torch.randn_like(tensor).abs()
    padded = torch.randn(2, 6, 10, 10, dtype=torch.float64)
    with torch.inference_mode():
        expected = layer.run(padded.clone())
        layer.fold_norm(torch.float64)
        assert layer.norm is None and layer.folded and layer.conv2d.bias is not None
        torch.testing.assert_close(layer.run(padded.clone()), expected, rtol=1e-12, atol=1e-12)


def test_set_dtype_folds_half_precision_and_keeps_the_head_float32() -> None:
    state = seeded_parsenet_state_dict(SMALL, base=11, gain=0.9)
    exact = load_parser(state)
    assert exact.dtype == torch.float32 and not exact.folded
    assert all(p.is_contiguous() for p in exact.parameters())
    for dtype in (torch.bfloat16, torch.float16):
        half = load_parser(state, dtype=dtype)
        assert half.dtype == dtype and half.folded
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in half.modules())
        assert half.out_mask_conv.conv2d.weight.dtype == torch.float32
        assert half.out_img_conv.conv2d.weight.dtype == dtype
        convs = [m.conv2d.weight for m in half.modules() if isinstance(m, ConvLayer)]
        assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
        x = probe(2, 64)
        with torch.inference_mode():
            logits = half.logits(x)
            reference = exact.logits(x)
        assert logits.dtype == torch.float32  # from the float32 head
        error = (logits - reference).abs()
        # measured: bf16 max 0.077, mean 0.0126; fp16 (3 more mantissa bits) max 0.0099, mean 0.0016,
        # on logits up to 9.3 (std 2.2)
        bound = 0.15 if dtype == torch.bfloat16 else 0.02
        assert 0 < float(error.max()) < bound and float(error.mean()) < bound / 6
        half.set_dtype(torch.bfloat16 if dtype == torch.float16 else torch.float16)  # half to half: allowed
        with pytest.raises(ValueError, match="load the weights again"):
            half.set_dtype(torch.float32)
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        exact.set_dtype(torch.float64)


def test_parse_in_half_precision_end_to_end() -> None:
    """``parse_paste_masks`` with a bf16 parser: float32 masks, near the float32 parser's."""
    state = seeded_parsenet_state_dict(PEAK_CONFIG, base=6, gain=0.9)
    crops = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    exact = parse_paste_masks(load_parser(state), crops, batch_size=2)
    half = parse_paste_masks(load_parser(state, dtype=torch.bfloat16), crops, batch_size=2)
    assert half.dtype == torch.float32 and half.shape == exact.shape == (3, 96, 96)
    assert float((half - exact).abs().max()) < 0.1
    workspace = PadWorkspace()  # one buffer kept across calls: the same masks
    parser = load_parser(state)
    again = [parse_paste_masks(parser, crops[i : i + 2], batch_size=2, workspace=workspace) for i in (0, 2)]
    assert torch.equal(torch.cat(again), exact) and workspace.nbytes > 0
    classes = parse_classes(load_parser(state), crops, batch_size=3)
    half_classes = parse_classes(load_parser(state, dtype=torch.bfloat16), crops, batch_size=3)
    difference = mask_difference(classes, half_classes, kept_classes(), 96)
    assert difference.pixels == 3 * 512 * 512
    assert difference.mask_flips <= difference.class_flips < 0.05 * difference.pixels


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("batch", [1, 2])
def test_parser_estimate_bounds_the_measured_peak_in_every_dtype(dtype: torch.dtype, batch: int) -> None:
    """The estimate the face batches are sized with bounds what one ``parse_classes`` batch holds
    (a fresh buffer, input and argmax included), and is not far above it."""
    parser = load_parser(seeded_parsenet_state_dict(PEAK_CONFIG, base=6, gain=0.9), dtype=dtype)
    crops = torch.rand(batch, 3, 96, 96, generator=torch.Generator().manual_seed(8))
    _, peak = peak_memory(lambda: parse_classes(parser, crops, batch_size=batch), torch.device("cpu"))
    estimate = parser_peak_bytes(PEAK_CONFIG, dtype, batch)
    assert peak <= estimate <= 1.5 * peak
    if dtype != torch.float32:
        assert estimate < 0.95 * parser_peak_bytes(PEAK_CONFIG, torch.float32, batch)


def test_resolve_parser_dtype(caplog) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert PARSER_PRECISIONS == ("model", "fp32", "bf16", "fp16")
    assert resolve_parser_dtype("model", torch.float32, cpu) == torch.float32
    assert resolve_parser_dtype("model", torch.bfloat16, "cpu") == torch.bfloat16
    assert resolve_parser_dtype("model", torch.float16, cuda) == torch.float16
    with caplog.at_level(logging.INFO, logger="gpen_core.face.parsing.precision"):
        assert resolve_parser_dtype("model", torch.float16, cpu) == torch.bfloat16
    assert "bf16 on the CPU" in caplog.text
    assert resolve_parser_dtype("fp32", torch.bfloat16, cpu) == torch.float32
    assert resolve_parser_dtype("bf16", torch.float32, cpu) == torch.bfloat16
    assert resolve_parser_dtype("fp16", torch.float32, cuda) == torch.float16
    with pytest.raises(ValueError, match="fp16 on the CPU"):
        resolve_parser_dtype("fp16", torch.float32, cpu)
    with pytest.raises(ValueError, match="has no bfloat16 convolutions"):
        resolve_parser_dtype("bf16", torch.float32, "meta")
    with pytest.raises(ValueError, match="must be one of"):
        resolve_parser_dtype("auto", torch.float32, cpu)
