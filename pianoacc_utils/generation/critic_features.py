"""What the critic hears: windows of two bars, as named features and as piano rolls.

The critic of :mod:`~pianoacc_utils.evaluation.critic` is a classifier that tries to tell
the pianist's accompaniment from a system's; the reranker of
:mod:`~pianoacc_utils.generation.rerank` scores sampled candidates with the same features
(so they live in this stage, before evaluation). It reads the music in short windows
(:func:`critic_windows`: two bars wherever the melody sounds), so that one song gives
many examples, and the pianist's and a system's accompaniment of the same melody are cut
at the same bar lines. Each window becomes

* a vector of named features of what a listener hears (:func:`window_features`): where
  the onsets fall in the bar, how dense the texture is, how many notes are struck
  together and how far apart, the register, the note lengths, the dynamics, the pitch
  classes against the key and against the melody, and whether the second bar repeats
  the first one's rhythm;
* a piano roll (:func:`window_roll`): pitch by time at the 32nd-note grid, with the
  accompaniment's onsets (by velocity), the accompaniment sounding, and the melody as
  three channels, for a learned critic that finds its own features.

Conventions as in :mod:`~pianoacc_utils.evaluation.metrics`: notes on the 32nd-note grid
(8 steps per quarter-note beat), bar ``i`` is ``[bar_starts[i], bar_starts[i+1])``, the
last bar ending at ``num_steps``; an undefined feature is NaN. ``docs/metrics.md`` says
what the critic can and cannot hear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import PIANO_RANGE, Note, note_arrays, notes_in
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.harmony.learned import melody_tonic

CRITIC_BARS = 2
"""Bars per critic window: long enough for a rhythm and its repetition, short enough
that a song gives dozens of windows."""

SIXTEENTH_STEPS = STEPS_PER_BEAT // 4
"""Grid steps per sixteenth note (2: the grid is in 32nd notes)."""

BAR_SIXTEENTHS = 16
"""Sixteenth-note positions of the onset histogram (a 4/4 bar); positions of longer bars
fold onto them (position modulo 16)."""

ROLL_STEPS = CRITIC_BARS * 4 * STEPS_PER_BEAT
"""Time columns of a window's piano roll: two 4/4 bars of 32nd notes (64); a longer
window is cut, a shorter one padded with silence."""

ROLL_PITCHES = PIANO_RANGE[1] - PIANO_RANGE[0] + 1
"""Pitch rows of a piano roll: the 88 keys, A0 (MIDI 21) at row 0."""

ROLL_CHANNELS = ("accompaniment_onset", "accompaniment_sounding", "melody_sounding")
"""Channels of a piano roll: the accompaniment's onsets (velocity / 127 at the onset
step), the steps where an accompaniment note sounds (1), those where a melody note
sounds (1)."""


@dataclass(frozen=True)
class CriticWindow:
    """Bars of one melody with one accompaniment; times in steps from the window's start.

    ``bar_starts`` begin with 0; the window lasts ``num_steps`` steps. ``tonic`` is the
    pitch class (0 = C) of the key's tonic, of the relative major for a minor key
    (:func:`~pianoacc_utils.harmony.learned.key_tonic`): the pitch-class features are
    counted from it.
    """

    melody: tuple[Note, ...]
    accompaniment: tuple[Note, ...]
    bar_starts: tuple[int, ...]
    num_steps: int
    tonic: int


def critic_windows(
    melody: Sequence[Note],
    accompaniment: Sequence[Note],
    bar_starts: Sequence[int],
    num_steps: int,
    bars: int = CRITIC_BARS,
    tonic: int | None = None,
) -> list[CriticWindow]:
    """Consecutive, non-overlapping windows of ``bars`` bars in which the melody plays.

    Windows begin at bars 0, ``bars``, ``2 * bars`` ...; a last group of fewer bars is
    left out. A window holds the melody and accompaniment notes that start in it (cut at
    its end) and is kept when a melody note starts in it (a note held over from the
    window before does not count), so two accompaniments of one melody are cut into the
    same windows. ``tonic``: the key's tonic pitch class (relative
    major for a minor key); ``None`` estimates it from the whole melody
    (:func:`~pianoacc_utils.harmony.learned.melody_tonic`).
    """
    if bars < 1:
        raise PianoaccError(f"critic windows need at least one bar, got {bars}")
    lines = sorted(int(b) for b in bar_starts)
    bounds = lines + [int(num_steps)]
    key = melody_tonic(melody)[0] if tonic is None else int(tonic) % 12
    windows = []
    for first in range(0, len(lines) - bars + 1, bars):
        start, end = bounds[first], bounds[first + bars]
        played = notes_in(melody, start, end)
        if end <= start or not played:
            continue
        windows.append(
            CriticWindow(
                melody=tuple(played),
                accompaniment=tuple(notes_in(accompaniment, start, end)),
                bar_starts=tuple(b - start for b in lines[first : first + bars]),
                num_steps=end - start,
                tonic=key,
            )
        )
    return windows


# --------------------------------------------------------------------------- named features


def feature_names() -> list[str]:
    """Names of :func:`window_features`, in order (see that function for each one's unit)."""
    return [
        *(f"onset_at_16th_{k:02d}" for k in range(BAR_SIXTEENTHS)),
        "onsets_off_sixteenths",
        "onsets_per_beat",
        "notes_per_beat",
        "notes_per_onset",
        "polyphony",
        "silent_share",
        "lowest_pitch",
        "highest_pitch",
        "mean_pitch",
        "bass_pitch",
        "top_pitch",
        "voicing_span",
        "voicing_interval",
        "duration_mean",
        "duration_median",
        "velocity_mean",
        "velocity_std",
        *(f"pitch_class_{k:02d}_from_tonic" for k in range(12)),
        "melody_pitch_class_share",
        "melody_onset_share",
        "bar_rhythm_repetition",
    ]


FEATURE_UNITS = {
    "onset_at_16th_": "share of onsets",
    "onsets_off_sixteenths": "share of onsets",
    "onsets_per_beat": "onsets per beat",
    "notes_per_beat": "notes per beat",
    "notes_per_onset": "notes",
    "polyphony": "notes",
    "silent_share": "share of steps",
    "lowest_pitch": "MIDI pitch",
    "highest_pitch": "MIDI pitch",
    "mean_pitch": "MIDI pitch",
    "bass_pitch": "MIDI pitch",
    "top_pitch": "MIDI pitch",
    "voicing_": "semitones",
    "duration_": "beats",
    "velocity_": "MIDI velocity",
    "pitch_class_": "share of sounding time",
    "melody_pitch_class_share": "share of sounding time",
    "melody_onset_share": "share of melody onsets",
    "bar_rhythm_repetition": "Jaccard index (0..1)",
}
"""Units of the features, by name or name prefix (see :func:`feature_unit`)."""


def feature_unit(name: str) -> str:
    """The unit of a feature of :func:`feature_names` (``"MIDI pitch"`` ...)."""
    for key, unit in FEATURE_UNITS.items():
        if name == key or (key.endswith("_") and name.startswith(key)):
            return unit
    return ""


def _onset_positions(
    starts: np.ndarray, bar_starts: Sequence[int], num_steps: int
) -> list[set[int]]:
    """Per bar, the distinct onset steps counted from the bar's start."""
    bounds = list(bar_starts) + [num_steps]
    return [
        set((starts[(starts >= a) & (starts < b)] - a).tolist()) for a, b in zip(bounds, bounds[1:])
    ]


def _voicing(starts: np.ndarray, ends: np.ndarray, pitches: np.ndarray) -> tuple[float, ...]:
    """(bass, top, span, interval) over the onset steps: the median lowest and highest
    pitch sounding at an onset, the median span between them (semitones) and the mean
    interval between neighbouring pitches struck together (NaN when no onset has two)."""
    onsets = np.unique(starts)
    sounding = (starts[None, :] <= onsets[:, None]) & (ends[None, :] > onsets[:, None])
    high = np.where(sounding, pitches[None, :], -1).max(axis=1)
    low = np.where(sounding, pitches[None, :], 999).min(axis=1)
    gaps = []
    for onset in onsets:
        struck = np.unique(pitches[starts == onset])
        if len(struck) > 1:
            gaps.extend(np.diff(struck).tolist())
    interval = float(np.mean(gaps)) if gaps else math.nan
    return float(np.median(low)), float(np.median(high)), float(np.median(high - low)), interval


def window_features(window: CriticWindow) -> np.ndarray:
    """The window's accompaniment as a vector of named features (:func:`feature_names`).

    * ``onset_at_16th_00`` .. ``_15``: share of the distinct onset steps at each
      sixteenth-note position of their bar (a 32nd-note onset counts at the sixteenth
      it follows); ``onsets_off_sixteenths``: share of onsets on an odd 32nd step.
    * ``onsets_per_beat``, ``notes_per_beat``: distinct onset steps and notes per
      quarter-note beat of the window; ``notes_per_onset``: notes struck together, mean
      over onsets; ``polyphony``: notes sounding, mean over the steps with sound;
      ``silent_share``: share of the window's steps where no note sounds.
    * register (MIDI pitch): ``lowest_pitch``, ``highest_pitch``, ``mean_pitch`` of the
      notes; ``bass_pitch``, ``top_pitch``: the median over onsets of the lowest and
      highest pitch sounding there.
    * voicing (semitones): ``voicing_span``, median over onsets of highest minus lowest
      pitch sounding; ``voicing_interval``, mean interval between neighbouring pitches
      struck together.
    * ``duration_mean``, ``duration_median`` (beats); ``velocity_mean``,
      ``velocity_std`` (MIDI velocity, population standard deviation).
    * ``pitch_class_00_from_tonic`` .. ``_11``: share of the sounding time (note
      durations) of each pitch class counted from the window's ``tonic``;
      ``melody_pitch_class_share``: share of the sounding time in pitch classes the
      window's melody plays; ``melody_onset_share``: share of melody onsets on which
      the accompaniment strikes too (same step).
    * ``bar_rhythm_repetition``: Jaccard index of the onset positions of consecutive
      bars (1: the bar repeats the last one's rhythm), mean over pairs of bars that
      both have onsets.

    A window without accompaniment has 0 onsets and notes per beat, a silent share
    of 1, and NaN elsewhere.
    """
    starts, ends, pitches, velocities = note_arrays(list(window.accompaniment))
    values = dict.fromkeys(feature_names(), math.nan)
    beats = window.num_steps / STEPS_PER_BEAT
    values.update(onsets_per_beat=0.0, notes_per_beat=0.0, silent_share=1.0)
    if len(starts) == 0:
        return np.array(list(values.values()), dtype=np.float64)
    onsets = np.unique(starts)
    bars = _onset_positions(starts, window.bar_starts, window.num_steps)
    positions = np.array([p for bar in bars for p in bar], dtype=np.int64)
    histogram = np.bincount((positions // SIXTEENTH_STEPS) % BAR_SIXTEENTHS, minlength=16)
    for k, share in enumerate(histogram / len(positions)):
        values[f"onset_at_16th_{k:02d}"] = float(share)
    values["onsets_off_sixteenths"] = float(np.mean(positions % SIXTEENTH_STEPS != 0))
    values["onsets_per_beat"] = len(onsets) / beats
    values["notes_per_beat"] = len(starts) / beats
    values["notes_per_onset"] = len(starts) / len(onsets)
    sounding = np.zeros(window.num_steps, dtype=np.int64)
    for start, end in zip(starts, np.minimum(ends, window.num_steps)):
        sounding[start:end] += 1
    values["polyphony"] = float(sounding[sounding > 0].mean())
    values["silent_share"] = float(np.mean(sounding == 0))
    values["lowest_pitch"] = float(pitches.min())
    values["highest_pitch"] = float(pitches.max())
    values["mean_pitch"] = float(pitches.mean())
    bass, top, span, interval = _voicing(starts, ends, pitches)
    values.update(bass_pitch=bass, top_pitch=top, voicing_span=span, voicing_interval=interval)
    durations = (ends - starts) / STEPS_PER_BEAT
    values["duration_mean"] = float(durations.mean())
    values["duration_median"] = float(np.median(durations))
    values["velocity_mean"] = float(velocities.mean())
    values["velocity_std"] = float(velocities.std())
    lengths = (ends - starts).astype(np.float64)
    chroma = np.bincount((pitches - window.tonic) % 12, weights=lengths, minlength=12)
    for k, share in enumerate(chroma / chroma.sum()):
        values[f"pitch_class_{k:02d}_from_tonic"] = float(share)
    melody_classes = {n.pitch % 12 for n in window.melody}
    in_melody = np.isin(pitches % 12, sorted(melody_classes))
    values["melody_pitch_class_share"] = float(lengths[in_melody].sum() / lengths.sum())
    melody_onsets = {n.start for n in window.melody}
    if melody_onsets:
        struck = set(onsets.tolist())
        values["melody_onset_share"] = float(np.mean([o in struck for o in melody_onsets]))
    pairs = [(a, b) for a, b in zip(bars, bars[1:]) if a and b]
    if pairs:
        similarity = [len(a & b) / len(a | b) for a, b in pairs]
        values["bar_rhythm_repetition"] = float(np.mean(similarity))
    return np.array(list(values.values()), dtype=np.float64)


def feature_matrix(windows: Sequence[CriticWindow]) -> np.ndarray:
    """:func:`window_features` of each window, one row per window (windows x features)."""
    if not windows:
        return np.zeros((0, len(feature_names())))
    return np.stack([window_features(w) for w in windows])


# --------------------------------------------------------------------------- piano rolls


def window_roll(window: CriticWindow) -> np.ndarray:
    """The window as a piano roll of shape (88 pitches, 64 steps, 3 channels), float32.

    Rows are the piano's keys from A0 (MIDI 21); columns the window's first
    :data:`ROLL_STEPS` 32nd-note steps (a shorter window is padded with silence);
    channels as :data:`ROLL_CHANNELS`. Notes outside the piano's range are left out.
    """
    roll = np.zeros((ROLL_PITCHES, ROLL_STEPS, len(ROLL_CHANNELS)), dtype=np.float32)
    low = PIANO_RANGE[0]
    for channel, notes in ((1, window.accompaniment), (2, window.melody)):
        for note in notes:
            row = note.pitch - low
            if not 0 <= row < ROLL_PITCHES or note.start >= ROLL_STEPS:
                continue
            roll[row, note.start : min(note.end, ROLL_STEPS), channel] = 1.0
            if channel == 1:
                roll[row, note.start, 0] = note.velocity / 127
    return roll


def roll_tensor(windows: Sequence[CriticWindow]) -> np.ndarray:
    """:func:`window_roll` of each window, stacked: (windows, 88, 64, 3), float32."""
    shape = (len(windows), ROLL_PITCHES, ROLL_STEPS, len(ROLL_CHANNELS))
    rolls = np.zeros(shape, dtype=np.float32)
    for i, window in enumerate(windows):
        rolls[i] = window_roll(window)
    return rolls
