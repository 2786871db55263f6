"""Approximate intervals from summary statistics alone (SPEC §7), for tables whose per-text scores are gone.

ltmia's intervals are stratified bootstrap intervals (``ltmia.metrics.Bootstrap``), drawn from the per-text
scores. Some committed tables were rendered before ltmia had intervals and their scores no longer exist;
all that survives is each number and the class counts it rests on (n1 members, n0 non-members). From those
alone, two textbook approximations give a 95% interval:

- AUC: the Hanley & McNeil (1982) standard error, "The meaning and use of the area under a receiver
  operating characteristic (ROC) curve", Radiology 143:29-36, eq. 2: it treats the AUC as the Mann-Whitney
  statistic and approximates the two pair covariances (Q1: two members above one non-member; Q2: one member
  above two non-members) as if the scores were exponential, which needs only the AUC itself.
- TPR at FPR alpha: the delta method for a ROC point at a threshold estimated from the non-members (Hsieh
  & Turnbull 1996, "Nonparametric and semiparametric estimation of the receiver operating characteristic
  curve", Ann. Statist. 24:25-40; Pepe 2003, "The Statistical Evaluation of Medical Tests", ch. 5):
  Var = TPR(1 - TPR)/n1 + s^2 alpha(1 - alpha)/n0, the first term the members' binomial noise, the second
  the threshold's noise carried through the ROC's slope s at alpha. A table does not give s, so it is
  replaced by a secant below alpha, which over-estimates the slope at alpha when the ROC is concave (slopes
  fall with FPR): for alpha = 1% the secant from 0.1% (``(TPR@1% - TPR@0.1%) / 0.009``), for alpha = 0.1%
  the secant from the origin (``TPR@0.1% / 0.001``). A TPR@0.1% interpolated from fewer than 1,000
  non-members lies on a chord, below a concave ROC, so the 1% secant drawn from it is steeper still; that
  number itself gets no interval (it is not a measurement, SPEC §7). The variance is then folded into an
  effective number of members, n_eff = TPR(1 - TPR)/Var, and the interval is Wilson's score interval of
  TPR from n_eff trials (Korn & Graubard 1998, "Confidence intervals for proportions with small expected
  number of positive counts estimated from survey data", Survey Methodology 24:193-201): the threshold's
  noise shrinks n_eff below n1, and Wilson's shape skews the interval away from 0, as the bootstrap's are
  skewed, and keeps it of positive width at TPR = 0 (there n_eff = n1), where a symmetric normal interval
  collapses to a point.

The AUC intervals are symmetric normal ones clipped to [0, 1]; the bootstrap's are percentile intervals.
How the two compare on every committed table that has both and on the study cache's per-combo scores:
``benchmarks/approx_intervals.py`` (``benchmarks/results/approx_intervals.md``). The AUC intervals are within
a few percent of the bootstrap's width (median ratio 1.01, range 0.92-1.08 at 1,000 non-members). The TPR
ones are not uniformly conservative. At 1,000 non-members the TPR@1% intervals are somewhat narrower than
the bootstrap's (width ratio median 0.85, range 0.55-1.85; upper ends level with the bootstrap's in the
median): the secant bounds the slope only where the ROC is concave, which an empirical ROC at such low
FPRs often is not. With fewer than 100 non-members they are narrower still (median 0.62; upper ends 0.12
below the bootstrap's in the median). The TPR@0.1% intervals are wider (median 2.1x, range 0.32-4.46), so
conservative. No interval has zero width where the bootstrap's has not. Where per-text scores exist, the
bootstrap stays the method.
"""

from __future__ import annotations

from dataclasses import replace
from math import sqrt
from statistics import NormalDist
from typing import Any

from ltmia.metrics import FPRS, METRICS, Interval, MetricResult

AUC_METHOD = "hanley-mcneil"
TPR_METHOD = "wilson-delta-secant"
METHODS = {"auc": AUC_METHOD, "tpr_at_1pct": TPR_METHOD, "tpr_at_01pct": TPR_METHOD}
"""The method of each metric's approximate interval, as results files record it (``interval_method``)."""
DESCRIPTIONS = {
    AUC_METHOD: "AUC: Hanley & McNeil (1982) standard error",
    TPR_METHOD: (
        "TPR: Wilson interval with the delta-method variance (the ROC's slope bounded by a secant) as an "
        "effective member count (Korn & Graubard 1998); at 1,000 non-members about 0.85x the bootstrap's "
        "width at 1% FPR and 2x at 0.1%"
    ),
}
VALIDATION = "benchmarks/results/approx_intervals.md"
"""Where these intervals are measured against bootstrap ones (cited under every table that shows them)."""
LEVEL = 0.95


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard-normal quantile of ``level`` (1.95996... for 95%)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def normal_interval(value: float, se: float, level: float = LEVEL) -> Interval:
    """``value`` +- z se, clipped to [0, 1] (every SPEC §7 number is a rate)."""
    half = z_value(level) * se
    return max(0.0, value - half), min(1.0, value + half)


