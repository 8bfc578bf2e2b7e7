"""Training: teacher-forced batches, masked loss and metrics, schedules, profiles, ``train``.

Teacher forcing
---------------
Each prepared pair (melody tokens, accompaniment tokens; no START/END) becomes

* ``melody``: the melody tokens, truncated to ``melody_length``;
* ``decoder_input``: ``START + accompaniment``, truncated to ``accompaniment_length``;
* ``target``: ``accompaniment + END``, truncated the same way (the next token of
  every decoder input position).

A sequence longer than the model keeps its beginning and its target then ends
without END. Cutting long sequences into later windows was rejected: a window
starting mid-segment would be decoded from START against a melody that starts
elsewhere, so its timing would not line up; profiles instead choose segment
lengths that fit (8 bars fit in 512 tokens; 32-bar accompaniments average ~1440
tokens, 80% exceed 1024, hence 2048 in the ``full`` profile).

Batches
-------
:class:`SegmentBatches` (a ``keras.utils.PyDataset``, plain numpy, so TensorFlow
and JAX both train from it) sorts sequences by length inside shuffled pools
("bucketing") and pads each batch with 0 only up to its longest melody and
accompaniment, rounded up to ``length_multiple`` tokens (fewer distinct shapes
for compiled steps). The last, smaller batch is completed with empty rows so
every batch has ``batch_size`` rows; empty rows carry no loss. Short padding also
matters for FNet, whose Fourier mixing cannot mask padding
(see :mod:`pianoacc_utils.models`).

Loss and metrics
----------------
Sparse cross-entropy from logits averaged over real target tokens only (id 0
never counts), optional label smoothing; metrics: masked token accuracy and
perplexity (``exp`` of the token-weighted mean cross-entropy over the epoch).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from pianoacc_utils import harmony
from pianoacc_utils.common import PianoaccError, config_dict, write_atomic, write_json
from pianoacc_utils.dataset import PrepareConfig, PreparedSplit, load_split, prepare
from pianoacc_utils.models import (  # sets the backend
    AccompanimentModel,
    ModelConfig,
    build_model,
    pad_bar_lines,
)
from pianoacc_utils.tokenizer import EventTokenizer

import keras  # noqa: E402  (after models: the backend default is set there)
from keras import ops  # noqa: E402

PAD_ID = EventTokenizer.pad_id
START_ID = EventTokenizer.start_id
END_ID = EventTokenizer.end_id


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Steps are optimizer updates (batches), not epochs.

    ``learning_rate`` is the peak reached after ``warmup_steps``; ``decay`` is
    ``"inverse_sqrt"`` or ``"cosine"`` (cosine reaches 0 at ``decay_steps``).
    ``max_train_segments``/``max_validation_segments`` take a fixed random subset
    (``None``: all). ``length_multiple`` rounds padded batch lengths up (tokens).
    ``mixed_precision`` applies on a GPU only (float16 compute, float32 logits).
    ``harmony_dropout``: share of training segments whose chords are hidden (an
    all-zero harmony table), so that the model also accompanies a melody alone.
    """

    batch_size: int = 16
    epochs: int = 10
    learning_rate: float = 5e-4
    warmup_steps: int = 1000
    decay: str = "inverse_sqrt"
    decay_steps: int | None = None
    weight_decay: float = 0.01
    clipnorm: float | None = 1.0
    label_smoothing: float = 0.0
    seed: int = 909
    mixed_precision: bool = False
    max_train_segments: int | None = None
    max_validation_segments: int | None = None
    length_multiple: int = 16
    pool_batches: int = 32
    harmony_dropout: float = 0.1


@dataclass(frozen=True)
class Profile:
    """Data, model and training settings that belong together (one per machine size).

    ``model.kind`` is a placeholder: :meth:`model_config` sets the kind of a run.
    """

    name: str
    prepare: PrepareConfig
    model: ModelConfig
    train: TrainConfig
    description: str = ""

    def model_config(self, kind: str) -> ModelConfig:
        """The profile's model size with ``kind`` (``"fnet"`` or ``"transformer"``)."""
        return dataclasses.replace(self.model, kind=kind)

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Profile":
        """Inverse of :meth:`to_dict` (e.g. a run's ``config.json["profile"]``)."""
        prep = dict(values["prepare"])
        prep["transpositions"] = tuple(prep["transpositions"])
        return cls(
            name=values["name"],
            prepare=PrepareConfig(**prep),
            model=ModelConfig.from_dict(values["model"]),
            train=TrainConfig(**values["train"]),
            description=values.get("description", ""),
        )


