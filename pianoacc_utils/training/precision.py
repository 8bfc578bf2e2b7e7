"""The compute precision of a training run on CPU cores, chosen by measurement.

Whether mixed bfloat16 (bfloat16 compute, float32 weights and logits) trains faster than
float32 on a CPU depends on the processor, the backend and the model's size: on 2 cores of
an Intel Xeon with AMX, under TensorFlow, the ``small`` profile's FNet trained at 0.71x
float32's speed in mixed bfloat16 and the ``cpu`` profile's at 2.56x
(``benchmarks/results/training_throughput.md``). No rule on the processor's flags picks
right for both, so :func:`choose_for_run` times the run's own model on a typical batch of
its own data in each precision before training starts, and keeps the faster.

bfloat16 rounds the inputs of every matrix product to 8 significant bits, so speed alone
does not let it in: it is kept only when a short run of both precisions from the same
weights on the same batches (:func:`loss_check`, ``pianoacc train --loss-check``) shows
that it does not raise the validation loss by more than :data:`LOSS_TOLERANCE`. Without
that check the run trains in float32 and says how much faster bfloat16 was. Where the
processor has no bfloat16 units nothing is timed (bfloat16 is emulated there and slower:
float32).

What is chosen, why, the step times and the processor go into the run's ``config.json``
(:meth:`PrecisionChoice.describe`) and its model card (:meth:`PrecisionChoice.summary`).

This module holds the training decision (the rule, the loss check, the records) and what
it times (the run's model, compiled with its optimizer, in a precision policy); the
timing itself (warm-up and timed steps, the two precisions' medians compared, the
processor and backend the timing holds for) is :mod:`pianoacc_utils.backends.speed`,
which the decision calls and which knows no model.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from pianoacc_utils.backends import speed
from pianoacc_utils.common import PianoaccError, processor_flags
from pianoacc_utils.models.config import ModelConfig
from pianoacc_utils.models.seq2seq import build_model
from pianoacc_utils.training.batches import typical_batch
from pianoacc_utils.training.devices import (
    CPU_PRECISION_VARIABLE,
    CPU_PRECISIONS,
    forced_cpu_precision,
    has_bfloat16_units,
    has_gpu,
    precision_policy,
    training_precision,
)
from pianoacc_utils.training.loss import compile_model
from pianoacc_utils.training.profiles import TrainConfig

Batch = tuple[dict[str, np.ndarray], np.ndarray]

TIMING_WARMUP_STEPS = 2
"""Untimed steps per precision: the first traces and compiles the step, the second
creates the optimizer's slots."""

TIMING_STEPS = 3
"""Timed steps per precision; their median is compared."""

MIN_SPEEDUP = 1.05
"""bfloat16 must take at most 1/1.05 of float32's median step: a smaller gain is not worth
its rounding, and 3 steps cannot resolve it (a row's slowest step was up to 1.22x its
fastest on idle cores, ``benchmarks/results/training_throughput.json``)."""

LOSS_CHECK_STEPS = 100
"""Optimizer steps each precision trains in :func:`loss_check`."""

LOSS_CHECK_VALIDATION_BATCHES = 8
"""Validation batches (evenly spaced over the split's length order) the check evaluates."""

LOSS_TOLERANCE = 0.01
"""Nats per token by which bfloat16's validation loss may exceed float32's: 1% of
perplexity. The committed check differed by 0.0002 after 200 steps
(``benchmarks/results/training_throughput.json``, ``loss_check``)."""


# --------------------------------------------------------------------------- records


def bfloat16_keeps_the_loss(
    float32_loss: float, bfloat16_loss: float, tolerance: float = LOSS_TOLERANCE
) -> bool:
    """Whether a bfloat16 run's validation loss (nats per token) is finite and at most
    ``tolerance`` above the float32 run's."""
    return math.isfinite(bfloat16_loss) and bfloat16_loss - float32_loss <= tolerance


