"""Decoding one batch of windows: the compiled, cached sampling loop.

:class:`CachedDecoder` generates the accompaniment tokens of a batch of windows, each row
with its melody, primer tokens, window length (grid steps), harmony table and bar lines.
The melody is encoded once per window; the decoder then emits one token per step,
reusing the keys and values of the tokens before it (the cache of
:mod:`pianoacc_utils.models.cached`: one step costs one token's projections, not a pass
over the whole prefix). The whole loop, keras-hub's sampler included, runs compiled:
``tf.function(jit_compile=True)`` under TensorFlow, ``jax.jit`` under JAX (the torch
backend runs it eagerly): :mod:`pianoacc_utils.backends.compiled` compiles it.

Each step turns the model's logits into the next token in the order nanoGPT's
``generate`` does, with the masks of :mod:`~pianoacc_utils.generation.sampling` in between:
the step's logits, the velocity temperature (:func:`velocity_logits`), the note-off bias
(:func:`note_off_logits`), the window and chord masks (:func:`mask_logits`), all three
through :func:`shape_logits`, then the sampler (temperature, softmax, top-p or top-k, draw).
:func:`naive_decode` is the slow reference that re-runs the full decoder on the growing
prefix: cached greedy decoding must give the same tokens.

Inputs are padded to a few bucket sizes (:data:`MELODY_BUCKET`, :data:`TABLE_BEATS`,
:data:`BAR_BUCKET`) so that windows of similar size share one compiled function.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from pianoacc_utils import harmony, models
from pianoacc_utils.backends.compiled import compile_loop
from pianoacc_utils.backends.timings import DecodeTiming
from pianoacc_utils.common import PianoaccError, config_dict
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.generation.sampling import (
    SHIFT_STEPS,
    TOKENIZER,
    SamplingConfig,
    chord_allowed,
    mask_logits,
    shape_logits,
)
from pianoacc_utils.models.cached import decode_step, init_cache, share_prefix

MELODY_BUCKET = 32
"""Melody windows are padded to a multiple of this many tokens (few recompilations)."""


TABLE_BEATS = 64
"""Harmony tables of a window are padded to a multiple of this many beats."""


BAR_BUCKET = 16
"""Bar-line tables of a window are padded to a multiple of this many bars."""


# --------------------------------------------------------------------------- one batch of windows


class CachedDecoder:
    """Compiled, cached sampling for one model: ``decode(melody, prompt, ...)`` -> tokens.

    One instance per model and sampler keeps the compiled function, so repeated
    windows of the same shapes do not recompile. ``sampling`` fixes the sampler, the
    chord mask and the velocity temperature for every window it decodes.
    ``timings`` records every call
    (:class:`~pianoacc_utils.backends.timings.DecodeTiming`), so that callers can tell
    the time spent compiling from the time spent generating.
    """

    def __init__(
        self, model: models.AccompanimentModel, sampling: SamplingConfig = SamplingConfig()
    ) -> None:
        self.model = model
        self.sampling = sampling
        self.sampler = sampling.sampler()
        self._compiled = None
        self._programs = 0  # loop programs made (traced or loaded), one per new shape
        self._melody_width = 0  # the widest melody decoded so far (see _padded_melody)
        self.timings: list[DecodeTiming] = []

    def sampling_loop(
        self, melody: Any, table: Any, bars: Any, allowed: Any, prompt: Any, mask: Any,
        index: Any, limit: Any, elapsed: Any,
    ) -> Any:
        """The sampling loop of one batch of windows: encode the melody, prefill the
        caches with ``prompt[:, :index-1]``, then sample token by token; returns the
        token buffer (B, L) with the new tokens written from ``index`` on.

        :meth:`decode` runs it compiled: it is the body that :meth:`_compile` traces.

        ``melody`` (W, Lm) token ids of W windows; ``table`` (W, beats, 24) harmony
        tables; ``bars`` (W, K) bar lines; ``allowed`` (W, beats, V) the chord mask per
        beat; the B rows of the other arguments (B a multiple of W) come in groups of
        B / W alike, one per window. ``prompt``
        (B, L) START + primer tokens, zero-padded to the token buffer, and ``mask`` True
        on them (the sampler keeps those tokens); ``index`` the first position to
        generate; ``limit`` (B,) each window's length and ``elapsed`` (B,) the grid steps
        the primer tokens before ``index - 1`` already cover.
        """
        self._programs += 1  # Python runs here only while tracing, not in compiled calls
        model = self.model
        use_mask = self.sampling.chord_mask
        # Rows come in groups alike (the candidates of one window): the melody, tables and
        # primer are given once per window. ``group``: each row's window.
        rows, windows = ops.shape(prompt)[0], ops.shape(melody)[0]
        group = ops.arange(rows) // (rows // windows)
        # Encode the melody once per window (with its chords and bar lines).
        encoder_output = model.encode(melody, harmony=table, bars=bars)
        # Empty self-attention caches, and the cross-attention keys/values of the
        # encoder output, computed once for every step.
        cache = init_cache(model,
            encoder_output, melody, ops.shape(prompt)[1], harmony=table, bars=bars
        )
        # Prefill the self-attention cache by running the decoder over the whole
        # prompt buffer once. Only positions 0..index-2 matter: the loop feeds
        # token index-1 itself and overwrites every later position before any
        # step can attend to it (the attention is causal).
        first = ops.take(prompt, ops.arange(windows) * (rows // windows), axis=0)
        _, cache = decode_step(model, first, cache, 0)
        if keras.backend.backend() == "jax" and rows > windows:
            # The candidates of a window share its prompt's keys and values (read once per
            # step for all of them) and keep only their own tokens' (``share_prefix``).
            cache = share_prefix(cache, rows, index - 1)
        else:
            # Each window's caches copied to its rows (gathers: the batch may be of unknown
            # size where TensorFlow traces one program for several).
            cache = rows_of(cache, group, model.config.num_heads)
        allowed = ops.take(allowed, group, axis=0)

        def next_token(prompt, state, index):
            """One step of the sampler: the logits of the token at ``index``."""
            cache, elapsed = state  # the caches, and the steps reached before token index-1
            # The last token so far (position index-1): only it is fed, the cache holds the rest.
            token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
            # Its time shift in grid steps (0 unless it is a time-shift token).
            shift = ops.take(ops.convert_to_tensor(SHIFT_STEPS), token[:, 0])
            # Forward one token: its keys/values go into the cache, its logits come out.
            logits, cache = decode_step(model, token, cache, index - 1, start_time=elapsed)
            # The time at which the next token would sound, and the beat that holds it.
            now = elapsed + shift
            beat = ops.floor_divide(now, STEPS_PER_BEAT)[:, None]
            # Chord mask: the tokens that beat's chord allows (None: every token).
            permitted = models.beat_rows(allowed, beat)[:, 0, :] if use_mask else None
            logits = logits[:, 0, :]  # (B, V): the logits of the one new position
            # Velocity temperature (the choice among velocity tokens only), note-off bias
            # (below 0: each sounding note less likely to end now), then the window mask
            # (no time shift past the window's end, END once it is reached, never
            # PAD/START) and the chord mask.
            logits = shape_logits(logits, self.sampling, limit - now, permitted)
            # The sampler then divides by the temperature, takes the softmax, keeps the
            # top-p/top-k tokens, draws one and writes it at ``index``; the time advances
            # by this step's shift.
            return logits, None, (cache, elapsed + shift)

        # keras-hub's sampling loop: from ``index`` on, call next_token, draw, append;
        # positions where ``mask`` is True keep the primer's tokens; a row stops at END.
        return self.sampler(
            next_token,
            prompt,
            cache=(cache, elapsed),
            index=index,
            mask=mask,
            stop_token_ids=(TOKENIZER.end_id,),
            model=model,
        )

    def _compile(self) -> Any:
        """:meth:`sampling_loop` compiled for the Keras backend in use
        (:func:`~pianoacc_utils.backends.compiled.compile_loop`); under JAX the traced
        program of each shape is kept on disk, found by the model's configuration, the
        sampling settings and the dtype policy. The seed is not among them: it is the
        value of the sampler's seed state, an argument of the program, so that one
        program serves every seed."""
        sampling = {k: v for k, v in config_dict(self.sampling).items() if k != "seed"}
        description = {
            "model": [type(self.model).__qualname__, self.model.get_config()],
            "sampling": sampling,
            "policy": keras.mixed_precision.global_policy().name,
        }
        return compile_loop(
            self.sampling_loop, self.model, self.sampler, description, self._new_program
        )

    def _new_program(self) -> None:
        """Count a loop program made for a new shape (traced or loaded)."""
        self._programs += 1

    def _padded_melody(self, melody: np.ndarray) -> np.ndarray:
        """``melody`` right-padded with zeros to the widest melody this decoder has
        decoded, so that the windows of a long melody (the last one is often shorter)
        share one compiled program instead of one per width: a compilation takes seconds,
        the padding a few percent of a step. Only where padding leaves the model's
        output unchanged (attention masks it, a full-length FNet mixes its whole length
        anyway), which holds for the shipped models: the same tokens."""
        config = self.model.config
        if config.kind == "fnet" and not config.fnet_full_length:
            return melody  # its Fourier transform runs over the padded length
        self._melody_width = max(self._melody_width, melody.shape[1])
        return np.pad(melody, ((0, 0), (0, self._melody_width - melody.shape[1])))

    def decode(
        self,
        melody: np.ndarray,
        primers: Sequence[Sequence[int]],
        limits: Sequence[int],
        max_length: int | None = None,
        harmony_tables: np.ndarray | None = None,
        bar_tables: np.ndarray | None = None,
        repeat: int = 1,
    ) -> list[list[int]]:
        """Generate one window per row.

        ``melody`` (B, Lm) padded ids (padded further to the widest melody decoded
        before: :meth:`_padded_melody`); ``primers`` the decoder tokens each row starts
        with (START added here); ``limits`` the grid steps each row may cover;
        ``harmony_tables`` (B, beats, 24) the chords of each window (``None``: none known);
        ``bar_tables`` (B, K) each window's bar lines, padded with
        :data:`~pianoacc_utils.models.NO_BAR` (``None``: 4/4 from the window start).
        ``repeat``: the rows come in groups of that many alike (the candidates of one
        window): the melody is encoded and the primer run through the decoder once per
        group, and the caches copied to its rows (the same tokens as decoding every row
        alone; a cost that otherwise grows with the rows).
        Returns each row's tokens after its primer, up to (not including) END.
        """
        # The token buffer: START + primer per row, zero-padded to the decoder's length;
        # ``mask`` marks the given tokens, which the sampler keeps as they are.
        length = max_length or self.model.config.accompaniment_length
        batch = len(primers)
        prompt = np.zeros((batch, length), np.int32)
        mask = np.zeros((batch, length), bool)
        elapsed = np.zeros(batch, np.int32)
        starts = []
        for row, primer in enumerate(primers):
            tokens = [TOKENIZER.start_id, *primer][:length]
            prompt[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = True
            starts.append(len(tokens))
        # Sampling starts at the shortest row's end (longer rows keep their primer
        # tokens there); ``elapsed``: the grid steps covered before token ``index - 1``.
        index = min(starts)
        for row in range(batch):
            elapsed[row] = int(SHIFT_STEPS[prompt[row, : index - 1]].sum())
        # No chords known: an all-zero harmony table; no bar lines: 4/4 from step 0.
        if harmony_tables is None:
            harmony_tables = np.zeros((batch, TABLE_BEATS, harmony.HARMONY_DIM), np.float32)
        harmony_tables = np.asarray(harmony_tables, np.float32)
        if bar_tables is None:
            bar_tables = default_bar_lines(batch, max(limits, default=0))
        # The chord mask per beat, computed here once for the whole window.
        if self.sampling.chord_mask:
            allowed = chord_allowed(harmony_tables)
        else:  # unused: a placeholder of the right rank
            allowed = np.ones((batch, 1, len(TOKENIZER)), bool)
        if self._compiled is None:  # compiled on first use, reused by every later window
            self._compiled = self._compile()
        began, programs = time.perf_counter(), self._programs
        every = slice(None, None, repeat)  # one row per window (its candidates alike)
        if repeat > 1 and not all(
            (np.reshape(x, (-1, repeat, *np.shape(x)[1:])) == np.asarray(x)[every][:, None]).all()
            for x in (melody, prompt, harmony_tables)
        ):
            raise PianoaccError(f"rows to decode in groups of {repeat} differ within a group")
        out = self._compiled(  # NumPy arrays: the compiled loop takes them to its backend
            self._padded_melody(melody).astype(np.int32)[every],
            harmony_tables[every],
            np.asarray(bar_tables, np.int32)[every],
            np.asarray(allowed, bool)[every],
            prompt,
            mask,
            np.int32(index),
            np.asarray(limits, np.int32),
            elapsed,
        )
        out = np.asarray(ops.convert_to_numpy(out))
        self.timings.append(DecodeTiming(time.perf_counter() - began, self._programs > programs))
        # Each row's new tokens: after its primer, up to END.
        results = []
        for row in range(batch):
            tokens = out[row, starts[row] :].tolist()
            if TOKENIZER.end_id in tokens:
                tokens = tokens[: tokens.index(TOKENIZER.end_id)]
            results.append(tokens)
        return results


def rows_of(cache: Any, group: Any, heads: int) -> Any:
    """``cache`` with row ``i`` taken from row ``group[i]`` (the rows of the caches that
    hold batch and heads in one axis taken head by head)."""
    merged = ops.arange(ops.shape(group)[0] * heads)
    merged = ops.take(group, merged // heads) * heads + merged % heads

    def take(x, index):
        return None if x is None else ops.take(x, index, axis=0)

    return type(cache)(
        keys=tuple(take(x, merged) for x in cache.keys),
        values=tuple(take(x, merged) for x in cache.values),
        cross_keys=tuple(take(x, merged) for x in cache.cross_keys),
        cross_values=tuple(take(x, merged) for x in cache.cross_values),
        melody_mask=take(cache.melody_mask, group),
        harmony=take(cache.harmony, group),
        bars=take(cache.bars, group),
    )


DEFAULT_BARS = 64
"""Most bar lines :func:`default_bar_lines` lays (later steps count as the last bar's)."""


def default_bar_lines(batch: int, steps: int) -> np.ndarray:
    """4/4 bar lines (``(batch, K)``, a multiple of :data:`BAR_BUCKET` wide) covering
    ``steps`` grid steps, at most :data:`DEFAULT_BARS` of them: what the model assumes
    when no bar lines are given (a window of the accompaniment always has its own)."""
    count = min(max(1, -(-int(steps) // models.DEFAULT_BAR_STEPS)), DEFAULT_BARS)
    lines = np.arange(count) * models.DEFAULT_BAR_STEPS
    return models.pad_bar_lines([lines] * batch, multiple=BAR_BUCKET)


def pad_melodies(melodies: Sequence[Sequence[int]], max_length: int) -> np.ndarray:
    """Right-pad melody token lists to one length (a multiple of :data:`MELODY_BUCKET`)."""
    longest = max((len(m) for m in melodies), default=1)
    width = min(max_length, max(MELODY_BUCKET, -(-longest // MELODY_BUCKET) * MELODY_BUCKET))
    batch = np.zeros((len(melodies), width), np.int32)
    for row, melody in enumerate(melodies):
        ids = list(melody)[:width]
        batch[row, : len(ids)] = ids
    return batch


def naive_decode(
    model: models.AccompanimentModel,
    melody_ids: Sequence[int],
    limit: int,
    max_tokens: int,
    harmony_tables: np.ndarray | None = None,
    bar_tables: np.ndarray | None = None,
) -> list[int]:
    """Greedy decoding by re-running the full decoder on the growing prefix (no cache).

    Slow on purpose: the reference that cached decoding must equal, and the
    baseline of the generation-speed benchmark. At most ``max_tokens - 1`` tokens
    within ``limit`` grid steps. ``harmony_tables`` (1, beats, 24) and ``bar_tables``
    (1, K): the window's chords and bar lines, as for :meth:`CachedDecoder.decode`
    (``None``: the model reads no harmony signal and 4/4 bars; a harmony model
    decoded by :class:`CachedDecoder` without tables reads an all-zero table instead,
    so pass that table here to compare the two).
    """
    melody = pad_melodies([melody_ids], model.config.melody_length)
    harmony_in = None if harmony_tables is None else ops.convert_to_tensor(harmony_tables)
    bars_in = None if bar_tables is None else ops.convert_to_tensor(bar_tables)
    encoder_output = model.encode(ops.convert_to_tensor(melody), harmony=harmony_in, bars=bars_in)
    tokens = [TOKENIZER.start_id]
    elapsed = 0  # grid steps covered so far
    while len(tokens) < max_tokens:
        # Forward the whole prefix (no cache) and take the last position's logits.
        decoder = ops.convert_to_tensor(np.array([tokens], np.int32))
        logits = model.decode(
            decoder, encoder_output, ops.convert_to_tensor(melody), harmony=harmony_in,
            bars=bars_in,
        )[:, -1, :]
        # The same window mask as the cached loop (no chord mask: no chords given).
        logits = mask_logits(logits, ops.convert_to_tensor(np.array([limit - elapsed], np.int32)))
        token = int(np.argmax(ops.convert_to_numpy(logits)[0]))  # greedy: the best token
        if token == TOKENIZER.end_id:
            break
        tokens.append(token)
        elapsed += int(SHIFT_STEPS[token])
    return tokens[1:]
