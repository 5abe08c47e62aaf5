"""What every command module shares: the context, the consoles, progress bars, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from countenance.config import Settings

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


class Context:
    """What every command gets: the settings, and the engine opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from countenance.engine import Engine

            self._engine = Engine(self.settings)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


pass_ctx = click.make_pass_decorator(Context)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, fed by ``update(done, total)``."""
    bar = Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


@contextmanager
def staged_progress() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """One progress bar per named stage, on stderr."""
    bar = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )

    def stage(name: str) -> Callable[[int, int], None]:
        task = bar.add_task(name, total=None)
        return lambda done, total: bar.update(task, completed=done, total=total)

    with bar:
        yield stage


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
