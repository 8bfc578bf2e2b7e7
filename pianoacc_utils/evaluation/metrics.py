"""Pure accompaniment metrics: each one a function of notes and a grid, defined in its docstring.

Notes lie on the 32nd-note grid of a segment (8 steps per quarter-note beat, step 0 on
a downbeat); bar ``i`` is ``[bar_starts[i], bar_starts[i+1])`` in steps, the last bar
ending at ``num_steps``. Tolerances given in milliseconds need ``beat_seconds``, the
duration of a quarter-note beat in seconds. An undefined value is NaN. Running systems
on segments is :mod:`~pianoacc_utils.evaluation.runs`, summarising them
:mod:`~pianoacc_utils.evaluation.summary`; ``docs/metrics.md`` has the formulas and
the reasons behind each choice.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import Note, Span, note_arrays
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.evaluation.pianism import PIANISM_METRICS, pianism_metrics
from pianoacc_utils.harmony.chords import chord_tones
from pianoacc_utils.harmony.key import _key_scores, estimate_key, parse_key

DEFAULT_BEAT_SECONDS = 0.5
"""Seconds per quarter-note beat when the tempo is unknown (120 bpm)."""

GRID_TOLERANCE_SECONDS = 0.030
"""An onset this close to a grid position (and closer than 1/8 beat) lies on it."""

COINCIDENCE_SECONDS = 0.040
"""Two onsets this close (or closer) sound together."""

SIXTEENTH_BEATS = 0.25
"""Period (beats) of the sixteenth-note grid of :func:`grid_share`."""

BAR_SHIFT_LIMIT_BEATS = 0.5
"""Largest shift (beats, either way) tried by :func:`bar_offsets`: shifts repeat every beat."""

BAR_SHIFT_RESOLUTION_BEATS = 1 / 32
"""Spacing (beats) of the shifts tried by :func:`bar_offsets`."""

BAR_CLOSENESS_SIGMA_BEATS = 1 / 32
"""Width (beats) of the Gaussian that rates an onset's closeness to a grid position."""

BAR_OFF_BEATS = 1 / 8
"""A bar whose offset is at least this large (in beats) counts as off the beat."""

DOWNBEAT_WEIGHT = 2.0
"""Weight of the downbeat in :func:`bar_offsets`: a bar's start outweighs any beat."""

METRIC_LEVELS = ((1.0, 1.0), (0.5, 0.5), (0.25, 0.25))
"""(period in beats, weight) of the metric grid used by :func:`bar_offsets`: below
the bar's downbeat (:data:`DOWNBEAT_WEIGHT`) the beat weighs most, then the eighth
note, then the sixteenth note."""

BAR_WEIGHT_MAX_BEATS = 4.0
"""Durations count up to this many beats in :func:`bar_offsets` weights."""

CONSONANT_INTERVALS = frozenset({0, 3, 4, 5, 7, 8, 9})
"""Intervals modulo 12 (semitones) counted as consonant: unison/octave, thirds,
fourth, fifth, sixths (the set is closed under inversion)."""

METRICS: dict[str, str] = {
    "grid_share": "share of onsets",
    "melody_beat_coverage": "share of on-beat melody onsets",
    "median_bar_offset": "beats",
    "bars_off_share": "share of bars",
    "chord_tone_ratio": "share of note steps",
    "melody_consonance": "share of overlap steps",
    "key_agreement": "0/1 per segment",
    "key_compatible": "0/1 per segment",
    "melody_key_agreement": "0/1 per segment",
    "melody_key_compatible": "0/1 per segment",
    "silent_bar_share": "share of melody bars",
    "ending_offset_bars": "bars",
    "notes_per_bar": "notes",
    "polyphony": "notes",
    "pitch_range": "semitones",
    "velocity_std": "MIDI velocity",
    **PIANISM_METRICS,
}
"""Every per-segment metric of :func:`segment_metrics`, in report order, with its unit."""

