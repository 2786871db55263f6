"""DC-PDD (Zhang et al., EMNLP 2024, arXiv 2409.14781): token probabilities calibrated by how frequent each
token is in a reference corpus.

A model assigns high probability to common tokens whether or not it saw the text; DC-PDD asks how much
probability the target puts on tokens that are *rare* in general text. With p_t = p_T(y_t) and f the
Laplace-smoothed token frequency of a reference corpus, f(v) = (count(v) + 1) / (total + V), each token
contributes alpha_t = p_t * log(1 / f(y_t)), clipped at ``a``; the score is the mean over the first
occurrence of each distinct token in the text, larger for members (the authors' code ranks by its negation
as a non-member score).

The paper counts tokens of C4; ltmia builds the counts from any ltmia corpus (``token_counts``; the caller
drops every text the target's split record names, so no scored or member text is counted). Choices the
paper leaves open: reference texts are counted whole (not truncated to L) and without special tokens; the
EOS that SPEC §2 appends to every text is not scored (it is not part of the text, and special tokens are
not counted); a text without a scored token gets 0. The probabilities are the target's plain pass, which
is the shared pass's target half, so the attack costs no model pass beyond the run's cached one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, plain_pass
from ltmia.errors import InputError


@dataclass(frozen=True, eq=False)
class DcPddSettings:
    """``counts``: (V,) token counts of the reference corpus (`token_counts`); ``a``: the clip bound (0.01,
    the authors' default)."""

    counts: Tensor | None = field(default=None, repr=False)
    a: float = 0.01


def token_counts(tokenizer, texts: Sequence[str]) -> Tensor:
    """(V,) int64 occurrences of each token id in ``texts`` (whole texts, no special tokens), V =
    len(tokenizer)."""
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    every = torch.tensor([token for ids in encoded for token in ids], dtype=torch.long)
    return torch.bincount(every, minlength=len(tokenizer))


def smoothed_frequency(counts: Tensor) -> Tensor:
    """(V,) counts -> (V,) float64 Laplace-smoothed frequencies (count + 1) / (total + V)."""
    counts = counts.double()
    return (counts + 1.0) / (counts.sum() + counts.numel())


def first_occurrences(tokens: Tensor) -> Tensor:
    """(n,) token ids -> (n,) bool, True where a token appears for the first time in the sequence."""
    seen: set[int] = set()
    keep = []
    for token in tokens.tolist():
        keep.append(token not in seen)
        seen.add(token)
    return torch.tensor(keep, dtype=torch.bool)


def dc_pdd_cost(settings: DcPddSettings, seq_len: int) -> Cost:
    return Cost(plain_pass=True, setup="count the tokens of the reference corpus")


@costly_attack(
    "dc_pdd",
    DcPddSettings,
    dc_pdd_cost,
    "Zhang et al. 2024, Pretraining Data Detection for Large Language Models: A Divergence-based "
    "Calibration Method (EMNLP)",
)
def dc_pdd_score(models: Models, texts: list[str], settings: DcPddSettings) -> np.ndarray:
    """N texts -> (N,) mean over first occurrences of min(p_T(y_t) log(1 / f(y_t)), a)."""
    if settings.counts is None:
        raise InputError("dc_pdd needs token counts of a reference corpus (dc_pdd.token_counts)")
    plain = plain_pass(models, texts)
    log_inverse_frequency = -smoothed_frequency(settings.counts).log()
    targets = plain.ids[:, 1:]  # (N, L-1) y_t
    scored = plain.valid.clone()
    last = plain.valid.sum(-1) - 1  # the appended EOS: the last valid position
    scored[torch.arange(len(texts)), last.clamp_min(0)] = False
    scores = np.zeros(len(texts))
    for i in range(len(texts)):
        tokens = targets[i][scored[i]]
        if tokens.numel() == 0:
            continue
        first = first_occurrences(tokens)
        prob = plain.logprob[i][scored[i]][first].double().exp()
        alpha = prob * log_inverse_frequency[tokens[first]]
        scores[i] = float(alpha.clamp_max(settings.a).mean())
    return scores
