"""A real pretrained LM end to end: packaged:smollm2-135m (ltmia[real], `make install-real`).

It fails rather than skips when the package is missing: `make test` installs it, and CI runs it.
"""

from __future__ import annotations

import json

import pytest
import torch

from ltmia.artefacts import read_manifest
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.data import make_splits
from ltmia.extract import extract_target
from ltmia.finetune import Recipe, finetune
from ltmia.sources import PACKAGED
from ltmia.store import Store, StoreSettings

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_smollm2_finetune_and_extract(tmp_path):
    model = PACKAGED.get("smollm2-135m")
    assert model.installed(), f"this test needs SmolLM2: {model.install} (or make install-real)"
    corpus = get_corpus("fortunes")
    splits = make_splits(corpus_texts(corpus), 8, 2, 8, seed=42, source={"corpus": "fortunes"})
    recipe = Recipe(epochs=1, batch_size=4, precision="auto")
    target = finetune("packaged:smollm2-135m", splits, tmp_path / "target", recipe)
    manifest = read_manifest(target)
    assert manifest["model_type"] == "llama" and manifest["bos"] == "never"
    assert manifest["base_source"]["sha256"] == model.sha256
    assert manifest["recipe"]["precision"] in ("fp32", "bf16")  # auto resolved on this machine
    losses = [entry["train_loss"] for entry in json.loads((target / "train_log.json").read_text())["epochs"]]
    assert all(0 < loss < 10 for loss in losses)  # a real LM: far below log(49152) = 10.8
    store = Store(extract_target(target, tmp_path / "store", StoreSettings(batch_size=4, shard_size=8)))
    store.verify()
    features, _ = store.features()
    assert features.shape == (16, 128, 154) and torch.isfinite(features).all()
    stats = store.stats()
    mean_logprob = (stats.target_logprob * stats.valid).sum() / stats.valid.sum()
    assert -6 < float(mean_logprob) < -0.5  # English prose under a real 135M LM
