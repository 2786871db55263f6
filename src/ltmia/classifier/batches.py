"""How feature rows reach the classifier (SPEC §6): sources, combo weights, a bounded shuffle, micro-batches.

A *source* is one model-dataset combo's rows: a feature store (``ltmia.store.Store``) or an in-memory
`ArraySource`. Both offer the `Source` protocol, so training and scoring never load a whole source: rows
arrive shard by shard (a store's shards are read memory-mapped) and at most ``capacity`` rows are held in
the shuffle buffer, whatever the sources' total size.

Shuffling (`shuffled_windows`): each step, the next shard comes from a source drawn at random with
probability proportional to its rows not yet read, so every window mixes the combos; shard rows are copied
into a preallocated float32 buffer of ``capacity`` rows, and a full buffer is emitted in a random order.
Everything is drawn from one seeded generator, so the order depends on the seed, the capacity and the
sources' shard sizes only; store rows are already in a seeded random order (SPEC §2), which a window-local
shuffle preserves.

Micro-batches are cut from length-sorted rows and trimmed to their longest valid length (`gather`): the
model ignores padding exactly (``ltmia.classifier.model``), so trimming changes nothing but the time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ltmia.errors import InputError
from ltmia.features import FEATURE_LAYOUT_VERSION, feature_groups

LAYOUT_KEYS = ("feature_layout_version", "k", "feature_dim", "seq_len")
"""What a classifier and its input must agree on (SPEC §4): layout version, k, feature dim, length L."""


class Source(Protocol):
    """What training and scoring read: ``ltmia.store.Store`` and `ArraySource` both provide it."""

    labels: np.ndarray  # (N,) 1 member, 0 non-member
    manifest: dict  # holds at least LAYOUT_KEYS

    def rows(self, split: str | None = None) -> np.ndarray: ...

    def iter_shards(self, split: str | None = None) -> Iterator[dict[str, Tensor]]: ...


class ArraySource:
    """In-memory features as a `Source`: ``features`` (N, L, 7k+14), ``mask`` (N, L), ``labels`` (N,), and
    ``split`` (N,) names (default "all"). Numpy arrays or tensors; shards of ``shard_size`` consecutive
    rows, as a store's."""

    def __init__(
        self,
        features: Tensor | np.ndarray,
        mask: Tensor | np.ndarray,
        labels: Sequence[int] | np.ndarray | Tensor,
        split: Sequence[str] | np.ndarray | None = None,
        *,
        shard_size: int = 1024,
        name: str = "in-memory features",
    ) -> None:
        self.features = torch.as_tensor(features)
        self.mask = torch.as_tensor(mask).bool()
        self.labels = np.asarray(labels, dtype=np.int64)
        n = len(self.labels)
        self.split = np.asarray(["all"] * n if split is None else list(split))
        self.shard_size, self.name = shard_size, name
        if (
            self.features.ndim != 3
            or self.mask.shape != self.features.shape[:2]
            or self.features.shape[0] != n
        ):
            raise InputError(
                f"features {tuple(self.features.shape)}, mask {tuple(self.mask.shape)} and {n} labels "
                "must be (N, L, D), (N, L) and (N,)"
            )
        if not self.features.is_floating_point() or set(np.unique(self.labels).tolist()) - {0, 1}:
            raise InputError("features must be floating point and labels 1 (member) or 0 (non-member)")
        if len(self.split) != n or shard_size < 1:
            raise InputError(f"{n} rows need {n} split names, and shard_size must be at least 1")
        k, remainder = divmod(self.features.shape[2] - 14, 7)
        if remainder or k < 1:
            raise InputError(f"feature dim {self.features.shape[2]} is not 7k+14 (SPEC §4)")
        self.manifest = {
            "feature_layout_version": FEATURE_LAYOUT_VERSION,
            "k": k,
            "feature_dim": self.features.shape[2],
            "seq_len": self.features.shape[1],
        }

    def rows(self, split: str | None = None) -> np.ndarray:
        """Ascending row indices of ``split`` (all rows for None); a split it lacks is an InputError."""
        if split is None:
            return np.arange(len(self.labels))
        rows = np.flatnonzero(self.split == split)
        if rows.size == 0:
            present = ", ".join(dict.fromkeys(self.split.tolist()))
            raise InputError(f"{self.name} has no {split!r} rows; its splits are: {present}")
        return rows

    def iter_shards(self, split: str | None = None) -> Iterator[dict[str, Tensor]]:
        """Per shard holding rows of ``split``: their ``features``, ``mask``, ``label`` and ``row`` ids."""
        wanted = self.rows(split)
        for start in range(0, len(self.labels), self.shard_size):
            rows = wanted[(wanted >= start) & (wanted < start + self.shard_size)]
            if rows.size:
                index = torch.from_numpy(rows)
                yield {
                    "features": self.features[index],
                    "mask": self.mask[index],
                    "label": torch.from_numpy(self.labels[rows]),
                    "row": index,
                }


