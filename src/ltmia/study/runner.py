"""Run a study's stages on this machine (the local backend), skipping every stage already in the cache.

Stages run in dependency order, one at a time: on a small machine one torch job at a time is fastest (two
would fight over the cores). A killed run loses at most the stage in progress, and that stage resumes where
its own artefact allows (the zoo per architecture, stores per shard). ``run_stages`` picks the backend:
this one, or Ray for many stages at once (``ltmia.study.ray_backend``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from ltmia.errors import InputError
from ltmia.study.stages import Stage, StudyPlan, run_stage

log = logging.getLogger(__name__)

OnStage = Callable[[int, int, Stage, str], None]
"""``on_stage(index, total, stage, event)`` with event "cached", "start" or "done <seconds>" ("queued"
instead of "start" from the Ray backend, which hands a stage to Ray before its dependencies are done)."""

BACKENDS = ("local", "ray")


def status(plan: StudyPlan, cache: Path) -> list[tuple[Stage, bool]]:
    """Every stage with whether its output is already cached."""
    return [(stage, stage.done(cache)) for stage in plan.stages]


def run_local(plan: StudyPlan, cache: Path, device: str = "auto", on_stage: OnStage | None = None) -> float:
    """Run every unfinished stage in order; returns the seconds spent computing."""
    on_stage = on_stage or (lambda *args: None)
    spent = 0.0
    total = len(plan.stages)
    for index, (stage, done) in enumerate(status(plan, cache), start=1):
        if done:
            on_stage(index, total, stage, "cached")
            continue
        on_stage(index, total, stage, "start")
        started = time.perf_counter()
        run_stage(stage, cache, device)
        seconds = time.perf_counter() - started
        spent += seconds
        on_stage(index, total, stage, f"done {seconds:.1f}")
    return spent


def run_stages(
    plan: StudyPlan,
    cache: Path,
    device: str = "auto",
    on_stage: OnStage | None = None,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> float:
    """Run with the chosen backend: ``local`` (here, in order) or ``ray`` (``ltmia.study.ray_backend``)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "ray":
        from ltmia.study.ray_backend import run_ray

        return run_ray(plan, cache, device, address, on_stage, workers)
    if address is not None or workers is not None:
        raise InputError("an address and a number of workers are settings of the ray backend (--backend ray)")
    return run_local(plan, cache, device, on_stage)
