"""The LT-MIA classifier (SPEC §6): architecture, padding invariance, learning, weighting, exactness of
micro-batching, determinism, checkpoints, feature groups, streaming from a store, and ``ltmia train``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ltmia.artefacts import CHECKED
from ltmia.classifier import LTMIA, VARIANTS, ArraySource, ClassifierConfig, TrainSettings, build_classifier
from ltmia.classifier.batches import (
    Window,
    combo_weights,
    dropped_indices,
    gather,
    shuffled_windows,
)
from ltmia.classifier.train import accumulate, learning_rate
from ltmia.cli import app
from ltmia.errors import DivergedError, InputError, OutputExistsError, UnknownNameError
from ltmia.extract import build_store
from ltmia.features import feature_dim, feature_groups
from ltmia.metrics import auc
from ltmia.store import Rows, Store, StoreSettings
from ltmia.train_state import clear_state

K, LENGTH = 2, 16  # synthetic features: D = 7k+14 = 28, L = 16
SMALL = dict(
    d_model=32,
    heads=4,
    layers=1,
    ff=64,
    mlp_hidden=32,
    batch_size=64,
    micro_batch_size=32,
    epochs=8,
    warmup_epochs=1,
    lr=3e-3,
)
SMALL_CONFIG = ClassifierConfig(
    feature_dim=feature_dim(K), seq_len=LENGTH, d_model=32, heads=4, layers=1, ff=64, mlp_hidden=32
)


def synthetic(n: int = 800, signal: float = 1.5, seed: int = 0, random_labels: bool = False) -> ArraySource:
    """Features with a member signal of size ``signal`` in dims 0-2 at valid positions; 70/15/15 splits."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator) if random_labels else torch.arange(n) % 2
    lengths = torch.randint(2, LENGTH, (n,), generator=generator)  # the last position is never valid
    mask = torch.arange(LENGTH)[None] < lengths[:, None]
    features = torch.randn(n, LENGTH, feature_dim(K), generator=generator)
    features[..., :3] += signal * labels[:, None, None]
    features = torch.where(mask[..., None], features, 0.0)
    train, val = int(0.7 * n), int(0.15 * n)
    split = ["train"] * train + ["val"] * val + ["test"] * (n - train - val)
    return ArraySource(features, mask, labels, split, shard_size=64)


