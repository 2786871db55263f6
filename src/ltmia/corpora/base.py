"""What a corpus is and the registry of named ones (see the package docstring).

Kept apart from the package's ``__init__``, which registers the built-ins by importing ``builtin`` and
resolves specs with ``files``: both build on this module, so nothing imports back into a half-initialised
package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ltmia.errors import InputError
from ltmia.registry import Registry

Kind = Literal["text", "code"]
KINDS: tuple[Kind, ...] = ("text", "code")  # code keeps its last tokens when truncated (SPEC §2)
Pool = Literal["attack", "pretrain", "all"]

MAX_CODE_CHARS = 4_000
"""Longest code text kept whole: built-in code corpora drop longer ones, a source folder splits them."""

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


def check_kind(kind: str | None) -> Kind | None:
    """``kind`` when it is one of `KINDS` or None (a corpus's own); anything else is an InputError. The one
    check for every boundary that takes a kind: corpus specs, study configs, audits."""
    if kind not in (None, *KINDS):
        raise InputError(f"kind {kind!r} is not one of: {', '.join(KINDS)}")
    return kind


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
