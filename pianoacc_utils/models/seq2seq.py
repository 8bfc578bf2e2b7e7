"""The accompaniment model: melody tokens in, logits over the next accompaniment token out.

A melody encoder (FNet blocks: token mixing by a 2-D FFT; or Transformer blocks) and a
Transformer decoder (causal self-attention, cross-attention to the melody), then a dense
layer over the vocabulary. Every token also gets its time (step in the beat, beat, step
since the bar line) and the chord of its beat. Lengths in tokens, times in grid steps
(32nd notes); id 0 is padding. Sizes and switches: :class:`ModelConfig` (``config.py``).
Why each part is as it is: ``docs/model.md``, notebook 03.
Shapes: ``B`` batch, ``Lm``/``La`` melody/accompaniment tokens, ``D`` hidden_dim,
``V`` vocabulary, ``NB`` beats, ``K`` bar lines.
"""

from __future__ import annotations

import contextvars
from typing import Any

import keras
import keras_hub
import numpy as np
from keras import ops

from pianoacc_utils.backends.loading import loading_weights_from_file, placeholder_weights
from pianoacc_utils.common import PianoaccError, config_dict
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.harmony.chords import HARMONY_DIM
from pianoacc_utils.models.config import ModelConfig
from pianoacc_utils.tokenizer import EventTokenizer

PAD_ID = EventTokenizer.pad_id
_TOKENIZER = EventTokenizer()
# Grid steps each token id advances time by (0 for everything but time shifts).
SHIFT_STEPS = np.array([_TOKENIZER.time_shift_steps(i) for i in range(len(_TOKENIZER))], np.int32)
BAR_STEPS = 8 * STEPS_PER_BEAT  # rows of the bar-position table (later positions share the last)
NO_BAR = 2**20  # padding of a bar-line table "bars": a step no token reaches
DEFAULT_BAR_STEPS = 4 * STEPS_PER_BEAT  # bar length when no bar lines are given (4/4)


# --------------------------------------------------------------------------- time and meter


def token_times(token_ids: Any, start_time: Any = None) -> Any:
    """Time (grid steps) of each token after its own shift, the cumulative time shifts:
    ``token_ids`` (B, L) int, ``start_time`` (B,) int before the first token (``None``: 0)
    -> int32 (B, L). The time is where the *next* event happens."""
    shifts = ops.take(ops.convert_to_tensor(SHIFT_STEPS), ops.cast(token_ids, "int32"))  # (B, L)
    times = ops.cumsum(shifts, axis=1)  # (B, L)
    if start_time is not None:
        times = times + ops.cast(ops.reshape(start_time, (-1, 1)), "int32")
    return times


def bar_positions(times: Any, bars: Any = None) -> Any:
    """Steps since the last bar line at or before each time: ``times`` (B, L) int,
    ``bars`` (B, K) int bar lines (steps, padded with :data:`NO_BAR`; ``None``: one every
    :data:`DEFAULT_BAR_STEPS` from 0). A time before every bar line counts from 0."""
    if bars is None:
        return ops.mod(times, DEFAULT_BAR_STEPS)
    lines = ops.cast(bars, "int32")[:, None, :]  # (B, 1, K)
    before = ops.less_equal(lines, times[:, :, None])  # (B, L, K)
    return times - ops.max(ops.where(before, lines, ops.zeros_like(lines)), axis=-1)  # (B, L)


