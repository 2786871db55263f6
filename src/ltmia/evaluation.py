"""Evaluation (SPEC §7): score stores with LT-MIA and every baseline, pool them into groups, write results.

One place turns per-row scores into what a reader sees: a JSON record, a markdown table and a log-log ROC
plot per store or group. ``ltmia evaluate``, the study runner and the audit all write through it, so their
tables look alike and are computed alike.

A group pools the rows of its stores into one ROC (every member/non-member of every combo in the group),
which is how a single attack threshold would be used across them; the per-store tables sit beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

from ltmia.artefacts import write_json
from ltmia.attacks import ATTACKS, score
from ltmia.errors import InputError
from ltmia.metrics import MetricResult, evaluate, roc_curve
from ltmia.store import Store

LT_MIA = "lt_mia"


@dataclass
class Scored:
    """Per-row scores of one store's split: ``labels`` (n,), ``scores[attack]`` (n,), ``rows`` (n,)."""

    name: str
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    rows: np.ndarray

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "labels": self.labels.tolist(),
            "rows": self.rows.tolist(),
            "scores": {attack: values.tolist() for attack, values in self.scores.items()},
        }

    @classmethod
    def from_json(cls, record: dict) -> Scored:
        return cls(
            name=record["name"],
            labels=np.asarray(record["labels"], dtype=np.int64),
            rows=np.asarray(record["rows"], dtype=np.int64),
            scores={attack: np.asarray(v, dtype=np.float64) for attack, v in record["scores"].items()},
        )


def store_split(split: str | None) -> str | None:
    """ "all" (or None) -> every row of the store; anything else is a split name."""
    return None if split in (None, "all") else split


def baseline_scores(store: Store, split: str | None, names: Sequence[str] | None = None) -> Scored:
    """Every registered baseline (SPEC §5), or the one-pass attacks ``names``, on one split of a store."""
    split = store_split(split)
    rows = store.rows(split)
    stats, texts = store.stats(split), store.texts(split)
    names = ATTACKS.names() if names is None else names
    scores = {name: np.asarray(score(name, stats, texts), dtype=np.float64) for name in names}
    return Scored(str(store.path), store.labels[rows], scores, rows)


def lt_mia_scores(classifier, store: Store, split: str | None, name: str = LT_MIA) -> Scored:
    """LT-MIA membership logits of one split of a store from a fitted ``LTMIA`` classifier."""
    split = store_split(split)
    rows = store.rows(split)
    values = np.asarray(classifier.score(store, split=split), dtype=np.float64)
    return Scored(str(store.path), store.labels[rows], {name: values}, rows)


def merge(parts: Sequence[Scored]) -> Scored:
    """Scores of the same rows from several sources (e.g. baselines + LT-MIA) as one record."""
    first = parts[0]
    for part in parts[1:]:
        if not np.array_equal(part.rows, first.rows):
            raise ValueError(f"cannot merge scores of different rows ({part.name} vs {first.name})")
    return Scored(
        first.name, first.labels, {k: v for part in parts for k, v in part.scores.items()}, first.rows
    )


def pool(name: str, parts: Sequence[Scored]) -> Scored:
    """Rows of several stores as one group (attacks present in every part only)."""
    attacks = [a for a in parts[0].scores if all(a in part.scores for part in parts)]
    return Scored(
        name=name,
        labels=np.concatenate([part.labels for part in parts]),
        scores={a: np.concatenate([part.scores[a] for part in parts]) for a in attacks},
        rows=np.concatenate([part.rows for part in parts]),
    )