REBAR_SHARES = {"rebar_3_4": 0.2, "rebar_2_4": 0.2}
"""Shares of the training segments every profile re-bars into 3/4 and 2/4
(``PrepareConfig``, ``data.rebar``): POP909 is nearly all 4/4."""

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="CI smoke run: 4-bar segments of 100 songs, tiny model, < 1 min on 2 CPU cores",
        prepare=PrepareConfig(
            bars_per_segment=4, hop_bars=4, songs=100, max_tokens=256, **REBAR_SHARES
        ),
        model=ModelConfig(
            melody_length=128,
            accompaniment_length=256,
            hidden_dim=64,
            num_heads=2,
            intermediate_dim=128,
            encoder_layers=1,
            decoder_layers=1,
            dropout=0.0,
        ),
        train=TrainConfig(
            batch_size=16,
            epochs=4,
            learning_rate=2e-3,
            warmup_steps=50,
            max_train_segments=768,
            max_validation_segments=160,
        ),
    ),
    "small": Profile(
        name="small",
        description=(
            "about 75 minutes for both models side by side on 2 CPU cores: 8-bar segments of "
            "all songs (a fifth of the training ones re-barred into 3/4, a fifth into 2/4), "
            "a 1M-parameter model, 16 epochs"
        ),
        prepare=PrepareConfig(
            bars_per_segment=8, hop_bars=8, max_tokens=512, **REBAR_SHARES
        ),
        model=ModelConfig(
            melody_length=256,
            accompaniment_length=512,
            hidden_dim=128,
            num_heads=4,
            intermediate_dim=512,
            encoder_layers=2,
            decoder_layers=2,
            dropout=0.0,
        ),
        train=TrainConfig(batch_size=32, epochs=16, learning_rate=1e-3, warmup_steps=400),
    ),
    "cpu": Profile(
        name="cpu",
        description="a laptop overnight: 8-bar segments (hop 4), transpositions -3..3",
        prepare=PrepareConfig(
            bars_per_segment=8,
            hop_bars=4,
            transpositions=tuple(range(-3, 4)),
            max_tokens=512,
            **REBAR_SHARES,
        ),
        model=ModelConfig(
            melody_length=256,
            accompaniment_length=512,
            hidden_dim=256,
            num_heads=4,
            intermediate_dim=1024,
            encoder_layers=4,
            decoder_layers=4,
            dropout=0.1,
        ),
        train=TrainConfig(batch_size=16, epochs=10, learning_rate=5e-4, warmup_steps=2000),
    ),
    "full": Profile(
        name="full",
        description=(
            "GPU, the original's scale: 32-bar segments; a 32-bar accompaniment averages "
            "~1440 tokens and 80% exceed 1024, so the decoder takes 2048"
        ),
        prepare=PrepareConfig(
            bars_per_segment=32,
            hop_bars=16,
            transpositions=tuple(range(-3, 4)),
            max_tokens=2048,
            **REBAR_SHARES,
        ),
        model=ModelConfig(
            melody_length=1024,
            accompaniment_length=2048,
            hidden_dim=512,
            num_heads=8,
            intermediate_dim=2048,
            encoder_layers=6,
            decoder_layers=6,
            dropout=0.1,
        ),
        train=TrainConfig(
            batch_size=8,
            epochs=30,
            learning_rate=3e-4,
            warmup_steps=4000,
            mixed_precision=True,
            length_multiple=64,
        ),
    ),
}


def get_profile(profile: str | Profile) -> Profile:
    """A :data:`PROFILES` entry by name (or the profile itself)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise PianoaccError(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
    return PROFILES[profile]


# --------------------------------------------------------------------------- batches


def teacher_forcing(
    accompaniment: Sequence[int], accompaniment_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accompaniment tokens -> ``(decoder_input, target)``, both at most
    ``accompaniment_length`` tokens: ``START + acc`` and ``acc + END`` (truncated)."""
    tokens = np.asarray(accompaniment, dtype=np.int32)
    sequence = np.concatenate([[START_ID], tokens, [END_ID]]).astype(np.int32)
    return sequence[:-1][:accompaniment_length], sequence[1:][:accompaniment_length]


