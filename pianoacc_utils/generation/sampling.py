"""The sampling rule: how the decoder's logits become the next token.

:class:`SamplingConfig` holds the settings (temperature, top-p/top-k, seed, chord mask,
velocity temperature) and builds the keras-hub sampler that draws each token. Before the
sampler sees a step's logits, two functions reshape them:

* :func:`velocity_logits` gives the velocity tokens their own temperature, so that the
  dynamics can vary more than the timing and the pitches;
* :func:`note_off_logits` moves every note-off logit by a fixed bias, so that (below 0)
  notes are held longer than the model would hold them: at each step a sounding note is
  a little less likely to end, and the probability goes to the tokens that go on
  (time shifts, other notes);
* :func:`mask_logits` sets forbidden tokens to -1e9 (probability 0): PAD and START
  always, time shifts that would run past the window's end, anything but END once the
  end is reached, and, with the chord mask, note-ons outside the current chord
  (:func:`chord_allowed`). The window mask keeps the accompaniment on the melody's bars;
  the chord mask lets the model choose register, voicing, rhythm and dynamics while the
  chord chooses the pitch classes.

The token tables here (:data:`SHIFT_STEPS`, :data:`NEVER`, :data:`NOTE_ON_CLASS`,
:data:`IS_VELOCITY`) are NumPy arrays over the vocabulary of :data:`TOKENIZER`, built
once so that the masks are plain array operations inside the compiled loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import keras_hub
import numpy as np
from keras import ops

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.defaults import (
    DEFAULT_CHORD_MASK,
    DEFAULT_NOTE_OFF_BIAS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    DEFAULT_VELOCITY_TEMPERATURE,
)
from pianoacc_utils.models.seq2seq import SHIFT_STEPS  # grid steps each token id moves time
from pianoacc_utils.tokenizer import EventTokenizer

TOKENIZER = EventTokenizer()
"""The event vocabulary that generation samples from."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is drawn. ``temperature=0`` means greedy (argmax).

    The defaults (:data:`~pianoacc_utils.defaults.DEFAULT_TEMPERATURE`,
    :data:`~pianoacc_utils.defaults.DEFAULT_TOP_P`) were chosen on the validation
    split (``results/sampling_validation.md``).

    ``top_k``/``top_p`` restrict sampling to the k most likely tokens / the
    smallest set whose probability reaches p; ``seed`` makes sampling reproducible.
    ``chord_mask``: where the harmony table has a chord, allow only note-ons of its
    pitch classes (see the module docstring); the default
    (:data:`~pianoacc_utils.defaults.DEFAULT_CHORD_MASK`) was chosen on the validation
    split (``results/chord_mask_validation.md``).
    ``velocity_temperature``: the temperature of the choice *among* velocity tokens
    (``None``: ``temperature``), so that dynamics can vary more than timing and pitch
    (:func:`velocity_logits`); no effect when ``temperature`` is 0 (greedy). Top-p and
    top-k still apply to every token. Its default
    (:data:`~pianoacc_utils.defaults.DEFAULT_VELOCITY_TEMPERATURE`) was chosen on the
    validation split against a critic that listens for the pianist
    (``results/critic_velocity.md``).
    ``shift_temperature`` / ``pitch_temperature``: the same for the choice among time
    shifts (how long to wait) and among note-ons (which pitch), ``None``: ``temperature``
    (the default: ``results/critic_temperatures.md`` measured them against the critic).
    ``note_off_bias``: added to every note-off logit before the temperature (nats, so
    ``-1`` makes each note-off about e times less likely against the rest); below 0
    notes are held longer (:func:`note_off_logits`); no effect when greedy unless a
    note-off was the most likely token. Its default
    (:data:`~pianoacc_utils.defaults.DEFAULT_NOTE_OFF_BIAS`) was chosen on the
    validation split against the critic (``results/critic_levers.md``).
    """

    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = DEFAULT_TOP_P
    seed: int = 0
    chord_mask: bool = DEFAULT_CHORD_MASK
    velocity_temperature: float | None = DEFAULT_VELOCITY_TEMPERATURE
    note_off_bias: float = DEFAULT_NOTE_OFF_BIAS
    shift_temperature: float | None = None
    pitch_temperature: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise PianoaccError(f"temperature must be a number >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise PianoaccError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise PianoaccError(f"top-k must be >= 1, got {self.top_k}")
        for name in ("velocity", "shift", "pitch"):
            value = getattr(self, f"{name}_temperature")
            if value is not None and not (math.isfinite(value) and value > 0):
                raise PianoaccError(f"{name} temperature must be a number > 0, got {value}")
        if not math.isfinite(self.note_off_bias):
            raise PianoaccError(f"note-off bias must be a finite number, got {self.note_off_bias}")

    @property
    def velocity_factor(self) -> float:
        """``temperature / velocity_temperature`` (1 when unset or greedy): see
        :func:`velocity_logits`."""
        return self._factor(self.velocity_temperature)

    def kind_factors(self) -> list[tuple[np.ndarray, float]]:
        """Each kind of token drawn at a temperature of its own, as (the kind's token
        mask, ``temperature`` / its temperature): velocities, time shifts, note-ons; only
        those whose factor is not 1 (see :func:`kind_logits`)."""
        kinds = ((IS_VELOCITY, self.velocity_temperature), (IS_TIME_SHIFT, self.shift_temperature),
                 (IS_NOTE_ON, self.pitch_temperature))
        return [(mask, self._factor(t)) for mask, t in kinds if self._factor(t) != 1.0]

    def _factor(self, temperature: float | None) -> float:
        if temperature is None or self.temperature == 0:
            return 1.0
        return self.temperature / temperature

    def sampler(self) -> keras_hub.samplers.Sampler:
        """The keras-hub sampler for these settings (greedy, top-p, top-k or plain random).

        Each step the sampler divides the logits by ``temperature``, takes the softmax,
        keeps the smallest set of tokens whose probability reaches ``top_p`` (within the
        ``top_k`` most likely when both are set) or the ``top_k`` most likely, and draws
        one with its own seeded generator; greedy takes the argmax.
        """
        if self.temperature == 0:
            return keras_hub.samplers.GreedySampler()
        if self.top_p is not None:
            return ShortlistTopPSampler(
                p=self.top_p, k=self.top_k, temperature=self.temperature, seed=self.seed
            )
        if self.top_k is not None:
            return keras_hub.samplers.TopKSampler(
                k=self.top_k, temperature=self.temperature, seed=self.seed
            )
        return keras_hub.samplers.RandomSampler(temperature=self.temperature, seed=self.seed)


SHORTLIST = 32
"""Tokens :class:`ShortlistTopPSampler` sorts first (the nucleus nearly always lies
within them); it sorts the whole vocabulary only when some row's nucleus does not."""


