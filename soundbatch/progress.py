"""Progress bar and end-of-sweep summary for the command line (rich, to stderr/stdout)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from soundbatch.pipeline import Progress as SweepState
from soundbatch.pipeline import SweepSummary


class SweepProgress:
    """A rich progress bar fed by :func:`soundbatch.pipeline.run_sweep`'s callback."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("recordings"),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=Console(stderr=True), disable=not enabled, transient=False,
        )
        self.task = None

    def __enter__(self) -> "SweepProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, state: SweepState) -> None:
        if self.task is None:
            self.task = self.bar.add_task("sweep", total=state.total, detail="")
        elapsed = max(time.monotonic() - state.started, 1e-9)
        detail = (f"{state.audio_s / 3600:.2f} h audio, {state.audio_s / elapsed:,.0f}x realtime"
                  + (f", [red]{state.errors} errors[/red]" if state.errors else ""))
        self.bar.update(self.task, completed=state.done, detail=detail)


def print_summary(summary: SweepSummary, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"run {summary.run_id}", show_header=False)
    t.add_row("output", summary.out)
    t.add_row("model", summary.model_id)
    t.add_row("recordings listed", f"{summary.listed}")
    t.add_row("skipped (already done)", f"{summary.skipped}")
    t.add_row("ok", f"{summary.ok}")
    t.add_row("errors", f"{summary.errors}")
    t.add_row("audio", f"{summary.audio_s / 3600:.2f} h")
    t.add_row("wall time", f"{summary.wall_s:.1f} s")
    if summary.audio_s > 0:
        t.add_row("speed", f"{summary.x_realtime:,.0f}x realtime")
    console.print(t)
    if summary.events_per_class:
        e = Table(title="events per class")
        e.add_column("class")
        e.add_column("events", justify="right")
        for cls, n in summary.events_per_class.items():
            e.add_row(cls, str(n))
        console.print(e)
    for uri, error in summary.error_examples:
        console.print(f"[red]error[/red] {uri}: {error}", highlight=False, soft_wrap=True)
