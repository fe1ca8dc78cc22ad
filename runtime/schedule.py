"""How an image's windows share the cores: one single-threaded ONNX Runtime call per worker, except in an
incomplete last round, whose windows may take the cores of the workers that ran out of work.

Windows of a full round run one thread each: that keeps every core busier than intra-op threads do. An
image of fewer windows than workers gives each window an equal share of the cores at once. Otherwise the
`last` windows left over after the full rounds would run on one core each while the other cores idle;
whether to wait for the windows still running and then share all cores depends on how far those are from
done, which the schedule measures as it goes:
- 2 cores, 480x270 input (15 windows): workers run nearly in step, so the last window waits about a quarter
  of a window, then runs on both cores in half a window's time (2-3% off the image).
- 16 cores, 960x540 input (50 windows): the busy windows finish spread over a whole window's time; always
  waiting cost 8%, and starting at once with more threads (oversubscribing the busy cores) cost 21%.
"""
from __future__ import annotations

import threading
import time

# intra-op speed-up per thread assumed when sharing cores (measured at 2 threads on a 94x100 window: 0.94)
SHARED_EFFICIENCY = 0.9


def shared_is_sooner(wait: float, typical: float, last: int, workers: int) -> bool:
    """Finish sooner by waiting `wait` seconds for the busy windows, then running the `last` windows with
    workers // last threads each, than by starting now on one thread (a window takes `typical` seconds)?"""
    threads = workers // last
    return threads > 1 and wait + typical / (threads * SHARED_EFFICIENCY) < typical


class WindowSchedule:
    """Thread count for each window of one image, decided when the window starts on its worker."""

    def __init__(self, workers: int, windows: int):
        self.workers = workers
        self.last = windows % workers if windows >= workers else windows  # windows of the incomplete round
        self.first_last = windows - self.last
        self._running: dict[int, float] = {}  # full-round windows in progress: index -> start time
        self._seconds: list[float] = []  # durations of finished full-round windows
        self._changed = threading.Condition()

    def begin(self, index: int) -> int:
        """Threads for window `index`; a window of the last round may first wait for the busy ones."""
        with self._changed:
            now = time.perf_counter()
            if index < self.first_last:
                self._running[index] = now
                return 1
            if not self._running:  # nothing else holds a core (also: an image of fewer windows than workers)
                return self.workers // self.last
            if not self._seconds:
                return 1
            typical = sorted(self._seconds)[len(self._seconds) // 2]
            wait = max(start + typical for start in self._running.values()) - now
            if not shared_is_sooner(max(wait, 0.0), typical, self.last, self.workers):
                return 1
            self._changed.wait_for(lambda: not self._running)
            return self.workers // self.last

    def end(self, index: int) -> None:
        with self._changed:
            start = self._running.pop(index, None)
            if start is not None:
                self._seconds.append(time.perf_counter() - start)
                self._changed.notify_all()
