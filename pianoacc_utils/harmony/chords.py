"""Chord labels and the per-beat harmony tables the models read.

A chord label (POP909's ``chord_midi.txt`` spelling: ``C:maj``, ``A:min7``, ``G:7/3``,
``N`` for none) becomes a row of 24 numbers: the 12 pitch classes it holds and its
bass. A harmony table has one row per quarter-note beat (8 grid steps), the chord
sounding longest in that beat, so the models see the harmony at the beat's pace
whatever the annotation's timing.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import BeatGrid, Span
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT

HARMONY_DIM = 24
"""Numbers per chord row: 12 pitch classes (multi-hot) + 12 bass pitch classes (one-hot)."""


# --------------------------------------------------------------------------- chord labels


_PARSED: dict[str, tuple[frozenset[int], int]] = {}
"""Labels whose tones are already known (:func:`remember_chord_tones`)."""


def remember_chord_tones(parsed: dict[str, tuple[frozenset[int], int]]) -> None:
    """Let :func:`chord_tones` answer these labels without parsing them again: a
    harmoniser's parameters carry the tones of the labels it emits, parsed when it was
    fitted, so that accompanying a melody need not import mir_eval (whose import, SciPy's
    statistics with it, takes about a second)."""
    _PARSED.update(parsed)


@functools.lru_cache(maxsize=None)
def chord_tones(label: str) -> tuple[frozenset[int], int] | None:
    """Pitch classes and bass pitch class of a chord label (``"A:min7"``, ``"Bb:maj/3"``).

    Chord tones from ``mir_eval.chord.encode`` with extensions (9ths, 11ths, 13ths)
    folded into the octave, plus the bass of a slash chord. ``None`` for no chord
    (``"N"``, ``"X"``); :class:`PianoaccError` for a label that is not a chord.
    """
    if label in _PARSED:
        return _PARSED[label]
    import mir_eval

    try:
        root, bitmap, bass = mir_eval.chord.encode(label, reduce_extended_chords=True)
    except Exception as error:  # mir_eval raises its own exception types
        raise PianoaccError(f"chord label {label!r}: not a valid chord ({error})") from error
    if root < 0 or np.any(np.asarray(bitmap) < 0):
        return None
    bass_class = int((root + bass) % 12)
    tones = {int((root + i) % 12) for i in np.flatnonzero(bitmap)} | {bass_class}
    return frozenset(tones), bass_class


def chord_vector(label: str) -> np.ndarray:
    """The 24-number row of a chord label (all zeros for no chord), float32."""
    row = np.zeros(HARMONY_DIM, np.float32)
    tones = chord_tones(label)
    if tones is not None:
        row[sorted(tones[0])] = 1.0
        row[12 + tones[1]] = 1.0
    return row


def transpose_spans(chords: Sequence[Span], semitones: int) -> list[Span]:
    """Chord spans with their roots moved by ``semitones`` (``"A:min7/b3"`` up 2 is
    ``"B:min7/b3"``: the bass of a slash chord is an interval, so it moves along)."""
    if semitones % 12 == 0:
        return list(chords)
    moved = []
    for chord in chords:
        match = re.match(r"^([A-G][b#]*)(.*)$", chord.label)
        if match is None or chord_tones(chord.label) is None:
            moved.append(chord)
            continue
        from mir_eval.chord import pitch_class_to_semitone

        root = (pitch_class_to_semitone(match.group(1)) + semitones) % 12
        moved.append(chord._replace(label=PITCH_NAMES[root] + match.group(2)))
    return moved


COMMENT = re.compile(r"(?:^|\s)#")
"""Where a comment begins in a chord file: a ``#`` at the start of a line or after a
space or tab. A ``#`` inside a label is a sharp (``F#:maj``, ``C:maj/#4``, ``G:7(#9)``)."""


