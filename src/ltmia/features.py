"""LT-MIA per-token features (SPEC §4): target vs reference logits -> (N, L, 7k+14) float32 and a mask.

Layout per position (k = 20 gives 154 dims), blocks in this order; j-major interleaving inside head and tail:

====== ============ ==================================================================================
block  indices      content (M = max of the target and reference logit of the same token)
====== ============ ==================================================================================
truth  0..3         z_T[y]-M, z_R[y]-M, lr(rank_T(y)), lr(rank_R(y))
head   4..4k+3      for j = 1..k: z_T[i_j]-M_j, z_R[i_j]-M_j, lr(rank_R(i_j)), lr(rank_T(r_j))
tail   4k+4..7k+3   for j = 1..k: z_T[b_j]-M_j, z_R[b_j]-M_j, lr(rank_R(b_j))
loss   7k+4..7k+6   CE_T, CE_R, D = CE_T - CE_R
global 7k+7..7k+13  mean CE_T, std CE_T, mean CE_R, std CE_R, mean D, std D, sum D (over the text)
====== ============ ==================================================================================

i_j: the target's top-k ids (descending z_T); r_j: the reference's top-k ids (descending z_R); b_j: the
target's k lowest ids (ascending z_T). Equal logits are ordered by lower token id first, so the layout is
deterministic (``torch.topk`` alone leaves the choice among ties unspecified).
rank_M(v) = 1 + #{u: z_M[u] > z_M[v]}; lr(r) = log(1 + r) / log(V + 1).

Memory: real vocabularies reach V = 256k, so positions are processed in chunks whose (chunk, V) temporaries
fit a byte budget (``memory_budget_bytes``; ``ltmia.signals.extract`` also sub-batches the forward passes so
that the logits fit one); on CPU chunks are also kept cache-sized (``tokenstats.CPU_CHUNK_LOGITS``). Ranks
never materialise a (chunk, V, k) comparison nor sort the vocabulary: each row's logits are bucketed into
equal-width bins between its min and max, one histogram counts the logits in bins above each query's, and
only the few logits sharing a query's bin are compared exactly (`count_greater`), O(V) with a handful of
passes over the row. ``benchmarks/extract_speed.py`` compares it with sorting the vocabulary per position.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ltmia.tokenstats import (
    CHUNK_BYTES,
    Logits,
    TokenStats,
    auto_chunk_positions,
    chunk_stats,
    logit_chunks,
    stats_columns,
    to_token_stats,
)

FEATURE_LAYOUT_VERSION = 1

STD_EPS = 1e-6
"""std = sqrt(population variance + STD_EPS) in the global block (SPEC §4)."""

_FEATURE_BYTES_PER_LOGIT = 48
"""Peak bytes per (position, vocabulary entry) of a feature chunk: `token_stats`' 32 plus the int64 bucket
index of the rank counts and the top-k scratch."""


def feature_dim(k: int = 20) -> int:
    """Number of feature dims: 4 + 4k + 3k + 3 + 7 = 7k + 14 (154 for k = 20)."""
    return 7 * k + 14


def feature_groups(k: int = 20) -> dict[str, list[int]]:
    """Feature index groups for analysis (SPEC §4 last paragraph); every index is in exactly one group.

    target: lr(rank_T(y)), CE_T, mean and std of CE_T — they read the target model alone.
    reference: lr(rank_R(y)), CE_R, mean and std of CE_R — the reference model alone.
    comparison: everything else, i.e. the pair-normalised logits (truth, head and tail: each is one model's
    logit minus the max of both, so it carries both), the cross ranks (rank_R of target-chosen ids, rank_T of
    reference-chosen ids), D and its mean, std and sum.
    """
    loss = 7 * k + 4
    target = [2, loss, loss + 3, loss + 4]
    reference = [3, loss + 1, loss + 5, loss + 6]
    taken = set(target + reference)
    comparison = [i for i in range(feature_dim(k)) if i not in taken]
    return {"comparison": comparison, "target": target, "reference": reference}


def count_greater(z: Tensor, queries: Tensor) -> Tensor:
    """(C, V), (C, m) float32 -> (C, m) int64: #{u: z[u] > queries[j]} per row, exact under ties.

    Each row's logits are put into B equal-width bins between the row's min and max (B ~ 4 sqrt(V m)). The
    bin index is monotone in the value, so a logit in a higher bin than a query's is greater and one in a
    lower bin is not: a histogram of the bins counts those for all m queries at once. The few logits that
    share a bin with a query are compared with that bin's queries exactly (`same_bin_greater`). O(V) time
    and (C, V) int32 memory; no sort of the vocabulary and no binary search per logit.
    """
    rows, vocab = z.shape
    m = queries.shape[1]
    n_bins = max(1, min(vocab, int(4 * math.sqrt(vocab * m))))
    index_dtype = torch.int32 if rows * n_bins < 2**31 else torch.int64
    low, high = z.amin(-1, keepdim=True), z.amax(-1, keepdim=True)
    span = high - low
    scale = torch.where(span > 0, n_bins / span, 0.0).clamp_(max=2.0**100)
    shift = -low * scale
    offsets = torch.arange(0, rows * n_bins, n_bins, device=z.device, dtype=index_dtype)[:, None]

    def bins(x: Tensor) -> Tensor:  # global bin ids row * B + b, flat; monotone in x within a row
        return torch.addcmul(shift, x, scale).clamp_(0, n_bins - 1).to(index_dtype).add_(offsets).view(-1)

    z_bins, query_bins = bins(z), bins(queries)
    hist = torch.bincount(z_bins, minlength=rows * n_bins).view(rows, n_bins)
    higher_bin = (hist.sum(-1, keepdim=True) - hist.cumsum(-1)).view(-1)[query_bins]
    same_bin = same_bin_greater(z.reshape(-1), z_bins, queries.reshape(-1), query_bins, rows * n_bins)
    return (higher_bin + same_bin).view(rows, m)


def same_bin_greater(
    values: Tensor, bins: Tensor, queries: Tensor, query_bins: Tensor, n_bins: int
) -> Tensor:
    """Flat logits and queries with their global bin ids -> per query #{logits in its bin, greater than it}.

    Queries are sorted by bin so that each bin's queries are a run; every logit in a query's bin is compared
    with the run's s-th query at step s. Steps = the most queries sharing one bin (1 or 2 unless logits tie
    a lot); the logits are taken in blocks so that the scratch stays below ~4 bytes per logit.
    """
    per_bin = torch.bincount(query_bins, minlength=n_bins)
    first = per_bin.cumsum(0) - per_bin
    order = query_bins.argsort(stable=True)
    sorted_queries = queries[order]
    counts = torch.zeros(queries.shape[0], dtype=torch.int64, device=values.device)
    close = (per_bin > 0).index_select(0, bins).nonzero().squeeze(-1)
    for block in close.split(max(1, values.shape[0] // 16)) if close.numel() else ():
        bin_ids = bins.index_select(0, block)
        block_values = values.index_select(0, block)
        start, count = first.index_select(0, bin_ids), per_bin.index_select(0, bin_ids)
        for step in range(int(count.max())):
            at = (start + step).clamp_(max=queries.shape[0] - 1)
            greater = (count > step) & (block_values > sorted_queries.index_select(0, at))
            counts.index_add_(0, at, greater.long())
    return torch.empty_like(counts).index_put_((order,), counts)


def boundary_ids(z: Tensor, kth: Tensor, k: int, largest: bool) -> Tensor:
    """(C, V), (C, 1) k-th largest (smallest) value -> (C, k) ids, unordered: every id beyond the k-th
    value and, of those equal to it, the lowest ids. O(V): one ``topk`` on a key, no sort.
    """
    beyond = z > kth if largest else z < kth
    lower_id_first = -torch.arange(z.shape[-1], device=z.device, dtype=torch.float32)
    key = torch.where(beyond, math.inf, torch.where(z == kth, lower_id_first, -math.inf))
    return torch.topk(key, k, dim=-1).indices


def extreme_ids(z: Tensor, k: int, largest: bool) -> Tensor:
    """(C, V) -> (C, k) ids of the k largest (or smallest) logits, by value, equal values lower id first.

    ``torch.topk`` picks arbitrarily among values tied at the k-th place (common with bf16 logits), so
    rows with such a tie are reselected by `boundary_ids`; the order inside the k is then made canonical
    with two small stable sorts.
    """
    top = torch.topk(z, k + 1, dim=-1, largest=largest)
    ids = top.indices[:, :k]
    tied = top.values[:, k - 1] == top.values[:, k]
    if tied.any():
        ids[tied] = boundary_ids(z[tied], top.values[tied, k - 1 : k], k, largest)
    ids = ids.sort(dim=-1).values
    order = torch.sort(z.gather(-1, ids), dim=-1, descending=largest, stable=True).indices
    return ids.gather(-1, order)


def log_rank(rank: Tensor, vocab: int) -> Tensor:
    """Integer ranks -> lr(r) = log(1 + r) / log(V + 1) in (0, 1], float32: V-independent scale (SPEC §4)."""
    return torch.log1p(rank.float()) / math.log(vocab + 1)


def pair_normalised(z_t: Tensor, z_r: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(C, V) x2, (C, m) -> z_T[ids] - M, z_R[ids] - M with M = max of the two, each (C, m).

    Subtracting the pair's max removes each position's arbitrary logit offset while keeping the gap between
    the models, which is what makes the features comparable across architectures (SPEC §1).
    """
    a, b = z_t.gather(-1, ids), z_r.gather(-1, ids)
    top = torch.maximum(a, b)
    return a - top, b - top


