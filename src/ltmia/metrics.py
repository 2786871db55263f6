"""Attack metrics (SPEC §7): ROC AUC and TPR at 1% and 0.1% FPR, with the non-member count they rest on,
and bootstrap intervals for all three.

Labels are 1 for members, 0 for non-members; scores are higher for more likely members. TPR at a fixed FPR
is read off the full ROC (no dropped points) by linear interpolation between the two points that bracket the
target FPR, so it does not jump with the threshold grid. At 0.1% FPR only 1,000 or more non-members put a
ROC point at or below the target; from fewer the number is an interpolation artefact, so SPEC §7 requires
it to be shown as not measurable.

Intervals (`Bootstrap`): the members and the non-members are resampled with replacement *separately*
(stratified), so every replicate has both classes in their original numbers, as the study's fixed
member / non-member counts (SPEC §2) have; the interval is the percentile interval of the replicates.
Every attack scored on the same texts is evaluated on the *same* resamples, so the difference between two
attacks gets a paired interval (`Bootstrapped.difference`), much narrower than two marginal intervals
suggest when the attacks' errors are correlated. Default 1,000 replicates, seed 0: each 2.5% tail then
rests on 25 replicates; measured on 1,000 + 1,000 texts at AUC 0.80, an interval's ends move by 0.001
(standard deviation over bootstrap seeds) against a width of 0.038 (TPR@1%: 0.001-0.003 against 0.12),
and a study summary stays a matter of seconds. An interval says how
much the number would move with other texts from the same distribution; it does not cover the seed's
other effects (other fine-tunes, another classifier run), which `benchmarks/seed_spread.py` measures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as sk_metrics

MIN_NONMEMBERS_FOR_01PCT = 1000
METRICS = ("auc", "tpr_at_1pct", "tpr_at_01pct")
"""The SPEC §7 numbers, in the order replicate arrays hold them."""
FPRS = {"tpr_at_1pct": 0.01, "tpr_at_01pct": 0.001}


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


Interval = tuple[float, float]


@dataclass(frozen=True)
class MetricResult:
    """SPEC §7's numbers for one set of scores, with the class counts they rest on, and (when bootstrapped)
    a ``(low, high)`` interval for each number. ``interval_method`` names, per metric, an interval that is
    not a bootstrap one (``ltmia.approx_intervals``: from the numbers alone, for tables whose per-text scores
    are gone); None for bootstrap intervals, so their records read and write as before."""

    auc: float
    tpr_at_1pct: float
    tpr_at_01pct: float
    n_members: int
    n_nonmembers: int
    auc_ci: Interval | None = None
    tpr_at_1pct_ci: Interval | None = None
    tpr_at_01pct_ci: Interval | None = None
    interval_method: Mapping[str, str] | None = None

    @property
    def tpr_at_01pct_measurable(self) -> bool:
        """Whether enough non-members (>= 1,000) exist for an FPR of 0.1% to be a measurement."""
        return self.n_nonmembers >= MIN_NONMEMBERS_FOR_01PCT

    def interval(self, metric: str) -> Interval | None:
        """The interval of ``metric`` (one of `METRICS`), None when it has none."""
        return getattr(self, f"{metric}_ci")

    def approximate(self, metric: str) -> bool:
        """Whether ``metric``'s interval is an approximate one (``interval_method``), not a bootstrap one."""
        return self.interval(metric) is not None and metric in (self.interval_method or {})

    def to_dict(self) -> dict:
        """All fields plus ``tpr_at_01pct_measurable``, JSON-ready; intervals only when present, so a record
        without them reads (and writes) as before."""
        record = {key: value for key, value in asdict(self).items() if value is not None}
        return {**record, "tpr_at_01pct_measurable": self.tpr_at_01pct_measurable}

    @classmethod
    def from_dict(cls, record: Mapping) -> MetricResult:
        """Inverse of `to_dict`; also reads records written before intervals existed."""
        intervals: dict[str, Any] = {
            f"{m}_ci": tuple(record[f"{m}_ci"]) for m in METRICS if record.get(f"{m}_ci") is not None
        }
        values: dict[str, Any] = {m: float(record[m]) for m in METRICS}
        method = record.get("interval_method")
        return cls(
            **values,
            n_members=int(record["n_members"]),
            n_nonmembers=int(record["n_nonmembers"]),
            **intervals,
            interval_method=dict(method) if method else None,
        )


def evaluate(labels: ArrayLike, scores: ArrayLike) -> MetricResult:
    """(n,) 0/1 labels (1 = member), (n,) finite scores -> `MetricResult` (point estimates only)."""
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