def padded_length(longest: int, multiple: int, limit: int) -> int:
    """``longest`` rounded up to a multiple of ``multiple`` tokens, at most ``limit``
    (and at least 1)."""
    rounded = -(-max(longest, 1) // multiple) * multiple
    return max(1, min(rounded, limit))


def pad_batch(sequences: Sequence[np.ndarray], length: int, rows: int | None = None) -> np.ndarray:
    """Right-pad int sequences with 0 into an ``(rows, length)`` int32 array
    (extra rows stay all padding; longer sequences are cut)."""
    out = np.zeros((rows or len(sequences), length), dtype=np.int32)
    for i, sequence in enumerate(sequences):
        n = min(len(sequence), length)
        out[i, :n] = sequence[:n]
    return out


class SegmentBatches(keras.utils.PyDataset):
    """Teacher-forced, length-bucketed batches from a :class:`PreparedSplit`.

    Item ``i`` is ``({"melody": (B, Lm), "decoder_input": (B, La), "harmony": (B, NB, 24),
    "bars": (B, K)}, target (B, La))``: token ids int32 padded with 0 (see the module
    docstring), the harmony tables float32 padded with no-chord rows, and the bar lines
    int32 padded with :data:`~pianoacc_utils.models.NO_BAR`. With ``harmony_dropout`` > 0,
    that share of the rows (drawn anew each epoch) gets an all-zero table. With ``shuffle`` the
    sequences are shuffled each epoch, sorted by accompaniment length inside
    pools of ``pool_batches`` batches, and the batches shuffled; without it
    batches follow length order (validation). ``max_segments`` keeps a fixed
    seeded random subset. ``epoch`` sets the shuffle of the first epoch (resume).
    """

    def __init__(
        self,
        split: PreparedSplit,
        model_config: ModelConfig,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        length_multiple: int = 16,
        pool_batches: int = 32,
        max_segments: int | None = None,
        epoch: int = 0,
        harmony_dropout: float = 0.0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        if len(split) == 0:
            raise PianoaccError("prepared split is empty: no segments to train on")
        self.model_config = model_config
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.length_multiple = length_multiple
        self.pool_batches = pool_batches
        chosen = np.arange(len(split))
        if max_segments is not None and max_segments < len(split):
            chosen = np.sort(np.random.default_rng(seed).permutation(len(split))[:max_segments])
        self.melodies = [
            split.melody(i)[: model_config.melody_length].astype(np.int32) for i in chosen
        ]
        pairs = [
            teacher_forcing(split.accompaniment(i), model_config.accompaniment_length)
            for i in chosen
        ]
        self.decoder_inputs = [p[0] for p in pairs]
        self.targets = [p[1] for p in pairs]
        self.lengths = np.array([len(d) for d in self.decoder_inputs])
        self.harmony = [split.harmony_table(i) for i in chosen]
        self.bars = [split.bar_lines(i) for i in chosen]
        self.harmony_dropout = harmony_dropout
        self.epoch = epoch
        self._plan = self._make_plan()

    @property
    def num_segments(self) -> int:
        return len(self.melodies)

    @property
    def num_tokens(self) -> int:
        """Target tokens (loss positions) in one epoch."""
        return int(self.lengths.sum())

    def _make_plan(self) -> list[np.ndarray]:
        n, size = self.num_segments, self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + size] for i in range(0, n, size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        pool = size * self.pool_batches
        batches = []
        for begin in range(0, n, pool):
            members = order[begin : begin + pool]
            members = members[np.argsort(self.lengths[members], kind="stable")]
            batches += [members[i : i + size] for i in range(0, len(members), size)]
        rng.shuffle(batches)
        return batches

    def __len__(self) -> int:
        return len(self._plan)

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        members = self._plan[index]
        config = self.model_config
        melodies = [self.melodies[i] for i in members]
        melody_length = padded_length(
            max(len(m) for m in melodies), self.length_multiple, config.melody_length
        )
        decoder_length = padded_length(
            int(self.lengths[members].max()), self.length_multiple, config.accompaniment_length
        )
        rows = self.batch_size
        tables = harmony.pad_tables([self.harmony[i] for i in members], rows=rows)
        if self.harmony_dropout > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            tables[: len(members)][rng.random(len(members)) < self.harmony_dropout] = 0.0
        inputs = {
            "melody": pad_batch(melodies, melody_length, rows),
            "decoder_input": pad_batch(
                [self.decoder_inputs[i] for i in members], decoder_length, rows
            ),
            "harmony": tables,
            "bars": pad_bar_lines([self.bars[i] for i in members], rows),
        }
        return inputs, pad_batch([self.targets[i] for i in members], decoder_length, rows)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._plan = self._make_plan()

    def for_fit(self) -> Any:
        """What ``model.fit`` should get: this object, or under TensorFlow a
        ``tf.data.Dataset`` over it whose shapes leave the lengths open (Keras
        would otherwise fix them from the first two batches)."""
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf

        def epoch_batches() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
            for index in range(len(self)):
                yield self[index]
            self.on_epoch_end()

        spec = tf.TensorSpec((self.batch_size, None), tf.int32)
        tables = tf.TensorSpec((self.batch_size, None, harmony.HARMONY_DIM), tf.float32)
        inputs = {"melody": spec, "decoder_input": spec, "harmony": tables, "bars": spec}
        dataset = tf.data.Dataset.from_generator(epoch_batches, output_signature=(inputs, spec))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        return dataset.prefetch(2)


# --------------------------------------------------------------------------- loss, metrics


def _token_crossentropy(y_true: Any, y_pred: Any, label_smoothing: float = 0.0) -> tuple[Any, Any]:
    """Per-token cross-entropy (nats) and the float mask of real targets."""
    labels = ops.cast(y_true, "int32")
    log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
    nll = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], axis=-1), axis=-1)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
    mask = ops.cast(ops.not_equal(labels, PAD_ID), "float32")
    return nll, mask


