"""The forward passes costly attacks share: one loaded model pair, SPEC §2 encoding, batched, no gradients.

`Models` is what a run loads once and hands to every costly attack: target, reference (None: the LoRA target
with adapters disabled, SPEC §3), tokenizer and the encoding the store used (kind, BOS, L), plus batch size,
precision and memory budget. It caches the target's *plain pass* (the SPEC §2 encoding of the texts, exactly
what the shared pass read) and any prefix-conditioned pass, so attacks that calibrate against the plain
log-likelihood (ReCaLL, Con-ReCall, DC-PDD, lowercase, PAC, neighbourhood) share it, as Fast-MIA caches
log-probs across methods.

Conventions follow ``ltmia.tokenstats``: in an (N, T) row, position t predicts input_ids[t+1] and is valid
when attention_mask[t+1] = 1. Logits are float32 (bf16 autocast keeps the LM head in float32,
``ltmia.device.float32_head``); a sub-batch holds few enough rows that its (b, T, V) logits fit the budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ltmia.attacks.base import valid_mean
from ltmia.data import SEQ_LEN, Bos, Kind, encode
from ltmia.device import Precision, autocast, float32_head
from ltmia.signals import LOGIT_BYTES, reference_of
from ltmia.tokenstats import MEMORY_BUDGET_BYTES


@dataclass
class Models:
    """A loaded target / reference pair and how texts are encoded for it; reused by every costly attack."""

    target: nn.Module
    reference: nn.Module | None  # None: the LoRA target with adapters disabled
    tokenizer: Any  # a transformers tokenizer
    kind: Kind = "text"
    bos: Bos = "never"
    seq_len: int = SEQ_LEN
    batch_size: int = 8
    precision: Precision = "fp32"
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES
    cache: dict = field(default_factory=dict, repr=False)  # (what, texts, ...) -> tensors

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """SPEC §2 encoding with the store's settings: (N, L) input ids and attention mask."""
        return encode(self.tokenizer, texts, self.kind, self.seq_len, self.bos)


def per_sub_batch(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    models: Models,
    reduce: Callable[[Tensor, Tensor, Tensor], Tensor],
) -> Tensor:
    """Run ``model`` on (N, T) rows in sub-batches; concatenate ``reduce(logits, ids, mask)`` of each.

    ``reduce`` turns (b, T, V) float32 logits into something small, (b, T-1) or (b, T-1, k), so no more than
    one sub-batch of logits is ever held: b rows' logits and one temporary of their size fit the memory
    budget (at least one row: a long prefixed row may exceed it).
    """
    device = next(model.parameters()).device
    row_bytes = 2 * input_ids.shape[1] * len(models.tokenizer) * LOGIT_BYTES
    step = max(1, min(models.batch_size, models.memory_budget_bytes // row_bytes))
    parts = []
    with torch.no_grad():
        for start in range(0, input_ids.shape[0], step):
            ids = input_ids[start : start + step].to(device)
            mask = attention_mask[start : start + step].to(device)
            with autocast(models.precision, device), float32_head(model):
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            parts.append(reduce(logits, ids, mask).cpu())
            del logits
    return torch.cat(parts)


def next_token_logprobs(logits: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """(b, T, V) logits, (b, T) ids and mask -> (b, T-1) log p(ids[t+1] | ids[:t+1]); 0 where invalid."""
    shifted = logits[:, :-1]
    truth = shifted.gather(-1, ids[:, 1:, None]).squeeze(-1)
    values = truth - torch.logsumexp(shifted, dim=-1)
    return torch.where(mask[:, 1:].bool(), values, 0.0)


def token_logprobs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, models: Models) -> Tensor:
    """(N, T) rows -> (N, T-1) float32 log-probs of each next token under ``model`` (0 where invalid)."""
    return per_sub_batch(model, input_ids, attention_mask, models, next_token_logprobs)


def reference_logprobs(models: Models, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """`token_logprobs` under the reference (the LoRA target with adapters disabled when it has none)."""
    with reference_of(models.target, models.reference) as reference:
        return token_logprobs(reference, input_ids, attention_mask, models)


@dataclass(frozen=True)
class Pass:
    """Log-probs of N texts' SPEC §2 encodings: ``logprob`` and ``valid`` (N, L-1), ``ids`` and ``mask``
    (N, L)."""

    logprob: Tensor
    valid: Tensor
    ids: Tensor
    mask: Tensor

    def mean_nll(self) -> Tensor:
        """(N,) float64 -mean log p over each text's valid positions (NLL_T of SPEC §5)."""
        return -valid_mean(self.logprob, self.valid)


def text_seed(text: str, seed: int) -> int:
    """A seed from ``seed`` and the text itself, so random draws for a text are the same in any batch or
    subset."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "little") % 2**63


def text_pass(models: Models, texts: Sequence[str]) -> Pass:
    """The target's pass over texts encoded as SPEC §2 says, not cached (for altered texts)."""
    ids, mask = models.encode(texts)
    return Pass(token_logprobs(models.target, ids, mask, models), mask[:, 1:].bool(), ids, mask)


def plain_pass(models: Models, texts: Sequence[str]) -> Pass:
    """The target's pass over the texts themselves: the shared pass's target half, cached per run."""
    key = ("plain", tuple(texts))
    if key not in models.cache:
        models.cache[key] = text_pass(models, texts)
    return models.cache[key]
