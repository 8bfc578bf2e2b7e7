"""The training objective: masked next-token cross-entropy, its metrics and the learning rate.

Targets are padded with :data:`~pianoacc_utils.training.batches.PAD_ID` (0); padding
positions must not count, or short segments would be judged on predicting padding.
:class:`MaskedSparseCrossentropy` is the mean cross-entropy in nats per real target token
of a batch (optionally label-smoothed), :class:`MaskedAccuracy` the share of real tokens
predicted exactly (arg-max) and :class:`Perplexity` ``exp`` of the mean cross-entropy over
all real tokens of an epoch. :class:`WarmupSchedule` is the learning rate per optimizer
step (linear warm-up, then decay), and :func:`compile_model` puts them together with AdamW.
The classes are registered Keras objects, so a checkpoint loads with them.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.models.seq2seq import AccompanimentModel
from pianoacc_utils.training.batches import PAD_ID
from pianoacc_utils.training.profiles import TrainConfig

# --------------------------------------------------------------------------- loss, metrics


def token_crossentropy(y_true: Any, y_pred: Any, label_smoothing: float = 0.0) -> tuple[Any, Any]:
    """Per-token cross-entropy (nats) of logits ``y_pred`` (B, L, V) against token ids
    ``y_true`` (B, L), and the float mask (B, L) of real targets (not padding).

    The loss and the perplexity both average it over the mask only, so that padding adds
    nothing; ``label_smoothing`` mixes in the mean over the vocabulary (loss only)."""
    labels = ops.cast(y_true, "int32")
    log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
    nll = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], axis=-1), axis=-1)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
    mask = ops.cast(ops.not_equal(labels, PAD_ID), "float32")
    return nll, mask


def _whole_batch(size: Any, count: Any) -> tuple[Any, Any]:
    """``(size, count)`` of the whole batch when each of several TensorFlow replicas
    holds a share of its rows (``MirroredStrategy``): the sums over the replicas.
    Elsewhere, JAX's data parallelism included, the arrays already are the whole batch."""
    if keras.backend.backend() != "tensorflow":
        return size, count
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return size, count
    count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
    return size * context.num_replicas_in_sync, count


@keras.saving.register_keras_serializable(package="pianoacc")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy from logits, mean over non-padding targets.

    Padding targets (id 0) get weight 0 and the others ``size / count`` so that
    Keras' ``sum_over_batch_size`` reduction yields the mean over real tokens of the
    batch. Under ``tf.distribute`` each replica's share is weighted by the whole
    batch's size and token count (Keras then divides by the replicas and sums their
    gradients), so the loss is the mean over the whole batch's tokens, as on one
    device, however unevenly the real tokens fall on the replicas.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        name: str = "masked_sparse_crossentropy",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = label_smoothing

    def call(self, y_true: Any, y_pred: Any) -> Any:
        nll, mask = token_crossentropy(y_true, y_pred, self.label_smoothing)
        size, count = _whole_batch(ops.cast(ops.size(mask), "float32"), ops.sum(mask))
        return nll * mask * ops.divide_no_nan(size, count)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class _MaskedTokenMetric(keras.metrics.Metric):
    """Accumulates a per-token quantity and the number of real (non-padding) tokens."""

    def __init__(self, name: str, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), initializer="zeros", aggregation="sum", name="total")
        self.count = self.add_variable((), initializer="zeros", aggregation="sum", name="count")

    def _values(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values, mask = self._values(y_true, y_pred)
        if sample_weight is not None:
            mask = mask * ops.cast(sample_weight, "float32")
        self.total.assign_add(ops.cast(ops.sum(values * mask), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(mask), self.dtype))

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="pianoacc")
class MaskedAccuracy(_MaskedTokenMetric):
    """Fraction of real target tokens whose arg-max prediction is right."""

    def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        labels = ops.cast(y_true, "int32")
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        hits = ops.cast(ops.equal(predicted, labels), "float32")
        return hits, ops.cast(ops.not_equal(labels, PAD_ID), "float32")

    def result(self) -> Any:
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="pianoacc")
class Perplexity(_MaskedTokenMetric):
    """``exp`` of the mean cross-entropy (nats) over all real target tokens seen."""

    def __init__(self, name: str = "perplexity", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        return token_crossentropy(y_true, y_pred)

    def result(self) -> Any:
        return ops.exp(ops.divide_no_nan(self.total, self.count))


@keras.saving.register_keras_serializable(package="pianoacc")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_learning_rate`` over ``warmup_steps`` optimizer
    steps, then ``"inverse_sqrt"`` decay (``peak * sqrt(warmup / step)``) or
    ``"cosine"`` decay to ``final_learning_rate`` at ``decay_steps``."""

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        decay: str = "inverse_sqrt",
        decay_steps: int | None = None,
        final_learning_rate: float = 0.0,
    ) -> None:
        if decay not in ("inverse_sqrt", "cosine"):
            raise PianoaccError(f"learning-rate decay {decay!r}: expected inverse_sqrt or cosine")
        if decay == "cosine" and not decay_steps:
            raise PianoaccError("cosine learning-rate decay needs decay_steps")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = max(int(warmup_steps), 1)
        self.decay = decay
        self.decay_steps = decay_steps
        self.final_learning_rate = float(final_learning_rate)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32") + 1.0
        warmup = float(self.warmup_steps)
        rising = self.peak_learning_rate * step / warmup
        if self.decay == "inverse_sqrt":
            falling = self.peak_learning_rate * ops.sqrt(warmup / ops.maximum(step, warmup))
        else:
            span = max(float(self.decay_steps) - warmup, 1.0)
            progress = ops.clip((step - warmup) / span, 0.0, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
            falling = self.final_learning_rate + (
                self.peak_learning_rate - self.final_learning_rate
            ) * cosine
        return ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "decay_steps": self.decay_steps,
            "final_learning_rate": self.final_learning_rate,
        }


def compile_model(model: AccompanimentModel, config: TrainConfig) -> AccompanimentModel:
    """Compile with AdamW on :class:`WarmupSchedule`, the masked loss and metrics."""
    schedule = WarmupSchedule(
        config.learning_rate, config.warmup_steps, config.decay, config.decay_steps
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        clipnorm=config.clipnorm,
        beta_2=0.98,
    )
    model.compile(
        optimizer=optimizer,
        loss=MaskedSparseCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[MaskedAccuracy(), Perplexity()],
    )
    if model.built:
        # The optimizer's slots made now, not inside the first training step: under
        # TensorFlow that step would otherwise be traced twice (once to create them),
        # which doubles its tracing time.
        model.optimizer.build(model.trainable_variables)
    return model
