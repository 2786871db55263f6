"""Terminal display: progress of long jobs (steps with epoch and loss; texts with texts/s; epochs of the
classifier with loss and validation AUC).

Off a terminal (CI logs, pipes, ``nohup``) the live display is disabled, because rich would hold everything
printed during it until the end; plain progress lines are printed instead (every ``log_every`` steps, or
every ``TEXT_LINE_SECONDS`` of extraction), so an eight-minute job shows that it moves. Library code reports
through plain callbacks (``on_step(epoch, loss)``, ``on_texts(done, total)``) so it stays usable without a
terminal; the CLI turns them into progress displays here.

User text (candidate texts, corpus texts, error messages that quote a file) goes through ``printable``
before it reaches the terminal: an ANSI escape or other control character in a text must not recolour,
move the cursor, retitle or otherwise drive the user's terminal.
"""

from __future__ import annotations

import re
import time
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
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

TEXT_LINE_SECONDS = 30.0
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
"""Characters a terminal acts on rather than shows: C0 controls but tab and newline (ESC starts every ANSI
escape), DEL, C1 controls, Unicode line separators and the bidirectional overrides that reorder a line."""


def printable(text: str, newlines: bool = False) -> str:
    """``text`` safe to print: control characters (``CONTROL``) shown as ``\\xNN`` / ``\\uNNNN`` escapes;
    tabs and newlines become spaces unless ``newlines`` (then newlines stay)."""
    text = CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)
    text = text.replace("\t", " ")
    return text if newlines else text.replace("\n", " ")


class StepBar:
    """Hands out one ``on_step`` callback per named task (a pretraining run, a fine-tune, ...)."""

    def __init__(self, progress: Progress, console: Console, log_every: int) -> None:
        self.progress = progress
        self.console = console
        self.log_every = log_every
        self._current: TaskID | None = None

    def task(self, name: str) -> Callable[[int, float], None]:
        if self._current is not None:
            self.progress.stop_task(self._current)
        task_id = self.progress.add_task(name, total=None, epoch=0, loss=float("nan"))
        self._current = task_id
        started, steps = time.perf_counter(), 0

        def on_step(epoch: int, loss: float) -> None:
            nonlocal steps, started
            steps += 1
            if steps == 1:  # time from the first finished step: loading and converting are not steps
                started = time.perf_counter()
            self.progress.update(task_id, advance=1, epoch=epoch, loss=loss)
            if not self.console.is_terminal and self.log_every > 0 and steps % self.log_every == 0:
                seconds = time.perf_counter() - started
                rate = f", {seconds / (steps - 1):.2f} s/step" if steps > 1 else ""
                self.console.print(
                    f"{name}: epoch {epoch}, step {steps}, loss {loss:.4f}{rate}",
                    markup=False,
                    highlight=False,
                )

        return on_step


@contextmanager
def step_bar(console: Console, log_every: int = 10) -> Iterator[StepBar]:
    """Live step display on a terminal; off one, a line every ``log_every`` steps (0: none)."""
    columns = (
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description:<24}"),
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("step {task.completed:>6.0f}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        yield StepBar(progress, console, log_every)


class TextsPerSecond(ProgressColumn):
    """Progress column: the task's speed in texts per second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:.1f} texts/s")


@contextmanager
def text_bar(console: Console, description: str) -> Iterator[Callable[[int, int], None]]:
    """A bar over texts (done / total, texts/s); yields the ``on_texts(done, total)`` callback.

    Off a terminal: a line at most every ``TEXT_LINE_SECONDS`` and when the last text is done.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextsPerSecond())
    started = last = time.perf_counter()
    with Progress(
        *columns, TimeElapsedColumn(), console=console, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task(description, total=None)

        def on_texts(done: int, total: int) -> None:
            nonlocal last
            progress.update(task, completed=done, total=total)
            now = time.perf_counter()
            if not console.is_terminal and (now - last >= TEXT_LINE_SECONDS or done >= total):
                last = now
                console.print(
                    f"{description}: {done}/{total} texts, {now - started:.0f} s",
                    markup=False,
                    highlight=False,
                )

        yield on_texts


@contextmanager
def epoch_bar(console: Console, epochs: int) -> Iterator[Callable[[dict], None]]:
    """A bar over the classifier's epochs with its train loss and validation AUC; yields the ``on_epoch``
    callback of ``LTMIA.fit`` (an epoch's log entry: ``epoch``, ``train_loss``, ``val_auc``)."""
    shown = "loss {task.fields[loss]:.4f}  val AUC {task.fields[auc]:.4f}"
    columns = (TextColumn("epoch"), BarColumn(), MofNCompleteColumn(), TextColumn(shown), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("train", total=epochs, loss=float("nan"), auc=float("nan"))

        def on_epoch(entry: dict) -> None:
            progress.update(task, completed=entry["epoch"], loss=entry["train_loss"], auc=entry["val_auc"])

        yield on_epoch
