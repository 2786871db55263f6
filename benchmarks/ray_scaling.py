"""Wall time of a whole study on each backend: local, Ray with 1 worker and Ray with 2 workers.

Two studies, each run from a fresh cache every time: ``mini`` (tests/data/mini.toml: 2 zoo families, 40
members per combo, stages of a fraction of a second) and ``wider`` (the same with 4 training families, 5 times
the texts and a 4-epoch zoo, so stages take seconds and the parallelism of the stage graph can show through
Ray's fixed costs). Every stage runs torch on one thread, as a 1-CPU Ray task does, so all backends compute
the same bits. ``local_2_threads`` (mini only) is the other way to use both cores: one stage at a time on
two threads, which computes other bits and, on a machine whose cores other jobs hold, can be far slower.

Per run: wall time; for Ray also the seconds to start and stop a fresh local Ray instance (inside the wall
time; its fresh workers import torch again, while the local runs reuse this process's imports); the
stages' own seconds summed per stage kind (as the backend reports them, to 0.1 s); and the machine's
state before and after: the 1-minute load average and the busy share of the CPUs over 1 s. The machine may
be shared with other jobs; ``note`` says whether it was.

    .venv/bin/python benchmarks/ray_scaling.py [--studies mini wider] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import ray
import torch
from machine import cpu_busy  # benchmarks/machine.py (scripts run from this folder)

from ltmia.artefacts import versions
from ltmia.study.config import parse, read_toml
from ltmia.study.ray_backend import run_ray
from ltmia.study.runner import run_local
from ltmia.study.stages import StudyPlan, plan

MINI = Path(__file__).parents[1] / "tests" / "data" / "mini.toml"
OUT = Path(__file__).parent / "results" / "ray_scaling.json"


def wider(raw: dict) -> dict:
    """The mini study with 4 training families, 200 members per combo and a zoo pretrained for 4 epochs."""
    raw = json.loads(json.dumps(raw))
    raw["combos"]["train"]["models"] = ["zoo:llama", "zoo:opt", "zoo:gpt_neox", "zoo:qwen2"]
    raw["defaults"]["members"] = 200
    raw["defaults"]["val"] = 20
    raw["zoo"].update(texts_per_corpus=200, epochs=4)
    return raw


STUDIES: dict[str, Callable[[dict], dict]] = {"mini": lambda raw: raw, "wider": wider}
TWO_THREADS = {"mini"}  # studies also run locally on two threads


def machine_state() -> dict[str, object]:
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "cpu_busy": round(cpu_busy(), 2)}


def timed_run(run: Callable[[Path, Callable], None]) -> tuple[dict[str, object], dict[str, float]]:
    """Run a backend on a fresh cache: wall time, stage seconds per kind and the machine's state around it;
    and the seconds of each stage, by key."""
    per_kind: dict[str, float] = defaultdict(float)
    per_stage: dict[str, float] = {}

    def on_stage(index: int, total: int, stage, event: str) -> None:
        if event.startswith("done"):
            per_stage[stage.key] = float(event.split()[1])
            per_kind[stage.kind] += per_stage[stage.key]

    before = machine_state()
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        extra = run(Path(cache), on_stage) or {}
        wall = time.perf_counter() - started
    record = {
        "wall_s": round(wall, 2),
        **extra,
        "stage_s_by_kind": {kind: round(seconds, 1) for kind, seconds in sorted(per_kind.items())},
        "stage_s_total": round(sum(per_kind.values()), 1),
        "before": before,
        "after": machine_state(),
    }
    return record, per_stage


def critical_path(study: StudyPlan, seconds: dict[str, float]) -> float:
    """Seconds of the longest chain of dependent stages: no number of workers finishes the study faster."""
    finished: dict[str, float] = {}
    for stage in study.stages:  # dependencies first
        start = max((finished[dep.key] for dep in stage.deps if dep.key in finished), default=0.0)
        finished[stage.key] = start + seconds[stage.key]
    return max(finished.values())


def local(study: StudyPlan, threads: int) -> Callable:
    def run(cache: Path, on_stage: Callable) -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            run_local(study, cache, "cpu", on_stage)
        finally:
            torch.set_num_threads(before)

    return run


def on_ray(study: StudyPlan, workers: int) -> Callable:
    """Start and stop Ray here (timed apart), so run_ray's own time is the stages plus scheduling."""

    def run(cache: Path, on_stage: Callable) -> dict[str, float]:
        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False)
        initialised = time.perf_counter()
        run_ray(study, cache, "cpu", on_stage=on_stage)
        finished = time.perf_counter()
        ray.shutdown()
        return {
            "ray_start_s": round(initialised - started, 2),
            "run_ray_s": round(finished - initialised, 2),
            "ray_stop_s": round(time.perf_counter() - finished, 2),
        }

    return run


def measure(name: str) -> dict[str, object]:
    study = plan(parse(STUDIES[name](read_toml(str(MINI)))))
    runs = {
        "local": local(study, 1),
        **({"local_2_threads": local(study, 2)} if name in TWO_THREADS else {}),
        "ray_1_worker": on_ray(study, 1),
        "ray_2_workers": on_ray(study, 2),
    }
    result: dict[str, object] = {
        "stages": len(study.stages),
        "stage_kinds": dict(Counter(stage.kind for stage in study.stages)),
        "runs": {},
    }
    for label, run in runs.items():
        result["runs"][label], per_stage = timed_run(run)
        print(name, label, json.dumps(result["runs"][label]), flush=True)
        if label == "local":
            longest, total = critical_path(study, per_stage), sum(per_stage.values())
            result["graph_from_local_run"] = {
                "critical_path_s": round(longest, 1),
                "best_2_workers_s": round(max(total / 2, longest), 1),  # without Ray's own costs
            }
    walls = {label: record["wall_s"] for label, record in result["runs"].items()}
    result["ray_2_over_1_speedup"] = round(walls["ray_1_worker"] / walls["ray_2_workers"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "arch": platform.machine()},
        "versions": {**versions(), "ray": ray.__version__},
        "start": machine_state(),
        "studies": {name: measure(name) for name in args.studies},
        "end": machine_state(),
    }
    runs = [run for study in report["studies"].values() for run in study["runs"].values()]
    load = max(run["before"]["loadavg"][0] for run in runs)
    report["note"] = (
        f"1-minute load average up to {load} on {os.cpu_count()} CPUs before the runs: other jobs shared "
        "the machine, so every run, and two workers most, competed with them for the cores"
        if load > 0.5
        else "the machine was idle before the runs"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
