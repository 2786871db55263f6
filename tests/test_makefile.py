"""`make bench` accounts for every benchmark: each benchmarks/*.py is run or listed with why it is skipped."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_list(text: str, name: str) -> list[str]:
    """The benchmark names of one Makefile variable (continuation lines joined; '(why)' notes dropped)."""
    match = re.search(rf"^{name} := ((?:.*\\\n)*.*)$", text, flags=re.MULTILINE)
    assert match, f"{name} is not defined in the Makefile"
    value = re.sub(r"\([^)]*\)", "", match.group(1).replace("\\\n", " "))
    return [word for word in re.split(r"[\s|]+", value) if word]


def test_every_benchmark_is_run_or_listed_as_skipped_exactly_once():
    text = (ROOT / "Makefile").read_text()
    lists = [make_list(text, name) for name in ("BENCHMARKS", "LONG_BENCHMARKS", "NOT_BENCHMARKS")]
    named = [name for names in lists for name in names]
    scripts = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py"))
    assert sorted(named) == scripts  # none missing, none listed twice, none that does not exist
