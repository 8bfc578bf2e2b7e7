"""Timing whole training steps of a model at growing sequence lengths.

The FNet and Transformer encoders differ most in cost (attention grows with the square
of the melody length, the Fourier mixing almost linearly), so :func:`measure_step_time`
times full training steps (forward, backward, update) of a fresh model at each length, on
random tokens with no padding. Notebook 05 and ``benchmarks/training_speed.py`` use it;
the measured figures live in ``benchmarks/results/training_speed.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

from pianoacc_utils.models.config import ModelConfig, count_parameters
from pianoacc_utils.models.seq2seq import build_model
from pianoacc_utils.training.loss import compile_model
from pianoacc_utils.training.profiles import TrainConfig


def measure_step_time(
    kind: str,
    lengths: Sequence[int],
    model_config: ModelConfig,
    batch_size: int = 2,
    steps: int = 3,
    min_seconds: float = 0.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Training-step time of a ``kind`` model of ``model_config``'s size at each length.

    For each length ``L`` (tokens) the model gets ``melody_length =
    accompaniment_length = L`` and trains on random full-length batches (melody and
    accompaniment both ``L`` tokens, no padding): one warm-up step (tracing /
    compilation) is discarded, then at least ``steps`` steps are timed, more while
    less than ``min_seconds`` have been timed (short sequences get more steps, which
    steadies their figures on a busy machine). Rows: ``kind``, ``length``,
    ``batch_size``, ``steps``, ``ms_per_step`` (median), ``ms_per_step_min``
    (fastest, less sensitive to other processes), ``tokens_per_second``
    (accompaniment tokens, from the median), ``warmup_seconds``, ``parameters``.
    """
    with _quiet_retracing_warnings():
        return [
            _time_training_steps(
                kind, int(length), model_config, batch_size, steps, min_seconds, seed
            )
            for length in lengths
        ]


def _time_training_steps(
    kind: str,
    length: int,
    model_config: ModelConfig,
    batch_size: int,
    steps: int,
    min_seconds: float,
    seed: int,
) -> dict[str, Any]:
    """One row of :func:`measure_step_time`: a fresh model of ``length`` tokens, timed."""

    keras.utils.set_random_seed(seed)
    config = dataclasses.replace(
        model_config, kind=kind, melody_length=length, accompaniment_length=length
    )
    model = compile_model(build_model(config), TrainConfig(warmup_steps=10))
    rng = np.random.default_rng(seed)
    shape = (batch_size, length)
    vocabulary = config.vocabulary_size
    inputs = {
        "melody": rng.integers(3, vocabulary, shape).astype("int32"),
        "decoder_input": rng.integers(3, vocabulary, shape).astype("int32"),
    }
    target = rng.integers(3, vocabulary, shape).astype("int32")
    began = time.perf_counter()
    model.train_on_batch(inputs, target)  # warm-up: tracing / compilation
    warmup = time.perf_counter() - began
    times: list[float] = []
    while len(times) < steps or sum(times) < min_seconds:
        began = time.perf_counter()
        model.train_on_batch(inputs, target)
        times.append(time.perf_counter() - began)
    step = float(np.median(times))
    return {
        "kind": kind,
        "length": length,
        "batch_size": batch_size,
        "steps": len(times),
        "ms_per_step": round(1000 * step, 1),
        "ms_per_step_min": round(1000 * min(times), 1),
        "tokens_per_second": round(batch_size * length / step, 1),
        "warmup_seconds": round(warmup, 2),
        "parameters": count_parameters(model)["total"],
    }


def padded_lengths(batches: Sequence[Any]) -> list[int]:
    """Each batch's padded accompaniment length (tokens), in ``batches``' order."""
    return [int(batches[i][1].shape[1]) for i in range(len(batches))]


def median_length_batch(
    batches: Sequence[Any], lengths: Sequence[int] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The batch of median padded accompaniment length among ``batches`` (a
    :class:`~pianoacc_utils.training.SegmentBatches`, in its current epoch's order): a
    typical step to time, neither the shortest nor the longest. ``lengths``: their
    :func:`padded_lengths`, when the caller has them already."""
    lengths = padded_lengths(batches) if lengths is None else lengths
    return batches[int(np.argsort(lengths, kind="stable")[len(lengths) // 2])]


@contextlib.contextmanager
def _quiet_retracing_warnings() -> Iterator[None]:
    """Silence TensorFlow's "triggered tf.function retracing" warnings: a new model per
    length traces a new training step on purpose."""
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
