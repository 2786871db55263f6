"""One forward pass of target and reference per batch -> LT-MIA features and the baselines' token stats.

Everything every attack needs comes from these two passes (SPEC §4 last paragraph). When the target is a
LoRA model and no reference is given, the reference is the same model with adapters disabled: one model in
memory, as SPEC §3 prescribes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from ltmia.data import SEQ_LEN, Kind, encode
from ltmia.errors import InputError
from ltmia.features import lt_features_and_stats
from ltmia.tokenstats import TokenStats


@dataclass
class Signals:
    """Per-text outputs of ``extract`` for N texts: features (N, L, 7k+14), mask (N, L), stats (N, L-1)."""

    features: Tensor
    mask: Tensor
    stats: TokenStats


def output_width(model: nn.Module) -> int:
    """Width of the model's logits (the LM head's rows), which may exceed the tokenizer's vocabulary."""
    return model.get_output_embeddings().weight.shape[0]


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
    context = target.disable_adapter() if reference is None else nullcontext()
    with context:
        yield target if reference is None else reference


def concat_stats(parts: Sequence[TokenStats]) -> TokenStats:
    """Stack per-batch ``TokenStats`` along the text axis."""
    return TokenStats(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(TokenStats)})


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
    on_batch: Callable[[int], None] | None = None,
) -> Signals:
    """Texts -> ``Signals``: features (N, L, 7k+14) float32, mask (N, L), token stats (N, L-1), on CPU.

    ``reference=None`` means "the LoRA target with adapters disabled". Both models run on their own
    device; features are computed there and moved to CPU per batch.
    """
    if not texts:
        raise InputError("no texts to score; pass at least one non-empty text")
    check_compatible(target, reference, tokenizer)
    device = next(target.parameters()).device
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        input_ids, attention_mask = (t.to(device) for t in encode(tokenizer, batch, kind, seq_len))
        target_logits = target(input_ids=input_ids, attention_mask=attention_mask).logits
        with reference_of(target, reference) as ref:
            reference_logits = ref(input_ids=input_ids, attention_mask=attention_mask).logits
        features, mask, stats = lt_features_and_stats(
            target_logits, reference_logits, input_ids, attention_mask, k=k
        )
        parts.append((features.cpu(), mask.cpu(), stats))
        if on_batch is not None:
            on_batch(len(batch))
    return Signals(
        features=torch.cat([p[0] for p in parts]),
        mask=torch.cat([p[1] for p in parts]),
        stats=concat_stats([p[2] for p in parts]),
    )
