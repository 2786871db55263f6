"""Lowercase (Carlini et al., USENIX Security 2021, arXiv 2012.07805): the target's loss on the lowercased
text over its loss on the text.

A model that memorised a text memorised its exact casing too: lowercasing costs a member much more
likelihood than a non-member. Carlini et al. compare the two perplexities as a ratio; here it is
NLL_T(lower(x)) / NLL_T(x) (the ratio of log-perplexities, as DC-PDD's and Fast-MIA's code compute it),
larger for members. Both texts are encoded as SPEC §2 says; the lowercased text may tokenise into a
different number of tokens, so each NLL is a mean over its own valid positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, plain_pass, text_pass


@dataclass(frozen=True)
class LowercaseSettings:
    """No parameters: the attack is fully specified by the paper."""


def lowercase_cost(settings: LowercaseSettings, seq_len: int) -> Cost:
    return Cost(forward_passes=1, plain_pass=True)


@costly_attack(
    "lowercase",
    LowercaseSettings,
    lowercase_cost,
    "Carlini et al. 2021, Extracting Training Data from Large Language Models (USENIX Security)",
)
def lowercase_score(models: Models, texts: list[str], settings: LowercaseSettings) -> np.ndarray:
    """N texts -> (N,) NLL_T(lowercased text) / NLL_T(text); higher = more likely member."""
    lower = text_pass(models, [text.lower() for text in texts]).mean_nll()
    return (lower / plain_pass(models, texts).mean_nll()).numpy()