def chunk_features(z_t: Tensor, z_r: Tensor, y: Tensor, ce_t: Tensor, ce_r: Tensor, k: int) -> Tensor:
    """(C, V) x2, (C,) x3 -> (C, 7k+7): the truth, head, tail and loss blocks (all but global) of SPEC §4."""
    rows, vocab = z_t.shape
    head, tail = extreme_ids(z_t, k, largest=True), extreme_ids(z_t, k, largest=False)
    ref_top = extreme_ids(z_r, k, largest=True)
    on_ref = torch.cat([y[:, None], head, tail], dim=-1)
    on_target = torch.cat([y[:, None], ref_top], dim=-1)
    lr_ref = log_rank(1 + count_greater(z_r, z_r.gather(-1, on_ref)), vocab)
    lr_target = log_rank(1 + count_greater(z_t, z_t.gather(-1, on_target)), vocab)
    y_t, y_r = pair_normalised(z_t, z_r, y[:, None])
    head_t, head_r = pair_normalised(z_t, z_r, head)
    tail_t, tail_r = pair_normalised(z_t, z_r, tail)
    blocks = [
        torch.cat([y_t, y_r, lr_target[:, :1], lr_ref[:, :1]], dim=-1),
        torch.stack([head_t, head_r, lr_ref[:, 1 : k + 1], lr_target[:, 1:]], dim=-1).reshape(rows, 4 * k),
        torch.stack([tail_t, tail_r, lr_ref[:, k + 1 :]], dim=-1).reshape(rows, 3 * k),
        torch.stack([ce_t, ce_r, ce_t - ce_r], dim=-1),
    ]
    return torch.cat(blocks, dim=-1)


