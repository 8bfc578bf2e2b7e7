"""Harmony as a model input: one chord per beat, annotated or estimated from a melody.

A pianist accompanying a lead sheet reads the chords; a model given the melody
alone must guess them. So the models also take the harmony:

* a chord is a vector of :data:`HARMONY_DIM` = 24 numbers: its pitch classes
  (12, multi-hot, 0 = C) and its bass pitch class (12, one-hot); no chord
  (``"N"``) is all zeros;
* a segment's harmony is a table with one such row per beat
  (:data:`~pianoacc_utils.common.STEPS_PER_BEAT` grid steps), holding the chord
  that sounds longest in that beat (:func:`beat_table`);
* the model adds a learned projection of the row of each token's beat to the
  token's embedding (see "Harmony signal" in :mod:`pianoacc_utils.models`).

Where do the chords come from? For POP909 they are the annotations
(``chord_midi.txt``), as on a lead sheet. For a melody alone,
:func:`estimate_chords` picks one triad per half bar with a small hidden Markov
model: melody notes vote for the triads that contain them (weighted by duration
and metric position), the melody's key favours its diatonic triads, and changing
chord costs something (more in mid-bar than on a bar line). It is a simple
harmoniser, not a chord recogniser; ``results/`` reports how often it agrees
with the annotations.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from pianoacc_utils.common import STEPS_PER_BEAT, PianoaccError
from pianoacc_utils.data import BeatGrid, Note, Span

HARMONY_DIM = 24
"""Numbers per chord row: 12 pitch classes (multi-hot) + 12 bass pitch classes (one-hot)."""

PITCH_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
"""Pitch-class spelling of the labels this module writes (POP909 uses flats)."""

MAJOR_SCALE_TRIADS = ((0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"))
"""Diatonic triads of a major key: (root above the tonic, quality)."""


# --------------------------------------------------------------------------- chord labels


@functools.lru_cache(maxsize=None)
def chord_tones(label: str) -> tuple[frozenset[int], int] | None:
    """Pitch classes and bass pitch class of a chord label (``"A:min7"``, ``"Bb:maj/3"``).

    Chord tones from ``mir_eval.chord.encode`` with extensions (9ths, 11ths, 13ths)
    folded into the octave, plus the bass of a slash chord. ``None`` for no chord
    (``"N"``, ``"X"``); :class:`PianoaccError` for a label that is not a chord.
    """
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
    import re

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


def read_chords(path: str | Path, grid: BeatGrid) -> list[Span]:
    """Chords from a text file onto a melody's grid: one ``start end label`` line per
    chord, times in seconds, labels as in POP909's ``chord_midi.txt`` (``C:maj``,
    ``A:min7``, ``G:7/3``, ``N``). Errors name the file and line."""
    from pianoacc_utils.data import read_spans

    path = Path(path)
    try:
        spans = read_spans(path, grid)
    except UnicodeDecodeError as error:
        raise PianoaccError(f"{path}: not a text file of chords ({error.reason})") from error
    for number, span in enumerate(spans, 1):
        try:
            chord_tones(span.label)
        except PianoaccError as error:
            raise PianoaccError(f"{path}: chord {number}: {error}") from error
    if not spans:
        raise PianoaccError(f"{path}: no chord inside the melody's time span")
    return spans


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


def pad_tables(tables: Sequence[np.ndarray], beats: int | None = None, rows: int | None = None) -> np.ndarray:
    """Stack harmony tables into ``(rows, beats, 24)`` float32, padding with zeros (no
    chord) and cutting longer tables. ``beats`` defaults to the longest table."""
    beats = max((len(t) for t in tables), default=1) if beats is None else beats
    out = np.zeros((rows or len(tables), max(beats, 1), HARMONY_DIM), np.float32)
    for i, table in enumerate(tables):
        n = min(len(table), out.shape[1])
        out[i, :n] = table[:n]
    return out


# --------------------------------------------------------------------------- chords from a melody


TRIADS = tuple((root, quality) for quality in ("maj", "min") for root in range(12))
"""The chords :func:`estimate_chords` chooses from: 12 major then 12 minor triads."""

_TRIAD_TONES = np.zeros((len(TRIADS), 12))
for _i, (_root, _quality) in enumerate(TRIADS):
    _TRIAD_TONES[_i, [_root, (_root + (4 if _quality == "maj" else 3)) % 12, (_root + 7) % 12]] = 1

NON_CHORD_TONE_WEIGHT = -0.6
"""Vote of a melody note's beat outside a triad (chord tones vote +1 per beat)."""
ON_BEAT_WEIGHT = 2.0
"""Extra weight of a melody note that starts on a beat (passing notes fall between)."""
DIATONIC_BONUS = 0.35
"""Prior per beat for a triad of the melody's key; the tonic triad gets twice this."""
BAR_CHANGE_COST = 0.8
MID_BAR_CHANGE_COST = 2.0
"""Costs of changing chord at a bar line and in mid-bar (beat-votes)."""


