"""The built-in demo: pretrain a tiny base, fine-tune a target on known members, score every attack.

Every number it prints is computed in the run (cached stages are reused: the zoo model and the target are
artefact directories, so a second ``ltmia demo`` skips straight to scoring).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table

from ltmia.artefacts import read_manifest
from ltmia.attacks import ATTACKS, score
from ltmia.corpora import CORPORA, corpus_texts
from ltmia.data import make_splits
from ltmia.finetune import Recipe, finetune
from ltmia.metrics import evaluate
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.progress import metrics_table
from ltmia.signals import extract
from ltmia.zoo.pretrain import ZooSettings, build_zoo, pretrain_recipe

ARCH = "llama"
CORPUS = "stdlib-docs"
N_MEMBERS, N_VAL = 1000, 100


@dataclass
class DemoSettings:
    """Small enough for a 2-core CPU in minutes, large enough that TPR@0.1% is measurable (1,000 each)."""

    arch: str = ARCH
    corpus: str = CORPUS
    texts_per_corpus: int = 600
    pretrain_epochs: int = 3
    n_members: int = N_MEMBERS
    n_val: int = N_VAL


def run_demo(
    out: Path,
    settings: DemoSettings | None = None,
    on_stage: Callable[[str], Callable[[int, float], None]] | None = None,
) -> Group:
    """Zoo model -> target -> signals -> every baseline's metrics; returns a printable report."""
    settings = settings or DemoSettings()
    on_stage = on_stage or (lambda name: None)
    recipe = pretrain_recipe()
    recipe.epochs = settings.pretrain_epochs
    zoo_settings = ZooSettings(texts_per_corpus=settings.texts_per_corpus, recipe=recipe)
    base = build_zoo(out / "zoo", [settings.arch], zoo_settings, on_arch=lambda a: on_stage(f"pretrain {a}"))
    corpus = CORPORA.get(settings.corpus)
    splits = make_splits(
        corpus_texts(corpus),
        settings.n_members,
        settings.n_val,
        settings.n_members,
        kind=corpus.kind,
        source={"corpus": corpus.name},
    )
    target_dir = finetune(
        base[settings.arch], splits, out / "target", Recipe(), on_step=on_stage(f"fine-tune on {corpus.name}")
    )
    started = time.perf_counter()
    tokenizer = load_tokenizer(str(target_dir))
    target, reference = load_causal_lm(str(target_dir)), load_causal_lm(str(base[settings.arch]))
    texts = splits.members + splits.non_members
    signals = extract(target, reference, tokenizer, texts, kind=corpus.kind)
    labels = np.r_[np.ones(len(splits.members)), np.zeros(len(splits.non_members))]
    results = {name: evaluate(labels, score(name, signals.stats, texts)) for name in ATTACKS}
    return _report(base[settings.arch], target_dir, results, time.perf_counter() - started, len(texts))


def _report(base: Path, target: Path, results: dict, seconds: float, n_texts: int) -> Group:
    zoo_manifest, target_manifest = read_manifest(base), read_manifest(target)
    pretrain = zoo_manifest["pretrain_log"]["epochs"][-1]
    lines = Table.grid(padding=(0, 2))
    lines.add_row(
        "base model",
        f"{base} ({zoo_manifest['parameters']:,} parameters, pretrained "
        f"{zoo_manifest['seconds'] / 60:.1f} min, val loss {pretrain['val_loss']:.3f})",
    )
    train_log = json.loads((target / "train_log.json").read_text())
    epochs = ", ".join(f"{e['val_loss']:.3f}" for e in train_log["epochs"])
    lines.add_row(
        "target",
        f"{target} (fine-tuned {target_manifest['seconds'] / 60:.1f} min; val loss per "
        f"epoch {epochs}; kept epoch {target_manifest['best_epoch']})",
    )
    lines.add_row("scoring", f"{n_texts} texts through target + reference in {seconds:.1f} s")
    table = metrics_table(results, "Membership inference on the demo target (all member/non-member pairs)")
    return Group(lines, table)
