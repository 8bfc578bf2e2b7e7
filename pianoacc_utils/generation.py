"""Autoregressive generation: a melody in, accompaniment notes out.

Decoding reuses keras-hub's key/value caches (the cross-attention keys and
values are computed once per melody window, each step projects one token) and
runs the whole sampling loop compiled: ``keras_hub.samplers`` inside
``tf.function(jit_compile=True)`` under TensorFlow, ``jax.jit`` under JAX.

Two rules keep the accompaniment in time with the melody, and two more keep it in
harmony:

* a window never runs past its end: time-shift tokens that would overshoot the
  window are masked out of the distribution, and once the window's end is
  reached only ``END`` may follow;
* notes the model leaves hanging are released (:func:`release_notes`, on unless
  ``release=False``): at the first chord change whose chord leaves the note's
  pitch class out, and after :data:`~pianoacc_utils.common.MAX_HELD_BEATS` beats
  at most. A Performance-RNN decoder must end every note with its own note-off
  token; sampling often skips them, and such notes then sound to the end of the
  window (on four test segments, notes longer than a bar held 55-73% of a
  half-trained FNet's note time, against 0-13% of the pianists'; ad-hoc check,
  ``results/chord_mask_validation.md``);
* long melodies are accompanied window by window (a window is the number of bars
  the model was trained on); each window overlaps the previous one by
  ``overlap_bars`` bars whose accompaniment, already generated, primes the
  decoder, so the result is one continuous piece;
* optionally (``SamplingConfig.chord_mask``), when chords are known, a note-on whose
  pitch class is not a tone of the chord
  of the beat it would sound on is masked out (beats without a chord allow every
  key). The model proposes, the chord disposes: it still chooses the register,
  voicing, rhythm and dynamics. POP909's pianists keep 99% of their note time on
  chord tones; the small models alone reach far less (``results/``).

Melodies read from MIDI files go through :func:`accompany_melodies`, which accompanies
bars in a compound meter (6/8, 9/8, ...) through the swing map of
:mod:`pianoacc_utils.compound`.

Chords (see :mod:`pianoacc_utils.harmony`) go with each window as its harmony
table. :data:`CHORD_SOURCES` names where they come from: the annotation
(``"annotated"``, a lead sheet), :func:`~pianoacc_utils.harmony.estimate_chords`
on the melody alone (``"estimated"``), or nowhere (``"none"``: an all-zero table).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pianoacc_utils import compound as compound_meter
from pianoacc_utils import harmony, models  # (models also sets the default Keras backend)
from pianoacc_utils.common import (
    DEFAULT_CHORD_MASK,
    DEFAULT_COMPOUND,
    DEFAULT_RELEASE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    DEFAULT_VELOCITY_TEMPERATURE,
    HANGING_BEATS,
    MAX_HELD_BEATS,
    STEPS_PER_BEAT,
    PianoaccError,
    project_root,
)
from pianoacc_utils.data import Melody, Note, Segment, Span, normalize_notes
from pianoacc_utils.tokenizer import EventTokenizer

import keras  # noqa: E402  (after models: the backend default is set there)
import keras_hub  # noqa: E402
from keras import ops  # noqa: E402

TOKENIZER = EventTokenizer()
MELODY_BUCKET = 32
"""Melody windows are padded to a multiple of this many tokens (few recompilations)."""

CHORD_SOURCES = ("annotated", "estimated", "none")
"""Where the chords of a POP909 segment come from (see the module docstring)."""

TABLE_BEATS = 64
"""Harmony tables of a window are padded to a multiple of this many beats."""

BAR_BUCKET = 16
"""Bar-line tables of a window are padded to a multiple of this many bars."""

PRETRAINED = {"fnet": "fnet", "transformer": "transformer"}
"""Names accepted by :func:`load_checkpoint` for the models shipped in ``pretrained/``."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is drawn. ``temperature=0`` means greedy (argmax).

    The defaults (:data:`~pianoacc_utils.common.DEFAULT_TEMPERATURE`,
    :data:`~pianoacc_utils.common.DEFAULT_TOP_P`) were chosen on the validation
    split among four settings (``results/sampling_validation.md``): with the FNet
    model shipped before the harmony signal they passed the most quality-bar checks with the highest
    chord-tone ratio.

    ``top_k``/``top_p`` restrict sampling to the k most likely tokens / the
    smallest set whose probability reaches p; ``seed`` makes sampling reproducible.
    ``chord_mask``: where the harmony table has a chord, allow only note-ons of its
    pitch classes (see the module docstring); the default
    (:data:`~pianoacc_utils.common.DEFAULT_CHORD_MASK`) was chosen on the validation
    split (``results/chord_mask_validation.md``).
    ``velocity_temperature``: the temperature of the choice *among* velocity tokens
    (``None``: ``temperature``), so that dynamics can vary more than timing and pitch
    (:func:`velocity_logits`); no effect when ``temperature`` is 0 (greedy). Top-p and
    top-k still apply to every token. Its default
    (:data:`~pianoacc_utils.common.DEFAULT_VELOCITY_TEMPERATURE`) was chosen on the
    validation split (``results/velocity_validation.md``): the velocities then vary about
    as much as the pianists'.
    """

    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = DEFAULT_TOP_P
    seed: int = 0
    chord_mask: bool = DEFAULT_CHORD_MASK
    velocity_temperature: float | None = DEFAULT_VELOCITY_TEMPERATURE

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise PianoaccError(f"temperature must be a number >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise PianoaccError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise PianoaccError(f"top-k must be >= 1, got {self.top_k}")
        velocity = self.velocity_temperature
        if velocity is not None and not (math.isfinite(velocity) and velocity > 0):
            raise PianoaccError(f"velocity temperature must be a number > 0, got {velocity}")

    @property
    def velocity_factor(self) -> float:
        """``temperature / velocity_temperature`` (1 when unset or greedy): see
        :func:`velocity_logits`."""
        if self.velocity_temperature is None or self.temperature == 0:
            return 1.0
        return self.temperature / self.velocity_temperature

    def sampler(self) -> keras_hub.samplers.Sampler:
        """The keras-hub sampler for these settings (greedy, top-p, top-k or plain random)."""
        if self.temperature == 0:
            return keras_hub.samplers.GreedySampler()
        if self.top_p is not None:
            return keras_hub.samplers.TopPSampler(
                p=self.top_p, k=self.top_k, temperature=self.temperature, seed=self.seed
            )
        if self.top_k is not None:
            return keras_hub.samplers.TopKSampler(
                k=self.top_k, temperature=self.temperature, seed=self.seed
            )
        return keras_hub.samplers.RandomSampler(temperature=self.temperature, seed=self.seed)


GREEDY = SamplingConfig(temperature=0.0, top_p=None, chord_mask=False)


# --------------------------------------------------------------------------- token masks


SHIFT_STEPS = models.SHIFT_STEPS
NEVER = np.zeros(len(TOKENIZER), bool)
NEVER[[TOKENIZER.pad_id, TOKENIZER.start_id]] = True
"""Tokens the decoder may never emit."""
NOTE_ON_CLASS = np.full(len(TOKENIZER), 12, np.int32)
NOTE_ON_CLASS[TOKENIZER.note_on_offset : TOKENIZER.note_off_offset] = np.arange(128) % 12
"""Pitch class of each note-on token id; 12 (no class) for every other token."""
IS_VELOCITY = np.zeros(len(TOKENIZER), bool)
IS_VELOCITY[TOKENIZER.velocity_offset : TOKENIZER.vocabulary_size] = True
"""The velocity tokens (their temperature: ``SamplingConfig.velocity_temperature``)."""


def _mask_logits(logits: Any, remaining: Any, allowed: Any = None) -> Any:
    """Forbid PAD/START, time shifts past the window end, anything but END at the end,
    and (given ``allowed``) the tokens it marks False.

    ``logits`` (B, V); ``remaining`` (B,) grid steps left in each row's window;
    ``allowed`` (B, V) bool, e.g. a row of :func:`chord_allowed` (note-ons of the
    chord where the next token sounds).
    """
    shift = ops.convert_to_tensor(SHIFT_STEPS)[None, :]
    remaining = remaining[:, None]
    overshoot = ops.greater(shift, remaining)
    never = ops.convert_to_tensor(NEVER)[None, :]
    end = ops.equal(ops.arange(len(TOKENIZER))[None, :], TOKENIZER.end_id)
    at_end = ops.logical_and(ops.less_equal(remaining, 0), ops.logical_not(end))
    banned = ops.logical_or(ops.logical_or(overshoot, never), at_end)
    if allowed is not None:
        banned = ops.logical_or(banned, ops.logical_not(allowed))
    return ops.where(banned, ops.cast(-1e9, logits.dtype), logits)


def velocity_logits(logits: Any, factor: float, temperature: float) -> Any:
    """Logits (B, V) whose velocity tokens, once the sampler divides by ``temperature``,
    are drawn as at temperature ``temperature / factor`` among themselves, while their
    total probability stays what it was.

    Multiplying the velocity logits by ``factor`` alone would also move probability
    between velocity tokens and the rest (a "hotter" velocity would mean fewer velocity
    changes, hence *flatter* dynamics); the added constant keeps the velocity tokens'
    log-sum-exp at ``temperature`` unchanged.
    """
    velocity = ops.convert_to_tensor(IS_VELOCITY)[None, :]
    floor = ops.cast(-1e9, logits.dtype)
    before = ops.logsumexp(ops.where(velocity, logits, floor) / temperature, axis=-1, keepdims=True)
    scaled = logits * factor
    after = ops.logsumexp(ops.where(velocity, scaled, floor) / temperature, axis=-1, keepdims=True)
    return ops.where(velocity, scaled + temperature * (before - after), logits)


def chord_allowed(tables: np.ndarray) -> np.ndarray:
    """Per beat, the tokens the chord mask allows: ``(B, NB, V)`` bool from harmony
    tables ``(B, NB, 24)``. Every token but the note-ons outside the beat's chord;
    every token where the beat has no chord."""
    tones = np.asarray(tables)[..., :12] > 0
    padded = np.concatenate([tones, np.ones(tones.shape[:-1] + (1,), bool)], axis=-1)
    allowed = padded[..., NOTE_ON_CLASS]
    allowed[~tones.any(axis=-1)] = True
    return allowed


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
        cache = model.init_cache(
            encoder_output, melody, ops.shape(prompt)[1], harmony=table, bars=bars
        )
        # Prefill the self-attention cache by running the decoder over the whole
        # prompt buffer once. Only positions 0..index-2 matter: the loop feeds
        # token index-1 itself and overwrites every later position before any
        # step can attend to it (the attention is causal).
        _, cache = model.decode_step(prompt, cache, 0)

        def next_token(prompt, state, index):
            cache, elapsed = state
            token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
            shift = ops.take(ops.convert_to_tensor(SHIFT_STEPS), token[:, 0])
            logits, cache = model.decode_step(token, cache, index - 1, start_time=elapsed)
            now = elapsed + shift
            beat = ops.floor_divide(now, STEPS_PER_BEAT)[:, None]
            permitted = models.beat_rows(allowed, beat)[:, 0, :] if use_mask else None
            logits = logits[:, 0, :]
            if velocity_factor != 1.0:
                logits = velocity_logits(logits, velocity_factor, self.sampling.temperature)
            logits = _mask_logits(logits, limit - now, permitted)
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
        logits = _mask_logits(logits, ops.convert_to_tensor(np.array([limit - elapsed], np.int32)))
        token = int(np.argmax(ops.convert_to_numpy(logits)[0]))
        if token == TOKENIZER.end_id:
            break
        tokens.append(token)
        elapsed += int(SHIFT_STEPS[token])
    return tokens[1:]


# --------------------------------------------------------------------------- windows over a melody


@dataclass(frozen=True)
class WindowConfig:
    """How a melody is cut for the model: windows of ``bars`` bars, overlapping by
    ``overlap_bars`` (whose accompaniment primes the next window)."""

    bars: int = 8
    overlap_bars: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_bars < self.bars:
            raise PianoaccError(f"overlap_bars must be in 0..{self.bars - 1}")


def _notes_in(notes: Sequence[Note], start: int, end: int) -> list[Note]:
    """Notes starting in [start, end), shifted by -start and cut at ``end``."""
    return [
        Note(n.start - start, min(n.end, end) - start, n.pitch, n.velocity)
        for n in notes
        if start <= n.start < end
    ]


@dataclass
class _Job:
    """Generation state of one melody: what is done and where the next window starts."""

    melody: list[Note]
    chords: list[Span]
    bar_starts: list[int]
    num_steps: int
    notes: list[Note]
    position: int  # grid step up to which the accompaniment is final


def _primer_tokens(context: Sequence[Note], steps: int, budget: int) -> list[int]:
    """Tokens of the accompaniment already fixed in a window, lasting exactly ``steps``.

    ``context`` holds the notes (relative to the window start) of the first
    ``steps`` grid steps. At most ``budget`` tokens: when the notes need more, the
    latest events are dropped but the time shifts still reach ``steps``, so that
    generation starts exactly where the fixed accompaniment ends.
    """
    tokens = TOKENIZER.encode(context)
    primer = tokens + TOKENIZER.shift_tokens(steps - TOKENIZER.duration_steps(tokens))
    if len(primer) > budget:
        tokens = tokens[: max(budget - len(TOKENIZER.shift_tokens(steps)), 0)]
        primer = tokens + TOKENIZER.shift_tokens(steps - TOKENIZER.duration_steps(tokens))
    return primer


def _pickup_lead(bar_starts: Sequence[int]) -> int:
    """Steps to start the first window *before* step 0 so that the second bar line falls
    on a beat of the window's time (0 unless the first bar is a pickup of a part of a beat,
    e.g. 4 steps for an eighth-note pickup). The model reads times from the window start
    (step-in-beat and beat embeddings), so without this lead a melody with such a pickup
    would be accompanied half a beat off for the whole first window. Only for models
    without the meter signal: the others read the bar lines themselves."""
    if len(bar_starts) < 2:
        return 0
    return -(int(bar_starts[1]) - int(bar_starts[0])) % STEPS_PER_BEAT


def _bar_at_or_before(bar_starts: Sequence[int], step: int) -> int:
    index = int(np.searchsorted(bar_starts, step, side="right")) - 1
    return max(index, 0)


def accompany(
    model: models.AccompanimentModel,
    melodies: Sequence[tuple[Sequence[Note], Sequence[int], int]],
    sampling: SamplingConfig = SamplingConfig(),
    window: WindowConfig = WindowConfig(),
    primers: Sequence[Sequence[Note]] | None = None,
    decoder: CachedDecoder | None = None,
    chords: Sequence[Sequence[Span]] | None = None,
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
) -> list[list[Note]]:
    """Accompaniment for each melody, given as ``(notes, bar_starts, num_steps)`` in steps.

    ``chords`` gives each melody's chord spans (steps, as the melody), which the
    model reads as its harmony tables; ``None``, or an empty list for a melody,
    means no chords are known (see :func:`~pianoacc_utils.harmony.estimate_chords` to estimate them).
    ``release``: apply :func:`release_notes` to each window's new notes, with the notes
    the decoder left hanging lasting at most ``hanging_beats`` beats. Each window passes
    its bar lines (from ``bar_starts``) to the model ("Time signal" in :mod:`models`).

    Melodies are processed together, window by window (batched across melodies).
    ``primers`` optionally gives ground-truth accompaniment notes that are kept as
    they are and prime the first window (the original project primed with its
    first 256 ground-truth tokens); generation continues after the primer's last onset.
    Nothing is generated past ``num_steps``.
    """
    decoder = decoder or CachedDecoder(model, sampling)
    jobs = []
    for i, (notes, bar_starts, num_steps) in enumerate(melodies):
        bars = sorted(int(b) for b in bar_starts) or [0]
        primer = normalize_notes(primers[i]) if primers else []
        position = max((n.start for n in primer), default=0)
        if primer:
            position = max(position, max(n.end for n in primer))
        known = list(chords[i]) if chords else []
        jobs.append(
            _Job(list(notes), known, bars, int(num_steps), list(primer), min(position, num_steps))
        )
    config = model.config
    while True:
        active = [job for job in jobs if job.position < job.num_steps]
        if not active:
            break
        melody_ids, primer_ids, limits, origins, ends, tables, lines = [], [], [], [], [], [], []
        for job in active:
            first_bar = _bar_at_or_before(job.bar_starts, job.position)
            first_bar = max(0, first_bar - (window.overlap_bars if job.position > 0 else 0))
            origin = job.bar_starts[first_bar] if job.position > 0 else 0
            if first_bar == 0 and not config.meter:
                origin -= _pickup_lead(job.bar_starts)
            last_bar = first_bar + window.bars
            end = job.bar_starts[last_bar] if last_bar < len(job.bar_starts) else job.num_steps
            end = max(min(end, job.num_steps), job.position + 1)
            melody_ids.append(TOKENIZER.encode(_notes_in(job.melody, origin, end))[: config.melody_length])
            context = _notes_in(job.notes, origin, job.position)
            primer_ids.append(
                _primer_tokens(context, job.position - origin, config.accompaniment_length // 2)
            )
            limits.append(end - origin)
            tables.append(harmony.beat_table(job.chords, end - origin, origin=origin))
            lines.append([b - origin for b in job.bar_starts if origin <= b < end])
            origins.append(origin)
            ends.append(end)
        beats = -(-max(len(t) for t in tables) // TABLE_BEATS) * TABLE_BEATS
        generated = decoder.decode(
            pad_melodies(melody_ids, config.melody_length), primer_ids, limits,
            harmony_tables=harmony.pad_tables(tables, beats),
            bar_tables=models.pad_bar_lines(lines, multiple=BAR_BUCKET),
        )
        for job, tokens, primer, origin, end in zip(active, generated, primer_ids, origins, ends):
            reached = origin + TOKENIZER.duration_steps(primer) + TOKENIZER.duration_steps(tokens)
            new_notes, hanging = TOKENIZER.decode_hanging([*primer, *tokens])
            start_of_new = origin + TOKENIZER.duration_steps(primer)
            fresh, fresh_hanging = [], []
            for note, open_end in zip(new_notes, hanging):
                absolute = Note(note.start + origin, min(note.end + origin, job.num_steps), note.pitch, note.velocity)
                if max(start_of_new, 0) <= absolute.start < job.num_steps:
                    fresh.append(absolute)
                    fresh_hanging.append(open_end)
            if release:
                fresh = release_notes(
                    fresh, job.chords, hanging=fresh_hanging, hanging_beats=hanging_beats
                )
            job.notes += fresh
            if len(primer) + len(tokens) + 1 >= config.accompaniment_length:
                # Token budget exhausted before the window's end: continue from where
                # the decoder got to (at least one bar on, so that generation progresses).
                next_bar = _bar_at_or_before(job.bar_starts, job.position) + 1
                floor = job.bar_starts[next_bar] if next_bar < len(job.bar_starts) else end
                job.position = min(max(reached, floor), job.num_steps)
            else:
                job.position = end
    return [normalize_notes(job.notes) for job in jobs]


def accompany_melodies(
    model: models.AccompanimentModel,
    melodies: Sequence[Melody],
    sampling: SamplingConfig = SamplingConfig(),
    window: WindowConfig = WindowConfig(),
    chords: Sequence[Sequence[Span]] | None = None,
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
    compound: str = DEFAULT_COMPOUND,
    decoder: CachedDecoder | None = None,
) -> list[list[Note]]:
    """Accompaniment of melodies read from MIDI files (:func:`~pianoacc_utils.data.load_melody`).

    As :func:`accompany`, with ``chords`` and the result in each melody's own steps.
    Bars in a compound meter (6/8, 9/8, 12/8, ...) are accompanied through the swing
    map of :mod:`~pianoacc_utils.compound` (``compound="swing"``, the default) or as
    they are (``"plain"``); a melody in simple meters is accompanied exactly as by
    :func:`accompany`.
    """
    maps = [compound_meter.melody_time_map(melody, compound) for melody in melodies]
    jobs = [
        (
            time_map.notes_to_model(melody.notes),
            [int(b) for b in time_map.to_model(melody.grid.bar_starts)],
            int(time_map.to_model([melody.end_step])[0]),
        )
        for melody, time_map in zip(melodies, maps)
    ]
    known = None
    if chords is not None:
        known = [time_map.spans_to_model(spans) for time_map, spans in zip(maps, chords)]
    results = accompany(
        model, jobs, sampling, window, decoder=decoder, chords=known, release=release,
        hanging_beats=hanging_beats,
    )
    moved = []
    for melody, time_map, notes in zip(melodies, maps, results):
        end = int(melody.end_step)  # rounding may carry a last note a step past the melody
        moved.append(
            [n._replace(end=min(n.end, end)) for n in time_map.notes_to_melody(notes) if n.start < end]
        )
    return moved


def release_notes(
    notes: Sequence[Note],
    chords: Sequence[Span] = (),
    max_beats: float = MAX_HELD_BEATS,
    hanging: Sequence[bool] | None = None,
    hanging_beats: float = HANGING_BEATS,
) -> list[Note]:
    """Notes shortened where a pianist would have lifted them.

    A note ends at the first beat after its start where the chord changes to one
    that leaves its pitch class out (beats hold the chord of
    :func:`~pianoacc_utils.harmony.beat_table`; no chord known changes nothing), and
    at most ``max_beats`` beats after its start. A note flagged in ``hanging`` (the
    decoder never ended it: :meth:`~pianoacc_utils.tokenizer.EventTokenizer.decode_hanging`)
    lasts at most ``hanging_beats`` beats. Notes only ever get shorter.
    """
    limits = np.full(len(notes), int(round(max_beats * STEPS_PER_BEAT)))
    if hanging is not None:
        if len(hanging) != len(notes):
            raise ValueError("hanging needs one flag per note")
        short = int(round(min(hanging_beats, max_beats) * STEPS_PER_BEAT))
        limits[np.asarray(hanging, bool)] = short
    table = harmony.beat_table(chords, max((n.end for n in notes), default=0)) if chords else None
    released = []
    for note, limit in zip(notes, limits):
        end = min(note.end, note.start + int(limit))
        if table is not None:
            first, last = note.start // STEPS_PER_BEAT + 1, (end - 1) // STEPS_PER_BEAT
            for beat in range(first, min(last, len(table) - 1) + 1):
                row, before = table[beat, :12], table[beat - 1, :12]
                if row.any() and not row[note.pitch % 12] and not np.array_equal(row, before):
                    end = beat * STEPS_PER_BEAT
                    break
        released.append(note._replace(end=max(end, note.start + 1)))
    return released


def accompany_segment(
    model: models.AccompanimentModel,
    segments: Sequence[Segment],
    sampling: SamplingConfig = SamplingConfig(),
    window: WindowConfig = WindowConfig(),
    primer_tokens: int = 0,
    decoder: CachedDecoder | None = None,
    chords: str = "annotated",
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
) -> list[list[Note]]:
    """Accompany POP909 segments; ``primer_tokens`` > 0 keeps that many ground-truth
    accompaniment tokens as a primer (0: from the melody alone). ``chords``: one of
    :data:`CHORD_SOURCES` (``"annotated"``: the segment's chords, moved with its
    ``transpose``); ``release`` and ``hanging_beats`` as in :func:`accompany`."""
    primers = None
    if primer_tokens > 0:
        primers = [
            TOKENIZER.decode(TOKENIZER.encode(seg.accompaniment)[:primer_tokens])
            for seg in segments
        ]
    melodies = [(seg.melody, seg.bar_starts, seg.num_steps) for seg in segments]
    return accompany(
        model, melodies, sampling, window, primers, decoder,
        chords=[segment_chords(seg, chords) for seg in segments], release=release,
        hanging_beats=hanging_beats,
    )


def segment_chords(seg: Segment, source: str = "annotated") -> list[Span]:
    """The chords a segment is accompanied with, from ``source`` (:data:`CHORD_SOURCES`)."""
    if source not in CHORD_SOURCES:
        raise PianoaccError(f"chords {source!r}: expected one of {', '.join(CHORD_SOURCES)}")
    if source == "annotated":
        return harmony.transpose_spans(seg.chords, seg.transpose)
    if source == "estimated":
        return harmony.estimate_chords(seg.melody, seg.bar_starts, seg.num_steps)
    return []


# --------------------------------------------------------------------------- checkpoints


def pretrained_dir() -> Path:
    """Folder of the shipped models (``pretrained/`` in the checkout)."""
    root = project_root()
    if root is None:
        raise PianoaccError("the shipped models live in the repository's pretrained/ folder")
    return root / "pretrained"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A ``.keras`` file from a name (``fnet``/``transformer``: shipped models),
    a ``.keras`` path, or a training folder (its ``best.keras``)."""
    text = str(name_or_path)
    if text in PRETRAINED:
        path = pretrained_dir() / PRETRAINED[text] / "model.keras"
        if not path.is_file():
            raise PianoaccError(f"{path}: the shipped {text} model is missing")
        return path
    path = Path(text)
    if path.is_dir():
        for candidate in ("best.keras", "model.keras", "last.keras"):
            if (path / candidate).is_file():
                return path / candidate
        raise PianoaccError(f"{path}: no best.keras, model.keras or last.keras in this folder")
    if not path.is_file():
        raise PianoaccError(f"{path}: checkpoint not found")
    return path


