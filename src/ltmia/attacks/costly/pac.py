"""PAC, Polarized Augment Calibration (Ye et al., Findings of ACL 2024, arXiv 2405.11930): how the spread of a
text's token log-probs changes when its words are shuffled a little.

The *polarized distance* of a text is PD = mean of its ``far`` highest token log-probs minus the mean of its
``local`` lowest (counts max(1, floor(ratio * n)), ratios 0.05 and 0.3). Each augmentation swaps
max(1, floor(alpha * words)) random pairs of space-separated words (alpha 0.3); PAC compares PD of the text
with the mean PD of ``augmentations`` (5) augmented copies. The authors rank by -(PD(x) - mean PD(aug)), so
the score here is mean PD(aug) - PD(x), larger for members.

Choices made here: a swap picks two *distinct* positions directly (the authors' helper gives up after four
draws of the same index, which leaves short texts unswapped now and then); augmentations are drawn from a
generator seeded by ``seed`` and the text's SHA-256, so a text gets the same augmentations in any batch or
subset; a one-word text cannot be swapped and gets 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, plain_pass, text_pass, text_seed
from ltmia.errors import InputError


@dataclass(frozen=True)
class PacSettings:
    """Augmentations per text, swap rate ``alpha`` and the polarized distance's two region ratios."""

    augmentations: int = 5
    alpha: float = 0.3
    local_ratio: float = 0.3
    far_ratio: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.augmentations < 1 or not 0 < self.alpha <= 1:
            raise InputError("pac needs augmentations >= 1 and alpha in (0, 1]")
        if not (0 < self.local_ratio <= 1 and 0 < self.far_ratio <= 1):
            raise InputError("pac's local_ratio and far_ratio must be in (0, 1]")


def swapped(text: str, alpha: float, rng: np.random.Generator) -> str:
    """The text with max(1, floor(alpha * words)) swaps of two distinct space-separated words."""
    words = text.split(" ")
    for _ in range(max(1, int(alpha * len(words)))):
        i, j = rng.choice(len(words), size=2, replace=False)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def polarized_distance(logprob: Tensor, valid: Tensor, local_ratio: float, far_ratio: float) -> Tensor:
    """(N, T), (N, T) bool -> (N,) float64 mean of the max(1, floor(far n)) highest valid values minus the
    mean of the max(1, floor(local n)) lowest."""
    out = torch.zeros(logprob.shape[0], dtype=torch.float64)
    for i, (row, keep) in enumerate(zip(logprob.double(), valid, strict=True)):
        values = row[keep].sort().values
        n = values.numel()
        local = max(1, math.floor(n * local_ratio))
        far = max(1, math.floor(n * far_ratio))
        out[i] = values[-far:].mean() - values[:local].mean()
    return out


def pac_cost(settings: PacSettings, seq_len: int) -> Cost:
    return Cost(forward_passes=settings.augmentations, plain_pass=True)


@costly_attack(
    "pac",
    PacSettings,
    pac_cost,
    "Ye et al. 2024, Data Contamination Calibration for Black-box LLMs (Findings of ACL)",
)
def pac_score(models: Models, texts: list[str], settings: PacSettings) -> np.ndarray:
    """N texts -> (N,) mean PD(augmented) - PD(text); higher = more likely member."""
    plain = plain_pass(models, texts)
    pd_text = polarized_distance(plain.logprob, plain.valid, settings.local_ratio, settings.far_ratio)
    swappable = [len(text.split(" ")) > 1 for text in texts]
    augmented = []
    for text, can_swap in zip(texts, swappable, strict=True):
        if can_swap:
            rng = np.random.default_rng(text_seed(text, settings.seed))
            augmented += [swapped(text, settings.alpha, rng) for _ in range(settings.augmentations)]
    if not augmented:
        return np.zeros(len(texts))
    aug = text_pass(models, augmented)
    pd_aug = polarized_distance(aug.logprob, aug.valid, settings.local_ratio, settings.far_ratio)
    mean_aug = pd_aug.view(-1, settings.augmentations).mean(-1)
    scores = torch.zeros(len(texts), dtype=torch.float64)
    scores[torch.tensor(swappable)] = mean_aug - pd_text[torch.tensor(swappable)]
    return scores.numpy()
