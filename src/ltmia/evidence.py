"""Evidence from known non-members: calibrated p-values, FDR / FPR selection, a set-level test and its power.

An attack score ranks texts but is not a probability (``ltmia.audit.run.SCORE_NOTE``). Texts that certainly
were *not* trained on (written after the model's release, held back, generated for the purpose) turn any
score into evidence with a stated error rate, without knowing how the target was trained (the setting of
dataset inference, Maini et al. 2024). Everything here assumes one thing: **under the null, a candidate's
score is exchangeable with the non-members' scores** — the non-members come from the same distribution as
the candidates. A distribution shift between the two sets (another source, period, length or style) breaks
it and is detected as "membership"; ``ltmia.audit.nonmembers`` checks for one with the reference model.

- ``p_values``: conformal p-values, p = (1 + #{non-member scores >= s}) / (n0 + 1). The +1 counts the
  candidate itself among the n0 + 1 exchangeable scores, so P(p <= a) <= a for a non-member candidate,
  with ties counted against the candidate (``>=``) so they can only make p larger.
- ``select``: Benjamini–Hochberg at a false discovery rate, or a fixed false-positive rate (p <= a). The
  candidates' p-values share one set of non-members and are therefore dependent, but positively so (PRDS),
  and BH keeps FDR <= q on them (Bates et al. 2023, "Testing for outliers with conformal p-values").
- ``rank_test``: one-sided Mann–Whitney U of candidates against non-members, with AUC = U / (n1 n0) as the
  effect size and a DeLong confidence interval.
- ``holm``: the attacks' set-level p-values combined by Holm's step-down (global p = min(1, k min p), the
  Bonferroni bound). The attacks read the same token statistics, so their p-values are strongly and
  unknowably dependent; Holm is exactly valid under any dependence and needs no asymptotics, which the
  Cauchy or harmonic-mean combinations do (they are valid only approximately, in the tail). Its price, a
  factor of at most k on the smallest p, rarely changes a verdict: a used dataset gives p-values far below
  alpha / k, an unused one p-values far above it.
- ``power`` / ``n_needed``: the normal approximation of U (Noether's form with DeLong's variance under the
  alternative), read off the observed placements. It is deterministic and instant, where resampling would
  add its own Monte-Carlo noise to an answer that is only a planning figure anyway.

Pure numpy / scipy: no model, no torch. Shapes: candidate scores (n1,), non-member scores (n0,).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

Rule = Literal["fdr", "fpr"]


def p_values(scores: ArrayLike, null_scores: ArrayLike) -> np.ndarray:
    """(n1,) candidate scores, (n0,) non-member scores -> (n1,) p = (1 + #{null >= s}) / (n0 + 1).

    Higher scores are more member-like; the smallest attainable p is 1 / (n0 + 1).
    """
    scores, null = np.asarray(scores, dtype=np.float64), np.sort(np.asarray(null_scores, dtype=np.float64))
    at_least = null.size - np.searchsorted(null, scores, side="left")
    return (1.0 + at_least) / (null.size + 1.0)


def bh_adjust(p: ArrayLike) -> np.ndarray:
    """(m,) p-values -> (m,) Benjamini–Hochberg adjusted p-values (q-values): q_(i) = min_{j>=i} m p_(j) / j,
    capped at 1. A text is selected at FDR level q exactly when its adjusted p-value is <= q."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def bh_cutoff(p: ArrayLike, level: float) -> float | None:
    """The BH step-up cutoff: the largest p_(k) with p_(k) <= k level / m (None: nothing is selected)."""
    ranked = np.sort(np.asarray(p, dtype=np.float64))
    passing = np.flatnonzero(ranked <= level * np.arange(1, ranked.size + 1) / ranked.size)
    return float(ranked[passing[-1]]) if passing.size else None


def score_threshold(null_scores: ArrayLike, p_cutoff: float) -> float | None:
    """The score t with p <= ``p_cutoff`` exactly when score > t (-inf: every score; None: no score).

    p <= c  <=>  #{null >= s} <= m with m = floor(c (n0 + 1)) - 1, i.e. s above the (m+1)-th largest null.
    """
    null = np.sort(np.asarray(null_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(p_cutoff * (null.size + 1) + 1e-9)) - 1
    if allowed < 0:
        return None
    return float(null[allowed]) if allowed < null.size else float("-inf")


@dataclass(frozen=True)
class Selection:
    """The candidates one attack selects: ``selected`` (n1,) bool, and the rule that chose them.

    ``p_cutoff``: selected iff p <= it; ``score_threshold``: equivalently iff score > it. An FDR selection of
    nothing has neither; an FPR rule always has its cutoff, and a threshold when attainable. ``attainable``:
    whether the smallest possible p, 1 / (n0 + 1), can pass at all (else more non-members are needed, not
    more candidates).
    """

    rule: Rule
    level: float
    selected: np.ndarray
    p_cutoff: float | None
    score_threshold: float | None
    attainable: bool

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    def to_dict(self) -> dict:
        """JSON-ready, without the per-text mask (it is a column of the score table)."""
        record = {key: value for key, value in asdict(self).items() if key != "selected"}
        return {**record, "n_selected": self.n_selected, "n_candidates": int(self.selected.size)}


def select(scores: ArrayLike, null_scores: ArrayLike, rule: Rule, level: float) -> Selection:
    """Candidates selected as members at false discovery rate ``level`` (BH on ``p_values``) or at
    false-positive rate ``level`` (p <= level: each non-member candidate is selected with probability at
    most ``level``)."""
    p = p_values(scores, null_scores)
    n0 = np.asarray(null_scores).size
    cutoff = bh_cutoff(p, level) if rule == "fdr" else level
    selected = p <= cutoff if cutoff is not None else np.zeros(p.size, dtype=bool)
    threshold = score_threshold(null_scores, cutoff) if cutoff is not None else None
    return Selection(rule, level, selected, cutoff, threshold, attainable=1.0 / (n0 + 1) <= level)


@dataclass(frozen=True)
class RankTest:
    """A Mann–Whitney U test of candidates (n1) against non-members (n0).

    ``auc`` = U / (n1 n0): the probability that a random candidate outscores a random non-member (ties
    count one half), 0.5 under the null; ``auc_ci`` its DeLong interval; ``var10`` / ``var01`` the
    variances of the candidates' / non-members' placements, which ``power`` reuses.
    """

    u: float
    p_value: float
    auc: float
    auc_ci: tuple[float, float]
    n1: int
    n0: int
    alternative: str
    var10: float
    var01: float

    def to_dict(self) -> dict:
        return {**asdict(self), "auc_ci": list(self.auc_ci)}


def placements(scores: np.ndarray, null_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n1,), (n0,) -> DeLong's placements: (n1,) share of non-members each candidate beats, (n0,) share of
    candidates that beat each non-member (ties one half); both average to the AUC."""
    pooled = stats.rankdata(np.concatenate([scores, null_scores]))
    n1, n0 = scores.size, null_scores.size
    v10 = (pooled[:n1] - stats.rankdata(scores)) / n0
    v01 = 1.0 - (pooled[n1:] - stats.rankdata(null_scores)) / n1
    return v10, v01


def rank_test(
    scores: ArrayLike,
    null_scores: ArrayLike,
    alternative: Literal["greater", "two-sided"] = "greater",
    confidence: float = 0.95,
) -> RankTest:
    """Mann–Whitney U of (n1,) candidate scores against (n0,) non-member scores.

    "greater": are candidates stochastically larger (more member-like)? scipy picks the exact null
    distribution for small samples without ties, else the normal approximation with tie correction.
    """
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(null_scores, dtype=np.float64)
    result = stats.mannwhitneyu(x, y, alternative=alternative)
    n1, n0 = x.size, y.size
    auc = float(result.statistic) / (n1 * n0)
    v10, v01 = placements(x, y)
    var10 = float(v10.var(ddof=1)) if n1 > 1 else 0.0
    var01 = float(v01.var(ddof=1)) if n0 > 1 else 0.0
    half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(var10 / n1 + var01 / n0)
    interval = (max(0.0, auc - half), min(1.0, auc + half))
    return RankTest(
        float(result.statistic), float(result.pvalue), auc, interval, n1, n0, alternative, var10, var01
    )


def holm(p: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values of k tests: sorted ascending, adj_(i) = max_{j<=i} min(1, (k - j + 1) p_(j)).

    Test i is rejected at familywise level alpha iff adj_i <= alpha; the smallest adjusted p-value,
    min(1, k min p), is the p-value of "at least one null is false" (see the module docstring for why Holm).
    """
    names = sorted(p, key=lambda name: p[name])
    k, running, out = len(names), 0.0, {}
    for j, name in enumerate(names):
        running = max(running, min(1.0, (k - j) * p[name]))
        out[name] = running
    return {name: out[name] for name in p}


def power(n1: int, n0: int, auc: float, var10: float, var01: float, alpha: float) -> float:
    """Probability that the one-sided U test at level ``alpha`` rejects with n1 candidates and n0
    non-members, when candidates beat non-members with probability ``auc`` and the placements have
    variances ``var10`` / ``var01`` (taken from an observed `RankTest`).

    AUC-hat is approximately normal: mean 1/2 and variance (n1 + n0 + 1) / (12 n1 n0) under the null,
    mean ``auc`` and variance var10 / n1 + var01 / n0 under the alternative, so
    power = Phi((auc - 1/2 - z_{1-alpha} sd0) / sd1).
    """
    sd0 = np.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    sd1 = np.sqrt(var10 / n1 + var01 / n0)
    margin = auc - 0.5 - stats.norm.ppf(1 - alpha) * sd0
    if sd1 == 0:
        return 1.0 if margin > 0 else 0.0
    return float(stats.norm.cdf(margin / sd1))


MAX_TEXTS = 10**7


def n_needed(test: RankTest, alpha: float, target: float = 0.8, balanced: bool = False) -> int | None:
    """The fewest candidate texts (from the observed candidates' distribution) for ``power`` >= ``target``,
    with the observed n0 non-members, or with as many non-members as candidates (``balanced``).

    None when no number reaches it: an AUC at or below 1/2, or (not balanced) a target the fixed
    non-members cannot support, since the variance from n0 does not shrink with more candidates. For
    ``target`` >= 1/2 the power is increasing in n wherever it is >= ``target``, so a bisection finds the
    boundary.
    """
    if not 0.5 <= target < 1:
        raise ValueError(f"target power must be in [0.5, 1), got {target}")

    def enough(n: int) -> bool:
        return power(n, n if balanced else test.n0, test.auc, test.var10, test.var01, alpha) >= target

    if test.auc <= 0.5 or not enough(MAX_TEXTS):
        return None
    low, high = 0, 1  # not enough at low (by convention for 0), enough at high once the doubling stops
    while not enough(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