def global_block(ce_t: Tensor, ce_r: Tensor, valid: Tensor) -> Tensor:
    """(N, T) x2, (N, T) bool -> (N, 7): mean, std of CE_T, CE_R, D over valid positions, then sum D.

    Population variance, std = sqrt(var + STD_EPS) (SPEC §4). These give every position the whole text's
    context, which the per-position blocks lack.
    """
    weight = valid.float()
    count = weight.sum(-1, keepdim=True).clamp_min(1.0)
    d = ce_t - ce_r
    columns = []
    for x in (ce_t, ce_r, d):
        mean = (x * weight).sum(-1, keepdim=True) / count
        var = ((x - mean).square() * weight).sum(-1, keepdim=True) / count
        columns += [mean, (var + STD_EPS).sqrt()]
    columns.append((d * weight).sum(-1, keepdim=True))
    return torch.cat(columns, dim=-1)


def lt_features_and_stats(
    target_logits: Logits,
    reference_logits: Logits,
    input_ids: Tensor,
    attention_mask: Tensor,
    k: int = 20,
    chunk_positions: int | None = None,
    memory_budget_bytes: int = CHUNK_BYTES,
) -> tuple[Tensor, Tensor, TokenStats]:
    """(N, L, V) x2, (N, L) x2 -> features (N, L, 7k+14) float32, mask (N, L) bool, `TokenStats` (N, L-1).

    One sweep over the logits serves both the features and the baselines (SPEC §4 last paragraph). Features
    and mask are on the logits' device; the stats on CPU. Invalid positions are zero and one all-zero step
    is appended, so the mask's last entry is always False. Logits are assumed finite; needs V > k.

    Positions go ``chunk_positions`` at a time, by default as many as keep the (chunk, V) scratch within
    ``memory_budget_bytes`` (beyond the logits themselves); the results do not depend on either. Either
    logits may be ``tokenstats.DeferredLogits``: computed from the final hidden states chunk by chunk.
    """
    n_texts, length, vocab = target_logits.shape
    if vocab <= k:
        raise ValueError(f"LT-MIA features need a vocabulary larger than k={k}, got V={vocab}")
    valid = attention_mask[:, 1:].bool()
    columns = stats_columns(valid)
    features = torch.zeros(n_texts, length, feature_dim(k), device=target_logits.device)
    chunk = chunk_positions or auto_chunk_positions(
        vocab, _FEATURE_BYTES_PER_LOGIT, memory_budget_bytes, target_logits.device
    )
    for n, t, z_t, z_r, y in logit_chunks(target_logits, reference_logits, input_ids, attention_mask, chunk):
        stats = chunk_stats(z_t, z_r, y)
        for column, values in zip(columns, stats, strict=True):
            column[n, t] = values
        features[n, t, : 7 * k + 7] = chunk_features(z_t, z_r, y, -stats[0], -stats[1], k)
    ce_t, ce_r = -columns[0], -columns[1]
    summary = global_block(ce_t, ce_r, valid)[:, None, :]
    features[:, :-1, 7 * k + 7 :] = torch.where(valid[..., None], summary, 0.0)
    mask = torch.zeros(n_texts, length, dtype=torch.bool, device=target_logits.device)
    mask[:, :-1] = valid
    return features, mask, to_token_stats(columns, valid)


def lt_features(
    target_logits: Logits,
    reference_logits: Logits,
    input_ids: Tensor,
    attention_mask: Tensor,
    k: int = 20,
    chunk_positions: int | None = None,
    memory_budget_bytes: int = CHUNK_BYTES,
) -> tuple[Tensor, Tensor]:
    """(N, L, V) x2, (N, L) x2 -> features (N, L, 7k+14) float32, mask (N, L) bool.

    The features half of `lt_features_and_stats`; use that one when the baselines' stats are wanted too.
    """
    features, mask, _ = lt_features_and_stats(
        target_logits, reference_logits, input_ids, attention_mask, k, chunk_positions, memory_budget_bytes
    )
    return features, mask