TEXTURE_METRICS = ("notes_per_bar", "polyphony", "pitch_range", "velocity_std")
"""Metrics whose per-segment distributions are compared with the ground truth's by
:func:`overlapping_area` (they have no better or worse, only closer to the pianist)."""

NOTE_FEATURE_BINS: dict[str, np.ndarray] = {
    "pitch": np.arange(129) - 0.5,
    "velocity": np.arange(0, 129, 4) - 0.5,
    "duration": np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 2**31]) - 0.5,
}
"""Pooled note features compared by overlapping area, with their histogram bin edges
(one bin per MIDI pitch; velocity in bins of 4, as the tokenizer quantizes it; duration
in grid steps, in bins that widen by half at each step: 1, 2, 3, 4, 6, 8, 12 ... 128 and
longer)."""

OVERLAP_BINS = 20
"""Histogram bins for overlapping areas of per-segment texture metrics."""


# --------------------------------------------------------------------------- helpers


def _check_beat_seconds(beat_seconds: float) -> float:
    value = float(beat_seconds)
    if not math.isfinite(value) or value <= 0:
        raise PianoaccError(f"beat_seconds must be positive seconds per beat, got {beat_seconds}")
    return value


def _grid_tolerance_beats(beat_seconds: float) -> float:
    """min(30 ms, 1/8 beat), in beats."""
    return min(GRID_TOLERANCE_SECONDS / _check_beat_seconds(beat_seconds), 1 / 8)


def _distance_to_grid(beats: np.ndarray, period: float) -> np.ndarray:
    """Distance (beats) of each position to the nearest multiple of ``period`` beats."""
    return np.abs(beats - period * np.round(beats / period))


def _onset_beats(notes: Sequence[Note]) -> np.ndarray:
    return np.array([n.start for n in notes], dtype=np.float64) / STEPS_PER_BEAT


def _sounding_counts(notes: Sequence[Note], length: int) -> np.ndarray:
    """Number of notes sounding at each step 0..length-1 (notes clipped to that range)."""
    starts, ends, _, _ = note_arrays(notes)
    delta = np.zeros(length + 1, dtype=np.int64)
    starts, ends = np.clip(starts, 0, length), np.clip(ends, 0, length)
    keep = ends > starts
    np.add.at(delta, starts[keep], 1)
    np.add.at(delta, ends[keep], -1)
    return np.cumsum(delta[:-1])


def _bar_bounds(bar_starts: Sequence[int], num_steps: int) -> list[tuple[int, int]]:
    """(start, end) steps of each bar; the last bar ends at ``num_steps``."""
    starts = [int(b) for b in bar_starts]
    ends = starts[1:] + [int(num_steps)]
    return list(zip(starts, ends))


# --------------------------------------------------------------------------- timing


def grid_share(notes: Sequence[Note], beat_seconds: float = DEFAULT_BEAT_SECONDS) -> float:
    """Share of onsets on the sixteenth-note grid of the beats (NaN without notes).

    An onset lies on the grid when its distance to the nearest sixteenth note is
    strictly below min(30 ms, 1/8 beat). On the integer 32nd-note grid this means an
    even step (an odd step is 1/8 beat away); fractional steps are judged in time.
    """
    beats = _onset_beats(notes)
    if len(beats) == 0:
        return math.nan
    tolerance = _grid_tolerance_beats(beat_seconds)
    return float(np.mean(_distance_to_grid(beats, SIXTEENTH_BEATS) < tolerance))


