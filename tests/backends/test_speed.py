"""Timing repeated steps (``backends.speed``): warm-up, timed steps, median and fastest,
two candidates compared. The steps here are plain callables; the training stage's uses
(a model's steps, the CPU precision) are tested in ``tests/training/test_timings.py``."""

from __future__ import annotations

import logging
import time

import keras
import pytest

from pianoacc_utils.backends import speed


def counting_step(seconds: float = 0.0):
    """A step that sleeps ``seconds`` and counts its calls."""
    calls = []

    def step() -> None:
        calls.append(1)
        time.sleep(seconds)

    return step, calls


def test_time_steps_discards_the_warmup_and_times_the_rest():
    step, calls = counting_step()
    timed = speed.time_steps(step, warmup=2, steps=3)
    assert len(calls) == 5 and len(timed.seconds) == 3
    assert timed.warmup_seconds >= 0 and all(t >= 0 for t in timed.seconds)
    assert timed.fastest == min(timed.seconds) <= timed.median


def test_time_steps_goes_on_until_min_seconds_are_timed():
    step, calls = counting_step(0.01)
    timed = speed.time_steps(step, warmup=0, steps=2, min_seconds=0.05)
    assert sum(timed.seconds) >= 0.05 and len(timed.seconds) >= 2
    assert len(calls) == len(timed.seconds) <= 5  # each call sleeps at least 0.01 s


def test_step_times_median_and_fastest():
    timed = speed.StepTimes((0.3, 0.1, 0.2, 0.9), warmup_seconds=1.0)
    assert timed.median == pytest.approx(0.25) and timed.fastest == 0.1


def test_compare_times_both_and_names_the_speedup():
    order = []

    def time_candidate(name: str) -> list[float]:
        order.append(name)
        return {"float32": [2.0, 3.0, 2.0], "mixed_bfloat16": [0.8, 1.2, 0.8]}[name]

    timings = speed.compare(time_candidate, "float32", "mixed_bfloat16")
    assert order == ["float32", "mixed_bfloat16"]  # the baseline first
    assert timings.medians == pytest.approx({"float32": 2.0, "mixed_bfloat16": 0.8})
    assert timings.speedup == pytest.approx(2.5)
    assert timings.candidate_faster(1.05) and not timings.candidate_faster(3.0)
    assert timings.describe() == (
        "0.8 s a step in mixed bfloat16 against 2 s in float32: 2.50x"
    )
    tie = speed.compare(lambda name: [1.0 if name == "a" else 0.97], "a", "b")
    assert not tie.candidate_faster(1.05)  # 3% faster: within the margin


def test_timed_on_names_the_processor_and_backend():
    processor, backend = speed.timed_on()
    assert processor and backend == keras.backend.backend()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's logger")
def test_retracing_warnings_are_quiet_inside_and_restored_after():
    import tensorflow as tf

    logger = tf.get_logger()
    before = logger.level
    with speed.quiet_retracing_warnings():
        assert logger.level == logging.ERROR
    assert logger.level == before
