"""The classifier variant that also reads text-level baseline scores (``ltmia.classifier.score_inputs``):
the squash, the widened features a store is seen with, training, the checkpoint round trip, and refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ltmia.classifier import LTMIA, ArraySource
from ltmia.classifier.score_inputs import ScoredSource, check_score_inputs, squash, text_scores
from ltmia.errors import InputError
from ltmia.evaluation import baseline_scores
from ltmia.extract import build_store
from ltmia.features import feature_dim
from ltmia.store import Rows, Store, StoreSettings

K = 2
NAMES = ("ez_mia", "wbc", "ref_loss")
SMALL = dict(
    d_model=32, heads=4, layers=1, ff=64, batch_size=16, micro_batch_size=8, epochs=2, warmup_epochs=1
)


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_base, tokenizer, docstrings):
    """A 48-text float32 store (k=2, L=24, shards of 8) from two tiny llamas; splits 32/8/8."""
    from ltmia.models import load_causal_lm
    from ltmia.zoo.architectures import ZooSize, build_model

    target = load_causal_lm(str(tiny_base))
    reference = build_model(
        "llama",
        len(tokenizer),
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        ZooSize(hidden=64, layers=2, heads=2),
        seed=1,
    )
    rows = Rows(docstrings[:48], [1, 0] * 24, ["train"] * 32 + ["val"] * 8 + ["test"] * 8)
    settings = StoreSettings(k=K, seq_len=24, shard_size=8, batch_size=8)
    return Store(
        build_store(target, reference, tokenizer, rows, tmp_path_factory.mktemp("s") / "s", settings)
    )


def test_squash_by_hand():
    values = torch.tensor([0.0, 1.0, -1.0, math.e - 1, -1e12])
    expected = torch.tensor([0.0, math.log(2), -math.log(2), 1.0, -math.log1p(1e12)])
    assert torch.allclose(squash(values), expected, atol=1e-6)


def test_a_store_is_seen_with_its_squashed_baseline_scores_at_every_valid_position(store):
    seen = ScoredSource(store, NAMES)
    assert seen.manifest["feature_dim"] == feature_dim(K) + 3 == store.manifest["feature_dim"] + 3
    shards = list(seen.iter_shards("test"))
    features = torch.cat([s["features"] for s in shards])
    mask = torch.cat([s["mask"] for s in shards])
    assert features.shape == (8, 24, feature_dim(K) + 3)
    original, _ = store.features("test")
    assert torch.equal(features[..., : feature_dim(K)], original.float())
    expected = baseline_scores(store, "test", NAMES)  # the evaluation's own scores of the same rows
    for column, name in enumerate(NAMES):
        want = squash(torch.from_numpy(expected.scores[name])).float()
        for row in range(8):
            valid = features[row, mask[row], feature_dim(K) + column]
            assert valid.numel() > 0 and torch.allclose(valid, want[row].expand_as(valid), atol=1e-5)


def test_text_scores_of_a_text_without_tokens_are_zero(store):
    shard = next(store.iter_shards("train"))
    shard = {**shard, "valid": shard["valid"].clone()}
    shard["valid"][0] = False
    scores = text_scores(shard, NAMES)
    assert scores.shape == (8, 3) and torch.equal(scores[0], torch.zeros(3)) and bool(scores[1:].ne(0).any())


def test_fit_score_save_load_round_trip(store, tmp_path):
    clf = LTMIA(**SMALL, score_inputs=NAMES).fit(store)
    assert clf.config_.feature_dim == feature_dim(K) + 3 and clf.record_["feature_dim"] == feature_dim(K)
    scores = clf.score(store, "test")
    assert scores.shape == (8,) and np.isfinite(scores).all()
    path = clf.save(tmp_path / "clf")
    record = json.loads((path / "classifier.json").read_text())
    assert record["score_inputs"] == list(NAMES) and record["feature_dim"] == feature_dim(K)
    loaded = LTMIA.load(path)
    assert loaded.score_inputs_ == NAMES and np.array_equal(loaded.score(store, "test"), scores)
    # a classifier without score inputs records none (its checkpoint is written as before)
    plain = LTMIA(**SMALL).fit(store)
    assert "score_inputs" not in json.loads((plain.save(tmp_path / "plain") / "classifier.json").read_text())


def test_refusals(store):
    with pytest.raises(InputError, match=r"zlib.*not available"):
        check_score_inputs(["zlib"])
    with pytest.raises(InputError, match="choose from"):
        LTMIA(**SMALL, score_inputs=["nope"]).fit(store)
    memory = ArraySource(
        torch.zeros(4, 8, 28), torch.ones(4, 8), [1, 0, 1, 0], ["train", "train", "val", "val"]
    )
    with pytest.raises(InputError, match="no token stats"):
        LTMIA(**SMALL, score_inputs=NAMES).fit(memory)
    clf = LTMIA(**SMALL, score_inputs=["loss"]).fit(store)
    with pytest.raises(InputError, match="score a feature store"):
        clf.decision_function(torch.zeros(2, 24, feature_dim(K)), torch.ones(2, 24))
