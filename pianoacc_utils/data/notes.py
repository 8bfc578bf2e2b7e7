"""The types every stage shares: notes and labelled spans in grid steps, and the beat grid.

A :class:`BeatGrid` maps seconds to grid steps (8 per quarter-note beat, so a step
is a 32nd note) by interpolating between annotated beat times; a :class:`Note` and
a :class:`Span` (chord or key) hold times in those steps, so the same rhythm has
the same numbers at any tempo. :func:`normalize_notes` makes a note list one that
MIDI can play and the tokenizer encodes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from typing import Sequence
import numpy as np
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.defaults import STEPS_PER_BEAT


PIANO_RANGE = (21, 108)
"""Lowest and highest key of an 88-key piano (MIDI pitches); transposition stays inside."""


class Note(NamedTuple):
    """A note on the grid: ``start``/``end`` in grid steps (end exclusive), MIDI pitch and velocity."""

    start: int
    end: int
    pitch: int
    velocity: int


class Span(NamedTuple):
    """A labelled time span in grid steps: a chord (``"C:maj"``) or a key (``"Gb:maj"``)."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class BeatGrid:
    """Quarter-note beat times (seconds) and the beats that start bars.

    Maps seconds to grid steps and back by linear interpolation between beats,
    extrapolating with the first/last beat length outside the annotated range.
    """

    beat_times: np.ndarray
    downbeats: np.ndarray
    steps_per_beat: int = STEPS_PER_BEAT

    def __post_init__(self) -> None:
        beats = np.asarray(self.beat_times, dtype=np.float64)
        if beats.ndim != 1 or len(beats) < 2 or np.any(np.diff(beats) <= 0):
            raise PianoaccError("a beat grid needs at least two strictly increasing beat times")
        downbeats = np.asarray(self.downbeats, dtype=np.int64)
        if len(downbeats) == 0:
            downbeats = np.array([0], dtype=np.int64)
        object.__setattr__(self, "beat_times", beats)
        object.__setattr__(self, "downbeats", np.unique(downbeats))

    def beats_at(self, seconds: np.ndarray | float) -> np.ndarray:
        """Fractional beat index of each time (0.0 = first beat)."""
        beats = self.beat_times
        t = np.asarray(seconds, dtype=np.float64)
        position = np.interp(t, beats, np.arange(len(beats), dtype=np.float64))
        first, last = beats[1] - beats[0], beats[-1] - beats[-2]
        position = np.where(t < beats[0], (t - beats[0]) / first, position)
        return np.where(t > beats[-1], len(beats) - 1 + (t - beats[-1]) / last, position)

    def to_steps(self, seconds: np.ndarray | float) -> np.ndarray:
        """Nearest grid step of each time (may be negative before the first beat)."""
        return np.rint(self.beats_at(seconds) * self.steps_per_beat).astype(np.int64)

    def to_seconds(self, steps: np.ndarray | float) -> np.ndarray:
        """Time in seconds of grid steps (fractional steps allowed)."""
        beats = self.beat_times
        b = np.asarray(steps, dtype=np.float64) / self.steps_per_beat
        seconds = np.interp(b, np.arange(len(beats), dtype=np.float64), beats)
        first, last = beats[1] - beats[0], beats[-1] - beats[-2]
        seconds = np.where(b < 0, beats[0] + b * first, seconds)
        return np.where(b > len(beats) - 1, beats[-1] + (b - len(beats) + 1) * last, seconds)

    @property
    def bar_starts(self) -> np.ndarray:
        """Grid step at which each bar starts (from the downbeats)."""
        return self.downbeats * self.steps_per_beat

    @property
    def num_steps(self) -> int:
        """Steps covered by the grid: through the end of the last beat."""
        return len(self.beat_times) * self.steps_per_beat


def normalize_notes(notes: Sequence[Note]) -> list[Note]:
    """Make a note list playable as MIDI and exactly tokenizable.

    Sorted by (start, pitch); every note lasts at least one step; of two notes
    with the same pitch and start the longer is kept; a note still sounding when
    the same pitch strikes again is cut there (MIDI cannot hold one key twice).
    Pitches and velocities are clipped to 0..127 (velocity at least 1).
    """
    by_onset: dict[tuple[int, int], Note] = {}
    for note in notes:
        pitch = min(max(int(note.pitch), 0), 127)
        velocity = min(max(int(note.velocity), 1), 127)
        fixed = Note(int(note.start), max(int(note.end), int(note.start) + 1), pitch, velocity)
        kept = by_onset.get((fixed.start, pitch))
        if kept is None or fixed.end > kept.end:
            by_onset[(fixed.start, pitch)] = fixed
    ordered = sorted(by_onset.values(), key=lambda n: (n.pitch, n.start))
    result = []
    for i, note in enumerate(ordered):
        following = ordered[i + 1] if i + 1 < len(ordered) else None
        if following is not None and following.pitch == note.pitch and following.start < note.end:
            note = note._replace(end=following.start)
        result.append(note)
    result.sort(key=lambda n: (n.start, n.pitch))
    return result


# --------------------------------------------------------------------------- segments


def notes_in(notes: Sequence[Note], start: int, end: int) -> list[Note]:
    """The notes that start in ``[start, end)`` (steps), moved to start from 0 and cut at ``end``:
    the notes of one window, as a segment or a generation window sees them."""
    return [
        Note(n.start - start, min(n.end, end) - start, n.pitch, n.velocity)
        for n in notes
        if start <= n.start < end
    ]


def note_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, pitch, velocity) columns as arrays (steps, steps, MIDI, MIDI)."""
    if not notes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    table = np.array([(n.start, n.end, n.pitch, n.velocity) for n in notes], dtype=np.int64)
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3]