def metrics(scored: Scored) -> dict[str, MetricResult]:
    """SPEC §7 metrics of every attack in ``scored``; a one-class set, or a NaN or infinite score (no
    ranking exists), is an InputError naming the attack and the rows."""
    if scored.labels.size == 0 or scored.labels.min() == scored.labels.max():
        raise InputError(
            f"{scored.name} holds only one class; membership metrics need members and non-members"
        )
    for attack, values in scored.scores.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            rows = ", ".join(str(row) for row in scored.rows[bad[:5]]) + (", ..." if bad.size > 5 else "")
            raise InputError(
                f"{attack} gives {bad.size} NaN or infinite scores on {scored.name} (rows {rows}); the store "
                "or classifier holds non-finite numbers: check them with ltmia --verify, or extract / train "
                "them again"
            )
    return {attack: evaluate(scored.labels, values) for attack, values in scored.scores.items()}


def markdown_table(results: Mapping[str, MetricResult], title: str | None = None) -> str:
    """The metrics as a markdown table, best AUC first; an unmeasurable TPR@0.1% says so."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| attack | AUC | TPR@1%FPR | TPR@0.1%FPR | members | non-members |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for attack, r in sorted(results.items(), key=lambda item: -item[1].auc):
        lines.append(
            f"| {attack} | {r.auc:.3f} | {r.tpr_at_1pct:.3f} | {r.format_tpr01()} | {r.n_members} | "
            f"{r.n_nonmembers} |"
        )
    return "\n".join(lines) + "\n"


def plot_roc(scored: Scored, path: Path, title: str) -> Path:
    """Log-log ROC curves, one line per attack (low FPRs are where an audit lives, SPEC §7)."""
    fig = Figure(figsize=(5.5, 5), dpi=110)
    ax = fig.subplots()
    floor = 1.0 / max(1, int((scored.labels == 0).sum()))
    for attack, values in sorted(scored.scores.items()):
        fpr, tpr = roc_curve(scored.labels, values)
        result = evaluate(scored.labels, values)
        ax.plot(
            np.maximum(fpr, floor / 2),
            np.maximum(tpr, floor / 2),
            lw=1.4 if attack == LT_MIA else 1.0,
            label=f"{attack} (AUC {result.auc:.3f})",
        )
    ax.plot([floor / 2, 1], [floor / 2, 1], color="grey", lw=0.8, ls=":")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(floor / 2, 1),
        ylim=(floor / 2, 1.02),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
    )
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", lw=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_results(
    scored: Scored, out: Path, slug: str, title: str, extra: dict | None = None
) -> dict[str, MetricResult]:
    """``<slug>.json`` (metrics + ``extra``), ``<slug>.md`` and ``<slug>-roc.png`` under ``out``."""
    results = metrics(scored)
    record = {"title": title, "metrics": {a: r.to_dict() for a, r in results.items()}, **(extra or {})}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{slug}.json", record)
    (out / f"{slug}.md").write_text(markdown_table(results, title))
    plot_roc(scored, out / f"{slug}-roc.png", title)
    return results


def evaluate_stores(
    stores: Sequence[Store],
    out: Path,
    classifier=None,
    split: str | None = "test",
    group: str | None = None,
) -> dict[str, tuple[str, dict[str, MetricResult]]]:
    """Score each store's ``split`` with every baseline (and LT-MIA when a classifier is given); write
    per-store results and, for several stores or a named ``group``, the pooled group results.

    Returns {name: (title, {attack: metrics})} for each table written.
    """
    written = {}
    parts = []
    for store in stores:
        scored = baseline_scores(store, split)
        if classifier is not None:
            scored = merge([scored, lt_mia_scores(classifier, store, split)])
        slug, title = store.path.name, f"{store.path.name} ({split or 'all'} rows)"
        written[slug] = (title, write_results(scored, out, slug, title))
        parts.append(scored)
    if group or len(parts) > 1:
        name = group or "all stores"
        title = f"{name} ({len(parts)} stores, pooled)"
        extra = {"stores": [str(s.path) for s in stores]}
        written[name] = (title, write_results(pool(name, parts), out, slugify(name), title, extra))
    (out / "scores.json").write_text(json.dumps([p.to_json() for p in parts]))
    return written


def slugify(name: str) -> str:
    """A file-name-safe form of a group name: lower case, runs of other characters as one dash."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(filter(None, slug.split("-"))) or "group"
