"""Attack metrics (SPEC §7): ROC AUC and TPR at 1% and 0.1% FPR, with the non-member count they rest on.

Labels are 1 for members, 0 for non-members; scores are higher for more likely members. TPR at a fixed FPR
is read off the full ROC (no dropped points) by linear interpolation between the two points that bracket the
target FPR, so it does not jump with the threshold grid. At 0.1% FPR only 1,000 or more non-members put a
ROC point at or below the target; from fewer the number is an interpolation artefact, so SPEC §7 requires
it to be shown as not measurable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as sk_metrics

MIN_NONMEMBERS_FOR_01PCT = 1000


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(n,) labels, (n,) scores -> fpr, tpr of every threshold (sklearn, ``drop_intermediate=False``)."""
    fpr, tpr, _ = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; ties between a member and a non-member count one half."""
    return float(sk_metrics.roc_auc_score(labels, scores))


def tpr_at_fpr(labels: ArrayLike, scores: ArrayLike, fpr: float) -> float:
    """TPR at false-positive rate ``fpr``, interpolated linearly between the two ROC points around it.

    The ROC's points are sorted by fpr with equal-fpr runs in increasing tpr, so ``np.interp`` joins the
    last point at or below ``fpr`` (its best tpr) with the first point above it (its worst tpr).
    """
    fprs, tprs = roc_curve(labels, scores)
    return float(np.interp(fpr, fprs, tprs))


@dataclass(frozen=True)
class MetricResult:
    """SPEC §7's numbers for one set of scores, with the class counts they rest on."""

    auc: float
    tpr_at_1pct: float
    tpr_at_01pct: float
    n_members: int
    n_nonmembers: int

    @property
    def tpr_at_01pct_measurable(self) -> bool:
        """Whether enough non-members (>= 1,000) exist for an FPR of 0.1% to be a measurement."""
        return self.n_nonmembers >= MIN_NONMEMBERS_FOR_01PCT

    def to_dict(self) -> dict[str, float | int | bool]:
        """All fields plus ``tpr_at_01pct_measurable``, JSON-ready."""
        return {**asdict(self), "tpr_at_01pct_measurable": self.tpr_at_01pct_measurable}

    def format_tpr01(self) -> str:
        """TPR at 0.1% FPR for a report, e.g. "0.123", or "0.123 (n<1000: not measurable)"."""
        text = f"{self.tpr_at_01pct:.3f}"
        if self.tpr_at_01pct_measurable:
            return text
        return f"{text} (n<{MIN_NONMEMBERS_FOR_01PCT}: not measurable)"


def evaluate(labels: ArrayLike, scores: ArrayLike) -> MetricResult:
    """(n,) 0/1 labels (1 = member), (n,) finite scores -> `MetricResult`."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal-length 1-D arrays")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    n_members = int((labels == 1).sum())
    n_nonmembers = labels.size - n_members
    if n_members == 0 or n_nonmembers == 0:
        raise ValueError(f"metrics need both members and non-members, got {n_members} and {n_nonmembers}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    return MetricResult(
        auc=auc(labels, scores),
        tpr_at_1pct=tpr_at_fpr(labels, scores, 0.01),
        tpr_at_01pct=tpr_at_fpr(labels, scores, 0.001),
        n_members=n_members,
        n_nonmembers=n_nonmembers,
    )
