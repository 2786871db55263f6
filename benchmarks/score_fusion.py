"""Probe: how much do the one-pass baseline scores add when combined, before a classifier is trained on them?

For every finished store of a study (default ``offline-real``) it computes the seven one-pass baselines and
the shipped (zoo-trained) LT-MIA logit per row, then fits a logistic regression on the "train" rows of the
classifier's training combos over (a) the baselines alone and (b) the baselines plus the shipped logit, each
score standardised within its store (label-free), and reports AUC and TPR@1% FPR with 95% bootstrap
intervals per study group next to the single attacks. A linear probe, not the shipped method: it motivated
the ``score_inputs`` classifier variant (``ltmia.classifier.score_inputs``), which reads the scores per text
without any set-level standardisation and is measured in the study itself.

    cd benchmarks && PYTHONPATH=../src nice -n 10 python score_fusion.py [--cache ~/.cache/ltmia/study/cache]

Per-store scores are cached as .npz under ``$LTMIA_HOME/bench/score_fusion`` (stores are only read), so a
re-run after more stages finish only scores the new stores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from ltmia.artefacts import ltmia_home, write_json
from ltmia.classifier import LTMIA
from ltmia.classifier.checkpoint import shipped_dir
from ltmia.evaluation import baseline_scores
from ltmia.metrics import Bootstrap, evaluate_bootstrap
from ltmia.store import Store
from ltmia.study.config import load_config
from ltmia.study.stages import plan

OUT = Path(__file__).parent / "results" / "score_fusion.json"
BASELINES = ["ez_mia", "wbc", "ref_loss", "min_k_pp", "min_k", "loss", "zlib"]


def store_scores(stage, cache: Path, folder: Path, shipped: LTMIA) -> dict[str, np.ndarray] | None:
    """Labels, splits, baselines and the shipped logit of every row of one finished store (cached)."""
    path = folder / (Path(stage.path).name + ".npz")
    if not path.exists():
        if not stage.done(cache):
            return None
        store = Store(stage.out(cache))
        scored = baseline_scores(store, None, BASELINES)
        logits = np.asarray(shipped.score(store, split=None), dtype=np.float64)
        np.savez(path, labels=store.labels, split=store.split, shipped=logits, **scored.scores)
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def standardised(data: dict[str, np.ndarray], names: list[str], rows: np.ndarray) -> np.ndarray:
    """(n, len(names)): each score standardised over all rows of its store, then the chosen rows."""
    columns = [(data[n] - data[n].mean()) / (data[n].std() + 1e-12) for n in names]
    return np.stack(columns, 1)[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="offline-real")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/ltmia/study/cache")
    parser.add_argument("--classifier", default="lt-mia", help="whose training combos fit the probe")
    args = parser.parse_args()
    study = plan(load_config(args.study))
    folder = ltmia_home() / "bench" / "score_fusion"
    folder.mkdir(parents=True, exist_ok=True)
    shipped = LTMIA.load(shipped_dir("zoo"))  # the zoo-trained classifier its results are of
    data = {c: store_scores(s, args.cache, folder, shipped) for c, s in study.stores.items()}
    data = {c: d for c, d in data.items() if d is not None}
    train_combos = set(study.config.combos(study.config.classifiers[args.classifier].train))
    variants = {"fusion(baselines)": BASELINES, "fusion(baselines+shipped)": ["shipped", *BASELINES]}
    probes = {}
    for name, columns in variants.items():
        x, y = [], []
        for combo in train_combos & set(data):
            rows = np.flatnonzero(data[combo]["split"] == "train")
            x.append(standardised(data[combo], columns, rows))
            y.append(data[combo]["labels"][rows])
        probes[name] = LogisticRegression(C=1.0, max_iter=2000).fit(np.concatenate(x), np.concatenate(y))
    record = {"study": args.study, "cache": str(args.cache), "stores": len(data), "groups": {}}
    for group in study.config.groups.values():
        combos = [c for c in study.config.combos(group.combo_sets) if c in data]
        if len(combos) < len(study.config.combos(group.combo_sets)):
            continue  # a group is reported only when all its stores exist
        labels, scores = [], {a: [] for a in ["shipped", *BASELINES, *variants]}
        for combo in combos:
            d = data[combo]
            every = np.arange(len(d["labels"]))
            rows = every if group.split == "all" else np.flatnonzero(d["split"] == group.split)
            labels.append(d["labels"][rows])
            for attack in ["shipped", *BASELINES]:
                scores[attack].append(d[attack][rows])
            for name, columns in variants.items():
                scores[name].append(probes[name].decision_function(standardised(d, columns, rows)))
        pooled = {a: np.concatenate(v) for a, v in scores.items()}
        result = evaluate_bootstrap(np.concatenate(labels), pooled, Bootstrap())
        record["groups"][group.name] = {a: r.to_dict() for a, r in result.results.items()}
        print(group.name)
        for attack, r in result.results.items():
            lo, hi = r.interval("auc")
            print(f"  {attack:28s} AUC {r.auc:.3f} [{lo:.3f}, {hi:.3f}]  TPR@1% {r.tpr_at_1pct:.3f}")
    write_json(OUT, record)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
