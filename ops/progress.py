"""Progress of the long loops (PEZ, DIFF-token training, DIA's fits, DDIM sampling).

A loop calls `progress(step, total)` after each step. Where the caller passes no callback,
`reporter` gives a tqdm bar that shows on a terminal only (tqdm's `disable=None`: hidden when
stderr is not a terminal, as in logs, CI and the Dagster UI, where the per-triplet log lines
report progress instead).
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

Progress = Callable[[int, int], None]


def reporter(progress: Progress | None, desc: str) -> Progress:
    """`progress` itself, or a terminal progress bar named `desc` opened at the first step."""
    if progress is not None:
        return progress
    bar = None

    def report(step: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="step", disable=None, leave=False)
        bar.update(step - bar.n)
        if step >= total:
            bar.close()

    return report
