"""Approximate intervals from the numbers alone (``ltmia.approx_intervals``): hand-computed cases, the
invariants (width shrinks with n, clipping to [0, 1]), and how they fill a `MetricResult`."""

from __future__ import annotations

import json
from math import sqrt

import pytest

from ltmia.approx_intervals import (
    AUC_METHOD,
    TPR_METHOD,
    approximate,
    auc_interval,
    hanley_mcneil_se,
    tpr_at_1pct_interval,
    tpr_interval,
    z_value,
)
from ltmia.metrics import MetricResult


def result(auc: float, tpr1: float, tpr01: float, n1: int = 1000, n0: int = 1000, **cis) -> MetricResult:
    return MetricResult(auc, tpr1, tpr01, n1, n0, **cis)


def test_hanley_mcneil_by_hand() -> None:
    # A = 0.8, n1 = n0 = 100: Q1 = 0.8/1.2 = 0.666667, Q2 = 2(0.64)/1.8 = 0.711111;
    # SE^2 = [0.16 + 99(0.026667) + 99(0.071111)] / 10,000 = (0.16 + 2.64 + 7.04) / 10,000 = 0.000984.
    assert hanley_mcneil_se(0.8, 100, 100) == pytest.approx(sqrt(0.000984), rel=1e-6)
    low, high = auc_interval(0.8, 100, 100)
    assert (low, high) == pytest.approx((0.8 - 1.959964 * 0.0313688, 0.8 + 1.959964 * 0.0313688), abs=1e-6)
    # A = 0.5, n1 = n0 = 1000: Q1 = Q2 = 1/3, SE^2 = (0.25 + 2 x 999/12) / 10^6 = 1.6675e-4.
    assert hanley_mcneil_se(0.5, 1000, 1000) == pytest.approx(sqrt(1.6675e-4), rel=1e-6)
    assert z_value() == pytest.approx(1.959964, abs=1e-6)


def test_wilson_delta_secant_by_hand() -> None:
    # offline-full-heldout's lt_mia on qwen2 x manpages: TPR@1% 0.105, TPR@0.1% 0.006, 1000 + 1000.
    # TPR@1%: s = (0.105 - 0.006) / 0.009 = 11; Var = 0.105(0.895)/1000 + 121(0.01)(0.99)/1000
    #   = 9.3975e-5 + 1.19790e-3 = 1.291875e-3; n_eff = 0.093975 / 1.291875e-3 = 72.7431.
    #   Wilson, z^2 = 3.841459: centre = (0.105 + z^2/(2 n_eff)) / (1 + z^2/n_eff) = 0.1314045 / 1.0528086
    #   = 0.1248131; half = z / 1.0528086 * sqrt(0.093975/72.7431 + z^2/(4 n_eff^2)) = 0.0714585.
    r = result(0.799, 0.105, 0.006)
    assert tpr_interval(r, "tpr_at_1pct") == pytest.approx((0.0533546, 0.1962716), abs=1e-6)
    # TPR@0.1%: s = 0.006 / 0.001 = 6; Var = 0.006(0.994)/1000 + 36(0.001)(0.999)/1000 = 4.1928e-5;
    #   n_eff = 142.2438, centre 0.0189902, half 0.0180437: skewed up, above 0 (normal: [0, 0.0187]).
    assert tpr_interval(r, "tpr_at_01pct") == pytest.approx((0.0009465, 0.0370339), abs=1e-6)
    # no TPR@0.1% in the table: s = 0.105 / 0.01 = 10.5, Var = 9.3975e-5 + 110.25(0.0099)/1000
    #   = 1.185450e-3; n_eff = 79.2737, centre 0.1232563, half 0.0683862.
    assert tpr_at_1pct_interval(0.105, None, 1000, 1000) == pytest.approx((0.0548701, 0.1916426), abs=1e-6)
    # TPR 0: no variance from the slope (s = 0), n_eff = n1 = 1000: Wilson's [0, z^2 / (n1 + z^2)].
    assert tpr_at_1pct_interval(0.0, 0.0, 1000, 1000) == pytest.approx(
        (0.0, 3.841459 / 1003.841459), abs=1e-6
    )


