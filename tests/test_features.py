"""LT-MIA features (SPEC §4) and the token stats of the same pass, checked against hand arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ltmia.features import (
    count_greater,
    extreme_ids,
    feature_dim,
    feature_groups,
    log_rank,
    lt_features,
    lt_features_and_stats,
)
from ltmia.tokenstats import TokenStats, token_stats

# One text, L = 3, V = 5: positions t = 0, 1 predict y_0 = ids[1] = 2 and y_1 = ids[2] = 2.
Z_T = [[1.0, 3.0, 0.0, 3.0, -2.0], [0.5, 0.5, 2.0, 0.5, 1.0], [9.0, 9.0, 9.0, 9.0, 9.0]]
Z_R = [[2.0, 0.0, 1.0, -1.0, 0.0], [1.0, 0.5, 1.0, 0.0, 2.0], [9.0, 9.0, 9.0, 9.0, 9.0]]
IDS = [[0, 2, 2]]


def lr(rank: int) -> float:
    """lr(r) = log(1 + r) / log(V + 1) with V = 5."""
    return math.log(1 + rank) / math.log(6)


def lse(z: list[float]) -> float:
    return math.log(sum(math.exp(v) for v in z))


def hand_features() -> tuple[torch.Tensor, list[float], list[float]]:
    """Per-position blocks of the tiny case (k = 2), worked out by hand; also CE_T and CE_R per position."""
    ce_t = [lse(Z_T[0]) - 0.0, lse(Z_T[1]) - 2.0]  # -log softmax(z_T)[y] = lse(z_T) - z_T[y]
    ce_r = [lse(Z_R[0]) - 1.0, lse(Z_R[1]) - 1.0]
    # t = 0. y = 2: a = 0, b = 1, M = 1. rank_T(2): 1, 3, 3 beat 0 -> 4; rank_R(2): only 2 beats 1 -> 2.
    # head: target top-2 = ids 1, 3 (both 3.0, lower id first); reference top-2 r = ids 0 (2.0), 2 (1.0).
    #   j=1: id 1: z_T 3, z_R 0, M 3; rank_R(1): 2, 1 beat 0 -> 3; rank_T(r_1 = 0): 3, 3 beat 1 -> 3.
    #   j=2: id 3: z_T 3, z_R -1, M 3; rank_R(3): four beat -1 -> 5; rank_T(r_2 = 2) -> 4.
    # tail: target lowest-2 ascending = ids 4 (-2), 2 (0).
    #   j=1: id 4: z_T -2, z_R 0, M 0; rank_R(4): 2, 1 beat 0 -> 3.   j=2: id 2: -1, 0 (M 1); rank_R(2) = 2.
    t0 = [-1.0, 0.0, lr(4), lr(2)]
    t0 += [0.0, -3.0, lr(3), lr(3), 0.0, -4.0, lr(5), lr(4)]
    t0 += [-2.0, 0.0, lr(3), -1.0, 0.0, lr(2)]
    # t = 1. y = 2: a = 2, b = 1, M = 2. rank_T(2) = 1 (the argmax); rank_R(2): only 2.0 beats 1 -> 2.
    # head: target top-2 = ids 2 (2.0), 4 (1.0); reference top-2 = 4 (2.0), then 0 (1.0, tied with id 2).
    #   j=1: id 2: 2, 1, M 2; rank_R(2) = 2; rank_T(r_1 = 4): only 2.0 beats 1.0 -> 2.
    #   j=2: id 4: 1, 2, M 2; rank_R(4) = 1; rank_T(r_2 = 0): 2.0, 1.0 beat 0.5 -> 3.
    # tail: lowest-2 of the tied 0.5s at ids 0, 1, 3 -> ids 0, 1.
    #   j=1: id 0: 0.5, 1, M 1; rank_R(0): 2.0 beats 1.0 -> 2.   j=2: id 1: 0.5, 0.5, M 0.5; rank_R(1) -> 4.
    t1 = [0.0, -1.0, lr(1), lr(2)]
    t1 += [0.0, -1.0, lr(2), lr(2), -1.0, 0.0, lr(1), lr(3)]
    t1 += [-0.5, 0.0, lr(2), 0.0, 0.0, lr(4)]
    rows = [[*block, ct, cr, ct - cr] for block, ct, cr in zip([t0, t1], ce_t, ce_r, strict=True)]
    return torch.tensor(rows), ce_t, ce_r


def tiny_inputs(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    z_t = torch.tensor([Z_T], dtype=dtype)
    z_r = torch.tensor([Z_R], dtype=dtype)
    return z_t, z_r, torch.tensor(IDS), torch.ones(1, 3, dtype=torch.long)


def test_tiny_vocabulary_by_hand() -> None:
    features, mask = lt_features(*tiny_inputs(), k=2)
    assert features.shape == (1, 3, feature_dim(2)) == (1, 3, 28)
    assert features.dtype == torch.float32
    assert mask.tolist() == [[True, True, False]]
    expected, ce_t, ce_r = hand_features()
    torch.testing.assert_close(features[0, :2, :21], expected, rtol=0, atol=1e-6)
    # global: population std over the two positions, std = sqrt(var + 1e-6), then sum of D.
    d = [ce_t[0] - ce_r[0], ce_t[1] - ce_r[1]]
    spread = [abs(x[0] - x[1]) / 2 for x in (ce_t, ce_r, d)]  # population std of two values
    summary = []
    for x, s in zip((ce_t, ce_r, d), spread, strict=True):
        summary += [(x[0] + x[1]) / 2, math.sqrt(s * s + 1e-6)]
    summary.append(d[0] + d[1])
    torch.testing.assert_close(features[0, :2, 21:], torch.tensor([summary, summary]), rtol=0, atol=1e-5)
    assert not features[0, 2].any()


def test_token_stats_of_the_same_pass_by_hand() -> None:
    _, _, stats = lt_features_and_stats(*tiny_inputs(), k=2)
    _, ce_t, ce_r = hand_features()
    torch.testing.assert_close(stats.target_logprob, -torch.tensor([ce_t]), rtol=0, atol=1e-6)
    torch.testing.assert_close(stats.reference_logprob, -torch.tensor([ce_r]), rtol=0, atol=1e-6)
    for t in range(2):
        log_p = np.array(Z_T[t]) - lse(Z_T[t])
        p = np.exp(log_p)
        mu = float((p * log_p).sum())
        sigma = math.sqrt(float((p * log_p**2).sum()) - mu**2)  # SPEC §5's form
        assert stats.mink_mu[0, t].item() == pytest.approx(mu, abs=1e-5)
        assert stats.mink_sigma[0, t].item() == pytest.approx(sigma, abs=1e-5)
    assert stats.target_argmax_hit.tolist() == [[False, True]]  # y_1 = 2 is z_T's argmax at t = 1
    assert stats.valid.tolist() == [[True, True]]
    same = token_stats(*tiny_inputs())
    for name in TokenStats.__dataclass_fields__:
        assert torch.equal(getattr(same, name), getattr(stats, name)), name


def test_argmax_hit_counts_a_tied_maximum() -> None:
    """rank_T(y) = 1 means no logit beats y's, so y tied for the maximum is an argmax."""
    z = torch.tensor([[[0.0, 2.0, 2.0], [0.0, 0.0, 0.0]]])
    stats = token_stats(z, z, torch.tensor([[0, 2, 0]]), torch.ones(1, 2, dtype=torch.long))
    assert stats.target_argmax_hit.tolist() == [[True]]


