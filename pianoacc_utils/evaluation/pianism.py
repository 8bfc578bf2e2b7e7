"""Metrics of what a pianist does and rule-based block chords do not.

Block chords struck on every beat score perfectly on the timing and harmony metrics of
:mod:`~pianoacc_utils.evaluation.metrics`. The metrics here look at how the music
moves from bar to bar: whether the pitch content changes (harmonic motion and variety),
where in the bar the onsets fall compared with the pianist of the same segment and
whether every bar repeats the last one's rhythm, whether a bass note marks the strong
beats and how wide the voicing is, and how long the notes last.

Conventions as in :mod:`~pianoacc_utils.evaluation.metrics`: notes on the 32nd-note
grid of a segment (8 steps per quarter-note beat), bar ``i`` is
``[bar_starts[i], bar_starts[i+1])`` in steps, the last bar ending at ``num_steps``;
an undefined value is NaN. ``docs/metrics.md`` has the formulas and reasons.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Sequence

import numpy as np

from pianoacc_utils.data.notes import Note, note_arrays
from pianoacc_utils.defaults import STEPS_PER_BEAT

CHROMA_THRESHOLD = 0.2
"""A pitch class belongs to a bar's pitch content when it sounds at least this share of
the time of the bar's most sounding pitch class (passing notes stay out)."""

PHRASE_BARS = 4
"""Bars per phrase of :func:`harmonic_variety`."""

LOW_REGISTER_TOP = 55
"""Notes below this MIDI pitch (G3) are in the bass register of :func:`strong_beat_bass`."""

STRONG_BEAT_TOLERANCE_STEPS = 1
"""A bass onset this many steps (a 32nd note) or closer to a strong beat marks it."""

PIANISM_METRICS: dict[str, str] = {
    "harmonic_motion": "share of bar changes",
    "harmonic_variety": "pitch-class sets per 4 bars",
    "rhythm_distance": "total variation (0..1)",
    "onset_repetition": "share of bar changes",
    "strong_beat_bass": "share of strong beats",
    "voicing_spread": "semitones",
    "median_duration": "beats",
}
"""The metrics of this module, in report order, with their units."""


def _bars(bar_starts: Sequence[int], num_steps: int) -> list[tuple[int, int]]:
    """(start, end) steps of each bar; the last bar ends at ``num_steps``."""
    starts = [int(b) for b in bar_starts]
    return list(zip(starts, starts[1:] + [int(num_steps)]))


# --------------------------------------------------------------------------- harmony