def melody_beat_coverage(
    melody: Sequence[Note],
    accompaniment: Sequence[Note],
    beat_seconds: float = DEFAULT_BEAT_SECONDS,
) -> float:
    """Share of the melody's on-beat onsets that the accompaniment strikes with it.

    A melody onset is on the beat when it is closer than min(30 ms, 1/8 beat) to a
    quarter-note beat; it is covered when an accompaniment onset lies within 40 ms
    (inclusive). NaN when the melody has no on-beat onset.
    """
    tolerance = _grid_tolerance_beats(beat_seconds)
    melody_beats = _onset_beats(melody)
    on_beat = melody_beats[_distance_to_grid(melody_beats, 1.0) < tolerance]
    if len(on_beat) == 0:
        return math.nan
    accompaniment_beats = np.sort(_onset_beats(accompaniment))
    if len(accompaniment_beats) == 0:
        return 0.0
    index = np.searchsorted(accompaniment_beats, on_beat)
    after = accompaniment_beats[np.minimum(index, len(accompaniment_beats) - 1)]
    before = accompaniment_beats[np.maximum(index - 1, 0)]
    nearest = np.minimum(np.abs(after - on_beat), np.abs(on_beat - before))
    return float(np.mean(nearest * beat_seconds <= COINCIDENCE_SECONDS + 1e-9))


def _gaussian(distance: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (distance / BAR_CLOSENESS_SIGMA_BEATS) ** 2)


def _metric_closeness(beats: np.ndarray, bar_beats: np.ndarray) -> np.ndarray:
    """Closeness of positions (beats from a bar start) to the metric grid, in [0, 2].

    The best over the metric levels of level weight times a Gaussian (sigma 1/32
    beat) of the distance to that level's nearest position: the downbeat (the bar
    start or the next bar's, ``bar_beats`` later) 2.0, then :data:`METRIC_LEVELS`.
    """
    downbeat_distance = np.minimum(np.abs(beats), np.abs(beats - bar_beats))
    best = DOWNBEAT_WEIGHT * _gaussian(downbeat_distance)
    for period, weight in METRIC_LEVELS:
        best = np.maximum(best, weight * _gaussian(_distance_to_grid(beats, period)))
    return best


def _onset_weights(starts: np.ndarray, ends: np.ndarray, pitches: np.ndarray) -> np.ndarray:
    """min(duration in beats, 4) * (1 + (108 - pitch) / 87): long and low notes weigh more."""
    duration = np.minimum(np.maximum(ends - starts, 1) / STEPS_PER_BEAT, BAR_WEIGHT_MAX_BEATS)
    pitch = np.clip(pitches, 21, 108)
    return duration * (1 + (108 - pitch) / 87)


def _candidate_shifts() -> np.ndarray:
    """Shifts -1/2..+1/2 beat in 1/32-beat steps, in tie-break order: nearest 0 first,
    then the positive (late) one of each +-pair."""
    count = int(round(BAR_SHIFT_LIMIT_BEATS / BAR_SHIFT_RESOLUTION_BEATS))
    steps = sorted(range(-count, count + 1), key=lambda k: (abs(k), -k))
    return np.array(steps, dtype=np.float64) * BAR_SHIFT_RESOLUTION_BEATS