class ShortlistTopPSampler(keras_hub.samplers.TopPSampler):
    """keras-hub's top-p sampler, drawing the same token, without sorting the whole
    vocabulary at every step.

    keras-hub sorts all the step's probabilities (``top_k`` with ``k`` the vocabulary
    size), keeps the sorted positions whose cumulative probability before them is at
    most ``p``, and draws among them. On a CPU that sort is a large part of a decoding
    step: about a quarter of it at 8 rows (0.5 of 2.2 ms on 2 Intel Xeon cores). When,
    in every row, the :data:`SHORTLIST` most likely tokens already hold more than ``p``
    of the probability, no later position can be kept, so sorting those few is enough:
    the rest are filled with probability 0, which is what the full sort's rows become
    after the cut. The kept positions, their cumulative sums and the random draw
    (one draw over the whole vocabulary's positions, with the same seed state) are
    then those of the full sort, so the token is the one keras-hub would draw;
    otherwise the step sorts everything, as keras-hub does. With ``k`` set, keras-hub's
    own rule runs unchanged.
    """

    def get_next_token(self, probabilities: Any) -> Any:
        size = ops.shape(probabilities)[1]
        if self.k is not None or size <= SHORTLIST:
            return super().get_next_token(probabilities)

        values, indices = ops.top_k(probabilities, k=SHORTLIST, sorted=True)

        def shortlist() -> tuple[Any, Any]:
            rest = (ops.shape(probabilities)[0], size - SHORTLIST)
            return (
                ops.concatenate([values, ops.zeros(rest, values.dtype)], axis=-1),
                ops.concatenate([indices, ops.zeros(rest, indices.dtype)], axis=-1),
            )

        def everything() -> tuple[Any, Any]:
            return tuple(ops.top_k(probabilities, k=size, sorted=True))

        # Cumulative sums only grow: past ``p`` at the shortlist's end, no later position is kept.
        enough = ops.all(ops.cumsum(values, axis=-1)[:, -1] > self.p)
        sorted_preds, sorted_indices = ops.cond(enough, shortlist, everything)
        # From here on, keras-hub's TopPSampler.get_next_token line for line.
        cumulative_probabilities = ops.cumsum(sorted_preds, axis=-1)
        keep_mask = cumulative_probabilities <= self.p
        shifted_keep_mask = ops.concatenate(
            [ops.ones_like(keep_mask[:, :1]), keep_mask[:, :-1]], axis=-1
        )
        probabilities = ops.where(
            shifted_keep_mask, sorted_preds, ops.zeros(ops.shape(sorted_preds), sorted_preds.dtype)
        )
        sorted_next_token = keras.random.categorical(
            ops.log(probabilities), 1, seed=self.seed_generator, dtype="int32"
        )
        output = ops.take_along_axis(sorted_indices, sorted_next_token, axis=-1)
        return ops.squeeze(output, axis=-1)


GREEDY = SamplingConfig(temperature=0.0, top_p=None, chord_mask=False)
"""Greedy decoding (always the most likely token), no chord mask: deterministic, the
setting of the cached-against-naive comparisons."""


# --------------------------------------------------------------------------- token masks


