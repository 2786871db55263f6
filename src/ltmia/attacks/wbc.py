"""WBC, window-based comparison (SPEC §5): the share of sliding windows where the reference's summed loss
exceeds the target's, averaged over a geometric set of window sizes.

Voting per window (rather than averaging the loss gap) keeps a few extreme tokens from deciding the score.
Two readings for texts shorter than a window, i.e. N valid positions < w:

* ``edge="authors"`` (default, the original code): the window is capped at N, so every size contributes
  (small texts count the whole-text comparison several times).
* ``edge="paper"``: sizes longer than N are skipped; if none fits (N < 2), one window of size N is used.

Two window grids (SPEC §8): ``windows="authors"`` (default) is the authors' example config, `WINDOWS`;
``windows="eq12"`` is the paper's eq. 12, a geometric grid round(w_min (w_max / w_min)^((k-1)/(|W|-1))) for
k = 1..|W| with w_min 2, w_max 40, |W| 10 (`eq12_windows`), which another public implementation uses.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ltmia.attacks.base import ATTACKS, packed
from ltmia.tokenstats import TokenStats

WINDOWS = (2, 3, 4, 6, 9, 13, 18, 25, 32, 40)


def eq12_windows(smallest: int = 2, largest: int = 40, count: int = 10) -> tuple[int, ...]:
    """The paper's eq. 12 grid: ``count`` sizes from ``smallest`` to ``largest``, geometrically spaced and
    rounded; the defaults give (2, 3, 4, 5, 8, 11, 15, 21, 29, 40)."""
    ratio = largest / smallest
    return tuple(round(smallest * ratio ** (k / (count - 1))) for k in range(count))


WINDOW_GRIDS = {"authors": WINDOWS, "eq12": eq12_windows()}


def window_sums(losses: Tensor, width: Tensor) -> Tensor:
    """(N, T) packed float64, (N,) widths -> (N, T) sums of losses[i : i + width] per start i (clipped)."""
    cumulative = torch.nn.functional.pad(losses.cumsum(-1), (1, 0))
    starts = torch.arange(losses.shape[-1])
    ends = (starts[None, :] + width[:, None]).clamp_max(losses.shape[-1])
    return cumulative.gather(-1, ends) - cumulative[:, :-1]


def window_votes(loss_t: Tensor, loss_r: Tensor, counts: Tensor, window: int) -> Tensor:
    """(N, T) x2 packed, (N,) counts -> (N,) share of windows of width min(window, N) with sum l_R > sum l_T.

    Window sums come from float64 cumulative sums; exact ties (sum l_R = sum l_T) do not count as wins.
    """
    width = counts.clamp_max(window)
    starts = torch.arange(loss_t.shape[-1])
    inside = starts[None, :] <= (counts - width)[:, None]
    wins = (window_sums(loss_r, width) > window_sums(loss_t, width)) & inside
    return wins.sum(-1) / inside.sum(-1)


@ATTACKS.register("wbc")
def wbc_score(
    stats: TokenStats,
    texts: list[str],
    edge: Literal["authors", "paper"] = "authors",
    windows: Literal["authors", "eq12"] = "authors",
) -> np.ndarray:
    """(N, L-1) stats -> (N,) mean over window sizes of the share of windows the target wins (lower loss)."""
    if edge not in ("authors", "paper"):
        raise ValueError(f"wbc edge must be 'authors' or 'paper', got {edge!r}")
    if windows not in WINDOW_GRIDS:
        raise ValueError(f"wbc windows must be one of {', '.join(WINDOW_GRIDS)}, got {windows!r}")
    sizes = WINDOW_GRIDS[windows]
    loss_t, counts = packed(-stats.target_logprob, stats.valid)
    loss_r, _ = packed(-stats.reference_logprob, stats.valid)
    votes = torch.stack([window_votes(loss_t, loss_r, counts, w) for w in sizes], dim=-1)
    if edge == "authors":
        return votes.mean(-1).numpy()
    fits = torch.tensor(sizes)[None, :] <= counts[:, None]
    fits[:, 0] |= ~fits.any(-1)  # nothing fits: the smallest size, already capped at N, is the fallback
    return ((votes * fits).sum(-1) / fits.sum(-1)).numpy()
