"""A rich progress bar for optimization loops: step, each loss term, it/s."""

from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from clipstyle.optimize.loop import StepInfo


class ProgressBar:
    """Context manager and optimization callback showing ``step/steps``, loss terms and it/s on stderr."""

    def __init__(self, description: str, total: int, enabled: bool = True) -> None:
        self.total, self.enabled = total, enabled
        self.console = Console(stderr=True, file=sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[terms]}"), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, terms="", rate="")

    def __enter__(self) -> "ProgressBar":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, info: StepInfo, images: torch.Tensor) -> None:
        terms = " ".join(f"{k}={v:.4f}" for k, v in info.terms.items()) or f"loss={info.loss:.4f}"
        rate = (info.step + 1) / info.seconds if info.seconds > 0 else 0.0
        self.progress.update(self.task, completed=info.step + 1, terms=terms, rate=f"{rate:.2f} it/s")
