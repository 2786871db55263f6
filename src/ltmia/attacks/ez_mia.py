"""EZ-MIA (SPEC §5): on the target's error zone, how much log-likelihood rose vs fell against the reference.

Where the target still mispredicts (argmax != y_t), fine-tuning on a member pushes p_T(y_t) up relative to the
reference; P / Q compares the summed rises with the summed falls there. Two readings of the edge cases:

* ``edge="authors"`` (default, the original code the published comparison used): 0 when the zone has fewer
  than 2 positions, when Q = 0, or when the value is NaN or negative.
* ``edge="paper"``: Q = 0 (no falls, including an empty zone) means all movement is upward, the strongest
  member signal, so the text ranks above every other: it gets `ABOVE_ALL`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ltmia.attacks.base import ATTACKS
from ltmia.tokenstats import TokenStats

ABOVE_ALL = float(np.finfo(np.float64).max)
"""Score that sorts above every real score. Finite, because sklearn's ROC functions reject infinity."""

_Q_EPS = 1e-12


@ATTACKS.register("ez_mia")
def ez_mia_score(
    stats: TokenStats, texts: list[str], edge: Literal["authors", "paper"] = "authors"
) -> np.ndarray:
    """(N, L-1) stats -> (N,) P / (Q + 1e-12) over E = valid positions but the first where argmax_T != y_t.

    D_t = log p_T(y_t) - log p_R(y_t); P = sum of positive D_t on E, Q = sum of |negative D_t| on E.
    The first valid position is left out as in the authors' code (it is predicted from one token only).
    """
    first = stats.valid & (stats.valid.cumsum(-1) == 1)
    zone = stats.valid & ~first & ~stats.target_argmax_hit
    d = torch.where(zone, stats.target_logprob.double() - stats.reference_logprob.double(), 0.0)
    rises, falls = d.clamp_min(0.0).sum(-1), (-d).clamp_min(0.0).sum(-1)
    ratio = rises / (falls + _Q_EPS)
    if edge == "authors":
        undefined = (zone.sum(-1) < 2) | (falls == 0) | ratio.isnan() | (ratio < 0)
        return torch.where(undefined, 0.0, ratio).numpy()
    if edge == "paper":
        return torch.where(falls == 0, ABOVE_ALL, ratio).numpy()
    raise ValueError(f"ez_mia edge must be 'authors' or 'paper', got {edge!r}")
