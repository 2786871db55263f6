"""Run a study's stages as Ray tasks: in parallel on this machine, or across a cluster (``docs/scaling.md``).

Every unfinished stage becomes one task whose arguments include its unfinished dependencies' tasks, so
Ray starts a stage only when everything it reads is done and runs independent stages (the combos) side by
side. A task calls the same ``run_stage`` as the local backend and writes the same cache directories, so a
study started on one backend finishes on the other. Ray retries a task whose worker died (a crash, the
OOM killer, a lost node); the retry resumes safely because a stage's artefact is written atomically and
its ``stage.json`` last. A Python exception is not retried: it would fail the same way again.

Ray is optional (``pip install 'ltmia[ray]'``) and imported only here, when this backend runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ltmia.errors import InputError, LtmiaError
from ltmia.study.local import OnStage, status
from ltmia.study.stages import Stage, StudyPlan, run_stage

GiB = 2**30
MAX_RETRIES = 3


@dataclass(frozen=True)
class Resources:
    """What Ray reserves for one stage. ``cpus`` is also the task's torch thread count."""

    cpus: int
    gpu: bool  # one whole GPU when the study runs on GPUs (--device cuda, or auto on a cluster with GPUs)
    memory_gib: float  # host RAM, a scheduling reservation (Ray does not enforce it)


# torch stages get a GPU; the tokenizer (Rust BPE) and the baselines (arithmetic on stored token statistics)
# stay on CPU. Memory: extraction's token statistics and the classifier's streamed batches are bounded by
# 1 GiB budgets (tokenstats.MEMORY_BUDGET_BYTES, LTMIA.memory_budget_bytes), plus the models beside them.
RESOURCES: dict[str, Resources] = {
    "tokenizer": Resources(cpus=1, gpu=False, memory_gib=1),
    "pretrain": Resources(cpus=1, gpu=True, memory_gib=2),
    "finetune": Resources(cpus=1, gpu=True, memory_gib=2),
    "extract": Resources(cpus=1, gpu=True, memory_gib=2),
    "classifier": Resources(cpus=1, gpu=True, memory_gib=2),
    "baselines": Resources(cpus=1, gpu=False, memory_gib=1),
    "lt_mia": Resources(cpus=1, gpu=True, memory_gib=1),
    "costly": Resources(cpus=1, gpu=True, memory_gib=4),  # the target + reference pair, like fine-tuning
}


def import_ray():
    """Ray, or a one-line error saying how to get it."""
    try:
        import ray
    except ImportError as error:
        raise InputError("the ray backend needs Ray: pip install 'ltmia[ray]'") from error
    return ray


def run_ray(
    plan: StudyPlan,
    cache: Path,
    device: str = "auto",
    address: str | None = None,
    on_stage: OnStage | None = None,
    workers: int | None = None,
) -> float:
    """Run every unfinished stage as a Ray task; returns the seconds the tasks spent computing.

    ``address=None`` starts a Ray instance on this machine with ``workers`` CPUs (default: all); an
    address (``ray://host:10001`` or ``auto``) joins a cluster, whose nodes must see ``cache`` at the same
    path. An already initialised Ray (``ray.init`` by the caller) is used as it is and left running.
    """
    ray = import_ray()
    if address is not None and workers is not None:
        raise InputError("workers sizes the Ray started here; a cluster at an address has its own size")
    started_here = not ray.is_initialized()
    if started_here:
        start_or_join(ray, address, workers)
    try:
        return run_tasks(ray, plan, Path(cache).resolve(), device, on_stage or (lambda *args: None))
    finally:
        if started_here:
            ray.shutdown()


def start_or_join(ray, address: str | None, workers: int | None) -> None:
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False)
        return
    try:
        ray.init(address=address)
    except ConnectionError as error:
        raise InputError(f"no Ray cluster at {address}: {error}") from error


def run_tasks(ray, plan: StudyPlan, cache: Path, device: str, on_stage: OnStage) -> float:
    """Submit every unfinished stage, dependencies first, then report each as it finishes."""
    gpus = use_gpus(ray, device)
    task = ray.remote(run_stage_task)
    refs: dict[str, object] = {}  # stage key -> ObjectRef of its task
    submitted: dict[object, tuple[int, Stage]] = {}
    total = len(plan.stages)
    for index, (stage, done) in enumerate(status(plan, cache), start=1):
        if done:
            on_stage(index, total, stage, "cached")
            continue
        resources = RESOURCES[stage.kind]
        num_gpus = int(resources.gpu and gpus)
        upstream = [refs[dep.key] for dep in stage.deps if dep.key in refs]
        ref = task.options(
            name=stage.label,
            num_cpus=resources.cpus,
            num_gpus=num_gpus,
            memory=int(resources.memory_gib * GiB),
            max_retries=MAX_RETRIES,
        ).remote(stage, str(cache), task_device(device, num_gpus), resources.cpus, *upstream)
        refs[stage.key] = ref
        submitted[ref] = (index, stage)
        on_stage(index, total, stage, "queued")
    spent = 0.0
    pending = list(submitted)
    while pending:
        [ready], pending = ray.wait(pending, num_returns=1)
        index, stage = submitted[ready]
        seconds = result(ray, ready)
        spent += seconds
        on_stage(index, total, stage, f"done {seconds:.1f}")
    return spent


def result(ray, ref) -> float:
    """A task's seconds; a user error inside it (``LtmiaError``) surfaces as itself, one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, LtmiaError):
            raise error.cause from None
        raise


def use_gpus(ray, device: str) -> bool:
    """Whether torch stages get a GPU: ``auto`` asks the cluster, not this (driver) machine."""
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    if device.startswith("cuda") and not has_gpus:
        raise InputError(f"device {device} asks for GPUs but the Ray cluster has none; use --device cpu")
    return device.startswith("cuda") or (device == "auto" and has_gpus)


def task_device(device: str, num_gpus: int) -> str:
    """Ray shows a GPU task only its own GPU (as ``cuda``) and hides every GPU from the other tasks."""
    if num_gpus:
        return "cuda"
    return "cpu" if device == "auto" or device.startswith("cuda") else device


def run_stage_task(stage: Stage, cache: str, device: str, threads: int, *upstream: float) -> float:
    """One stage inside a Ray worker. ``upstream`` (the dependencies' results) is only there to order tasks.

    The thread count is pinned because it changes torch's reductions (and so the bits of every weight):
    with it, a task's output equals the local backend's run with the same number of threads.
    """
    import torch
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(threads)
    transformers_logging.disable_progress_bar()  # the driver reports progress per stage
    started = time.perf_counter()
    run_stage(stage, Path(cache), device)
    return time.perf_counter() - started
