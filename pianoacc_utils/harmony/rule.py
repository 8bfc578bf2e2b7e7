"""Chords from a melody alone: one major or minor triad per half bar.

A melody file usually comes without chords, and the models play best to chords
(notebook 07, "Chords from the melody alone"). The rule scores each triad by the
melody's time on its tones, adds a prior for the triads of the melody's key and
keeps chords from changing too often (a Viterbi path). How often it agrees with
POP909's annotation: ``details.estimated_chords`` of
``results/evaluation_estimated_chords.json``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pianoacc_utils.data.notes import Note, Span
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT
from pianoacc_utils.harmony.chords import beat_table
from pianoacc_utils.harmony.key import estimate_key, parse_key

MAJOR_SCALE_TRIADS = ((0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"))
"""Diatonic triads of a major key: (root above the tonic, quality)."""


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
"""Cost (beat-votes) of changing chord at a bar line."""


MID_BAR_CHANGE_COST = 2.0
"""Cost (beat-votes) of changing chord in mid-bar: harmony moves mostly at bar lines."""


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
    """(tonic pitch class, mode) of the melody's estimated key; ``None`` for no notes."""
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
