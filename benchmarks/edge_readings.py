"""How much the two edge readings of EZ-MIA and WBC differ on a study (SPEC §5); WBC's eq. 12 windows (§8).

SPEC §5 offers two readings of each attack's edge cases (``edge="authors"``, the default, and
``edge="paper"``) and asks how much they differ on a study; SPEC §8 adds the paper's eq. 12 window grid for
WBC (``windows="eq12"``). This script rescores every combo of every group of a finished study from its
feature stores in the stage cache (read only; nothing there is written), pools the rows like the study
report, and tabulates per group: each reading's AUC / TPR@1% / TPR@0.1% with bootstrap intervals, the
paired-bootstrap difference of each alternative against the default, and how many texts score differently
under the two readings (the texts that hit an edge case). It first checks that the default readings
reproduce, bit for bit, the cached baseline scores the study's own tables rest on.

    PYTHONPATH=src python benchmarks/edge_readings.py [--config offline-full] [--cache DIR]
        [--store-precision auto]

``--cache`` defaults to ``~/.cache/ltmia/study/cache``. ``--store-precision`` reads stores extracted at
another precision than the config's (e.g. the bf16 stores ``offline-real``, which extends ``offline-full``,
extracted from the very same targets); the tables then say so and give the largest AUC gap between the
default readings here and the study's committed ``results.json``.

Writes ``results/<study>/edge-readings.md`` and ``edge-readings.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ltmia.artefacts import versions, write_json
from ltmia.attacks import score
from ltmia.evaluation import LABELS, Cell, Scored, Table, metric_text, pool, render, store_split
from ltmia.metrics import Bootstrap, evaluate_bootstrap
from ltmia.store import Store
from ltmia.study.config import parse, read_toml
from ltmia.study.report import load_scores
from ltmia.study.stages import plan

READINGS = {
    "ez_mia": ("ez_mia", {}),
    "ez_mia paper": ("ez_mia", {"edge": "paper"}),
    "wbc": ("wbc", {}),
    "wbc paper": ("wbc", {"edge": "paper"}),
    "wbc eq12": ("wbc", {"windows": "eq12"}),
}
"""Column -> (attack, parameters); the bare names are the defaults the study's tables use."""
PAIRS = [("ez_mia paper", "ez_mia"), ("wbc paper", "wbc"), ("wbc eq12", "wbc")]
"""Alternative - default, each as a paired-bootstrap difference on the same texts."""


def combo_readings(study, cache: Path, combo, split: str) -> Scored:
    """Every reading of one combo's rows; the defaults must equal the study's cached baseline scores."""
    store = Store(study.stores[combo].out(cache))
    wanted = store_split(split)
    stats, texts, rows = store.stats(wanted), store.texts(wanted), store.rows(wanted)
    scores = {name: score(attack, stats, texts, **params) for name, (attack, params) in READINGS.items()}
    cached = load_scores(study.baselines[combo, split].out(cache))
    for name in ("ez_mia", "wbc"):
        if not (np.array_equal(cached.rows, rows) and np.array_equal(cached.scores[name], scores[name])):
            raise SystemExit(f"{combo.slug}: {name} no longer reproduces the cached scores; re-run the study")
    return Scored(str(store.path), store.labels[rows], scores, rows)


def group_record(scored: Scored, bootstrap: Bootstrap) -> dict:
    """Metrics with intervals per reading, paired differences, and how many texts each pair scores apart."""
    boot = evaluate_bootstrap(scored.labels, scored.scores, bootstrap)
    differences = {}
    for alternative, default in PAIRS:
        changed = scored.scores[alternative] != scored.scores[default]
        differences[f"{alternative} - {default}"] = {
            "texts_scored_differently": int(changed.sum()),
            "members_scored_differently": int((changed & (scored.labels == 1)).sum()),
            **{m: d.to_dict() for m, d in boot.difference(alternative, default).items()},
        }
    return {
        "n": int(scored.labels.size),
        "metrics": {name: r.to_dict() for name, r in boot.results.items()},
        "differences": differences,
        "_results": boot.results,
    }


