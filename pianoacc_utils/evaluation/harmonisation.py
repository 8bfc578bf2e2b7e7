"""Judging chords chosen for a melody: the six melody-chord metrics of Yeh et al. (2020).

Y.-C. Yeh, W.-Y. Hsiao, S. Fukayama, T. Kitahara, B. Genchel, H.-M. Liu, H.-W. Dong,
Y. Chen, T. Leong and Y.-H. Yang, "Automatic Melody Harmonization with Triad Chords: A
Comparative Study", Journal of New Music Research 50(1), 2021 (arXiv:2001.02360, 2020),
section "Objective evaluation"; also used by Sun et al. (2021), "Melody Harmonization
Using Orderless NADE, Chord Balancing, and Blocked Gibbs Sampling" (ICASSP 2021).

Three judge the melody against its chords: chord tone to non-chord tone ratio
(:func:`ctnctr`), pitch consonance score (:func:`pcs`) and melody-chord tonal distance
(:func:`mctd`); three judge the chord progression alone: chord histogram entropy
(:func:`che`), chord coverage (:func:`cc`) and chord tonal distance (:func:`ctd`). The
tonal distances use the tonal centroid of Harte, Sandler and Gasser (2006), "Detecting
Harmonic Change in Musical Audio" (ACM Audio and Music Computing Multimedia workshop):
a 6-D point on the circles of fifths, minor thirds and major thirds.

Every metric takes ``(melody, chords, num_steps)`` (notes and chord spans in grid steps,
the steps ``[0, num_steps)`` judged), so that one table holds them all
(:data:`HARMONISATION_METRICS`); the progression metrics ignore the melody. Melody
metrics count time (grid steps) where Yeh et al. count 16th-note frames, and only where
a chord other than ``N`` sounds; progression metrics read one chord per beat (the one
sounding longest, :func:`pianoacc_utils.harmony.beat_table`), where Yeh et al. read one
per half bar. Chords are compared as sounded: pitch classes and bass.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from pianoacc_utils.data.notes import Note, Span
from pianoacc_utils.harmony.chords import beat_table, chord_tones
from pianoacc_utils.harmony.rule import beat_agreement

PCS_SCORES = {0: 1.0, 3: 1.0, 4: 1.0, 5: 0.0, 7: 1.0, 8: 1.0, 9: 1.0}
"""Pitch consonance of a melody note above a chord tone, by interval (semitones mod 12):
unison, thirds, fifth and sixths +1, the perfect fourth 0, every other interval -1."""

PROPER_STEP = 2
"""A non-chord tone is *proper* when the next melody note of another pitch lies within
this many semitones (a step: passing and neighbour tones)."""

TONAL_RADII = (1.0, 1.0, 0.5)
"""Radii of the circles of fifths, minor thirds and major thirds (Harte et al. 2006)."""


def tonal_centroid(chroma: np.ndarray) -> np.ndarray:
    """Tonal centroid ``(..., 6)`` of chroma vectors ``(..., 12)`` (Harte et al. 2006):
    each pitch class ``l`` is the point ``(r1 sin(7 pi l / 6), r1 cos(7 pi l / 6),
    r2 sin(3 pi l / 2), r2 cos(3 pi l / 2), r3 sin(2 pi l / 3), r3 cos(2 pi l / 3))`` and
    a chroma vector is the mean of its pitch classes' points weighted by their energy
    (divided by its L1 norm). A zero vector gives the origin."""
    chroma = np.asarray(chroma, np.float64)
    pitch_class = np.arange(12)
    angles = (7 * np.pi / 6, 3 * np.pi / 2, 2 * np.pi / 3)
    basis = np.stack(
        [f(a * pitch_class) * r for a, r in zip(angles, TONAL_RADII) for f in (np.sin, np.cos)]
    )  # (6, 12)
    total = np.abs(chroma).sum(axis=-1, keepdims=True)
    weights = np.divide(chroma, total, out=np.zeros_like(chroma), where=total > 0)
    return weights @ basis.T


# --------------------------------------------------------------------------- per-step chords


def _step_chords(chords: Sequence[Span], num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(chroma ``(num_steps, 12)`` of the chord sounding at each step, has-chord ``(num_steps,)``);
    a later span overrides an earlier one where they overlap, ``N`` is no chord."""
    chroma = np.zeros((max(int(num_steps), 0), 12))
    present = np.zeros(len(chroma), bool)
    for span in chords:
        start, end = max(int(span.start), 0), min(int(span.end), len(chroma))
        if end <= start:
            continue
        tones = chord_tones(span.label)
        chroma[start:end] = 0.0
        present[start:end] = tones is not None
        if tones is not None:
            chroma[start:end, sorted(tones[0])] = 1.0
    return chroma, present


