"""A study's results: per group, LT-MIA and every baseline pooled over the group's combos (SPEC §7).

Reads only cached score stages, so re-rendering is seconds, bootstrap intervals included (10 attacks x 10
groups of 2,000 rows: 6 s on the busy 2-core CPU; of 20,000 rows: 56 s; ``benchmarks/bootstrap_speed.py``).
Writes under the results directory: ``summary.md`` (the transfer tables: AUC, TPR@1%, TPR@0.1% per group
and attack with bootstrap intervals, the paired best - runner-up difference, and the paper's figures where
the config gives them), ``results.json`` (everything, machine-readable), and per group
``groups/<group>.json|.md|-roc.png``. Every JSON records the config hash, the seeds, the package versions
and the split fingerprint (SHA-256 over every member/non-member text hash) of each combo it rests on.

The results directory is the user's choice (``--results``), so ltmia writes there only when it is new,
empty or its own earlier results (``ltmia.artefacts.claim_output``), and re-rendering removes only the group
files ltmia wrote before (a group may have been renamed), never anything else.

``ltmia study report`` (`rerender`) renders the tables again from ``results.json`` alone; results from before
ltmia had intervals, whose per-text scores are gone, get approximate intervals there (``≈``,
``ltmia.approx_intervals``), and bootstrap ones stay as they are.
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from rich.table import Table

from ltmia.approx_intervals import approximate
from ltmia.artefacts import (
    claim_output,
    read_json,
    record_output,
    remove_written,
    strays,
    versions,
    write_json,
    write_text,
)
from ltmia.attacks import ATTACKS
from ltmia.errors import InputError, OutputExistsError
from ltmia.evaluation import (
    LABELS,
    LT_MIA,
    Evaluation,
    Scored,
    comparison_table,
    merge,
    pool,
    render,
    result_files,
    slugify,
    versus_table,
    write_results,
)
from ltmia.metrics import METRICS
from ltmia.study.config import Combo
from ltmia.study.stages import StudyPlan


def attack_name(classifier: str, n_classifiers: int) -> str:
    """``lt_mia`` for a study's only classifier, ``lt_mia[name]`` when several are compared."""
    return LT_MIA if n_classifiers == 1 else f"{LT_MIA}[{classifier}]"


def load_scores(path: Path) -> Scored:
    fix = f"delete {path} and run the study again (it recomputes that stage)"
    return Scored.from_json(cast(dict, read_json(path / "scores.json", fix)))


def combo_scores(plan: StudyPlan, cache: Path, combo: Combo, split: str) -> Scored:
    """Baselines (costly ones too, when the study has them) and every classifier's LT-MIA scores of one
    combo's rows in ``split``."""
    parts = [load_scores(plan.baselines[combo, split].out(cache))]
    if (combo, split) in plan.costly:
        parts.append(load_scores(plan.costly[combo, split].out(cache)))
    n = len(plan.classifiers)
    for name in plan.classifiers:
        scored = load_scores(plan.lt_mia[name, combo, split].out(cache))
        parts.append(
            Scored(scored.name, scored.labels, {attack_name(name, n): scored.scores[LT_MIA]}, scored.rows)
        )
    return merge(parts)


@functools.cache
def split_fingerprint(target: Path) -> dict:
    """A target's split record, read once per process (every group that uses the target cites it)."""
    record = json.loads((target / "splits.json").read_text())
    return {"fingerprint": record["fingerprint"], "sizes": record["sizes"], "seed": record["seed"]}


def provenance(plan: StudyPlan, cache: Path, combos: list[Combo]) -> dict:
    config = plan.config
    return {
        "study": config.name,
        "config_hash": config.config_hash,
        "seeds": {
            "splits": config.seed,
            "classifiers": {n: c.params.get("seed", 42) for n, c in config.classifiers.items()},
        },
        "versions": versions(),
        "combos": {
            f"{c.model} x {c.corpus}": {
                "target": plan.targets[c].key[:16],
                **split_fingerprint(plan.targets[c].out(cache)),
            }
            for c in combos
        },
    }


def group_results(plan: StudyPlan, cache: Path) -> dict[str, tuple[Scored, list[Combo]]]:
    out = {}
    for name, group in plan.config.groups.items():
        combos = plan.config.combos(group.combo_sets)
        out[name] = (pool(name, [combo_scores(plan, cache, c, group.split) for c in combos]), combos)
    return out


RESULTS = "study results"
"""What ``claim_output`` records a study's results directory as."""
TOP_FILES = ("results.json", "summary.md", "config.toml", "config.resolved.json")


def group_files(names: list[str]) -> list[str]:
    """The files ``write_report`` writes under ``groups/`` for groups ``names``."""
    return [f"groups/{file}" for name in names for file in result_files(slugify(name))]


