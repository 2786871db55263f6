"""The learning-rate schedule of fine-tuning (SPEC §3, ``schedule = "cosine"``) and of the classifier
(SPEC §6): linear warmup, then half a cosine from the peak down to a floor.

One function for both, used as the factor of ``torch.optim.lr_scheduler.LambdaLR``. The callers differ only in
their arguments: fine-tuning decays to 0 over the steps after warmup, the classifier to ``min_lr`` over one
step fewer (its last step sits exactly at ``min_lr``), as each was published and measured.
"""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, warmup_steps: int, decay_steps: int, peak: float = 1.0, floor: float = 0.0
) -> float:
    """The rate at optimiser step ``step`` (from 0): ``peak * (step + 1) / warmup_steps`` while warming up,
    then from ``peak`` to ``floor`` along half a cosine over ``decay_steps`` steps, and ``floor`` after."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
