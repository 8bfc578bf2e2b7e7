"""Timing repeated steps: warm-up, timed steps, their median and fastest, two candidates
compared.

How fast a training step runs depends on the processor, the Keras backend and how the
step was traced and compiled, not on what the step computes, so the timing itself lives
here, apart from the stages: :func:`time_steps` times any step it is given (a callable,
such as ``functools.partial(model.train_on_batch, inputs, target)``) and :func:`compare`
any two candidates a timer is given. What is timed is built by the stage that owns it:
:func:`pianoacc_utils.training.measure_step_time` (a fresh model of each encoder at
growing lengths, notebook 05) and :mod:`pianoacc_utils.training.precision` (the run's own
model in float32 and in mixed bfloat16, to choose a run's precision). This module
imports neither models nor training.

A timing holds only where it was made: :func:`timed_on` names the processor and backend
that records keep beside their seconds.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import keras

from pianoacc_utils.common import processor_name


@dataclass(frozen=True)
class StepTimes:
    """Seconds of each timed step, and of the untimed warm-up steps together."""

    seconds: tuple[float, ...]
    warmup_seconds: float

    @property
    def median(self) -> float:
        """The median step (seconds): what a run takes most steps at."""
        return statistics.median(self.seconds)

    @property
    def fastest(self) -> float:
        """The fastest step (seconds): the one least slowed by other work on the machine."""
        return min(self.seconds)


def time_steps(
    step: Callable[[], object], warmup: int = 1, steps: int = 3, min_seconds: float = 0.0
) -> StepTimes:
    """Call ``step`` ``warmup`` times untimed (the first traces and compiles it, a second
    creates an optimizer's slots), then time at least ``steps`` calls, more while less
    than ``min_seconds`` have been timed (short steps get more calls, which steadies their
    median on a busy machine)."""
    began = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_seconds = time.perf_counter() - began
    seconds: list[float] = []
    while len(seconds) < steps or sum(seconds) < min_seconds:
        began = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - began)
    return StepTimes(tuple(seconds), warmup_seconds)


@dataclass(frozen=True)
class Comparison:
    """The timed steps (seconds) of a ``baseline`` and a ``candidate``, by name."""

    baseline: str
    candidate: str
    seconds: dict[str, list[float]]

    @property
    def medians(self) -> dict[str, float]:
        return {name: statistics.median(times) for name, times in self.seconds.items()}

    @property
    def speedup(self) -> float:
        """The baseline's median step over the candidate's: above 1, the candidate is
        faster."""
        medians = self.medians
        return medians[self.baseline] / medians[self.candidate]

    def candidate_faster(self, margin: float) -> bool:
        """Whether the candidate's median step is at most ``1 / margin`` of the
        baseline's: a margin above 1 keeps a gain within the steps' spread from
        counting."""
        return self.speedup >= margin

    def describe(self) -> str:
        """The medians and the speed-up in words (names with ``_`` read as spaces)."""
        medians = self.medians
        return (f"{medians[self.candidate]:.3g} s a step in {self.candidate.replace('_', ' ')} "
                f"against {medians[self.baseline]:.3g} s in {self.baseline.replace('_', ' ')}: "
                f"{self.speedup:.2f}x")


def compare(
    time_candidate: Callable[[str], Sequence[float]], baseline: str, candidate: str
) -> Comparison:
    """Time the ``baseline``, then the ``candidate``, with ``time_candidate(name)`` (the
    seconds of each timed step)."""
    return Comparison(baseline, candidate, {
        name: [float(t) for t in time_candidate(name)] for name in (baseline, candidate)
    })


def timed_on() -> tuple[str, str]:
    """The processor (:func:`~pianoacc_utils.common.processor_name`) and the Keras backend
    that a timing made now holds for."""
    return processor_name(), keras.backend.backend()


@contextlib.contextmanager
def quiet_retracing_warnings() -> Iterator[None]:
    """Silence TensorFlow's "triggered tf.function retracing" warnings, for timings that
    build a new model per case and so trace a new step on purpose."""
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)
