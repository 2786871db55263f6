"""ltmia.evidence on hand-computed cases: conformal p-values, BH, the rank test, Holm, power."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ltmia.evidence import (
    RankTest,
    bh_adjust,
    bh_cutoff,
    holm,
    n_needed,
    p_values,
    placements,
    power,
    rank_test,
    score_threshold,
    select,
)

NULL = [1.0, 2.0, 2.0, 3.0]  # n0 = 4: p-values are multiples of 1/5


def test_p_value_counts_the_candidate_itself_and_ties_against_it():
    # #{null >= s}: s=0 -> 4, s=2 -> 3 (the two tied 2s count), s=2.5 -> 1, s=3 -> 1 (tie), s=4 -> 0
    assert np.allclose(p_values([0, 2, 2.5, 3, 4], NULL), [5 / 5, 4 / 5, 2 / 5, 2 / 5, 1 / 5])


def test_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.20, 0.50]
    # sorted 0.01 0.03 0.04 0.20 0.50 against k q / m = 0.01 0.02 0.03 0.04 0.05: only the first passes
    assert bh_cutoff(p, 0.05) == 0.01
    # m p_(k) / k = 0.05 0.075 0.0667 0.25 0.5, then the running minimum from the largest p down
    assert np.allclose(bh_adjust(p), [0.05, 0.2 / 3, 0.2 / 3, 0.25, 0.5])
    # step-up: 0.02 fails its own bound (0.0125) but is selected because 0.03 <= 3 q / 4 passes
    stepped = [0.03, 0.9, 0.02, 0.024]
    assert bh_cutoff(stepped, 0.05) == 0.03
    assert (bh_adjust(stepped) <= 0.05).tolist() == [True, False, True, True]
    assert bh_cutoff([0.5, 0.6], 0.05) is None


def test_selection_threshold_matches_the_p_value_rule():
    scores = [0, 2, 2.5, 3, 4]  # p = 1, .8, .4, .4, .2
    # p <= 0.4 <=> #{null >= s} <= floor(0.4 * 5) - 1 = 1 <=> s > 2 (the 2nd largest null)
    assert score_threshold(NULL, 0.4) == 2.0
    fpr = select(scores, NULL, "fpr", 0.25)
    assert fpr.selected.tolist() == [False, False, False, False, True] and fpr.score_threshold == 3.0
    assert fpr.attainable and not select(scores, NULL, "fpr", 0.1).attainable  # 1/5 > 0.1
    # BH at 0.9: sorted p .2 .4 .4 .8 1 against k q / m = .18 .36 .54 .72 .9 -> the 3rd (.4) is the last pass
    fdr = select(scores, NULL, "fdr", 0.9)
    assert fdr.p_cutoff == 0.4 and fdr.n_selected == 3 and fdr.score_threshold == 2.0
    assert fdr.to_dict()["n_candidates"] == 5 and "selected" not in fdr.to_dict()
    assert select(scores, NULL, "fdr", 0.05).score_threshold is None


def test_rank_test_exact_small_case():
    test = rank_test([3, 4, 5], [1, 2])  # every candidate beats every non-member: U = 6
    assert test.u == 6 and test.auc == 1.0
    assert test.p_value == pytest.approx(1 / 10)  # 1 of the C(5, 2) = 10 equally likely rankings
    assert rank_test([3, 4, 5], [1, 2], alternative="two-sided").p_value == pytest.approx(2 / 10)
    assert test.auc_ci == (1.0, 1.0)


def test_rank_test_with_ties_uses_the_tie_corrected_normal_approximation():
    x, y = [2, 3, 3, 5], [1, 2, 3]
    # U1 = 1.5 + 2.5 + 2.5 + 3 (ties count 1/2); tie groups 2 (x2) and 3 (x3): sum t^3 - t = 6 + 24
    u, n1, n0, n = 9.5, 4, 3, 7
    var = n1 * n0 / 12 * ((n + 1) - 30 / (n * (n - 1)))
    z = (u - n1 * n0 / 2 - 0.5) / math.sqrt(var)  # continuity correction
    test = rank_test(x, y)
    assert test.u == u and test.auc == pytest.approx(9.5 / 12)
    assert test.p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    v10, v01 = placements(np.array(x, float), np.array(y, float))
    assert np.allclose(v10, [0.5, 2.5 / 3, 2.5 / 3, 1.0]) and np.allclose(v01, [1.0, 0.875, 0.5])
    assert test.var10 == pytest.approx(np.var(v10, ddof=1)) and test.var01 == pytest.approx(
        np.var(v01, ddof=1)
    )
    low, high = test.auc_ci
    assert low < test.auc < high == 1.0  # clipped at 1


def test_holm_by_hand():
    # sorted a .01, c .03, b .04: 3 x .01 = .03, max(.03, 2 x .03) = .06, max(.06, 1 x .04) = .06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert holm({"a": 0.5, "b": 0.6}) == {"a": 1.0, "b": 1.0}


def test_power_is_alpha_without_an_effect_and_grows_with_n():
    # no effect: placements uniform (variance 1/12), so the alternative is the null and power = alpha
    assert power(5000, 5000, 0.5, 1 / 12, 1 / 12, 0.05) == pytest.approx(0.05, abs=0.002)
    rng = np.random.default_rng(0)
    test = rank_test(rng.normal(0.4, 1, 300), rng.normal(0, 1, 300))
    needed = n_needed(test, 0.05, 0.8)
    assert needed is not None and 10 < needed < 3000
    powers = [power(n, test.n0, test.auc, test.var10, test.var01, 0.05) for n in range(needed, 4 * needed)]
    assert powers[0] >= 0.8 > power(needed - 1, test.n0, test.auc, test.var10, test.var01, 0.05)
    assert all(b >= a for a, b in itertools.pairwise(powers))
    # a larger effect needs fewer texts; no effect, or a target beyond what n0 allows, needs "no number"
    stronger = rank_test(rng.normal(1.0, 1, 300), rng.normal(0, 1, 300))
    assert n_needed(stronger, 0.05, 0.8) < needed
    assert n_needed(rank_test([0, 1, 2], [0, 1, 2]), 0.05) is None
    # AUC 0.55 against 40 non-members: even infinitely many candidates leave the n0 part of the variance
    weak = RankTest(0.0, 0.5, 0.55, (0.4, 0.7), 40, 40, "greater", 1 / 12, 1 / 12)
    assert n_needed(weak, 0.05, 0.99) is None and n_needed(weak, 0.05, 0.99, balanced=True) is not None


def test_bh_and_fpr_selections_keep_their_error_rates_over_many_draws():
    """Exchangeable non-members: the realised FDR of BH and the per-text FPR stay at their levels (the
    promise ``ltmia audit --non-members`` makes; benchmarks/audit_calibration.py checks it on real stores)."""
    rng = np.random.default_rng(1)
    truth = np.arange(50) < 25  # 25 members (scores shifted up), 25 non-member candidates
    fdp, fpr = [], []
    for _ in range(400):
        candidates = rng.normal(0, 1, 50) + 1.5 * truth
        known = rng.normal(0, 1, 100)
        chosen = select(candidates, known, "fdr", 0.2).selected
        fdp.append((chosen & ~truth).sum() / max(1, chosen.sum()))
        fpr.append(select(candidates, known, "fpr", 0.1).selected[~truth].mean())
    fdp, fpr = np.array(fdp), np.array(fpr)
    # BH: FDR <= q * (share of non-members) = 0.1; the bound is attained here up to noise
    assert 0.05 < fdp.mean() < 0.1 + 3 * fdp.std() / np.sqrt(fdp.size)
    assert 0.07 < fpr.mean() < 0.1 + 3 * fpr.std() / np.sqrt(fpr.size)
