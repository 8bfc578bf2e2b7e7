"""TODO docstring for generation.decoder."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from pianoacc_utils import harmony, models
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.generation.sampling import (
    SHIFT_STEPS,
    TOKENIZER,
    SamplingConfig,
    chord_allowed,
    mask_logits,
    velocity_logits,
)
from pianoacc_utils.models.cached import decode_step, init_cache

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
    windows of the same shapes do not recompile.
    """

    def __init__(self, model: models.AccompanimentModel, sampling: SamplingConfig = SamplingConfig()):
        self.model = model
        self.sampling = sampling
        self.sampler = sampling.sampler()
        self._compiled = None

    def _generate(
        self, melody: Any, table: Any, bars: Any, allowed: Any, prompt: Any, mask: Any,
        index: Any, limit: Any, elapsed: Any,
    ):
        """Traced body: prefill the caches with ``prompt[:, :index-1]``, then sample."""
        model = self.model
        use_mask = self.sampling.chord_mask
        velocity_factor = self.sampling.velocity_factor
        encoder_output = model.encode(melody, harmony=table, bars=bars)
        cache = init_cache(model, 
            encoder_output, melody, ops.shape(prompt)[1], harmony=table, bars=bars
        )
        # Prefill the self-attention cache by running the decoder over the whole
        # prompt buffer once. Only positions 0..index-2 matter: the loop feeds
        # token index-1 itself and overwrites every later position before any
        # step can attend to it (the attention is causal).
        _, cache = decode_step(model, prompt, cache, 0)

        def next_token(prompt, state, index):
            cache, elapsed = state
            token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
            shift = ops.take(ops.convert_to_tensor(SHIFT_STEPS), token[:, 0])
            logits, cache = decode_step(model, token, cache, index - 1, start_time=elapsed)
            now = elapsed + shift
            beat = ops.floor_divide(now, STEPS_PER_BEAT)[:, None]
            permitted = models.beat_rows(allowed, beat)[:, 0, :] if use_mask else None
            logits = logits[:, 0, :]
            if velocity_factor != 1.0:
                logits = velocity_logits(logits, velocity_factor, self.sampling.temperature)
            logits = mask_logits(logits, limit - now, permitted)
            return logits, None, (cache, elapsed + shift)

        return self.sampler(
            next_token,
            prompt,
            cache=(cache, elapsed),
            index=index,
            mask=mask,
            stop_token_ids=(TOKENIZER.end_id,),
            model=model,
        )

    def _compile(self):
        backend = keras.config.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.function(self._generate, jit_compile=True, reduce_retracing=True)
        if backend == "jax":
            import itertools

            import jax

            model, sampler = self.model, self.sampler

            @jax.jit
            def compiled(state, melody, table, bars, allowed, prompt, mask, index, limit, elapsed):
                sampler_vars, trainable, non_trainable = state
                mapping = itertools.chain(
                    zip(sampler.variables, sampler_vars),
                    zip(model.trainable_variables, trainable),
                    zip(model.non_trainable_variables, non_trainable),
                )
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    out = self._generate(
                        melody, table, bars, allowed, prompt, mask, index, limit, elapsed
                    )
                new_sampler_vars = [scope.get_current_value(v) for v in sampler.variables]
                return out, new_sampler_vars

            def run(melody, table, bars, allowed, prompt, mask, index, limit, elapsed):
                state = (
                    [v.value for v in sampler.variables],
                    [v.value for v in model.trainable_variables],
                    [v.value for v in model.non_trainable_variables],
                )
                out, new_vars = compiled(
                    state, melody, table, bars, allowed, prompt, mask, index, limit, elapsed
                )
                for variable, value in zip(sampler.variables, new_vars):
                    variable.assign(value)
                return out

            return run
        return self._generate  # torch: eager loop (still cached)

    def decode(
        self,
        melody: np.ndarray,
        primers: Sequence[Sequence[int]],
        limits: Sequence[int],
        max_length: int | None = None,
        harmony_tables: np.ndarray | None = None,
        bar_tables: np.ndarray | None = None,
    ) -> list[list[int]]:
        """Generate one window per row.

        ``melody`` (B, Lm) padded ids; ``primers`` the decoder tokens each row starts
        with (START added here); ``limits`` the grid steps each row may cover;
        ``harmony_tables`` (B, beats, 24) the chords of each window (``None``: none known);
        ``bar_tables`` (B, K) each window's bar lines, padded with
        :data:`~pianoacc_utils.models.NO_BAR` (``None``: 4/4 from the window start).
        Returns each row's tokens after its primer, up to (not including) END.
        """
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
        index = min(starts)
        for row in range(batch):
            elapsed[row] = int(SHIFT_STEPS[prompt[row, : index - 1]].sum())
        if harmony_tables is None:
            harmony_tables = np.zeros((batch, TABLE_BEATS, harmony.HARMONY_DIM), np.float32)
        harmony_tables = np.asarray(harmony_tables, np.float32)
        if bar_tables is None:
            bar_tables = default_bar_lines(batch, max(limits, default=0))
        if self.sampling.chord_mask:
            allowed = chord_allowed(harmony_tables)
        else:  # unused: a placeholder of the right rank
            allowed = np.ones((batch, 1, len(TOKENIZER)), bool)
        if self._compiled is None:
            self._compiled = self._compile()
        out = self._compiled(
            ops.convert_to_tensor(melody.astype(np.int32)),
            ops.convert_to_tensor(harmony_tables),
            ops.convert_to_tensor(np.asarray(bar_tables, np.int32)),
            ops.convert_to_tensor(allowed),
            ops.convert_to_tensor(prompt),
            ops.convert_to_tensor(mask),
            ops.convert_to_tensor(np.int32(index)),
            ops.convert_to_tensor(np.asarray(limits, np.int32)),
            ops.convert_to_tensor(elapsed),
        )
        out = np.asarray(ops.convert_to_numpy(out))
        results = []
        for row in range(batch):
            tokens = out[row, starts[row] :].tolist()
            if TOKENIZER.end_id in tokens:
                tokens = tokens[: tokens.index(TOKENIZER.end_id)]
            results.append(tokens)
        return results


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
    model: models.AccompanimentModel, melody_ids: Sequence[int], limit: int, max_tokens: int
) -> list[int]:
    """Greedy decoding by re-running the full decoder on the growing prefix (no cache).

    Slow on purpose: the reference that cached decoding must equal, and the
    baseline of the generation-speed benchmark.
    """
    melody = pad_melodies([melody_ids], model.config.melody_length)
    encoder_output = model.encode(ops.convert_to_tensor(melody))
    tokens = [TOKENIZER.start_id]
    elapsed = 0
    while len(tokens) < max_tokens:
        decoder = ops.convert_to_tensor(np.array([tokens], np.int32))
        logits = model.decode(decoder, encoder_output, ops.convert_to_tensor(melody))[:, -1, :]
        logits = mask_logits(logits, ops.convert_to_tensor(np.array([limit - elapsed], np.int32)))
        token = int(np.argmax(ops.convert_to_numpy(logits)[0]))
        if token == TOKENIZER.end_id:
            break
        tokens.append(token)
        elapsed += int(SHIFT_STEPS[token])
    return tokens[1:]
