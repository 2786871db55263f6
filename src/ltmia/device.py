"""Where and at what precision models run: the device choice and bf16 autocast.

fp32 is the published recipe (SPEC §3). bf16 autocast runs the matrix products in bfloat16 with float32
weights and optimiser state; on a CPU with native bf16 matrix units (AMX, AVX512-BF16) it made a SmolLM2
fine-tuning step about 3x faster. ``auto`` picks bf16 only where it is native (such a CPU, or a GPU that
supports it), because emulated bf16 is slower than fp32. The precision a run used is resolved once and
recorded in every manifest and cache key: bf16 changes the numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ltmia.errors import InputError
from ltmia.settings.base import PRECISIONS, Precision

if TYPE_CHECKING:
    from transformers import PreTrainedModel

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 matrix units


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.cache
def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The native-bf16 flags this CPU reports (Linux ``/proc/cpuinfo``), in ``NATIVE_BF16_FLAGS`` order;
    empty where unknown."""
    if not cpuinfo.exists():
        return ()
    flags: set[str] = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in flags)


def resolve_precision(precision: str, device: str | torch.device = "auto") -> Precision:
    """``fp32`` / ``bf16`` as given; ``auto``: bf16 on a bf16-capable GPU or a CPU with native bf16 units."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision  # type: ignore[return-value]
    kind = resolve_device(device).type if isinstance(device, str) else device.type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if kind == "cpu" and cpu_bf16_flags() else "fp32"


def autocast(precision: Precision, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on ``device`` for ``bf16``; nothing for ``fp32``."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextmanager
def replaced_forward(module: nn.Module, forward: Callable[..., torch.Tensor]) -> Iterator[None]:
    """Inside, ``module(...)`` calls ``forward``; after, its class's own forward again."""
    module.forward = forward
    try:
        yield
    finally:
        del module.forward  # back to the class's own forward


@contextmanager
def float32_head(model: nn.Module) -> Iterator[None]:
    """Inside bf16 autocast, compute the LM head in float32: logits keep full precision.

    bf16 logits carry 8 bits of mantissa (steps of 0.125 at a logit of 20), which would tie ranks and blur
    the log-probabilities every LT-MIA feature and baseline reads; the head is one matrix product, so
    keeping it in float32 costs little. Outside autocast this changes nothing.
    """
    head = cast("PreTrainedModel", model).get_output_embeddings()
    original = head.forward

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return original(hidden.float())

    with replaced_forward(head, forward):
        yield