def bar_offsets(
    accompaniment: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> np.ndarray:
    """Per bar with accompaniment onsets, the shift (beats) that lines them up with the beat.

    Each candidate shift s in -1/2..+1/2 beat (1/32-beat steps) scores the sum over
    the bar's distinct onset steps of weight * closeness(onset - s): closeness rates
    the distance to the downbeat (2.0), beat (1.0), eighth (0.5) and sixteenth (0.25)
    grid through a Gaussian of sigma 1/32 beat, keeping the best level; an onset's
    weight is the largest of its notes' min(duration in beats, 4) * (1 + (108 - pitch)
    / 87), so long and low notes lead and a chord counts once. The offset is the best
    shift; ties go to the shift nearest 0, then to the positive one.

    A positive offset means the onsets come *late*. Shifts are only defined modulo one
    beat, so a bar exactly half a beat off reports +0.5. Onsets outside every bar are
    ignored. Returns one offset per bar that has onsets, in bar order (maybe empty).
    """
    starts, ends, pitches, _ = note_arrays(accompaniment)
    bounds = _bar_bounds(bar_starts, num_steps)
    if len(starts) == 0 or not bounds:
        return np.zeros(0, dtype=np.float64)
    bar_first = np.array([b for b, _ in bounds], dtype=np.int64)
    bar_last = np.array([e for _, e in bounds], dtype=np.int64)
    bar_index = np.searchsorted(bar_first, starts, side="right") - 1
    inside = (bar_index >= 0) & (starts < bar_last[np.maximum(bar_index, 0)])
    if not np.any(inside):
        return np.zeros(0, dtype=np.float64)
    onsets, group = np.unique(starts[inside], return_inverse=True)
    weights = np.zeros(len(onsets))
    np.maximum.at(weights, group, _onset_weights(starts[inside], ends[inside], pitches[inside]))
    bar_index = np.searchsorted(bar_first, onsets, side="right") - 1
    relative = (onsets - bar_first[bar_index]) / STEPS_PER_BEAT
    bar_beats = (bar_last[bar_index] - bar_first[bar_index]) / STEPS_PER_BEAT
    shifts = _candidate_shifts()
    closeness = _metric_closeness(relative[:, None] - shifts[None, :], bar_beats[:, None])
    contributions = weights[:, None] * closeness
    scores = np.zeros((len(bounds), len(shifts)))
    np.add.at(scores, bar_index, contributions)
    offsets = []
    for bar in np.unique(bar_index):
        best = scores[bar].max()
        ties = np.isclose(scores[bar], best, rtol=1e-9, atol=1e-12)
        offsets.append(shifts[int(np.argmax(ties))])
    return np.array(offsets, dtype=np.float64)


# --------------------------------------------------------------------------- harmony


def chord_pitch_classes(label: str) -> frozenset[int] | None:
    """Pitch classes (0 = C) of a chord label such as ``"A:min7"`` or ``"Bb:maj/3"``:
    those of :func:`pianoacc_utils.harmony.chord_tones` (extensions folded into the
    octave, plus the bass of a slash chord). ``None`` for no chord (``"N"``, ``"X"``).
    """

    tones = chord_tones(label)
    return None if tones is None else tones[0]


def chord_tone_ratio(
    accompaniment: Sequence[Note], chords: Sequence[Span], transpose: int = 0
) -> float:
    """Share of accompaniment note time inside annotated chords that is a chord tone.

    Over all steps where an accompaniment note sounds inside a chord span other than
    "N", the share whose pitch class (after undoing ``transpose`` semitones: labels
    are as annotated) belongs to that chord. NaN when no note sounds inside a chord.
    """
    starts, ends, pitches, _ = note_arrays(accompaniment)
    annotated = [(c, chord_pitch_classes(c.label)) for c in chords]
    annotated = [(c, tones) for c, tones in annotated if tones is not None and c.end > c.start]
    if len(starts) == 0 or not annotated:
        return math.nan
    length = int(max(int(ends.max()), max(c.end for c, _ in annotated), 1))
    in_chord = np.zeros(length, dtype=np.int64)
    tone = np.zeros((length, 12), dtype=np.int64)
    for chord, tones in annotated:
        s, e = max(chord.start, 0), min(chord.end, length)
        in_chord[s:e] = 1
        tone[s:e, sorted(tones)] = 1
    in_chord_cum = np.concatenate([[0], np.cumsum(in_chord)])
    tone_cum = np.vstack([np.zeros((1, 12), dtype=np.int64), np.cumsum(tone, axis=0)])
    s, e = np.clip(starts, 0, length), np.clip(ends, 0, length)
    pitch_class = (pitches - transpose) % 12
    inside = in_chord_cum[e] - in_chord_cum[s]
    chord_tone = tone_cum[e, pitch_class] - tone_cum[s, pitch_class]
    total = int(inside.sum())
    return float(chord_tone.sum() / total) if total else math.nan


def melody_consonance(melody: Sequence[Note], accompaniment: Sequence[Note]) -> float:
    """Share of melody-accompaniment sounding time at a consonant interval.

    Every pair (melody note, accompaniment note) counts with the steps the two
    overlap; the pair is consonant when their interval modulo 12 is one of
    :data:`CONSONANT_INTERVALS` (0, 3, 4, 5, 7, 8, 9 semitones). NaN when no pair overlaps.
    """
    m_start, m_end, m_pitch, _ = note_arrays(melody)
    a_start, a_end, a_pitch, _ = note_arrays(accompaniment)
    if len(m_start) == 0 or len(a_start) == 0:
        return math.nan
    latest_start = np.maximum(m_start[:, None], a_start[None, :])
    overlap = np.maximum(np.minimum(m_end[:, None], a_end[None, :]) - latest_start, 0)
    interval = np.abs(m_pitch[:, None] - a_pitch[None, :]) % 12
    consonant = np.isin(interval, sorted(CONSONANT_INTERVALS))
    total = int(overlap.sum())
    return float((overlap * consonant).sum() / total) if total else math.nan


def key_agreement(
    accompaniment: Sequence[Note],
    melody: Sequence[Note],
    annotated_key: str | None,
    transpose: int = 0,
) -> dict[str, float]:
    """Does the accompaniment's estimated key agree with the annotated and the melody's key?

    Keys compare by tonic pitch class and mode (enharmonic spellings are equal); the
    annotated key is moved by ``transpose`` semitones to the sounding key first.
    Returns ``key_agreement``/``key_compatible`` (against the annotation) and
    ``melody_key_agreement``/``melody_key_compatible`` (against :func:`estimate_key`
    of the melody): 1.0 same key, 0.0 otherwise; *compatible* also counts the relative
    major/minor as agreeing. NaN where a key is missing.
    """
    estimated_label = estimate_key(accompaniment)
    melody_label = estimate_key(melody)
    estimated = parse_key(estimated_label) if estimated_label else None
    melody_key = parse_key(melody_label) if melody_label else None
    annotated = None
    if annotated_key:
        tonic, mode = parse_key(annotated_key)
        annotated = ((tonic + transpose) % 12, mode)
    agreement, compatible = _key_scores(estimated, annotated)
    melody_agreement, melody_compatible = _key_scores(estimated, melody_key)
    return {
        "key_agreement": agreement,
        "key_compatible": compatible,
        "melody_key_agreement": melody_agreement,
        "melody_key_compatible": melody_compatible,
    }


# --------------------------------------------------------------------------- coverage


def _bars_sounding(notes: Sequence[Note], bounds: list[tuple[int, int]], length: int) -> np.ndarray:
    """Per bar, whether any of the notes sounds somewhere in it."""
    counts = np.concatenate([[0], np.cumsum(_sounding_counts(notes, length) > 0)])
    return np.array(
        [counts[min(e, length)] - counts[min(s, length)] > 0 for s, e in bounds], dtype=bool
    )


def silent_bar_share(
    melody: Sequence[Note], accompaniment: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> float:
    """Share of the bars where the melody sounds in which no accompaniment note sounds.

    Bars are [bar_starts[i], bar_starts[i+1]) in steps, the last ending at
    ``num_steps``; a note sounds in a bar when it overlaps it by at least one step.
    NaN when the melody sounds in no bar.
    """
    bounds = _bar_bounds(bar_starts, num_steps)
    melody_bars = _bars_sounding(melody, bounds, int(num_steps))
    if not melody_bars.any():
        return math.nan
    accompaniment_bars = _bars_sounding(accompaniment, bounds, int(num_steps))
    return float(np.mean(~accompaniment_bars[melody_bars]))


def mean_bar_steps(bar_starts: Sequence[int], num_steps: int) -> float:
    """Mean length (steps) of the complete bars (the last, open bar only when alone)."""
    starts = [int(b) for b in bar_starts]
    if len(starts) >= 2:
        return float(np.mean(np.diff(starts)))
    if starts:
        return float(max(int(num_steps) - starts[0], 1))
    return float(max(int(num_steps), 1))


def ending_offset_bars(
    melody: Sequence[Note], accompaniment: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> float:
    """(last accompaniment note end - last melody note end), in bars of mean length.

    Positive: the accompaniment runs on after the melody; negative: it stops before.
    The mean bar length is :func:`mean_bar_steps`. NaN when either part is empty.
    """
    if not melody or not accompaniment:
        return math.nan
    difference = max(n.end for n in accompaniment) - max(n.end for n in melody)
    return float(difference / mean_bar_steps(bar_starts, num_steps))


# --------------------------------------------------------------------------- texture


def notes_per_bar(notes: Sequence[Note], num_bars: int) -> float:
    """Number of notes divided by the number of bars (NaN without bars)."""
    return len(notes) / num_bars if num_bars > 0 else math.nan


def polyphony(notes: Sequence[Note]) -> float:
    """Mean number of notes sounding, over the steps where at least one sounds (NaN if none)."""
    if not notes:
        return math.nan
    counts = _sounding_counts(notes, max(max(n.end for n in notes), 1))
    sounding = counts[counts > 0]
    return float(sounding.mean()) if len(sounding) else math.nan


def pitch_range(notes: Sequence[Note]) -> float:
    """95th minus 5th percentile of the note pitches, in semitones (NaN without notes)."""
    if not notes:
        return math.nan
    low, high = np.percentile([n.pitch for n in notes], [5, 95])
    return float(high - low)


def velocity_std(notes: Sequence[Note]) -> float:
    """Standard deviation of MIDI velocities (population; NaN without notes)."""
    if not notes:
        return math.nan
    return float(np.std([n.velocity for n in notes]))


def overlapping_area(
    values_a: Sequence[float], values_b: Sequence[float], bins: int | Sequence[float] = OVERLAP_BINS
) -> float:
    """Overlap of two normalised histograms: sum over bins of min(p_a, p_b), in [0, 1].

    After Yang & Lerch (2020), with histograms instead of kernel density estimates.
    ``bins`` is a number of equal-width bins over the range of both samples together,
    or the bin edges; values outside given edges and NaNs are left out. 1 for
    identical samples, 0 for samples in disjoint bins, NaN when a sample is empty.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    a, b = np.round(a[np.isfinite(a)], 9), np.round(b[np.isfinite(b)], 9)  # no last-bit ranges
    if len(a) == 0 or len(b) == 0:
        return math.nan
    if np.isscalar(bins):
        edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=int(bins))
    else:
        edges = np.asarray(bins, dtype=np.float64)
    count_a, _ = np.histogram(a, bins=edges)
    count_b, _ = np.histogram(b, bins=edges)
    if count_a.sum() == 0 or count_b.sum() == 0:
        return math.nan
    return float(np.minimum(count_a / count_a.sum(), count_b / count_b.sum()).sum())


def segment_metrics(
    segment: Segment, accompaniment: Sequence[Note], beat_seconds: float = DEFAULT_BEAT_SECONDS
) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one accompaniment of a segment (NaN: undefined)."""
    melody, bars, steps = segment.melody, segment.bar_starts, segment.num_steps
    offsets = bar_offsets(accompaniment, bars, steps)
    metrics = {
        "grid_share": grid_share(accompaniment, beat_seconds),
        "melody_beat_coverage": melody_beat_coverage(melody, accompaniment, beat_seconds),
        "median_bar_offset": float(np.median(offsets)) if len(offsets) else math.nan,
        "bars_off_share": (
            float(np.mean(np.abs(offsets) >= BAR_OFF_BEATS)) if len(offsets) else math.nan
        ),
        "chord_tone_ratio": chord_tone_ratio(accompaniment, segment.chords, segment.transpose),
        "melody_consonance": melody_consonance(melody, accompaniment),
        **key_agreement(accompaniment, melody, segment.key, segment.transpose),
        "silent_bar_share": silent_bar_share(melody, accompaniment, bars, steps),
        "ending_offset_bars": ending_offset_bars(melody, accompaniment, bars, steps),
        "notes_per_bar": notes_per_bar(accompaniment, len(bars)),
        "polyphony": polyphony(accompaniment),
        "pitch_range": pitch_range(accompaniment),
        "velocity_std": velocity_std(accompaniment),
        **pianism_metrics(accompaniment, segment.accompaniment, bars, steps),
    }
    return {name: metrics[name] for name in METRICS}
