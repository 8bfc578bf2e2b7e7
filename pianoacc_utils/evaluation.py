"""Evaluation: metrics for an accompaniment, a rule-based baseline, aggregation, reports.

Every metric judges an accompaniment (``list[Note]`` in grid steps relative to the
segment start, :data:`~pianoacc_utils.common.STEPS_PER_BEAT` steps per quarter-note
beat) against what the segment knows: its melody, annotated chords and key, and its
bars. Segments start on a downbeat, so step 0 is a beat and every multiple of
``STEPS_PER_BEAT`` is one. Tolerances stated in milliseconds need the tempo: the
metrics that use one take ``beat_seconds`` (seconds per quarter-note beat; pass the
segment's mean beat duration, see :func:`segment_beat_seconds`).

Metric groups (``docs/metrics.md`` gives every definition with its formula):

* timing: :func:`grid_share`, :func:`melody_beat_coverage`, :func:`bar_offsets`;
* harmony: :func:`chord_tone_ratio`, :func:`melody_consonance`, :func:`key_agreement`;
* coverage: :func:`silent_bar_share`, :func:`ending_offset_bars`;
* texture: :func:`notes_per_bar`, :func:`polyphony`, :func:`pitch_range`,
  :func:`velocity_std`, and :func:`overlapping_area` to compare distributions.

:func:`evaluate_systems` runs several systems (the ground truth always included)
over segments and summarises each metric by its median and mean with bootstrap 95%
confidence intervals; :func:`quality_bar` checks one system against the ground truth.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pianoacc_utils.common import (
    DEFAULT_CHORD_MASK,
    DEFAULT_COMPOUND,
    DEFAULT_RELEASE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    DEFAULT_VELOCITY_TEMPERATURE,
    HANGING_BEATS,
    STEPS_PER_BEAT,
    PianoaccError,
    config_dict,
    write_json,
)
from pianoacc_utils.data import Note, Segment, Song, Span, normalize_notes

DEFAULT_BEAT_SECONDS = 0.5
"""Seconds per quarter-note beat when the tempo is unknown (120 bpm)."""

GRID_TOLERANCE_SECONDS = 0.030
"""An onset this close to a grid position (and closer than 1/8 beat) lies on it."""

COINCIDENCE_SECONDS = 0.040
"""Two onsets this close (or closer) sound together."""

SIXTEENTH_BEATS = 0.25
BAR_SHIFT_LIMIT_BEATS = 0.5
BAR_SHIFT_RESOLUTION_BEATS = 1 / 32
BAR_CLOSENESS_SIGMA_BEATS = 1 / 32
BAR_OFF_BEATS = 1 / 8
"""A bar whose offset is at least this large (in beats) counts as off the beat."""

DOWNBEAT_WEIGHT = 2.0
METRIC_LEVELS = ((1.0, 1.0), (0.5, 0.5), (0.25, 0.25))
"""(period in beats, weight) of the metric grid used by :func:`bar_offsets`: below
the bar's downbeat (:data:`DOWNBEAT_WEIGHT`) the beat weighs most, then the eighth
note, then the sixteenth note."""
BAR_WEIGHT_MAX_BEATS = 4.0
"""Durations count up to this many beats in :func:`bar_offsets` weights."""

CONSONANT_INTERVALS = frozenset({0, 3, 4, 5, 7, 8, 9})
"""Intervals modulo 12 (semitones) counted as consonant: unison/octave, thirds,
fourth, fifth, sixths (the set is closed under inversion)."""

PITCH_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
"""Pitch-class names in POP909 spelling (flats)."""

BASELINE_VELOCITY = 70
BASELINE_BASS_LOWEST = 40
"""The baseline's bass root lies in E2..Eb3 (MIDI 40..51)."""
BASELINE_CHORD_ROOT = 60
"""The baseline's chord root lies in C4..B4 (MIDI 60..71), the other tones above it."""

GROUND_TRUTH = "ground_truth"

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
}
"""Every per-segment metric of :func:`segment_metrics`, in report order, with its unit."""

TEXTURE_METRICS = ("notes_per_bar", "polyphony", "pitch_range", "velocity_std")
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


