"""Shared by the benchmarks: how busy the CPUs are, so each timing records whether the machine was idle."""

from __future__ import annotations

import time
from pathlib import Path


def cpu_busy(interval: float = 1.0) -> float:
    """Fraction of all CPUs' time spent busy over ``interval`` seconds (Linux ``/proc/stat``)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)
