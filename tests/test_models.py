"""Loading models and tokenizers at the boundary: clear errors, no remote code, EOS always present."""

from __future__ import annotations

import json
import shutil

import pytest

from ltmia.errors import InputError
from ltmia.models import load_causal_lm, load_tokenizer


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "readme.txt").write_text("not a model")
    with pytest.raises(InputError, match="not a model directory"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(InputError, match="not a model directory"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(InputError, match="is a file"):
        load_causal_lm(str(tmp_path / "readme.txt"))


def test_remote_code_refused_unless_trusted(tiny_base, tmp_path):
    model_dir = tmp_path / "remote"
    shutil.copytree(tiny_base, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="--trust-remote-code"):
        load_causal_lm(str(model_dir))


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # no network attempt in tests
    with pytest.raises(InputError, match="hub id 'nobody/no-such-model'"):
        load_causal_lm("nobody/no-such-model")


def test_tokenizer_without_eos_or_pad_gets_them(tiny_base, tmp_path, caplog):
    tok_dir = tmp_path / "tok"
    shutil.copytree(tiny_base, tok_dir)
    config_path = tok_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for key in ("eos_token", "bos_token", "pad_token"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    tokenizer = load_tokenizer(str(tok_dir))
    assert tokenizer.eos_token is not None and tokenizer.eos_token_id is not None
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert "no EOS token" in caplog.text


def test_local_directory_loads_like_a_zoo_model(tiny_base):
    model = load_causal_lm(str(tiny_base))
    assert not model.training and model.config.model_type == "llama"
    assert load_tokenizer(str(tiny_base)).eos_token_id == 0
