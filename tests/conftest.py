"""Shared fixtures: a small tokenizer trained on real text and a tiny saved base model."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


def stdlib_docstrings() -> list[str]:
    """Real English text on every machine: docstrings of a few standard-library modules."""
    import argparse
    import collections
    import email.message
    import pathlib
    import subprocess
    import typing

    texts = []
    for module in (
        argparse,
        collections,
        email.message,
        pathlib,
        subprocess,
        typing,
        json,
        inspect,
        textwrap,
    ):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node)
                if doc and len(doc.strip()) > 50:
                    texts.append(doc.strip())
    return list(dict.fromkeys(texts))


COSTLY_FIXTURES = {
    "target",  # fine-tunes a model (test_audit, test_faults, test_store)
    "full_target",  # test_finetune
    "store",  # extracts a store (test_costly_scores, test_faults)
    "store32",  # test_store
    "small_store",  # test_classifier
    "classifier",  # trains a classifier (test_faults)
    "uninterrupted",  # runs a mini study (test_faults_kill)
    "ray_instance",  # starts Ray (test_ray)
    "local_cache",  # test_ray
    "loaded",  # extracts every built-in corpus (test_corpora)
}
"""Module- or session-scoped fixtures that build something costly before their first test can run."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier (``make test-fast``: ``-m "not slow and not real"``) leaves out every test that uses a
    costly fixture, directly or through another fixture: whichever of them runs first pays for it, so
    marking only that one would hand the cost to the next."""
    for item in items:
        if COSTLY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def ltmia_home(tmp_path_factory) -> Iterator[Path]:
    """A private LTMIA_HOME for the whole session, set before any other fixture runs and restored at its end:
    no test writes ltmia's user cache (~/.cache/ltmia), built-in corpora are extracted once per session, and
    subprocesses (Ray workers, killed runs) inherit it. A test that needs another home sets it with its own
    ``monkeypatch``, which puts this one back."""
    path = tmp_path_factory.mktemp("ltmia-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTMIA_HOME", str(path))
        yield path


@pytest.fixture(autouse=True)
def no_leaked_ltmia_environment(monkeypatch):
    """``ltmia --debug`` / ``--verify`` export LTMIA_DEBUG / LTMIA_VERIFY for subprocesses; a CliRunner test
    would leak them into every later test (and its subprocesses) in the same pytest process. Start each test
    without them (nor a LTMIA_FAST_PATHS of the shell), and undo what its own CLI calls set (setenv records
    the original value for teardown)."""
    for name in ("LTMIA_DEBUG", "LTMIA_VERIFY", "LTMIA_FAST_PATHS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def docstrings() -> list[str]:
    return stdlib_docstrings()


@pytest.fixture(scope="session")
def tokenizer(docstrings):
    from ltmia.zoo.tokenizer import train_tokenizer

    return train_tokenizer(docstrings, vocab_size=512)


def save_base(tokenizer, out: Path, hidden: int = 64, layers: int = 2) -> Path:
    """A randomly initialised tiny llama saved with its tokenizer in ``out``, as a zoo model would be."""
    from ltmia.zoo.architectures import ZooSize, build_model

    size = ZooSize(hidden=hidden, layers=layers, heads=2)
    model = build_model("llama", len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, size, seed=0)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tokenizer) -> Path:
    """A randomly initialised tiny llama saved with its tokenizer, as a zoo model directory would be."""
    return save_base(tokenizer, tmp_path_factory.mktemp("base"))
