"""How much a study's AUCs move with the seed: run one config under several seeds, tabulate the spread.

The study seed draws the members / non-members (SPEC §2) and seeds fine-tuning, so each seed is a new set of
targets and stores; the zoo and the classifier seeds stay as configured. Re-running one seed on the same
machine reproduces its tables exactly (every stage is deterministic on CPU and cached by its inputs), so
this spread is the honest error bar of a single run's numbers.

    .venv/bin/python benchmarks/seed_spread.py [--config demo] [--seeds 42 1 2]

Writes ``benchmarks/results/seed_spread_<config>.json`` and prints a markdown table (mean ± std, min-max
of the AUC per group and attack, and beside it the mean half-width of the runs' own 95% bootstrap
intervals, so the two error bars can be compared: the bootstrap covers other texts, the seed other texts,
other fine-tunes and another classifier run). Runs go through ``ltmia.study.run.run_study`` (what
``ltmia study run CONFIG --seed S`` runs) with the default cache, so seeds already run are read back, not
recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from ltmia.evaluation import Cell, Table, render
from ltmia.metrics import MetricResult
from ltmia.study.run import run_study

OUT = Path(__file__).parent / "results"


def run_seed(config: str, seed: int, cache: Path, results: Path) -> dict:
    """The study under one seed (``ltmia.study.run.run_study``, as ``ltmia study run --seed``), then its
    results.json."""
    out = results / f"{config}-seed{seed}"
    started = time.perf_counter()

    def on_stage(index: int, total: int, stage, event: str) -> None:
        if event != "cached":
            print(f"seed {seed} [{index}/{total}] {stage.label}: {event}", flush=True)

    run_study(config, cache, out, seed=seed, on_stage=on_stage)
    record = json.loads((out / "results.json").read_text())
    return {"seconds": round(time.perf_counter() - started, 1), "groups": record["groups"]}


def spread(runs: dict[int, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per group and attack: mean, std, min, max of the AUC across seeds, and the mean half-width of the
    runs' bootstrap intervals (None for results written before ltmia had them)."""
    first = next(iter(runs.values()))["groups"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for group, record in first.items():
        for attack in record["metrics"]:
            results = [
                MetricResult.from_dict(run["groups"][group]["metrics"][attack]) for run in runs.values()
            ]
            aucs = [r.auc for r in results]
            widths = [(r.auc_ci[1] - r.auc_ci[0]) / 2 for r in results if r.auc_ci is not None]
            table.setdefault(group, {})[attack] = {
                "mean": statistics.fmean(aucs),
                "std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                "min": min(aucs),
                "max": max(aucs),
                "aucs": aucs,
                "bootstrap_halfwidth": statistics.fmean(widths) if len(widths) == len(aucs) else None,
            }
    return table


def markdown(table: dict, seeds: list[int]) -> str:
    """The spread as one table (ltmia's table renderer): mean ± std over seeds, min-max, bootstrap ±."""
    attacks = list(next(iter(table.values())))
    rows = []
    for group, row in table.items():
        cells = [Cell(group)]
        for a in attacks:
            entry = row[a]
            boot = entry["bootstrap_halfwidth"]
            text = f"{entry['mean']:.3f} ± {entry['std']:.3f} ({entry['min']:.3f}-{entry['max']:.3f})"
            cells.append(Cell(text + (f" boot ±{boot:.3f}" if boot is not None else "")))
        rows.append(cells)
    title = f"AUC mean ± std over seeds {', '.join(map(str, seeds))} (min-max; mean bootstrap half-width)"
    return render(Table(["group", *attacks], rows, title), "markdown")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--results", type=Path, default=Path("runs/seeds"))
    args = parser.parse_args()
    runs = {seed: run_seed(args.config, seed, args.cache, args.results) for seed in args.seeds}
    table = spread(runs)
    report = {
        "config": args.config,
        "seeds": args.seeds,
        "seconds": {seed: run["seconds"] for seed, run in runs.items()},
        "load_at_end": [round(x, 2) for x in os.getloadavg()],
        "auc": table,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"seed_spread_{args.config}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(table, args.seeds))


if __name__ == "__main__":
    main()