def _melody_steps(
    melody: Sequence[Note], num_steps: int
) -> tuple[list[Note], np.ndarray, np.ndarray]:
    """(the melody in time order, the index of a note for each of its steps inside
    ``[0, num_steps)`` (concatenated), those steps)."""
    ordered = sorted(melody, key=lambda n: (n.start, n.pitch))
    starts = np.array([max(int(n.start), 0) for n in ordered], np.int64)
    ends = np.array([min(int(n.end), int(num_steps)) for n in ordered], np.int64)
    lengths = np.maximum(ends - starts, 0) if len(ordered) else np.zeros(0, np.int64)
    note = np.repeat(np.arange(len(ordered)), lengths)
    offsets = (
        np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(ordered) else np.zeros(0, np.int64)
    )
    steps = starts[note] + np.arange(len(note)) - offsets[note]
    return ordered, note, steps


# --------------------------------------------------------------------------- melody against chords


def ctnctr(melody: Sequence[Note], chords: Sequence[Span], num_steps: int) -> float:
    """Chord tone to non-chord tone ratio, ``(n_c + n_p) / (n_c + n_n)`` (Yeh et al. 2020).

    ``n_c``: melody time on a tone of the sounding chord; ``n_n``: melody time on other
    tones; ``n_p``: the part of ``n_n`` on *proper* non-chord tones, whose next melody
    note of another pitch is at most :data:`PROPER_STEP` semitones away. 1 for a melody
    of chord tones; NaN when no melody sounds with a chord.
    """
    chroma, present = _step_chords(chords, num_steps)
    ordered, note, steps = _melody_steps(melody, num_steps)
    pitches = np.array([n.pitch for n in ordered], np.int64)
    following = np.full(len(ordered), -1000)  # pitch of the next note of another pitch
    for i in range(len(ordered) - 2, -1, -1):
        following[i] = pitches[i + 1] if pitches[i + 1] != pitches[i] else following[i + 1]
    proper = np.abs(following - pitches) <= PROPER_STEP
    keep = present[steps] if len(steps) else np.zeros(0, bool)
    note, steps = note[keep], steps[keep]
    tone = chroma[steps, pitches[note] % 12] > 0
    total = len(steps)
    if not total:
        return math.nan
    return float((tone.sum() + (~tone & proper[note]).sum()) / total)


def pcs(melody: Sequence[Note], chords: Sequence[Span], num_steps: int) -> float:
    """Pitch consonance score (Yeh et al. 2020): the mean of :data:`PCS_SCORES` over every
    (melody step, chord tone) pair, the melody taken above the chord (interval = melody
    pitch class minus chord pitch class, mod 12). In [-1, 1]; NaN when no melody sounds
    with a chord."""
    chroma, present = _step_chords(chords, num_steps)
    ordered, note, steps = _melody_steps(melody, num_steps)
    keep = present[steps] if len(steps) else np.zeros(0, bool)
    note, steps = note[keep], steps[keep]
    table = np.array([PCS_SCORES.get(i, -1.0) for i in range(12)])
    pitches = np.array([n.pitch for n in ordered], np.int64)
    intervals = (pitches[note][:, None] - np.arange(12)[None, :]) % 12  # (steps, 12)
    tones = chroma[steps]
    pairs = float(tones.sum())
    return float((tones * table[intervals]).sum() / pairs) if pairs else math.nan


def mctd(melody: Sequence[Note], chords: Sequence[Span], num_steps: int) -> float:
    """Melody-chord tonal distance (Yeh et al. 2020): the Euclidean distance between the
    tonal centroid of the melody note's pitch class and that of the sounding chord,
    averaged over melody time. Lower is closer; NaN when no melody sounds with a chord."""
    chroma, present = _step_chords(chords, num_steps)
    ordered, note, steps = _melody_steps(melody, num_steps)
    keep = present[steps] if len(steps) else np.zeros(0, bool)
    note, steps = note[keep], steps[keep]
    if not len(steps):
        return math.nan
    pitches = np.array([n.pitch for n in ordered], np.int64)
    distance = tonal_centroid(chroma[steps]) - tonal_centroid(np.eye(12))[pitches[note] % 12]
    return float(np.linalg.norm(distance, axis=1).mean())


# --------------------------------------------------------------------------- the progression


