"""Min-K%++ attack (SPEC §5): Min-K% on log p_T(y_t) standardised by the target's own next-token distribution.

z_t = (log p(y_t) - mu_t) / sigma_t asks whether y_t is a local mode of p_T, which training makes members'
tokens; the moments come from `TokenStats` (SPEC §4's single pass).
"""

from __future__ import annotations

import numpy as np

from ltmia.attacks.base import ATTACKS
from ltmia.attacks.min_k import mean_of_lowest
from ltmia.tokenstats import TokenStats


@ATTACKS.register("min_k_pp")
def min_k_pp_score(stats: TokenStats, texts: list[str], k: float = 0.2) -> np.ndarray:
    """(N, L-1) stats -> (N,) mean of the max(1, floor(k N)) smallest (log p_T(y_t) - mu_t) / sigma_t.

    A one-hot target distribution has sigma_t = 0 and gives an infinite or NaN score, as in the reference.
    """
    standardised = (stats.target_logprob.double() - stats.mink_mu.double()) / stats.mink_sigma.double()
    return mean_of_lowest(standardised, stats.valid, k).numpy()
