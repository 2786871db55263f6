"""The local backend: a study's stages on this machine, in dependency order, one at a time.

On a small machine one torch job at a time is fastest (two would fight over the cores). A killed run loses
at most the stage in progress, and that stage resumes where its own artefact allows (the zoo per
architecture, fine-tunes per epoch, stores per shard). ``status`` and ``OnStage`` are shared with the Ray
backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ltmia.study.stages import Stage, StudyPlan, run_stage

OnStage = Callable[[int, int, Stage, str], None]
"""``on_stage(index, total, stage, event)`` with event "cached", "start" or "done <seconds>" ("queued"
instead of "start" from the Ray backend, which hands a stage to Ray before its dependencies are done)."""


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
