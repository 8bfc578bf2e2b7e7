"""Sequence-to-sequence models: melody tokens in, accompaniment token logits out.

Two encoders share one decoder design:

* ``kind="fnet"``: a stack of ``keras_hub.layers.FNetEncoder`` (token mixing by
  the real part of a 2-D FFT, no attention, no padding mask);
* ``kind="transformer"``: a stack of ``keras_hub.layers.TransformerEncoder``
  (self-attention with the melody padding mask).

The decoder is a stack of ``keras_hub.layers.TransformerDecoder`` (causal
self-attention over the accompaniment so far, cross-attention to the encoded
melody), followed by a ``Dense`` layer giving logits over the event vocabulary.
All lengths are in tokens (see :mod:`pianoacc_utils.tokenizer`); id 0 is padding.

Padding and FNet
----------------
The Fourier mixing sums over *every* position, so padding cannot be masked
inside an FNet block, and the DFT over a longer (padded) sequence is a different
transform. The model therefore

1. sets padded melody embeddings to zero before the encoder, so they add
   nothing to the Fourier sums;
2. (``fnet_full_length=True``, the default) runs the FNet blocks over a fixed
   ``melody_length`` positions, zero-extending shorter inputs and cutting the
   output back to the input length: the transform is then the same however much
   a melody was padded, and the output at real positions depends on the melody
   tokens only;
3. masks padded melody positions in the decoder's cross-attention (both kinds),
   so the (no longer zero) encoder outputs at padded positions are never read.

Training still pads each batch only to its longest melody (see
:mod:`pianoacc_utils.training`), which keeps the decoder's cross-attention and a
Transformer encoder short. With ``fnet_full_length=False`` the FNet blocks mix
over the batch's padded length only (cheaper), but predictions then depend on
the padding: for a model trained with the ``quick`` profile, padding 40-token
melodies to 128 positions moved next-token probabilities by up to 0.13 (mean KL
divergence 0.03 nats per token), about as much as swapping in another melody
(0.15 and 0.05). ``tests/test_models.py`` checks that the default is
padding-invariant to float round-off for both kinds.

Time signal
-----------
Token order alone says little about *when* an event happens: the time of a token
is the sum of all time shifts before it, and 45% of POP909's time shifts are
single 32nd steps, so a model counting them loses the beat (the first models had
accompaniment onsets on the beat grid at chance level). With ``time_embedding``
(the default) every token of the melody and of the accompaniment also gets

* the embedding of its step within the beat (``time % STEPS_PER_BEAT``: on the
  beat, on an eighth, on a 16th, ...), and
* the embedding of its beat since the segment start (``time // STEPS_PER_BEAT``,
  up to ``max_beats - 1``),

added to its token and position embeddings, where ``time`` is the token's time
in grid steps after its own shift (the time at which the *next* event happens).

With ``meter`` (the default) the model also knows where the bar lines are, so that
a 3/4, 6/8 or 9/8 bar is not read as a piece of a 4/4 one. The optional input
``"bars"`` ``(B, K)`` int lists each window's bar lines (grid steps from the window
start, padded with :data:`NO_BAR`); each token then gets

* the embedding of its step since the last bar line (``position``, up to
  :data:`BAR_STEPS` - 1: two 4/4 bars' worth), and
* its step within the beat counted from that bar line (``position %
  STEPS_PER_BEAT``), so that the beats of a bar that starts on an eighth (9/8 after
  a 9/8 bar) fall where the bar puts them.

Without ``"bars"`` a bar line every four beats from the window start is assumed.
The bar-position table starts at zeros, so a position no training bar reached (a
9/8 bar's last eighth, in a corpus of 4/4 songs) adds nothing instead of noise.
The two embedding tables are shared by encoder and decoder, so a melody note
and the accompaniment at the same beat carry the same time vector, which gives
the cross-attention a direct way to line them up. Times come from the token ids
themselves (cumulative time shifts), so no extra input is needed; only cached
decoding must be told where in time a step starts (``start_time``).

Harmony signal
--------------
With ``harmony`` (the default) the model also reads the chords, one row per
beat (:mod:`pianoacc_utils.harmony`: 12 pitch classes and the bass, zeros for
no chord). Each token, of the melody and of the accompaniment, gets a learned
linear projection of the row of its beat (the beat of its time, as above; tokens
past the table use its last row). The projection has no bias, so a table of
zeros (no chords known) adds nothing. The table is the optional input
``"harmony"`` ``(B, beats, 24)``; without it the model runs as if no chord were known.

Cached decoding
---------------
:meth:`AccompanimentModel.init_cache` and :meth:`AccompanimentModel.decode_step`
run the decoder one token (or one prefix) at a time with key/value caches: the
cross-attention keys/values are computed once per melody, and each step only
projects its new tokens. Step-by-step logits equal those of
:meth:`AccompanimentModel.decode` over the whole sequence. The step reuses the
keras-hub decoder blocks' own sub-layers but keeps one key and one value tensor
per layer, updated in place, where keras-hub's own cached call slices and
re-stacks a combined cache tensor every step (timings in
``benchmarks/results/generation_speed.json``).
"""