def _note_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, pitch, velocity) columns as arrays (steps, steps, MIDI, MIDI)."""
    if not notes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    table = np.array([(n.start, n.end, n.pitch, n.velocity) for n in notes], dtype=np.int64)
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3]


def _sounding_counts(notes: Sequence[Note], length: int) -> np.ndarray:
    """Number of notes sounding at each step 0..length-1 (notes clipped to that range)."""
    starts, ends, _, _ = _note_arrays(notes)
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

    For each candidate shift s in -1/2..+1/2 beat (1/32-beat steps) the bar scores
    sum over its onsets (distinct onset steps) of weight * closeness(onset - s).
    Closeness rates the distance to the downbeat (2.0), beat (1.0), eighth (0.5) and
    sixteenth (0.25) grid through a Gaussian of sigma 1/32 beat, keeping the best
    level; an onset's weight is the largest of its notes' min(duration in beats, 4) *
    (1 + (108 - pitch) / 87), so long and low notes lead and a chord counts once.
    The best shift is the offset; ties go to the shift nearest 0, then to the
    positive one.

    Sign: a positive offset means the onsets come *late* (after the grid). Shifts are
    only defined modulo one beat, so a bar exactly half a beat off reports +0.5.
    Bars are [bar_starts[i], bar_starts[i+1]) and the last ends at ``num_steps``
    (steps); onsets outside every bar are ignored. Returns one offset per bar that
    has onsets, in bar order (empty array when none has).
    """
    starts, ends, pitches, _ = _note_arrays(accompaniment)
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
    from pianoacc_utils.harmony import chord_tones

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
    starts, ends, pitches, _ = _note_arrays(accompaniment)
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
    m_start, m_end, m_pitch, _ = _note_arrays(melody)
    a_start, a_end, a_pitch, _ = _note_arrays(accompaniment)
    if len(m_start) == 0 or len(a_start) == 0:
        return math.nan
    latest_start = np.maximum(m_start[:, None], a_start[None, :])
    overlap = np.maximum(np.minimum(m_end[:, None], a_end[None, :]) - latest_start, 0)
    interval = np.abs(m_pitch[:, None] - a_pitch[None, :]) % 12
    consonant = np.isin(interval, sorted(CONSONANT_INTERVALS))
    total = int(overlap.sum())
    return float((overlap * consonant).sum() / total) if total else math.nan


def pitch_class_durations(notes: Sequence[Note]) -> np.ndarray:
    """Total sounding time (beats) of each pitch class 0..11 (0 = C)."""
    starts, ends, pitches, _ = _note_arrays(notes)
    chroma = np.zeros(12)
    np.add.at(chroma, pitches % 12, np.maximum(ends - starts, 0) / STEPS_PER_BEAT)
    return chroma


def estimate_key(notes: Sequence[Note]) -> str | None:
    """Krumhansl-Schmuckler key of notes, in POP909 spelling (``"Gb:maj"``, ``"E:min"``).

    music21's ``KrumhanslSchmuckler`` runs on a 12-note stream holding each pitch
    class once with its total duration in beats: the same duration-weighted
    pitch-class profile it would build from all the notes, in about a millisecond
    whatever the number of notes. ``None`` when no note sounds.
    """
    from music21 import note as m21note
    from music21 import stream
    from music21.analysis.discrete import KrumhanslSchmuckler

    chroma = pitch_class_durations(notes)
    if chroma.sum() <= 0:
        return None
    profile = stream.Stream()
    profile.append(
        [m21note.Note(60 + pc, quarterLength=float(d)) for pc, d in enumerate(chroma) if d > 0]
    )
    (tonic, mode, _), _ = KrumhanslSchmuckler().process(profile)
    return f"{PITCH_NAMES[tonic.pitchClass]}:{'maj' if mode == 'major' else 'min'}"


def parse_key(label: str) -> tuple[int, str]:
    """``"Gb:maj"`` -> (tonic pitch class 6, ``"maj"``); modes ``maj`` and ``min``."""
    import mir_eval

    tonic, _, mode = label.partition(":")
    if mode not in ("maj", "min"):
        raise PianoaccError(f"key label {label!r}: expected TONIC:maj or TONIC:min")
    try:
        pitch_class = mir_eval.chord.pitch_class_to_semitone(tonic)
    except Exception as error:  # mir_eval raises its own exception types
        raise PianoaccError(f"key label {label!r}: unknown tonic {tonic!r}") from error
    return pitch_class % 12, mode


def _relative(key: tuple[int, str]) -> tuple[int, str]:
    tonic, mode = key
    return ((tonic + 9) % 12, "min") if mode == "maj" else ((tonic + 3) % 12, "maj")


def _key_scores(
    estimated: tuple[int, str] | None, reference: tuple[int, str] | None
) -> tuple[float, float]:
    """(same key, same or relative key) as 1.0/0.0; NaN when either key is unknown."""
    if estimated is None or reference is None:
        return math.nan, math.nan
    same = estimated == reference
    return float(same), float(same or _relative(estimated) == reference)


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
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
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


# --------------------------------------------------------------------------- baseline


def block_chord_baseline(segment: Segment) -> list[Note]:
    """Rule-based accompaniment: a block chord on every beat of every annotated chord.

    For each chord span other than "N", on each quarter-note beat inside the span:
    the root as bass (E2..Eb3) plus the chord tones in root position from a root in
    octave 4 (C4..B4), velocity 70, held to the next beat or the chord's end (a chord
    starting between beats sounds from the next beat). Pitches follow the segment's
    ``transpose``; slash chords are played in root position.
    """
    import mir_eval

    notes = []
    for chord in segment.chords:
        if chord_pitch_classes(chord.label) is None:
            continue
        root, bitmap, _ = mir_eval.chord.encode(chord.label, reduce_extended_chords=True)
        root_class = (root + segment.transpose) % 12
        bass = BASELINE_BASS_LOWEST + (root_class - BASELINE_BASS_LOWEST) % 12
        tones = [BASELINE_CHORD_ROOT + root_class + int(i) for i in np.flatnonzero(bitmap)]
        first_beat = -(-max(chord.start, 0) // STEPS_PER_BEAT) * STEPS_PER_BEAT
        for beat in range(first_beat, chord.end, STEPS_PER_BEAT):
            end = min(beat + STEPS_PER_BEAT, chord.end)
            notes.extend(Note(beat, end, pitch, BASELINE_VELOCITY) for pitch in [bass, *tones])
    return normalize_notes(notes)


# --------------------------------------------------------------------------- one segment


def segment_beat_seconds(song: Song, seg: Segment) -> float:
    """Mean duration (seconds) of a quarter-note beat over the segment, from the song's grid."""
    start = int(song.grid.bar_starts[seg.first_bar])
    seconds = song.grid.to_seconds(np.array([start, start + seg.num_steps], dtype=np.float64))
    return float((seconds[1] - seconds[0]) / (seg.num_steps / STEPS_PER_BEAT))


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
    }
    return {name: metrics[name] for name in METRICS}