def _units(bar_starts: Sequence[int], num_steps: int) -> list[tuple[int, int, bool]]:
    """Half-bar units ``(start, end, starts_a_bar)``: bars of 4+ beats split at their middle beat."""
    bounds = sorted({int(b) for b in bar_starts if 0 <= b < num_steps} | {0})
    bounds.append(int(num_steps))
    units = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        beats = (end - start) // STEPS_PER_BEAT
        if beats >= 4 and beats % 2 == 0:
            middle = start + beats // 2 * STEPS_PER_BEAT
            units += [(start, middle, True), (middle, end, False)]
        elif end > start:
            units.append((start, end, True))
    return units


def _melody_key(melody: Sequence[Note]) -> tuple[int, str] | None:
    from pianoacc_utils.evaluation import estimate_key, parse_key

    label = estimate_key(melody)
    return parse_key(label) if label else None


def estimate_chords(
    melody: Sequence[Note], bar_starts: Sequence[int], num_steps: int
) -> list[Span]:
    """One triad per half bar for a melody alone (labels like ``"A:min"``), as spans.

    Scores every major and minor triad in every unit (half bar, or whole bar when its
    beats are odd) by the melody's beats on its tones (:data:`NON_CHORD_TONE_WEIGHT`
    elsewhere, :data:`ON_BEAT_WEIGHT` for notes starting on a beat) plus a prior for
    the triads of the melody's key, then takes the best path with change costs
    (Viterbi). Units without melody keep the chord before them. An empty melody gives
    no spans.
    """
    if not melody or num_steps <= 0:
        return []
    units = _units(bar_starts, num_steps)
    starts = np.array([n.start for n in melody])
    ends = np.array([n.end for n in melody])
    classes = np.array([n.pitch % 12 for n in melody])
    weight = np.where(starts % STEPS_PER_BEAT == 0, ON_BEAT_WEIGHT, 1.0)
    vote = np.where(_TRIAD_TONES > 0, 1.0, NON_CHORD_TONE_WEIGHT)  # (24, 12)
    prior = np.zeros(len(TRIADS))
    key = _melody_key(melody)
    if key is not None:
        tonic, mode = key
        major_tonic = tonic if mode == "maj" else (tonic + 3) % 12
        for degree, quality in MAJOR_SCALE_TRIADS:
            prior[TRIADS.index(((major_tonic + degree) % 12, quality))] = DIATONIC_BONUS
        prior[TRIADS.index((tonic, mode))] = 2 * DIATONIC_BONUS
    scores = np.zeros((len(units), len(TRIADS)))
    for u, (start, end, _) in enumerate(units):
        overlap = np.clip(np.minimum(ends, end) - np.maximum(starts, start), 0, None)
        beats = overlap / STEPS_PER_BEAT * np.where((starts >= start) & (starts < end), weight, 1.0)
        chroma = np.bincount(classes, weights=beats, minlength=12)
        if chroma.sum() > 0:  # a unit without melody has no say: the chord before stays
            scores[u] = vote @ chroma + prior * (end - start) / STEPS_PER_BEAT
    best, back = scores[0].copy(), np.zeros((len(units), len(TRIADS)), np.int64)
    for u in range(1, len(units)):
        cost = BAR_CHANGE_COST if units[u][2] else MID_BAR_CHANGE_COST
        stay = best
        move = best.max() - cost
        back[u] = np.where(stay >= move, np.arange(len(TRIADS)), int(best.argmax()))
        best = np.maximum(stay, move) + scores[u]
    path = [int(best.argmax())]
    for u in range(len(units) - 1, 0, -1):
        path.append(int(back[u, path[-1]]))
    path.reverse()
    spans: list[Span] = []
    for (start, end, _), choice in zip(units, path):
        root, quality = TRIADS[choice]
        label = f"{PITCH_NAMES[root]}:{quality}"
        if spans and spans[-1].label == label and spans[-1].end == start:
            spans[-1] = spans[-1]._replace(end=end)
        else:
            spans.append(Span(start, end, label))
    return spans


def beat_agreement(estimated: Sequence[Span], annotated: Sequence[Span], num_steps: int) -> float:
    """Share of annotated-chord beats where ``estimated`` has the same root and third
    (major/minor) as the annotation. NaN when no beat has an annotated chord."""
    ours = beat_table(estimated, num_steps)
    theirs = beat_table(annotated, num_steps)
    has_chord = theirs[:, 12:].sum(axis=1) > 0
    if not has_chord.any():
        return float("nan")
    same = np.array([_triad_of(a) == _triad_of(b) for a, b in zip(ours, theirs)])
    return float(same[has_chord].mean())


def _triad_of(row: np.ndarray) -> tuple[int, str] | None:
    """(root, "maj"/"min") of a table row whose bass is its root; best-matching triad otherwise."""
    if row[12:].sum() == 0:
        return None
    roots = np.array([root for root, _ in TRIADS])
    bass = int(np.argmax(row[12:]))
    overlap = _TRIAD_TONES @ row[:12] - 0.5 * (_TRIAD_TONES @ (1 - row[:12])) + 0.1 * (roots == bass)
    return TRIADS[int(np.argmax(overlap))]
