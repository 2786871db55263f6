"""Text-level baseline scores as extra classifier inputs: the LT-MIA variant that sees what the baselines see.

SPEC §6's classifier reads only the per-token features. On real pretrained LMs single statistics such as
WBC or EZ-MIA can beat a classifier trained on toy models, although every one of them is a function of the
same pass (SPEC §5: they read the `TokenStats` stored beside the features). A learned attack should never
be worse than the statistics it can see, so this variant hands it those statistics directly: for each text
the one-pass scores named in ``score_inputs`` are computed from the store's token stats, squashed with
``sign(x) log(1 + |x|)`` (EZ-MIA's ratio spans many orders of magnitude; the squash keeps order and sign)
and appended to every position's feature vector as S extra channels, so the model sees (N, L, D + S).

Broadcasting to positions (rather than a second input beside the sequence) keeps every variant, the shuffle
buffers and the padding contract unchanged: the extra channels are zeroed at padding like any feature.
Scores are per text and never normalised over a set, so a text's logit does not depend on which other texts
are scored with it (an audit of members only must rank the same as one mixed with non-members).

zlib is not offered: it needs the raw texts, which the shard stream does not carry, and it was the weakest
baseline on every group measured (results/offline-full).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ltmia.errors import InputError
from ltmia.tokenstats import TokenStats

SCORE_INPUTS = ("ez_mia", "wbc", "ref_loss", "min_k_pp", "min_k", "loss")
"""One-pass attacks (SPEC §5) a classifier may read as inputs, each with its default parameters."""


def check_score_inputs(names: Sequence[str]) -> tuple[str, ...]:
    """Validated, de-duplicated names in the given order; unknown or text-reading names are InputErrors."""
    names = tuple(dict.fromkeys(names))
    unknown = [name for name in names if name not in SCORE_INPUTS]
    if unknown:
        raise InputError(
            f"score inputs {', '.join(unknown)} are not available; choose from: {', '.join(SCORE_INPUTS)}"
        )
    return names


def squash(values: Tensor) -> Tensor:
    """sign(x) * log(1 + |x|), elementwise: monotone, odd, and ~x near 0."""
    return torch.sign(values) * torch.log1p(values.abs())


def text_scores(shard: dict[str, Tensor], names: Sequence[str]) -> Tensor:
    """(n, S) float32 squashed scores of the shard's n texts from its `TokenStats` arrays (n, L-1).

    A text with no valid position (nothing to score) gets zeros, as its features are all padding.
    """
    from ltmia.attacks import ATTACKS

    has_tokens = shard["valid"].any(-1)
    columns = torch.zeros(len(has_tokens), len(names), dtype=torch.float64)
    if bool(has_tokens.any()):
        kept = TokenStats(**{name: shard[name][has_tokens] for name in TokenStats.__dataclass_fields__})
        texts = [""] * int(has_tokens.sum())  # none of SCORE_INPUTS reads the text
        for column, name in enumerate(names):
            values = np.asarray(ATTACKS.get(name)(kept, texts), dtype=np.float64)
            columns[has_tokens, column] = torch.from_numpy(values)
    return squash(columns).float()


def widen(features: Tensor, scores: Tensor) -> Tensor:
    """(n, L, D) features, (n, S) text scores -> (n, L, D + S): the scores broadcast to every position."""
    extra = scores.to(features.dtype)[:, None, :].expand(-1, features.shape[1], -1)
    return torch.cat([features, extra], dim=-1)


def with_scores(shard: dict[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
    """The shard with ``features`` (n, L, D) widened to (n, L, D + S) by the broadcast text scores."""
    if not names:
        return shard
    return {**shard, "features": widen(shard["features"], text_scores(shard, names))}


class ScoredSource:
    """A feature store seen with its text scores appended to every position (the `Source` protocol).

    ``manifest["feature_dim"]`` grows by S; rows, labels and splits are the store's. Only sources that
    carry token stats (``ltmia.store.Store``) can be wrapped: in-memory features have no stats.
    """

    def __init__(self, source, names: Sequence[str]) -> None:
        from ltmia.classifier.batches import source_name

        self.source, self.names = source, check_score_inputs(names)
        if not hasattr(source, "stats"):
            raise InputError(
                f"{source_name(source)} has no token stats; a classifier with score inputs reads feature "
                "stores (ltmia extract), not in-memory features"
            )
        self.path = getattr(source, "path", None)
        self.labels = source.labels
        self.manifest = {**source.manifest, "feature_dim": source.manifest["feature_dim"] + len(self.names)}

    def rows(self, split: str | None = None) -> np.ndarray:
        return self.source.rows(split)

    def iter_shards(self, split: str | None = None) -> Iterator[dict[str, Tensor]]:
        for shard in self.source.iter_shards(split):
            yield with_scores(shard, self.names)