def load_checkpoint(name_or_path: str | Path) -> tuple[models.AccompanimentModel, WindowConfig]:
    """Load a model and the window it was trained on (from ``config.json`` beside it)."""
    path = resolve_checkpoint(name_or_path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # keras raises many kinds on a broken file
        raise PianoaccError(f"{path}: not a loadable Keras model ({error})") from error
    bars = 8
    config_path = path.parent / "config.json"
    if config_path.is_file():
        saved = json.loads(config_path.read_text())
        prepare = saved.get("prepare") or saved.get("profile", {}).get("prepare") or {}
        bars = int(prepare.get("bars_per_segment", bars))
    return model, WindowConfig(bars=bars, overlap_bars=max(1, bars // 4) if bars > 1 else 0)


def find_checkpoint(
    kind: str,
    runs_dir: str | Path | None = None,
    train_profile_if_missing: str | None = "quick",
    progress: bool = False,
) -> Path:
    """The checkpoint of a model kind (``fnet``/``transformer``) that the notebooks use.

    In order: a run trained in ``runs_dir/<kind>`` (its ``best.keras``); else the
    shipped model ``pretrained/<kind>/model.keras``; else, so that a checkout without
    models still runs, a model of profile ``train_profile_if_missing`` trained now
    into ``runs_dir/<kind>`` (``training.train_or_reuse``: the quick profile takes
    about a minute on a CPU). ``None`` there, or no ``runs_dir``, turns that last
    step into a :class:`PianoaccError` naming what is missing.
    """
    if kind not in PRETRAINED:
        raise PianoaccError(f"model kind {kind!r}: expected one of {', '.join(PRETRAINED)}")
    run = Path(runs_dir) / kind if runs_dir is not None else None
    if run is not None and (run / "best.keras").is_file():
        return run / "best.keras"
    root = project_root()
    shipped = root / "pretrained" / PRETRAINED[kind] / "model.keras" if root else None
    if shipped is not None and shipped.is_file():
        return shipped
    if run is None or train_profile_if_missing is None:
        where = f"{run / 'best.keras'} nor " if run is not None else ""
        raise PianoaccError(
            f"no {kind} checkpoint: neither {where}the shipped pretrained/{kind}/model.keras exists"
        )
    from pianoacc_utils import training

    training.train_or_reuse(train_profile_if_missing, kind, run, progress=progress)
    if not (run / "best.keras").is_file():
        raise PianoaccError(f"{run}: training wrote no best.keras")
    return run / "best.keras"
