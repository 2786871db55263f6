"""The baseline attacks' registry and the helpers their scorers share (SPEC §5).

Kept apart from the package's ``__init__``, which registers the attacks by importing their modules: each
attack module imports this one, so nothing imports back into a half-initialised package.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ltmia.registry import Registry
from ltmia.tokenstats import TokenStats

Scorer = Callable[..., np.ndarray]

ATTACKS: Registry[Scorer] = Registry("attack")


def score(name: str, stats: TokenStats, texts: list[str], **params: object) -> np.ndarray:
    """Scores of attack ``name`` for the N texts of one batch: (N, L-1) stats, N texts -> (N,) float64.

    Every score is a statistic over a text's valid positions, so a text without one has no score.
    """
    n_valid = stats.valid.sum(-1)
    if len(texts) != n_valid.shape[0]:
        raise ValueError(f"{len(texts)} texts for token statistics of {n_valid.shape[0]}")
    if bool((n_valid == 0).any()):
        empty = torch.nonzero(n_valid == 0).flatten().tolist()
        raise ValueError(f"texts {empty} have no valid token position to score")
    return np.asarray(ATTACKS.get(name)(stats, texts, **params), dtype=np.float64)


def packed(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(N, T), (N, T) bool -> (N, T) float64 with each row's valid values first, in order; (N,) counts.

    Lets window and sorting scores treat a text's valid positions as one contiguous run, whatever the
    padding side.
    """
    order = torch.sort((~valid).to(torch.uint8), dim=-1, stable=True).indices
    return values.double().gather(-1, order), valid.sum(-1)


def valid_mean(values: Tensor, valid: Tensor) -> Tensor:
    """(N, T), (N, T) bool -> (N,) float64 mean over each row's valid positions."""
    return torch.where(valid, values.double(), 0.0).sum(-1) / valid.sum(-1)
