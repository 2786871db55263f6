"""Terminal display: progress of long jobs (steps with epoch and loss; texts with texts/s) and metric tables.

Off a terminal (CI logs, pipes) the live display is disabled, because rich would hold everything printed
during it until the end; the per-epoch log lines then show progress as it happens. Library code reports
through plain callbacks (``on_step(epoch, loss)``) so it stays usable without a
terminal; the CLI turns them into progress lines here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ltmia.metrics import MetricResult


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
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        yield StepBar(progress)


class TextsPerSecond(ProgressColumn):
    """Progress column: the task's speed in texts per second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:.1f} texts/s")


@contextmanager
def text_bar(console: Console, description: str) -> Iterator[Callable[[int, int], None]]:
    """A bar over texts (done / total, texts/s); yields the ``on_texts(done, total)`` callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextsPerSecond())
    with Progress(
        *columns, TimeElapsedColumn(), console=console, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def metrics_table(results: dict[str, MetricResult], title: str) -> Table:
    """SPEC §7 metrics of several attacks as one table, best AUC first."""
    table = Table("attack", "AUC", "TPR@1%FPR", "TPR@0.1%FPR", "members", "non-members", title=title)
    for name, result in sorted(results.items(), key=lambda item: -item[1].auc):
        table.add_row(
            name,
            f"{result.auc:.3f}",
            f"{result.tpr_at_1pct:.3f}",
            result.format_tpr01(),
            str(result.n_members),
            str(result.n_nonmembers),
        )
    return table
