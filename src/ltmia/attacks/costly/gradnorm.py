"""GradNorm (Wang et al. 2024, "Pandora's White-Box", arXiv 2402.17012; in mimir, Duan et al. 2024): the size
of the gradient of the target's loss on a text with respect to its parameters.

Training drives the loss of members towards a minimum, where gradients are small; a non-member's loss still
has a slope. With loss = NLL_T(x) (mean over the text's valid positions, SPEC §2 encoding), the score is
-mean over parameter tensors of ||d loss / d W||_p, larger for members. The aggregation (one norm per
parameter tensor, averaged) is mimir's.

Choices made here: p = 2 by default (mimir defaults to the max-norm; 1 and inf are offered); the gradient is
taken with respect to *every* parameter of the target, frozen ones included (for a LoRA target: base and
adapters alike; parameters are switched to requires_grad only for the pass and restored after); one text at
a time, unpadded, because a batch would sum the texts' gradients. Models run in eval mode (no dropout).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, next_token_logprobs
from ltmia.device import autocast, float32_head
from ltmia.errors import InputError

NORMS = (1.0, 2.0, math.inf)


@dataclass(frozen=True)
class GradNormSettings:
    """``p``: the norm of each parameter tensor's gradient (1, 2 or inf)."""

    p: float = 2.0

    def __post_init__(self) -> None:
        if float(self.p) not in NORMS:
            raise InputError(f"gradnorm p must be 1, 2 or inf, got {self.p}")


@contextmanager
def with_gradients(model: nn.Module) -> Iterator[list[nn.Parameter]]:
    """Every parameter of ``model`` requiring grad for the block; each one's previous flag restored after."""
    params = list(model.parameters())
    before = [param.requires_grad for param in params]
    for param in params:
        param.requires_grad_(True)
    try:
        yield params
    finally:
        for param, flag in zip(params, before, strict=True):
            param.requires_grad_(flag)


def gradnorm_cost(settings: GradNormSettings, seq_len: int) -> Cost:
    return Cost(forward_passes=1, backward_passes=1)


@costly_attack(
    "gradnorm",
    GradNormSettings,
    gradnorm_cost,
    "Wang et al. 2024, Pandora's White-Box: Precise Training Data Detection and Extraction in Large "
    "Language Models (arXiv 2402.17012); mimir's aggregation (Duan et al. 2024)",
)
def gradnorm_score(models: Models, texts: list[str], settings: GradNormSettings) -> np.ndarray:
    """N texts -> (N,) -mean over parameter tensors of ||grad of NLL_T(x)||_p; higher = more likely member."""
    model = models.target
    device = next(model.parameters()).device
    ids, mask = models.encode(texts)
    scores = np.zeros(len(texts))
    with torch.enable_grad(), with_gradients(model) as params:
        for i in range(len(texts)):
            row = ids[i : i + 1, : int(mask[i].sum())].to(device)
            ones = torch.ones_like(row)
            with autocast(models.precision, device), float32_head(model):
                logits = model(input_ids=row, attention_mask=ones).logits.float()
            loss = -next_token_logprobs(logits, row, ones).mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norms = [grad.detach().float().norm(settings.p) for grad in grads if grad is not None]
            scores[i] = -float(torch.stack(norms).mean())
    return scores