def source_name(source: Source) -> str:
    """A store's path or an `ArraySource`'s name, for messages."""
    return str(getattr(source, "path", None) or getattr(source, "name", "a feature source"))


def layout(source: Source) -> dict[str, int]:
    """The LAYOUT_KEYS of a source's manifest."""
    return {key: source.manifest[key] for key in LAYOUT_KEYS}


def common_layout(sources: Sequence[Source]) -> dict[str, int]:
    """The layout all ``sources`` share; sources of different layouts cannot train one classifier."""
    first = layout(sources[0])
    for source in sources[1:]:
        if layout(source) != first:
            raise InputError(
                f"{source_name(source)} has feature layout {layout(source)} but {source_name(sources[0])} "
                f"has {first}; train on stores extracted alike"
            )
    return first


def combo_weights(counts: Sequence[int]) -> Tensor:
    """(S,) row counts of S combos -> (S,) float64 per-row loss weight: every combo's rows sum to N / S.

    SPEC §6 gives each combo equal total weight. Weighting the loss (instead of over- or under-sampling)
    uses every row exactly once per epoch, with no duplicates and nothing dropped, gives the same epoch
    length whatever the sizes, and is exact rather than equal in expectation. The mean weight over all
    rows is 1, so the weighted loss is on the scale of the unweighted one.
    """
    counts_tensor = torch.as_tensor(counts, dtype=torch.float64)
    return counts_tensor.sum() / (len(counts) * counts_tensor)


def dropped_indices(groups: Sequence[str], k: int) -> Tensor:
    """Feature indices (int64) outside the kept ``groups`` of SPEC §4; they are zeroed in every input."""
    all_groups = feature_groups(k)
    unknown = sorted(set(groups) - set(all_groups))
    if unknown or not groups:
        raise InputError(
            f"feature groups must be a non-empty subset of {', '.join(all_groups)}; got {', '.join(groups)}"
        )
    return torch.tensor(sorted(i for name in all_groups if name not in groups for i in all_groups[name]))


