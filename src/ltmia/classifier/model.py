"""The LT-MIA classifier (SPEC §6) and its ablation variants: (B, L, D) features + (B, L) mask -> (B,) logits.

Every variant reads the same inputs and obeys the same padding contract, which training and scoring rely on:

- positions whose mask is False never influence the output: they are zeroed first (``torch.where``, so even
  NaN padding is harmless), then masked out of attention, pooling and means;
- a row with no valid position gives a finite logit (`visible` lets it attend to its zeroed first
  position), the same for every such row;
- inputs may be trimmed to L <= seq_len (callers drop trailing all-padding columns for speed): the
  sequence and pooling variants give the same output as untrimmed (up to float rounding), the flattened
  variants pad back to seq_len with zeros.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltmia.registry import Registry
from ltmia.settings import ClassifierConfig

VARIANTS: Registry[type[nn.Module]] = Registry("classifier variant")


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """A freshly initialised model of ``config.variant`` (seed the torch RNG first for reproducibility); an
    unknown variant is an ``UnknownNameError`` listing the valid ones."""
    return VARIANTS.get(config.variant)(config)


def visible(mask: Tensor) -> Tensor:
    """(B, L) bool -> (B, L) bool: the mask, except that a row with no valid position sees its first one.

    Softmax over no position is NaN; the first position of such a row is zeroed input like every other
    padding position, so the guard lets no feature in.
    """
    empty = ~mask.any(-1)
    return torch.cat([mask[:, :1] | empty[:, None], mask[:, 1:]], dim=-1)


def zero_padding(features: Tensor, mask: Tensor) -> Tensor:
    """(B, L, D), (B, L) -> (B, L, D) with every masked position exactly zero."""
    return torch.where(mask[..., None], features, 0.0)


def sinusoidal_positions(length: int, width: int) -> Tensor:
    """(length, width) fixed positional encoding: sin on even dims, cos on odd, wavelengths up to 10^4."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10_000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def mlp(inputs: int, hidden: int, dropout: float) -> nn.Sequential:
    """inputs -> hidden -> hidden -> 1, ReLU and dropout between: the head of the MLP variants."""
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 1),
    )


@VARIANTS.register("transformer")
class SequenceClassifier(nn.Module):
    positions: Tensor  # (seq_len, d) sinusoidal, a non-persistent buffer
    """SPEC §6: project, add positions, a post-LN transformer encoder, attention pooling, an MLP head.

    Reading the per-token features as a sequence (rather than pooling them first) is what the paper
    credits with about 5 AUC points over the pooled variants.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        d = config.d_model
        self.embed = nn.Linear(config.feature_dim, d)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.register_buffer("positions", sinusoidal_positions(config.seq_len, d), persistent=False)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, config.ff, config.dropout, activation="relu", batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.pool_score = nn.Sequential(nn.Linear(d, d // 2), nn.Tanh(), nn.Linear(d // 2, 1))
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, 1))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D) float32, (B, L) bool with L <= seq_len -> (B,) membership logits."""
        attend = visible(mask)
        x = self.dropout(self.norm(self.embed(zero_padding(features, mask))))
        x = x + self.positions[: x.shape[1]]
        x = self.encoder(x, src_key_padding_mask=~attend)  # (B, L, d)
        scores = self.pool_score(x).squeeze(-1).masked_fill(~attend, -math.inf)  # (B, L)
        pooled = torch.einsum("bl,bld->bd", scores.softmax(-1), x)
        return self.head(pooled).squeeze(-1)


@VARIANTS.register("masked_mean_mlp")
class MaskedMeanMLP(nn.Module):
    """Ablation: the same per-position MLP stack on every token, then the mean over valid positions.

    Pooling after a per-token encoder keeps token-level nonlinearity but loses order and interactions.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        h = config.mlp_hidden
        self.tokens = nn.Sequential(
            nn.Linear(config.feature_dim, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, h),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, 1))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D), (B, L) -> (B,)."""
        weight = mask.to(features.dtype)[..., None]
        tokens = self.tokens(zero_padding(features, mask)) * weight  # (B, L, h)
        pooled = tokens.sum(1) / weight.sum(1).clamp_min(1.0)
        return self.head(pooled).squeeze(-1)


@VARIANTS.register("flat_mlp")
class FlatMLP(nn.Module):
    """Ablation: an MLP on the flattened (seq_len * D) input; position-specific weights, no sharing."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.seq_len = config.seq_len
        self.net = mlp(config.seq_len * config.feature_dim, config.mlp_hidden, config.dropout)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D), (B, L) -> (B,)."""
        return self.net(flatten(features, mask, self.seq_len)).squeeze(-1)


@VARIANTS.register("mean_mlp")
class MeanMLP(nn.Module):
    """Ablation: the mean of the raw features over all seq_len positions (padding counts as zeros, so the
    text's length stays visible), then an MLP. Dividing by seq_len, not L, keeps it trim-invariant."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.seq_len = config.seq_len
        self.net = mlp(config.feature_dim, config.mlp_hidden, config.dropout)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D), (B, L) -> (B,)."""
        return self.net(zero_padding(features, mask).sum(1) / self.seq_len).squeeze(-1)


@VARIANTS.register("logistic")
class Logistic(nn.Module):
    """Ablation: logistic regression on the flattened (seq_len * D) input, the simplest learned attack."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.seq_len = config.seq_len
        self.linear = nn.Linear(config.seq_len * config.feature_dim, 1)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D), (B, L) -> (B,)."""
        return self.linear(flatten(features, mask, self.seq_len)).squeeze(-1)


def flatten(features: Tensor, mask: Tensor, seq_len: int) -> Tensor:
    """(B, L, D), (B, L) with L <= seq_len -> (B, seq_len * D): padding zeroed, trimmed columns restored."""
    x = zero_padding(features, mask)
    return F.pad(x, (0, 0, 0, seq_len - x.shape[1])).flatten(1)