def _beat_chords(chords: Sequence[Span], num_steps: int) -> np.ndarray:
    """Chord rows ``(beats, 24)`` of the beats that have a chord (pitch classes, bass)."""
    table = beat_table(chords, num_steps)
    return table[table[:, 12:].sum(axis=1) > 0]


def che(melody: Sequence[Note], chords: Sequence[Span], num_steps: int) -> float:
    """Chord histogram entropy (Yeh et al. 2020): ``-sum p log p`` (natural log) over the
    share ``p`` of beats each distinct chord holds. 0 for one chord; NaN for none."""
    rows = _beat_chords(chords, num_steps)
    if len(rows) == 0:
        return math.nan
    _, counts = np.unique(rows, axis=0, return_counts=True)
    share = counts / counts.sum()
    return float(0.0 - (share * np.log(share)).sum())


def cc(melody: Sequence[Note], chords: Sequence[Span], num_steps: int) -> float:
    """Chord coverage (Yeh et al. 2020): how many distinct chords sound (counted over beats)."""
    rows = _beat_chords(chords, num_steps)
    return float(len(np.unique(rows, axis=0))) if len(rows) else 0.0


def ctd(melody: Sequence[Note], chords: Sequence[Span], num_steps: int) -> float:
    """Chord tonal distance (Yeh et al. 2020): the Euclidean distance between the tonal
    centroids of adjacent chords, averaged over pairs of adjacent beats that both have
    a chord (a held chord adds 0, as a repeated half-bar chord does for Yeh et al.). NaN
    with fewer than two such beats."""
    table = beat_table(chords, num_steps)
    has = table[:, 12:].sum(axis=1) > 0
    centroids = tonal_centroid(table[:, :12])
    both = has[:-1] & has[1:]
    if not both.any():
        return math.nan
    steps = np.linalg.norm(centroids[1:] - centroids[:-1], axis=1)
    return float(steps[both].mean())


def exact_beat_agreement(
    estimated: Sequence[Span], annotated: Sequence[Span], num_steps: int
) -> float:
    """Share of annotated-chord beats where ``estimated`` sounds exactly the annotated chord
    (the same pitch classes and bass). NaN when no beat has an annotated chord."""
    ours, theirs = beat_table(estimated, num_steps), beat_table(annotated, num_steps)
    has = theirs[:, 12:].sum(axis=1) > 0
    if not has.any():
        return math.nan
    return float(np.all(ours == theirs, axis=1)[has].mean())


HARMONISATION_METRICS: Mapping[str, Callable[[Sequence[Note], Sequence[Span], int], float]] = {
    "ctnctr": ctnctr,
    "pcs": pcs,
    "mctd": mctd,
    "che": che,
    "cc": cc,
    "ctd": ctd,
}
"""The six metrics of Yeh et al. (2020) by short name; higher is better for ``ctnctr`` and
``pcs``, lower for ``mctd``; ``che``, ``cc`` and ``ctd`` describe the progression."""


def harmonisation_metrics(
    melody: Sequence[Note],
    chords: Sequence[Span],
    num_steps: int,
    annotated: Sequence[Span] | None = None,
) -> dict[str, float]:
    """The six metrics, plus, given the ``annotated`` chords, the share of annotated beats
    with the same root and third (``root_third``,
    :func:`pianoacc_utils.harmony.beat_agreement`) and with exactly the same chord
    (``exact``, :func:`exact_beat_agreement`)."""
    values = {
        name: metric(melody, chords, num_steps) for name, metric in HARMONISATION_METRICS.items()
    }
    if annotated is not None:
        values["root_third"] = beat_agreement(chords, annotated, num_steps)
        values["exact"] = exact_beat_agreement(chords, annotated, num_steps)
    return values


def bar_line_changes(chords: Sequence[Span], bar_starts: Sequence[int], num_steps: int) -> float:
    """Share of bar lines inside ``(0, num_steps)`` where the chord changes: the label
    sounding on the step before the line differs from the one on the line's step
    (bar lines with no chord on either side are not counted; ``nan`` when none is).
    The chord-level counterpart of an accompaniment's harmonic motion: POP909's
    annotations change chord on most bar lines."""
    starts = np.array([c.start for c in chords], np.int64)
    labels = [c.label for c in chords]

    def label_at(step: int) -> str | None:
        index = int(np.searchsorted(starts, step, side="right")) - 1
        return labels[index] if index >= 0 and chords[index].end > step else None

    changes = []
    for line in bar_starts:
        if 0 < line < num_steps:
            before, after = label_at(int(line) - 1), label_at(int(line))
            if before is not None and after is not None:
                changes.append(before != after)
    return float(np.mean(changes)) if changes else math.nan
