"""SPEC §2: the data protocol of one model-dataset combo.

Texts -> length filter -> seeded shuffle -> members / fine-tune validation / non-members -> pair-indexed
train / val / test. Membership is known by construction, so every later stage can prove which texts were
members from the split record (SHA-256 of every text, in order).

Shuffles are keyed hash sorts (sort by SHA-256 of ``"{seed}:{item}"``): a uniformly random permutation that
is identical on every machine and Python version, unlike ``random.shuffle`` whose algorithm may change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch

from ltmia.corpora import Kind, corpus_texts, get_corpus
from ltmia.errors import InputError, NotEnoughTextsError
from ltmia.settings.base import SEQ_LEN, BosSetting  # re-exported: settings' types and defaults

MIN_CHARS = 50  # texts of this many characters or fewer (after strip) are dropped
PAIR_FRACTIONS = (0.90, 0.05, 0.05)  # train / val / test share of the member/non-member pairs

Bos = Literal["never", "always"]
BOS_CHOICES: tuple[str, ...] = get_args(BosSetting)


def text_hash(text: str) -> str:
    """SHA-256 hex digest of a text's UTF-8 bytes: the identity recorded in split records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seeded_order(keys: Sequence[str], seed: int) -> list[int]:
    """Indices of ``keys`` in a seeded, machine-independent random order (sort by keyed SHA-256)."""
    digests = [hashlib.sha256(f"{seed}:{key}".encode()).digest() for key in keys]
    return sorted(range(len(keys)), key=digests.__getitem__)


def filter_texts(texts: Sequence[str]) -> list[str]:
    """Strip texts and drop those of ``MIN_CHARS`` characters or fewer (SPEC §2)."""
    stripped = (text.strip() for text in texts)
    return [text for text in stripped if len(text) > MIN_CHARS]


@dataclass
class Splits:
    """Members, fine-tune validation and non-members of one combo, plus the pair-indexed splits.

    ``pairs[name]`` holds pair indices i: pair i is (members[i], non_members[i]), so train / val / test are
    each exactly class-balanced.
    """

    members: list[str]
    val: list[str]
    non_members: list[str]
    pairs: dict[str, list[int]]
    seed: int
    kind: Kind = "text"
    source: dict[str, str] = field(default_factory=dict)  # e.g. {"corpus": "wordnet"}

    def record(self) -> dict:
        """JSON-able record that proves membership later: sizes, seed, pair splits, every text's hash."""
        hashes = {
            name: [text_hash(t) for t in getattr(self, name)] for name in ("members", "val", "non_members")
        }
        fingerprint = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
        return {
            "seed": self.seed,
            "kind": self.kind,
            "source": self.source,
            "sizes": {name: len(value) for name, value in hashes.items()},
            "fingerprint": fingerprint,
            "pairs": self.pairs,
            "hashes": hashes,
        }


def pair_splits(n_pairs: int, seed: int) -> dict[str, list[int]]:
    """One seeded permutation of pair indices cut 90 / 5 / 5 into train / val / test (SPEC §2)."""
    order = seeded_order([f"pair:{i}" for i in range(n_pairs)], seed)
    n_val = int(n_pairs * PAIR_FRACTIONS[1])
    n_test = int(n_pairs * PAIR_FRACTIONS[2])
    n_train = n_pairs - n_val - n_test
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def make_splits(
    texts: Sequence[str],
    n_members: int,
    n_val: int,
    n_non_members: int,
    seed: int = 42,
    kind: Kind = "text",
    source: dict[str, str] | None = None,
) -> Splits:
    """SPEC §2: filter, shuffle with ``seed``, then take members, validation and non-members in that order.

    Members and non-members are IID draws from the same filtered pool; pairs are (member i, non-member i).
    """
    if n_members != n_non_members:
        raise InputError(
            f"n_members ({n_members}) must equal n_non_members ({n_non_members}): "
            "pair i is (member i, non-member i); pass the same number for both"
        )
    if min(n_members, n_val) < 1:
        raise InputError("n_members and n_val must be at least 1")
    pool = filter_texts(texts)
    needed = n_members + n_val + n_non_members
    if len(pool) < needed:
        raise NotEnoughTextsError(
            f"the corpus has {len(pool)} texts longer than {MIN_CHARS} characters but the split needs "
            f"{needed} ({n_members} members + {n_val} validation + {n_non_members} non-members); "
            "ask for fewer or use a larger corpus"
        )
    shuffled = [pool[i] for i in seeded_order(pool, seed)]
    return Splits(
        members=shuffled[:n_members],
        val=shuffled[n_members : n_members + n_val],
        non_members=shuffled[n_members + n_val : needed],
        pairs=pair_splits(n_members, seed),
        seed=seed,
        kind=kind,
        source=dict(source or {}),
    )


