"""Per-token statistics for the baseline attacks, from the logits the LT-MIA features read (SPEC §4, §5).

Every baseline of SPEC §5 needs only log p_T(y_t), log p_R(y_t), the Min-K%++ moments of p_T and whether the
target's argmax is y_t. They come from the same logits as the features (SPEC §4 last paragraph), so no attack
ever costs another model pass; ``ltmia.features.lt_features_and_stats`` computes both in one sweep.

Conventions shared with ``ltmia.features``: position t = 0..L-2 predicts y_t = input_ids[t+1] and is valid
when attention_mask[t+1] = 1. Only valid positions are computed, in chunks of positions so that the (chunk, V)
float32 temporaries stay within a byte budget (``memory_budget_bytes``) whatever the vocabulary size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ltmia.settings.store import MEMORY_BUDGET_BYTES  # the bound on ``ltmia.signals.extract``'s memory

CHUNK_BYTES = MEMORY_BUDGET_BYTES // 2
"""Default byte budget for the (chunk, V) temporaries of one chunk of positions: the half of
`MEMORY_BUDGET_BYTES` that ``extract`` leaves to them (the other half holds the two models' logits)."""

_STATS_BYTES_PER_LOGIT = 32
"""Peak bytes per (position, vocabulary entry) of `token_stats`: two float32 logit copies plus the
source-dtype gathers, log-probs, probs and one product temporary."""


@dataclass(frozen=True)
class TokenStats:
    """Per-token arrays of one batch of N texts; each (N, L-1), on CPU, float32 unless noted.

    Entries at invalid positions are 0 (False for the bool arrays); read them only where ``valid`` holds.
    """

    target_logprob: Tensor  # log p_T(y_t)
    reference_logprob: Tensor  # log p_R(y_t)
    mink_mu: Tensor  # sum_v p_T(v) log p_T(v)
    mink_sigma: Tensor  # sqrt(sum_v p_T(v) (log p_T(v))^2 - mu^2)
    target_argmax_hit: Tensor  # bool: y_t is an argmax of z_T (rank_T(y_t) = 1)
    valid: Tensor  # bool: attention_mask[t+1] == 1


CPU_CHUNK_LOGITS = 2**20
"""On CPU, at most this many (position, vocab entry) pairs per chunk, whatever the budget: every pass over a
4 MiB (chunk, V) float32 block then runs from cache rather than memory. On 2 cores of an AMD EPYC (2 MiB L2,
32 MiB L3) the features ran 1.5x (V = 4k) to 2.3x (V = 128k) faster than in chunks of hundreds of MiB, with
identical results. GPUs want large chunks (fewer kernel launches), so there the budget alone decides."""


def auto_chunk_positions(
    vocab_size: int, bytes_per_logit: int, budget_bytes: int = CHUNK_BYTES, device: torch.device | None = None
) -> int:
    """Positions per chunk so that ``bytes_per_logit`` bytes per (position, vocab entry) fit ``budget_bytes``
    and, on CPU (``device`` None or a CPU), the chunk has at most `CPU_CHUNK_LOGITS` entries.

    At least one position: a budget below one position's scratch (~12 MiB at V = 256k) is exceeded by that.
    """
    if budget_bytes < 1:
        raise ValueError(f"the memory budget must be a positive number of bytes, got {budget_bytes}")
    fitting = budget_bytes // (bytes_per_logit * vocab_size)
    if device is None or torch.device(device).type == "cpu":
        fitting = min(fitting, CPU_CHUNK_LOGITS // vocab_size)
    return max(1, fitting)


def logit_chunks(
    target_logits: Tensor,
    reference_logits: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    chunk_positions: int,
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
    """Valid positions in chunks: (N, L, V) x2, (N, L) x2 -> yields (n, t, z_T, z_R, y).

    n, t, y are (C,) (text index, position, true next token); z_T, z_R are (C, V) float32, because
    log-softmax sums and rank comparisons in bf16/fp16 would lose the precision the features rely on.
    """
    positions = attention_mask[:, 1:].bool().nonzero()
    for start in range(0, positions.shape[0], chunk_positions):
        n, t = positions[start : start + chunk_positions].unbind(1)
        yield (
            n,
            t,
            position_rows(target_logits, n, t),
            position_rows(reference_logits, n, t),
            input_ids[n, t + 1],
        )


def position_rows(logits: Tensor, n: Tensor, t: Tensor) -> Tensor:
    """(N, L, V), (C,) x2 -> (C, V) float32 copy of the logits at (n, t); never copies all of ``logits``."""
    if logits.is_contiguous():  # index_select on the (N L, V) view is cheaper than indexing by (n, t)
        return logits.view(-1, logits.shape[-1]).index_select(0, n * logits.shape[1] + t).float()
    return logits[n, t].float()


def chunk_stats(z_t: Tensor, z_r: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(C, V), (C, V), (C,) -> log p_T(y), log p_R(y), mu, sigma, argmax hit; each (C,).

    sigma is computed as sqrt(sum_v p (log p - mu)^2), algebraically equal to SPEC §5's
    sum_v p (log p)^2 - mu^2 (since sum_v p = 1) but free of the cancellation that makes the
    latter negative (then NaN after sqrt) for peaked distributions in float32.
    """
    log_p = z_t - torch.logsumexp(z_t, dim=-1, keepdim=True)
    p = log_p.exp()
    scratch = torch.mul(p, log_p)  # one (C, V) buffer for both sums: fresh allocations cost page faults
    mu = scratch.sum(-1)
    sigma = torch.sub(log_p, mu[:, None], out=scratch).square_().mul_(p).sum(-1).sqrt()
    a = z_t.gather(-1, y[:, None])
    lp_ref = (z_r.gather(-1, y[:, None]) - torch.logsumexp(z_r, dim=-1, keepdim=True)).squeeze(-1)
    hit = z_t.amax(-1) == a.squeeze(-1)
    return log_p.gather(-1, y[:, None]).squeeze(-1), lp_ref, mu, sigma, hit


def stats_columns(valid: Tensor) -> list[Tensor]:
    """(N, L-1) valid mask -> zeroed (N, L-1) outputs for the five `chunk_stats` values, on its device."""
    dtypes = [torch.float32] * 4 + [torch.bool]
    return [torch.zeros(valid.shape, dtype=dtype, device=valid.device) for dtype in dtypes]


def to_token_stats(columns: list[Tensor], valid: Tensor) -> TokenStats:
    """Filled `stats_columns` and the (N, L-1) valid mask -> a `TokenStats` on CPU."""
    target_logprob, reference_logprob, mink_mu, mink_sigma, target_argmax_hit = (c.cpu() for c in columns)
    return TokenStats(
        target_logprob, reference_logprob, mink_mu, mink_sigma, target_argmax_hit, valid=valid.cpu()
    )


def token_stats(
    target_logits: Tensor,
    reference_logits: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    chunk_positions: int | None = None,
    memory_budget_bytes: int = CHUNK_BYTES,
) -> TokenStats:
    """(N, L, V) x2, (N, L) x2 -> `TokenStats` of (N, L-1) arrays, for when no features are wanted.

    Cheaper than ``ltmia.features.lt_features_and_stats`` (no ranks or top-k); identical values. Positions
    go ``chunk_positions`` at a time, by default as many as keep the scratch within ``memory_budget_bytes``;
    the values do not depend on either.
    """
    valid = attention_mask[:, 1:].bool()
    columns = stats_columns(valid)
    vocab = target_logits.shape[-1]
    chunk = chunk_positions or auto_chunk_positions(
        vocab, _STATS_BYTES_PER_LOGIT, memory_budget_bytes, target_logits.device
    )
    for n, t, z_t, z_r, y in logit_chunks(target_logits, reference_logits, input_ids, attention_mask, chunk):
        for column, values in zip(columns, chunk_stats(z_t, z_r, y), strict=True):
            column[n, t] = values
    return to_token_stats(columns, valid)