@keras.saving.register_keras_serializable(package="pianoacc")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy from logits, mean over non-padding targets.

    Padding targets (id 0) get weight 0 and the others ``size / count`` so that
    Keras' ``sum_over_batch_size`` reduction (which also scales the loss for
    ``tf.distribute``) yields the mean over real tokens of the batch.
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
        nll, mask = _token_crossentropy(y_true, y_pred, self.label_smoothing)
        size = ops.cast(ops.size(mask), "float32")
        return nll * mask * ops.divide_no_nan(size, ops.sum(mask))

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
        return _token_crossentropy(y_true, y_pred)

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
    return model


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class StrategyInfo:
    """How training uses the visible devices.

    ``name`` is ``"default"`` (one device), ``"mirrored"`` (TensorFlow
    ``MirroredStrategy``) or ``"data_parallel"`` (``keras.distribution.DataParallel``
    on JAX); ``devices`` names the replicas. Build, compile and fit inside
    :meth:`scope`.
    """

    name: str
    devices: tuple[str, ...]
    backend: str
    strategy: Any = field(default=None, compare=False, repr=False)

    @property
    def replicas(self) -> int:
        return len(self.devices) if self.name != "default" else 1

    def scope(self) -> contextlib.AbstractContextManager:
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "devices": list(self.devices), "backend": self.backend}


