"""Which tokens drive a text's LT-MIA score: occlusion of one position at a time.

``attribution[t] = logit(all positions) - logit(position t hidden)``, where hiding means masking the
position out exactly as padding is masked (the classifier's padding contract, ``ltmia.classifier.model``).
Positive: the token pushed the text towards "member"; negative: away from it.

Why occlusion rather than the alternatives:

- it is faithful by construction: it is the classifier's own change of output, not a proxy, and it works
  the same for every classifier variant;
- attention-pooling weights say where the pooling looks, not in which direction a token pushes, and the
  encoder below has already mixed the positions;
- gradient x input is a first-order guess that saturates where the logit is confident, which is exactly
  where an auditor looks.

The price is one classifier row per token (n + 1 rows for a text of n positions), so by default only the
top-scoring texts are explained. One caveat, stated in the report: the global block (SPEC §4) repeats
sequence statistics at every position, so hiding position t removes its own per-token features while its
share of those statistics stays visible through the other positions; likewise a classifier with score
inputs (``ltmia.classifier.score_inputs``) keeps reading the whole text's baseline scores. Beside the
attribution each token carries its raw signal, ``log p_T(y) - log p_R(y)``: how much more the fine-tuned
model expects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ltmia.classifier.score_inputs import text_scores
from ltmia.data import Bos, Kind, encode
from ltmia.store import Store


@dataclass
class Explanation:
    """Per token of one text as the models read it (after truncation, EOS last): its text, the occlusion
    attribution (logit units) and log p_T - log p_R; both None for the first token, which nothing
    predicts."""

    row: int
    tokens: list[str]
    attribution: list[float | None]
    logprob_gain: list[float | None]

    def to_json(self) -> dict:
        return {
            "row": self.row,
            "tokens": self.tokens,
            "attribution": self.attribution,
            "logprob_gain": self.logprob_gain,
        }


def occlusion(classifier, features: Tensor, mask: Tensor, text_scores: Tensor | None = None) -> np.ndarray:
    """(L, D) features and (L,) mask of one text -> (L,) attributions, 0 at masked positions.

    ``text_scores`` (S,): the text's squashed baseline scores, for a classifier with score inputs; they
    are those of the whole text in every occluded row.
    """
    valid = torch.nonzero(mask).flatten()
    masks = mask.bool().repeat(valid.numel() + 1, 1)
    masks[torch.arange(1, valid.numel() + 1), valid] = False
    rows = masks.shape[0]
    scores = None if text_scores is None else text_scores.expand(rows, *text_scores.shape)
    logits = classifier.decision_function(features.expand(rows, *features.shape), masks, scores)
    attribution = np.zeros(mask.shape[0], dtype=np.float32)
    attribution[valid.numpy()] = logits[0] - logits[1:]
    return attribution


def rows_arrays(store: Store, rows: Sequence[int]) -> dict[int, dict[str, Tensor]]:
    """Features, mask and token stats of the given store rows, read shard by shard."""
    wanted, found = set(rows), {}
    for shard in store.iter_shards():
        for position, row in enumerate(shard["row"].tolist()):
            if row in wanted:
                found[row] = {name: values[position] for name, values in shard.items()}
    return found


def explain(
    classifier, store: Store, rows: Sequence[int], tokenizer, kind: Kind = "text", bos: Bos = "never"
) -> list[Explanation]:
    """Occlusion explanations of the given store rows, in the order given."""
    arrays = rows_arrays(store, rows)
    texts = store.texts()
    seq_len = store.manifest["seq_len"]
    explanations = []
    for row in rows:
        values = arrays[row]
        ids, attention = encode(tokenizer, [texts[row]], kind, seq_len, bos)
        n_tokens = int(attention.sum())
        token_ids = ids[0, :n_tokens].tolist()
        tokens = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in token_ids]
        names = getattr(classifier, "score_inputs_", ())
        scores = text_scores({key: value[None] for key, value in values.items()}, names)[0] if names else None
        attribution = occlusion(classifier, values["features"].float(), values["mask"], scores)
        gain = (values["target_logprob"] - values["reference_logprob"]).numpy()
        explanations.append(
            Explanation(
                row=row,
                tokens=tokens,
                attribution=[None, *(float(a) for a in attribution[: n_tokens - 1])],
                logprob_gain=[None, *(float(g) for g in gain[: n_tokens - 1])],
            )
        )
    return explanations
