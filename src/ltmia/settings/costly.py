"""The costly attacks' options (``ltmia.costly_scores``): where their outside inputs come from and each
attack's own settings; shared by ``ltmia baselines --attacks``, a study's ``[costly]`` table and the API."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from ltmia.settings.base import Settings


class CostlyOptions(Settings):
    """Where costly attacks' outside inputs come from, and per-attack settings (``params``, e.g.
    ``{"con_recall": {"gamma": 0.3}}``); defaults follow each paper. ``ltmia.costly_scores``: the sources."""

    what: ClassVar[str] = "costly attacks"

    shots: int = 10
    prefix_source: str = "auto"
    reference_corpus: str | None = None
    seed: int = 0
    batch_size: int = 8
    params: dict[str, dict] = Field(default_factory=dict)

    @model_validator(mode="after")
    def check(self) -> CostlyOptions:
        from ltmia.attacks.costly import COSTLY_ATTACKS  # the registry needs torch: only when made

        if self.shots < 1 or self.batch_size < 1:
            raise ValueError("shots and batch size of costly attacks must be at least 1")
        source = self.prefix_source
        if not (source in ("auto", "corpus") or source.startswith(("split:", "corpus:"))):
            raise ValueError(
                f"prefix source {source!r} is not one of: auto, split:<name>, corpus, corpus:<spec>"
            )
        for name, params in self.params.items():
            COSTLY_ATTACKS.get(name).make_settings(**params)  # unknown attack or setting: fails now
        return self