def test_rank_counts_strictly_greater() -> None:
    z = torch.tensor([[3.0, 1.0, 3.0, 2.0, 1.0]])
    queries = z.clone()  # rank of every token: 1 + #{u: z[u] > z[v]}
    assert (1 + count_greater(z, queries)).tolist() == [[1, 4, 1, 3, 4]]
    generator = torch.Generator().manual_seed(0)
    z = torch.randint(-3, 4, (6, 40), generator=generator).float()  # many ties
    queries = z[:, torch.randint(0, 40, (9,), generator=generator)]
    brute = (z[:, :, None] > queries[:, None, :]).sum(1)
    assert torch.equal(count_greater(z, queries), brute)


def test_log_rank_scaling() -> None:
    ranks = torch.tensor([1, 2, 5])
    expected = torch.tensor([math.log(2), math.log(3), math.log(6)]) / math.log(6)
    torch.testing.assert_close(log_rank(ranks, 5), expected)
    assert log_rank(torch.tensor([5]), 5).item() == pytest.approx(1.0)  # the last rank of V = 5 maps to 1


@pytest.mark.parametrize("largest", [True, False])
def test_extreme_ids_break_ties_by_lower_id(largest: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    z = torch.randint(-2, 3, (32, 30), generator=generator).float()
    expected = torch.sort(z, dim=-1, descending=largest, stable=True).indices[:, :4]
    assert torch.equal(extreme_ids(z, 4, largest), expected)


def naive_position(z_t: list[float], z_r: list[float], y: int, k: int) -> list[float]:
    """SPEC §4's truth, head, tail and loss blocks for one position, straight from the definitions."""
    vocab = len(z_t)

    def rank(z: list[float], v: int) -> int:
        return 1 + sum(z[u] > z[v] for u in range(vocab))

    def pair(v: int) -> list[float]:
        top = max(z_t[v], z_r[v])
        return [z_t[v] - top, z_r[v] - top]

    def scaled(r: int) -> float:
        return math.log(1 + r) / math.log(vocab + 1)

    by_target = sorted(range(vocab), key=lambda v: (-z_t[v], v))
    by_reference = sorted(range(vocab), key=lambda v: (-z_r[v], v))
    lowest = sorted(range(vocab), key=lambda v: (z_t[v], v))
    row = [*pair(y), scaled(rank(z_t, y)), scaled(rank(z_r, y))]
    for i, r in zip(by_target[:k], by_reference[:k], strict=True):
        row += [*pair(i), scaled(rank(z_r, i)), scaled(rank(z_t, r))]
    for b in lowest[:k]:
        row += [*pair(b), scaled(rank(z_r, b))]
    ce_t, ce_r = lse(z_t) - z_t[y], lse(z_r) - z_r[y]
    return [*row, ce_t, ce_r, ce_t - ce_r]


def test_random_tied_logits_match_the_definitions() -> None:
    generator = torch.Generator().manual_seed(5)
    k, vocab = 3, 12
    z_t, z_r = torch.randint(-3, 4, (2, 4, 7, vocab), generator=generator).float()
    ids = torch.randint(0, vocab, (4, 7), generator=generator)
    attention = torch.ones(4, 7, dtype=torch.long)
    features, _ = lt_features(z_t, z_r, ids, attention, k=k)
    for n in range(4):
        for t in range(6):
            expected = naive_position(z_t[n, t].tolist(), z_r[n, t].tolist(), int(ids[n, t + 1]), k)
            torch.testing.assert_close(features[n, t, : 7 * k + 7], torch.tensor(expected), rtol=0, atol=1e-5)


def test_masking_shape_and_appended_step() -> None:
    generator = torch.Generator().manual_seed(2)
    n, length, vocab = 2, 6, 64
    z_t, z_r = torch.randn(2, n, length, vocab, generator=generator)
    ids = torch.randint(0, vocab, (n, length), generator=generator)
    attention = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    features, mask = lt_features(z_t, z_r, ids, attention)
    assert features.shape == (n, length, 154) and features.dtype == torch.float32
    assert mask.tolist() == [[True] * 5 + [False], [True, True, False, False, False, False]]
    assert not features[1, 2:].any() and not features[:, -1].any()
    assert (features[mask] != 0).any(-1).all()


def test_global_block_matches_numpy() -> None:
    generator = torch.Generator().manual_seed(3)
    n, length, vocab = 3, 9, 40
    z_t, z_r = torch.randn(2, n, length, vocab, generator=generator) * 3
    ids = torch.randint(0, vocab, (n, length), generator=generator)
    attention = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    features, mask = lt_features(z_t, z_r, ids, attention, k=4)
    dim = feature_dim(4)
    for i in range(n):
        rows = features[i][mask[i]].double().numpy()
        ce_t, ce_r = rows[:, dim - 10], rows[:, dim - 9]
        d = ce_t - ce_r
        np.testing.assert_allclose(rows[:, dim - 8], d, atol=1e-5)
        expected = []
        for x in (ce_t, ce_r, d):
            expected += [x.mean(), math.sqrt(x.var() + 1e-6)]  # np.var: population variance
        expected.append(d.sum())
        np.testing.assert_allclose(rows[:, dim - 7 :], np.tile(expected, (len(rows), 1)), atol=1e-5)


@pytest.mark.slow
def test_chunked_and_unchunked_agree_on_a_large_vocabulary() -> None:
    generator = torch.Generator().manual_seed(4)
    n, length, vocab = 2, 5, 50_000
    z_t, z_r = torch.randn(2, n, length, vocab, generator=generator) * 4
    ids = torch.randint(0, vocab, (n, length), generator=generator)
    attention = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    whole, mask, stats = lt_features_and_stats(z_t, z_r, ids, attention, chunk_positions=64)
    for chunk in (1, 3, None):
        part, part_mask, part_stats = lt_features_and_stats(z_t, z_r, ids, attention, chunk_positions=chunk)
        torch.testing.assert_close(part, whole, rtol=0, atol=1e-5)
        assert torch.equal(part_mask, mask)
        torch.testing.assert_close(part_stats.mink_sigma, stats.mink_sigma, rtol=0, atol=1e-5)


def test_half_precision_logits_are_computed_in_float32() -> None:
    half = [x.to(torch.bfloat16) for x in tiny_inputs()[:2]]
    features, _ = lt_features(*half, *tiny_inputs()[2:], k=2)
    upcast, _ = lt_features(*(x.float() for x in half), *tiny_inputs()[2:], k=2)
    assert features.dtype == torch.float32
    assert torch.equal(features, upcast)


def test_vocabulary_must_exceed_k() -> None:
    with pytest.raises(ValueError, match="larger than k"):
        lt_features(*tiny_inputs(), k=5)


def test_feature_groups_partition_the_layout() -> None:
    groups = feature_groups(20)
    assert sorted(i for ids in groups.values() for i in ids) == list(range(154))
    assert groups["target"] == [2, 144, 147, 148]  # lr(rank_T(y)), CE_T, mean and std of CE_T
    assert groups["reference"] == [3, 145, 149, 150]
    assert {0, 1, 4, 7, 84, 146, 151, 152, 153} <= set(groups["comparison"])
