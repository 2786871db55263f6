"""Progress display for long jobs: one rich line per task with epoch, step count, loss and elapsed time.

Library code reports through plain callbacks (``on_step(epoch, loss)``) so it stays usable without a
terminal; the CLI turns them into progress lines here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class StepBar:
    """Hands out one ``on_step`` callback per named task (a pretraining run, a fine-tune, ...)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._current: int | None = None

    def task(self, name: str) -> Callable[[int, float], None]:
        if self._current is not None:
            self.progress.stop_task(self._current)
        task_id = self.progress.add_task(name, total=None, epoch=0, loss=float("nan"))
        self._current = task_id

        def on_step(epoch: int, loss: float) -> None:
            self.progress.update(task_id, advance=1, epoch=epoch, loss=loss)

        return on_step


@contextmanager
def step_bar(console: Console) -> Iterator[StepBar]:
    columns = (
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description:<24}"),
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("step {task.completed:>6.0f}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield StepBar(progress)
