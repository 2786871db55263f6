"""Min-K% attack (SPEC §5): mean of the k-fraction lowest target log-probs of a text.

A non-member text usually holds a few outlier tokens the model finds very unlikely; a member has fewer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ltmia.attacks.base import ATTACKS, packed
from ltmia.tokenstats import TokenStats


def mean_of_lowest(values: Tensor, valid: Tensor, k: float) -> Tensor:
    """(N, T), (N, T) bool -> (N,) float64 mean of each row's max(1, floor(k * n)) smallest valid values.

    floor(k * n) is taken in float64, like ``int(len * k)`` in the Min-K% code.
    """
    if not 0.0 <= k <= 1.0:
        raise ValueError(f"k must be a fraction in [0, 1], got {k}")
    values, counts = packed(values, valid)
    inside = torch.arange(values.shape[-1]) < counts[:, None]
    lowest = torch.where(inside, values, math.inf).sort(dim=-1).values
    take = torch.floor(k * counts.double()).clamp_min(1.0)
    chosen = torch.arange(values.shape[-1]) < take[:, None]
    return torch.where(chosen, lowest, 0.0).sum(-1) / take


@ATTACKS.register("min_k")
def min_k_score(stats: TokenStats, texts: list[str], k: float = 0.2) -> np.ndarray:
    """(N, L-1) stats -> (N,) mean of the max(1, floor(k N)) smallest log p_T(y_t)."""
    return mean_of_lowest(stats.target_logprob, stats.valid, k).numpy()
