"""SaMIA, sampling-based pseudo-likelihood (Kaneko et al. 2024, arXiv 2404.11262): how much of a text's second
half the target reproduces when it continues the first half.

The target samples ``samples`` continuations of the text's first half (temperature 1, top-k 50, as the
authors' code); each is scored by ROUGE-1 recall against the true second half (the share of the reference's
words, counted with multiplicity, that the candidate contains); the score is the mean over samples, larger
for members, which the model reproduces. ``zlib = True`` gives the paper's SaMIA*zlib: each ROUGE-1 is
multiplied by the zlib-compressed length of the candidate's words, which discounts repetitive candidates.

Choices made here: the split is on the SPEC §2 token sequence (the first floor(n / 2) of the text's n tokens
are the prompt, with BOS when the store uses one), because a member was trained on exactly those tokens; the
paper splits words. Candidates are at most as many tokens as the true second half (the authors generate up
to 1,024 tokens, which lengthens every candidate alike and is far too slow on a CPU) and end at EOS; both
halves are decoded without special tokens and split on whitespace, as the authors do. Sampling is seeded per
text (``seed`` and the text's SHA-256) inside a forked RNG, so scores do not depend on batching and the
caller's RNG state is left alone. A text whose halves are empty gets 0.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, text_seed
from ltmia.device import autocast, float32_head
from ltmia.errors import InputError

if TYPE_CHECKING:
    from transformers import GenerationMixin


@dataclass(frozen=True)
class SamiaSettings:
    """Samples per text, their temperature and top-k, the SaMIA*zlib variant and the sampling seed."""

    samples: int = 10
    temperature: float = 1.0
    top_k: int = 50
    zlib: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1 or self.top_k < 1 or self.temperature <= 0:
            raise InputError("samia needs samples >= 1, top_k >= 1 and a positive temperature")


def rouge1_recall(candidate: list[str], reference: list[str]) -> float:
    """Share of the reference's words (with multiplicity) that the candidate contains; 0 when either is
    empty."""
    if not candidate or not reference:
        return 0.0
    overlap = Counter(candidate) & Counter(reference)
    return sum(overlap.values()) / len(reference)


def continuations(
    models: Models, prompt: torch.Tensor, new_tokens: int, seed: int, settings: SamiaSettings
) -> list[torch.Tensor]:
    """(P,) prompt ids -> (samples, <= new_tokens) sampled continuation ids, each cut at its first EOS."""
    model = models.target
    device = next(model.parameters()).device
    prompt = prompt[None].repeat(settings.samples, 1).to(device)
    eos = models.tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        with autocast(models.precision, device), float32_head(model):
            out = cast("GenerationMixin", model).generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=True,
                temperature=settings.temperature,
                top_k=settings.top_k,
                top_p=1.0,
                max_new_tokens=new_tokens,
                min_new_tokens=0,
                pad_token_id=eos,
                eos_token_id=eos,
            )
    samples = []
    for row in out[:, prompt.shape[1] :].cpu():
        ends = (row == eos).nonzero()
        samples.append(row[: int(ends[0])] if ends.numel() else row)
    return samples


def samia_cost(settings: SamiaSettings, seq_len: int) -> Cost:
    """Each sample reads half a text of prompt (samples / 2 passes' worth) and generates up to half a text."""
    return Cost(
        forward_passes=max(1, settings.samples // 2), generated_tokens=settings.samples * (seq_len // 2)
    )


@costly_attack(
    "samia",
    SamiaSettings,
    samia_cost,
    "Kaneko et al. 2024, Sampling-based Pseudo-Likelihood for Membership Inference Attacks (arXiv "
    "2404.11262)",
)
def samia_score(models: Models, texts: list[str], settings: SamiaSettings) -> np.ndarray:
    """N texts -> (N,) mean ROUGE-1 recall of sampled continuations of the first half against the second."""
    ids, mask = models.encode(texts)
    start = 1 if models.bos == "always" else 0
    tokenizer = models.tokenizer
    scores = np.zeros(len(texts))
    for i, text in enumerate(texts):
        tokens = ids[i, start : int(mask[i].sum()) - 1]  # the text's tokens, without BOS and EOS
        half = tokens.numel() // 2
        reference = tokenizer.decode(tokens[half:].tolist(), skip_special_tokens=True).split()
        if half == 0 or not reference:
            continue
        prompt = ids[i, : start + half]
        values = []
        seed = text_seed(text, settings.seed)
        for sample in continuations(models, prompt, tokens.numel() - half, seed, settings):
            words = tokenizer.decode(sample.tolist(), skip_special_tokens=True).split()
            value = rouge1_recall(words, reference)
            if settings.zlib:
                value *= len(zlib.compress(" ".join(words).encode("utf-8")))
            values.append(value)
        scores[i] = float(np.mean(values))
    return scores
