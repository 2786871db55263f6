"""Run a study's stages with a backend, skipping every stage already in the cache: ``local``
(``ltmia.study.local``: here, in order, one at a time) or ``ray`` (``ltmia.study.ray_backend``: many stages at
once, on this machine or a cluster).
"""

from __future__ import annotations

from pathlib import Path

from ltmia.errors import InputError
from ltmia.study.local import OnStage, run_local, status
from ltmia.study.ray_backend import run_ray
from ltmia.study.stages import StudyPlan

BACKENDS = ("local", "ray")

__all__ = ["BACKENDS", "OnStage", "run_local", "run_stages", "status"]


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
        return run_ray(plan, cache, device, address, on_stage, workers)
    if address is not None or workers is not None:
        raise InputError("an address and a number of workers are settings of the ray backend (--backend ray)")
    return run_local(plan, cache, device, on_stage)