def corpus_splits(
    corpus: str,
    n_members: int,
    n_val: int,
    n_non_members: int,
    seed: int = 42,
    *,
    column: str | None = None,
    kind: Kind | None = None,
) -> Splits:
    """SPEC §2 splits of a corpus spec (``ltmia.corpora.get_corpus``: a built-in, a file or ``hf:``), for
    ``ltmia finetune`` and a study's fine-tuning stage alike.

    Only the corpus's attack pool is drawn from: a built-in corpus's pretraining share never becomes a
    member. The split record names the corpus (and its column), so extraction finds the texts again.
    """
    source = get_corpus(corpus, column=column, kind=kind)
    record = {"corpus": corpus, **({"column": column} if column else {})}
    return make_splits(corpus_texts(source), n_members, n_val, n_non_members, seed, source.kind, record)


def resolve_bos(tokenizer, bos: str) -> Bos:
    """``never`` / ``always`` as given; ``auto``: ``always`` when the tokenizer adds a BOS by default.

    SPEC §2 (after the reference code) encodes without BOS, and ``never`` stays the default for parity; but
    some models collapse without one (Gemma-3-270M: mean log p -7.94 without, -3.19 with it on a 26-token
    English sentence), so the setting is recorded in every target, store and cache key.
    """
    if bos not in BOS_CHOICES:
        raise InputError(f"bos {bos!r} is not one of: {', '.join(BOS_CHOICES)}")
    if bos == "auto":
        bos_id = tokenizer.bos_token_id
        first = tokenizer("a", add_special_tokens=True)["input_ids"][:1]
        return "always" if bos_id is not None and first == [bos_id] else "never"
    if bos == "always" and tokenizer.bos_token_id is None:
        raise InputError("bos 'always' needs a tokenizer with a BOS token; this one has none")
    return bos  # type: ignore[return-value]


def encode(
    tokenizer, texts: Sequence[str], kind: Kind = "text", seq_len: int = SEQ_LEN, bos: Bos = "never"
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC §2 tokenisation: ``texts -> input_ids (N, L), attention_mask (N, L)``.

    No special tokens; truncate to L-1 tokens (text keeps the first, code the last), append EOS so every
    sequence ends in EOS, right-pad with the pad id (EOS when the tokenizer has none). ``bos="always"``
    prepends the tokenizer's BOS and keeps L-2 text tokens (``resolve_bos``), so position 0 predicts the
    first text token.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no EOS token; load it with ltmia.models.load_tokenizer")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prefix = [] if bos == "never" else [tokenizer.bos_token_id]
    if None in prefix:
        raise InputError("bos 'always' needs a tokenizer with a BOS token; this one has none")
    room = seq_len - 1 - len(prefix)
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    input_ids = torch.full((len(encoded), seq_len), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), seq_len), dtype=torch.long)
    for row, ids in enumerate(encoded):
        ids = ids[max(0, len(ids) - room) :] if kind == "code" else ids[:room]
        ids = [*prefix, *ids, eos]
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Causal-LM labels: the inputs with pads masked to -100 (EOS is a real token and is trained on)."""
    return input_ids.masked_fill(attention_mask == 0, -100)