def legacy_results(results_dir: Path) -> list[str] | None:
    """The files of a results directory written before ltmia recorded them (``claim_output``), or None
    when it is not one. Its ``results.json`` is a study's record (a JSON object with ``study``,
    ``config_hash`` and ``groups``); the files ltmia wrote are the top-level ones it always writes and,
    per group that record lists, ``groups/<slug>.json|.md|-roc.png``: what that ltmia wrote and nothing
    more, so a user's file in ``groups/`` is never taken for ltmia's."""
    try:
        record = json.loads((results_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and {"study", "config_hash"} <= set(record)):
        return None
    if not isinstance(record.get("groups"), dict):
        return None
    return [*TOP_FILES, *group_files(list(record["groups"]))]


def claim_results(results_dir: Path, create: bool = True) -> list[str]:
    """Make ``results_dir`` this report's (``claim_output``) and return the files of the previous render;
    a ``groups/`` holding a file ltmia did not write is refused (``OutputExistsError``), never emptied.
    ``create=False`` only checks, before a study runs for hours."""
    fix = "choose another --results directory"
    before = claim_output(Path(results_dir), RESULTS, fix, legacy_results, create=False)
    foreign = strays(results_dir, before, "groups")
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputExistsError(
            f"{results_dir / 'groups'} holds files ltmia did not write ({shown}); ltmia replaces only its "
            f"own group tables there: move them away, or {fix}"
        )
    return claim_output(Path(results_dir), RESULTS, fix, legacy_results) if create else before


def write_report(
    plan: StudyPlan, cache: Path, results_dir: Path, config_text: str | None = None
) -> dict[str, Evaluation]:
    """Render every group's metrics into ``results_dir``; returns {group: Evaluation}.

    ``results_dir`` must be new, empty, or ltmia's results of an earlier render (``claim_results``): there
    the previous render's group files are removed (a group may have been renamed) and every other file is
    rewritten. Results written before ltmia recorded its files (``legacy_results``) re-render the same way:
    the files of its ``results.json``'s groups are taken for ltmia's, anything else in ``groups/`` refuses.
    """
    results_dir = Path(results_dir)
    before = claim_results(results_dir)
    groups = group_results(plan, cache)  # before removing anything: a missing stage stops here
    written = ["results.json", "summary.md", "config.resolved.json", *group_files(list(groups))]
    written += ["config.toml"] if config_text is not None else []
    record_output(results_dir, RESULTS, [*before, *written])  # first: a run killed below leaves all listed
    remove_written(results_dir, [name for name in before if name.startswith("groups/")])
    table: dict[str, Evaluation] = {}
    record: dict[str, Any] = {
        "study": plan.config.name,
        "description": plan.config.description,
        "config_hash": plan.config.config_hash,
        "groups": {},
    }
    groups_dir = results_dir / "groups"
    for name, (scored, combos) in groups.items():
        group = plan.config.groups[name]
        title = f"{name} ({group.split} rows of {len(combos)} combo{'s' * (len(combos) > 1)})"
        extra = {"group": name, "split": group.split, "paper": group.paper, **provenance(plan, cache, combos)}
        table[name] = write_results(scored, groups_dir, slugify(name), title, extra)
        record["groups"][name] = {**table[name].record(), **extra}
    record["provenance"] = provenance(plan, cache, plan.config.all_combos)
    write_json(results_dir / "results.json", record)
    write_text(results_dir / "summary.md", summary_markdown(plan, table))
    if config_text is not None:
        write_text(results_dir / "config.toml", config_text)
    write_json(results_dir / "config.resolved.json", plan.config.raw)
    record_output(results_dir, RESULTS, [name for name in before if name in TOP_FILES] + written)
    return table


def attacks_in(table: dict[str, Evaluation]) -> list[str]:
    """LT-MIA columns first, then baselines in registry order."""
    names = list(dict.fromkeys(a for row in table.values() for a in row.results))
    return sorted(names, key=lambda a: (not a.startswith(LT_MIA), names.index(a)))


def summary_markdown(plan: StudyPlan, table: dict[str, Evaluation]) -> str:
    config = plan.config
    papers = {name: group.paper for name, group in config.groups.items()}
    return study_markdown(config.name, config.description, config.config_hash, config.seed, papers, table)


def intervals_line(name: str, table: dict[str, Evaluation]) -> str:
    """The summary's sentence on its intervals: bootstrap ones, approximate ones (``≈``, where the per-text
    scores were not kept), or both."""
    approximate = any(r.approximate(m) for e in table.values() for r in e.results.values() for m in METRICS)
    bootstrapped = any(e.bootstrap is not None for e in table.values())
    if not approximate:
        return (
            "Each number has its bootstrap interval (notes below each table); 'best − runner-up' is the "
            "paired-bootstrap difference of each row's two best attacks."
        )
    if not bootstrapped:
        return (
            "Each number has an approximate 95% interval, marked ≈ (notes below each table): the per-text "
            "scores of this study were not kept, so its intervals come from each number and its class counts "
            "alone, not from a bootstrap, and no paired best − runner-up difference can be drawn. "
            f"`ltmia study run {name}` recomputes the scores and renders bootstrap intervals."
        )
    return (
        "Each number has its 95% interval (notes below each table): a bootstrap interval where the per-text "
        "scores were kept, else an approximate one marked ≈, from the number and its class counts alone; "
        "'best − runner-up' is the paired-bootstrap difference of a row's two best attacks, where it has "
        "scores."
    )


def study_markdown(
    name: str,
    description: str,
    config_hash: str,
    seed: int,
    papers: Mapping[str, Mapping[str, float]],
    table: dict[str, Evaluation],
) -> str:
    """A study's ``summary.md``: per SPEC §7 metric, the groups x attacks table (``papers``: the paper's
    figures per group and metric, where the config gives them)."""
    attacks = attacks_in(table)
    lines = [
        f"# Study `{name}`",
        "",
        description.strip(),
        "",
        f"Config hash `{config_hash[:16]}`, split seed {seed}. Groups pool every member/non-member row of "
        f"their combos. {intervals_line(name, table)}",
        "",
    ]
    for metric, label in LABELS.items():
        paper = {group: str(figures[metric]) for group, figures in papers.items() if metric in figures}
        lines += [
            f"## {label}",
            "",
            render(comparison_table(table, metric, attacks, paper or None), "markdown"),
        ]
        versus = versus_table(table, metric, attacks)
        if versus is not None:
            lines += [f"### {label}: LT-MIA − best baseline", "", render(versus, "markdown")]
    return "\n".join(lines)


def in_order(names: Iterable[str], first: Iterable[str]) -> list[str]:
    """``names`` with those in ``first`` first, in its order, then the others in theirs."""
    names = list(names)
    listed = [name for name in dict.fromkeys(first) if name in names]
    return listed + [name for name in names if name not in listed]


def study_order(results_dir: Path, record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The groups and the attacks of a results record in the order ``write_report`` gave them (the JSON
    sorts them by name): groups and classifiers as the results' ``config.toml`` lists them, then the
    one-pass baselines in registry order, then the others (the costly attacks) by name, as their stage
    records them."""
    try:
        config = tomllib.loads((results_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    groups = in_order(record["groups"], config.get("groups", {}))
    classifiers = list(config.get("classifiers", {}))
    lt_mia = [attack_name(name, len(classifiers)) for name in classifiers]
    attacks = [a for group in record["groups"].values() for a in group["metrics"]]
    return groups, in_order(attacks, [*lt_mia, *ATTACKS.names()])


def rerender(results_dir: Path) -> dict[str, Evaluation]:
    """Render a study's ``summary.md`` and group tables again from its ``results.json`` alone (no cache,
    no per-text scores): ``ltmia study report``. Returns {group: Evaluation}.

    Numbers without an interval (results rendered before ltmia had intervals, whose per-text scores are
    gone) get approximate ones (``ltmia.approx_intervals.approximate``; those of an earlier render are
    computed again, so they follow the current method), recorded in ``results.json`` and the group JSONs
    with their ``interval_method`` and shown marked ≈; bootstrap intervals, comparisons and every point
    estimate stay as they are. The ROC plots need the scores, so they are left as they are.
    ``results_dir`` must be ltmia's study results (``claim_results``); nothing else in it is touched.
    """
    results_dir = Path(results_dir)
    claim_results(results_dir, create=False)
    path = results_dir / "results.json"
    if not path.is_file():
        raise InputError(f"{results_dir} holds no results.json; give the results directory of a study")
    record = cast(dict, read_json(path, "run the study again (ltmia study run)"))
    if not isinstance(record, dict) or not isinstance(record.get("groups"), dict):
        raise InputError(
            f"{path} is not a study's results (no groups); give the results directory of a study"
        )
    before = claim_results(results_dir)
    order, attacks = study_order(results_dir, record)
    table: dict[str, Evaluation] = {}
    groups: dict[str, dict] = {}
    for name in order:
        table[name] = Evaluation.from_record(record["groups"][name])
        results = table[name].results
        table[name].results = {a: approximate(results[a]) for a in attacks if a in results}
        metrics = {a: r.to_dict() for a, r in table[name].results.items()}
        groups[name] = {**record["groups"][name], "metrics": metrics}
    slugs = [slugify(name) for name in order]
    written = ["results.json", "summary.md", *(f"groups/{s}.{ext}" for s in slugs for ext in ("json", "md"))]
    record_output(results_dir, RESULTS, [*before, *written])
    for name, slug in zip(order, slugs, strict=True):
        write_json(results_dir / "groups" / f"{slug}.json", groups[name])
        write_text(results_dir / "groups" / f"{slug}.md", render(table[name].table(), "markdown"))
    write_json(path, {**record, "groups": groups})
    seed = record.get("provenance", {}).get("seeds", {}).get("splits", "?")
    papers = {name: groups[name].get("paper") or {} for name in order}
    name = str(record.get("study", results_dir.name))
    summary = study_markdown(
        name, str(record.get("description", "")), str(record.get("config_hash", "")), seed, papers, table
    )
    write_text(results_dir / "summary.md", summary)
    return table


def rich_table(table: dict[str, Evaluation], title: str) -> Table:
    """The AUC transfer table for the terminal (the summary's first table)."""
    out = render(comparison_table(table, "auc", attacks_in(table)), "rich")
    out.title = title
    return out
