"""Corpora: named collections of real texts that targets are fine-tuned on and attacked with.

A corpus is chosen by name (a built-in from ``builtin.py``) or by a user source (a file, a folder, a saved
dataset or a hub dataset, see ``files.py``). Built-ins hold back a hash-selected share of their texts for
pretraining the reference models, so that the texts an attack is judged on were never seen in pretraining;
the share depends on the text alone, so it is the same on every machine and for every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ltmia.errors import InputError, UnknownNameError
from ltmia.registry import Registry

Kind = Literal["text", "code"]
Pool = Literal["attack", "pretrain", "all"]

PRETRAIN_PERCENT: int = 30
"""Share (in percent) of each built-in corpus held back for pretraining, chosen by hash of the text."""


@dataclass(frozen=True)
class Corpus:
    """A named source of raw texts plus what a report needs to say about it.

    ``kind`` matters downstream: code keeps its last tokens when truncated, prose its first. ``load`` returns
    stripped, exactly deduplicated texts in a deterministic order (built-ins: sorted; user data: file order).
    """

    name: str
    kind: Kind
    description: str
    origin: str
    licence: str
    load: Callable[[], list[str]]
    reserve_pretrain: bool = False


CORPORA: Registry[Corpus] = Registry("corpus")


def in_pretrain_pool(text: str) -> bool:
    """Whether a built-in corpus text is held back for pretraining; a pure function of the text."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100 < PRETRAIN_PERCENT


def corpus_texts(corpus: Corpus, pool: Pool = "attack") -> list[str]:
    """The corpus texts of one pool; user corpora have no pretraining share, so all their texts are attack."""
    texts = corpus.load()
    if pool == "all":
        return texts
    if not corpus.reserve_pretrain:
        return texts if pool == "attack" else []
    want_pretrain = pool == "pretrain"
    return [text for text in texts if in_pretrain_pool(text) == want_pretrain]


def get_corpus(spec: str, *, column: str | None = None, kind: Kind | None = None) -> Corpus:
    """Resolve a corpus spec: a registered name, a path, or ``hf:<dataset id>[:<split>]``.

    A registered name wins over a same-named file in the working directory (write ``./name`` for the file).
    User sources are read here, so a bad file or column fails before any training starts.
    """
    if kind not in (None, "text", "code"):
        raise InputError(f"kind {kind!r} is not one of: text, code")
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


# Imported last: both modules build on the names above, and importing builtin registers the built-ins.
from ltmia.corpora import builtin, files  # noqa: E402

__all__ = [
    "CORPORA",
    "PRETRAIN_PERCENT",
    "Corpus",
    "builtin",
    "corpus_texts",
    "files",
    "get_corpus",
    "in_pretrain_pool",
]
