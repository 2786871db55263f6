"""Evaluation (SPEC §7): score stores with LT-MIA and every baseline, pool them into groups, write results.

One place turns per-row scores into what a reader sees: a JSON record, a table and a log-log ROC plot per
store or group. ``ltmia evaluate``, ``ltmia baselines``, the study report and the audit all go through it,
so their numbers are computed alike, and every table is built as a `Table` and drawn by `render` (markdown,
HTML or the terminal), so they look alike: each number with its bootstrap interval (``ltmia.metrics``), a
best value in bold only when its interval excludes the runner-up's value, and the paired-bootstrap
difference between the best attack and the runner-up.

A group pools the rows of its stores into one ROC (every member/non-member of every combo in the group),
which is how a single attack threshold would be used across them; the per-store tables sit beside it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed
from rich.table import Table as RichTable
from rich.text import Text

from ltmia.approx_intervals import DESCRIPTIONS, LEVEL, VALIDATION
from ltmia.artefacts import atomic_path, claim_output, record_output, write_json, write_text
from ltmia.attacks import ATTACKS, score
from ltmia.errors import InputError, OutputExistsError
from ltmia.metrics import (
    METRICS,
    MIN_NONMEMBERS_FOR_01PCT,
    Bootstrap,
    Bootstrapped,
    Difference,
    MetricResult,
    evaluate,
    evaluate_bootstrap,
    roc_curve,
)
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


LABELS = {"auc": "AUC", "tpr_at_1pct": "TPR@1%FPR", "tpr_at_01pct": "TPR@0.1%FPR"}
DEFAULT_BOOTSTRAP = Bootstrap()


@dataclass(frozen=True)
class Comparison:
    """The best attack of one metric against the runner-up: paired-bootstrap difference best - runner-up."""

    metric: str
    best: str
    runner_up: str
    difference: Difference

    def to_dict(self) -> dict:
        return {"best": self.best, "runner_up": self.runner_up, **self.difference.to_dict()}

    @classmethod
    def from_dict(cls, metric: str, record: Mapping) -> Comparison:
        """Inverse of `to_dict` for ``metric``."""
        return cls(metric, str(record["best"]), str(record["runner_up"]), Difference.from_dict(record))

    def text(self) -> str:
        return f"{self.best} − {self.runner_up} {self.difference.text()}"


def learned(attack: str) -> bool:
    """Whether ``attack`` is learned (``lt_mia``, or ``lt_mia[<classifier>]`` in a study), not one of the
    hand-made scores it is measured against."""
    return attack == LT_MIA or attack.startswith(f"{LT_MIA}[")


@dataclass(frozen=True)
class VersusBaseline:
    """A learned attack against the best hand-made score of one metric (the baseline to beat, SPEC §7):
    paired-bootstrap difference attack - baseline."""

    metric: str
    attack: str
    baseline: str
    difference: Difference

    def to_dict(self) -> dict:
        return {"attack": self.attack, "baseline": self.baseline, **self.difference.to_dict()}

    @classmethod
    def from_dict(cls, metric: str, record: Mapping) -> VersusBaseline:
        """Inverse of `to_dict` for ``metric``."""
        return cls(metric, str(record["attack"]), str(record["baseline"]), Difference.from_dict(record))


@dataclass
class Evaluation:
    """SPEC §7 metrics of every attack on one scored set, with intervals and best-vs-runner-up comparisons
    (both absent when ``bootstrap`` is None)."""

    title: str
    results: dict[str, MetricResult]
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    bootstrap: Bootstrap | None = None
    versus: dict[str, list[VersusBaseline]] = field(default_factory=dict)  # metric -> each learned attack

    def record(self) -> dict:
        """The JSON form: metrics, and the bootstrap and comparisons when there are intervals."""
        record: dict = {"title": self.title, "metrics": {a: r.to_dict() for a, r in self.results.items()}}
        if self.bootstrap is not None:
            record["bootstrap"] = self.bootstrap.record()
            record["comparisons"] = {m: c.to_dict() for m, c in self.comparisons.items()}
            if self.versus:
                record["vs_best_baseline"] = {m: [v.to_dict() for v in vs] for m, vs in self.versus.items()}
        return record

    @classmethod
    def from_record(cls, record: Mapping) -> Evaluation:
        """Inverse of `record` (a results file's group or store), for re-rendering its tables without the
        per-text scores; a record without intervals reads with none."""
        results = {a: MetricResult.from_dict(r) for a, r in record["metrics"].items()}
        found = record.get("comparisons", {})
        comparisons = {m: Comparison.from_dict(m, found[m]) for m in METRICS if m in found}
        boot = record.get("bootstrap")
        bootstrap = (
            None if boot is None else Bootstrap(int(boot["replicates"]), int(boot["seed"]), boot["level"])
        )
        found = record.get("vs_best_baseline", {})
        versus = {m: [VersusBaseline.from_dict(m, v) for v in found[m]] for m in METRICS if m in found}
        return cls(str(record["title"]), results, comparisons, bootstrap, versus)

    def table(self) -> Table:
        """Attacks as rows, best AUC first: the table of `ltmia evaluate`, `baselines` and the audit."""
        return metrics_table(self.results, self.title, list(self.comparisons.values()), self.bootstrap)


def ranked(results: Mapping[str, MetricResult], metric: str) -> list[str]:
    """Attacks by ``metric``, highest first (ties keep their order)."""
    return sorted(results, key=lambda attack: -getattr(results[attack], metric))


def evaluation(scored: Scored, title: str, bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP) -> Evaluation:
    """SPEC §7 metrics of every attack in ``scored`` (intervals unless ``bootstrap`` is None); a one-class
    set, or a NaN or infinite score (no ranking exists), is an InputError naming the attack and the rows."""
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
    if bootstrap is None:
        results = {attack: evaluate(scored.labels, values) for attack, values in scored.scores.items()}
        return Evaluation(title, results)
    boot = evaluate_bootstrap(scored.labels, scored.scores, bootstrap)
    comparisons = {}
    for metric in METRICS:
        order = ranked(boot.results, metric)
        if len(order) > 1 and not unmeasurable(boot.results[order[0]], metric):
            best, runner_up = order[:2]
            difference = boot.difference(best, runner_up)[metric]
            comparisons[metric] = Comparison(metric, best, runner_up, difference)
    return Evaluation(title, boot.results, comparisons, bootstrap, versus_baseline(boot))


def versus_baseline(boot: Bootstrapped) -> dict[str, list[VersusBaseline]]:
    """Per metric, each learned attack minus the best hand-made score of that metric (paired bootstrap): the
    comparison a claim that the learned attack wins rests on. Empty without both kinds of attack; a metric
    the best baseline cannot measure (TPR@0.1% from too few non-members) is left out."""
    attacks = [a for a in boot.results if learned(a)]
    baselines = {a: r for a, r in boot.results.items() if not learned(a)}
    versus: dict[str, list[VersusBaseline]] = {}
    if not attacks or not baselines:
        return versus
    for metric in METRICS:
        best = ranked(baselines, metric)[0]
        if unmeasurable(baselines[best], metric):
            continue
        versus[metric] = [
            VersusBaseline(metric, attack, best, boot.difference(attack, best)[metric]) for attack in attacks
        ]
    return versus


def metrics(scored: Scored, bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP) -> dict[str, MetricResult]:
    """SPEC §7 metrics (with intervals unless ``bootstrap`` is None) of every attack in ``scored``."""
    return evaluation(scored, scored.name, bootstrap).results


# --- tables: one model, one renderer ------------------------------------------------------------------


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    """A table as data: ``columns``, ``rows`` of cells, the first ``label_columns`` names (left-aligned), the
    rest numbers (right-aligned); ``notes`` explain its marks. `render` draws it."""

    columns: list[str]
    rows: list[list[Cell]]
    title: str | None = None
    notes: list[str] = field(default_factory=list)
    label_columns: int = 1


@overload
def render(table: Table, form: Literal["markdown", "html"]) -> str: ...
@overload
def render(table: Table, form: Literal["rich"]) -> RichTable: ...
def render(table: Table, form: Literal["markdown", "html", "rich"]) -> str | RichTable:
    """``table`` as markdown (files), an HTML fragment (the audit report; every cell escaped) or a rich
    table (the terminal)."""
    numeric = [i >= table.label_columns for i in range(len(table.columns))]
    if form == "markdown":

        def md(cell: Cell) -> str:
            text = cell.text.replace("|", "\\|")
            return f"**{text}**" if cell.bold else text

        lines = [f"### {table.title}", ""] if table.title else []
        lines += [
            "| " + " | ".join(table.columns) + " |",
            "|" + "".join("---:|" if right else "---|" for right in numeric),
            *("| " + " | ".join(md(cell) for cell in row) + " |" for row in table.rows),
        ]
        return "\n".join(lines + (["", *table.notes] if table.notes else [])) + "\n"
    if form == "html":

        def td(cell: Cell, right: bool) -> str:
            text = f"<b>{html.escape(cell.text)}</b>" if cell.bold else html.escape(cell.text)
            return f'<td class="num">{text}</td>' if right else f"<td>{text}</td>"

        head = "".join(f"<th>{html.escape(name)}</th>" for name in table.columns)
        rows = "".join(
            "<tr>" + "".join(td(c, r) for c, r in zip(row, numeric, strict=True)) + "</tr>"
            for row in table.rows
        )
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in table.notes)
        return f"<table><tr>{head}</tr>{rows}</table>{notes}"
    if form == "rich":
        out = RichTable(title=table.title, caption="\n".join(table.notes) or None, caption_justify="left")
        for name, right in zip(table.columns, numeric, strict=True):
            out.add_column(name, justify="right" if right else "left")
        for row in table.rows:
            out.add_row(*(Text(cell.text, style="bold" if cell.bold else "") for cell in row))
        return out
    raise ValueError(f"unknown table form {form!r}")


def unmeasurable(result: MetricResult, metric: str) -> bool:
    return metric == "tpr_at_01pct" and not result.tpr_at_01pct_measurable


def metric_text(result: MetricResult, metric: str) -> str:
    """ "0.848 [0.831, 0.865]": the value, † when it is not a measurement (SPEC §7), its interval if any,
    marked ≈ when it is an approximate one (``ltmia.approx_intervals``), not a bootstrap one."""
    text = f"{getattr(result, metric):.3f}" + ("†" if unmeasurable(result, metric) else "")
    interval = result.interval(metric)
    if interval is None:
        return text
    return f"{text} {'≈' * result.approximate(metric)}[{interval[0]:.3f}, {interval[1]:.3f}]"


def clear_best(results: Mapping[str, MetricResult], metric: str) -> str | None:
    """The attack with the highest ``metric`` when its interval excludes the runner-up's point estimate
    (and the number is a measurement); else None: no value is shown as best without evidence."""
    order = ranked(results, metric)
    if len(order) < 2:
        return None
    best, runner_up = (getattr(results[a], metric) for a in order[:2])
    interval = results[order[0]].interval(metric)
    if interval is None or unmeasurable(results[order[0]], metric):
        return None
    return order[0] if best > runner_up and interval[0] > runner_up else None


def notes(results: Sequence[MetricResult], bootstrap: Bootstrap | None, bold: str) -> list[str]:
    """What the marks of a metric table mean."""
    out = []
    rule = f"Bold: {bold}, only when its interval excludes the runner-up's value."
    if bootstrap is not None:
        out.append(
            f"[low, high]: {bootstrap.level:.0%} stratified bootstrap interval ({bootstrap.replicates} "
            f"resamples of members and non-members, seed {bootstrap.seed}). {rule}"
        )
    methods = list(
        dict.fromkeys((r.interval_method or {})[m] for m in METRICS for r in results if r.approximate(m))
    )
    if methods:
        out.append(
            f"≈[low, high]: approximate {LEVEL:.0%} interval from the number and its class counts alone (the "
            "per-text scores were not kept, so no bootstrap): "
            + "; ".join(DESCRIPTIONS[m] for m in methods)
            + f"; compared with bootstrap intervals in {VALIDATION}."
            + ("" if bootstrap is not None else f" {rule}")
        )
    if any(unmeasurable(r, "tpr_at_01pct") for r in results):
        out.append(
            f"†: TPR@0.1% from fewer than {MIN_NONMEMBERS_FOR_01PCT:,} non-members, not a measurement "
            "(SPEC §7)."
        )
    return out


def metrics_table(
    results: Mapping[str, MetricResult],
    title: str | None = None,
    comparisons: Sequence[Comparison] = (),
    bootstrap: Bootstrap | None = None,
) -> Table:
    """One row per attack, best AUC first: the three metrics with intervals, the class counts."""
    best = {metric: clear_best(results, metric) for metric in METRICS}
    rows = [
        [
            Cell(attack),
            *(Cell(metric_text(r, m), bold=best[m] == attack) for m in METRICS),
            Cell(str(r.n_members)),
            Cell(str(r.n_nonmembers)),
        ]
        for attack, r in ((a, results[a]) for a in ranked(results, "auc"))
    ]
    table_notes = notes(list(results.values()), bootstrap, "the best of its column")
    if comparisons:
        table_notes.append(
            "Best − runner-up, paired bootstrap: "
            + "; ".join(f"{LABELS[c.metric]} {c.text()}" for c in comparisons)
            + "."
        )
    columns = ["attack", *LABELS.values(), "members", "non-members"]
    return Table(columns, rows, title, table_notes)


def comparison_table(
    rows: Mapping[str, Evaluation],
    metric: str,
    attacks: Sequence[str],
    extra: Mapping[str, str] | None = None,
) -> Table:
    """One row per evaluation (a study's groups), one column per attack, for one metric; then the paired
    best - runner-up difference, and ``extra`` (e.g. the paper's figure) when given."""
    paired = any(e.bootstrap is not None for e in rows.values())  # approximate intervals are not paired
    columns = ["group", "n (m/nm)", *attacks] + ["best − runner-up"] * paired + ["paper LT-MIA"] * bool(extra)
    table_rows = []
    for name, evaluation in rows.items():
        results = {a: evaluation.results[a] for a in attacks if a in evaluation.results}
        best = clear_best(results, metric)
        first = next(iter(results.values()))
        comparison = evaluation.comparisons.get(metric)
        row = [
            Cell(name),
            Cell(f"{first.n_members}/{first.n_nonmembers}"),
            *(
                Cell(metric_text(results[a], metric), bold=best == a) if a in results else Cell("")
                for a in attacks
            ),
        ] + [Cell(comparison.text() if comparison else "")] * paired
        table_rows.append(row + ([Cell(extra.get(name, ""))] if extra else []))
    bootstraps = [e.bootstrap for e in rows.values() if e.bootstrap is not None]
    every = [r for e in rows.values() for r in e.results.values()]
    table_notes = notes(every, bootstraps[0] if bootstraps else None, "the best of its row")
    return Table(columns, table_rows, notes=table_notes, label_columns=2)


def versus_table(rows: Mapping[str, Evaluation], metric: str, attacks: Sequence[str]) -> Table | None:
    """One row per evaluation: the best hand-made score of ``metric`` and each learned attack minus it (paired
    bootstrap), bold where the learned attack's interval lies above zero. None when no row has them."""
    learned_attacks = [a for a in attacks if learned(a)]
    if not any(e.versus.get(metric) for e in rows.values()) or not learned_attacks:
        return None
    table_rows = []
    for name, evaluation in rows.items():
        found = {v.attack: v for v in evaluation.versus.get(metric, [])}
        if not found:
            continue
        baseline = next(iter(found.values())).baseline
        best = evaluation.results[baseline]
        table_rows.append(
            [Cell(name), Cell(f"{baseline} {getattr(best, metric):.3f}")]
            + [
                Cell(found[a].difference.text(), bold=found[a].difference.low > 0) if a in found else Cell("")
                for a in learned_attacks
            ]
        )
    columns = ["group", "best baseline", *(f"{a} − it" for a in learned_attacks)]
    note = (
        f"Each learned attack minus the row's best hand-made score of {LABELS[metric]}, with its 95% "
        "paired bootstrap interval (the same resamples for both). Bold: the interval lies above zero "
        "(a measured win)."
    )
    return Table(columns, table_rows, notes=[note], label_columns=2)


def plot_roc(scored: Scored, path: Path, title: str) -> Path:
    """Log-log ROC curves, one line per attack (low FPRs are where an audit lives, SPEC §7)."""
    fig = Figure(figsize=(5.5, 5), dpi=110)
    ax = fig.subplots()
    floor = 1.0 / max(1, int((scored.labels == 0).sum()))
    for attack, values in sorted(scored.scores.items()):
        fpr, tpr = roc_curve(scored.labels, values)
        result = evaluate(scored.labels, values)  # point estimate only: the legend has no room for more
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
    with atomic_path(path) as tmp:  # whole or not at all, like every file ltmia writes
        fig.savefig(tmp, format="png")
    return path


def write_results(
    scored: Scored,
    out: Path,
    slug: str,
    title: str,
    extra: dict | None = None,
    bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP,
) -> Evaluation:
    """``<slug>.json`` (metrics with intervals and comparisons, + ``extra``), ``<slug>.md`` and
    ``<slug>-roc.png`` under ``out``."""
    result = evaluation(scored, title, bootstrap)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{slug}.json", {**result.record(), **(extra or {})})
    write_text(out / f"{slug}.md", render(result.table(), "markdown"))
    plot_roc(scored, out / f"{slug}-roc.png", title)
    return result


EVALUATION = "ltmia evaluate"
"""What ``claim_output`` records an ``evaluate`` output directory as."""


def result_files(slug: str) -> list[str]:
    """The files ``write_results`` writes for ``slug``."""
    return [f"{slug}.json", f"{slug}.md", f"{slug}-roc.png"]


def legacy_evaluation(out: Path) -> list[str] | None:
    """The files of an ``evaluate`` output written before ltmia recorded them, or None when ``out`` is not
    one: its ``scores.json`` is a list of score records (``Scored.to_json``), and ltmia wrote the tables of
    the stores it names, and of the pooled groups, whose JSON names their ``stores``."""
    try:
        parts = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    keys = {"name", "labels", "rows", "scores"}
    if not (isinstance(parts, list) and parts and all(isinstance(p, dict) and keys <= set(p) for p in parts)):
        return None
    files = ["scores.json", *(name for p in parts for name in result_files(Path(str(p["name"])).name))]
    for path in out.glob("*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("stores"), list) and "metrics" in record:
            files += result_files(path.stem)
    return files


def evaluate_stores(
    stores: Sequence[Store],
    out: Path,
    classifier=None,
    split: str | None = "test",
    group: str | None = None,
) -> dict[str, Evaluation]:
    """Score each store's ``split`` with every baseline (and LT-MIA when a classifier is given); write
    per-store results and, for several stores or a named ``group``, the pooled group results.

    ``out`` must be new, empty or an earlier ``evaluate`` output (``claim_output``): ltmia writes nowhere
    else. Returns {name: evaluation} for each table written.
    """
    out = Path(out)
    before = claim_output(out, EVALUATION, "choose another --out directory", legacy_evaluation)
    slugs = [store.path.name for store in stores]
    if group or len(stores) > 1:
        slugs.append(slugify(group or "all stores"))
    record_output(out, EVALUATION, [*before, "scores.json", *(f for s in slugs for f in result_files(s))])
    written = {}
    parts = []
    for store in stores:
        scored = baseline_scores(store, split)
        if classifier is not None:
            scored = merge([scored, lt_mia_scores(classifier, store, split)])
        slug, title = store.path.name, f"{store.path.name} ({split or 'all'} rows)"
        written[slug] = write_results(scored, out, slug, title)
        parts.append(scored)
    if group or len(parts) > 1:
        name = group or "all stores"
        title = f"{name} ({len(parts)} stores, pooled)"
        extra = {"stores": [str(s.path) for s in stores]}
        written[name] = write_results(pool(name, parts), out, slugify(name), title, extra)
    write_text(out / "scores.json", json.dumps([p.to_json() for p in parts]))
    return written


def check_baselines_json(path: Path) -> None:
    """``ltmia baselines --json PATH`` replaces only a baselines JSON ltmia wrote (an object with ``store``,
    ``split`` and ``attacks``); any other existing file is the user's: an ``OutputExistsError``."""
    path = Path(path)
    if not path.exists():
        return
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        record = None
    if not (isinstance(record, dict) and {"store", "split", "attacks"} <= set(record)):
        raise OutputExistsError(
            f"{path} exists and is not a baselines JSON ltmia wrote; choose another --json path"
        )


def slugify(name: str) -> str:
    """A file-name-safe form of a group name: lower case, runs of other characters as one dash."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(filter(None, slug.split("-"))) or "group"