def test_width_shrinks_with_n_and_intervals_clip_to_the_unit_range() -> None:
    widths = [auc_interval(0.7, n, n)[1] - auc_interval(0.7, n, n)[0] for n in (50, 500, 5000)]
    assert widths[0] > widths[1] > widths[2] > 0
    tpr = [tpr_interval(result(0.8, 0.2, 0.05, n, n), "tpr_at_1pct") for n in (100, 1000, 10000)]
    assert tpr[0][1] - tpr[0][0] > tpr[1][1] - tpr[1][0] > tpr[2][1] - tpr[2][0] > 0
    assert auc_interval(0.995, 10, 10)[1] == 1.0  # clipped above
    assert tpr_interval(result(0.6, 1.0, 1.0, 50, 1000), "tpr_at_1pct")[1] == 1.0  # clipped above
    assert auc_interval(1.0, 100, 100) == (1.0, 1.0)  # Q1 = Q2 = 1: no variance left


def test_approximate_fills_only_missing_intervals_and_keeps_unmeasurable_ones_empty() -> None:
    legacy = approximate(result(0.9, 0.4, 0.1, 720, 720))  # fewer than 1,000 non-members
    assert legacy.auc_ci is not None and legacy.tpr_at_1pct_ci is not None
    assert legacy.tpr_at_01pct_ci is None  # not a measurement (SPEC §7): no interval
    assert legacy.interval_method == {"auc": AUC_METHOD, "tpr_at_1pct": TPR_METHOD}
    assert (legacy.auc, legacy.tpr_at_1pct, legacy.tpr_at_01pct) == (0.9, 0.4, 0.1)  # points unchanged
    assert legacy.approximate("auc") and not legacy.approximate("tpr_at_01pct")

    boot = result(
        0.8, 0.1, 0.01, auc_ci=(0.78, 0.82), tpr_at_1pct_ci=(0.05, 0.2), tpr_at_01pct_ci=(0.0, 0.04)
    )
    assert approximate(boot) is boot  # every interval is a bootstrap one: nothing to fill
    partly = approximate(result(0.8, 0.1, 0.01, auc_ci=(0.78, 0.82)))
    assert partly.auc_ci == (0.78, 0.82) and not partly.approximate("auc")
    assert partly.interval_method == {"tpr_at_1pct": TPR_METHOD, "tpr_at_01pct": TPR_METHOD}


def test_approximate_recomputes_intervals_of_an_earlier_method_and_keeps_bootstrap_ones() -> None:
    # a results file rendered by an earlier method (the symmetric "delta-secant" TPR intervals): its
    # approximate intervals are recomputed from the numbers, the bootstrap AUC interval stays.
    old = {"tpr_at_1pct": "delta-secant", "tpr_at_01pct": "delta-secant"}
    stale = result(
        0.799,
        0.105,
        0.006,
        auc_ci=(0.78, 0.82),
        tpr_at_1pct_ci=(0.035, 0.175),
        tpr_at_01pct_ci=(0.0, 0.019),
        interval_method=old,
    )
    redone = approximate(stale)
    assert redone.auc_ci == (0.78, 0.82) and not redone.approximate("auc")
    assert redone.tpr_at_1pct_ci == pytest.approx((0.0533546, 0.1962716), abs=1e-6)  # by hand above
    assert redone.tpr_at_01pct_ci == pytest.approx((0.0009465, 0.0370339), abs=1e-6)
    assert redone.interval_method == {"tpr_at_1pct": TPR_METHOD, "tpr_at_01pct": TPR_METHOD}
    assert approximate(redone) == redone
    # an approximate TPR@0.1% from fewer than 1,000 non-members is dropped: not a measurement (SPEC §7)
    unmeasurable = result(0.9, 0.4, 0.1, 720, 720, tpr_at_01pct_ci=(0.0, 0.3), interval_method=old)
    dropped = approximate(unmeasurable)
    assert dropped.tpr_at_01pct_ci is None and "tpr_at_01pct" not in (dropped.interval_method or {})


def test_interval_method_round_trips_and_is_absent_from_bootstrap_records() -> None:
    filled = approximate(result(0.8, 0.1, 0.01))
    record = json.loads(json.dumps(filled.to_dict()))
    assert record["interval_method"]["auc"] == AUC_METHOD
    assert MetricResult.from_dict(record) == filled
    boot = result(0.8, 0.1, 0.01, auc_ci=(0.78, 0.82))
    assert "interval_method" not in boot.to_dict()
    assert MetricResult.from_dict(boot.to_dict()).interval_method is None
