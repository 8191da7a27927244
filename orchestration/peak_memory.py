"""Peak memory of a block of work, for the cost columns of `generations` (and the leaderboard's
`peak_memory_mb`): on a GPU `torch.cuda.max_memory_allocated` (reset on entry); on CPU the
process's peak resident set size meanwhile — Linux's `VmHWM`, reset on entry through
`/proc/self/clear_refs`, or where that is not possible, the RSS sampled every 10 ms (psutil).
On CPU the figure includes everything the process holds (the loaded models too): it is what the
machine must have for that step."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import torch

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _high_water_mb() -> float | None:
    """VmHWM (peak RSS since the last reset) in MiB, or None where /proc has no such line."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_high_water() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # 5: reset the peak RSS to the current RSS (Linux ≥ 4.0)
        return _high_water_mb() is not None
    except OSError:
        return False


class PeakMemory:
    """`with PeakMemory(device) as peak: …` then `peak.mb`: the block's peak memory in MiB."""

    def __init__(self, device: str | torch.device | None = None):
        on_gpu = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        self.cuda = torch.device(device or "cuda") if on_gpu else None
        self.mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False

    def __enter__(self) -> PeakMemory:
        if self.cuda is not None:
            torch.cuda.reset_peak_memory_stats(self.cuda)
            return self
        self._hwm = _reset_high_water()
        if not self._hwm:
            process = psutil.Process()
            self.mb = process.memory_info().rss / 2**20
            self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
            self._thread.start()
        return self

    def _sample(self, process) -> None:
        while not self._stop.wait(0.01):
            self.mb = max(self.mb or 0.0, process.memory_info().rss / 2**20)

    def __exit__(self, *exc) -> None:
        if self.cuda is not None:
            self.mb = torch.cuda.max_memory_allocated(self.cuda) / 2**20
        elif self._hwm:
            self.mb = _high_water_mb()
        else:
            self._stop.set()
            self._thread.join()
            self.mb = max(self.mb or 0.0, psutil.Process().memory_info().rss / 2**20)
