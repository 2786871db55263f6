"""One forward pass of target and reference per batch -> LT-MIA features and the baselines' token stats.

Everything every attack needs comes from these two passes (SPEC §4 last paragraph). When the target is a
LoRA model and no reference is given, the reference is the same model with adapters disabled: one model in
memory, as SPEC §3 prescribes.

Memory: the logits of a batch are (B, L, V) per model, 2 x 16 x 128 x 256k x 4 bytes ~ 4 GiB for a Gemma-size
vocabulary. ``memory_budget_bytes`` bounds what extraction holds beyond the models: half of it for the two
models' logits (a batch is run in sub-batches of `sub_batch_size` texts) and half for the feature chunks'
scratch (``ltmia.features.lt_features_and_stats``). Every text is padded to ``seq_len`` and scored on its
own, so the budget changes how the work is split, not the results.

Precision: with ``precision="bf16"`` the models' bodies run under bf16 autocast but the LM head runs in
float32 (``ltmia.device.float32_head``), so features and stats are always computed from float32 logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from ltmia.data import SEQ_LEN, Bos, Kind, encode
from ltmia.device import Precision, autocast, float32_head
from ltmia.errors import InputError
from ltmia.features import lt_features_and_stats
from ltmia.tokenstats import MEMORY_BUDGET_BYTES, TokenStats

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

LOGIT_BYTES = 4
"""Bytes per logit assumed when sizing sub-batches: float32, the widest dtype models return logits in."""


@dataclass
class Signals:
    """Per-text outputs of ``extract`` for N texts: features (N, L, 7k+14), mask (N, L), stats (N, L-1)."""

    features: Tensor
    mask: Tensor
    stats: TokenStats


def output_width(model: nn.Module) -> int:
    """Width of the model's logits (the LM head's rows), which may exceed the tokenizer's vocabulary."""
    return cast("PreTrainedModel", model).get_output_embeddings().weight.shape[0]


def check_compatible(target: nn.Module, reference: nn.Module | None, tokenizer) -> None:
    """Target and reference must score the same vocabulary; fail before any work starts."""
    if reference is None:
        if not hasattr(target, "disable_adapter"):
            raise InputError("no reference model given and the target is not a LoRA model; pass --reference")
        return
    width_t, width_r = output_width(target), output_width(reference)
    if width_t != width_r:
        raise InputError(
            f"target and reference have different vocabularies ({width_t} vs {width_r} logits); "
            "the reference must be the target's base model with the same tokenizer"
        )
    if len(tokenizer) > width_t:
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the models only {width_t} logits")


@contextmanager
def reference_of(target: nn.Module, reference: nn.Module | None) -> Iterator[nn.Module]:
    """The reference model; for a LoRA target without one, the target with its adapters disabled."""
    context = cast("PeftModel", target).disable_adapter() if reference is None else nullcontext()
    with context:
        yield target if reference is None else reference


def concat_stats(parts: Sequence[TokenStats]) -> TokenStats:
    """Stack per-batch ``TokenStats`` along the text axis."""
    return TokenStats(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(TokenStats)})


def sub_batch_size(batch_size: int, seq_len: int, vocab: int, memory_budget_bytes: int) -> int:
    """Texts per forward pass: at most ``batch_size``, and few enough that the two models' (b, L, V) logits
    fit half of ``memory_budget_bytes``; at least 1 (one text's logits then exceed it, with a warning)."""
    if memory_budget_bytes < 1:
        raise InputError(f"the memory budget must be a positive number of bytes, got {memory_budget_bytes}")
    per_text = 2 * seq_len * vocab * LOGIT_BYTES
    fitting = (memory_budget_bytes // 2) // per_text
    if fitting < 1:
        log.warning(
            "a memory budget of %d MiB is below one text's logits (%d MiB for L=%d, V=%d); going one text "
            "at a time",
            memory_budget_bytes >> 20,
            (2 * per_text) >> 20,
            seq_len,
            vocab,
        )
    return max(1, min(batch_size, fitting))


@torch.no_grad()
def extract(
    target: nn.Module,
    reference: nn.Module | None,
    tokenizer,
    texts: Sequence[str],
    *,
    kind: Kind = "text",
    k: int = 20,
    batch_size: int = 16,
    seq_len: int = SEQ_LEN,
    bos: Bos = "never",
    precision: Precision = "fp32",
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES,
    on_batch: Callable[[int], None] | None = None,
) -> Signals:
    """Texts -> ``Signals``: features (N, L, 7k+14) float32, mask (N, L), token stats (N, L-1), on CPU.

    ``reference=None`` means "the LoRA target with adapters disabled". Both models run on their own
    device; features are computed there and moved to CPU per batch. ``memory_budget_bytes`` bounds the
    memory used beyond the models (module docstring); ``on_batch(n)`` is called after every n texts.
    ``bos`` is the tokenisation setting the target was fine-tuned with (``ltmia.data.encode``).
    """
    if not texts:
        raise InputError("no texts to score; pass at least one non-empty text")
    check_compatible(target, reference, tokenizer)
    device = next(target.parameters()).device
    step = sub_batch_size(batch_size, seq_len, output_width(target), memory_budget_bytes)
    parts = []
    for start in range(0, len(texts), batch_size):
        input_ids, attention_mask = encode(tokenizer, texts[start : start + batch_size], kind, seq_len, bos)
        for sub in range(0, input_ids.shape[0], step):
            ids, mask = input_ids[sub : sub + step].to(device), attention_mask[sub : sub + step].to(device)
            scratch = max(1, memory_budget_bytes // 2)
            parts.append(batch_signals(target, reference, ids, mask, k, scratch, precision))
            if on_batch is not None:
                on_batch(ids.shape[0])
    return Signals(
        features=torch.cat([p[0] for p in parts]),
        mask=torch.cat([p[1] for p in parts]),
        stats=concat_stats([p[2] for p in parts]),
    )


def batch_signals(
    target: nn.Module,
    reference: nn.Module | None,
    input_ids: Tensor,
    attention_mask: Tensor,
    k: int,
    scratch: int,
    precision: Precision = "fp32",
) -> tuple[Tensor, Tensor, TokenStats]:
    """One forward pass of each model on (b, L) ids -> features and mask on CPU, token stats.

    The feature chunks' scratch stays within ``scratch`` bytes; both logits are freed on return.
    """
    with autocast(precision, input_ids.device), float32_head(target):
        target_logits = target(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    with reference_of(target, reference) as ref, autocast(precision, input_ids.device), float32_head(ref):
        reference_logits = ref(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    features, mask, stats = lt_features_and_stats(
        target_logits, reference_logits, input_ids, attention_mask, k=k, memory_budget_bytes=scratch
    )
    return features.cpu(), mask.cpu(), stats
