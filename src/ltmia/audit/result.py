"""What an audit produced (``ltmia.audit.run.audit``), read by the report (``ltmia.audit.html``).

Its own module so that the recipe imports the report and the report reads the result, with no import
back from the report into the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ltmia.audit.explain import Explanation
from ltmia.audit.nonmembers import Evidence
from ltmia.evaluation import Evaluation


@dataclass
class AuditResult:
    """What an audit produced: ``table`` (one dict per scored text, best LT-MIA score first), metrics (with
    bootstrap intervals) when labels were given, explanations of the top texts, counts of skipped /
    flagged texts, the output dir; with known non-members, the ``evidence`` (``ltmia.audit.nonmembers``)."""

    out: Path
    table: list[dict]
    counts: dict[str, int]
    explanations: list[Explanation] = field(default_factory=list)
    metrics: Evaluation | None = None
    record: dict = field(default_factory=dict)
    evidence: Evidence | None = None
