"""Loss attack (SPEC §5): -NLL_T, the mean target log-likelihood; fine-tuning lowers members' loss."""

from __future__ import annotations

import numpy as np

from ltmia.attacks.base import ATTACKS, valid_mean
from ltmia.tokenstats import TokenStats


@ATTACKS.register("loss")
def loss_score(stats: TokenStats, texts: list[str]) -> np.ndarray:
    """(N, L-1) stats -> (N,) -NLL_T = mean of log p_T(y_t) over valid positions."""
    return valid_mean(stats.target_logprob, stats.valid).numpy()
