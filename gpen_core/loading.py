"""``load_model``: a checkpoint (file or state dict) to a ready :class:`GPEN` on a device,
``safer_copy``: the same weights as a new model in a safer precision (the ``auto`` fallback), and
:data:`GPEN_NETWORK`, the generator's model-zoo entry."""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from .arch.config import OFFICIAL_CONFIGS, ConfigError, config_from_state_dict
from .arch.generator import GPEN
from .arch.graphs import COMPILE_MODES
from .checks import check_choice
from .network_entry import NetworkEntry, WeightsFile
from .runtime.precision import NAMES, resolve_device, resolve_dtype
from .weights import CheckpointError, CheckpointSource, StateDict, build_checked, describe

GENERATOR_MARKERS = ("generator.input.input", "final_linear.0.weight", "ecd0.0.0.weight")
"""Keys every GPEN ``FullGenerator`` state dict has."""


def _gpen_why_not(state: Mapping[str, torch.Tensor]) -> str | None:
    """None for a GPEN generator state dict, else what it is instead (a discriminator) or what is missing."""
    keys = set(state)
    if all(marker in keys for marker in GENERATOR_MARKERS):
        return None
    if "final_conv.0.weight" in keys or any(k.startswith("convs.") and ".conv1." in k for k in keys):
        return (
            "this is a GPEN discriminator (as in GPEN-BFR-*-D.pth), used only for training. "
            "Load the generator file instead, e.g. GPEN-BFR-512.pth."
        )
    sample = ", ".join(sorted(keys)[:6])
    return (
        f"not a GPEN generator; expected keys such as {', '.join(GENERATOR_MARKERS)}, "
        f"found {len(keys)} tensors like {sample}"
    )


def build_model(state: dict[str, torch.Tensor], *, name: str = "<state dict>", input_range: str = "[-1,1]") -> GPEN:
    """A float32 CPU :class:`GPEN` holding ``state``, loaded strictly.

    The configuration is read from the shapes, the network of that configuration is compared with
    ``state`` on the meta device, and only then built (:func:`gpen_core.weights.build_checked`).

    Raises:
        CheckpointError: shapes that fit no GPEN, or missing, unexpected or mis-shaped keys.
    """
    try:
        config = config_from_state_dict(state, input_range=input_range)
    except ConfigError as err:
        raise CheckpointError(f"{name}: {err}") from err
    return build_checked(lambda: GPEN(config), state, name, f"GPEN-{config.size} ({config})")


GPEN_FILE = WeightsFile(
    names=tuple(f"GPEN-BFR-{size}.pth" for size in sorted(OFFICIAL_CONFIGS, key=lambda size: size != 512)),
    what="GPEN generator",
    why_not=_gpen_why_not,
    build=lambda state, name: build_model(state, name=name),
)
"""A GPEN ``FullGenerator`` file (the BFR releases; the colorization, inpainting and Seg2face ones load too;
where each is published: :data:`gpen_core.official_files.OFFICIAL_FILES`)."""

GPEN_NETWORK = NetworkEntry(
    name="gpen",
    task="restore",
    folder="gpen",
    files=(GPEN_FILE,),
    aliases=("gpen-bfr",),
    sizes=tuple(OFFICIAL_CONFIGS),
    supports_half=True,
    supports_bfloat16=True,
)
"""GPEN in the model zoo: any size from 16 to 2048 loads; :attr:`~NetworkEntry.sizes` are the releases."""


def load_state_dict(source: CheckpointSource) -> StateDict:
    """A GPEN generator state dict from a file path or a (possibly nested) mapping, checked for use:
    read safely, recognised, float dtypes and finite values (:mod:`gpen_core.weight_checks`).

    Raises:
        FileNotFoundError: no such file (the message says where the official weights go).
        CheckpointError: see :func:`gpen_core.weights.read_file`; also for a discriminator
            file (``GPEN-BFR-*-D.pth``) or another architecture, NaN/inf or non-float tensors.
    """
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        raise FileNotFoundError(
            f"GPEN checkpoint not found: {source}. Download the official weights (e.g. GPEN-BFR-512.pth) "
            "yourself and put them in ComfyUI/models/gpen/ or pass the right path."
        )
    return GPEN_FILE.read(source)