from __future__ import annotations

import os

# The backend is fixed at the first ``import keras``: default to TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from pianoacc_utils.common import STEPS_PER_BEAT, PianoaccError, config_dict  # noqa: E402
from pianoacc_utils.harmony import HARMONY_DIM  # noqa: E402
from pianoacc_utils.tokenizer import EventTokenizer  # noqa: E402

KINDS = ("fnet", "transformer")
PAD_ID = EventTokenizer.pad_id
_TOKENIZER = EventTokenizer()
SHIFT_STEPS = np.array(
    [_TOKENIZER.time_shift_steps(i) for i in range(len(_TOKENIZER))], dtype=np.int32
)
"""Grid steps each token id advances time by (0 for everything but time shifts)."""
BAR_STEPS = 8 * STEPS_PER_BEAT
"""Bar positions the bar-position table covers (steps; later ones share its last row)."""
NO_BAR = 2**20
"""Padding of a bar-line table ``"bars"``: a step no token reaches."""
DEFAULT_BAR_STEPS = 4 * STEPS_PER_BEAT
"""Bar length assumed when no bar lines are given (4/4 from the window start)."""


@dataclass(frozen=True)
class ModelConfig:
    """Size and kind of an :class:`AccompanimentModel`.

    ``melody_length`` and ``accompaniment_length`` are the longest token
    sequences the position embeddings cover (the decoder length counts the START
    token). ``hidden_dim`` must be divisible by ``num_heads``.
    ``fnet_full_length``: FNet blocks mix over all ``melody_length`` positions,
    which makes the encoder independent of padding (see the module docstring).
    ``time_embedding``: add step-in-beat and beat embeddings computed from the
    tokens' times (see "Time signal" above); ``max_beats`` is the size of the
    beat table (later beats share its last row).
    ``harmony``: add a projection of each token's beat chord (see "Harmony signal").
    ``meter``: add the step since the last bar line (see "Time signal").
    """

    kind: str = "fnet"
    vocabulary_size: int = EventTokenizer().vocabulary_size
    melody_length: int = 256
    accompaniment_length: int = 512
    hidden_dim: int = 256
    num_heads: int = 4
    intermediate_dim: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    fnet_full_length: bool = True
    time_embedding: bool = True
    max_beats: int = 256
    harmony: bool = True
    meter: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PianoaccError(f"model kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.hidden_dim % self.num_heads:
            raise PianoaccError(
                f"model config: hidden_dim {self.hidden_dim} is not divisible by "
                f"num_heads {self.num_heads}"
            )

    @property
    def head_dim(self) -> int:
        """Size of one attention head (``hidden_dim // num_heads``)."""
        return self.hidden_dim // self.num_heads

    def to_json(self) -> str:
        """The config as a JSON object string."""
        return json.dumps(config_dict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Rebuild from :func:`~pianoacc_utils.common.config_dict` output; unknown keys fail."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PianoaccError(f"model config: unknown fields {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


@keras.saving.register_keras_serializable(package="pianoacc")
class _TransformerDecoder(keras_hub.layers.TransformerDecoder):
    """``keras_hub.layers.TransformerDecoder`` whose ``compute_output_shape`` also
    accepts the encoder shape it was built with (``model.summary()`` passes both)."""

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return decoder_sequence_shape


def token_times(token_ids: Any, start_time: Any = None) -> Any:
    """Time (grid steps) of each token after its own shift: cumulative time shifts.

    ``token_ids`` (B, L) int; ``start_time`` (B,) int, the time before the first
    token (``None``: 0). Returns int32 (B, L).
    """
    shifts = ops.take(ops.convert_to_tensor(SHIFT_STEPS), ops.cast(token_ids, "int32"))
    times = ops.cumsum(shifts, axis=1)
    if start_time is not None:
        times = times + ops.cast(ops.reshape(start_time, (-1, 1)), "int32")
    return times


def bar_positions(times: Any, bars: Any = None) -> Any:
    """Steps since the last bar line at or before each time: ``times`` (B, L) int,
    ``bars`` (B, K) int bar lines (steps, padded with :data:`NO_BAR`; ``None``: one every
    :data:`DEFAULT_BAR_STEPS` from 0). A time before every bar line counts from 0."""
    if bars is None:
        return ops.mod(times, DEFAULT_BAR_STEPS)
    lines = ops.cast(bars, "int32")[:, None, :]
    before = ops.less_equal(lines, times[:, :, None])
    last = ops.max(ops.where(before, lines, ops.zeros_like(lines)), axis=-1)
    return times - last


def pad_bar_lines(
    bar_lines: Any, rows: int | None = None, multiple: int = 1
) -> np.ndarray:
    """Bar-line lists -> ``(rows, K)`` int32 padded with :data:`NO_BAR`
    (K the longest list rounded up to ``multiple``; extra rows are all padding)."""
    longest = max((len(b) for b in bar_lines), default=0)
    width = max(1, -(-longest // multiple) * multiple)
    out = np.full((rows or len(bar_lines), width), NO_BAR, dtype=np.int32)
    for i, lines in enumerate(bar_lines):
        out[i, : len(lines)] = lines
    return out


@keras.saving.register_keras_serializable(package="pianoacc")
class TimeEmbedding(keras.layers.Layer):
    """Step-in-beat + beat (+ bar-position) embeddings of token times (see "Time signal"
    in the module doc)."""

    def __init__(self, max_beats: int, output_dim: int, meter: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_beats = max_beats
        self.output_dim = output_dim
        self.meter = meter
        self.step_embedding = keras.layers.Embedding(
            STEPS_PER_BEAT, output_dim, name="step_in_beat", dtype=self.dtype_policy
        )
        self.beat_embedding = keras.layers.Embedding(
            max_beats, output_dim, name="beat", dtype=self.dtype_policy
        )
        self.bar_embedding = (
            keras.layers.Embedding(
                BAR_STEPS, output_dim, embeddings_initializer="zeros", name="bar_position",
                dtype=self.dtype_policy,
            )
            if meter
            else None
        )

    def build(self, input_shape: Any = None) -> None:
        self.step_embedding.build((None, None))
        self.beat_embedding.build((None, None))
        if self.bar_embedding is not None:
            self.bar_embedding.build((None, None))
        self.built = True

    def call(self, token_ids: Any, start_time: Any = None, bars: Any = None) -> Any:
        times = token_times(token_ids, start_time)
        beat = ops.minimum(ops.floor_divide(times, STEPS_PER_BEAT), self.max_beats - 1)
        if self.bar_embedding is None:
            return self.step_embedding(ops.mod(times, STEPS_PER_BEAT)) + self.beat_embedding(beat)
        position = bar_positions(times, bars)
        return (
            self.step_embedding(ops.mod(position, STEPS_PER_BEAT))
            + self.beat_embedding(beat)
            + self.bar_embedding(ops.minimum(position, BAR_STEPS - 1))
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_beats": self.max_beats,
            "output_dim": self.output_dim,
            "meter": self.meter,
        }


def beat_rows(table: Any, beats: Any) -> Any:
    """Rows ``(B, L, ...)`` of a per-beat table ``(B, NB, ...)`` at ``beats`` (B, L) int
    (beats past the table read its last row)."""
    batch, count = ops.shape(table)[0], ops.shape(table)[1]
    beats = ops.minimum(ops.cast(beats, "int32"), count - 1)
    flat = ops.reshape(table, (-1, *table.shape[2:]))
    return ops.take(flat, beats + ops.arange(batch, dtype="int32")[:, None] * count, axis=0)


@keras.saving.register_keras_serializable(package="pianoacc")
class HarmonyEmbedding(keras.layers.Layer):
    """Projection of each token's beat row of a harmony table (see "Harmony signal")."""

    def __init__(self, output_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.projection = keras.layers.Dense(
            output_dim, use_bias=False, name="chord_projection", dtype=self.dtype_policy
        )

    def build(self, input_shape: Any = None) -> None:
        self.projection.build((None, HARMONY_DIM))
        self.built = True

    def call(self, table: Any, beats: Any) -> Any:
        """``table`` (B, NB, 24), ``beats`` (B, L) int -> (B, L, output_dim)."""
        return self.projection(ops.cast(beat_rows(table, beats), self.compute_dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="pianoacc")
class AccompanimentModel(keras.Model):
    """Melody encoder (FNet or Transformer) + Transformer decoder over event tokens.

    ``model({"melody": (B, Lm) int, "decoder_input": (B, La) int})`` returns
    float32 logits ``(B, La, vocabulary_size)``: position ``t`` predicts the
    token after ``decoder_input[:, t]``. Padding id 0 is masked everywhere.
    The optional input ``"harmony"`` (B, beats, 24) float gives the chords per beat,
    ``"bars"`` (B, K) int the bar lines (see the module docstring).
    """

    def __init__(self, config: ModelConfig | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        self.config = config
        c = config
        self.melody_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            c.vocabulary_size, c.melody_length, c.hidden_dim, name="melody_embedding"
        )
        self.accompaniment_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            c.vocabulary_size, c.accompaniment_length, c.hidden_dim, name="accompaniment_embedding"
        )
        self.time_embedding = (
            TimeEmbedding(c.max_beats, c.hidden_dim, meter=c.meter, name="time_embedding")
            if c.time_embedding
            else None
        )
        self.harmony_embedding = (
            HarmonyEmbedding(c.hidden_dim, name="harmony_embedding") if c.harmony else None
        )
        self.melody_dropout = keras.layers.Dropout(c.dropout, name="melody_dropout")
        self.accompaniment_dropout = keras.layers.Dropout(c.dropout, name="accompaniment_dropout")
        if c.kind == "fnet":
            self.encoder_blocks = [
                keras_hub.layers.FNetEncoder(
                    c.intermediate_dim, dropout=c.dropout, name=f"fnet_encoder_{i}"
                )
                for i in range(c.encoder_layers)
            ]
        else:
            self.encoder_blocks = [
                keras_hub.layers.TransformerEncoder(
                    c.intermediate_dim, c.num_heads, dropout=c.dropout,
                    name=f"transformer_encoder_{i}",
                )
                for i in range(c.encoder_layers)
            ]
        self.decoder_blocks = [
            _TransformerDecoder(
                c.intermediate_dim, c.num_heads, dropout=c.dropout, name=f"transformer_decoder_{i}"
            )
            for i in range(c.decoder_layers)
        ]
        # float32 logits even under a mixed-precision policy (stable softmax/loss).
        self.logits_layer = keras.layers.Dense(c.vocabulary_size, dtype="float32", name="logits")

    # ------------------------------------------------------------------ building / saving

    def build(self, input_shape: Any = None) -> None:
        """Create every weight by running a two-token dummy batch (shapes are dynamic)."""
        dummy = np.ones((1, 2), dtype="int32")
        table = np.zeros((1, 1, HARMONY_DIM), dtype="float32")
        bars = np.zeros((1, 1), dtype="int32")
        self.call(
            {"melody": dummy, "decoder_input": dummy, "harmony": table, "bars": bars},
            training=False,
        )

    def get_build_config(self) -> dict[str, Any]:
        return {"dummy": True}

    def build_from_config(self, config: dict[str, Any]) -> None:
        self.build()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable, "config": config_dict(self.config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "AccompanimentModel":
        config = dict(config)
        values = dict(config.pop("config"))
        # Checkpoints saved before the time signal existed were trained without it.
        values.setdefault("time_embedding", False)
        values.setdefault("harmony", False)
        values.setdefault("meter", False)
        model_config = ModelConfig.from_dict(values)
        config.pop("dtype", None)
        return cls(model_config, **config)

    # ------------------------------------------------------------------ forward pass

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        melody, harmony, bars = inputs["melody"], inputs.get("harmony"), inputs.get("bars")
        encoder_output = self.encode(melody, training=training, harmony=harmony, bars=bars)
        return self.decode(
            inputs["decoder_input"], encoder_output, melody, training=training, harmony=harmony,
            bars=bars,
        )

    @staticmethod
    def melody_padding_mask(melody_ids: Any) -> Any:
        """Boolean ``(B, Lm)``: True at real melody tokens, False at padding (id 0)."""
        return ops.not_equal(melody_ids, PAD_ID)

    def encode(
        self, melody_ids: Any, training: bool | None = False, harmony: Any = None, bars: Any = None
    ) -> Any:
        """Melody token ids ``(B, Lm)`` -> encoder output ``(B, Lm, hidden_dim)``.

        ``harmony``: the harmony table ``(B, beats, 24)`` (``None``: no chords known);
        ``bars``: the bar lines ``(B, K)`` (``None``: 4/4 from the window start).

        Padded positions are zeroed before the encoder (FNet mixes every
        position); their outputs are masked later by the cross-attention.
        """
        self._check_length(melody_ids, self.config.melody_length, "melody")
        mask = self.melody_padding_mask(melody_ids)
        x = self._embed(self.melody_embedding, melody_ids, harmony=harmony, bars=bars)
        x = x * ops.cast(mask, x.dtype)[:, :, None]
        x = self.melody_dropout(x, training=training)
        if self.config.kind == "transformer":
            for block in self.encoder_blocks:
                x = block(x, padding_mask=mask, training=training)
            return x
        length = ops.shape(x)[1]
        if self.config.fnet_full_length:
            x = self._extend_with_zeros(x, self.config.melody_length)
        for block in self.encoder_blocks:
            x = block(x, training=training)
        return x[:, :length, :]

    def _embed(
        self,
        embedding: Any,
        token_ids: Any,
        start_index: Any = 0,
        start_time: Any = None,
        harmony: Any = None,
        bars: Any = None,
    ) -> Any:
        """Token + position (+ time, + harmony) embeddings of ``token_ids``."""
        x = embedding(token_ids, start_index=start_index)
        if self.time_embedding is not None:
            x = x + ops.cast(self.time_embedding(token_ids, start_time, bars), x.dtype)
        if self.harmony_embedding is not None and harmony is not None:
            beats = ops.floor_divide(token_times(token_ids, start_time), STEPS_PER_BEAT)
            x = x + ops.cast(self.harmony_embedding(harmony, beats), x.dtype)
        return x

    @staticmethod
    def _extend_with_zeros(x: Any, length: int) -> Any:
        """``(B, L, D)`` -> ``(B, length, D)`` with zero rows appended (``L <= length``)."""
        batch, current, width = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        zeros = ops.zeros((batch, length - current, width), dtype=x.dtype)
        return ops.concatenate([x, zeros], axis=1)

    @staticmethod
    def _check_length(ids: Any, limit: int, part: str) -> None:
        length = ids.shape[1]
        if isinstance(length, int) and length > limit:
            raise PianoaccError(
                f"{part} of {length} tokens is longer than the model's {part}_length {limit}"
            )

    def decode(
        self,
        decoder_ids: Any,
        encoder_output: Any,
        melody_ids: Any,
        training: bool | None = False,
        harmony: Any = None,
        bars: Any = None,
    ) -> Any:
        """Teacher-forced decoder: ``(B, La)`` ids + encoded melody -> logits ``(B, La, V)``.

        Causal self-attention (position ``t`` sees ``0..t``), padding masks on
        the accompaniment and on the melody (``melody_ids`` gives its mask);
        ``harmony`` and ``bars`` as in :meth:`encode`.
        """
        self._check_length(decoder_ids, self.config.accompaniment_length, "accompaniment")
        x = self._embed(self.accompaniment_embedding, decoder_ids, harmony=harmony, bars=bars)
        x = self.accompaniment_dropout(x, training=training)
        decoder_mask = ops.not_equal(decoder_ids, PAD_ID)
        melody_mask = self.melody_padding_mask(melody_ids)
        for block in self.decoder_blocks:
            x = block(
                x,
                encoder_output,
                decoder_padding_mask=decoder_mask,
                encoder_padding_mask=melody_mask,
                training=training,
            )
        return self.logits_layer(x)

    # ------------------------------------------------------------------ cached decoding

    def init_cache(
        self,
        encoder_output: Any,
        melody_ids: Any,
        max_length: int,
        harmony: Any = None,
        bars: Any = None,
    ) -> DecoderCache:
        """A :class:`DecoderCache` for generating up to ``max_length`` decoder tokens.

        The self-attention keys/values start as zeros (filled step by step by
        :meth:`decode_step`); the cross-attention keys/values of ``encoder_output``
        are computed here, once. ``max_length`` may not exceed
        ``config.accompaniment_length``. ``harmony`` and ``bars``: the window's
        harmony table and bar lines (as in :meth:`encode`), kept in the cache for the steps.
        """
        c = self.config
        if isinstance(max_length, int) and max_length > c.accompaniment_length:
            raise PianoaccError(
                f"cache length {max_length} exceeds the model's accompaniment_length "
                f"{c.accompaniment_length}"
            )
        _check_decoder_internals(self.decoder_blocks[0])
        batch = ops.shape(encoder_output)[0]
        shape = (batch, c.num_heads, max_length, c.head_dim)
        dtype = encoder_output.dtype
        cross = [block._cross_attention_layer for block in self.decoder_blocks]
        return DecoderCache(
            keys=tuple(ops.zeros(shape, dtype) for _ in self.decoder_blocks),
            values=tuple(ops.zeros(shape, dtype) for _ in self.decoder_blocks),
            cross_keys=tuple(_heads_first(layer._key_dense(encoder_output)) for layer in cross),
            cross_values=tuple(
                _heads_first(layer._value_dense(encoder_output)) for layer in cross
            ),
            melody_mask=self.melody_padding_mask(melody_ids),
            harmony=harmony,
            bars=bars,
        )

    def decode_step(
        self, token_ids: Any, cache: DecoderCache, index: Any, start_time: Any = None
    ) -> tuple[Any, DecoderCache]:
        """Decode ``token_ids`` ``(B, T)`` placed at positions ``index..index+T-1``.

        ``T`` is 1 for one generation step, or the length of a prompt prefix
        (unpadded: every row must have ``T`` real tokens). ``index`` may be a
        Python int or an integer tensor (for compiled loops). ``start_time``
        (B,) int: the time in grid steps reached before ``token_ids[:, 0]``
        (the sum of the time shifts at positions ``0..index-1``); ``None``
        means 0, right only when ``index`` is 0. Returns ``(logits (B, T, V),
        cache)`` with the new keys/values written into the cache.

        Computes what the keras-hub decoder blocks compute in :meth:`decode`
        (tests check the logits agree), from the blocks' own sub-layers, with one
        key and one value tensor per layer updated in place (``slice_update``).
        """
        x = self._embed(
            self.accompaniment_embedding, token_ids, index, start_time, cache.harmony, cache.bars
        )
        length = ops.shape(cache.keys[0])[2]
        queries = ops.arange(ops.shape(token_ids)[1]) + index
        causal = ops.less_equal(ops.arange(length)[None, :], queries[:, None])[None, None]
        cross_mask = cache.melody_mask[:, None, None, :]
        keys, values = list(cache.keys), list(cache.values)
        for i, block in enumerate(self.decoder_blocks):
            attention = block._self_attention_layer

            def self_attention(h: Any) -> Any:
                start = [0, 0, index, 0]
                keys[i] = ops.slice_update(keys[i], start, _heads_first(attention._key_dense(h)))
                values[i] = ops.slice_update(
                    values[i], start, _heads_first(attention._value_dense(h))
                )
                return self._attend(attention, h, keys[i], values[i], causal)

            def cross_attention(h: Any) -> Any:
                return self._attend(
                    block._cross_attention_layer, h, cache.cross_keys[i], cache.cross_values[i],
                    cross_mask,
                )

            def feedforward(h: Any) -> Any:
                return block._feedforward_output_dense(block._feedforward_intermediate_dense(h))

            x = _residual(block, block._self_attention_layer_norm, self_attention, x)
            x = _residual(block, block._cross_attention_layer_norm, cross_attention, x)
            x = _residual(block, block._feedforward_layer_norm, feedforward, x)
        cache = cache._replace(keys=tuple(keys), values=tuple(values))
        return self.logits_layer(x), cache

    def _attend(self, attention: Any, x: Any, keys: Any, values: Any, mask: Any) -> Any:
        """Multi-head attention of ``x`` (B, T, D) over projected ``keys``/``values``
        (B, H, S, d) where ``mask`` (broadcast to B, H, T, S) is True; output projected."""
        query = _heads_first(attention._query_dense(x))
        scores = ops.einsum("bhtd,bhsd->bhts", query, keys)
        scores = ops.cast(scores, "float32") / math.sqrt(self.config.head_dim)
        scores = ops.where(mask, scores, ops.cast(-1e9, "float32"))
        weights = ops.cast(ops.softmax(scores, axis=-1), values.dtype)
        return attention._output_dense(ops.einsum("bhts,bhsd->bthd", weights, values))


def _residual(block: Any, norm: Any, sublayer: Any, x: Any) -> Any:
    """One residual sub-layer of a keras-hub decoder block, with its layer norm before
    (``normalize_first``) or after the residual sum, as the block does it."""
    if block.normalize_first:
        return sublayer(norm(x)) + x
    return norm(sublayer(x) + x)


def _heads_first(x: Any) -> Any:
    """(B, T, H, d) -> (B, H, T, d)."""
    return ops.transpose(x, (0, 2, 1, 3))


_DECODER_INTERNALS = (
    "_self_attention_layer", "_self_attention_layer_norm", "_cross_attention_layer",
    "_cross_attention_layer_norm", "_feedforward_intermediate_dense",
    "_feedforward_output_dense", "_feedforward_layer_norm", "normalize_first",
)


def _check_decoder_internals(block: keras.layers.Layer) -> None:
    """Cached decoding reads a keras-hub decoder block's sub-layers: fail clearly if a
    keras-hub version renamed them."""
    missing = [name for name in _DECODER_INTERNALS if not hasattr(block, name)]
    attention = getattr(block, "_self_attention_layer", None)
    missing += [
        f"_self_attention_layer.{name}"
        for name in ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
        if attention is not None and not hasattr(attention, name)
    ]
    if missing:
        raise PianoaccError(
            f"keras_hub {keras_hub.__version__} TransformerDecoder lacks {', '.join(missing)}: "
            "cached decoding needs these sub-layers"
        )


class DecoderCache(NamedTuple):
    """State of cached decoding, one entry per decoder layer.

    ``keys``/``values``: self-attention keys and values ``(B, heads, max_length,
    head_dim)``; ``cross_keys``/``cross_values``: the projected encoder output
    ``(B, heads, Lm, head_dim)``; ``melody_mask`` (B, Lm): real melody positions;
    ``harmony``: the harmony table (B, beats, 24) of the window, or ``None``;
    ``bars``: its bar lines (B, K), or ``None``.
    A named tuple, so that it can be the state of a compiled loop (JAX pytree,
    ``tf.nest`` structure).
    """

    keys: tuple[Any, ...]
    values: tuple[Any, ...]
    cross_keys: tuple[Any, ...]
    cross_values: tuple[Any, ...]
    melody_mask: Any
    harmony: Any = None
    bars: Any = None


def build_model(config: ModelConfig) -> AccompanimentModel:
    """A built :class:`AccompanimentModel` (weights created, ``summary()`` works)."""
    model = AccompanimentModel(config, name=f"{config.kind}_accompaniment")
    model.build()
    return model


def _count(layers: list[keras.layers.Layer]) -> int:
    return int(sum(layer.count_params() for layer in layers))


def count_parameters(model: AccompanimentModel) -> dict[str, int]:
    """Trainable + non-trainable weights per part: ``embeddings`` (melody and
    accompaniment token+position tables, the time tables, the chord projection), ``encoder``, ``decoder`` (blocks),
    ``output`` (the logits layer) and ``total``."""
    counts = {
        "embeddings": _count(
            [model.melody_embedding, model.accompaniment_embedding]
            + ([model.time_embedding] if model.time_embedding is not None else [])
            + ([model.harmony_embedding] if model.harmony_embedding is not None else [])
        ),
        "encoder": _count(model.encoder_blocks),
        "decoder": _count(model.decoder_blocks),
        "output": _count([model.logits_layer]),
    }
    counts["total"] = int(model.count_params())
    return counts


# --------------------------------------------------------------------------- token mixing


def fourier_mixing(x: Any) -> Any:
    """FNet's token mixing: the real part of the 2-D discrete Fourier transform of ``x``
    ``(..., tokens, features)`` over its last two axes, in float32.

    The computation inside ``keras_hub.layers.FNetEncoder``:
    ``y[k, d] = sum over n, m of x[n, m] * cos(2 pi (k n / tokens + d m / features))``,
    fixed weights, nothing to learn; every output mixes every token and feature.
    """
    real = ops.cast(x, "float32")
    mixed, _ = ops.fft2((real, ops.zeros_like(real)))
    return mixed


def fnet_encoder_mixing(x: np.ndarray) -> np.ndarray:
    """The token mixing that a ``keras_hub.layers.FNetEncoder`` block computes on ``x``
    ``(batch, tokens, features)``, read from the library's layer itself (float32).

    The block adds its mixing to its input and layer-normalises the sum: the input of
    that first layer norm minus ``x`` is the mixing. Shows that the layer is the real
    part of a 2-D FFT (compare with :func:`fourier_mixing` or ``numpy.fft.fft2``).
    """
    x = np.asarray(x, dtype="float32")
    if x.ndim != 3:
        raise PianoaccError(
            f"FNet mixing input: expected (batch, tokens, features), got shape {x.shape}"
        )
    block = keras_hub.layers.FNetEncoder(intermediate_dim=x.shape[-1])
    block.build(x.shape)
    norm = getattr(block, "_mixing_layer_norm", None)
    if norm is None:
        raise PianoaccError(
            f"keras_hub {keras_hub.__version__} FNetEncoder has no _mixing_layer_norm: "
            "cannot read its mixing"
        )
    norm_inputs = []
    norm_call = norm.call

    def recording_call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        norm_inputs.append(ops.convert_to_numpy(inputs))
        return norm_call(inputs, *args, **kwargs)

    norm.call = recording_call
    try:
        block(x, training=False)
    finally:
        del norm.call
    return norm_inputs[0] - x


def token_mixing_times(
    lengths: list[int] | tuple[int, ...],
    hidden_dim: int,
    num_heads: int,
    batch_size: int = 1,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Forward time of FNet's Fourier mixing and of self-attention as sequences grow.

    For each length (tokens), random float32 inputs ``(batch_size, length, hidden_dim)``
    go through :func:`fourier_mixing` and through a ``keras.layers.MultiHeadAttention``
    self-attention layer (``num_heads`` heads of ``hidden_dim // num_heads``, with its
    query/key/value/output projections: the sub-layer the Fourier transform replaces).
    Each runs once to warm up, then ``repeats`` times. Rows: ``length``, ``fourier_ms``
    and ``attention_ms`` (median milliseconds per call; eager calls, so the shortest
    lengths include a fixed per-call overhead).
    """
    import time

    if hidden_dim % num_heads:
        raise PianoaccError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
    rng = np.random.default_rng(seed)
    attention = keras.layers.MultiHeadAttention(num_heads, hidden_dim // num_heads)

    def median_ms(function: Any) -> float:
        ops.convert_to_numpy(function())  # warm-up (and builds the attention weights)
        times = []
        for _ in range(max(1, repeats)):
            began = time.perf_counter()
            ops.convert_to_numpy(function())
            times.append(time.perf_counter() - began)
        return 1000.0 * float(np.median(times))

    rows = []
    for length in lengths:
        x = ops.convert_to_tensor(
            rng.normal(size=(batch_size, int(length), hidden_dim)).astype("float32")
        )
        rows.append(
            {
                "length": int(length),
                "fourier_ms": median_ms(lambda: fourier_mixing(x)),
                "attention_ms": median_ms(lambda: attention(x, x)),
            }
        )
    return rows
