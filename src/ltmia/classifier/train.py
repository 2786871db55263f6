"""Training the LT-MIA classifier (SPEC §6) on the train rows of one or more combos, streamed.

The paper's recipe: AdamW (lr 9.88e-4, weight decay 0.028), BCE-with-logits on smoothed targets
y * 0.98 + 0.01, batches of 16,384, 80 epochs, linear warmup over 10 epochs then cosine to 1e-6, grad-norm
clip 1.0, every combo with equal total weight, the epoch with the best validation AUC kept, seed 42.

How it stays within memory and exact:

- rows stream through a bounded shuffle buffer (``batches.shuffled_windows``); a batch is the next
  ``batch_size`` rows of that order, so it never has to be in memory at once;
- a batch's gradient is accumulated over micro-batches: each adds the backward of
  sum_i w_i * bce_i / (rows in the batch), so the sum is the big batch's weighted mean loss up to float
  rounding. Rows are grouped into micro-batches by length (within each window's part of the batch) and
  trimmed; neither changes the sum;
- the combo weights w (``batches.combo_weights``) give every combo the same total weight;
- one seeded generator orders the rows and the torch RNG (model init, dropout) is seeded in a forked
  state, so the same seed, sources and memory budget give bit-identical weights on CPU, and the caller's
  RNG is untouched.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltmia.classifier.batches import (
    Source,
    Window,
    by_length,
    capacity_rows,
    combo_weights,
    common_layout,
    dropped_indices,
    gather,
    score_source,
    shuffled_windows,
    source_name,
)
from ltmia.classifier.model import ClassifierConfig, build_classifier
from ltmia.device import resolve_device
from ltmia.errors import DivergedError, InputError
from ltmia.features import feature_groups
from ltmia.metrics import auc
from ltmia.schedules import warmup_cosine
from ltmia.settings import TrainSettings
from ltmia.train_state import EpochState, load_state, save_state

log = logging.getLogger(__name__)

OnEpoch = Callable[[dict], None]
"""Called after every epoch with its history entry: epoch, train_loss, val_auc, lr, seconds."""


@dataclass
class TrainResult:
    """A trained classifier (on CPU, eval mode, best epoch's weights) and how it was trained.

    ``record`` is JSON-able (settings, groups, sources, history), for ``checkpoint.save_classifier``.
    """

    model: nn.Module
    history: list[dict]
    best_epoch: int
    best_val_auc: float
    groups: list[str]
    record: dict


def learning_rate(step: int, total_steps: int, warmup_steps: int, settings: TrainSettings) -> float:
    """Linear warmup to lr over ``warmup_steps``, then cosine down to min_lr at the last step
    (``ltmia.schedules.warmup_cosine``)."""
    decay_steps = total_steps - warmup_steps - 1
    return warmup_cosine(step, warmup_steps, decay_steps, peak=settings.lr, floor=settings.min_lr)


def accumulate(
    model: nn.Module, window: Window, rows: Tensor, batch_rows: int, dropped: Tensor, settings: TrainSettings
) -> float:
    """Backward of sum_i w_i * bce_i / ``batch_rows`` over window ``rows``, in length-sorted micro-batches.

    Returns the summed weighted loss sum_i w_i * bce_i of these rows (for the epoch's mean).
    """
    device = next(model.parameters()).device
    smoothing = settings.label_smoothing
    total = 0.0
    for group in by_length(window.mask[rows], settings.micro_batch_size):
        ids = rows[group]
        features, mask = gather(window.features, window.mask, ids, dropped)
        targets = (window.labels[ids] * (1 - smoothing) + smoothing / 2).to(device)
        logits = model(features.to(device), mask.to(device))
        losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        loss = (losses * window.weights[ids].to(device)).sum()
        (loss / batch_rows).backward()
        total += float(loss.detach())
    return total


def tensors_of(model: nn.Module) -> list[Tensor]:
    """Every tensor of the model's state (parameters and buffers), sharing their storage: what a saved
    epoch holds and is copied back into."""
    return list(model.state_dict().values())


def validation_auc(
    model: nn.Module, sources: Sequence[Source], dropped: Tensor, settings: TrainSettings
) -> float:
    """AUC of ``model`` on the pooled "val" rows of ``sources``."""
    model.eval()
    scored = [score_source(model, source, "val", dropped, settings.micro_batch_size) for source in sources]
    scores = np.concatenate([s for s, _ in scored])
    if not np.isfinite(scores).all():
        raise diverged(f"{np.count_nonzero(~np.isfinite(scores))} non-finite validation scores", settings)
    return auc(np.concatenate([labels for _, labels in scored]), scores)


def diverged(where: str, settings: TrainSettings) -> DivergedError:
    """The one-line error for a classifier whose loss or scores are not finite (a weight went NaN): nothing
    trained past that point is usable, so nothing is written."""
    return DivergedError(
        f"classifier training diverged ({where}); lower the learning rate (now {settings.lr:g}), or check "
        "the features for non-finite values at valid positions"
    )


def split_rows(sources: Sequence[Source], split: str) -> list[int]:
    """Row count of ``split`` per source; a source without it is an InputError (from ``rows``)."""
    return [len(source.rows(split)) for source in sources]


def check_inputs(
    config: ClassifierConfig, train_sources: Sequence[Source], val_sources: Sequence[Source]
) -> dict[str, int]:
    """The shared feature layout of all sources, checked against ``config`` and for two-class val rows."""
    if not train_sources:
        raise InputError("training needs at least one feature source")
    found = common_layout([*train_sources, *val_sources])
    if (found["feature_dim"], found["seq_len"]) != (config.feature_dim, config.seq_len):
        raise InputError(
            f"the sources hold (L={found['seq_len']}, D={found['feature_dim']}) features but the classifier "
            f"is configured for (L={config.seq_len}, D={config.feature_dim})"
        )
    split_rows(train_sources, "train")
    labels = np.concatenate([source.labels[source.rows("val")] for source in val_sources])
    if labels.min() == labels.max():
        raise InputError("the validation rows hold only one class; the validation AUC needs both")
    return found


def train_classifier(
    train_sources: Sequence[Source],
    config: ClassifierConfig,
    settings: TrainSettings,
    groups: Sequence[str] | None = None,
    val_sources: Sequence[Source] | None = None,
    on_epoch: OnEpoch | None = None,
    checkpoints: Path | None = None,
) -> TrainResult:
    """Train a classifier on the "train" rows of ``train_sources``; choose the epoch by the validation AUC
    on the "val" rows of ``val_sources`` (default: the training sources).

    ``groups``: the SPEC §4 feature groups to keep (default all); the others are zeroed in every input.
    ``checkpoints``: a directory where the state after each epoch is saved, and from whose latest epoch a
    killed run continues (``ltmia.train_state``; the caller makes sure it is this training's).
    """
    train_sources, val_sources = list(train_sources), list(val_sources or train_sources)
    k = check_inputs(config, train_sources, val_sources)["k"]
    dropped = dropped_indices(list(feature_groups(k) if groups is None else groups), k)
    groups = [name for name in feature_groups(k) if groups is None or name in groups]
    counts = split_rows(train_sources, "train")
    n_rows, weights = sum(counts), combo_weights(counts)
    steps_per_epoch = math.ceil(n_rows / settings.batch_size)
    total_steps, warmup_steps = settings.epochs * steps_per_epoch, settings.warmup_epochs * steps_per_epoch
    device = resolve_device(settings.device)
    capacity = capacity_rows(settings.memory_budget_bytes, config.seq_len, config.feature_dim)
    order = torch.Generator().manual_seed(settings.seed)
    history: list[dict] = []
    best_auc, best_epoch, best_state = -math.inf, 0, None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        model = build_classifier(config).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: learning_rate(step, total_steps, warmup_steps, settings) / settings.lr
        )
        first, resumed = 1, None
        if checkpoints is not None:
            resumed = load_state(checkpoints, tensors_of(model), optimizer, schedule, order)
        if resumed is not None:
            history, best_epoch, best_auc = resumed.log["history"], resumed.log["best_epoch"], resumed.best
            best_state = dict(zip(model.state_dict(), cast(list, resumed.best_state), strict=True))
            first = resumed.epoch + 1
        for epoch in range(first, settings.epochs + 1):
            started = time.perf_counter()
            model.train()
            windows = shuffled_windows(train_sources, "train", weights, capacity, order)
            loss = train_epoch(model, optimizer, schedule, windows, n_rows, dropped, settings)
            if not math.isfinite(loss):
                raise diverged(f"train loss {loss} in epoch {epoch}", settings)
            entry = {
                "epoch": epoch,
                "train_loss": loss,
                "val_auc": validation_auc(model, val_sources, dropped, settings),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            history.append(entry)
            if entry["val_auc"] > best_auc:
                best_auc, best_epoch = entry["val_auc"], epoch
                best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
            log.info(
                "epoch %d/%d: train loss %.4f, val AUC %.4f (%.1f s)",
                epoch,
                settings.epochs,
                loss,
                entry["val_auc"],
                entry["seconds"],
            )
            if on_epoch is not None:
                on_epoch(entry)
            if settings.patience is not None and epoch - best_epoch >= settings.patience:
                log.info(
                    "no better validation AUC for %d epochs; stopping at epoch %d", settings.patience, epoch
                )
                break
            if checkpoints is not None and epoch < settings.epochs:
                kept = list(cast(dict, best_state).values())  # set in epoch 1
                saved = EpochState(epoch, {"history": history, "best_epoch": best_epoch}, best_auc, kept)
                save_state(checkpoints, saved, tensors_of(model), optimizer, schedule, order)
    model.load_state_dict(cast(dict, best_state))  # set in epoch 1: its validation AUC is finite
    model.cpu().eval()
    record = {
        "settings": settings.record(),
        "groups": groups,
        "train_sources": [
            {"source": source_name(s), "rows": n, "row_weight": float(w)}
            for s, n, w in zip(train_sources, counts, weights, strict=True)
        ],
        "val_sources": [
            {"source": source_name(s), "rows": n}
            for s, n in zip(val_sources, split_rows(val_sources, "val"), strict=True)
        ],
        "shuffle_buffer_rows": min(capacity, n_rows),
        "steps": total_steps,
        "epochs_run": len(history),
        "history": history,
        "best_epoch": best_epoch,
    }
    return TrainResult(model, history, best_epoch, best_auc, groups, record)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    windows: Iterator[Window],
    n_rows: int,
    dropped: Tensor,
    settings: TrainSettings,
) -> float:
    """One pass over the ``n_rows`` rows that ``windows`` yield; an optimizer step every ``batch_size``
    rows (and after the last). Returns the mean weighted loss."""
    position, total = 0, 0.0
    for window in windows:
        start = 0
        while start < len(window.order):
            batch_start = position - position % settings.batch_size
            batch_end = min(n_rows, batch_start + settings.batch_size)
            take = min(len(window.order) - start, batch_end - position)
            rows = window.order[start : start + take]
            total += accumulate(model, window, rows, batch_end - batch_start, dropped, settings)
            position, start = position + take, start + take
            if position == batch_end:
                if settings.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
    return total / n_rows