def valid_lengths(mask: Tensor) -> Tensor:
    """(n, L) bool -> (n,) int64: 1 + the last valid position of each row (0 when none)."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask * positions).amax(-1) if mask.shape[1] else mask.new_zeros(mask.shape[0], dtype=torch.long)


def gather(features: Tensor, mask: Tensor, rows: Tensor, dropped: Tensor) -> tuple[Tensor, Tensor]:
    """(n, L, D), (n, L), (m,) row ids, dropped feature ids -> (m, L', D) float32 and (m, L') bool.

    L' = the longest valid length among the chosen rows (at least 1): trailing all-padding columns are
    trimmed. Any stored dtype (float16 stores) is cast to float32; dropped feature groups are zeroed.
    """
    chosen_mask = mask.index_select(0, rows)
    length = max(1, int(valid_lengths(chosen_mask).max()))
    chosen = features[:, :length].index_select(0, rows).float()
    if dropped.numel():
        chosen.index_fill_(2, dropped, 0.0)
    return chosen, chosen_mask[:, :length]


def by_length(mask: Tensor, size: int) -> list[Tensor]:
    """(n, L) -> groups of at most ``size`` row ids, rows sorted by valid length, so that each group's
    trimmed length is as short as possible."""
    order = torch.sort(valid_lengths(mask), stable=True).indices
    return list(order.split(size))


@dataclass
class Window:
    """A full shuffle buffer: the first n rows of preallocated (capacity, ...) arrays, and the order in
    which to emit them. Valid until the generator that yielded it is resumed (the buffer is reused)."""

    features: Tensor  # (capacity, L, D) float32
    mask: Tensor  # (capacity, L) bool
    labels: Tensor  # (capacity,) float32
    weights: Tensor  # (capacity,) float32 loss weight (`combo_weights`)
    order: Tensor  # (n,) int64, a permutation of 0..n-1


def shuffled_windows(
    sources: Sequence[Source], split: str, weights: Tensor, capacity: int, generator: torch.Generator
) -> Iterator[Window]:
    """Every ``split`` row of ``sources`` once, in windows of at most ``capacity`` rows (the last may be
    shorter), each in a random order; ``weights`` (S,) gives each source's rows their loss weight.

    Memory: the (capacity, L, D) float32 buffer plus the one shard being copied in.
    """
    remaining = torch.tensor([len(source.rows(split)) for source in sources], dtype=torch.float64)
    streams = [source.iter_shards(split) for source in sources]
    capacity = min(capacity, int(remaining.sum()))
    buffer: Window | None = None
    filled = 0
    while remaining.sum() > 0:
        index = int(torch.multinomial(remaining, 1, generator=generator))
        shard = next(streams[index])
        n = len(shard["label"])
        remaining[index] -= n
        if buffer is None:
            buffer = empty_window(capacity, shard["features"].shape[1:])
        start = 0
        while start < n:
            take = min(n - start, capacity - filled)
            piece = slice(filled, filled + take)
            buffer.features[piece] = shard["features"][start : start + take]
            buffer.mask[piece] = shard["mask"][start : start + take]
            buffer.labels[piece] = shard["label"][start : start + take].float()
            buffer.weights[piece] = float(weights[index])
            filled, start = filled + take, start + take
            if filled == capacity:
                buffer.order = torch.randperm(filled, generator=generator)
                yield buffer
                filled = 0
    if filled and buffer is not None:
        buffer.order = torch.randperm(filled, generator=generator)
        yield buffer


def empty_window(capacity: int, row_shape: torch.Size) -> Window:
    """Uninitialised buffers for ``capacity`` rows of (L, D) features."""
    length = row_shape[0]
    return Window(
        features=torch.empty(capacity, *row_shape),
        mask=torch.empty(capacity, length, dtype=torch.bool),
        labels=torch.empty(capacity),
        weights=torch.empty(capacity),
        order=torch.empty(0, dtype=torch.long),
    )


def capacity_rows(memory_budget_bytes: int, seq_len: int, feature_dim: int) -> int:
    """Rows of float32 features and mask that fit ``memory_budget_bytes`` (at least one)."""
    return max(1, memory_budget_bytes // (seq_len * (4 * feature_dim + 1)))


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module, features: Tensor, mask: Tensor, dropped: Tensor, micro_batch_size: int
) -> Tensor:
    """(n, L, D) any float dtype, (n, L) -> (n,) float32 logits on CPU, in row order.

    Rows go through ``model`` (which must be in eval mode; on its device) in length-sorted, trimmed
    micro-batches.
    """
    device = next(model.parameters()).device
    logits = torch.empty(features.shape[0])
    for rows in by_length(mask, micro_batch_size):
        x, m = gather(features, mask, rows, dropped)
        logits[rows] = model(x.to(device), m.to(device)).float().cpu()
    return logits


def score_source(
    model: torch.nn.Module, source: Source, split: str | None, dropped: Tensor, micro_batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) float32 logits and (n,) labels of the rows of ``split`` (None: all), in row order, shard by
    shard; ``model`` must be in eval mode."""
    scores, labels = [], []
    for shard in source.iter_shards(split):
        scores.append(predict_logits(model, shard["features"], shard["mask"], dropped, micro_batch_size))
        labels.append(shard["label"])
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()
