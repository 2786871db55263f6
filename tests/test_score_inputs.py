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


def test_arrays_with_their_text_scores_score_as_the_store_does(store):
    """decision_function(features, mask, text_scores) is what LTMIA.score reads from the store."""
    clf = LTMIA(**SMALL, score_inputs=NAMES).fit(store)
    shards = list(store.iter_shards("test"))
    features = torch.cat([s["features"] for s in shards]).float()
    mask = torch.cat([s["mask"] for s in shards])
    scores = torch.cat([text_scores(s, NAMES) for s in shards])
    expected = clf.score(store, "test")
    np.testing.assert_allclose(clf.decision_function(features, mask, scores), expected, atol=1e-5)
    with pytest.raises(InputError, match=r"must be \(8, 3\)"):
        clf.decision_function(features, mask, scores[:, :2])
    plain = LTMIA(**SMALL).fit(store)
    with pytest.raises(InputError, match="reads no text scores"):
        plain.decision_function(features, mask, scores)


def test_occlusion_of_a_logistic_classifier_with_score_inputs_hides_the_position_and_its_scores(store):
    """Logistic regression on the flattened (L, D + S) input: hiding position t removes w_t . [x_t, s],
    since the broadcast scores at a hidden position are zeroed like its features."""
    from ltmia.audit import occlusion

    clf = LTMIA("logistic", **SMALL, score_inputs=NAMES).fit(store)
    shard = next(iter(store.iter_shards("test")))
    features, mask = shard["features"][0].float(), shard["mask"][0]
    scores = text_scores(shard, NAMES)[0]
    length = features.shape[0]
    weights = clf.model_.linear.weight.detach().view(length, -1)
    widened = torch.cat([features, scores.expand(length, -1)], dim=-1)
    expected = (weights * widened).sum(1) * mask
    np.testing.assert_allclose(occlusion(clf, features, mask, scores), expected.numpy(), atol=1e-4)