def test_default_model_is_the_papers_with_0_83_m_parameters():
    d, dims, ff = 192, 154, 576
    layer = (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d  # attn, FF, 2 LN
    pooling = (d * (d // 2) + d // 2) + (d // 2 + 1)
    head = (d * d + d) + (d + 1)
    expected = (dims * d + d) + 2 * d + 2 * layer + pooling + head
    model = build_classifier(ClassifierConfig()).eval()
    count = sum(p.numel() for p in model.parameters())
    assert count == expected == 827_906 and 800_000 <= count <= 860_000
    mask = torch.arange(128)[None] < torch.tensor([[127], [40], [1]])
    with torch.inference_mode():
        assert model(torch.randn(3, 128, 154), mask).shape == (3,)
    assert VARIANTS.names() == ["transformer", "masked_mean_mlp", "flat_mlp", "mean_mlp", "logistic"]


@pytest.mark.parametrize("variant", VARIANTS.names())
def test_padding_cannot_change_the_output(variant):
    torch.manual_seed(0)
    config = ClassifierConfig(**{**vars(SMALL_CONFIG), "variant": variant})
    model = build_classifier(config).eval()
    source = synthetic(n=6)
    features, mask = source.features.clone(), source.mask.clone()
    mask[:, 10:] = False  # every row at most 10 long, so 6 columns can be trimmed
    mask[2] = False  # a row without any valid position
    noisy = torch.where(mask[..., None], features, 1e3 * torch.randn_like(features))
    noisy[2, 0, 0] = float("nan")
    with torch.inference_mode():
        logits = model(features, mask)
        assert torch.equal(model(noisy, mask), logits)
        torch.testing.assert_close(model(features[:, :10], mask[:, :10]), logits, rtol=0, atol=1e-6)
    assert torch.isfinite(logits).all()


@pytest.mark.slow
def test_a_classifier_learns_a_separable_signal():
    source = synthetic()
    classifier = LTMIA(**SMALL).fit(source)
    test_rows = source.rows("test")
    assert auc(source.labels[test_rows], classifier.score(source, "test")) > 0.99
    assert classifier.best_val_auc_ > 0.99 and len(classifier.history_) == 8
    assert classifier.history_[-1]["train_loss"] < classifier.history_[0]["train_loss"]


@pytest.mark.parametrize(
    ("split", "where"), [("train", "train loss nan in epoch 1"), ("val", "1 non-finite")]
)
def test_a_diverged_classifier_is_one_line_and_writes_nothing(tmp_path, split, where):
    """A NaN at a valid position (here put there by hand, as a weight gone NaN would) stops training with
    one line naming where, instead of sklearn's "Input contains NaN"."""
    source = synthetic(n=200)
    source.features[source.rows(split)[0], 0, 0] = float("nan")
    with pytest.raises(
        DivergedError, match=f"classifier training diverged \\({where}.*lower the learning rate"
    ):
        LTMIA(**{**SMALL, "epochs": 1}).fit(source).save(tmp_path / "clf")
    assert not (tmp_path / "clf").exists()


def test_a_killed_training_continues_at_its_last_whole_epoch(tmp_path):
    """Killed after epoch 3 (before its state is saved), a training run again with the same checkpoints
    directory trains epochs 3 and 4 only and ends with the uninterrupted run's weights and history."""
    source, settings = synthetic(n=300), {**SMALL, "epochs": 4}
    whole = LTMIA(**settings).fit(source)

    def killed_after_epoch_3(entry: dict) -> None:
        if entry["epoch"] == 3:
            raise KeyboardInterrupt

    saved = tmp_path / "epochs"
    with pytest.raises(KeyboardInterrupt):
        LTMIA(**settings).fit(source, on_epoch=killed_after_epoch_3, checkpoints=saved)
    assert sorted(p.name for p in saved.iterdir()) == ["epoch-0002.json", "epoch-0002.safetensors"]
    trained: list[int] = []
    resumed = LTMIA(**settings).fit(source, on_epoch=lambda e: trained.append(e["epoch"]), checkpoints=saved)
    assert trained == [3, 4]
    a, b = whole.model_.state_dict(), resumed.model_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in drop} for e in whole.history_] == [
        {k: v for k, v in e.items() if k not in drop} for e in resumed.history_
    ]
    assert whole.best_epoch_ == resumed.best_epoch_ and whole.best_val_auc_ == resumed.best_val_auc_
    assert sorted(p.name for p in saved.iterdir()) == ["epoch-0003.json", "epoch-0003.safetensors"]
    (saved / "notes.txt").write_text("not ltmia's")
    clear_state(saved, remove_directory=True)  # what the study's classifier stage does once it has saved
    assert [p.name for p in saved.iterdir()] == ["notes.txt"]  # only what ltmia wrote is removed
    (saved / "notes.txt").unlink()
    clear_state(saved, remove_directory=True)
    assert not saved.exists()


@pytest.mark.slow
def test_patience_stops_exactly_when_the_validation_auc_stalls():
    """On noise the validation AUC stalls early; training ends the epoch the stall reaches ``patience``."""
    source = synthetic(n=600, signal=0.0, random_labels=True)
    classifier = LTMIA("logistic", **{**SMALL, "epochs": 30, "patience": 2}).fit(source)
    aucs = [entry["val_auc"] for entry in classifier.history_]
    best, stop = 0, None  # epoch indices: the rule replayed on the recorded AUCs
    for index, value in enumerate(aucs):
        best = index if value > aucs[best] else best
        if index - best >= 2:
            stop = index + 1
            break
    best_epoch = best + 1
    assert stop is not None and len(aucs) == stop < 30
    assert classifier.best_epoch_ == best_epoch and classifier.training_["epochs_run"] == stop
    with pytest.raises(InputError, match="patience must be at least 1"):
        LTMIA(patience=0).settings()


@pytest.mark.slow
def test_logistic_regression_on_label_free_noise_stays_near_chance():
    source = synthetic(n=3000, signal=0.0, random_labels=True)  # 450 held-out rows: AUC sd ~0.03
    classifier = LTMIA("logistic", **{**SMALL, "epochs": 3, "batch_size": 256, "micro_batch_size": 256}).fit(
        source
    )
    test_rows = source.rows("test")
    assert 0.4 < auc(source.labels[test_rows], classifier.score(source, "test")) < 0.6


def test_every_combo_gets_equal_total_weight():
    weights = combo_weights([100, 1000])
    assert torch.allclose(
        weights * torch.tensor([100, 1000]), torch.tensor([550.0, 550.0], dtype=torch.float64)
    )
    small, large = synthetic(n=100, seed=1), synthetic(n=1000, seed=2)
    small.split[:], large.split[:] = "train", "train"
    seen = {0: 0.0, 1: 0.0}
    rows = 0
    for window in shuffled_windows([small, large], "train", weights, 128, torch.Generator().manual_seed(0)):
        assert len(window.order) <= 128 and sorted(window.order.tolist()) == list(range(len(window.order)))
        picked = window.weights[window.order]
        seen[0] += float(picked[torch.isclose(picked, torch.tensor(5.5))].sum())
        seen[1] += float(picked[torch.isclose(picked, torch.tensor(0.55))].sum())
        rows += len(window.order)
    assert (
        rows == 1100 and seen[0] == pytest.approx(550, rel=1e-5) and seen[1] == pytest.approx(550, rel=1e-5)
    )


def test_micro_batches_accumulate_to_the_big_batch_gradient():
    source = synthetic(n=64)
    window = Window(
        source.features,
        source.mask,
        torch.from_numpy(source.labels).float(),
        torch.rand(64, generator=torch.Generator().manual_seed(0)) + 0.5,
        torch.arange(64),
    )
    rows = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    config = ClassifierConfig(**{**vars(SMALL_CONFIG), "dropout": 0.0})
    none = torch.tensor([], dtype=torch.long)

    def gradients(micro_batch_size: int) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = build_classifier(config).train()
        loss = accumulate(model, window, rows, 64, none, TrainSettings(micro_batch_size=micro_batch_size))
        return loss, [p.grad for p in model.parameters()]

    (big_loss, big), (small_loss, small) = gradients(64), gradients(7)
    assert small_loss == pytest.approx(big_loss, rel=1e-6)
    for a, b in zip(big, small, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_same_seed_gives_bit_identical_weights():
    source = synthetic(n=300)
    settings = {**SMALL, "epochs": 2, "memory_budget_bytes": 40 * LENGTH * (4 * feature_dim(K) + 1)}
    first, second = (LTMIA(**settings).fit(source).model_.state_dict() for _ in range(2))
    other = LTMIA(**{**settings, "seed": 7}).fit(source).model_.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_learning_rate_warms_up_then_follows_a_cosine_to_min_lr():
    settings = TrainSettings(lr=1.0, min_lr=0.1, epochs=10, warmup_epochs=2)
    rates = [learning_rate(step, 10, 2, settings) for step in range(10)]
    assert rates[:3] == [0.5, 1.0, 1.0] and rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(rates[1:]))


@pytest.mark.slow
def test_save_load_gives_identical_scores(tmp_path):
    source = synthetic(n=300)
    classifier = LTMIA(**{**SMALL, "epochs": 2}).fit(source)
    before = classifier.score(source, "test")
    path = classifier.save(tmp_path / "clf")
    assert sorted(p.name for p in path.iterdir()) == [CHECKED, "classifier.json", "model.safetensors"]
    loaded = LTMIA.load(path)
    assert np.array_equal(loaded.score(source, "test"), before) and before.shape == (45,)
    assert (loaded.d_model, loaded.best_epoch_, loaded.groups_) == (
        32,
        classifier.best_epoch_,
        list(feature_groups(K)),
    )
    assert loaded.history_ == json.loads(json.dumps(classifier.history_))
    test = source.rows("test")
    features, mask = source.features[test].numpy(), source.mask[test].numpy()
    np.testing.assert_allclose(loaded.decision_function(features, mask), before, atol=1e-5)  # other batching
    assert np.allclose(loaded.predict_proba(features, mask), 1 / (1 + np.exp(-before.astype(np.float64))))
    with pytest.raises(OutputExistsError, match="holds a trained classifier"):
        classifier.save(path)


@pytest.mark.slow
def test_a_checkpoint_of_another_feature_layout_is_refused(tmp_path):
    source = synthetic(n=300)
    path = LTMIA(**{**SMALL, "epochs": 1}).fit(source).save(tmp_path / "clf")
    record_file = path / "classifier.json"
    record = json.loads(record_file.read_text())
    record["k"] = 20
    record_file.write_text(json.dumps(record))
    with pytest.raises(
        InputError, match=r"expects feature layout v1, k=20, D=28, L=16; store .* has feature"
    ):
        LTMIA.load(path).score(source)
    with pytest.raises(InputError, match="not a classifier directory"):
        LTMIA.load(tmp_path)


@pytest.mark.slow
def test_group_masking_zeroes_exactly_the_dropped_indices():
    groups = feature_groups(K)
    dropped = dropped_indices(["comparison"], K)
    assert dropped.tolist() == sorted(groups["target"] + groups["reference"])
    source = synthetic(n=8)
    source.mask[:] = True
    features, _ = gather(source.features, source.mask, torch.arange(8), dropped)
    kept = torch.tensor(groups["comparison"])
    assert (features[..., dropped] == 0).all() and torch.equal(
        features[..., kept], source.features[..., kept]
    )
    classifier = LTMIA(**{**SMALL, "epochs": 1}, groups=["reference", "target"]).fit(synthetic(n=300))
    assert classifier.groups_ == ["target", "reference"]
    other = source.features.clone()
    other[..., kept] = torch.randn_like(other[..., kept])
    assert np.array_equal(
        classifier.decision_function(source.features, source.mask),
        classifier.decision_function(other, source.mask),
    )
    with pytest.raises(InputError, match="feature groups must be"):
        LTMIA(**SMALL, groups=["target", "logits"]).fit(synthetic(n=300))


def test_bad_settings_and_sources_are_input_errors():
    with pytest.raises(InputError, match="batch size"):
        TrainSettings(batch_size=0)
    with pytest.raises(InputError, match="divisible"):
        ClassifierConfig(d_model=30)
    with pytest.raises(UnknownNameError, match="choose one of: transformer"):
        LTMIA("resnet").fit(synthetic(n=300))
    no_val = synthetic(n=300)
    no_val.split[:] = "train"
    with pytest.raises(InputError, match="no 'val' rows"):
        LTMIA(**SMALL).fit(no_val)
    other_length = ArraySource(torch.zeros(4, 8, 28), torch.ones(4, 8), [1, 0, 1, 0], ["train"] * 4)
    with pytest.raises(InputError, match="train on stores extracted alike"):
        LTMIA(**SMALL).fit([synthetic(n=300), other_length])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_base, tokenizer, docstrings):
    """A 48-text float16 store (k=2, L=24, shards of 8) from two random tiny llamas; splits 32/8/8."""
    from ltmia.models import load_causal_lm
    from ltmia.zoo.architectures import ZooSize, build_model

    target = load_causal_lm(str(tiny_base))
    size = ZooSize(hidden=64, layers=2, heads=2)
    reference = build_model(
        "llama", len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, size, seed=1
    )
    rows = Rows(docstrings[:48], [1, 0] * 24, ["train"] * 32 + ["val"] * 8 + ["test"] * 8)
    settings = StoreSettings(k=K, seq_len=24, shard_size=8, batch_size=8, dtype="float16")
    return build_store(target, reference, tokenizer, rows, tmp_path_factory.mktemp("store") / "s", settings)


