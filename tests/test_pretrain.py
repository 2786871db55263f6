"""The offline zoo: pretraining pool disjoint from attack pools, resumable builds, settings locked in."""

from __future__ import annotations

import json

import pytest

from ltmia.corpora import CORPORA, corpus_texts
from ltmia.data import text_hash
from ltmia.errors import OutputExistsError
from ltmia.finetune import Recipe
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.zoo.architectures import ZooSize
from ltmia.zoo.pretrain import ZooSettings, build_zoo, pretraining_pool

TINY = ZooSettings(
    corpora=["fortunes", "stdlib-code"],
    texts_per_corpus=24,
    vocab_size=384,
    size=ZooSize(hidden=32, layers=1, heads=2),
    recipe=Recipe(epochs=1, batch_size=8, lr=1e-3, seed=0),
)


@pytest.mark.slow  # extracts three built-in corpora into the session's fresh LTMIA_HOME
def test_pretraining_pool_is_disjoint_from_every_attack_pool():
    pool = pretraining_pool(["fortunes", "wordnet", "stdlib-code"], texts_per_corpus=200, seed=0)
    assert len(pool.texts) == 600 and pool.kinds.count("code") == 200
    attack = {
        text_hash(t)
        for name in ("fortunes", "wordnet", "stdlib-code")
        for t in corpus_texts(CORPORA.get(name), pool="attack")
    }
    assert not attack & {text_hash(t) for t in pool.texts}
    again = pretraining_pool(["fortunes", "wordnet", "stdlib-code"], texts_per_corpus=200, seed=0)
    assert again.texts == pool.texts


@pytest.mark.slow
def test_build_zoo_then_resume_and_refuse_other_settings(tmp_path):
    built = build_zoo(tmp_path / "zoo", ["gpt2", "mamba"], TINY)
    for arch, directory in built.items():
        manifest = json.loads((directory / "manifest.json").read_text())
        assert manifest["architecture"] == arch and manifest["parameters"] > 0
        assert (directory / "model.safetensors").exists()
        model, tokenizer = load_causal_lm(str(directory)), load_tokenizer(str(directory))
        assert model.config.model_type == arch and len(tokenizer) == 384
        assert tokenizer.eos_token_id == 0 and tokenizer.pad_token_id == 1
    stamp = (built["gpt2"] / "manifest.json").stat().st_mtime_ns
    again = build_zoo(tmp_path / "zoo", ["gpt2"], TINY)  # finished: nothing is redone
    assert (again["gpt2"] / "manifest.json").stat().st_mtime_ns == stamp
    other = ZooSettings(**{**TINY.__dict__, "texts_per_corpus": 25})
    with pytest.raises(OutputExistsError, match="other settings"):
        build_zoo(tmp_path / "zoo", ["gpt2"], other)


@pytest.mark.slow  # build_zoo reads its corpora before it looks at the directory
def test_zoo_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(OutputExistsError, match="not an ltmia zoo"):
        build_zoo(tmp_path / "photos", ["gpt2"], TINY)
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"\xff\xd8"