def pick_strategy() -> StrategyInfo:
    """Data parallelism over every visible accelerator (or logical CPU when there
    is no accelerator) when there is more than one; otherwise the default."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        names = tuple(d.name for d in devices)
        if len(names) > 1:
            mirrored = tf.distribute.MirroredStrategy(list(names))
            return StrategyInfo("mirrored", names, backend, mirrored)
        return StrategyInfo("default", names, backend)
    if backend == "jax":
        names = tuple(keras.distribution.list_devices())
        if len(names) > 1:
            distribution = keras.distribution.DataParallel(devices=list(names))
            return StrategyInfo("data_parallel", names, backend, distribution)
        return StrategyInfo("default", names, backend)
    return StrategyInfo("default", (), backend)


def _has_gpu() -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except Exception:  # noqa: BLE001  (no GPU platform at all)
        return False


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[str]:
    """Use ``mixed_float16`` inside the block when ``mixed`` and a GPU is visible;
    restores the previous global policy afterwards. Yields the policy name."""
    previous = keras.mixed_precision.global_policy().name
    name = "mixed_float16" if mixed and _has_gpu() else previous
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


# --------------------------------------------------------------------------- train


class _LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs (``lr``)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["lr"] = float(np.asarray(ops.convert_to_numpy(rate)))


class _EpochSummaries(keras.callbacks.Callback):
    """TensorBoard scalars per epoch: ``logs/train`` and ``logs/validation``
    (tags ``epoch_loss``, ``epoch_accuracy``, ...), as Keras' TensorBoard
    callback writes them, without needing the ``tensorboard`` package itself."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        self._metadata = summary_pb2.SummaryMetadata(plugin_data=plugin)
        self._writers = {
            part: tf.summary.create_file_writer(str(log_dir / part))
            for part in ("train", "validation")
        }

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        tf = self._tf
        for key, value in (logs or {}).items():
            part, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with tf.device("/cpu:0"), self._writers[part].as_default():
                tf.summary.write(
                    f"epoch_{name}", tf.constant(float(value)), step=epoch, metadata=self._metadata
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()


class _TrainingState(keras.callbacks.Callback):
    """Writes ``training_state.json`` after each epoch (after ``last.keras``)."""

    def __init__(self, path: Path, best_val_loss: float, extra: dict[str, Any]) -> None:
        super().__init__()
        self.path = path
        self.best_val_loss = best_val_loss
        self.extra = extra
        self.began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        val_loss = (logs or {}).get("val_loss")
        if val_loss is not None and val_loss < self.best_val_loss:
            self.best_val_loss = float(val_loss)
        state = dict(self.extra)
        state.update(
            epochs_done=epoch + 1,
            optimizer_iterations=int(ops.convert_to_numpy(self.model.optimizer.iterations)),
            best_val_loss=self.best_val_loss,
            seconds_this_run=round(time.perf_counter() - self.began, 2),
        )
        write_json(self.path, state)


def read_history(out_dir: str | Path) -> dict[str, list[float]]:
    """``history.csv`` of a run as columns (``epoch`` first, then loss, val_loss, ...)."""
    path = Path(out_dir) / "history.csv"
    if not path.is_file():
        raise PianoaccError(f"{path}: no training history here")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            number = float(value) if value not in ("", None) else math.nan
            columns.setdefault(key, []).append(number)
    if "epoch" in columns:
        columns["epoch"] = [int(e) for e in columns["epoch"]]
    return columns


def _check_resume(out: Path, profile: Profile, kind: str) -> dict[str, Any]:
    for name in ("config.json", "training_state.json", "last.keras"):
        if not (out / name).is_file():
            raise PianoaccError(f"{out / name}: missing, cannot resume this run")
    saved = json.loads((out / "config.json").read_text())
    if saved.get("kind") != kind or saved.get("profile", {}).get("name") != profile.name:
        was = f"{saved.get('kind')}/{saved.get('profile', {}).get('name')}"
        raise PianoaccError(f"{out / 'config.json'}: run was {was}, not {kind}/{profile.name}")
    return json.loads((out / "training_state.json").read_text())


def train(
    profile_or_name: str | Profile,
    kind: str,
    out_dir: str | Path,
    epochs: int | None = None,
    resume: bool = False,
    progress: bool = True,
    data: str | Path | None = None,
) -> dict[str, list[float]]:
    """Train one model and return the whole run's history (all epochs so far).

    ``epochs``: epochs to run now (default: the profile's; on resume, the epochs
    the profile has left). ``data``: a prepared folder (default: the profile's
    data, prepared and cached on first use). Writes into ``out_dir``:
    ``config.json`` (profile + kind), ``history.csv`` (one row per epoch;
    appended on resume), ``logs/`` (TensorBoard), ``best.keras`` (lowest
    val_loss), ``last.keras`` (with optimizer state) and ``training_state.json``
    (epochs done, optimizer step, best val_loss). Resume continues the epoch
    numbering and the learning-rate schedule from ``last.keras``.

    The compute precision is not stored in a checkpoint: a model loads in the
    global dtype policy of the process (float32 unless set), so a checkpoint
    trained with mixed precision on a GPU runs in float32 on a CPU; resuming
    restores the profile's policy.
    """
    profile = get_profile(profile_or_name)
    model_config = profile.model_config(kind)
    settings = profile.train
    out = Path(out_dir)
    state: dict[str, Any] = {}
    if resume:
        state = _check_resume(out, profile, kind)
    elif (out / "last.keras").exists():
        raise PianoaccError(
            f"{out}: already holds a training run; resume it or choose another folder"
        )
    initial_epoch = int(state.get("epochs_done", 0))
    if epochs is None:
        epochs = settings.epochs - initial_epoch
        if epochs <= 0:
            raise PianoaccError(
                f"{out}: all {settings.epochs} epochs of profile {profile.name!r} are done; "
                "ask for more epochs explicitly"
            )
    folder = Path(data) if data else prepare(profile.prepare, progress=progress)
    train_split = load_split(folder, "train")
    validation_split = load_split(folder, "validation")
    keras.utils.set_random_seed(settings.seed + initial_epoch)

    out.mkdir(parents=True, exist_ok=True)
    strategy = pick_strategy()
    if strategy.name == "data_parallel" and settings.batch_size % strategy.replicas:
        raise PianoaccError(
            f"batch size {settings.batch_size} does not split evenly over "
            f"{strategy.replicas} devices"
        )
    write_json(
        out / "config.json",
        {
            "kind": kind,
            "profile": profile.to_dict(),
            "data": str(folder),
            "strategy": strategy.describe(),
        },
    )
    batches = dict(
        model_config=model_config,
        batch_size=settings.batch_size,
        seed=settings.seed,
        length_multiple=settings.length_multiple,
        pool_batches=settings.pool_batches,
    )
    train_batches = SegmentBatches(
        train_split, shuffle=True, max_segments=settings.max_train_segments,
        epoch=initial_epoch, harmony_dropout=settings.harmony_dropout, **batches,
    )
    validation_batches = SegmentBatches(
        validation_split, shuffle=False, max_segments=settings.max_validation_segments, **batches
    )
    best = float(state.get("best_val_loss", math.inf))
    with precision_policy(settings.mixed_precision), strategy.scope():
        if resume:
            model = keras.models.load_model(out / "last.keras")
        else:
            model = compile_model(build_model(model_config), settings)
        callbacks = [
            _LearningRateLogger(),
            keras.callbacks.CSVLogger(str(out / "history.csv"), append=resume),
            _EpochSummaries(out / "logs"),
            keras.callbacks.ModelCheckpoint(
                str(out / "best.keras"), monitor="val_loss", save_best_only=True,
                initial_value_threshold=None if math.isinf(best) else best,
            ),
            keras.callbacks.ModelCheckpoint(str(out / "last.keras")),
            _TrainingState(
                out / "training_state.json", best, {"kind": kind, "profile": profile.name}
            ),
        ]
        model.fit(
            train_batches.for_fit(),
            validation_data=validation_batches.for_fit(),
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the batches shuffle themselves (bucketed by length)
            verbose=1 if progress else 0,
        )
    return read_history(out)


# --------------------------------------------------------------------------- runs, speed


def run_profile(out_dir: str | Path) -> Profile:
    """The profile a run folder was trained with (from its ``config.json``)."""
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise PianoaccError(f"{path}: missing, not a training run folder")
    return Profile.from_dict(json.loads(path.read_text())["profile"])


def is_finished_run(out_dir: str | Path, profile_or_name: str | Profile, kind: str) -> bool:
    """True when ``out_dir`` holds a ``kind`` run of exactly this profile's settings
    that has done all of the profile's epochs (``training_state.json``)."""
    out, profile = Path(out_dir), get_profile(profile_or_name)
    needed = ("config.json", "training_state.json", "history.csv")
    if not all((out / name).is_file() for name in needed):
        return False
    saved = json.loads((out / "config.json").read_text())
    state = json.loads((out / "training_state.json").read_text())
    return (
        saved.get("kind") == kind
        and Profile.from_dict(saved["profile"]) == profile
        and int(state.get("epochs_done", 0)) >= profile.train.epochs
    )


def train_or_reuse(
    profile_or_name: str | Profile,
    kind: str,
    out_dir: str | Path,
    progress: bool = True,
    data: str | Path | None = None,
) -> dict[str, list[float]]:
    """The history of a finished ``kind`` run of this profile in ``out_dir``: trained
    now when the folder holds none, resumed when it holds an unfinished one, read
    back when it is complete (a notebook run twice does not train twice).

    A folder holding a run of another kind or other profile settings raises
    :class:`PianoaccError` rather than being overwritten.
    """
    profile = get_profile(profile_or_name)
    out = Path(out_dir)
    if not (out / "last.keras").exists():
        return train(profile, kind, out, progress=progress, data=data)
    saved = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else {}
    same = (
        saved.get("kind") == kind
        and "profile" in saved
        and Profile.from_dict(saved["profile"]) == profile
    )
    if not same:
        was = f"{saved.get('kind')}/{saved.get('profile', {}).get('name')}"
        raise PianoaccError(
            f"{out}: holds a {was} run that is not a {kind} run of the current {profile.name!r} "
            "profile; delete it or choose another folder"
        )
    if is_finished_run(out, profile, kind):
        return read_history(out)
    return train(profile, kind, out, resume=True, progress=progress, data=data)


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
    from pianoacc_utils.models import count_parameters

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


# --------------------------------------------------------------------------- shipping a run


def export_run(
    run_dir: str | Path,
    dest: str | Path,
    wall_seconds: float | None = None,
    hardware: str | None = None,
    evaluation_markdown: str | None = None,
) -> Path:
    """Copy a training run's best model into ``dest`` with a model card.

    Writes ``model.keras`` (weights and architecture, no optimizer state: half the
    size), ``config.json``, ``history.csv`` and ``MODEL_CARD.md`` (configuration,
    data split, epochs, optimizer steps, hardware, wall time, final validation
    metrics and, when given, the evaluation table).
    """
    import platform
    import shutil

    run, dest = Path(run_dir), Path(dest)
    best = run / "best.keras"
    if not best.is_file():
        raise PianoaccError(f"{best}: missing; is {run} a finished training run?")
    saved = json.loads((run / "config.json").read_text())
    state = json.loads((run / "training_state.json").read_text())
    history = read_history(run)
    dest.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(best, compile=False)
    tmp = dest / ".model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, dest / "model.keras")
    shutil.copy(run / "config.json", dest / "config.json")
    shutil.copy(run / "history.csv", dest / "history.csv")

    profile = Profile.from_dict(saved["profile"])
    stats_path = Path(saved.get("data", "")) / "stats.json"
    splits = json.loads(stats_path.read_text())["splits"] if stats_path.is_file() else {}
    best_epoch = int(np.nanargmin(history["val_loss"]))
    hardware = hardware or f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    lines = [
        f"# {saved['kind']} accompaniment model ({profile.name} profile)",
        "",
        f"{profile.description}.",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config_dict(profile.model_config(saved["kind"])), indent=2, sort_keys=True),
        "```",
        "",
        f"Parameters: {model.count_params():,}. Data: {profile.prepare.bars_per_segment}-bar "
        f"segments (hop {profile.prepare.hop_bars} bars), transpositions "
        f"{list(profile.prepare.transpositions)}, re-barred into 3/4 / 2/4: "
        f"{profile.prepare.rebar_3_4:.0%} / {profile.prepare.rebar_2_4:.0%} of the training "
        f"segments; decoder length "
        f"{profile.model.accompaniment_length} tokens, melody length {profile.model.melody_length}.",
        "",
        "## Data split (songs / segments)",
        "",
        "| split | songs | segments |",
        "|---|---|---|",
        *[f"| {name} | {row['songs']} | {row['segments']} |" for name, row in splits.items()],
        "",
        "Song-level split of POP909, seed 909 (727/91/91 songs; song 186 pinned to test).",
        "",
        "## Training",
        "",
        f"- epochs: {state['epochs_done']}, optimizer steps: {state['optimizer_iterations']}, "
        f"batch size {profile.train.batch_size}, peak learning rate {profile.train.learning_rate} "
        f"after {profile.train.warmup_steps} warm-up steps ({profile.train.decay} decay)",
        f"- hardware: {hardware}",
        f"- wall time: {wall_seconds / 60:.1f} min" if wall_seconds else "- wall time: not recorded",
        f"- best epoch (lowest validation loss, the shipped weights): {best_epoch}",
        f"- validation at that epoch: loss {history['val_loss'][best_epoch]:.3f}, "
        f"token accuracy {history['val_accuracy'][best_epoch]:.3f}, "
        f"perplexity {history['val_perplexity'][best_epoch]:.2f}",
        "",
    ]
    if evaluation_markdown:
        lines += ["## Evaluation", "", evaluation_markdown.strip(), ""]
    write_atomic(dest / "MODEL_CARD.md", "\n".join(lines).encode())
    return dest