def hanley_mcneil_se(auc: float, n_members: int, n_nonmembers: int) -> float:
    """Standard error of an AUC from the AUC and the class counts alone (Hanley & McNeil 1982, eq. 2):
    SE^2 = [A(1-A) + (n1-1)(Q1-A^2) + (n0-1)(Q2-A^2)] / (n1 n0), Q1 = A/(2-A), Q2 = 2A^2/(1+A)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = auc * (1 - auc) + (n_members - 1) * (q1 - auc**2) + (n_nonmembers - 1) * (q2 - auc**2)
    return sqrt(max(variance, 0.0) / (n_members * n_nonmembers))


def auc_interval(auc: float, n_members: int, n_nonmembers: int, level: float = LEVEL) -> Interval:
    """Approximate interval of an AUC: Hanley-McNeil standard error, normal, clipped to [0, 1]."""
    return normal_interval(auc, hanley_mcneil_se(auc, n_members, n_nonmembers), level)


def tpr_se(tpr: float, fpr: float, slope: float, n_members: int, n_nonmembers: int) -> float:
    """Delta-method standard error of the TPR at a fixed ``fpr`` whose threshold is estimated from the
    non-members: sqrt(TPR(1-TPR)/n1 + slope^2 fpr(1-fpr)/n0), ``slope`` the ROC's slope at ``fpr``."""
    return sqrt(tpr * (1 - tpr) / n_members + slope**2 * fpr * (1 - fpr) / n_nonmembers)


def wilson_interval(p: float, n: float, level: float = LEVEL) -> Interval:
    """Wilson's score interval of a proportion ``p`` from ``n`` (possibly fractional) trials: asymmetric
    towards 1/2 and of positive width at p = 0 or 1, where the normal interval collapses to a point."""
    z2 = z_value(level) ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = sqrt(z2) / (1 + z2 / n) * sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # p inside despite rounding


def tpr_wilson_interval(
    tpr: float, fpr: float, slope: float, n_members: int, n_nonmembers: int, level: float = LEVEL
) -> Interval:
    """Wilson interval of a TPR with the delta-method variance (`tpr_se`) folded into an effective number
    of members, n_eff = TPR(1-TPR) / Var (Korn & Graubard 1998, "Confidence intervals for proportions with
    small expected number of positive counts estimated from survey data", Survey Methodology 24:193-201):
    the threshold's noise shrinks n_eff below n1, and Wilson's shape keeps the interval skewed away from
    0 and of positive width at TPR = 0 (then n_eff = n1)."""
    variance = tpr_se(tpr, fpr, slope, n_members, n_nonmembers) ** 2
    n_eff = tpr * (1 - tpr) / variance if 0 < tpr < 1 and variance > 0 else float(n_members)
    return wilson_interval(tpr, n_eff, level)


def tpr_at_1pct_interval(
    tpr_1pct: float, tpr_01pct: float | None, n_members: int, n_nonmembers: int, level: float = LEVEL
) -> Interval:
    """Approximate interval of a TPR at 1% FPR: `tpr_wilson_interval`, the slope at 1% bounded by the secant
    from the point at 0.1% (``(TPR@1% - TPR@0.1%) / 0.009``), or from the origin (``TPR@1% / 0.01``) when
    the table gives no TPR@0.1%."""
    low, high = FPRS["tpr_at_01pct"], FPRS["tpr_at_1pct"]
    slope = tpr_1pct / high if tpr_01pct is None else (tpr_1pct - tpr_01pct) / (high - low)
    return tpr_wilson_interval(tpr_1pct, high, slope, n_members, n_nonmembers, level)


def tpr_at_01pct_interval(
    tpr_01pct: float, n_members: int, n_nonmembers: int, level: float = LEVEL
) -> Interval:
    """Approximate interval of a TPR at 0.1% FPR: `tpr_wilson_interval`, the slope bounded by the secant
    from the origin (``TPR@0.1% / 0.001``). Only a measurement from 1,000 or more non-members has one
    (SPEC §7)."""
    fpr = FPRS["tpr_at_01pct"]
    return tpr_wilson_interval(tpr_01pct, fpr, tpr_01pct / fpr, n_members, n_nonmembers, level)


def tpr_interval(result: MetricResult, metric: str, level: float = LEVEL) -> Interval:
    """Approximate interval of ``result``'s TPR at 1% or 0.1% FPR (``metric``)."""
    n1, n0 = result.n_members, result.n_nonmembers
    if metric == "tpr_at_1pct":
        return tpr_at_1pct_interval(result.tpr_at_1pct, result.tpr_at_01pct, n1, n0, level)
    return tpr_at_01pct_interval(result.tpr_at_01pct, n1, n0, level)


def approximate(result: MetricResult, level: float = LEVEL) -> MetricResult:
    """``result`` with an approximate interval for every number that has none or an approximate one (its
    ``interval_method`` says which), except a TPR@0.1% from fewer than 1,000 non-members, which stays not
    measurable. An approximate interval is a function of the numbers alone, so one rendered by an earlier
    method is computed again with this one; bootstrap intervals are kept, and a result with only bootstrap
    intervals is returned as it is."""
    redone = [m for m in METRICS if result.interval(m) is None or result.approximate(m)]
    missing = [m for m in redone if m != "tpr_at_01pct" or result.tpr_at_01pct_measurable]
    if not missing and result.interval_method is None:
        return result  # bootstrap intervals only (and perhaps an unmeasurable TPR@0.1%): nothing to do
    intervals: dict[str, Any] = {f"{m}_ci": None for m in redone}  # an unmeasurable one stays empty
    for m in missing:
        intervals[f"{m}_ci"] = (
            auc_interval(result.auc, result.n_members, result.n_nonmembers, level)
            if m == "auc"
            else tpr_interval(result, m, level)
        )
    methods = {m: METHODS[m] for m in missing}
    return replace(result, **intervals, interval_method=methods or None)