@dataclass(frozen=True)
class LossCheck:
    """Validation losses (nats per token) after the same short run in each precision."""

    steps: int
    validation_batches: int
    float32: float
    mixed_bfloat16: float
    tolerance: float = LOSS_TOLERANCE
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bfloat16_keeps_the_loss(self.float32, self.mixed_bfloat16, self.tolerance)

    def describe(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "validation_batches": self.validation_batches,
            "val_loss": {"float32": round(self.float32, 4),
                         "mixed_bfloat16": round(self.mixed_bfloat16, 4)},
            "tolerance": self.tolerance,
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LossCheck:
        losses = values["val_loss"]
        return cls(values["steps"], values["validation_batches"], losses["float32"],
                   losses["mixed_bfloat16"], values["tolerance"], values.get("seconds", 0.0))


@dataclass(frozen=True)
class PrecisionChoice:
    """A run's compute precision and how it was chosen.

    ``step_seconds``: the timed training steps of each precision (seconds; empty when
    nothing was timed); ``loss_check``: the short run of both, when one ran.
    """

    precision: str
    reason: str
    processor: str
    backend: str
    step_seconds: dict[str, list[float]] = field(default_factory=dict)
    loss_check: LossCheck | None = None

    def median_step_seconds(self) -> dict[str, float]:
        return {name: statistics.median(times) for name, times in self.step_seconds.items()}

    def describe(self) -> dict[str, Any]:
        """The record for ``config.json``."""
        return {
            "precision": self.precision,
            "reason": self.reason,
            "processor": self.processor,
            "backend": self.backend,
            "step_seconds": {k: [round(t, 4) for t in v] for k, v in self.step_seconds.items()},
            "median_step_seconds": {k: round(v, 4) for k, v in self.median_step_seconds().items()},
            "loss_check": self.loss_check.describe() if self.loss_check else None,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrecisionChoice:
        check = values.get("loss_check")
        return cls(values["precision"], values["reason"], values["processor"],
                   values["backend"], values.get("step_seconds", {}),
                   LossCheck.from_dict(check) if check else None)

    def summary(self) -> str:
        """One line for a model card or a progress message."""
        return f"{self.precision} ({self.reason}) on {self.processor}, {self.backend}"


# --------------------------------------------------------------------------- the rule


def choose_cpu_precision(
    time_steps: Callable[[str], Sequence[float]],
    check_loss: Callable[[], LossCheck] | None = None,
    fixed: tuple[str, str] | None = None,
    flags: frozenset[str] | None = None,
    processor: str | None = None,
    backend: str | None = None,
) -> PrecisionChoice:
    """The faster of float32 and mixed bfloat16 on these CPU cores, bfloat16 only when it
    also keeps the loss.

    In order: :data:`CPU_PRECISION_VARIABLE` fixes the precision; ``fixed``
    (``(precision, why)``, e.g. a profile's ``cpu_precision``) does; without bfloat16 units
    (``flags``, default this processor's) float32; otherwise ``time_steps(precision)``
    gives each precision's timed step seconds (float32 first,
    :func:`~pianoacc_utils.backends.speed.compare`), and mixed bfloat16 wins when its
    median step is :data:`MIN_SPEEDUP` times shorter and ``check_loss()`` (run only then)
    passes. No check (``check_loss`` ``None``) means float32, with the speed-up named.
    ``processor`` and ``backend`` (recorded): default where this process runs
    (:func:`~pianoacc_utils.backends.speed.timed_on`).
    """
    here = speed.timed_on()
    processor, backend = processor or here[0], backend or here[1]
    forced = forced_cpu_precision()
    if forced:
        return PrecisionChoice(forced, f"set by {CPU_PRECISION_VARIABLE}", processor, backend)
    if fixed:
        precision, why = fixed
        if precision not in CPU_PRECISIONS:
            raise PianoaccError(
                f"cpu_precision {precision!r}: expected one of {', '.join(CPU_PRECISIONS)}"
            )
        return PrecisionChoice(precision, why, processor, backend)
    flags = processor_flags() if flags is None else flags
    if not has_bfloat16_units(flags):
        return PrecisionChoice("float32", "no bfloat16 units", processor, backend)
    baseline, candidate = CPU_PRECISIONS
    timings = speed.compare(time_steps, baseline, candidate)
    timed = timings.describe()

    def choice(precision: str, reason: str, check: LossCheck | None = None) -> PrecisionChoice:
        return PrecisionChoice(precision, reason, processor, backend, timings.seconds, check)

    if not timings.candidate_faster(MIN_SPEEDUP):
        return choice("float32", f"bfloat16 not {MIN_SPEEDUP}x as fast: {timed}")
    if check_loss is None:
        return choice("float32", f"bfloat16 faster, {timed}, but not loss-checked: "
                      "train with --loss-check to allow it")
    check = check_loss()
    losses = (f"validation loss {check.mixed_bfloat16:.4f} in bfloat16 against "
              f"{check.float32:.4f} after {check.steps} steps")
    if not check.passed:
        return choice("float32", f"bfloat16 faster, {timed}, but it raised the {losses} "
                      f"(tolerance {check.tolerance})", check)
    return choice("mixed_bfloat16", f"bfloat16 faster, {timed}, and keeps the loss: {losses}",
                  check)


# --------------------------------------------------------------------------- measurements


def time_precision(
    model_config: ModelConfig,
    settings: TrainConfig,
    batch: Batch,
    precision: str,
    warmup: int = TIMING_WARMUP_STEPS,
    steps: int = TIMING_STEPS,
) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, backward, update) of a fresh
    model of ``model_config`` compiled with ``settings``, on ``batch``, in ``precision``,
    after ``warmup`` untimed ones (:func:`~pianoacc_utils.backends.speed.time_steps`). The
    global dtype policy is restored afterwards."""
    with precision_policy(True, precision):
        keras.utils.set_random_seed(settings.seed)
        model = compile_model(build_model(model_config), settings)
        timed = speed.time_steps(functools.partial(model.train_on_batch, *batch), warmup, steps)
    return list(timed.seconds)


def validation_loss(model: keras.Model, batches: Sequence[Batch]) -> float:
    """The model's loss over ``batches`` (nats per real token: each batch's mean loss
    weighted by its real target tokens)."""
    losses, tokens = [], []
    for inputs, target in batches:
        losses.append(float(np.ravel(model.test_on_batch(inputs, target))[0]))
        tokens.append(int((np.asarray(target) != 0).sum()))
    return float(np.average(losses, weights=tokens))


def loss_check(
    model_config: ModelConfig,
    settings: TrainConfig,
    train_batches: Sequence[Batch],
    validation_batches: Sequence[Batch],
    steps: int = LOSS_CHECK_STEPS,
    validation_count: int = LOSS_CHECK_VALIDATION_BATCHES,
) -> LossCheck:
    """Train ``steps`` steps in float32 and in mixed bfloat16 from the same initial
    weights on the same batches (the first ``steps`` of ``train_batches``, cycled) with
    the run's optimizer, and compare the validation losses on ``validation_count``
    batches spread evenly over ``validation_batches``."""
    began = time.perf_counter()
    count = min(validation_count, len(validation_batches))
    chosen = np.unique(np.linspace(0, len(validation_batches) - 1, count).round().astype(int))
    validation = [validation_batches[int(i)] for i in chosen]
    keras.utils.set_random_seed(settings.seed)
    with precision_policy(True, "float32"):
        initial = build_model(model_config).get_weights()
    losses = {}
    for precision in CPU_PRECISIONS:
        with precision_policy(True, precision):
            keras.utils.set_random_seed(settings.seed)  # the same dropout masks
            model = build_model(model_config)
            model.set_weights(initial)
            model = compile_model(model, settings)
            for step in range(steps):
                model.train_on_batch(*train_batches[step % len(train_batches)])
            losses[precision] = validation_loss(model, validation)
    return LossCheck(steps, len(validation), losses["float32"], losses["mixed_bfloat16"],
                     seconds=time.perf_counter() - began)


def choose_for_run(
    model_config: ModelConfig,
    settings: TrainConfig,
    train_batches: Any,
    validation_batches: Any,
    replicas: int = 1,
    check_loss: bool = False,
    earlier: dict[str, Any] | None = None,
) -> PrecisionChoice:
    """The precision a training run uses, before it starts (see the module docstring).

    On a GPU the profile's ``mixed_precision`` decides (float16), nothing is timed. On CPU
    cores :func:`choose_cpu_precision` with the run's own model and a typical batch of its
    own data (:func:`typical_batch`); ``check_loss``: run :func:`loss_check` where bfloat16
    is faster. ``earlier``: the choice recorded by the run being resumed, kept when it was
    made on this processor and backend (a resume does not switch precision mid-run).
    ``replicas`` > 1 (data parallel over logical CPUs): float32, not timed.
    """
    processor, backend = speed.timed_on()
    if has_gpu():
        precision = training_precision(settings.mixed_precision)
        return PrecisionChoice(precision, "on a GPU the profile's mixed_precision decides",
                               processor, backend)
    if (earlier and forced_cpu_precision() is None and earlier.get("processor") == processor
            and earlier.get("backend") == backend):
        return PrecisionChoice.from_dict(earlier)
    fixed = None
    if settings.cpu_precision:
        fixed = (settings.cpu_precision, "set by the profile (TrainConfig.cpu_precision)")
    elif replicas > 1:
        fixed = ("float32", f"data parallel over {replicas} CPU devices: not timed")
    batch: list[Batch] = []

    def time_steps(precision: str) -> list[float]:
        if not batch:
            batch.append(typical_batch(train_batches))
        return time_precision(model_config, settings, batch[0], precision)

    def run_check() -> LossCheck:
        return loss_check(model_config, settings, train_batches, validation_batches)

    return choose_cpu_precision(time_steps, run_check if check_loss else None, fixed,
                                processor=processor, backend=backend)
