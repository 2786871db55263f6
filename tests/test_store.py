"""The feature store: round trip, row bookkeeping, checksums, resumption, reuse, refusals, LoRA reference."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields

import pytest
import torch
from typer.testing import CliRunner

from ltmia.artefacts import CHECKED
from ltmia.attacks import ATTACKS
from ltmia.cli import app
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.data import make_splits, text_hash
from ltmia.errors import InputError, OutputExistsError
from ltmia.evaluation import baseline_scores, metrics
from ltmia.extract import build_store, extract_target, target_rows
from ltmia.finetune import Recipe, finetune
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.signals import extract
from ltmia.store import Rows, Store, StoreSettings
from ltmia.tokenstats import TokenStats

FAST = dict(epochs=1, batch_size=8, lr=3e-3)
SETTINGS = StoreSettings(shard_size=16, batch_size=8)  # 80 texts -> 5 shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docstrings):
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(text.replace("\n", " ") for text in docstrings[:120]))
    return path


@pytest.fixture(scope="module")
def splits(corpus):
    texts = corpus_texts(get_corpus(str(corpus)))
    return make_splits(texts, 40, 4, 40, seed=0, source={"corpus": str(corpus)})


@pytest.fixture(scope="module")
def target(tmp_path_factory, tiny_base, splits):
    return finetune(str(tiny_base), splits, tmp_path_factory.mktemp("t") / "target", Recipe(**FAST))


@pytest.fixture(scope="module")
def store32(tmp_path_factory, target):
    return extract_target(target, tmp_path_factory.mktemp("s") / "store", SETTINGS)


def in_memory(target, reference, texts):
    """The reference result: ``extract`` on all texts at once, batched as the store batches them."""
    tokenizer = load_tokenizer(str(target))
    models = [load_causal_lm(str(path)) for path in (target, reference)]
    return extract(*models, tokenizer, texts, batch_size=SETTINGS.batch_size)


def test_round_trip_equals_in_memory_extract(tmp_path, tiny_base, target, store32):
    store = Store(store32)
    signals = in_memory(target, tiny_base, store.texts())
    features, mask = store.features()
    assert features.dtype == torch.float32 and features.shape == (80, 128, 154)
    assert torch.equal(features, signals.features) and torch.equal(mask, signals.mask)
    stats = store.stats()
    assert all(
        torch.equal(getattr(stats, f.name), getattr(signals.stats, f.name)) for f in fields(TokenStats)
    )
    half = Store(
        extract_target(target, tmp_path / "half", StoreSettings(shard_size=16, batch_size=8, dtype="float16"))
    )
    features16, mask16 = half.features()
    assert features16.dtype == torch.float16 and torch.equal(mask16, mask)
    assert torch.allclose(features16.float(), features, rtol=1e-3, atol=1e-3)
    assert all(torch.equal(getattr(half.stats(), f.name), getattr(stats, f.name)) for f in fields(TokenStats))


def test_rows_are_the_targets_pairs_split_by_split(target, store32, splits):
    store = Store(store32)
    record = json.loads((target / "splits.json").read_text())
    assert store.split.tolist() == ["train"] * 72 + ["val"] * 4 + ["test"] * 4
    assert store.labels.tolist() == [1, 0] * 40
    for name in ("train", "val", "test"):
        rows = store.rows(name)
        assert sorted(set(store.pair[rows].tolist())) == record["pairs"][name]
        assert store.labels[rows].sum() * 2 == rows.size
    members = [splits.members[i] for i in store.pair[store.labels == 1]]
    non_members = [splits.non_members[i] for i in store.pair[store.labels == 0]]
    assert store.texts()[::2] == members and store.texts()[1::2] == non_members
    assert store.hashes == [text_hash(text) for text in store.texts()]
    test = list(store.iter_shards("test"))
    assert len(test) == 1 and test[0]["row"].tolist() == list(range(76, 80))
    assert torch.equal(store.stats("test").target_logprob, store.stats().target_logprob[76:])


def test_manifest_records_models_settings_and_checksums(tmp_path, tiny_base, target, store32):
    store = Store(store32)
    manifest = store.manifest
    assert manifest["models"]["target"] == str(target) and manifest["models"]["reference"] == str(tiny_base)
    assert manifest["source"]["corpus"] and manifest["k"] == 20 and manifest["seq_len"] == 128
    assert (
        manifest["dtype"] == "float32"
        and manifest["feature_dim"] == 154
        and manifest["feature_layout_version"]
    )
    assert {"ltmia", "torch", "transformers"} <= manifest["versions"].keys()
    assert [shard["rows"] for shard in manifest["shards"]] == [16] * 5
    store.verify()
    damaged = tmp_path / "damaged"
    shutil.copytree(store32, damaged)
    shard = damaged / manifest["shards"][2]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        Store(damaged).verify()


def test_interrupted_extraction_resumes_byte_identical(tmp_path, target, store32):
    def stop_after_two_shards(done: int, total: int) -> None:
        if done > 2 * SETTINGS.shard_size:
            raise KeyboardInterrupt

    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        extract_target(target, out, SETTINGS, on_texts=stop_after_two_shards)
    partial = tmp_path / "store.partial"
    assert not out.exists() and sorted(p.name for p in partial.glob("shard-*")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    seen = []
    extract_target(target, out, SETTINGS, on_texts=lambda done, total: seen.append(done))
    assert (
        seen[:3] == [16, 32, 40] and seen[-1] == 80 and not partial.exists()
    )  # finished shards, then batches
    assert Store(out).manifest["shards"] == Store(store32).manifest["shards"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in store32.iterdir())
    for path in store32.iterdir():
        if path.name != CHECKED:  # ltmia's checksum cache records modification times
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name


def test_finished_store_is_reused_and_other_directories_refused(tmp_path, target, store32, monkeypatch):
    monkeypatch.setattr(
        "ltmia.models.load_causal_lm", lambda *a, **k: pytest.fail("a finished store loaded a model")
    )
    assert extract_target(target, store32, SETTINGS) == store32
    with pytest.raises(OutputExistsError, match="dtype differ"):
        extract_target(target, store32, StoreSettings(shard_size=16, batch_size=8, dtype="float16"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    monkeypatch.undo()
    with pytest.raises(OutputExistsError, match="not a finished ltmia store"):
        extract_target(target, foreign, SETTINGS)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="not a finished feature store"):
        Store(foreign)


def test_texts_that_do_not_match_the_record_are_refused(tmp_path, target, corpus, splits):
    changed = tmp_path / "changed.txt"
    changed.write_text(corpus.read_text().replace(splits.members[3], splits.members[3] + " (edited)"))
    with pytest.raises(InputError, match=r"1 of the texts .* are not in corpus"):
        target_rows(target, corpus=str(changed))
    with pytest.raises(InputError, match="not in corpus"):
        extract_target(target, tmp_path / "store", SETTINGS, corpus=str(changed))
    assert not (tmp_path / "store").exists() and not (tmp_path / "store.partial").exists()


def test_vocabulary_mismatch_fails_before_any_work(tmp_path, target, tokenizer):
    from ltmia.zoo.architectures import ZooSize, build_model

    other = build_model("llama", len(tokenizer) + 64, tokenizer.eos_token_id, tokenizer.pad_token_id,
                        ZooSize(hidden=32, layers=1, heads=2), seed=0)  # fmt: skip
    other.save_pretrained(str(tmp_path / "other"))
    with pytest.raises(InputError, match="different vocabularies"):
        extract_target(target, tmp_path / "store", SETTINGS, reference=str(tmp_path / "other"))
    assert not (tmp_path / "store").exists() and not (tmp_path / "store.partial").exists()


@pytest.mark.slow
def test_lora_target_uses_the_adapter_disabled_reference(tmp_path, tiny_base, splits):
    lora = finetune(str(tiny_base), splits, tmp_path / "lora", Recipe(**FAST, lora=True))
    store = Store(extract_target(lora, tmp_path / "store", SETTINGS))
    models = store.manifest["models"]
    assert models["reference_adapters_disabled"] and models["reference"] == str(tiny_base)
    base = in_memory(tiny_base, tiny_base, store.texts())
    stats = store.stats()
    assert torch.allclose(stats.reference_logprob, base.stats.target_logprob, atol=1e-5)
    assert not torch.allclose(stats.target_logprob, stats.reference_logprob, atol=1e-4)


@pytest.mark.slow
def test_explicit_texts_and_labels(tmp_path, tiny_base, docstrings):
    tokenizer = load_tokenizer(str(tiny_base))
    model = load_causal_lm(str(tiny_base))
    rows = Rows(docstrings[:6], [1, 0, 1, 0, 1, 0])
    store = Store(build_store(model, model, tokenizer, rows, tmp_path / "store", SETTINGS))
    assert store.n == 6 and store.split.tolist() == ["all"] * 6 and store.pair.tolist() == [-1] * 6
    assert store.texts() == docstrings[:6] and set(metrics(baseline_scores(store, None))) == set(ATTACKS)
    with pytest.raises(InputError, match="no 'test' rows; its splits are: all"):
        baseline_scores(store, "test")
    with pytest.raises(InputError, match="labels must be 1"):
        Rows(["a text"], [2])
    with pytest.raises(InputError, match="as many labels"):
        Rows(["a text", "another"], [1])


def test_cli_extract_then_baselines(tmp_path, target):
    out = tmp_path / "store"
    result = CliRunner().invoke(
        app, ["extract", "--target", str(target), "--out", str(out), "--shard-size", "32"]
    )
    assert result.exit_code == 0, result.output
    assert "80 texts in 3 shards" in " ".join(result.output.split())  # rich wraps at the terminal width
    numbers = tmp_path / "baselines.json"
    result = CliRunner().invoke(app, ["baselines", str(out), "--json", str(numbers)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps at the terminal width
    assert all(name in output for name in ATTACKS) and "fewer than 1,000 non-members" in output
    record = json.loads(numbers.read_text())
    attacks = record["attacks"]
    assert set(attacks) == set(ATTACKS) and all(
        a["n_members"] == 2 == a["n_nonmembers"] and len(a["auc_ci"]) == 2 for a in attacks.values()
    )
    assert record["bootstrap"]["replicates"] == 1000 and "auc" in record["comparisons"]


@pytest.mark.slow
def test_extract_refuses_a_reference_with_other_token_ids(tmp_path, tiny_base, tokenizer, docstrings):
    """Same vocabulary size, other ids: extract refuses it exactly as audit does (one shared check)."""
    from ltmia.data import make_splits
    from ltmia.extract import extract_target
    from ltmia.finetune import Recipe, finetune

    splits = make_splits(docstrings, 12, 2, 12, seed=5, source={"corpus": "docstrings"})
    target = finetune(str(tiny_base), splits, tmp_path / "target", Recipe(epochs=1, batch_size=8))
    other = tmp_path / "other-reference"
    shutil.copytree(tiny_base, other)
    spec = json.loads((other / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two tokens swap ids
    (other / "tokenizer.json").write_text(json.dumps(spec))
    corpus = tmp_path / "docstrings.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in docstrings))
    with pytest.raises(InputError, match="tokenizers differ"):
        extract_target(target, tmp_path / "store", reference=str(other), corpus=str(corpus))
