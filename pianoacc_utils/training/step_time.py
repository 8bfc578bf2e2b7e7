"""Training-step time of the FNet and Transformer models at growing sequence lengths.

The two encoders differ most in cost (attention grows with the square of the melody
length, the Fourier mixing almost linearly), so :func:`measure_step_time` times full
training steps (forward, backward, update) of a fresh model of each length, on random
tokens with no padding. Notebook 05 and ``benchmarks/training_speed.py`` use it; the
measured figures live in ``benchmarks/results/training_speed.json``.

What is timed sits here, in the training stage, because it builds the model and compiles
it with the training loss and optimizer; how it is timed (warm-up, timed steps, median,
fastest) is :func:`pianoacc_utils.backends.speed.time_steps`, which knows no model.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from pianoacc_utils.backends.speed import quiet_retracing_warnings, time_steps
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

    For each length ``L`` (tokens) a fresh model gets ``melody_length =
    accompaniment_length = L`` and trains on a random full-length batch (melody and
    accompaniment both ``L`` tokens, no padding): one warm-up step (tracing /
    compilation) is discarded, then at least ``steps`` steps are timed, more while less
    than ``min_seconds`` have been timed (:func:`~pianoacc_utils.backends.speed.time_steps`).
    Rows: ``kind``, ``length``, ``batch_size``, ``steps``, ``ms_per_step`` (median),
    ``ms_per_step_min`` (fastest, less sensitive to other processes),
    ``tokens_per_second`` (accompaniment tokens, from the median), ``warmup_seconds``,
    ``parameters``.
    """
    rows = []
    with quiet_retracing_warnings():  # a new model per length traces a new step
        for length in map(int, lengths):
            keras.utils.set_random_seed(seed)
            config = dataclasses.replace(
                model_config, kind=kind, melody_length=length, accompaniment_length=length
            )
            model = compile_model(build_model(config), TrainConfig(warmup_steps=10))
            inputs, target = random_batch(config, batch_size, seed)
            timed = time_steps(functools.partial(model.train_on_batch, inputs, target),
                               warmup=1, steps=steps, min_seconds=min_seconds)
            rows.append({
                "kind": kind,
                "length": length,
                "batch_size": batch_size,
                "steps": len(timed.seconds),
                "ms_per_step": round(1000 * timed.median, 1),
                "ms_per_step_min": round(1000 * timed.fastest, 1),
                "tokens_per_second": round(batch_size * length / timed.median, 1),
                "warmup_seconds": round(timed.warmup_seconds, 2),
                "parameters": count_parameters(model)["total"],
            })
    return rows


def random_batch(
    config: ModelConfig, batch_size: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Random tokens (no special tokens, no padding) filling the model's whole melody and
    accompaniment lengths: inputs and target of one training step, ``batch_size`` rows."""
    rng = np.random.default_rng(seed)
    vocabulary = config.vocabulary_size

    def tokens(length: int) -> np.ndarray:
        return rng.integers(3, vocabulary, (batch_size, length)).astype("int32")

    inputs = {
        "melody": tokens(config.melody_length),
        "decoder_input": tokens(config.accompaniment_length),
    }
    return inputs, tokens(config.accompaniment_length)
