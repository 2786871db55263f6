"""Metrics (SPEC §7): AUC against sklearn, interpolated TPR at low FPR against hand arithmetic, and the
stratified, paired bootstrap against resampled sets built by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ltmia.metrics import (
    Bootstrap,
    MetricResult,
    RankedScores,
    auc,
    evaluate,
    evaluate_bootstrap,
    paired_difference,
    resample_counts,
    roc_curve,
    tpr_at_fpr,
    weighted_metrics,
)


def tied_case() -> tuple[np.ndarray, np.ndarray]:
    """10 members, 500 non-members. Descending thresholds give ROC points
    (0, 0.3) [members 102, 101, 100] -> (0.002, 0.5) [non-member and two members tied at 50]
    -> (0.002, 1.0) [members at 1] -> one non-member step of 0.002 each below.
    """
    members = [102.0, 101.0, 100.0, 50.0, 50.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    nonmembers = [50.0, *(-np.arange(1.0, 500.0))]
    labels = np.array([1] * len(members) + [0] * len(nonmembers))
    return labels, np.array(members + nonmembers)


def test_auc_matches_sklearn() -> None:
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75  # 3 of 4 member/non-member pairs ordered
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    fpr, tpr = roc_curve(labels, scores)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert len(fpr) == len(np.unique(scores)) + 1  # no point dropped


def test_tpr_interpolates_between_bracketing_points() -> None:
    labels, scores = tied_case()
    # 0.1% lies halfway between (0, 0.3) and (0.002, 0.5): 0.3 + (0.001 / 0.002) * 0.2 = 0.4.
    assert tpr_at_fpr(labels, scores, 0.001) == pytest.approx(0.4)
    # 0.0015: 0.3 + 0.75 * 0.2.
    assert tpr_at_fpr(labels, scores, 0.0015) == pytest.approx(0.45)
    # at an FPR that is itself a ROC point, the best TPR reached there.
    assert tpr_at_fpr(labels, scores, 0.002) == pytest.approx(1.0)
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.3)


def test_evaluate_reports_counts_and_measurability() -> None:
    labels, scores = tied_case()
    result = evaluate(labels, scores)
    assert (result.n_members, result.n_nonmembers) == (10, 500)
    assert result.tpr_at_01pct == pytest.approx(0.4)
    assert result.tpr_at_1pct == pytest.approx(1.0)
    assert result.auc == pytest.approx(roc_auc_score(labels, scores))
    assert not result.tpr_at_01pct_measurable
    assert result.to_dict() == {
        "auc": result.auc,
        "tpr_at_1pct": result.tpr_at_1pct,
        "tpr_at_01pct": result.tpr_at_01pct,
        "n_members": 10,
        "n_nonmembers": 500,
        "tpr_at_01pct_measurable": False,
    }
    measured = MetricResult(auc=0.9, tpr_at_1pct=0.5, tpr_at_01pct=0.1234, n_members=5, n_nonmembers=1000)
    assert measured.tpr_at_01pct_measurable


def test_evaluate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="both members and non-members"):
        evaluate([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="equal-length 1-D"):
        evaluate([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 \\(non-member\\) or 1"):
        evaluate([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate([0, 1], [0.1, np.nan])


def separable(n: int = 200, shift: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n), np.zeros(n)].astype(int)
    return labels, labels * shift + rng.normal(size=2 * n)


def test_replicate_metrics_equal_the_metrics_of_the_resampled_sets() -> None:
    """The counts formulation is exact: each replicate equals `evaluate` on the set it stands for."""
    rng = np.random.default_rng(3)
    for n_members, n_nonmembers, shift in [(30, 500, 1.0), (200, 150, 0.3), (50, 60, 8.0)]:
        labels = np.r_[np.ones(n_members), np.zeros(n_nonmembers)].astype(int)
        scores = np.round(labels * shift + rng.normal(size=labels.size), 1)  # rounding makes ties
        ranked = RankedScores.of(scores[:n_members], scores[n_members:])
        members, nonmembers = resample_counts(rng, n_members, 8), resample_counts(rng, n_nonmembers, 8)
        replicates = weighted_metrics(ranked, members, nonmembers)
        for b in range(8):
            rows = np.r_[
                np.repeat(np.arange(n_members), members[:, b]),
                n_members + np.repeat(np.arange(n_nonmembers), nonmembers[:, b]),
            ]
            r = evaluate(labels[rows], scores[rows])
            np.testing.assert_allclose(replicates[b], [r.auc, r.tpr_at_1pct, r.tpr_at_01pct], atol=1e-12)


def test_resampling_is_stratified() -> None:
    counts = resample_counts(np.random.default_rng(0), 7, 50)  # (texts, replicates)
    assert counts.shape == (7, 50) and (counts.sum(0) == 7).all()
    assert len({tuple(column) for column in counts.T}) > 40  # the resamples differ


def test_bootstrap_is_seeded() -> None:
    labels, scores = separable()
    first = evaluate_bootstrap(labels, {"x": scores}, Bootstrap(replicates=200, seed=1))
    again = evaluate_bootstrap(labels, {"x": scores}, Bootstrap(replicates=200, seed=1))
    other = evaluate_bootstrap(labels, {"x": scores}, Bootstrap(replicates=200, seed=2))
    np.testing.assert_array_equal(first.replicates["x"], again.replicates["x"])
    assert first.results == again.results
    assert first.results["x"].auc_ci != other.results["x"].auc_ci


def test_interval_contains_the_point_estimate() -> None:
    labels, scores = separable()
    result = evaluate_bootstrap(labels, {"x": scores}).results["x"]
    assert result.auc == evaluate(labels, scores).auc  # the point estimate is the plain one
    for metric in ("auc", "tpr_at_1pct"):
        low, high = result.interval(metric)
        assert low < getattr(result, metric) < high
    low, high = result.auc_ci
    assert 0.02 < high - low < 0.15  # 200 + 200 texts at AUC ~0.76: about +-0.05


def test_perfect_separation_gives_a_degenerate_interval() -> None:
    labels = np.r_[np.ones(50), np.zeros(50)].astype(int)
    scores = labels + np.random.default_rng(0).uniform(0, 0.5, 100)
    result = evaluate_bootstrap(labels, {"x": scores}).results["x"]
    assert result.auc == 1.0 and result.auc_ci == (1.0, 1.0)
    assert result.tpr_at_1pct_ci == (1.0, 1.0)


def test_paired_difference_of_an_attack_with_itself_is_exactly_zero() -> None:
    labels, scores = separable()
    for difference in paired_difference(labels, scores, scores.copy()).values():
        assert (difference.delta, difference.low, difference.high) == (0.0, 0.0, 0.0)


def test_paired_difference_is_narrower_than_the_marginal_intervals() -> None:
    """Two attacks whose errors are shared: the paired interval of a - b sees only what differs."""
    labels, scores = separable()
    better = scores + 0.3 * labels
    boot = evaluate_bootstrap(labels, {"a": better, "b": scores})
    difference = boot.difference("a", "b")["auc"]
    assert difference.delta == pytest.approx(boot.results["a"].auc - boot.results["b"].auc)
    assert 0 < difference.low < difference.delta < difference.high
    widths = [r.auc_ci[1] - r.auc_ci[0] for r in boot.results.values()]
    assert difference.high - difference.low < min(widths) / 2


def test_bootstrap_of_a_hand_checkable_case() -> None:
    """Members {3, 1}, non-members {2, 0}: each class resamples to {x, x}, {x, y} or {y, y} with odds
    1/4, 1/2, 1/4. AUC is 0 only for members {1, 1} against non-members {2, 2} (1/16), and 1 for members
    {3, 3} (1/4), members {3, 1} against {0, 0} (1/8) or members {1, 1} against {0, 0} (1/16): 7/16. Both
    tails hold more than 2.5%, so the 95% interval is [0, 1]."""
    labels, scores = np.array([1, 1, 0, 0]), np.array([3.0, 1.0, 2.0, 0.0])
    boot = evaluate_bootstrap(labels, {"x": scores}, Bootstrap(replicates=4000, seed=0))
    aucs = boot.replicates["x"][:, 0]
    assert set(np.unique(aucs)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert np.mean(aucs == 0.0) == pytest.approx(1 / 16, abs=0.015)
    assert np.mean(aucs == 1.0) == pytest.approx(7 / 16, abs=0.03)
    assert boot.results["x"].auc == 0.75 and boot.results["x"].auc_ci == (0.0, 1.0)


def test_metric_records_round_trip_and_old_records_still_read() -> None:
    labels, scores = separable(50)
    result = evaluate_bootstrap(labels, {"x": scores}, Bootstrap(replicates=50)).results["x"]
    assert MetricResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    old = {"auc": 0.8, "tpr_at_1pct": 0.1, "tpr_at_01pct": 0.0, "n_members": 5, "n_nonmembers": 5}
    read = MetricResult.from_dict({**old, "tpr_at_01pct_measurable": False})
    assert read.auc_ci is None and read.to_dict() == {**old, "tpr_at_01pct_measurable": False}


def test_bootstrap_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="replicates"):
        Bootstrap(replicates=1)
    with pytest.raises(ValueError, match="level"):
        Bootstrap(level=1.0)
