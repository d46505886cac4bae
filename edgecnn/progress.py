"""A small progress bar on stderr for long work (spectrograms, file reading, calibration, replay).

Callable as ``progress(done, total)`` so pure functions can report without knowing about terminals.
Silent with ``quiet=True``; on a terminal it redraws at most every 0.1 s and ends its line when
done == total; into a file or pipe (a log) it writes that final line only, with no carriage returns.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, *, quiet: bool = False, stream=None, width: int = 28) -> None:
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._finished = False
        self._terminal = bool(getattr(self.stream, "isatty", None) and self.stream.isatty())

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or self._finished:
            return
        now = time.perf_counter()
        final = total > 0 and done >= total
        if not final and (now - self._last_draw < 0.1 or not self._terminal):
            return
        self._last_draw = now
        frac = done / total if total else 1.0
        filled = int(round(frac * self.width))
        elapsed = now - self._start
        redraw = "\r" if self._terminal else ""
        line = (f"{redraw}{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done}/{total} {elapsed:5.1f}s")
        self.stream.write(line)
        if final:
            self.stream.write("\n")
            self._finished = True
        self.stream.flush()
