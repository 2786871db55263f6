"""Model sources: GGUF files (written here with gguf.GGUFWriter) and packaged:<name> models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gguf_writer import write_llama_gguf

from ltmia import sources
from ltmia.artefacts import read_manifest
from ltmia.data import encode, make_splits
from ltmia.errors import InputError, LtmiaError
from ltmia.extract import extract_target
from ltmia.finetune import Recipe, finetune
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.store import Store, StoreSettings

TEXT = "Return a new path with the file name changed, as the docstring of pathlib says it should."


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A private LTMIA_HOME, so conversions land in the test's own cache."""
    monkeypatch.setenv("LTMIA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def base_model(tiny_base):
    return load_causal_lm(str(tiny_base))


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory, base_model, tokenizer) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gguf")
    return {
        "f32": write_llama_gguf(base_model, tokenizer, folder / "tiny-f32.gguf"),
        "q8_0": write_llama_gguf(base_model, tokenizer, folder / "tiny-q8_0.gguf", quantise=True),
    }


def logits_of(model, tokenizer, bos: str = "never") -> torch.Tensor:
    ids, mask = encode(tokenizer, [TEXT], bos=bos)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.slow
def test_f32_gguf_converts_to_the_exact_model(home, gguf_files, base_model, tokenizer):
    path = sources.resolve_model(str(gguf_files["f32"]))
    manifest = read_manifest(Path(path))
    assert Path(path).parent == home / "models"
    assert manifest["artefact"] == sources.GGUF_ARTEFACT
    assert manifest["sha256"] == sources.file_sha256(gguf_files["f32"])
    assert manifest["quantisation"]["file_type"] == "ALL_F32"
    assert manifest["quantisation"]["architecture"] == "llama"
    assert (Path(path) / "model.safetensors").exists() and (Path(path) / "tokenizer.json").exists()
    converted, converted_tokenizer = load_causal_lm(str(gguf_files["f32"])), load_tokenizer(path)
    assert converted_tokenizer(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert torch.equal(logits_of(converted, converted_tokenizer), logits_of(base_model, tokenizer))


def test_quantised_gguf_matches_within_dequantisation_error(home, gguf_files, base_model, tokenizer):
    converted = load_causal_lm(str(gguf_files["q8_0"]))
    manifest = read_manifest(Path(sources.resolve_model(str(gguf_files["q8_0"]))))
    assert manifest["quantisation"]["file_type"] == "MOSTLY_Q8_0"
    assert manifest["quantisation"]["tensor_types"]["Q8_0"] > 0
    difference = (logits_of(converted, tokenizer) - logits_of(base_model, tokenizer)).abs().max()
    assert 0 < difference < 0.05  # Q8_0 rounds each weight to 1/254 of its block's range


def test_conversion_happens_once_and_dir_file_spec_resolves(home, gguf_files, monkeypatch):
    first = sources.resolve_model(str(gguf_files["f32"]))
    monkeypatch.setattr(sources, "_write_hf_directory", lambda *a: pytest.fail("converted twice"))
    assert sources.resolve_model(str(gguf_files["f32"])) == first
    folder, name = gguf_files["f32"].parent, gguf_files["f32"].name
    assert sources.resolve_model(f"{folder}::{name}") == first
    with pytest.raises(InputError, match="several GGUF files"):
        sources.resolve_model(str(folder))
    with pytest.raises(InputError, match="does not exist"):
        sources.resolve_model(str(folder / "missing.gguf"))
    assert sources.resolve_model("some-org/some-model") == "some-org/some-model"  # hub ids pass through
    assert sources.default_bos(str(gguf_files["f32"])) == "auto"  # the GGUF's tokenizer says
    assert sources.default_bos("some-org/some-model") is None  # SPEC §2's "never"


@pytest.mark.slow
def test_gguf_round_trips_through_finetune_and_extract(home, gguf_files, docstrings, tmp_path):
    splits = make_splits(docstrings, 12, 2, 12, seed=3, source={"corpus": "docstrings"})
    target = finetune(str(gguf_files["f32"]), splits, tmp_path / "target", Recipe(epochs=1, batch_size=8))
    manifest = read_manifest(target)
    assert manifest["base"] == str(gguf_files["f32"].resolve())
    assert manifest["base_source"] == {
        "gguf": str(gguf_files["f32"].resolve()),
        "sha256": sources.file_sha256(gguf_files["f32"]),
    }
    assert manifest["bos"] == "never" and manifest["recipe"]["precision"] == "fp32"  # auto: adds no BOS
    corpus = tmp_path / "docstrings.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in docstrings))
    store = Store(extract_target(target, tmp_path / "store", StoreSettings(shard_size=8), corpus=str(corpus)))
    assert store.n == 24 and store.manifest["bos"] == "never" and store.manifest["precision"] == "fp32"
    assert store.manifest["models"]["reference_source"]["sha256"] == sources.file_sha256(gguf_files["f32"])
    features, _ = store.features()
    assert features.shape == (24, 128, 154) and torch.isfinite(features).all()


def fake_packaged(monkeypatch, gguf: Path, installed: bool) -> sources.PackagedModel:
    """Register a packaged model whose 'installed package' is the test's GGUF file."""
    model = sources.PackagedModel(
        name="tiny-test",
        description="a test model",
        architecture="llama",
        parameters="0.1 M",
        vocab=512,
        licence="MIT",
        distributions=("ltmia-test-tiny-model",),
        install="pip install ltmia-test-tiny-model",
        file="tiny.gguf",
        sha256=sources.file_sha256(gguf),
        bos="always",
    )
    registry = sources.Registry("packaged model")
    registry.register(model.name)(model)
    monkeypatch.setattr(sources, "PACKAGED", registry)
    monkeypatch.setattr(sources, "_distribution", lambda name: object() if installed else None)
    if installed:  # else the real lookup runs and finds nothing
        monkeypatch.setattr(sources, "packaged_gguf", lambda m, scratch: gguf)
    return model


def test_packaged_name_resolves_when_installed(home, gguf_files, monkeypatch):
    fake_packaged(monkeypatch, gguf_files["f32"], installed=True)
    path = sources.resolve_model("packaged:tiny-test")
    assert read_manifest(Path(path))["source"] == "packaged:tiny-test"
    assert sources.source_record("packaged:tiny-test")["packaged"] == "tiny-test"
    assert sources.default_bos("packaged:tiny-test") == "always"
    assert not list((home / "models").glob(".assemble-*"))  # the scratch folder is ltmia's and is removed


def test_packaged_name_with_another_hash_is_refused(home, gguf_files, monkeypatch):
    fake_packaged(monkeypatch, gguf_files["f32"], installed=True)
    monkeypatch.setattr(sources, "packaged_gguf", lambda m, scratch: gguf_files["q8_0"])
    with pytest.raises(InputError, match="reinstall the package"):
        sources.resolve_model("packaged:tiny-test")


def test_missing_package_is_one_line_naming_the_pip_command(home, gguf_files, monkeypatch):
    fake_packaged(monkeypatch, gguf_files["f32"], installed=False)
    with pytest.raises(InputError) as error:
        sources.resolve_model("packaged:tiny-test")
    message = str(error.value)
    assert "\n" not in message and "pip install ltmia-test-tiny-model" in message
    assert sources.INSTALL_REAL in message


def test_unknown_packaged_name_lists_the_valid_ones():
    with pytest.raises(LtmiaError, match="smollm2-135m, gemma3-270m"):
        sources.resolve_model("packaged:gpt-5")


def test_shipped_registry_pins_both_real_models():
    assert sources.PACKAGED.names() == ["smollm2-135m", "gemma3-270m"]
    for name in sources.PACKAGED:
        model = sources.PACKAGED.get(name)
        assert len(model.sha256) == 64 and model.bos in ("never", "always")


def test_cli_models_convert_prints_the_converted_directory(home, gguf_files, monkeypatch):
    from rich.console import Console
    from typer.testing import CliRunner

    from ltmia import cli

    monkeypatch.setattr(cli, "console", Console(width=300))  # one line, whatever the terminal
    result = CliRunner().invoke(cli.app, ["models", "convert", str(gguf_files["q8_0"])])
    assert result.exit_code == 0, result.output
    path = sources.converted_dir(sources.file_sha256(gguf_files["q8_0"]))
    assert str(path) in result.output and "MOSTLY_Q8_0" in result.output