# --- bootstrap intervals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: ``replicates`` stratified resamples from ``seed``, percentile interval at
    ``level`` (see the module docstring for why stratified, paired and 1,000)."""

    replicates: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if not isinstance(self.replicates, int) or self.replicates < 2:
            raise ValueError(f"bootstrap replicates must be an integer >= 2, got {self.replicates!r}")
        if not 0 < self.level < 1:
            raise ValueError(f"bootstrap level must be in (0, 1), got {self.level!r}")

    def record(self) -> dict:
        """What a results file says about its intervals."""
        return {"method": "stratified percentile bootstrap", **asdict(self)}

    def interval(self, values: np.ndarray) -> np.ndarray:
        """(B, ...) replicate values -> (..., 2) percentile interval (low, high) over the replicates."""
        tail = (1 - self.level) / 2
        return np.moveaxis(np.quantile(values, [tail, 1 - tail], axis=0), 0, -1)


@dataclass(frozen=True)
class Difference:
    """A paired-bootstrap difference ``a - b`` of one metric: the point difference and its interval."""

    delta: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping) -> Difference:
        """Inverse of `to_dict` (a record may hold other keys beside these three)."""
        return cls(float(record["delta"]), float(record["low"]), float(record["high"]))

    def text(self) -> str:
        """ "+0.024 [+0.008, +0.040]": the difference and its interval, signed."""
        return f"{self.delta:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


REPLICATE_CELLS = 2**22
"""Replicates are drawn in blocks of at most this many (replicate, row) counts (16 MiB per int32 array), so
memory stays bounded however many rows a group pools."""


def resample_counts(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """(n, replicates) int32: how often each of n rows is drawn when n rows are drawn with replacement.

    Texts are rows and replicates columns, so gathering texts in score order copies contiguous rows (twice
    as fast as gathering columns); int32 halves the memory traffic.
    """
    draws = rng.integers(0, n, size=(replicates, n)) * replicates + np.arange(replicates)[:, None]
    return np.bincount(draws.ravel(), minlength=n * replicates).reshape(n, replicates).astype(np.int32)


@dataclass(frozen=True)
class RankedScores:
    """One attack's scores sorted once, for `weighted_metrics`.

    ``nonmember_order`` (n_nm,) sorts the non-members ascending; ``below`` / ``up_to`` (n_m,) count, for
    each member, the sorted non-members strictly below / at or below its score. ``order`` (n,) sorts
    [members, non-members] ascending, ``member`` (n,) bool marks the members in that order and
    ``starts`` (U,) where each distinct score begins (the ROC's thresholds).
    """

    nonmember_order: np.ndarray
    below: np.ndarray
    up_to: np.ndarray
    order: np.ndarray
    member: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, member_scores: np.ndarray, nonmember_scores: np.ndarray) -> RankedScores:
        nonmember_order = np.argsort(nonmember_scores, kind="stable")
        sorted_nonmembers = nonmember_scores[nonmember_order]
        scores = np.concatenate([member_scores, nonmember_scores])
        order = np.argsort(scores, kind="stable")
        ranked = scores[order]
        return cls(
            nonmember_order,
            np.searchsorted(sorted_nonmembers, member_scores, side="left"),
            np.searchsorted(sorted_nonmembers, member_scores, side="right"),
            order,
            order < member_scores.size,
            np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]),
        )


def weighted_auc(ranked: RankedScores, member_counts: np.ndarray, nonmember_counts: np.ndarray) -> np.ndarray:
    """(n_m, B), (n_nm, B) counts -> (B,) AUC of each reweighted set.

    AUC = sum_i c_i (non-members below s_i + non-members tied with s_i / 2) / (n_m n_nm), the non-members
    counted with their replicate counts: a cumulative sum over the sorted non-members, read at each member.
    Texts are rows, so the sort and the reads copy whole rows of B counts (contiguous memory).
    """
    cumulative = np.zeros((nonmember_counts.shape[0] + 1, nonmember_counts.shape[1]), nonmember_counts.dtype)
    np.cumsum(nonmember_counts[ranked.nonmember_order], axis=0, out=cumulative[1:])
    twice = member_counts * (cumulative[ranked.below] + cumulative[ranked.up_to])
    return twice.sum(0, dtype=np.int64) / (2 * member_counts.shape[0] * nonmember_counts.shape[0])


def weighted_tprs(
    ranked: RankedScores, member_counts: np.ndarray, nonmember_counts: np.ndarray
) -> np.ndarray:
    """(n_m, B), (n_nm, B) counts -> (B, len(FPRS)) TPR at each FPR of `FPRS` of each reweighted set.

    The ROC walks the distinct scores downwards (ties pooled); TPR at a fixed FPR interpolates between the
    last ROC point at or below it and the next, as `tpr_at_fpr` does. Only the top of the ranking can hold
    those two points, so the walk starts with the top texts and takes more only while some replicate's ROC
    has not passed the largest target FPR yet (at most the whole ranking, whose last point has FPR 1).
    """
    n_members, n_nonmembers = member_counts.shape[0], nonmember_counts.shape[0]
    n, largest = ranked.order.size, max(FPRS.values())
    take = min(n, int(4 * largest * n) + 64)
    zero = np.zeros((1, member_counts.shape[1]), dtype=np.int64)
    while True:
        first = ranked.starts[np.searchsorted(ranked.starts, n - take, side="right") - 1]  # whole runs only
        top, member = ranked.order[first:], ranked.member[first:]
        counts = np.empty((top.size, member_counts.shape[1]), dtype=member_counts.dtype)  # (P, B)
        counts[member] = member_counts[top[member]]
        counts[~member] = nonmember_counts[top[~member] - n_members]
        starts = ranked.starts[ranked.starts >= first] - first
        members = np.add.reduceat(np.where(member[:, None], counts, 0), starts)[::-1]  # (U', B) descending
        nonmembers = np.add.reduceat(np.where(member[:, None], 0, counts), starts)[::-1]
        fpr = np.concatenate([zero, np.cumsum(nonmembers, axis=0)]) / n_nonmembers  # (U'+1, B)
        if first == 0 or bool((fpr[-1] > largest).all()):
            break
        take = min(n, 2 * take)
    tpr = np.concatenate([zero, np.cumsum(members, axis=0)]) / n_members
    out = []
    for target in FPRS.values():
        last = (fpr <= target).sum(0, keepdims=True) - 1  # the walk passed target: a next point exists
        f0, f1 = np.take_along_axis(fpr, last, 0), np.take_along_axis(fpr, last + 1, 0)
        t0, t1 = np.take_along_axis(tpr, last, 0), np.take_along_axis(tpr, last + 1, 0)
        out.append((t0 + (t1 - t0) * (target - f0) / (f1 - f0))[0])
    return np.stack(out, axis=1)


def weighted_metrics(
    ranked: RankedScores, member_counts: np.ndarray, nonmember_counts: np.ndarray
) -> np.ndarray:
    """SPEC §7's numbers of B reweighted copies of one attack's texts, all at once.

    (n_m, B), (n_nm, B) int counts (how often each text appears in replicate b; columns sum to n_m / n_nm)
    -> (B, 3) in `METRICS` order: exactly the metrics of the resampled sets, without materialising them.
    """
    auc_values = weighted_auc(ranked, member_counts, nonmember_counts)
    return np.concatenate(
        [auc_values[:, None], weighted_tprs(ranked, member_counts, nonmember_counts)], axis=1
    )


@dataclass
class Bootstrapped:
    """Point metrics of several attacks on the same texts, with replicates drawn on shared resamples.

    ``results[attack]`` is a `MetricResult` with intervals; ``replicates[attack]`` (B, 3) the replicate
    values in `METRICS` order, row b of every attack from the same resample b (hence `difference`).
    """

    results: dict[str, MetricResult]
    replicates: dict[str, np.ndarray]
    bootstrap: Bootstrap = field(default_factory=Bootstrap)

    def difference(self, a: str, b: str) -> dict[str, Difference]:
        """Paired bootstrap of attack ``a`` minus attack ``b``, per metric."""
        intervals = self.bootstrap.interval(self.replicates[a] - self.replicates[b])  # (3, 2)
        return {
            metric: Difference(
                getattr(self.results[a], metric) - getattr(self.results[b], metric), *map(float, bounds)
            )
            for metric, bounds in zip(METRICS, intervals, strict=True)
        }


def evaluate_bootstrap(
    labels: ArrayLike, scores: Mapping[str, ArrayLike], bootstrap: Bootstrap | None = None
) -> Bootstrapped:
    """(n,) labels, {attack: (n,) scores} -> point metrics with stratified bootstrap intervals.

    The resamples depend only on ``bootstrap`` and the labels, so the same texts get the same resamples in
    every call (an attack's interval does not depend on which other attacks are scored beside it).
    """
    bootstrap = bootstrap or Bootstrap()
    labels = np.asarray(labels)
    points = {name: evaluate(labels, values) for name, values in scores.items()}  # validates every input
    member, nonmember = labels == 1, labels == 0
    ranked = {
        name: RankedScores.of(
            np.asarray(values, dtype=np.float64)[member], np.asarray(values, dtype=np.float64)[nonmember]
        )
        for name, values in scores.items()
    }
    rng = np.random.default_rng(bootstrap.seed)
    block = max(1, REPLICATE_CELLS // labels.size)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    for start in range(0, bootstrap.replicates, block):
        size = min(block, bootstrap.replicates - start)
        member_counts = resample_counts(rng, int(member.sum()), size)
        nonmember_counts = resample_counts(rng, int(nonmember.sum()), size)
        for name, ranks in ranked.items():
            parts[name].append(weighted_metrics(ranks, member_counts, nonmember_counts))
    replicates = {name: np.concatenate(blocks) for name, blocks in parts.items()}
    results = {}
    for name, point in points.items():
        intervals = bootstrap.interval(replicates[name])
        cis = {f"{m}_ci": (float(lo), float(hi)) for m, (lo, hi) in zip(METRICS, intervals, strict=True)}
        results[name] = MetricResult(**{**asdict(point), **cis})
    return Bootstrapped(results, replicates, bootstrap)


def paired_difference(
    labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, bootstrap: Bootstrap | None = None
) -> dict[str, Difference]:
    """Paired bootstrap of attack a minus attack b on the same texts (same resamples for both), per metric."""
    return evaluate_bootstrap(labels, {"a": scores_a, "b": scores_b}, bootstrap).difference("a", "b")
