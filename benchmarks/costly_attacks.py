"""Every costly attack once on a real fine-tuned model: AUC, TPR@1% FPR and seconds per attack (JSON).

Scores a seeded subsample of one split of an existing store (default: the SmolLM2-135M target fine-tuned on
python-docs by ``benchmarks/real_effects.py``, 300 members + 300 non-members) with each costly attack and,
for comparison, the seven one-pass baselines on the same rows. Prefix shots come from another split of the
store (``--prefix-source``, default ``split:val``), DC-PDD counts the tokens of the target's corpus outside
its splits. The target's plain pass, which ReCaLL, Con-ReCall, DC-PDD, lowercase, PAC and neighbourhood
share, is timed on its own and not charged to any attack. Stores and targets are only read.

    PYTHONPATH=src nice -n 10 python benchmarks/costly_attacks.py [--members 100] [--param samia.samples=5]

The committed result (``results/costly_attacks.json``) scored 50 + 50 train rows with cheaper settings than
the defaults to fit about 30 CPU-minutes on a shared 2-core machine: 3 shots, 3 PAC augmentations, 5
neighbours, 3 SaMIA samples (its ``command`` field has the exact call).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_busy  # benchmarks/machine.py (scripts run from this folder)

OUT = Path(__file__).parent / "results" / "costly_attacks.json"
BENCH = Path.home() / ".cache" / "ltmia" / "bench"


def subsample(store, split: str, n: int, seed: int) -> np.ndarray:
    """Ascending row indices: n members and n non-members of ``split``, each the first n of a seeded order."""
    from ltmia.data import seeded_order

    rows = store.rows(split)
    chosen = []
    for label in (1, 0):
        candidates = rows[store.labels[rows] == label]
        order = seeded_order([store.hashes[i] for i in candidates], seed)
        chosen += [int(candidates[i]) for i in order[:n]]
    return np.sort(np.asarray(chosen))


def main() -> None:
    from ltmia.attacks import ATTACKS, score
    from ltmia.attacks.costly import COSTLY_ATTACKS, costly_score
    from ltmia.attacks.costly.passes import plain_pass
    from ltmia.costly_scores import CostlyOptions, costs, parse_param, resolved_settings, store_models
    from ltmia.metrics import evaluate
    from ltmia.store import STAT_NAMES, Store
    from ltmia.tokenstats import TokenStats

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=BENCH / "store-pydocs-fp32-fp32")
    parser.add_argument("--split", default="train")
    parser.add_argument("--members", type=int, default=100, help="members (and as many non-members)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacks", default=",".join(COSTLY_ATTACKS.names()))
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--prefix-source", default="split:val")
    parser.add_argument("--param", action="append", default=[], help="attack.key=value")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    store = Store(args.store)
    rows = subsample(store, args.split, args.members, args.seed)
    every_text = store.texts(None)
    texts = [every_text[i] for i in rows]
    labels = store.labels[rows]
    params: dict[str, dict] = {}
    for name, key, value in map(parse_param, args.param):
        params.setdefault(name, {})[key] = value
    options = CostlyOptions(
        shots=args.shots,
        prefix_source=args.prefix_source,
        seed=args.seed,
        batch_size=args.batch_size,
        params=params,
    )
    names = args.attacks.split(",")
    seq_len = store.manifest["seq_len"]

    stats = store.stats(None)
    subset = TokenStats(**{n: getattr(stats, n)[torch.from_numpy(rows)] for n in STAT_NAMES})
    one_pass = {}
    for name in ATTACKS:
        result = evaluate(labels, score(name, subset, texts))
        one_pass[name] = {"auc": round(result.auc, 4), "tpr_at_1pct": round(result.tpr_at_1pct, 4)}

    busy = cpu_busy()
    started = time.perf_counter()
    models = store_models(store, "cpu", args.batch_size)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    plain_pass(models, texts)
    plain_seconds = time.perf_counter() - started
    print(f"models loaded in {load_seconds:.0f} s; plain pass of {len(texts)} texts in {plain_seconds:.0f} s")

    results = {}
    for name, cost in costs(names, options, seq_len).items():
        started, cpu_started = time.perf_counter(), time.process_time()
        settings = resolved_settings(name, store, args.split, options, models)
        values = costly_score(name, models, texts, settings)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        metric = evaluate(labels, values)
        results[name] = {
            "auc": round(metric.auc, 4),
            "tpr_at_1pct": round(metric.tpr_at_1pct, 4),
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),  # this process, all threads: meaningful on a busy machine
            "seconds_per_text": round(seconds / len(texts), 3),
            "cost_per_text": cost.describe(),
            "settings": {**options.params.get(name, {})},
        }
        print(f"{name}: AUC {metric.auc:.3f}, TPR@1% {metric.tpr_at_1pct:.3f}, {seconds:.0f} s", flush=True)

    record = {
        "store": str(args.store),
        "target": store.manifest["models"]["target"],
        "reference": store.manifest["models"]["reference"],
        "subsample": {
            "split": args.split,
            "members": int((labels == 1).sum()),
            "non_members": int((labels == 0).sum()),
            "seed": args.seed,
            "note": "TPR@1% FPR from fewer than 1,000 non-members is coarse (SPEC §7)",
        },
        "options": {**options.record(), "prefix_source": args.prefix_source},
        "plain_pass_seconds": round(plain_seconds, 1),
        "model_load_seconds": round(load_seconds, 1),
        "costly": results,
        "one_pass_same_rows": one_pass,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cpu_busy_before": round(busy, 2),
            "torch": torch.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
