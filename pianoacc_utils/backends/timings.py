"""Where a generation command's time goes: wall and CPU seconds per phase.

``pianoacc accompany --timings`` reports its phases (start-up, reading the melody,
loading the model, decoding, writing) with a :class:`Stopwatch`;
``benchmarks/accompany_wait.py`` reads that report. Decoding is split further, from
the records a :class:`~pianoacc_utils.generation.CachedDecoder` keeps of its calls
(:class:`DecodeTiming`), into compiling (the windows that first made the loop's program
for their shape) and generating.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple, Sequence

import keras


class DecodeTiming(NamedTuple):
    """One :meth:`~pianoacc_utils.generation.CachedDecoder.decode` call: its wall time
    (seconds) and whether it first made the loop's program for a new shape (``compiled``:
    the time to trace and compile it, or to load it from the caches of
    :mod:`~pianoacc_utils.backends.exported` and JAX, is part of ``seconds``; every call
    under the eager torch backend)."""

    seconds: float
    compiled: bool


class Stopwatch:
    """Wall and CPU seconds of consecutive phases.

    The first phase starts at ``started`` (a ``time.perf_counter()`` reading, such as
    :data:`pianoacc_utils.STARTED`, taken when the package began loading) and, for CPU
    time, at the start of the process (``time.process_time()`` counts from there).
    ``first``: the name of a first phase that ends now (e.g. the start-up).
    """

    def __init__(self, started: float, first: str | None = None) -> None:
        self.started = started
        self.phases: dict[str, dict[str, Any]] = {}
        self._wall, self._cpu = started, 0.0
        if first is not None:
            self.lap(first)

    def lap(self, phase: str) -> dict[str, Any]:
        """End ``phase`` now (it began where the previous phase ended); returns its row."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[phase] = {"wall": round(wall - self._wall, 3), "cpu": round(cpu - self._cpu, 3)}
        self._wall, self._cpu = wall, cpu
        return self.phases[phase]

    def lap_decoding(
        self, timings: Sequence[DecodeTiming], phase: str = "decoding"
    ) -> dict[str, Any]:
        """End a decoding phase of the windows that a decoder's ``timings`` record
        (``CachedDecoder.timings``), with the wall seconds of those that first made the
        loop's program for their shape (``compiling``: tracing and compiling it, or
        loading it from the caches, together with decoding that window) and the number
        of windows."""
        row = self.lap(phase)
        row["compiling"] = round(sum(t.seconds for t in timings if t.compiled), 3)
        row["windows"] = len(timings)
        return row

    def report(self) -> dict[str, Any]:
        """The Keras backend, every phase, and the total since ``started`` (CPU: since
        the process started)."""
        total = {
            "wall": round(time.perf_counter() - self.started, 3),
            "cpu": round(time.process_time(), 3),
        }
        return {"backend": keras.config.backend(), **self.phases, "total": total}

    def json(self) -> str:
        """:meth:`report` as one line of JSON."""
        return json.dumps(self.report())
