"""ReCaLL (Xie et al., EMNLP 2024, arXiv 2406.15968): how the target's log-likelihood of a text changes when a
prefix of known non-member texts is put in front of it.

Conditioning on non-members lowers a member's log-likelihood more than a non-member's, so
ReCaLL(x) = LL(x | P) / LL(x) (both mean log-likelihoods, negative) is larger for members; the authors' code
ranks by it as is. The prefix P is a few non-member texts (``non_member_prefix``, resolved by the caller
from a *prefix source*: other rows of the store or unused texts of a corpus, ``ltmia.costly_scores``).

Choices the paper leaves open, made here:

* Layout: every shot and the text are encoded as SPEC §2 says (BOS when the store uses it, at most L-1
  tokens, EOS), so the context looks like the sequences the target was fine-tuned on:
  ``[shot_1 EOS] ... [shot_k EOS] [text EOS]``.
* Scored positions: exactly those of the plain pass (the text's tokens after its first, and EOS). Behind a
  prefix the first text token could be scored too; leaving it out keeps numerator and denominator over the
  same tokens.
* Context window: prefix + text must fit the model's declared limit (``max_position_embeddings``,
  ``n_positions`` or ``context_length``), capped at ``max_context`` where it declares none. When the whole
  prefix does not fit, its *last* tokens are kept, per text (ReCaLL drops whole shots from the front to fit
  the average text; per text and per token keeps as much context as each text allows, which matters on
  the zoo's 128-token models). A text with no room gets LL(x | P) = LL(x), i.e. a score of 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ltmia.attacks.costly.base import Cost, costly_attack
from ltmia.attacks.costly.passes import Models, Pass, plain_pass, token_logprobs
from ltmia.errors import InputError

MAX_CONTEXT = 2048
CONTEXT_LIMITS = ("max_position_embeddings", "n_positions", "context_length")


@dataclass(frozen=True)
class RecallSettings:
    """``non_member_prefix``: the shots P (texts known not to be members); ``max_context``: the cap on
    prefix + text tokens for a model that declares no limit."""

    non_member_prefix: tuple[str, ...] = ()
    max_context: int = MAX_CONTEXT

    def __post_init__(self) -> None:
        if self.max_context < 2:
            raise InputError(f"max_context must be at least 2 tokens, got {self.max_context}")


def context_window(model: nn.Module, cap: int) -> int:
    """Tokens a pass may hold: the smallest limit the model's config declares, and at most ``cap``."""
    config = getattr(model, "config", None)
    limits = [getattr(config, name, None) for name in CONTEXT_LIMITS]
    return min([cap, *(limit for limit in limits if isinstance(limit, int) and limit > 0)])


def prefix_ids(models: Models, shots: Sequence[str]) -> list[int]:
    """The shots as one token list, each encoded as SPEC §2 says (pads dropped), in the given order."""
    if not shots:
        return []
    ids, mask = models.encode(list(shots))
    return [int(token) for row, keep in zip(ids, mask, strict=True) for token in row[keep.bool()]]


def conditioned_pass(models: Models, texts: Sequence[str], shots: Sequence[str], max_context: int) -> Pass:
    """The target's log-probs of each text behind the prefix, at the plain pass's positions; cached per run.

    Rows are ``[last c_i prefix tokens][text i][pad]`` with c_i = min(prefix length, window - n_i), n_i the
    text's encoded length; the log-prob predicting text token t+1 sits at row position c_i + t.
    Returns a `Pass` whose ``logprob`` is (N, L-1) aligned with the plain pass.
    """
    key = ("conditioned", tuple(texts), tuple(shots), max_context)
    if key in models.cache:
        return models.cache[key]
    plain = plain_pass(models, texts)
    context = prefix_ids(models, shots)
    window = context_window(models.target, max_context)
    lengths = plain.mask.sum(-1)  # (N,) n_i
    kept = [min(len(context), max(0, window - int(n))) for n in lengths]
    width = max(c + int(n) for c, n in zip(kept, lengths, strict=True))
    tokenizer = models.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = torch.full((len(texts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    for i, (c, n) in enumerate(zip(kept, lengths, strict=True)):
        n = int(n)
        rows[i, :c] = torch.tensor(context[len(context) - c :], dtype=torch.long)
        rows[i, c : c + n] = plain.ids[i, :n]
        mask[i, : c + n] = 1
    logprob = token_logprobs(models.target, rows, mask, models)  # (N, width-1)
    positions = torch.tensor(kept)[:, None] + torch.arange(plain.valid.shape[1])[None, :]
    aligned = logprob.gather(1, positions.clamp_max(logprob.shape[1] - 1))
    result = Pass(torch.where(plain.valid, aligned, 0.0), plain.valid, rows, mask)
    models.cache[key] = result
    return result


def conditional_ll(models: Models, texts: Sequence[str], shots: Sequence[str], max_context: int) -> Tensor:
    """(N,) float64 mean log-likelihood LL(x | P) over the plain pass's positions."""
    return -conditioned_pass(models, texts, shots, max_context).mean_nll()


def recall_cost(settings: RecallSettings, seq_len: int) -> Cost:
    """One conditioned target pass; the plain pass is the shared one (cached once per run)."""
    prefix = min(len(settings.non_member_prefix) * seq_len, settings.max_context - 1)
    return Cost(forward_passes=1, context_tokens=prefix, plain_pass=True)


@costly_attack(
    "recall",
    RecallSettings,
    recall_cost,
    "Xie et al. 2024, ReCaLL: Membership Inference via Relative Conditional Log-Likelihoods (EMNLP)",
)
def recall_score(models: Models, texts: list[str], settings: RecallSettings) -> np.ndarray:
    """N texts -> (N,) LL(x | P) / LL(x) with P the non-member prefix; higher = more likely member."""
    if not settings.non_member_prefix:
        raise InputError("recall needs non_member_prefix: the shots P (texts known not to be members)")
    ll = -plain_pass(models, texts).mean_nll()
    return (conditional_ll(models, texts, settings.non_member_prefix, settings.max_context) / ll).numpy()