def tables(groups: dict[str, dict], bootstrap: Bootstrap) -> str:
    """One table per metric (readings and differences as columns), then the edge-case counts."""
    out = []
    for metric, label in LABELS.items():
        columns = ["group", "n", *READINGS, *(f"{a} − {b}" for a, b in PAIRS)]
        rows = []
        for name, record in groups.items():
            cells = [Cell(name), Cell(str(record["n"]))]
            cells += [Cell(metric_text(record["_results"][reading], metric)) for reading in READINGS]
            for alternative, default in PAIRS:
                d = record["differences"][f"{alternative} - {default}"][metric]
                cells.append(Cell(f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"))
            rows.append(cells)
        out += [f"## {label}", "", render(Table(columns, rows, label_columns=2), "markdown")]
    columns = ["group", "n", *(f"{a} vs {b}" for a, b in PAIRS)]
    rows = []
    for name, record in groups.items():
        cells = [Cell(name), Cell(str(record["n"]))]
        for alternative, default in PAIRS:
            d = record["differences"][f"{alternative} - {default}"]
            share = d["texts_scored_differently"] / record["n"]
            members = d["members_scored_differently"]
            cells.append(Cell(f"{d['texts_scored_differently']} ({share:.0%}; {members} members)"))
        rows.append(cells)
    out += ["## Texts scored differently", "", render(Table(columns, rows, label_columns=2), "markdown")]
    note = (
        f"Intervals: {bootstrap.level:.0%} stratified bootstrap ({bootstrap.replicates} resamples, seed "
        f"{bootstrap.seed}); differences are paired (both readings on the same resamples)."
    )
    return "\n".join([*out, note]) + "\n"


def committed_gap(results: Path, groups: dict[str, dict]) -> float | None:
    """Largest |AUC| difference of the default readings against the study's committed results, if any."""
    path = results / "results.json"
    if not path.exists():
        return None
    committed = json.loads(path.read_text())["groups"]
    gaps = [
        abs(record["_results"][name].auc - committed[group]["metrics"][name]["auc"])
        for group, record in groups.items()
        if group in committed
        for name in ("ez_mia", "wbc")
    ]
    return max(gaps) if gaps else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="offline-full")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/ltmia/study/cache")
    parser.add_argument("--results", type=Path, default=None, help="default results/<study name>")
    parser.add_argument("--store-precision", default=None, help="read stores of this precision instead")
    args = parser.parse_args()
    started = time.perf_counter()
    raw = read_toml(args.config)
    own_precision = parse(raw).store.precision
    if args.store_precision is not None:
        raw = {**raw, "store": {**raw.get("store", {}), "precision": args.store_precision}}
    study = plan(parse(raw))
    needed = [
        study.baselines[c, g.split]
        for g in study.config.groups.values()
        for c in study.config.combos(g.combo_sets)
    ]
    missing = [stage.label for stage in needed if not stage.done(args.cache)]
    if missing:
        raise SystemExit(
            f"{len(missing)} score stages of {study.config.name} are not in {args.cache} "
            f"(e.g. {missing[0]}); run the study, or read stores of another precision (--store-precision)"
        )
    bootstrap = Bootstrap()
    groups = {}
    for name, group in study.config.groups.items():
        combos = study.config.combos(group.combo_sets)
        parts = [combo_readings(study, args.cache, combo, group.split) for combo in combos]
        groups[name] = group_record(pool(name, parts), bootstrap)
        print(f"{name}: {groups[name]['n']} texts", flush=True)
    results = args.results or Path("results") / study.config.name
    precision = study.config.store.precision
    gap = committed_gap(results, groups)
    source = (
        f"Recomputed by `benchmarks/edge_readings.py` from the study's stores (extracted at {precision}); "
        "the default readings reproduce those stores' cached baseline scores exactly."
    )
    if args.store_precision is not None and gap is not None:
        source += (
            f" They are not the stores behind this study's `results.json` (`--store-precision "
            f"{args.store_precision}` instead of the config's {own_precision}): the default readings' AUCs "
            f"here differ from the committed ones by at most {gap:.3f}."
        )
    header = [
        f"# Edge readings of EZ-MIA and WBC on `{study.config.name}` (SPEC §5, §8)",
        "",
        "Columns: `ez_mia` and `wbc` are the default readings (the authors' code, as in the study's tables); "
        "`paper` reads the edge cases as SPEC §5 describes (EZ-MIA: Q = 0 ranks above all; WBC: windows "
        "longer than the text are skipped, not capped); `wbc eq12` uses the paper's eq. 12 window grid "
        "(2, 3, 4, 5, 8, 11, 15, 21, 29, 40) with the default edges.",
        "",
        source,
        "",
        "",
    ]
    (results / "edge-readings.md").write_text("\n".join(header) + tables(groups, bootstrap))
    record = {
        "study": study.config.name,
        "config_hash": study.config.config_hash,
        "readings": {name: {"attack": a, "params": p} for name, (a, p) in READINGS.items()},
        "store_precision": precision,
        "store_precision_override": args.store_precision,  # config_hash is of the config as overridden
        "committed_auc_gap": gap,
        "bootstrap": bootstrap.record(),
        "groups": {name: {k: v for k, v in g.items() if not k.startswith("_")} for name, g in groups.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "versions": versions(),
    }
    write_json(results / "edge-readings.json", record)
    print(f"wrote {results}/edge-readings.md and .json in {record['seconds']} s")


if __name__ == "__main__":
    main()
