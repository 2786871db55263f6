"""Baseline attacks (SPEC §5) on hand-made token statistics, with both edge readings of EZ-MIA and WBC."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ltmia.attacks import ATTACKS, score
from ltmia.attacks.ez_mia import ABOVE_ALL
from ltmia.attacks.wbc import WINDOWS, eq12_windows
from ltmia.errors import UnknownNameError
from ltmia.features import lt_features_and_stats
from ltmia.tokenstats import TokenStats


def make_stats(
    target: list[list[float]],
    reference: list[list[float]] | None = None,
    hit: list[list[bool]] | None = None,
    mu: list[list[float]] | None = None,
    sigma: list[list[float]] | None = None,
    valid: list[list[bool]] | None = None,
) -> TokenStats:
    """Rows are right-padded to one width; by default exactly the given entries are valid."""
    width = max(len(row) for row in target)

    def pad(rows: list[list], fill: float | bool) -> list[list]:
        return [row + [fill] * (width - len(row)) for row in rows]

    def floats(rows: list[list[float]] | None) -> torch.Tensor:
        return torch.tensor(pad(rows or [[0.0] * len(r) for r in target], 0.0), dtype=torch.float32)

    if valid is None:
        valid = [[True] * len(row) for row in target]
    return TokenStats(
        target_logprob=floats(target),
        reference_logprob=floats(reference),
        mink_mu=floats(mu),
        mink_sigma=floats(sigma or [[1.0] * len(r) for r in target]),
        target_argmax_hit=torch.tensor(pad(hit or [[False] * len(r) for r in target], False)),
        valid=torch.tensor(pad(valid, False)),
    )


def test_registry_holds_the_seven_baselines() -> None:
    assert set(ATTACKS.names()) == {"loss", "zlib", "min_k", "min_k_pp", "ref_loss", "ez_mia", "wbc"}
    with pytest.raises(UnknownNameError, match="choose one of"):
        ATTACKS.get("nope")


def test_loss_is_mean_target_logprob_over_valid_positions() -> None:
    stats = make_stats([[-1.0, -2.0, -3.0], [-0.5, -1.5]])
    result = score("loss", stats, ["a", "b"])
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, [-2.0, -1.0])  # -NLL_T: (-1-2-3)/3, (-0.5-1.5)/2


def test_zlib_divides_by_compressed_length() -> None:
    texts = ["the cat sat on the mat " * 4, "Zebras quickly jump over lazy foxes!"]
    stats = make_stats([[-1.0, -2.0, -3.0], [-0.5, -1.5]])
    expected = [-2.0 / len(zlib.compress(texts[0].encode())), -1.0 / len(zlib.compress(texts[1].encode()))]
    np.testing.assert_allclose(score("zlib", stats, texts), expected)


def test_min_k_takes_at_least_one_of_the_lowest() -> None:
    ten = [-1.0, -5.0, -2.0, -4.0, -3.0, -0.5, -6.0, -7.0, -0.1, -2.5]
    stats = make_stats([ten, [-1.0, -3.0, -2.0]])
    # k = 0.2: floor(2.0) = 2 lowest of ten (-7, -6); floor(0.6) = 0 -> 1 lowest of three (-3).
    np.testing.assert_allclose(score("min_k", stats, ["a", "b"]), [-6.5, -3.0])
    # k = 0.35: floor(3.5) = 3 -> (-7 - 6 - 5) / 3; floor(1.05) = 1.
    np.testing.assert_allclose(score("min_k", stats, ["a", "b"], k=0.35), [-6.0, -3.0])
    np.testing.assert_allclose(score("min_k", stats, ["a", "b"], k=1.0), [-3.11, -2.0])
    with pytest.raises(ValueError, match="fraction"):
        score("min_k", stats, ["a", "b"], k=20)


def test_min_k_ignores_padding_wherever_it_is() -> None:
    stats = make_stats([[-9.0, -1.0, -2.0, -3.0]], valid=[[False, True, True, True]])
    np.testing.assert_allclose(score("min_k", stats, ["a"], k=0.7), [-2.5])  # floor(2.1) = 2: -3, -2


def test_min_k_pp_standardises_by_the_moments() -> None:
    # s = (lp - mu) / sigma = [1, 0, -2, -0.5, -3]
    stats = make_stats([[-1.0, -2.0, -3.0, -4.0, -5.0]], mu=[[-2.0] * 5], sigma=[[1.0, 2.0, 0.5, 4.0, 1.0]])
    np.testing.assert_allclose(score("min_k_pp", stats, ["a"]), [-3.0])  # floor(0.2 * 5) = 1
    np.testing.assert_allclose(score("min_k_pp", stats, ["a"], k=0.4), [-2.5])  # floor(2.0) = 2


def test_ref_loss_difference_and_ratio() -> None:
    stats = make_stats([[-1.0, -3.0], [-2.0]], reference=[[-3.0, -5.0], [-1.0]])
    # NLL_T = 2, 2; NLL_R = 4, 1.
    np.testing.assert_allclose(score("ref_loss", stats, ["a", "b"]), [2.0, -1.0])
    np.testing.assert_allclose(score("ref_loss", stats, ["a", "b"], form="ratio"), [-0.5, -2.0])
    with pytest.raises(ValueError, match="form"):
        score("ref_loss", stats, ["a", "b"], form="log")


def ez_case() -> tuple[TokenStats, list[str]]:
    """D = lp_T - lp_R per position (lp_R = 0), target argmax hits, and which positions are valid."""
    rows = [
        # E = {1, 3, 4, 5} (0 is first, 2 is a hit): P = 1 + 2, Q = 0.5 + 1.5 -> 1.5.
        ([5.0, 1.0, 9.0, -0.5, 2.0, -1.5], [False, False, True, False, False, False], None),
        # E = {2}: fewer than 2 error positions; P = 2, Q = 0.
        ([-3.0, -1.0, 2.0], [False, True, False], None),
        # E = {1, 2, 3}, all movement upward: P = 4, Q = 0.
        ([-10.0, 1.0, 0.0, 3.0], [False] * 4, None),
        # E empty: every position after the first is a hit.
        ([-1.0, -1.0, -1.0], [False, True, True], None),
        # E = {1} with a fall: P = 0, Q = 2.
        ([1.0, -2.0], [False, False], None),
        # left padding: the first *valid* position (1) is left out; E = {2, 3}: P = 1, Q = 1.
        ([0.0, 100.0, 1.0, -1.0], [False] * 4, [False, True, True, True]),
    ]
    width = 6
    valid = [v or [True] * len(d) for d, _, v in rows]
    stats = make_stats(
        [d for d, _, _ in rows],
        hit=[h for _, h, _ in rows],
        valid=[row + [False] * (width - len(row)) for row in valid],
    )
    return stats, ["t"] * len(rows)


def test_ez_mia_authors_edges() -> None:
    stats, texts = ez_case()
    expected = [1.5, 0.0, 0.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(score("ez_mia", stats, texts), expected, rtol=1e-9)
    np.testing.assert_allclose(score("ez_mia", stats, texts, edge="authors"), expected, rtol=1e-9)


def test_ez_mia_paper_edges_rank_upward_texts_first() -> None:
    stats, texts = ez_case()
    result = score("ez_mia", stats, texts, edge="paper")
    np.testing.assert_allclose(result, [1.5, ABOVE_ALL, ABOVE_ALL, ABOVE_ALL, 0.0, 1.0], rtol=1e-9)
    # the sentinel sorts above every real score in sklearn: the three Q = 0 texts as members give AUC 1.
    assert roc_auc_score([0, 1, 1, 1, 0, 0], result) == 1.0
    with pytest.raises(ValueError, match="edge"):
        score("ez_mia", stats, texts, edge="both")


def wbc_case() -> tuple[TokenStats, list[str]]:
    """Per-token losses l_T, l_R (lp = -l) for texts of N = 5, 3, 1 valid positions."""
    loss_t = [[1.0] * 5, [1.0] * 3, [1.0]]
    loss_r = [[2.0, 0.0, 0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [2.0]]
    stats = make_stats([[-x for x in r] for r in loss_t], reference=[[-x for x in r] for r in loss_r])
    return stats, ["t"] * 3


def test_wbc_authors_caps_windows_at_n() -> None:
    stats, texts = wbc_case()
    # N = 5: w=2 sums l_R [2, 0, 3, 3] vs l_T 2 -> 2/4 won; w=3 [2, 3, 3] vs 3 -> 0/3; w=4 [5, 3] vs 4 -> 1/2;
    #        w = 6..40 (7 sizes) capped to 5: 5 vs 5 is no win -> 0.  Mean over 10 sizes: (0.5 + 0.5) / 10.
    # N = 3: w=2 [3, 0] vs 2 -> 1/2; w = 3..40 (9 sizes) capped to 3: 3 vs 3 -> 0.  (0.5) / 10.
    # N = 1: every size capped to 1: 2 > 1 -> 1.
    np.testing.assert_allclose(score("wbc", stats, texts), [0.1, 0.05, 1.0])


def test_wbc_paper_skips_windows_longer_than_n() -> None:
    stats, texts = wbc_case()
    # N = 5: sizes 2, 3, 4 -> (0.5 + 0 + 0.5) / 3; N = 3: sizes 2, 3 -> 0.25;
    # N = 1: no size fits, fall back to one window of size 1 -> 1.
    np.testing.assert_allclose(score("wbc", stats, texts, edge="paper"), [1 / 3, 0.25, 1.0])
    with pytest.raises(ValueError, match="edge"):
        score("wbc", stats, texts, edge="cap")


def test_wbc_eq12_window_grid() -> None:
    """SPEC §8: eq. 12's grid differs from the authors' list at 5 (vs 6), 8, 11, 15, 21, 29."""
    assert eq12_windows() == (2, 3, 4, 5, 8, 11, 15, 21, 29, 40) and WINDOWS[3] == 6
    # N = 6, l_T = 1 everywhere, l_R = [0.5, 1.25, 1.25, 1.25, 1.25, 0.5] (sum 6, a tie, no win at w = 6):
    # w=2 sums [1.75, 2.5, 2.5, 2.5, 1.75] vs 2 -> 3/5; w=3 [3, 3.75, 3.75, 3] vs 3 -> 2/4;
    # w=4 [4.25, 5, 4.25] vs 4 -> 1; w=5 [5.5, 5.5] vs 5 -> 1; w >= 6 (capped at 6): 6 vs 6 -> 0.
    loss_r = [0.5, 1.25, 1.25, 1.25, 1.25, 0.5]
    stats, texts = make_stats([[-1.0] * 6], reference=[[-x for x in loss_r]]), ["t"]
    authors = (0.6 + 0.5 + 1.0) / 10  # sizes 2, 3, 4, then 6 and up
    eq12 = (0.6 + 0.5 + 1.0 + 1.0) / 10  # sizes 2, 3, 4, 5, then 8 and up
    np.testing.assert_allclose(score("wbc", stats, texts), [authors])
    np.testing.assert_allclose(score("wbc", stats, texts, windows="eq12"), [eq12])
    # edge="paper" keeps only the sizes that fit N = 6: (2, 3, 4, 6) vs (2, 3, 4, 5)
    np.testing.assert_allclose(score("wbc", stats, texts, edge="paper"), [2.1 / 4])
    np.testing.assert_allclose(score("wbc", stats, texts, edge="paper", windows="eq12"), [3.1 / 4])
    with pytest.raises(ValueError, match="windows"):
        score("wbc", stats, texts, windows="log")


def test_score_rejects_mismatched_or_empty_texts() -> None:
    stats = make_stats([[-1.0, -2.0], [-1.0]], valid=[[True, True], [False]])
    with pytest.raises(ValueError, match="no valid token position"):
        score("loss", stats, ["a", "b"])
    with pytest.raises(ValueError, match="1 texts"):
        score("loss", make_stats([[-1.0], [-2.0]]), ["a"])


def test_attacks_read_the_features_pass() -> None:
    """Wired end to end: loss from the stats equals minus the mean CE_T feature, ref_loss the mean D."""
    generator = torch.Generator().manual_seed(0)
    z_t, z_r = torch.randn(2, 3, 8, 100, generator=generator)
    ids = torch.randint(0, 100, (3, 8), generator=generator)
    attention = torch.tensor([[1] * 8, [1] * 4 + [0] * 4, [1] * 6 + [0] * 2])
    features, mask, stats = lt_features_and_stats(z_t, z_r, ids, attention, k=4)
    texts = ["x"] * 3
    for i in range(3):
        rows = features[i][mask[i]].double()
        assert score("loss", stats, texts)[i] == pytest.approx(-rows[:, 32].mean().item(), abs=1e-6)
        assert score("ref_loss", stats, texts)[i] == pytest.approx(-rows[:, 34].mean().item(), abs=1e-6)
    assert all(math.isfinite(x) for name in ATTACKS.names() for x in score(name, stats, texts))
