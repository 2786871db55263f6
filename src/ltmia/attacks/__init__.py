"""Baseline membership scores (SPEC §5), chosen by name from `ATTACKS`; higher = more likely member.

A scorer is ``fn(stats, texts, **params) -> (N,) float64``: it reads one batch's `TokenStats` (the per-token
arrays every baseline needs, computed in the features' single pass, so no attack costs a model pass) and
the N texts (only zlib uses them). One small module per attack registers itself with
``@ATTACKS.register("name")``; call them through `score`, which checks the batch once for all of them.
"""

# Importing the attack modules registers them, in this order; each builds on ``ltmia.attacks.base``.
from ltmia.attacks import ez_mia, loss, min_k, min_k_pp, ref_loss, wbc, zlib
from ltmia.attacks.base import ATTACKS, Scorer, packed, score, valid_mean

__all__ = [
    "ATTACKS",
    "Scorer",
    "ez_mia",
    "loss",
    "min_k",
    "min_k_pp",
    "packed",
    "ref_loss",
    "score",
    "valid_mean",
    "wbc",
    "zlib",
]
