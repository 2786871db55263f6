"""Metrics (SPEC §7): AUC against sklearn, interpolated TPR at low FPR against hand arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ltmia.metrics import MetricResult, auc, evaluate, roc_curve, tpr_at_fpr


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
    assert result.format_tpr01() == "0.400 (n<1000: not measurable)"
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
    assert measured.format_tpr01() == "0.123"


def test_evaluate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="both members and non-members"):
        evaluate([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="equal-length 1-D"):
        evaluate([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 \\(non-member\\) or 1"):
        evaluate([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate([0, 1], [0.1, np.nan])