class ChordFile(NamedTuple):
    """What :func:`read_chord_file` kept of a chord file, and how much it left out.

    ``spans`` are the chords in grid steps; ``chords`` counts the chord lines of the
    file; ``after_end`` the chords dropped because they start at or after the
    melody's end (an outro the melody does not reach); ``clipped`` the chords kept
    but cut at the melody's end; ``melody_end`` is that end in seconds (``None``
    when no end was given).
    """

    path: Path
    spans: list[Span]
    chords: int
    after_end: int
    clipped: int
    melody_end: float | None

    def notice(self) -> str:
        """One line saying how many chords lie past the melody's end (dropped or cut
        there), ``""`` when none does: the run goes on, and the musician learns that
        the file holds more than the melody reaches."""
        if not (self.after_end or self.clipped):
            return ""
        where = f"the melody's end ({self.melody_end:.3f} s)"
        if self.after_end:
            line = f"chords: {self.after_end} of {self.chords} in {self.path.name} start at or "
            line += f"after {where}: dropped"
            if self.clipped:
                line += f"; {self.clipped} more run past it: cut there"
            return line
        return (
            f"chords: {self.clipped} of {self.chords} in {self.path.name} run past {where}: "
            "cut there"
        )


def read_chord_file(path: str | Path, grid: BeatGrid, end_step: int | None = None) -> ChordFile:
    """Chords from a text file onto a melody's grid, with counts of what was left out.

    One ``start end label`` line per chord: times in seconds, columns separated by
    spaces or tabs, labels as in POP909's ``chord_midi.txt`` (``C:maj``, ``F#:min7``,
    ``Bb:7/3``, ``C:maj/#4``, ``G:7(#9)``, ``N`` for none). Sharps and flats are read
    as spelled in the root, the bass and the extensions. Blank lines are skipped, and
    so is a comment: from a ``#`` that starts the line or follows a space or tab
    (:data:`COMMENT`) to the end of the line.

    Given the melody's ``end_step``, a chord starting at or after it is dropped and a
    chord running past it is cut there: annotations of whole songs (POP909's among
    them) go on past the last melody note. Every other line must be a chord: a line
    with another number of columns, a time that is not a finite number of seconds
    >= 0, an end not after its start, an unknown label, or a chord inside the melody
    shorter than one grid step is an error naming the file and the line, and so is
    a file with no chord that the melody reaches.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as error:
        raise PianoaccError(f"{path}: not a text file of chords ({error.reason})") from error
    except OSError as error:
        raise PianoaccError(f"{path}: cannot read the chord file ({error.strerror})") from error
    melody_end = None if end_step is None else float(grid.to_seconds(np.array([end_step]))[0])
    spans: list[Span] = []
    chords = after_end = clipped = 0
    for number, line in enumerate(lines, 1):
        fields = COMMENT.split(line, maxsplit=1)[0].split()
        if not fields:
            continue
        chords += 1
        where = f"{path}:{number}: chord {chords}"
        if len(fields) != 3:
            raise PianoaccError(
                f"{where}: expected 3 columns (start end label), got {len(fields)}: "
                f"{line.strip()!r}"
            )
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError as error:
            raise PianoaccError(f"{where}: {error}") from error
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0:
            raise PianoaccError(f"{where}: times must be finite seconds >= 0, got {start} {end}")
        if end <= start:
            raise PianoaccError(f"{where}: ends ({end} s) before it starts ({start} s)")
        try:
            chord_tones(fields[2])
        except PianoaccError as error:
            raise PianoaccError(f"{where}: {error}") from error
        s, e = (int(v) for v in grid.to_steps(np.array([start, end])))
        if end_step is not None and s >= end_step:
            after_end += 1
            continue
        if end_step is not None and e > end_step:
            e = int(end_step)
            clipped += 1
        if e <= s:
            raise PianoaccError(f"{where}: shorter than one grid step (a 32nd note)")
        spans.append(Span(s, e, fields[2]))
    if not spans and after_end:
        raise PianoaccError(
            f"{path}: all {after_end} chords start after the melody ends ({melody_end:.3f} s): "
            "is it the chord file of another song?"
        )
    if not spans:
        raise PianoaccError(f"{path}: no chord inside the file")
    return ChordFile(path, spans, chords, after_end, clipped, melody_end)


def read_chords(path: str | Path, grid: BeatGrid, end_step: int | None = None) -> list[Span]:
    """The chords of a chord file onto a melody's grid, in grid steps: the spans of
    :func:`read_chord_file` (which says what the file holds and how it is read)."""
    return read_chord_file(path, grid, end_step).spans


def chord_coverage(chords: Sequence[Span], end_step: int) -> float:
    """Share (0..1) of the grid steps ``[0, end_step)`` that some chord other than ``N``
    covers."""
    covered = np.zeros(max(int(end_step), 1), bool)
    for span in chords:
        if span.label != "N":
            covered[max(span.start, 0) : max(min(span.end, end_step), 0)] = True
    return float(covered.mean())


# --------------------------------------------------------------------------- beat tables


def num_beats(num_steps: int) -> int:
    """Beats (rows of a harmony table) covering ``num_steps`` grid steps (at least 1)."""
    return max(1, -(-int(num_steps) // STEPS_PER_BEAT))


def beat_table(
    chords: Sequence[Span], num_steps: int, origin: int = 0, beats: int | None = None
) -> np.ndarray:
    """Harmony table ``(beats, 24)`` float32 of the chords from step ``origin`` on.

    Row ``b`` is the chord sounding longest in steps ``origin + 8b .. origin + 8b + 7``;
    no chord there (no span, or a span labelled ``"N"``) gives zeros. Of two chords
    sounding equally long the earlier wins, and a chord wins a tie with silence, so
    the table does not depend on how labels are spelled or transposed. ``beats``
    defaults to the beats covering ``num_steps`` steps after ``origin``.
    """
    beats = num_beats(num_steps) if beats is None else int(beats)
    table = np.zeros((beats, HARMONY_DIM), np.float32)
    if beats <= 0 or not chords:
        return table
    length = beats * STEPS_PER_BEAT
    labels = sorted({c.label for c in chords if chord_tones(c.label) is not None})
    rows = np.stack([chord_vector(label) for label in labels] + [np.zeros(HARMONY_DIM, np.float32)])
    none = len(labels)
    which = np.full(length, none, np.int64)
    column = {label: i for i, label in enumerate(labels)}
    for chord in chords:
        start, end = max(chord.start - origin, 0), min(chord.end - origin, length)
        if end > start:
            which[start:end] = column.get(chord.label, none)
    # A step counts 1, less a little for its place in the beat (earlier chords win
    # ties) and a little more for silence (chords win ties with it).
    place = np.arange(length) % STEPS_PER_BEAT
    weight = 1.0 - 1e-4 * place - np.where(which == none, 1e-2, 0.0)
    counts = np.zeros((beats, none + 1))
    np.add.at(counts, (np.arange(length) // STEPS_PER_BEAT, which), weight)
    return rows[np.argmax(counts, axis=1)]


def transpose_table(table: np.ndarray, semitones: int) -> np.ndarray:
    """A harmony table moved by ``semitones`` (pitch classes and bass rotate together)."""
    if semitones % 12 == 0:
        return table
    tones, bass = table[..., :12], table[..., 12:]
    return np.concatenate([np.roll(tones, semitones, -1), np.roll(bass, semitones, -1)], -1)


def pad_tables(
    tables: Sequence[np.ndarray], beats: int | None = None, rows: int | None = None
) -> np.ndarray:
    """Stack harmony tables into ``(rows, beats, 24)`` float32, padding with zeros (no
    chord) and cutting longer tables. ``beats`` defaults to the longest table."""
    beats = max((len(t) for t in tables), default=1) if beats is None else beats
    out = np.zeros((rows or len(tables), max(beats, 1), HARMONY_DIM), np.float32)
    for i, table in enumerate(tables):
        n = min(len(table), out.shape[1])
        out[i, :n] = table[:n]
    return out
