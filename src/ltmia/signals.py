"""One forward pass of target and reference per batch -> LT-MIA features and the baselines' token stats.

Everything every attack needs comes from these two passes (SPEC §4 last paragraph). When the target is a
LoRA model and no reference is given, the reference is the same model with adapters disabled: one model in
memory, as SPEC §3 prescribes.

Memory: the logits of a batch are (B, L, V) per model, 2 x 16 x 128 x 256k x 4 bytes ~ 4 GiB for a Gemma-size
vocabulary, so where it is exact (``ltmia.lm_head``) a model's head is deferred: its forward pass holds the
(B, L, H) final hidden states instead and the logits are computed for blocks of valid positions inside the
feature loop, never all at once. ``memory_budget_bytes`` bounds what extraction holds beyond the models:
half of it for what the two forward passes hold (their logits, or their hidden states plus one (block, V)
float32 logits block each, the blocks within a quarter of the budget: `head_block_positions`; a batch is run
in sub-batches of `sub_batch_size` texts) and half for the feature chunks' scratch
(``ltmia.features.lt_features_and_stats``). Every text is padded to ``seq_len`` and scored on its own, so
the budget changes how the work is split, not the results (``tokenstats.DeferredLogits.rows`` keeps the head
products' rounding independent of their blocks on CPU; other BLAS may round blocks differently).

Precision: with ``precision="bf16"`` the models' bodies run under bf16 autocast but the LM head runs in
float32 (``ltmia.device.float32_head``, or deferred in float32), so features and stats are always computed
from float32 logits.
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
from ltmia.device import Precision
from ltmia.errors import InputError
from ltmia.features import lt_features_and_stats
from ltmia.lm_head import deferred_hidden_size, forward_logits
from ltmia.tokenstats import HEAD_BLOCK_POSITIONS, MEMORY_BUDGET_BYTES, TokenStats

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


def head_block_positions(vocab: int, memory_budget_bytes: int) -> int:
    """Positions per (block, V) float32 logits block of a deferred head: the two models' blocks within a
    quarter of ``memory_budget_bytes``, at most ``tokenstats.HEAD_BLOCK_POSITIONS``, at least 1."""
    return max(1, min(HEAD_BLOCK_POSITIONS, (memory_budget_bytes // 4) // (2 * vocab * LOGIT_BYTES)))


def sub_batch_size(
    batch_size: int,
    seq_len: int,
    vocab: int,
    memory_budget_bytes: int,
    hidden_sizes: tuple[int | None, int | None] = (None, None),
) -> int:
    """Texts per forward pass: at most ``batch_size``, and few enough that what the two models hold fits half
    of ``memory_budget_bytes``; at least 1 (one text then exceeds it, with a warning).

    A model holds its (b, L, V) logits, or, with its head deferred (``hidden_sizes``: H for such a model,
    None otherwise), its (b, L, H) hidden states, and then the two (block, V) blocks are set aside first.
    """
    if memory_budget_bytes < 1:
        raise InputError(f"the memory budget must be a positive number of bytes, got {memory_budget_bytes}")
    per_text = seq_len * sum(vocab if h is None else h for h in hidden_sizes) * LOGIT_BYTES
    blocks = 0
    if any(h is not None for h in hidden_sizes):
        blocks = 2 * head_block_positions(vocab, memory_budget_bytes) * vocab * LOGIT_BYTES
    fitting = (memory_budget_bytes // 2 - blocks) // per_text
    if fitting < 1:
        log.warning(
            "a memory budget of %d MiB is below one text's logits (%d MiB for L=%d, V=%d); going one text "
            "at a time",
            memory_budget_bytes >> 20,
            (2 * (per_text + blocks)) >> 20,
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
    hidden_sizes = (
        deferred_hidden_size(target),
        deferred_hidden_size(target if reference is None else reference),
    )
    step = sub_batch_size(batch_size, seq_len, output_width(target), memory_budget_bytes, hidden_sizes)
    parts = []
    for start in range(0, len(texts), batch_size):
        input_ids, attention_mask = encode(tokenizer, texts[start : start + batch_size], kind, seq_len, bos)
        for sub in range(0, input_ids.shape[0], step):
            ids, mask = input_ids[sub : sub + step].to(device), attention_mask[sub : sub + step].to(device)
            parts.append(batch_signals(target, reference, ids, mask, k, memory_budget_bytes, precision))
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
    memory_budget_bytes: int,
    precision: Precision = "fp32",
) -> tuple[Tensor, Tensor, TokenStats]:
    """One forward pass of each model on (b, L) ids -> features and mask on CPU, token stats.

    The feature chunks' scratch stays within half of ``memory_budget_bytes``, deferred heads' logit blocks
    within a quarter (module docstring); both models' logits or hidden states are freed on return.
    """
    block = head_block_positions(output_width(target), memory_budget_bytes)
    target_logits = forward_logits(target, input_ids, attention_mask, precision, block)
    with reference_of(target, reference) as ref:
        reference_logits = forward_logits(ref, input_ids, attention_mask, precision, block)
    features, mask, stats = lt_features_and_stats(
        target_logits,
        reference_logits,
        input_ids,
        attention_mask,
        k=k,
        memory_budget_bytes=max(1, memory_budget_bytes // 2),
    )
    return features.cpu(), mask.cpu(), stats
