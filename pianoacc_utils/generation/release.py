"""Hanging notes released where a pianist would have lifted them.

An event decoder must end each note with its own note-off token; sampling often skips
it, and such a note would otherwise sound to the end of its window.
:func:`release_notes` ends it at the first chord change that leaves its pitch class out
and after a few beats at most (:data:`~pianoacc_utils.defaults.HANGING_BEATS` for a
note the decoder never ended, :data:`~pianoacc_utils.defaults.MAX_HELD_BEATS` for any).
The window loop (:mod:`~pianoacc_utils.generation.accompany`) applies it to each
window's new notes; both limits were chosen on the validation split
(``results/chord_mask_validation.md``, ``results/hanging_validation.md``).

Times are grid steps (a 32nd note: :data:`~pianoacc_utils.defaults.STEPS_PER_BEAT` per beat).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pianoacc_utils import harmony
from pianoacc_utils.data.notes import Note, Span
from pianoacc_utils.defaults import HANGING_BEATS, MAX_HELD_BEATS, STEPS_PER_BEAT


def release_notes(
    notes: Sequence[Note],
    chords: Sequence[Span] = (),
    max_beats: float = MAX_HELD_BEATS,
    hanging: Sequence[bool] | None = None,
    hanging_beats: float = HANGING_BEATS,
    table: np.ndarray | None = None,
) -> list[Note]:
    """Notes shortened where a pianist would have lifted them.

    A note ends at the first beat after its start where the chord changes to one
    that leaves its pitch class out (beats hold the chord of
    :func:`~pianoacc_utils.harmony.beat_table`; no chord known changes nothing), and
    at most ``max_beats`` beats after its start. A note flagged in ``hanging`` (the
    decoder never ended it: :meth:`~pianoacc_utils.tokenizer.EventTokenizer.decode_hanging`)
    lasts at most ``hanging_beats`` beats. Notes only ever get shorter. ``table``: the
    chords' beat table where the caller keeps one (from step 0, however long: rows past
    the notes are not read), else made here.
    """
    limits = np.full(len(notes), int(round(max_beats * STEPS_PER_BEAT)))
    if hanging is not None:
        if len(hanging) != len(notes):
            raise ValueError("hanging needs one flag per note")
        short = int(round(min(hanging_beats, max_beats) * STEPS_PER_BEAT))
        limits[np.asarray(hanging, bool)] = short
    if not chords:
        table = None
    elif table is None:
        table = harmony.beat_table(chords, max((n.end for n in notes), default=0))
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
