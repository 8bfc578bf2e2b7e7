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


def estimate_key(notes: Sequence[Note]) -> str | None:
    """Krumhansl-Schmuckler key of notes, in POP909 spelling (``"Gb:maj"``, ``"E:min"``).

    music21's ``KrumhanslSchmuckler`` runs on a 12-note stream holding each pitch
    class once with its total duration in beats: the same duration-weighted
    pitch-class profile it would build from all the notes, at a cost that does not
    grow with the number of notes. ``None`` when no note sounds.
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
