"""Progress bars for the long teacher passes (compression's importance rays, the Gaussian
placement): a pass of minutes on the CPU shows rays done, elapsed time and an ETA instead of
nothing. Imported by both compress/ and views/, so it depends on neither."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from nerfstudio.utils.rich_utils import CONSOLE

T = TypeVar("T")


def with_progress(items: Iterable[T], total: int, description: str, unit: str = "rays", done: int = 0,
                  size: Callable[[T], int] = len) -> Iterator[T]:
    """``items`` unchanged, with a progress bar (``unit`` done, elapsed, ETA) on the console; each
    item advances it by ``size(item)``, starting from ``done`` (work finished before the bar)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=CONSOLE, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=done)
        for item in items:
            yield item
            progress.advance(task, size(item))
