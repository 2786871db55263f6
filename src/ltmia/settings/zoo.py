"""The offline zoo's settings: what ``ltmia.zoo.pretrain.build_zoo`` pretrains each architecture on, at what
size, with what recipe; a study's ``[zoo]`` table and ``ltmia zoo build`` set them through `zoo_settings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field, field_validator

from ltmia.settings.base import SEQ_LEN, Real, Settings, check_keys
from ltmia.settings.finetune import Recipe

DEFAULT_VOCAB_SIZE = 4096  # the zoo tokenizer's (``ltmia.zoo.tokenizer``)


@dataclass(frozen=True)
class ZooSize:
    """Size knobs shared by all families; each family maps them onto its own config fields."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    max_len: int = 128  # max positions (sequence length L = 128 in the method)


def built_in_corpora() -> list[str]:
    """Names of the built-in corpora (``ltmia.corpora.CORPORA``), the zoo's pretraining sources."""
    from ltmia.corpora import CORPORA  # the registry sits above the settings; it loads no torch

    return CORPORA.names()


def pretrain_recipe() -> Recipe:
    """Pretraining from scratch wants a high LR with warmup and cosine decay, and clipping for stability."""
    return Recipe(
        epochs=4, lr=2e-3, weight_decay=0.01, schedule="cosine", warmup_steps=50, grad_clip=1.0, seed=0
    )


class ZooSettings(Settings):
    """What a zoo is built from; stored in ``zoo.json`` so a resumed build cannot silently change it, and
    hashed into a study's zoo keys (``record()``: the fields in this order)."""

    what: ClassVar[str] = "zoo settings"

    corpora: list[str] = Field(default_factory=built_in_corpora)
    texts_per_corpus: int = Field(default=1000, ge=1)
    vocab_size: int = DEFAULT_VOCAB_SIZE
    size: ZooSize = Field(default_factory=ZooSize)
    recipe: Recipe = Field(default_factory=pretrain_recipe)
    val_fraction: Real = 0.05
    seq_len: int = SEQ_LEN
    seed: int = 0

    @field_validator("corpora")
    @classmethod
    def built_in(cls, corpora: list[str]) -> list[str]:
        unknown = [corpus for corpus in corpora if corpus not in built_in_corpora()]
        if unknown:
            raise ValueError(
                f"unknown built-in corpus {unknown[0]!r}; choose from {', '.join(built_in_corpora())}"
            )
        return corpora


ZOO_KEYS = ("corpora", "texts_per_corpus", "vocab_size", "epochs", "hidden", "layers", "heads")
"""The zoo settings a study's ``[zoo]`` table and ``ltmia zoo build`` set: `ZooSettings` flattened."""


def zoo_settings(table: dict, where: str = "zoo settings") -> ZooSettings:
    """`ZooSettings` from flat ``ZOO_KEYS`` values: ``epochs`` is the pretraining recipe's, ``hidden``,
    ``layers`` and ``heads`` the ``ZooSize``'s; what is not given keeps the models' defaults."""
    check_keys(table, ZOO_KEYS, where)
    values = {key: table[key] for key in ("corpora", "texts_per_corpus", "vocab_size") if key in table}
    values["size"] = {key: table[key] for key in ("hidden", "layers", "heads") if key in table}
    if "epochs" in table:
        values["recipe"] = {**pretrain_recipe().record(), "epochs": table["epochs"]}
    return ZooSettings.from_table(values, where)