def test_training_streams_from_a_store_like_from_memory(small_store):
    store = Store(small_store)
    features, mask = store.features()
    in_memory = ArraySource(features, mask, store.labels, store.split, shard_size=8)
    settings = {**SMALL, "epochs": 2, "batch_size": 16, "micro_batch_size": 4}
    settings["memory_budget_bytes"] = 5 * 24 * (4 * feature_dim(K) + 1)  # 5 rows: less than one shard
    streamed, held = LTMIA(**settings).fit(store), LTMIA(**settings).fit(in_memory)
    assert streamed.training_["shuffle_buffer_rows"] == 5 and features.dtype == torch.float16
    state = streamed.model_.state_dict()
    assert all(torch.equal(value, held.model_.state_dict()[name]) for name, value in state.items())
    scores = streamed.score(str(small_store), "test")
    assert scores.shape == (8,) and np.array_equal(scores, held.score(in_memory, "test"))
    assert np.isfinite(streamed.score(store, None)).all()


def test_cli_train_writes_a_classifier(tmp_path, small_store):
    out = tmp_path / "clf"
    args = ["train", str(small_store), "--out", str(out), "--epochs", "2", "--batch-size", "16"]
    args += ["--warmup-epochs", "1", "--micro-batch-size", "8", "--groups", "comparison,target"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best epoch" in result.output and str(out) in result.output
    record = json.loads((out / "classifier.json").read_text())
    assert record["groups"] == ["comparison", "target"] and record["k"] == K and record["seq_len"] == 24
    assert record["training"]["settings"]["epochs"] == 2 and len(record["training"]["history"]) == 2
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and isinstance(again.exception, OutputExistsError)


def test_cli_evaluate_writes_tables_and_roc_per_store_and_group(tmp_path, small_store):
    clf = tmp_path / "clf"
    train = ["train", str(small_store), "--out", str(clf), "--epochs", "1", "--batch-size", "16"]
    assert CliRunner().invoke(app, [*train, "--warmup-epochs", "0"]).exit_code == 0
    out = tmp_path / "eval"
    args = ["evaluate", str(small_store), "--classifier", str(clf), "--out", str(out), "--split", "all"]
    result = CliRunner().invoke(app, [*args, "--group", "tiny group"])
    assert result.exit_code == 0, result.output
    for slug in (small_store.name, "tiny-group"):
        record = json.loads((out / f"{slug}.json").read_text())
        assert {"lt_mia", "loss", "ref_loss", "ez_mia", "wbc"} <= set(record["metrics"])
        assert (
            record["metrics"]["lt_mia"]["n_members"] == 24 and record["metrics"]["loss"]["n_nonmembers"] == 24
        )
        assert (out / f"{slug}.md").read_text().count("\n| ") >= 8  # header + 8 attacks
        assert (out / f"{slug}-roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "lt_mia" in result.output