def pad_bar_lines(bar_lines: Any, rows: int | None = None, multiple: int = 1,
                  width: int | None = None) -> np.ndarray:
    """Bar-line lists -> ``(rows, K)`` int32 padded with :data:`NO_BAR` (K the longest
    list rounded up to ``multiple``, or ``width`` when given; extra rows are all padding)."""
    longest = max((len(b) for b in bar_lines), default=0)
    if width is not None and width < longest:
        raise PianoaccError(f"a bar-line list of {longest} bars does not fit in {width}")
    width = width or max(1, -(-longest // multiple) * multiple)
    out = np.full((rows or len(bar_lines), width), NO_BAR, dtype=np.int32)
    for i, lines in enumerate(bar_lines):
        out[i, : len(lines)] = lines
    return out


@keras.saving.register_keras_serializable(package="pianoacc")
class TimeEmbedding(keras.layers.Layer):
    """Step-in-beat + beat (+ bar-position) embeddings of the tokens' times, so that the
    model need not count time shifts to know where a token falls in the beat and bar."""

    def __init__(self, max_beats: int, output_dim: int, meter: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_beats, self.output_dim, self.meter = max_beats, output_dim, meter
        policy = self.dtype_policy
        self.step_embedding = keras.layers.Embedding(
            STEPS_PER_BEAT, output_dim, name="step_in_beat", dtype=policy)
        self.beat_embedding = keras.layers.Embedding(
            max_beats, output_dim, name="beat", dtype=policy)
        # Zeros at first: a bar position no training bar reached adds nothing, not noise.
        self.bar_embedding = keras.layers.Embedding(
            BAR_STEPS, output_dim, embeddings_initializer="zeros", name="bar_position",
            dtype=policy) if meter else None

    def build(self, input_shape: Any = None) -> None:
        for table in (self.step_embedding, self.beat_embedding, self.bar_embedding):
            if table is not None:
                table.build((None, None))
        self.built = True

    def call(self, token_ids: Any, start_time: Any = None, bars: Any = None) -> Any:
        """``token_ids`` (B, L) int -> (B, L, output_dim)."""
        times = token_times(token_ids, start_time)  # (B, L) grid steps
        beat = ops.minimum(ops.floor_divide(times, STEPS_PER_BEAT), self.max_beats - 1)  # (B, L)
        if self.bar_embedding is None:
            return self.step_embedding(ops.mod(times, STEPS_PER_BEAT)) + self.beat_embedding(beat)
        position = bar_positions(times, bars)  # (B, L) steps since the bar line
        # The step in the beat counts from the bar line: a bar may start off the beat (9/8).
        return (
            self.step_embedding(ops.mod(position, STEPS_PER_BEAT))  # (B, L, output_dim)
            + self.beat_embedding(beat)
            + self.bar_embedding(ops.minimum(position, BAR_STEPS - 1))
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_beats": self.max_beats,
                "output_dim": self.output_dim, "meter": self.meter}


# --------------------------------------------------------------------------- harmony


def beat_rows(table: Any, beats: Any) -> Any:
    """Rows ``(B, L, ...)`` of a per-beat table ``(B, NB, ...)`` at ``beats`` (B, L) int
    (beats past the table read its last row)."""
    batch, count = ops.shape(table)[0], ops.shape(table)[1]
    beats = ops.minimum(ops.cast(beats, "int32"), count - 1)  # (B, L)
    flat = ops.reshape(table, (-1, *table.shape[2:]))  # (B * NB, ...)
    return ops.take(flat, beats + ops.arange(batch, dtype="int32")[:, None] * count, axis=0)


@keras.saving.register_keras_serializable(package="pianoacc")
class HarmonyEmbedding(keras.layers.Layer):
    """Projection of each token's beat row of a harmony table (pitch classes and bass)."""

    def __init__(self, output_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        # No bias: a row of zeros (no chord known) adds nothing.
        self.projection = keras.layers.Dense(
            output_dim, use_bias=False, name="chord_projection", dtype=self.dtype_policy)

    def build(self, input_shape: Any = None) -> None:
        self.projection.build((None, HARMONY_DIM))
        self.built = True

    def call(self, table: Any, beats: Any) -> Any:
        """``table`` (B, NB, 24), ``beats`` (B, L) int -> (B, L, output_dim)."""
        return self.projection(ops.cast(beat_rows(table, beats), self.compute_dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="pianoacc")
class _TransformerDecoder(keras_hub.layers.TransformerDecoder):
    """keras-hub's decoder block, whose ``compute_output_shape`` also accepts the encoder
    shape it was built with (``model.summary()`` passes both)."""

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return decoder_sequence_shape


# --------------------------------------------------------------------------- the model

_FROM_SHAPES = contextvars.ContextVar("pianoacc_build_from_shapes", default=False)
"""Set while :meth:`AccompanimentModel.build_from_config` builds a model whose weights
come next from its file: :meth:`~AccompanimentModel.build` then builds the layers from
their shapes."""


@keras.saving.register_keras_serializable(package="pianoacc")
class AccompanimentModel(keras.Model):
    """Melody encoder (FNet or Transformer) + Transformer decoder over event tokens.

    ``model({"melody": (B, Lm) int, "decoder_input": (B, La) int})`` returns float32
    logits ``(B, La, V)``: position ``t`` predicts the token after ``decoder_input[:, t]``.
    Optional inputs: ``"harmony"`` (B, NB, 24) float, the chord of each beat;
    ``"bars"`` (B, K) int, the bar lines (steps). Padding id 0 is masked everywhere.
    """

    def __init__(self, config: ModelConfig | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c = self.config = ModelConfig.from_dict(config) if isinstance(config, dict) else config
        self.melody_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            c.vocabulary_size, c.melody_length, c.hidden_dim, name="melody_embedding")
        self.accompaniment_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            c.vocabulary_size, c.accompaniment_length, c.hidden_dim, name="accompaniment_embedding")
        # One time table and one chord projection for both sides: a melody note and the
        # accompaniment at the same beat carry the same vector, for the cross-attention.
        self.time_embedding = TimeEmbedding(
            c.max_beats, c.hidden_dim, meter=c.meter, name="time_embedding"
        ) if c.time_embedding else None
        self.harmony_embedding = HarmonyEmbedding(
            c.hidden_dim, name="harmony_embedding") if c.harmony else None
        self.melody_dropout = keras.layers.Dropout(c.dropout, name="melody_dropout")
        self.accompaniment_dropout = keras.layers.Dropout(c.dropout, name="accompaniment_dropout")
        if c.kind == "fnet":
            self.encoder_blocks = [keras_hub.layers.FNetEncoder(
                c.intermediate_dim, dropout=c.dropout, name=f"fnet_encoder_{i}",
            ) for i in range(c.encoder_layers)]
        else:
            self.encoder_blocks = [keras_hub.layers.TransformerEncoder(
                c.intermediate_dim, c.num_heads, dropout=c.dropout, name=f"transformer_encoder_{i}",
            ) for i in range(c.encoder_layers)]
        self.decoder_blocks = [_TransformerDecoder(
            c.intermediate_dim, c.num_heads, dropout=c.dropout, name=f"transformer_decoder_{i}",
        ) for i in range(c.decoder_layers)]
        # float32 logits even under a mixed-precision policy (stable softmax/loss).
        self.logits_layer = keras.layers.Dense(c.vocabulary_size, dtype="float32", name="logits")

    def build(self, input_shape: Any = None) -> None:
        """Create every weight from a two-token dummy batch (the model's shapes are
        dynamic). Under JAX the batch is traced symbolically: a real pass there compiles
        each eager operation on its own, about a hundred small programs every time a model
        is built or loaded. Under TensorFlow running the batch is cheaper than tracing it.
        (A model loaded from a file is built otherwise: :meth:`build_from_config`.)"""
        if _FROM_SHAPES.get():
            self._build_layers()
        elif keras.config.backend() == "jax":
            self.compute_output_spec(dummy_batch(symbolic=True), training=False)
        else:
            self.call(dummy_batch(), training=False)

    def _build_layers(self) -> None:
        """Build every sub-layer from its input shape (the variables that a pass over a
        batch creates, in the same layers; ``tests/backends/test_loading.py``)."""
        tokens, hidden = (None, None), (None, None, self.config.hidden_dim)
        self.melody_embedding.build(tokens)
        self.accompaniment_embedding.build(tokens)
        for layer in (self.time_embedding, self.harmony_embedding):
            if layer is not None:
                layer.build()
        for block in self.encoder_blocks:
            block.build(hidden)
        for block in self.decoder_blocks:
            block.build(hidden, hidden)  # with the cross-attention over the encoder output
        self.logits_layer.build(hidden)

    def get_build_config(self) -> dict[str, Any]:
        return {"dummy": True}

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Build a model deserialized from its saved configuration. When its weights come
        next from the file (within
        :func:`~pianoacc_utils.backends.loading.weights_from_file`, as
        :func:`~pianoacc_utils.generation.load_checkpoint` loads), each layer is built
        from its input shape instead of a pass over a batch, and the weights start as
        zeros made on the host (:func:`~pianoacc_utils.backends.loading.placeholder_weights`)
        rather than from the initializers, each a compiled program under JAX: the same
        variables, for the file to fill. Otherwise as :meth:`build`."""
        if not loading_weights_from_file():
            self.build()
            return
        token = _FROM_SHAPES.set(True)
        try:
            with placeholder_weights(self):
                self.build()
        finally:
            _FROM_SHAPES.reset(token)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable, "config": config_dict(self.config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AccompanimentModel:
        config = dict(config)
        values = dict(config.pop("config"))
        # A checkpoint whose config lacks a signal predates it: it was trained without it.
        for signal in ("time_embedding", "harmony", "meter"):
            values.setdefault(signal, False)
        config.pop("dtype", None)
        return cls(ModelConfig.from_dict(values), **config)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        melody, harmony, bars = inputs["melody"], inputs.get("harmony"), inputs.get("bars")
        encoded = self.encode(melody, training=training, harmony=harmony, bars=bars)  # (B, Lm, D)
        return self.decode(inputs["decoder_input"], encoded, melody, training=training,
                           harmony=harmony, bars=bars)  # (B, La, V)

    @staticmethod
    def melody_padding_mask(melody_ids: Any) -> Any:
        """Boolean ``(B, Lm)``: True at real melody tokens, False at padding (id 0)."""
        return ops.not_equal(melody_ids, PAD_ID)

    def embed(self, embedding: Any, token_ids: Any, start_index: Any = 0,
              start_time: Any = None, harmony: Any = None, bars: Any = None) -> Any:
        """Token + position (+ time, + harmony) embeddings of ``token_ids`` (B, L) -> (B, L, D).

        ``embedding``: the melody's or the accompaniment's token-and-position embedding
        (the encoder and the decoder embed alike, each with its own table).
        ``start_index``/``start_time``: position and time (steps) of ``token_ids[:, 0]``,
        not 0 only in cached decoding (:mod:`~pianoacc_utils.models.cached`)."""
        x = embedding(token_ids, start_index=start_index)  # (B, L, D)
        if self.time_embedding is not None:
            x = x + ops.cast(self.time_embedding(token_ids, start_time, bars), x.dtype)
        if self.harmony_embedding is not None and harmony is not None:
            beats = ops.floor_divide(token_times(token_ids, start_time), STEPS_PER_BEAT)  # (B, L)
            x = x + ops.cast(self.harmony_embedding(harmony, beats), x.dtype)  # (B, L, D)
        return x

    def encode(self, melody_ids: Any, training: bool | None = False, harmony: Any = None,
               bars: Any = None) -> Any:
        """Melody token ids ``(B, Lm)`` -> encoder output ``(B, Lm, D)``.

        ``harmony``: the harmony table ``(B, NB, 24)`` (``None``: no chords known);
        ``bars``: the bar lines ``(B, K)`` (``None``: 4/4 from the window start).
        """
        _check_length(melody_ids, self.config.melody_length, "melody")
        mask = self.melody_padding_mask(melody_ids)  # (B, Lm)
        x = self.embed(self.melody_embedding, melody_ids, harmony=harmony, bars=bars)  # (B, Lm, D)
        # FNet sums over every position and cannot mask: padding must add nothing.
        x = x * ops.cast(mask, x.dtype)[:, :, None]  # (B, Lm, D)
        x = self.melody_dropout(x, training=training)
        if self.config.kind == "transformer":
            for block in self.encoder_blocks:
                x = block(x, padding_mask=mask, training=training)  # (B, Lm, D)
            return x
        length = ops.shape(x)[1]
        if self.config.fnet_full_length:
            # A DFT over a longer sequence is another transform: always mix melody_length.
            x = _extend_with_zeros(x, self.config.melody_length)  # (B, melody_length, D)
        for block in self.encoder_blocks:
            x = block(x, training=training)
        # Outputs at padded positions are not zero: the decoder's cross-attention masks them.
        return x[:, :length, :]  # (B, Lm, D)

    def decode(self, decoder_ids: Any, encoder_output: Any, melody_ids: Any,
               training: bool | None = False, harmony: Any = None, bars: Any = None) -> Any:
        """Teacher-forced decoder: ``(B, La)`` ids + encoded melody -> logits ``(B, La, V)``.

        Causal self-attention (position ``t`` sees ``0..t``), padding masks on the
        accompaniment and on the melody (``melody_ids`` gives its mask); ``harmony``
        and ``bars`` as in :meth:`encode`.
        """
        _check_length(decoder_ids, self.config.accompaniment_length, "accompaniment")
        x = self.embed(self.accompaniment_embedding, decoder_ids, harmony=harmony, bars=bars)
        x = self.accompaniment_dropout(x, training=training)  # (B, La, D)
        decoder_mask = ops.not_equal(decoder_ids, PAD_ID)  # (B, La)
        melody_mask = self.melody_padding_mask(melody_ids)  # (B, Lm)
        for block in self.decoder_blocks:
            x = block(x, encoder_output, decoder_padding_mask=decoder_mask,
                      encoder_padding_mask=melody_mask, training=training)  # (B, La, D)
        return self.logits_layer(x)  # (B, La, V) float32


def dummy_batch(symbolic: bool = False) -> dict[str, Any]:
    """The batch :meth:`AccompanimentModel.build` creates the weights from: two melody and
    two decoder tokens, one beat of harmony, one bar line; ``symbolic`` gives
    ``keras.KerasTensor`` specs of the same shapes instead of arrays."""
    shapes = {
        "melody": ((1, 2), "int32"),  # (B, Lm)
        "decoder_input": ((1, 2), "int32"),  # (B, La)
        "harmony": ((1, 1, HARMONY_DIM), "float32"),  # (B, beats, H)
        "bars": ((1, 1), "int32"),  # (B, bars)
    }
    if symbolic:
        return {name: keras.KerasTensor(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()}
    tokens = ("melody", "decoder_input")  # token 1 (start) in both; zeros elsewhere
    return {name: (np.ones if name in tokens else np.zeros)(shape, dtype)
            for name, (shape, dtype) in shapes.items()}


def _extend_with_zeros(x: Any, length: int) -> Any:
    """``(B, L, D)`` -> ``(B, length, D)`` with zero rows appended (``L <= length``)."""
    batch, current, width = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
    zeros = ops.zeros((batch, length - current, width), dtype=x.dtype)  # (B, length - L, D)
    return ops.concatenate([x, zeros], axis=1)


def _check_length(ids: Any, limit: int, part: str) -> None:
    length = ids.shape[1]
    if isinstance(length, int) and length > limit:
        raise PianoaccError(
            f"{part} of {length} tokens is longer than the model's {part}_length {limit}"
        )


def build_model(config: ModelConfig) -> AccompanimentModel:
    """A built :class:`AccompanimentModel` (weights created, ``summary()`` works)."""
    model = AccompanimentModel(config, name=f"{config.kind}_accompaniment")
    model.build()
    return model
