"""Per-token statistics for the baseline attacks, from the logits the LT-MIA features read (SPEC §4, §5).

Every baseline of SPEC §5 needs only log p_T(y_t), log p_R(y_t), the Min-K%++ moments of p_T and whether the
target's argmax is y_t. They come from the same logits as the features (SPEC §4 last paragraph), so no attack
ever costs another model pass; ``ltmia.features.lt_features_and_stats`` computes both in one sweep.

Conventions shared with ``ltmia.features``: position t = 0..L-2 predicts y_t = input_ids[t+1] and is valid
when attention_mask[t+1] = 1. Only valid positions are computed, in chunks of positions so that the (chunk, V)
float32 temporaries stay within a byte budget (``memory_budget_bytes``) whatever the vocabulary size.

The logits come either as a (N, L, V) tensor or as `DeferredLogits`: the final hidden states and the LM
head, whose logits are computed block by block inside the chunk loop, so that (N, L, V) never exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

import torch
import torch.nn.functional as F
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


HEAD_BLOCK_POSITIONS = 512
"""At most this many positions per LM-head product of `DeferredLogits`. A (C, H) x (H, V) product reads all
of the (V, H) head whatever C, so small C is memory-bound: at Gemma-3-270M's head (V = 262k, H = 640) on
2 cores of an AMD EPYC, 2,048 positions took 4.1x (C = 4), 2.0x (32), 1.3x (128) and 1.0x (512) the time of
one (2048, H) product. Beyond 512 only the (C, V) block's memory grows."""


MIN_HEAD_ROWS = 16
"""`DeferredLogits` computes at least this many rows per head product (see `DeferredLogits.rows`): on 2
cores of an AMD EPYC, products of 1-3, 5-7 and 9-11 rows rounded differently from larger ones, which all
agreed with one another and with the head run on a whole (b, L, H) batch."""


@dataclass(frozen=True, eq=False)
class DeferredLogits:
    """The (N, L, V) logits of a model whose LM head was not run: final hidden states (N, L, H), the head's
    (V, H) weight and (V,) bias or None in float32 (converted once, not per block); `rows` computes
    z = h W^T + b for the positions asked, in float32.

    ``block_positions`` bounds how many positions one `rows` call of `logit_chunks` asks for, so that the
    (block, V) float32 logits fit the memory budget (``ltmia.signals``). Same values as a float32 head run on
    all of ``hidden`` up to float rounding (the matrix product is split differently).
    """

    hidden: Tensor
    weight: Tensor
    bias: Tensor | None
    block_positions: int = HEAD_BLOCK_POSITIONS

    @property
    def shape(self) -> torch.Size:
        """(N, L, V), the shape the logits would have."""
        return torch.Size((*self.hidden.shape[:2], self.weight.shape[0]))

    @property
    def device(self) -> torch.device:
        return self.hidden.device

    def rows(self, n: Tensor, t: Tensor) -> Tensor:
        """(C,) x2 -> (C, V) float32 logits at (n, t); autocast off, as ``ltmia.device.float32_head``.

        Fewer than `MIN_HEAD_ROWS` rows are padded with zero rows: CPU BLAS takes another path for them
        whose rounding differs, and the padding keeps every row's logits independent of how positions are
        split into blocks (so of the memory budget).
        """
        hidden = self.hidden[n, t].float()
        if hidden.shape[0] < MIN_HEAD_ROWS:
            hidden = torch.cat([hidden, hidden.new_zeros(MIN_HEAD_ROWS - hidden.shape[0], hidden.shape[1])])
        with torch.autocast(self.hidden.device.type, enabled=False):
            return F.linear(hidden, self.weight, self.bias)[: n.shape[0]]


Logits: TypeAlias = Tensor | DeferredLogits
"""A model's logits for `logit_chunks`: (N, L, V) or deferred (`DeferredLogits`)."""


def logit_chunks(
    target_logits: Logits,
    reference_logits: Logits,
    input_ids: Tensor,
    attention_mask: Tensor,
    chunk_positions: int,
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
    """Valid positions in chunks: (N, L, V) x2, (N, L) x2 -> yields (n, t, z_T, z_R, y).

    n, t, y are (C,) (text index, position, true next token); z_T, z_R are (C, V) float32, because
    log-softmax sums and rank comparisons in bf16/fp16 would lose the precision the features rely on.
    With `DeferredLogits` the logits of a block of whole chunks (`block_positions`) are computed at once
    and each chunk is a view into them: the head product is efficient only on many rows, the chunk's
    passes over V only when it is cache-sized (`CPU_CHUNK_LOGITS`). Without, a block is one chunk.
    """
    positions = attention_mask[:, 1:].bool().nonzero()
    block = block_positions(target_logits, reference_logits, chunk_positions)
    for start in range(0, positions.shape[0], block):
        n, t = positions[start : start + block].unbind(1)
        z_t, z_r = position_rows(target_logits, n, t), position_rows(reference_logits, n, t)
        y = input_ids[n, t + 1]
        for first in range(0, n.shape[0], chunk_positions):
            c = slice(first, first + chunk_positions)
            yield n[c], t[c], z_t[c], z_r[c], y[c]


def block_positions(target_logits: Logits, reference_logits: Logits, chunk_positions: int) -> int:
    """Positions whose (block, V) logits `logit_chunks` takes at once: whole chunks, as many as the
    smallest ``block_positions`` of the deferred logits allows; one chunk when neither is deferred."""
    deferred = [z.block_positions for z in (target_logits, reference_logits) if isinstance(z, DeferredLogits)]
    return chunk_positions * max(1, min(deferred, default=chunk_positions) // chunk_positions)


def position_rows(logits: Logits, n: Tensor, t: Tensor) -> Tensor:
    """(N, L, V), (C,) x2 -> (C, V) float32 copy of the logits at (n, t); never copies all of ``logits``."""
    if isinstance(logits, DeferredLogits):
        return logits.rows(n, t)
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
    target_logits: Logits,
    reference_logits: Logits,
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
