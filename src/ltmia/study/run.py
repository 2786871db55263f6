"""A study end to end: load and plan its config, run every unfinished stage, write its report.

What ``ltmia study run`` and ``ltmia demo`` do, as one call for scripts and benchmarks::

    from ltmia.study.run import run_study

    done = run_study("demo", Path("runs/cache"))  # a shipped config name or a .toml file
    done.table["in-distribution"].results["lt_mia[shipped]"].auc  # one Evaluation per group
    done.results  # results/demo/: summary.md, results.json, groups/

Stages already in the cache are skipped (``ltmia.study.stages``), so a second call only re-renders the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ltmia.evaluation import Evaluation
from ltmia.study.config import config_source, load_config
from ltmia.study.local import OnStage, status
from ltmia.study.report import claim_results, write_report
from ltmia.study.runner import run_stages
from ltmia.study.stages import StudyPlan, plan

RESULTS = Path("results")  # a study's results go to RESULTS / <study name> unless told otherwise

OnPlan = Callable[[StudyPlan, int], None]
"""``on_plan(plan, cached)``: the planned study and how many of its stages are cached, before any runs."""


@dataclass
class StudyRun:
    """A finished study: its plan, where its report is, the report's tables (one `Evaluation` per group) and
    the seconds it took (planning, running and reporting)."""

    plan: StudyPlan
    results: Path
    table: dict[str, Evaluation]
    seconds: float


def run_study(
    config: str,
    cache: Path,
    results: Path | None = None,
    *,
    seed: int | None = None,
    groups: Sequence[str] = (),
    classifiers: Sequence[str] = (),
    device: str = "auto",
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    on_plan: OnPlan | None = None,
    on_stage: OnStage | None = None,
) -> StudyRun:
    """Run study ``config`` (``seed`` overrides its split seed; ``groups`` / ``classifiers``: only part of
    it, ``ltmia.study.config.select``) on ``backend`` (``ltmia.study.runner``) and
    write its report to ``results`` (default ``results/<study name>``).

    The report keeps a copy of the config's TOML unless ``seed`` changed it (then only the resolved config,
    which every report holds, says what ran).
    """
    started = time.perf_counter()
    study = plan(load_config(config, seed, groups, classifiers))
    results = RESULTS / study.config.name if results is None else Path(results)
    claim_results(results, create=False)  # a --results ltmia may not write is refused before hours of work
    if on_plan is not None:
        on_plan(study, sum(done for _, done in status(study, cache)))
    run_stages(study, cache, device, on_stage, backend, address, workers)
    config_text = config_source(config)[1] if seed is None else None
    table = write_report(study, cache, results, config_text)
    return StudyRun(study, results, table, time.perf_counter() - started)
