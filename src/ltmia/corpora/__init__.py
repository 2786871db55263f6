"""Corpora: named collections of real texts that targets are fine-tuned on and attacked with.

A corpus is chosen by name (a built-in from ``builtin.py``) or by a user source (a file, a folder, a saved
dataset or a hub dataset, see ``files.py``). Built-ins hold back a hash-selected share of their texts for
pretraining the reference models, so that the texts an attack is judged on were never seen in pretraining;
the share depends on the text alone, so it is the same on every machine and for every run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

# Importing builtin registers the built-in corpora; both modules build on ``ltmia.corpora.base``.
from ltmia.corpora import builtin, files
from ltmia.corpora.base import (
    CORPORA,
    KINDS,
    MAX_CODE_CHARS,
    PRETRAIN_PERCENT,
    Corpus,
    Kind,
    Pool,
    check_kind,
    corpus_texts,
    in_pretrain_pool,
)
from ltmia.errors import InputError, UnknownNameError


def get_corpus(spec: str, *, column: str | None = None, kind: Kind | None = None) -> Corpus:
    """Resolve a corpus spec: a registered name, a path, or ``hf:<dataset id>[:<split>]``.

    A registered name wins over a same-named file in the working directory (write ``./name`` for the file).
    User sources are read here, so a bad file or column fails before any training starts.
    """
    check_kind(kind)
    if spec in CORPORA:
        if column is not None:
            raise InputError(f"column applies to files and hf: datasets, not to the built-in corpus {spec!r}")
        corpus = CORPORA.get(spec)
        return corpus if kind is None else replace(corpus, kind=kind)
    if spec.startswith("hf:"):
        return files.hub_corpus(spec, column=column, kind=kind)
    if Path(spec).exists() or files.looks_like_path(spec):
        return files.path_corpus(spec, column=column, kind=kind)
    raise UnknownNameError(
        f"unknown corpus {spec!r}; choose one of: {', '.join(CORPORA.names())}; "
        f"or give a path ({files.SUPPORTED}) or hf:<dataset id>[:<split>]"
    )


__all__ = [
    "CORPORA",
    "KINDS",
    "MAX_CODE_CHARS",
    "PRETRAIN_PERCENT",
    "Corpus",
    "Kind",
    "Pool",
    "builtin",
    "check_kind",
    "corpus_texts",
    "files",
    "get_corpus",
    "in_pretrain_pool",
]
