"""Key estimation (Krumhansl-Schmuckler) and key labels in POP909 spelling (``"Gb:maj"``).

Used by the key-agreement metrics and by the chord rule, which prefers the triads
of the melody's key.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import Note, note_arrays
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT


def pitch_class_durations(notes: Sequence[Note]) -> np.ndarray:
    """Total sounding time (beats) of each pitch class 0..11 (0 = C)."""
    starts, ends, pitches, _ = note_arrays(notes)
    chroma = np.zeros(12)
    np.add.at(chroma, pitches % 12, np.maximum(ends - starts, 0) / STEPS_PER_BEAT)
    return chroma


KEY_WEIGHTS = {
    "major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
    "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
}
"""The Krumhansl-Kessler key profiles, from C, as music21's ``KrumhanslSchmuckler`` has them."""


def estimate_key(notes: Sequence[Note]) -> str | None:
    """Krumhansl-Schmuckler key of notes, in POP909 spelling (``"Gb:maj"``, ``"E:min"``).

    The key whose profile (:data:`KEY_WEIGHTS`, turned to each tonic) correlates best
    with the notes' duration-weighted pitch-class profile: music21's
    ``KrumhanslSchmuckler``, computed as it computes it (the same sums in the same
    order, the same order among equal correlations), without importing music21 or
    building a stream (most of the 0.3 s that ``pianoacc accompany`` took to read a
    melody and estimate its chords: ``benchmarks/results/accompany_wait.json``).
    ``tests/harmony`` checks that both agree. ``None`` when no note sounds.
    """
    chroma = pitch_class_durations(notes)
    if chroma.sum() <= 0:
        return None
    # music21 sums each pitch class's quarter lengths into a list of 12 (0 where none).
    profile = [float(d) if d > 0 else 0 for d in chroma]
    candidates = [
        (_key_correlation(profile, weights, tonic), tonic, mode)
        for mode, weights in KEY_WEIGHTS.items()
        for tonic in range(12)
    ]
    # music21 sorts (correlation, tonic pitch, mode) and takes the last: among equal
    # correlations the higher tonic, then "minor" before "major".
    _, tonic, mode = max(candidates)
    return f"{PITCH_NAMES[tonic]}:{'maj' if mode == 'major' else 'min'}"


def _key_correlation(profile: Sequence[float], weights: Sequence[float], tonic: int) -> float:
    """Pearson correlation of a pitch-class ``profile`` with the key profile ``weights``
    turned to ``tonic``, in music21's arithmetic (``KeyWeightKeyAnalysis._getDifference``)."""
    weight_mean = sum(weights) / len(weights)
    profile_mean = sum(profile) / len(profile)
    top = spread_weights = spread_profile = 0.0
    for j in range(12):
        weight = weights[(j - tonic) % 12] - weight_mean
        deviation = profile[j] - profile_mean
        top = top + weight * deviation
        spread_weights = spread_weights + weight**2
        spread_profile = spread_profile + deviation**2
    if spread_weights == 0 or spread_profile == 0:
        return 0.0
    return float(top / ((spread_weights * spread_profile) ** 0.5))


def parse_key(label: str) -> tuple[int, str]:
    """``"Gb:maj"`` -> (tonic pitch class 6, ``"maj"``); modes ``maj`` and ``min``.
    Tonics spelled as :data:`PITCH_NAMES` (as :func:`estimate_key` writes them) are read
    from it; other spellings (``"C#"``, ``"Fb"``) by mir_eval."""
    tonic, _, mode = label.partition(":")
    if mode not in ("maj", "min"):
        raise PianoaccError(f"key label {label!r}: expected TONIC:maj or TONIC:min")
    if tonic in PITCH_NAMES:
        return PITCH_NAMES.index(tonic), mode
    import mir_eval

    try:
        pitch_class = mir_eval.chord.pitch_class_to_semitone(tonic)
    except Exception as error:  # mir_eval raises its own exception types
        raise PianoaccError(f"key label {label!r}: unknown tonic {tonic!r}") from error
    return pitch_class % 12, mode


def _relative(key: tuple[int, str]) -> tuple[int, str]:
    """The relative key: A minor for C major, C major for A minor."""
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
