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
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, cast

from rich.table import Table

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
from ltmia.errors import OutputExistsError
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
    write_results,
)
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
    attacks = attacks_in(table)
    lines = [
        f"# Study `{config.name}`",
        "",
        config.description.strip(),
        "",
        f"Config hash `{config.config_hash[:16]}`, split seed {config.seed}. Groups pool every "
        "member/non-member row of their combos. Each number has its bootstrap interval (notes below each "
        "table); 'best − runner-up' is the paired-bootstrap difference of each row's two best attacks.",
        "",
    ]
    for metric, label in LABELS.items():
        paper = {name: str(g.paper[metric]) for name, g in config.groups.items() if metric in g.paper}
        lines += [
            f"## {label}",
            "",
            render(comparison_table(table, metric, attacks, paper or None), "markdown"),
        ]
    return "\n".join(lines)


def rich_table(table: dict[str, Evaluation], title: str) -> Table:
    """The AUC transfer table for the terminal (the summary's first table)."""
    out = render(comparison_table(table, "auc", attacks_in(table)), "rich")
    out.title = title
    return out
