"""How long the bootstrap intervals take in a study summary: groups x attacks x rows (JSON, not a test).

A study summary evaluates every group with intervals and best-vs-runner-up comparisons
(``ltmia.evaluation.evaluation``: point metrics, 1,000 stratified resamples shared by all attacks). This
times that step alone on synthetic scores, for 10 attacks x 10 groups at 2,000 and at 20,000 rows per group
(offline-full's evaluation groups have 2,000; the paper's combos 20,000), on however many threads numpy
has (the machine's load is recorded).

    PYTHONPATH=src python benchmarks/bootstrap_speed.py

Writes ``benchmarks/results/bootstrap_speed.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ltmia.evaluation import Scored, evaluation

OUT = Path(__file__).parent / "results"


def group(rows: int, attacks: int, seed: int) -> Scored:
    """Half members; attack j separates them by 0.1 j standard deviations (AUC 0.5 to ~0.74)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(rows // 2), np.zeros(rows - rows // 2)].astype(np.int64)
    scores = {f"attack{j}": labels * 0.1 * j + rng.normal(size=rows) for j in range(attacks)}
    return Scored(f"group{seed}", labels, scores, np.arange(rows))


def main() -> None:
    record: dict = {"load_before": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(), "runs": []}
    for rows in (2000, 20000):
        groups = [group(rows, 10, seed) for seed in range(10)]
        started = time.perf_counter()
        for scored in groups:
            evaluation(scored, scored.name)
        seconds = time.perf_counter() - started
        run = {
            "groups": 10,
            "attacks": 10,
            "rows_per_group": rows,
            "replicates": 1000,
            "seconds": round(seconds, 2),
        }
        record["runs"].append(run)
        print(json.dumps(run), flush=True)
    record["load_after"] = [round(x, 2) for x in os.getloadavg()]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bootstrap_speed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
