"""Neighbourhood comparison (Mattern et al., Findings of ACL 2023, arXiv 2305.18462): the target's loss on a
text against its loss on *neighbours*, copies with one word replaced by a plausible alternative.

A member's loss is low compared with texts that differ from it by one plausible word; a non-member's is
not, because the model never saw the exact text. Score = mean NLL_T(neighbours) - NLL_T(x), larger for
members (the paper thresholds the negation, L(x) - mean L(neighbours)).

Offline there is no masked LM, so the neighbours come from the **reference model** (the target's base; for
a LoRA target, the target with adapters disabled), which shares the target's tokenizer: one reference pass
over the text gives, at every position, its next-token distribution p_R. For each token of the encoded
text that has a left context and is not the appended EOS (so not the first token; with BOS, every text
token) the ``top_k`` most likely alternatives
c != y_t that are not special tokens are candidates, scored as in the authors' code by
p_R(c) / (1 - p_R(y_t)) (the candidate's share of the probability left when y_t is excluded); the
``neighbours`` best (position, candidate) swaps each give one neighbour. Differences from the paper: the
proposals see only the left context (a causal LM, where BERT sees both sides), there is no embedding dropout
(the causal proposal is already not the identity), and the swap is of one *token*, made on the token ids
(no decode / re-encode round trip), so the neighbour has exactly the text's length. A text without a
candidate gets 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ltmia.attacks.base import valid_mean
from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, Pass, per_sub_batch, plain_pass, token_logprobs
from ltmia.errors import InputError
from ltmia.signals import reference_of


@dataclass(frozen=True)
class NeighbourhoodSettings:
    """Neighbours per text and the alternatives considered per position (Fast-MIA's ``top_k`` 10)."""

    neighbours: int = 25
    top_k: int = 10

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.top_k < 1:
            raise InputError("neighbourhood needs neighbours >= 1 and top_k >= 1")


def proposals(models: Models, plain: Pass, top_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The reference's top-(k + specials + 1) next tokens at every position: (N, L-1, K) ids and probs,
    plus (N, L-1) p_R(y_t)."""
    width = top_k + 1 + len(models.tokenizer.all_special_ids)

    def top(logits: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        probs = logits[:, :-1].softmax(-1)
        values, indices = probs.topk(min(width, probs.shape[-1]), dim=-1)
        truth = probs.gather(-1, ids[:, 1:, None])
        return torch.cat([indices.double(), values.double(), truth.double()], dim=-1)

    with reference_of(models.target, models.reference) as reference:
        packed = per_sub_batch(reference, plain.ids, plain.mask, models, top)
    k = (packed.shape[-1] - 1) // 2
    return packed[..., :k].long(), packed[..., k : 2 * k], packed[..., -1]


def best_swaps(models: Models, plain: Pass, settings: NeighbourhoodSettings) -> list[list[tuple[int, int]]]:
    """Per text, up to ``neighbours`` (token index, replacement id) swaps, best first."""
    ids, probs, truth = proposals(models, plain, settings.top_k)
    special = set(models.tokenizer.all_special_ids)
    lengths = plain.mask.sum(-1)
    swaps = []
    for i in range(plain.ids.shape[0]):
        scored: list[tuple[float, int, int]] = []
        # position t predicts token t + 1: tokens 1 .. n-2 have a left context and are not the final EOS
        for t in range(int(lengths[i]) - 2):
            original = int(plain.ids[i, t + 1])
            taken = 0
            for candidate, prob in zip(ids[i, t].tolist(), probs[i, t].tolist(), strict=True):
                if taken == settings.top_k:
                    break
                if candidate == original or candidate in special:
                    continue
                taken += 1
                rest = 1.0 - float(truth[i, t])
                scored.append((prob / (rest if rest > 0 else 0.1), t + 1, candidate))
        scored.sort(key=lambda entry: (-entry[0], entry[1], entry[2]))
        swaps.append([(index, candidate) for _, index, candidate in scored[: settings.neighbours]])
    return swaps


def neighbourhood_cost(settings: NeighbourhoodSettings, seq_len: int) -> Cost:
    """One reference pass for the proposals, one target pass per neighbour."""
    return Cost(forward_passes=1 + settings.neighbours, plain_pass=True)


@costly_attack(
    "neighbourhood",
    NeighbourhoodSettings,
    neighbourhood_cost,
    "Mattern et al. 2023, Membership Inference Attacks against Language Models via Neighbourhood "
    "Comparison (Findings of ACL); neighbours from the reference model, not a masked LM",
)
def neighbourhood_score(models: Models, texts: list[str], settings: NeighbourhoodSettings) -> np.ndarray:
    """N texts -> (N,) mean NLL_T(neighbours) - NLL_T(text); higher = more likely member."""
    plain = plain_pass(models, texts)
    swaps = best_swaps(models, plain, settings)
    owners, rows = [], []
    for i, text_swaps in enumerate(swaps):
        for index, candidate in text_swaps:
            row = plain.ids[i].clone()
            row[index] = candidate
            owners.append(i)
            rows.append(row)
    scores = np.zeros(len(texts))
    if not rows:
        return scores
    owner = torch.tensor(owners)
    mask = plain.mask[owner]
    nll = -valid_mean(token_logprobs(models.target, torch.stack(rows), mask, models), mask[:, 1:].bool())
    mean_neighbour = torch.zeros(len(texts), dtype=torch.float64).index_add_(0, owner, nll)
    counts = torch.bincount(owner, minlength=len(texts))
    has = counts > 0
    scores[has.numpy()] = (mean_neighbour[has] / counts[has] - plain.mean_nll()[has]).numpy()
    return scores
