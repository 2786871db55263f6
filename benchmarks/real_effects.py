"""What bf16 and BOS change on real pretrained LMs: features and every attack's AUC (JSON, not a test).

``precision``: one SmolLM2-135M combo (python-docs, 300 members, SPEC §3 recipe in fp32). Its store is
extracted in fp32 and in bf16 (autocast, float32 LM head); the script reports max |delta| of the features and
of the token log-probs, and each attack's AUC (baselines + the shipped LT-MIA classifier) both ways. A second
target fine-tuned under bf16 autocast shows what the training precision changes.

``bos``: one Gemma-3-270M combo fine-tuned and scored with ``bos = never`` (SPEC §2) and ``always`` (what
Gemma needs), bf16 where native: mean log p of the texts under the base, and every attack's AUC.

    PYTHONPATH=src python benchmarks/real_effects.py precision|bos [--work ~/.cache/ltmia/bench]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ltmia.classifier import LTMIA
from ltmia.classifier.checkpoint import classifier_dir
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.data import make_splits
from ltmia.device import cpu_bf16_flags, resolve_precision
from ltmia.evaluation import baseline_scores, lt_mia_scores, merge, metrics
from ltmia.extract import extract_target
from ltmia.finetune import Recipe, finetune
from ltmia.store import Store, StoreSettings

RESULTS = Path(__file__).parent / "results"


def attack_metrics(store: Store) -> dict:
    """Every attack on all rows of a store: AUC, TPR@1%FPR, counts."""
    scored = merge(
        [baseline_scores(store, None), lt_mia_scores(LTMIA.load(classifier_dir("zoo")), store, None)]
    )
    return {
        name: {"auc": round(r.auc, 4), "tpr_at_1pct": round(r.tpr_at_1pct, 4)}
        for name, r in sorted(metrics(scored).items(), key=lambda item: -item[1].auc)
    }


def splits_of(corpus: str, members: int, val: int):
    source = get_corpus(corpus)
    return make_splits(corpus_texts(source), members, val, members, 42, source.kind, {"corpus": corpus})


def timed(label: str, function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    print(f"{label}: {time.perf_counter() - started:.0f} s", flush=True)
    return result, time.perf_counter() - started


def precision_effect(work: Path) -> dict:
    splits = splits_of("python-docs", 300, 30)
    budget = 4 * 2**30
    out: dict = {"model": "packaged:smollm2-135m", "corpus": "python-docs", "members": 300, "targets": {}}
    for train_precision in ("fp32", "bf16"):
        recipe = Recipe(precision=train_precision)
        target, seconds = timed(
            f"fine-tune ({train_precision})",
            finetune,
            "packaged:smollm2-135m",
            splits,
            work / f"smollm2-pydocs-{train_precision}",
            recipe,
        )
        log = json.loads((target / "train_log.json").read_text())
        entry: dict = {"fine_tune_seconds": round(seconds), "train_log": log, "stores": {}}
        extract_precisions = ("fp32", "bf16") if train_precision == "fp32" else ("bf16",)
        stores = {}
        for precision in extract_precisions:
            settings = StoreSettings(precision=precision, memory_budget_bytes=budget)
            path, seconds = timed(
                f"extract ({train_precision} target, {precision})",
                extract_target,
                target,
                work / f"store-pydocs-{train_precision}-{precision}",
                settings,
            )
            stores[precision] = Store(path)
            entry["stores"][precision] = {
                "extract_seconds": round(seconds),
                "attacks": attack_metrics(stores[precision]),
            }
        if len(stores) == 2:
            (f32, mask), (b16, _) = stores["fp32"].features(), stores["bf16"].features()
            valid = mask.bool()
            delta = (f32 - b16).abs()[valid]
            s32, s16 = stores["fp32"].stats(), stores["bf16"].stats()
            lp = (s32.target_logprob - s16.target_logprob).abs()[s32.valid]
            entry["bf16_vs_fp32_extraction"] = {
                "features_max_abs_delta": float(delta.max()),
                "features_mean_abs_delta": float(delta.mean()),
                "features_p99_abs_delta": float(torch.quantile(delta.flatten()[:1_000_000].float(), 0.99)),
                "target_logprob_max_abs_delta": float(lp.max()),
                "target_logprob_mean_abs_delta": float(lp.mean()),
            }
        out["targets"][train_precision] = entry
    return out


def bos_effect(work: Path) -> dict:
    precision = resolve_precision("auto")
    splits = splits_of("python-docs", 100, 10)
    out: dict = {
        "model": "packaged:gemma3-270m",
        "corpus": "python-docs",
        "members": 100,
        "precision": precision,
        "runs": {},
    }
    for bos in ("never", "always"):
        recipe = Recipe(epochs=2, precision=precision)
        target, seconds = timed(
            f"fine-tune (bos {bos})",
            finetune,
            "packaged:gemma3-270m",
            splits,
            work / f"gemma-bos-{bos}",
            recipe,
            bos=bos,
        )
        log = json.loads((target / "train_log.json").read_text())
        settings = StoreSettings(precision=precision, memory_budget_bytes=6 * 2**30, batch_size=8)
        path, extract_seconds = timed(
            f"extract (bos {bos})", extract_target, target, work / f"store-gemma-bos-{bos}", settings
        )
        store = Store(path)
        stats = store.stats()
        base_logprob = float((stats.reference_logprob * stats.valid).sum() / stats.valid.sum())
        out["runs"][bos] = {
            "fine_tune_seconds": round(seconds),
            "extract_seconds": round(extract_seconds),
            "train_log": log,
            "base_mean_logprob": round(base_logprob, 4),
            "attacks": attack_metrics(store),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("precision", "bos"))
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "ltmia" / "bench")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    result = precision_effect(args.work) if args.what == "precision" else bos_effect(args.work)
    result["machine"] = {"cpu_bf16_flags": list(cpu_bf16_flags()), "threads": torch.get_num_threads()}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"real_{args.what}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
