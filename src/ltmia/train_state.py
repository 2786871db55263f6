"""A training loop's state at an epoch boundary, so that a killed run resumes at its last whole epoch.

Why: fine-tuning a real LM on a CPU takes an hour or more, and so does training a classifier to
convergence on a study's stores; a run killed late (a session that ends, the OOM killer) would otherwise
start over. After each epoch a loop (``ltmia.finetune``, ``ltmia.classifier.train``) saves everything the
next epoch reads: the trained tensors, the best epoch's copy of them, the optimiser's and the schedule's
state, the shuffling generator, torch's CPU generator (dropout) and the log so far. Tensors go to
safetensors, the rest to JSON (never pickle). An epoch's JSON is written after its tensors and names them,
so a run killed while writing leaves the previous epoch's pair, which is what a resumed run loads. On a CPU,
resuming gives the weights of an uninterrupted run bit for bit (same thread count); on a GPU, whose
generators are not saved, dropout masks after the resume differ.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ltmia.artefacts import atomic_path, write_json

log = logging.getLogger(__name__)

TENSORS, META = "epoch-{:04d}.safetensors", "epoch-{:04d}.json"


@dataclass
class EpochState:
    """What the loop itself keeps across epochs (the optimiser, schedule and generators are restored in
    place): the last whole epoch, the log so far, the loop's best validation figure and the best epoch's
    tensors."""

    epoch: int
    log: dict
    best: float
    best_state: list[torch.Tensor] | None


def save_state(
    directory: Path,
    state: EpochState,
    params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> None:
    """Save the state after epoch ``state.epoch`` into ``directory``; then drop the earlier epochs'."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"param.{i}": p.detach() for i, p in enumerate(params)}
    tensors |= {f"best.{i}": t for i, t in enumerate(state.best_state or [])}
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in optimizer_state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["rng.generator"], tensors["rng.torch"] = generator.get_state(), torch.get_rng_state()
    tensors = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    meta = {
        "epoch": state.epoch,
        "log": state.log,
        "best": state.best,  # ±inf before any finite figure: JSON's Infinity, read back by json.loads
        "best_state": None if state.best_state is None else len(state.best_state),
        "params": len(params),
        "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
        "schedule": schedule.state_dict(),
        "tensors": sorted(tensors),
    }
    with atomic_path(directory / TENSORS.format(state.epoch)) as path:
        save_file(tensors, str(path))
    write_json(directory / META.format(state.epoch), meta)
    for earlier in range(1, state.epoch):
        for name in (META, TENSORS):  # the JSON first: an epoch without it is never loaded
            (directory / name.format(earlier)).unlink(missing_ok=True)


def load_state(
    directory: Path,
    params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> EpochState | None:
    """Restore the latest whole epoch saved in ``directory`` into ``params`` (the tensors the loop trains,
    copied into in place), the optimiser, schedule and generators; None (nothing restored) when there is
    none or it is not this loop's."""
    epochs = sorted(int(p.stem.removeprefix("epoch-")) for p in directory.glob("epoch-*.json"))
    if not epochs:
        return None
    epoch = epochs[-1]
    meta = json.loads((directory / META.format(epoch)).read_text())
    tensors = load_file(str(directory / TENSORS.format(epoch)))
    shapes = [tuple(tensors.get(f"param.{i}", torch.empty(0)).shape) for i in range(len(params))]
    if meta["params"] != len(params) or shapes != [tuple(p.shape) for p in params]:
        log.warning("%s holds the state of another training loop; starting from epoch 1", directory)
        return None
    with torch.no_grad():
        for i, param in enumerate(params):
            param.copy_(tensors[f"param.{i}"])
    groups = [
        {key: tuple(value) if key == "betas" else value for key, value in group.items()}
        for group in meta["optimizer"]["param_groups"]
    ]
    entries: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            entries.setdefault(int(index), {})[name] = value
    for index, scalars in meta["optimizer"]["scalars"].items():
        entries.setdefault(int(index), {}).update(scalars)
    optimizer.load_state_dict({"state": entries, "param_groups": groups})
    schedule.load_state_dict(meta["schedule"])
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    kept = meta["best_state"]
    best = None if kept is None else [tensors[f"best.{i}"] for i in range(kept)]
    log.info("continuing after epoch %d (saved in %s)", epoch, directory)
    return EpochState(epoch, meta["log"], float(meta["best"]), best)


def clear_state(directory: Path, remove_directory: bool = False) -> None:
    """Remove the saved epochs of a finished run (and ``directory`` itself when asked and then empty): only
    files this module wrote."""
    for path in directory.glob("epoch-*"):
        if path.name.endswith((".json", ".safetensors", ".tmp")):
            path.unlink()
    if remove_directory and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