NEVER = np.zeros(len(TOKENIZER), bool)


NEVER[[TOKENIZER.pad_id, TOKENIZER.start_id]] = True
"""Tokens the decoder may never emit."""


NOTE_ON_CLASS = np.full(len(TOKENIZER), 12, np.int32)


NOTE_ON_CLASS[TOKENIZER.note_on_offset : TOKENIZER.note_off_offset] = np.arange(128) % 12
"""Pitch class of each note-on token id; 12 (no class) for every other token."""


IS_VELOCITY = np.zeros(len(TOKENIZER), bool)


IS_VELOCITY[TOKENIZER.velocity_offset : TOKENIZER.vocabulary_size] = True
"""The velocity tokens (their temperature: ``SamplingConfig.velocity_temperature``)."""


IS_NOTE_ON = np.zeros(len(TOKENIZER), bool)


IS_NOTE_ON[TOKENIZER.note_on_offset : TOKENIZER.note_off_offset] = True
"""The note-on tokens (their temperature: ``SamplingConfig.pitch_temperature``)."""


IS_TIME_SHIFT = np.zeros(len(TOKENIZER), bool)


IS_TIME_SHIFT[TOKENIZER.time_shift_offset : TOKENIZER.velocity_offset] = True
"""The time-shift tokens (their temperature: ``SamplingConfig.shift_temperature``)."""


IS_NOTE_OFF = np.zeros(len(TOKENIZER), bool)


IS_NOTE_OFF[TOKENIZER.note_off_offset : TOKENIZER.time_shift_offset] = True
"""The note-off tokens (their bias: ``SamplingConfig.note_off_bias``)."""


def mask_logits(logits: Any, remaining: Any, allowed: Any = None) -> Any:
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


def kind_logits(logits: Any, kind: np.ndarray, factor: float, temperature: float) -> Any:
    """Logits (B, V) whose tokens of one ``kind`` (a token mask), once the sampler
    divides by ``temperature``, are drawn as at temperature ``temperature / factor``
    among themselves, while their total probability stays what it was.

    Multiplying the kind's logits by ``factor`` alone would also move probability
    between that kind and the rest (a "hotter" velocity would mean fewer velocity
    changes, hence *flatter* dynamics); the added constant keeps the kind's log-sum-exp
    at ``temperature`` unchanged. Masked tokens (-1e9) stay masked.
    """
    chosen = ops.convert_to_tensor(kind)[None, :]
    floor = ops.cast(-1e9, logits.dtype)
    before = ops.logsumexp(ops.where(chosen, logits, floor) / temperature, axis=-1, keepdims=True)
    scaled = logits * factor
    after = ops.logsumexp(ops.where(chosen, scaled, floor) / temperature, axis=-1, keepdims=True)
    return ops.where(chosen, scaled + temperature * (before - after), logits)


def velocity_logits(logits: Any, factor: float, temperature: float) -> Any:
    """:func:`kind_logits` of the velocity tokens (``SamplingConfig.velocity_temperature``)."""
    return kind_logits(logits, IS_VELOCITY, factor, temperature)


def note_off_logits(logits: Any, bias: float) -> Any:
    """Logits (B, V) with ``bias`` (nats) added to every note-off token.

    A sounding note ends when the decoder emits its note-off; below 0 each step is less
    likely to end it, so notes are held longer (the probability moves to time shifts and
    other notes in proportion, as a softmax does). Notes left hanging are still released
    by :func:`~pianoacc_utils.generation.release_notes`.
    """
    offset = ops.cast(ops.convert_to_tensor(IS_NOTE_OFF)[None, :], logits.dtype) * bias
    return logits + offset


def shape_logits(
    logits: Any, sampling: SamplingConfig, remaining: Any, allowed: Any = None
) -> Any:
    """A step's logits (B, V) as the sampler gets them: the velocity, time-shift and
    pitch temperatures (:func:`kind_logits`), the note-off bias (:func:`note_off_logits`),
    then the masks (:func:`mask_logits`; ``remaining`` (B,) grid steps left, ``allowed``
    the chord mask's row or ``None``). The decoding loop and the behaviour pins both call
    it."""
    for kind, factor in sampling.kind_factors():
        logits = kind_logits(logits, kind, factor, sampling.temperature)
    if sampling.note_off_bias != 0.0:
        logits = note_off_logits(logits, sampling.note_off_bias)
    return mask_logits(logits, remaining, allowed)


def chord_allowed(tables: np.ndarray) -> np.ndarray:
    """Per beat, the tokens the chord mask allows: ``(B, NB, V)`` bool from harmony
    tables ``(B, NB, 24)``. Every token but the note-ons outside the beat's chord;
    every token where the beat has no chord."""
    tones = np.asarray(tables)[..., :12] > 0
    padded = np.concatenate([tones, np.ones(tones.shape[:-1] + (1,), bool)], axis=-1)
    allowed = padded[..., NOTE_ON_CLASS]
    allowed[~tones.any(axis=-1)] = True
    return allowed