# --------------------------------------------------------------------------- aggregation


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.median,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` (NaNs dropped first).

    Resamples the values with replacement ``resamples`` times from a generator seeded
    with ``seed`` (so reruns agree); ``statistic`` must accept ``axis=1``.
    Returns (NaN, NaN) for an empty sample.
    """
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if len(sample) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(sample), size=(resamples, len(sample)))
    statistics = statistic(sample[index], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


SUMMARY_FIELDS = ("n", "median", "median_lo", "median_hi", "mean", "mean_lo", "mean_hi")


def summarize(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """n (finite values), median and mean, each with bootstrap 95% bounds (``median_lo`` ...)."""
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if len(sample) == 0:
        return {name: (0 if name == "n" else math.nan) for name in SUMMARY_FIELDS}
    median_lo, median_hi = bootstrap_ci(sample, np.median, resamples, seed)
    mean_lo, mean_hi = bootstrap_ci(sample, np.mean, resamples, seed)
    return {
        "n": int(len(sample)),
        "median": float(np.median(sample)),
        "median_lo": median_lo,
        "median_hi": median_hi,
        "mean": float(np.mean(sample)),
        "mean_lo": mean_lo,
        "mean_hi": mean_hi,
    }


def _to_json_ready(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _from_json_ready(value: Any) -> Any:
    """Inverse of :func:`_to_json_ready` for results: ``None`` -> NaN."""
    if isinstance(value, dict):
        return {k: _from_json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_ready(v) for v in value]
    return math.nan if value is None else value


RESULT_FIELDS = ("systems", "metrics", "segments", "per_segment", "summary", "overlap", "settings")


@dataclass
class EvaluationResult:
    """Per-segment metrics and their summaries for several systems on the same segments.

    ``per_segment[system][metric]`` lists one value per segment (NaN where undefined);
    ``summary[system][metric]`` holds ``n``, ``median``, ``mean`` and their bootstrap
    95% bounds (``median_lo`` ...); ``overlap[system][feature]`` is the overlapping
    area of the system's distribution of a texture metric (or of pooled note pitches
    and velocities) with the ground truth's; ``segments`` identifies the segments
    (song id, first bar, bars, transposition, seconds per beat).
    """

    systems: list[str]
    metrics: list[str]
    segments: list[dict[str, Any]]
    per_segment: dict[str, dict[str, list[float]]]
    summary: dict[str, dict[str, dict[str, float]]]
    overlap: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (NaN written as ``null``)."""
        return _to_json_ready({name: getattr(self, name) for name in RESULT_FIELDS})

    def to_json(self, path: str | Path) -> None:
        """Write the result as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> EvaluationResult:
        """Read a result written by :meth:`to_json` (``null`` back to NaN)."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise PianoaccError(f"{path}: not a readable evaluation result ({error})") from error
        missing = [name for name in RESULT_FIELDS if name not in payload]
        if not isinstance(payload, dict) or missing:
            raise PianoaccError(f"{path}: not an evaluation result (missing {', '.join(missing)})")
        return cls(**{name: _from_json_ready(payload[name]) for name in RESULT_FIELDS})

    def to_markdown(self, statistic: str = "median") -> str:
        """Tables: metrics as rows, systems as columns, cells "median [lo, hi]".

        ``statistic`` is ``"median"`` or ``"mean"`` (95% bootstrap interval in
        brackets). A second table gives the overlapping areas with the ground truth.
        """
        if statistic not in ("median", "mean"):
            raise PianoaccError(f"statistic must be 'median' or 'mean', got {statistic!r}")
        lines = [
            f"| metric ({statistic} [95% CI]) | unit | " + " | ".join(self.systems) + " |",
            "|---|---|" + "---|" * len(self.systems),
        ]
        for metric in self.metrics:
            cells = [_format_cell(self.summary[s][metric], statistic) for s in self.systems]
            lines.append(f"| {metric} | {METRICS.get(metric, '')} | " + " | ".join(cells) + " |")
        features = list(next(iter(self.overlap.values()), {}))
        if features:
            lines += [
                "",
                "| overlapping area with ground truth | " + " | ".join(self.systems) + " |",
                "|---|" + "---|" * len(self.systems),
            ]
            for feature in features:
                cells = [_format_number(self.overlap[s][feature]) for s in self.systems]
                lines.append(f"| {feature} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _format_number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _format_cell(row: dict[str, float], statistic: str) -> str:
    value = row[statistic]
    if value is None or not math.isfinite(value):
        return "n/a"
    low, high = row[f"{statistic}_lo"], row[f"{statistic}_hi"]
    return f"{_format_number(value)} [{_format_number(low)}, {_format_number(high)}]"


def _beat_seconds_list(beat_seconds: float | Sequence[float] | None, count: int) -> list[float]:
    """One tempo per segment from ``None`` (0.5 s), a number, or a list of ``count``."""
    if beat_seconds is None:
        return [DEFAULT_BEAT_SECONDS] * count
    if np.isscalar(beat_seconds):
        return [_check_beat_seconds(beat_seconds)] * count  # type: ignore[arg-type]
    values = [_check_beat_seconds(v) for v in beat_seconds]  # type: ignore[union-attr]
    if len(values) != count:
        raise PianoaccError(f"beat_seconds has {len(values)} values for {count} segments")
    return values


def _ground_truth(seg: Segment) -> list[Note]:
    return list(seg.accompaniment)


def evaluate_systems(
    segments: Sequence[Segment],
    systems: Mapping[str, Callable[[Segment], Sequence[Note]]],
    beat_seconds: float | Sequence[float] | None = None,
    progress: bool = True,
    resamples: int = 1000,
    seed: int = 0,
) -> EvaluationResult:
    """Run every system on every segment, compute :func:`segment_metrics`, summarise.

    The ground truth (the segment's own accompaniment) is always the first system,
    ``"ground_truth"``. ``beat_seconds`` is one value per segment (seconds per beat;
    see :func:`segment_beat_seconds`), one value for all, or ``None`` for 0.5 s.
    Summaries resample segments (``resamples`` times, generator seed ``seed``), so
    the same segments are drawn for every system and metric with the same count.
    """
    from tqdm.auto import tqdm

    if not segments:
        raise PianoaccError("evaluate_systems needs at least one segment")
    if GROUND_TRUTH in systems:
        raise PianoaccError(f"{GROUND_TRUTH!r} is always evaluated; name other systems otherwise")
    runners = {GROUND_TRUTH: _ground_truth, **systems}
    tempos = _beat_seconds_list(beat_seconds, len(segments))
    per_segment: dict[str, dict[str, list[float]]] = {s: {m: [] for m in METRICS} for s in runners}
    pooled: dict[str, dict[str, list[int]]] = {
        s: {f: [] for f in NOTE_FEATURE_BINS} for s in runners
    }
    for seg, tempo in tqdm(list(zip(segments, tempos)), desc="evaluate", disable=not progress):
        for system, run in runners.items():
            accompaniment = list(run(seg))
            for metric, value in segment_metrics(seg, accompaniment, tempo).items():
                per_segment[system][metric].append(value)
            pooled[system]["pitch"].extend(n.pitch for n in accompaniment)
            pooled[system]["velocity"].extend(n.velocity for n in accompaniment)
            pooled[system]["duration"].extend(n.end - n.start for n in accompaniment)
    summary = {
        system: {m: summarize(values, resamples, seed) for m, values in rows.items()}
        for system, rows in per_segment.items()
    }
    truth, truth_notes = per_segment[GROUND_TRUTH], pooled[GROUND_TRUTH]
    overlap = {}
    for system in runners:
        row = {m: overlapping_area(per_segment[system][m], truth[m]) for m in TEXTURE_METRICS}
        for feature, edges in NOTE_FEATURE_BINS.items():
            row[feature] = overlapping_area(pooled[system][feature], truth_notes[feature], edges)
        overlap[system] = row
    segment_rows = [
        {
            "song_id": seg.song_id,
            "first_bar": seg.first_bar,
            "num_bars": seg.num_bars,
            "transpose": seg.transpose,
            "beat_seconds": tempo,
        }
        for seg, tempo in zip(segments, tempos)
    ]
    return EvaluationResult(
        systems=list(runners),
        metrics=list(METRICS),
        segments=segment_rows,
        per_segment=per_segment,
        summary=summary,
        overlap=overlap,
        settings={
            "resamples": resamples,
            "seed": seed,
            "level": 0.95,
            "overlap_bins": OVERLAP_BINS,
        },
    )


# --------------------------------------------------------------------------- quality bar


def _check(criterion: str, value: float, threshold: Any, passed: bool) -> dict[str, Any]:
    return {"criterion": criterion, "value": value, "threshold": threshold, "passed": bool(passed)}


def quality_bar(result: EvaluationResult, system: str = "fnet") -> list[dict[str, Any]]:
    """Check a system against the ground truth of the same segments.

    Each row is ``{criterion, value, threshold, passed}``; ``threshold`` is a number
    or a ``[low, high]`` range. Medians over segments are compared, except for key
    agreement (0/1 per segment) and silent bars (mostly 0 per segment), whose means
    are compared: the share of segments in the key, the mean share of silent bars.
    A NaN value fails.
    """
    for name in (system, GROUND_TRUTH):
        if name not in result.summary:
            have = ", ".join(result.systems)
            raise PianoaccError(f"no system {name!r} in the evaluation result (has: {have})")

    def ours(metric: str, statistic: str = "median") -> float:
        return float(result.summary[system][metric][statistic])

    def truth(metric: str, statistic: str = "median") -> float:
        return float(result.summary[GROUND_TRUTH][metric][statistic])

    def at_least(metric: str, factor: float, statistic: str = "median") -> dict[str, Any]:
        value, threshold = ours(metric, statistic), factor * truth(metric, statistic)
        criterion = f"{metric} {statistic} >= {factor:g} x ground truth"
        return _check(criterion, value, threshold, value >= threshold)

    def at_most(metric: str, limit: float, statistic: str = "median") -> dict[str, Any]:
        value = ours(metric, statistic)
        return _check(f"{metric} {statistic} <= {limit:g}", value, limit, value <= limit)

    offset = ours("median_bar_offset")
    density = ours("notes_per_bar")
    band = [0.5 * truth("notes_per_bar"), 2.0 * truth("notes_per_bar")]
    spread, spread_floor = ours("velocity_std"), 0.3 * truth("velocity_std")
    return [
        at_least("grid_share", 0.9),
        at_least("melody_beat_coverage", 0.9),
        _check("median_bar_offset median == 0 beats", offset, 0.0, offset == 0),
        at_most("bars_off_share", 0.15),
        at_least("chord_tone_ratio", 0.95),
        at_least("melody_consonance", 0.95),
        at_least("key_agreement", 0.9, "mean"),
        at_most("silent_bar_share", 0.05, "mean"),
        at_most("ending_offset_bars", 1.0),
        _check(
            "notes_per_bar median within [0.5, 2] x ground truth",
            density,
            band,
            band[0] <= density <= band[1],
        ),
        at_least("pitch_range", 0.5),
        _check(
            "velocity_std median > 0 and >= 0.3 x ground truth",
            spread,
            spread_floor,
            spread > 0 and spread >= spread_floor,
        ),
    ]


# --------------------------------------------------------------------------- models on the test split


@dataclass(frozen=True)
class EvaluationConfig:
    """Which segments and how to generate for ``pianoacc evaluate``.

    Segments are ``bars_per_segment``-bar windows (non-overlapping) of the songs of
    ``split``; ``segments`` keeps that many, evenly spread over the split (``None``:
    all). Generation primes each segment with its first ``primer_tokens``
    ground-truth tokens (0: from the melody alone) and samples with the given settings.
    ``chords``: what the models are given as harmony, one of
    :data:`~pianoacc_utils.generation.CHORD_SOURCES` (``"annotated"``: the segment's
    chord annotation, as on a lead sheet; ``"estimated"``: chords estimated from the
    melody alone; ``"none"``). ``chord_mask``: keep note-ons to the chord's tones while
    sampling (``generation.SamplingConfig``); ``release``: release hanging notes
    (``generation.release_notes``), those the decoder never ended after at most
    ``hanging_beats`` beats. ``compound``: how melody files' compound bars are
    accompanied (:data:`~pianoacc_utils.common.COMPOUND_MODES`; POP909 has none).
    ``meter``: the segments' four-beat bars re-barred (:func:`pianoacc_utils.data.rebar`,
    ``"3/4"`` or ``"2/4"``; ``"4/4"`` leaves them), ground truth included, to measure
    how the models keep time in meters POP909 hardly has.
    """

    split: str = "test"
    bars_per_segment: int = 32
    segments: int | None = None
    primer_tokens: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    velocity_temperature: float | None = DEFAULT_VELOCITY_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = DEFAULT_TOP_P
    seed: int = 0
    batch_size: int = 32
    chords: str = "annotated"
    chord_mask: bool = DEFAULT_CHORD_MASK
    release: bool = DEFAULT_RELEASE
    hanging_beats: float = HANGING_BEATS
    compound: str = DEFAULT_COMPOUND
    meter: str = "4/4"

    def sampling(self) -> SamplingConfig:
        """The ``generation.SamplingConfig`` of these settings."""
        from pianoacc_utils.generation import SamplingConfig

        return SamplingConfig(
            self.temperature, self.top_k, self.top_p, self.seed, self.chord_mask,
            self.velocity_temperature,
        )


def split_segments(config: EvaluationConfig = EvaluationConfig()) -> tuple[list[Segment], list[float]]:
    """The evaluation segments of a split (re-barred into ``config.meter``) and each
    one's mean beat duration (seconds)."""
    from pianoacc_utils import data

    root = data.find_pop909_dir()
    splits = data.split_songs(data.song_ids(root))
    if config.split not in splits:
        raise PianoaccError(f"unknown split {config.split!r}: expected one of {', '.join(splits)}")
    segments, tempos = [], []
    for song_id in splits[config.split]:
        song = data.load_song(song_id, root=root)
        for seg in data.segment(song, config.bars_per_segment):
            segments.append(data.rebar(seg, config.meter))
            tempos.append(segment_beat_seconds(song, seg))
    if config.segments is not None and config.segments < len(segments):
        chosen = np.unique(np.linspace(0, len(segments) - 1, config.segments).round().astype(int))
        segments = [segments[i] for i in chosen]
        tempos = [tempos[i] for i in chosen]
    return segments, tempos


def teacher_forced_metrics(checkpoint: str | Path, split: str = "test") -> dict[str, float]:
    """Masked loss, token accuracy and perplexity of a checkpoint on a prepared split.

    Uses the data settings the model was trained with (``config.json`` beside the
    checkpoint), so the sequences are cut exactly as in training.
    """
    from pianoacc_utils import dataset, generation, training

    path = generation.resolve_checkpoint(checkpoint)
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        raise PianoaccError(f"{config_path}: missing; it records how the model was trained")
    profile = training.Profile.from_dict(json.loads(config_path.read_text())["profile"])
    model, _ = generation.load_checkpoint(path)
    folder = dataset.prepare(profile.prepare, progress=False)
    batches = training.SegmentBatches(
        dataset.load_split(folder, split),
        model.config,
        batch_size=profile.train.batch_size,
        shuffle=False,
        length_multiple=profile.train.length_multiple,
    )
    training.compile_model(model, profile.train)
    values = model.evaluate(batches.for_fit(), verbose=0, return_dict=True)
    return {
        "loss": float(values["loss"]),
        "accuracy": float(values["accuracy"]),
        "perplexity": float(values["perplexity"]),
    }


def system_name(checkpoint: str | Path, taken: Sequence[str] = ()) -> str:
    """Report name of a checkpoint: its model kind (``fnet``), made unique if needed."""
    from pianoacc_utils import generation

    model_kind = None
    config_path = generation.resolve_checkpoint(checkpoint).parent / "config.json"
    if config_path.is_file():
        model_kind = json.loads(config_path.read_text()).get("kind")
    name = model_kind or Path(str(checkpoint)).stem
    suffix = 2
    unique = name
    while unique in taken or unique == GROUND_TRUTH:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    return unique


def generate_for_segments(
    checkpoint: str | Path, segments: Sequence[Segment], config: EvaluationConfig
) -> list[list[Note]]:
    """Accompaniments of a checkpoint for every segment, in batches."""
    from pianoacc_utils import generation

    model, window = generation.load_checkpoint(checkpoint)
    sampling = config.sampling()
    decoder = generation.CachedDecoder(model, sampling)
    results: list[list[Note]] = []
    for first in range(0, len(segments), config.batch_size):
        batch = segments[first : first + config.batch_size]
        results += generation.accompany_segment(
            model, batch, sampling, window, config.primer_tokens, decoder, chords=config.chords,
            release=config.release, hanging_beats=config.hanging_beats,
        )
    return results


def evaluate_checkpoints(
    checkpoints: Sequence[str | Path],
    config: EvaluationConfig = EvaluationConfig(),
    progress: bool = True,
    baseline: bool = True,
) -> tuple[EvaluationResult, dict[str, Any]]:
    """Evaluate models (and the block-chord baseline) against the ground truth.

    Returns the metric summaries and a dict with, per model, the teacher-forced
    metrics and the generation time, plus the configuration and segment count.
    """
    import time

    segments, tempos = split_segments(config)
    if not segments:
        raise PianoaccError(f"no {config.bars_per_segment}-bar segments in split {config.split!r}")
    index = {id(seg): i for i, seg in enumerate(segments)}
    systems: dict[str, Callable[[Segment], Sequence[Note]]] = {}
    details: dict[str, Any] = {"config": config_dict(config), "segments": len(segments), "models": {}}
    for checkpoint in checkpoints:
        name = system_name(checkpoint, list(systems))
        began = time.perf_counter()
        generated = generate_for_segments(checkpoint, segments, config)
        seconds = time.perf_counter() - began
        systems[name] = lambda seg, notes=generated: notes[index[id(seg)]]
        details["models"][name] = {
            "checkpoint": str(checkpoint),
            "generation_seconds": round(seconds, 2),
            "teacher_forced": teacher_forced_metrics(checkpoint, config.split),
        }
    if baseline:
        systems["block_chords"] = block_chord_baseline
    result = evaluate_systems(segments, systems, tempos, progress=progress)
    details["estimated_chords"] = estimated_chord_agreement(segments)
    return result, details


def estimated_chord_agreement(segments: Sequence[Segment]) -> dict[str, float]:
    """How often chords estimated from the melody alone
    (:func:`pianoacc_utils.harmony.estimate_chords`) match the annotation, per beat
    (same root and major/minor third; :func:`~pianoacc_utils.harmony.beat_agreement`),
    summarised over segments (:func:`summarize`)."""
    from pianoacc_utils import harmony
    from pianoacc_utils.generation import segment_chords

    values = [
        harmony.beat_agreement(
            segment_chords(seg, "estimated"), segment_chords(seg, "annotated"), seg.num_steps
        )
        for seg in segments
    ]
    return summarize(values)



# --------------------------------------------------------------------------- melodies outside POP909
#
# A melody from any MIDI file (a folk tune, say) has no ground-truth accompaniment,
# no chord annotation and no annotated key: only the metrics that need none apply.
# Times are grid steps on the melody's own grid (see ``data.load_melody``), bars
# are the file's bars, and tolerances in milliseconds use the melody's mean tempo.

from typing import TYPE_CHECKING  # noqa: E402

from pianoacc_utils.data import Melody  # noqa: E402

if TYPE_CHECKING:
    from pianoacc_utils.generation import SamplingConfig

TRIPLET_BEATS = 1 / 3
"""Period (beats) of the eighth-note-triplet grid allowed in :func:`melody_grid_share`."""

MELODY_METRICS: dict[str, str] = {
    "silent_bar_share": "share of melody bars",
    "ending_offset_bars": "bars",
    "grid_share": "share of onsets",
    "melody_grid_share": "share of melody onsets",
    "melody_beat_coverage": "share of on-beat melody onsets",
    "bars_off_share": "share of bars",
    "median_bar_offset": "beats",
    "melody_consonance": "share of overlap steps",
    "melody_key_compatible": "0/1 per melody",
    "notes_per_bar": "notes",
}
"""Every metric of :func:`melody_metrics`, in report order, with its unit."""

MELODY_TABLE_METRICS = (
    "silent_bar_share",
    "ending_offset_bars",
    "grid_share",
    "melody_grid_share",
    "bars_off_share",
    "median_bar_offset",
)
"""The metrics :func:`melodies_markdown` shows per melody."""


def melody_beat_seconds(melody: Melody) -> float:
    """Mean duration (seconds) of a quarter-note beat over a melody, from its own grid.

    The mean runs from step 0 to the melody's end (a tune that changes tempo gets
    its average beat).
    """
    end = max(int(melody.end_step), 1)
    seconds = melody.grid.to_seconds(np.array([0, end], dtype=np.float64))
    return _check_beat_seconds(float(seconds[1] - seconds[0]) / (end / STEPS_PER_BEAT))


def melody_grid_share(melody: Sequence[Note], beat_seconds: float = DEFAULT_BEAT_SECONDS) -> float:
    """Share of melody onsets on the sixteenth-note or the eighth-note-triplet grid of the beats.

    Like :func:`grid_share` (distance strictly below min(30 ms, 1/8 beat)), but an
    onset also counts when it is that close to a multiple of 1/3 beat, since tunes
    have triplets. A low value means the melody's file does not follow its own
    beats (a played recording, a wrong tempo map). NaN without notes.
    """
    beats = _onset_beats(melody)
    if len(beats) == 0:
        return math.nan
    tolerance = _grid_tolerance_beats(beat_seconds)
    distance = np.minimum(
        _distance_to_grid(beats, SIXTEENTH_BEATS), _distance_to_grid(beats, TRIPLET_BEATS)
    )
    return float(np.mean(distance < tolerance))


def melody_metrics(melody: Melody, accompaniment: Sequence[Note]) -> dict[str, float]:
    """Every metric of :data:`MELODY_METRICS` for an accompaniment of a melody without ground truth.

    ``accompaniment`` is in grid steps on the melody's grid. Bars are the melody's
    bars, the last one ending with the melody (``end_step``); tolerances in
    milliseconds use :func:`melody_beat_seconds`. ``melody_key_compatible`` is 1 when the
    accompaniment's estimated key is the melody's or its relative key. NaN: undefined.
    """
    notes, bars, steps = list(melody.notes), melody.grid.bar_starts, int(melody.end_step)
    beat_seconds = melody_beat_seconds(melody)
    offsets = bar_offsets(accompaniment, bars, steps)
    keys = key_agreement(accompaniment, notes, None)
    metrics = {
        "silent_bar_share": silent_bar_share(notes, accompaniment, bars, steps),
        "ending_offset_bars": ending_offset_bars(notes, accompaniment, bars, steps),
        "grid_share": grid_share(accompaniment, beat_seconds),
        "melody_grid_share": melody_grid_share(notes, beat_seconds),
        "melody_beat_coverage": melody_beat_coverage(notes, accompaniment, beat_seconds),
        "bars_off_share": (
            float(np.mean(np.abs(offsets) >= BAR_OFF_BEATS)) if len(offsets) else math.nan
        ),
        "median_bar_offset": float(np.median(offsets)) if len(offsets) else math.nan,
        "melody_consonance": melody_consonance(notes, accompaniment),
        "melody_key_compatible": keys["melody_key_compatible"],
        "notes_per_bar": notes_per_bar(accompaniment, len(bars)),
    }
    return {name: metrics[name] for name in MELODY_METRICS}


def _meters(melody: Melody) -> list[str]:
    """The melody file's time signatures in order, repeats merged (``["4/4"]`` when none)."""
    names = [f"{s.numerator}/{s.denominator}" for s in melody.midi.time_signature_changes]
    return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name] or ["4/4"]


def _finite_median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN when there is none)."""
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    return float(np.median(sample)) if len(sample) else math.nan


def evaluate_melodies(
    checkpoint: str | Path,
    paths: Sequence[str | Path],
    sampling: SamplingConfig | None = None,
    out_dir: str | Path | None = None,
    chords: str = "estimated",
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
    compound: str = DEFAULT_COMPOUND,
) -> dict[str, Any]:
    """Accompany melody MIDI files with a checkpoint and judge them with :func:`melody_metrics`.

    All melodies are generated together (batched window by window), as ``pianoacc
    accompany`` would one by one; ``sampling`` defaults to ``SamplingConfig()``.
    The model plays to chords estimated from each melody (``chords="estimated"``,
    as ``pianoacc accompany`` does by default) or to none (``"none"``); ``release`` and
    ``hanging_beats`` as in ``generation.accompany``, ``compound`` as in
    ``generation.accompany_melodies``.
    With ``out_dir`` each arrangement (melody + PIANO) is written there as
    ``<melody name>.mid``. Returns a JSON-ready dict (NaN as ``None``):
    ``checkpoint``, ``sampling``, ``generation_seconds``, ``melodies`` (per melody:
    ``name``, ``path``, ``meters``, ``bars``, ``tempo_bpm`` [lowest, highest],
    ``notes`` (accompaniment notes), ``metrics``) and ``medians`` (per metric, over
    the melodies where it is defined).
    """
    import time

    from pianoacc_utils import data, generation, harmony

    if not paths:
        raise PianoaccError("evaluate_melodies needs at least one melody MIDI file")
    sampling = sampling if sampling is not None else generation.SamplingConfig()
    melodies = [data.load_melody(path) for path in paths]
    model, window = generation.load_checkpoint(checkpoint)
    began = time.perf_counter()
    if chords not in ("estimated", "none"):
        raise PianoaccError(f"chords {chords!r} for melodies: expected estimated or none")
    accompaniments = generation.accompany_melodies(
        model, melodies, sampling, window,
        chords=[
            harmony.estimate_chords(m.notes, m.grid.bar_starts, m.end_step)
            if chords == "estimated" else []
            for m in melodies
        ],
        release=release,
        hanging_beats=hanging_beats,
        compound=compound,
    )
    seconds = time.perf_counter() - began
    rows = []
    for melody, accompaniment in zip(melodies, accompaniments):
        if out_dir is not None:
            data.write_arrangement(melody, accompaniment, Path(out_dir) / f"{melody.path.stem}.mid")
        tempi = melody.midi.get_tempo_changes()[1]
        rows.append(
            {
                "name": melody.path.stem,
                "path": str(melody.path),
                "meters": _meters(melody),
                "bars": melody.num_bars,
                "tempo_bpm": [float(np.min(tempi)), float(np.max(tempi))],
                "notes": len(accompaniment),
                "metrics": melody_metrics(melody, accompaniment),
            }
        )
    medians = {
        metric: _finite_median([row["metrics"][metric] for row in rows])
        for metric in MELODY_METRICS
    }
    return _to_json_ready(
        {
            "checkpoint": str(checkpoint),
            "sampling": config_dict(sampling),
            "chords": chords,
            "release": release,
            "hanging_beats": hanging_beats,
            "compound": compound,
            "generation_seconds": round(seconds, 2),
            "melodies": rows,
            "medians": medians,
        }
    )


def melodies_markdown(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One markdown table per system of :func:`evaluate_melodies` results (``{system: result}``).

    Rows are melodies (name, meter, bars, then :data:`MELODY_TABLE_METRICS`), the
    last row the medians over melodies; ``n/a`` marks an undefined value.
    """
    tables = []
    for system, result in results.items():
        lines = [
            f"{system}: {len(result['melodies'])} melodies, generated in "
            f"{result['generation_seconds']} s",
            "",
            "| melody | meter | bars | " + " | ".join(MELODY_TABLE_METRICS) + " |",
            "|---|---|---|" + "---|" * len(MELODY_TABLE_METRICS),
        ]
        for row in result["melodies"]:
            cells = [_format_number(row["metrics"][m]) for m in MELODY_TABLE_METRICS]
            meter = " -> ".join(row["meters"])
            lines.append(f"| {row['name']} | {meter} | {row['bars']} | " + " | ".join(cells) + " |")
        cells = [_format_number(result["medians"][m]) for m in MELODY_TABLE_METRICS]
        lines.append("| **median** | | | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def evaluation_report(
    checkpoints: Sequence[str | Path],
    config: EvaluationConfig = EvaluationConfig(),
    melody_paths: Sequence[str | Path] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Everything ``pianoacc evaluate`` reports, as one JSON-ready dict.

    ``summary``: :meth:`EvaluationResult.to_dict` of :func:`evaluate_checkpoints`;
    ``details``: its teacher-forced metrics, generation times and settings;
    ``quality_bar``: :func:`quality_bar` rows per model; and, when ``melody_paths``
    are given, ``melodies``: :func:`evaluate_melodies` per model, sampling as ``config``.
    :func:`report_result` turns ``summary`` back into an :class:`EvaluationResult`.
    """
    result, details = evaluate_checkpoints(checkpoints, config, progress=progress)
    bars = {name: quality_bar(result, system=name) for name in details["models"]}
    report: dict[str, Any] = {"summary": result.to_dict(), "details": details, "quality_bar": bars}
    if melody_paths:
        sampling = config.sampling()
        melody_chords = "none" if config.chords == "none" else "estimated"
        report["melodies"] = {
            name: evaluate_melodies(
                info["checkpoint"], melody_paths, sampling, chords=melody_chords,
                release=config.release, hanging_beats=config.hanging_beats,
                compound=config.compound,
            )
            for name, info in details["models"].items()
        }
    return _to_json_ready(report)


def report_result(report: Mapping[str, Any]) -> EvaluationResult:
    """The :class:`EvaluationResult` inside a report of :func:`evaluation_report`
    (or a ``pianoacc evaluate --json`` file's content); ``null`` back to NaN."""
    summary = report.get("summary") if isinstance(report, Mapping) else None
    if not isinstance(summary, Mapping):
        summary = {}
    missing = [name for name in RESULT_FIELDS if name not in summary]
    if missing:
        raise PianoaccError(f"not an evaluation report (summary lacks {', '.join(missing)})")
    return EvaluationResult(**{name: _from_json_ready(summary[name]) for name in RESULT_FIELDS})