def bar_pitch_classes(
    notes: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> list[frozenset[int] | None]:
    """Per bar, the pitch classes (0 = C) of the notes sounding in it; ``None`` when silent.

    A pitch class counts when its notes sound, in total, at least
    :data:`CHROMA_THRESHOLD` of the time (steps inside the bar) of the bar's most
    sounding pitch class, so a short passing note does not change the bar's content.
    """
    starts, ends, pitches, _ = note_arrays(notes)
    result: list[frozenset[int] | None] = []
    for first, last in _bars(bar_starts, num_steps):
        overlap = np.clip(np.minimum(ends, last) - np.maximum(starts, first), 0, None)
        chroma = np.bincount(pitches % 12, weights=overlap, minlength=12) if len(pitches) else None
        if chroma is None or chroma.max() <= 0:
            result.append(None)
            continue
        result.append(frozenset(np.flatnonzero(chroma >= CHROMA_THRESHOLD * chroma.max()).tolist()))
    return result


def harmonic_motion(notes: Sequence[Note], bar_starts: Sequence[int], num_steps: int) -> float:
    """Share of bar-to-bar transitions whose pitch content (:func:`bar_pitch_classes`) changes.

    Only pairs of consecutive bars that both sound count. 0 for one chord held or
    repeated throughout, 1 when every bar brings a new set. NaN without such a pair.
    """
    sets = bar_pitch_classes(notes, bar_starts, num_steps)
    pairs = [(a, b) for a, b in pairwise(sets) if a is not None and b is not None]
    return float(np.mean([a != b for a, b in pairs])) if pairs else math.nan


def harmonic_variety(notes: Sequence[Note], bar_starts: Sequence[int], num_steps: int) -> float:
    """Mean number of distinct pitch-class sets per phrase of :data:`PHRASE_BARS` bars.

    Phrases are the consecutive groups of 4 bars from the segment's first bar (a
    shorter group at the end is left out); silent bars are left out of a phrase, and a
    phrase with no sounding bar is left out. 1 to 4; NaN without a phrase.
    """
    sets = bar_pitch_classes(notes, bar_starts, num_steps)
    counts = []
    for first in range(0, len(sets) - PHRASE_BARS + 1, PHRASE_BARS):
        sounding = {s for s in sets[first : first + PHRASE_BARS] if s is not None}
        if sounding:
            counts.append(len(sounding))
    return float(np.mean(counts)) if counts else math.nan


# --------------------------------------------------------------------------- rhythm


def bar_onset_patterns(
    notes: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> list[frozenset[int]]:
    """Per bar, its distinct onset positions (steps from the bar start); a chord counts once."""
    starts = np.unique(note_arrays(notes)[0])
    return [
        frozenset((starts[(starts >= first) & (starts < last)] - first).tolist())
        for first, last in _bars(bar_starts, num_steps)
    ]


def onset_histogram(patterns: Sequence[frozenset[int]], length: int) -> np.ndarray | None:
    """Normalised histogram over positions 0..length-1 (steps from the bar start) of the
    onset positions of some bars; positions from ``length`` on are left out. ``None``
    without an onset."""
    counts = np.zeros(length)
    for pattern in patterns:
        for position in pattern:
            if position < length:
                counts[position] += 1
    total = counts.sum()
    return counts / total if total else None


def rhythm_distance(
    notes: Sequence[Note], pianist: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> float:
    """Total variation distance between the accompaniment's and the pianist's onset
    positions in the bar, each half of the segment against the other half.

    The bars split into a first half (``n // 2`` bars) and a second half. For each half
    ``h``, the histogram of the accompaniment's onset positions in the bars of ``h``
    (:func:`onset_histogram`) is compared with the pianist's in the *other* half:
    ``TV(p, q) = 1/2 * sum |p_k - q_k|`` (0 same positions, 1 disjoint positions); the
    metric is the mean of the two. Crossing the halves makes the pianist's own value
    its variation within the segment, not 0, so systems are judged against it. NaN when
    fewer than 2 bars or a half without onsets on either side.
    """
    bars = _bars(bar_starts, num_steps)
    if len(bars) < 2:
        return math.nan
    length = max(last - first for first, last in bars)
    mine = bar_onset_patterns(notes, bar_starts, num_steps)
    theirs = bar_onset_patterns(pianist, bar_starts, num_steps)
    middle = len(bars) // 2
    halves = (slice(0, middle), slice(middle, len(bars)))
    distances = []
    for own, other in (halves, halves[::-1]):
        p, q = onset_histogram(mine[own], length), onset_histogram(theirs[other], length)
        if p is None or q is None:
            return math.nan
        distances.append(0.5 * float(np.abs(p - q).sum()))
    return float(np.mean(distances))


def onset_repetition(notes: Sequence[Note], bar_starts: Sequence[int], num_steps: int) -> float:
    """Share of consecutive bar pairs, both with onsets, whose onset patterns
    (:func:`bar_onset_patterns`) are the same. NaN without such a pair."""
    patterns = bar_onset_patterns(notes, bar_starts, num_steps)
    pairs = [(a, b) for a, b in pairwise(patterns) if a and b]
    return float(np.mean([a == b for a, b in pairs])) if pairs else math.nan


# --------------------------------------------------------------------------- register and voicing


def strong_beats(bar_starts: Sequence[int], num_steps: int) -> list[int]:
    """Steps of the strong beats: every downbeat, and the middle of bars of an even
    number of beats (beat 3 of 4/4, beat 2 of 2/4)."""
    beats = []
    for first, last in _bars(bar_starts, num_steps):
        beats.append(first)
        length = last - first
        if length % (2 * STEPS_PER_BEAT) == 0 and length >= 2 * STEPS_PER_BEAT:
            beats.append(first + length // 2)
    return beats


def strong_beat_bass(notes: Sequence[Note], bar_starts: Sequence[int], num_steps: int) -> float:
    """Share of strong beats (:func:`strong_beats`) where a bass note starts: a note below
    :data:`LOW_REGISTER_TOP` (G3) whose onset is at most 1 step from the beat.
    NaN without notes or strong beats."""
    starts, _, pitches, _ = note_arrays(notes)
    beats = np.array(strong_beats(bar_starts, num_steps), dtype=np.int64)
    if len(starts) == 0 or len(beats) == 0:
        return math.nan
    bass = np.sort(starts[pitches < LOW_REGISTER_TOP])
    tolerance = STRONG_BEAT_TOLERANCE_STEPS
    before = np.searchsorted(bass, beats - tolerance, side="left")
    after = np.searchsorted(bass, beats + tolerance, side="right")
    return float(np.mean(after > before))


def voicing_spread(notes: Sequence[Note]) -> float:
    """Median over the onset steps of the highest minus the lowest pitch sounding there
    (notes starting at the step and notes still held), in semitones; 0 for a lone note.
    NaN without notes."""
    starts, ends, pitches, _ = note_arrays(notes)
    if len(starts) == 0:
        return math.nan
    onsets = np.unique(starts)
    sounding = (starts[None, :] <= onsets[:, None]) & (ends[None, :] > onsets[:, None])
    high = np.where(sounding, pitches[None, :], -1).max(axis=1)
    low = np.where(sounding, pitches[None, :], 999).min(axis=1)
    return float(np.median(high - low))


def median_duration(notes: Sequence[Note]) -> float:
    """Median note duration, in beats (NaN without notes)."""
    starts, ends, _, _ = note_arrays(notes)
    if len(starts) == 0:
        return math.nan
    return float(np.median(ends - starts) / STEPS_PER_BEAT)


def pianism_metrics(
    notes: Sequence[Note], pianist: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> dict[str, float]:
    """Every metric of :data:`PIANISM_METRICS` for one accompaniment of a segment;
    ``pianist`` is the segment's own accompaniment (for :func:`rhythm_distance`)."""
    return {
        "harmonic_motion": harmonic_motion(notes, bar_starts, num_steps),
        "harmonic_variety": harmonic_variety(notes, bar_starts, num_steps),
        "rhythm_distance": rhythm_distance(notes, pianist, bar_starts, num_steps),
        "onset_repetition": onset_repetition(notes, bar_starts, num_steps),
        "strong_beat_bass": strong_beat_bass(notes, bar_starts, num_steps),
        "voicing_spread": voicing_spread(notes),
        "median_duration": median_duration(notes),
    }
