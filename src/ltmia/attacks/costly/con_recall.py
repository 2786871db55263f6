"""Con-ReCall (Wang et al., COLING 2025, arXiv 2409.03363): ReCaLL contrasted with a *member* prefix.

A member prefix raises a member's log-likelihood (the model "recognises" the data it was trained on) while a
non-member prefix lowers it, so the authors' score
(LL(x | P_non) - gamma * LL(x | P_mem)) / LL(x) is larger for members. Both prefixes come from the caller's
prefix source (``ltmia.costly_scores``); the member prefix needs texts known to be members, so it can only
come from other rows of the store.

Layout, scored positions and context window are ReCaLL's (``ltmia.attacks.costly.recall``); the non-member
conditioned pass is cached, so running both attacks costs one extra pass, not two. ``gamma`` defaults to
0.5: the paper sweeps it (0.1-1.0) and reports per-dataset best values; Fast-MIA's default is 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, plain_pass
from ltmia.attacks.costly.recall import MAX_CONTEXT, conditional_ll
from ltmia.errors import InputError


@dataclass(frozen=True)
class ConRecallSettings:
    """Non-member and member shots, the contrast weight ``gamma`` and ReCaLL's ``max_context``."""

    non_member_prefix: tuple[str, ...] = ()
    member_prefix: tuple[str, ...] = ()
    gamma: float = 0.5
    max_context: int = MAX_CONTEXT


def con_recall_cost(settings: ConRecallSettings, seq_len: int) -> Cost:
    """Two conditioned target passes (one of them shared with ReCaLL when both run)."""
    cap = settings.max_context - 1
    prefix = min(len(settings.non_member_prefix) * seq_len, cap) + min(
        len(settings.member_prefix) * seq_len, cap
    )
    return Cost(forward_passes=2, context_tokens=prefix, plain_pass=True)


@costly_attack(
    "con_recall",
    ConRecallSettings,
    con_recall_cost,
    "Wang et al. 2024, Con-ReCall: Detecting Pre-training Data in LLMs via Contrastive Decoding "
    "(COLING 2025)",
)
def con_recall_score(models: Models, texts: list[str], settings: ConRecallSettings) -> np.ndarray:
    """N texts -> (N,) (LL(x | P_non) - gamma LL(x | P_mem)) / LL(x); higher = more likely member."""
    if not settings.non_member_prefix or not settings.member_prefix:
        raise InputError("con_recall needs both non_member_prefix and member_prefix shots")
    ll = -plain_pass(models, texts).mean_nll()
    non = conditional_ll(models, texts, settings.non_member_prefix, settings.max_context)
    mem = conditional_ll(models, texts, settings.member_prefix, settings.max_context)
    return ((non - settings.gamma * mem) / ll).numpy()