def load_model(
    source: CheckpointSource,
    *,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    input_range: str = "[-1,1]",
    compute_device: str | torch.device | None = None,
    compile: str = "off",
) -> GPEN:
    """Load a GPEN generator checkpoint.

    Args:
        source: a ``.pth``/``.pt``/``.safetensors`` path or a state dict (plain, nested under
            ``g_ema``/``params_ema``/``state_dict``, or with ``module.`` prefixes).
        device: ``None``/``"auto"``: the current CUDA device when there is one, else CPU.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``auto`` (see :func:`gpen_core.runtime.precision.resolve_dtype`).
            When ``auto`` resolves to a half precision, the float32 values of every tensor that
            half precision rounds are kept in CPU memory (``fallback_weights``: every tensor but the
            float32 mapping and modulation layers, 42 MiB for GPEN-256, 213 MiB for
            GPEN-512/1024/2048), so that a non-finite
            output can be retried in a safer precision from the stored values
            (:func:`safer_copy`), never from the file.
        input_range: ``"[-1,1]"`` (BFR, colorization, inpainting) or ``"[0,1]"`` (Seg2face).
        compute_device: the device the model will run on, if not ``device`` (e.g. weights kept on
            the CPU until a model manager moves them); ``auto`` precision is resolved for it.
        compile: ``"off"`` or ``"cuda_graphs"``: plain forwards on CUDA replay one captured CUDA
            graph per input shape (:mod:`gpen_core.arch.graphs`); refused unless the model runs
            on CUDA. ``model.graphs.stats`` counts captures, replays and eager runs with reasons.

    Returns:
        The generator in eval mode, gradients off, with ``.config``, ``.precision`` and
        ``.fallback_weights`` set.

    Raises:
        FileNotFoundError, CheckpointError: with the file name and what was found.
        ValueError: an unknown ``compile`` mode, or ``cuda_graphs`` for a model that does not run on CUDA.
    """
    check_choice(compile, COMPILE_MODES, "compile")
    state = load_state_dict(source)
    model = build_model(state, name=describe(source), input_range=input_range)
    del state
    target = resolve_device(device)
    runs_on = resolve_device(compute_device) if compute_device is not None else target
    if compile == "cuda_graphs" and runs_on.type != "cuda":
        raise ValueError(f"compile='cuda_graphs' needs a CUDA device; this model runs on {runs_on}: use compile='off'")
    dtype = resolve_dtype(precision, runs_on)
    stored = model.state_dict() if precision == "auto" and dtype != torch.float32 else None
    model.set_dtype(dtype)  # on the CPU: half-size transfers, and ``stored`` stays in CPU memory
    model.fallback_weights = _changed_by_rounding(stored, model) if stored is not None else None
    model.to(device=target)
    model.precision = precision
    model.set_compile(compile)
    return model


def _changed_by_rounding(stored: dict[str, torch.Tensor], model: GPEN) -> dict[str, torch.Tensor]:
    """The float32 tensors of ``stored`` (the model's state before ``set_dtype``) whose values ``model``
    no longer holds exactly: the ones now in half precision, and any rounded on the way to float32.

    No copy is made: ``set_dtype`` gave the model new tensors, so these are the originals.
    """
    return {
        key: stored[key]
        for key, now in model.state_dict().items()
        if now.dtype != stored[key].dtype or not torch.equal(now, stored[key])
    }


def safer_copy(model: GPEN, dtype: torch.dtype) -> GPEN:
    """A new GPEN with ``model``'s stored weights, on its device, in ``dtype``; ``model`` is not touched.

    The weights come from memory: ``model.fallback_weights`` (the float32 values the half-precision
    tensors were rounded from) and the float32 tensors of ``model`` itself; never from the file,
    which may have changed or gone since loading. The copy keeps ``precision`` and
    ``fallback_weights`` (shared, read-only), so it can fall back again.

    Raises:
        RuntimeError: ``model`` has half-precision tensors but no ``fallback_weights`` (it was not
            loaded with precision ``auto``).
    """
    live = model.state_dict()
    kept = model.fallback_weights or {}
    lost = [key for key, t in live.items() if t.dtype != torch.float32 and key not in kept]
    if lost:
        raise RuntimeError(
            f"cannot rebuild this GPEN in {NAMES.get(dtype, dtype)}: {len(lost)} tensors (e.g. {lost[0]}) are held "
            f"only in {NAMES.get(model.dtype, model.dtype)}; load it with precision 'auto' to keep float32 copies"
        )
    copy = GPEN(model.config)
    copy.load_state_dict({key: kept.get(key, t) for key, t in live.items()}, strict=True)
    copy.eval().requires_grad_(False)
    copy.to(device=model.device)
    copy.set_dtype(dtype)
    copy.precision = model.precision
    copy.set_compile(model.compile_mode)
    copy.fallback_weights = model.fallback_weights
    return copy
