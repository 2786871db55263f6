"""Zlib attack (SPEC §5): -NLL_T over the text's zlib-compressed length.

Dividing by a model-free measure of the text's redundancy stops merely predictable (repetitive, boilerplate)
texts from looking like members.
"""

from __future__ import annotations

import zlib

import numpy as np

from ltmia.attacks.base import ATTACKS, valid_mean
from ltmia.tokenstats import TokenStats


def zlib_length(text: str) -> int:
    """Bytes of ``zlib.compress`` (default level) of the UTF-8 text."""
    return len(zlib.compress(text.encode("utf-8")))


@ATTACKS.register("zlib")
def zlib_score(stats: TokenStats, texts: list[str]) -> np.ndarray:
    """(N, L-1) stats, N texts -> (N,) -NLL_T / zlib length."""
    lengths = np.array([zlib_length(text) for text in texts], dtype=np.float64)
    return valid_mean(stats.target_logprob, stats.valid).numpy() / lengths
