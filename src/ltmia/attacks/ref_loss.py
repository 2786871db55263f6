"""Reference-calibrated loss (SPEC §5): how much lower the target's loss is than the untouched base's.

The reference removes the text's intrinsic difficulty, leaving what fine-tuning changed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ltmia.attacks.base import ATTACKS, valid_mean
from ltmia.tokenstats import TokenStats


@ATTACKS.register("ref_loss")
def ref_loss_score(
    stats: TokenStats, texts: list[str], form: Literal["difference", "ratio"] = "difference"
) -> np.ndarray:
    """(N, L-1) stats -> (N,) NLL_R - NLL_T ("difference", default) or -NLL_T / NLL_R ("ratio")."""
    nll_target = -valid_mean(stats.target_logprob, stats.valid)
    nll_reference = -valid_mean(stats.reference_logprob, stats.valid)
    if form == "difference":
        return (nll_reference - nll_target).numpy()
    if form == "ratio":
        return (-nll_target / nll_reference).numpy()
    raise ValueError(f"ref_loss form must be 'difference' or 'ratio', got {form!r}")
