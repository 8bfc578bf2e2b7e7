"""Compound meters (6/8, 9/8, 12/8, 6/4, ...) accompanied through a swing time map.

POP909 is in simple meters: its beats divide in two, and its pianists' long and low
notes fall on the beats and their halves. A compound meter's beat is a dotted note
that divides in *three* (a 6/8 bar is two dotted-quarter beats of three eighths), and
a model trained on POP909 alone accompanies it as if it were simple, putting long notes
on the second eighth of a beat and bars off the beat (the folk tunes of
``pianoacc evaluate --melodies`` with and without the map: ``results/compound_validation.md``).

So a compound bar is given to the model in simple meter and the answer is mapped
back, the way a swung tune is written in straight eighths. Within each compound beat
of three units (``unit`` steps each: an eighth in 6/8) the first two units are
squeezed into the first half of a simple beat and the third unit fills the second
half, which is exactly as long::

    melody (6/8 beat)   |0    |4    |8    |12       in steps
    model (simple beat) |0 |2 |4    |8              (the first two eighths -> 1/2 beat)

So a 6/8 bar (24 steps) becomes a 2/4 bar (16 steps), 9/8 becomes 3/4 and 12/8
becomes 4/4. The melody, its chords and its bar lines go through :meth:`TimeMap.to_model`;
the accompaniment comes back through :meth:`TimeMap.to_melody`: straight eighths come
back as the long-short "swung" pairs of a jig, and what the model places on a beat
lands on the dotted beat. Bars in simple meters are left exactly as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
import math
import numpy as np
from pianoacc_utils.data.melody_midi import Melody, MeterGrid
from pianoacc_utils.data.notes import Note, Span, normalize_notes
from pianoacc_utils.defaults import COMPOUND_MODES, DEFAULT_COMPOUND, STEPS_PER_BEAT


__all__ = [
    "COMPOUND_MODES", "DEFAULT_COMPOUND", "TimeMap", "bar_units", "compound_unit", "melody_time_map",
]


def compound_unit(numerator: int, denominator: int) -> int:
    """Steps in one third of a compound beat for a time signature, 0 for a simple meter.

    Compound: the numerator is a multiple of 3 and at least 6 (6/8, 9/8, 12/8, 6/4,
    12/16). The unit is the denominator's note value, 4 steps for an eighth; a unit
    shorter than two steps (x/32) has no simple-meter half on the grid, so such a
    meter is left simple. 3/8 and 3/4 count as simple (one bar, three beats).
    """
    if numerator < 6 or numerator % 3 or denominator <= 0:
        return 0
    unit = 4 * STEPS_PER_BEAT / denominator
    return int(unit) if unit >= 2 and unit == int(unit) and int(unit) % 2 == 0 else 0


def bar_units(melody: Melody) -> list[int]:
    """The :func:`compound_unit` of each of a melody's bars, from the time signatures
    its grid holds (:attr:`~pianoacc_utils.data.MeterGrid.meters`; all 0 when the grid
    has none)."""
    grid = melody.grid
    meters = grid.meters if isinstance(grid, MeterGrid) else None
    if meters is None:
        return [0] * len(grid.bar_starts)
    return [compound_unit(numerator, denominator) for numerator, denominator in meters]


def _swing_knots(begin: int, end: int, unit: int, beat_start: int) -> list[tuple[float, float]]:
    """Knots (melody step, model steps since ``begin``) of the span [begin, end] whose
    compound beats (3 units each) start at ``beat_start`` + k * 3 * unit."""

    def squeezed(x: float) -> float:  # steps into a beat -> model steps into the beat
        return x / 2 if x <= 2 * unit else x - unit

    beat = 3 * unit
    knots, first = [], beat_start + math.floor((begin - beat_start) / beat) * beat
    origin = squeezed(begin - first)
    for start in range(first, end, beat):
        done = 2 * unit * ((start - first) // beat) - origin  # model steps since begin
        middle = start + 2 * unit
        if begin < middle < end:
            knots.append((float(middle), done + squeezed(2 * unit)))
        stop = min(start + beat, end)
        knots.append((float(stop), done + squeezed(stop - start)))
    return knots


@dataclass(frozen=True)
class TimeMap:
    """A monotone piecewise-linear map between melody steps and the model's steps.

    ``melody_knots`` and ``model_knots`` are matching breakpoints (increasing); between
    them time is linear, beyond them it is clamped. Mapped note times are rounded to the
    nearest step (halves up); a note keeps at least one step.
    """

    melody_knots: np.ndarray
    model_knots: np.ndarray

    @classmethod
    def for_bars(cls, bar_starts: Sequence[int], num_steps: int, units: Sequence[int]) -> TimeMap:
        """The swing map of bars [bar_starts[i], bar_starts[i+1]) (the last ends at
        ``num_steps``) whose compound units are ``units`` (0: simple, mapped as is).

        Compound beats count from each bar's start, except in a first bar that is not a
        whole number of beats (a pickup), where they count back from its end. Every bar
        line maps to a whole model step.
        """
        if len(units) != len(bar_starts):
            raise ValueError("units needs one value per bar")
        if not len(bar_starts):
            return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        melody, model = [0.0], [0.0]
        bounds = [*map(int, bar_starts), max(int(num_steps), int(bar_starts[-1]) + 1)]
        if bounds[0] > 0:
            melody.append(float(bounds[0]))
            model.append(float(bounds[0]))
        for i, unit in enumerate(units):
            begin, end = bounds[i], bounds[i + 1]
            if end <= begin:
                continue
            here = model[-1]
            if unit:
                pickup = i == 0 and (end - begin) % (3 * unit)
                beat_start = end if pickup else begin
                knots = _swing_knots(begin, end, unit, beat_start)
                # a pickup or a cut bar of an odd number of steps would end between
                # model steps: round its end so that every later bar line is a whole step
                knots[-1] = (knots[-1][0], max(math.floor(knots[-1][1] + 0.5), 1))
            else:
                knots = [(float(end), float(end - begin))]
            for step, advance in knots:
                melody.append(step)
                model.append(here + advance)
        return cls(np.array(melody), np.array(model))

    @property
    def is_identity(self) -> bool:
        return bool(np.allclose(self.melody_knots, self.model_knots))

    def to_model(self, steps: Sequence[float] | np.ndarray) -> np.ndarray:
        """Melody steps -> model steps (rounded)."""
        return _round(np.interp(np.asarray(steps, np.float64), self.melody_knots, self.model_knots))

    def to_melody(self, steps: Sequence[float] | np.ndarray) -> np.ndarray:
        """Model steps -> melody steps (rounded)."""
        return _round(np.interp(np.asarray(steps, np.float64), self.model_knots, self.melody_knots))

    def notes_to_model(self, notes: Sequence[Note]) -> list[Note]:
        return _move_notes(notes, self.to_model)

    def notes_to_melody(self, notes: Sequence[Note]) -> list[Note]:
        return _move_notes(notes, self.to_melody)

    def spans_to_model(self, spans: Sequence[Span]) -> list[Span]:
        """Chord spans in model steps; spans that shrink to nothing are dropped."""
        if not spans:
            return []
        starts = self.to_model([s.start for s in spans])
        ends = self.to_model([s.end for s in spans])
        return [
            Span(int(a), int(b), s.label) for s, a, b in zip(spans, starts, ends) if b > a
        ]


def _round(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)


def _move_notes(notes: Sequence[Note], move) -> list[Note]:
    if not notes:
        return []
    starts = move([n.start for n in notes])
    ends = move([n.end for n in notes])
    return normalize_notes(
        [
            Note(int(a), max(int(b), int(a) + 1), n.pitch, n.velocity)
            for n, a, b in zip(notes, starts, ends)
        ]
    )


def melody_time_map(melody: Melody, mode: str = DEFAULT_COMPOUND) -> TimeMap:
    """The map :func:`~pianoacc_utils.generation.accompany_melodies` uses for a melody:
    the swing map of its bars (``mode="swing"``) or the identity (``"plain"``, or a
    melody without compound bars)."""
    if mode not in COMPOUND_MODES:
        raise ValueError(f"compound mode {mode!r}: expected one of {', '.join(COMPOUND_MODES)}")
    bars = [int(b) for b in melody.grid.bar_starts]
    units = bar_units(melody) if mode == "swing" else [0] * len(bars)
    return TimeMap.for_bars(bars, int(melody.end_step), units)
