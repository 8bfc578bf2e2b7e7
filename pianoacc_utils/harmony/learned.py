"""Chords from a melody alone, learned from POP909's chord annotations.

The melody is read frame by frame: a frame is a quarter-note beat (8 grid steps)
counted from the start of its bar, so bars of any length (3/4, 6/8, 5/4, irregular
bars, a pickup before the first bar) cut into whole beats plus at most one shorter
frame. Everything is relative to the melody's key (``estimate_key``, taken as its
relative major's tonic, so that a major key and its relative minor share one frame
of reference): a chord is a *state*, a chord quality of the vocabulary on one of 12
roots counted from that tonic, and the 12 transpositions of a song share statistics.

A parameter set (:func:`load_parameters`, fitted by
:func:`pianoacc_utils.harmony.fitting.fit_harmoniser`) holds the chord vocabulary,
the transitions between states (a chord holds or changes, conditioned on the frame's
place in the bar: bar line, middle of the bar, other beat) and the emissions, which
score each state for each frame's melody: either a hidden Markov model's pitch-class
distributions (``kind = "hmm"``) or a classifier's posteriors divided by a power of
the states' prior (``"softmax"``, ``"mlp"``). :func:`harmonise` takes the most likely
state path (Viterbi); :func:`learned_chords` does so with the shipped parameters.
Annotated chords become states in :mod:`pianoacc_utils.harmony.fitting`
(:func:`~pianoacc_utils.harmony.fitting.label_state`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.data.notes import Note, Span
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT
from pianoacc_utils.harmony.chords import remember_chord_tones
from pianoacc_utils.harmony.key import estimate_key, parse_key

PARAMETERS_FILE = Path("pretrained/harmony/harmoniser.npz")
"""The shipped parameters, relative to the checkout's root."""

POSITIONS = ("bar", "middle", "beat")
"""Places of a frame in its bar: on the bar line, on the middle beat of a bar of an even
number (4 or more) of beats, any other beat. Transitions are learned for each."""

SHORTEST_FRAME = STEPS_PER_BEAT // 2
"""A bar's last piece shorter than this (steps) joins the frame before it."""

CONTEXT_BEATS = 8
"""Width (beats) of the window around a frame whose pitch classes the classifier reads
besides the frame, its neighbours and its bar."""

LOOP_BARS = 4
"""Bars of melody-less music (an intro, an interlude, an ending) repeat the chords of
the bars this many bars away: a pianist keeps a progression going where the melody
rests, and the melody gives the harmoniser nothing to read there."""

NEIGHBOURS = (-4, -3, -2, 2, 3, 4)
"""Frames (offsets) whose sounding shares and attacks the classifier reads, besides the
frame itself and the shares of the frames just before and after it."""


class Frames(NamedTuple):
    """A melody's frames: ``bounds`` ``(F, 2)`` start and end steps, ``position`` ``(F,)``
    index into :data:`POSITIONS`, ``bar`` ``(F,)`` the bar each frame is in (0 is the
    pickup or the first bar), ``silent_bar`` ``(F,)`` True where no melody sounds in the bar."""

    bounds: np.ndarray
    position: np.ndarray
    bar: np.ndarray
    silent_bar: np.ndarray


# --------------------------------------------------------------------------- states


def state_label(state: int, tonic: int, qualities: Sequence[str]) -> str:
    """POP909 label of a state (quality ``state // 12`` on root ``tonic + state % 12``)."""
    return f"{PITCH_NAMES[(tonic + state % 12) % 12]}:{qualities[state // 12]}"


def key_tonic(label: str | None) -> tuple[int, bool] | None:
    """(tonic pitch class of the key ``label`` or of its relative major, key is minor),
    the frame the harmoniser reads a melody in; ``None`` for no key."""
    if label is None:
        return None
    tonic, mode = parse_key(label)
    return ((tonic + 3) % 12, True) if mode == "min" else (tonic, False)


def melody_tonic(melody: Sequence[Note]) -> tuple[int, bool]:
    """:func:`key_tonic` of the key :func:`estimate_key` finds; (0, False) when no note
    sounds."""
    return key_tonic(estimate_key(melody)) or (0, False)


# --------------------------------------------------------------------------- frames and features


def melody_frames(melody: Sequence[Note], bar_starts: Sequence[int], num_steps: int) -> Frames:
    """Cut ``[0, num_steps)`` into beats counted from each bar line (see the module doc)."""
    num_steps = int(num_steps)
    lines = sorted({int(b) for b in bar_starts if 0 < b < num_steps} | {0})
    lines.append(num_steps)
    bounds, position, bar = [], [], []
    for index, (start, end) in enumerate(zip(lines[:-1], lines[1:])):
        cuts = list(range(start, end, STEPS_PER_BEAT))
        if len(cuts) > 1 and end - cuts[-1] < SHORTEST_FRAME:
            cuts.pop()
        beats = (end - start) // STEPS_PER_BEAT
        middle = (
            beats // 2
            if beats >= 4 and beats % 2 == 0 and (end - start) % STEPS_PER_BEAT == 0
            else -1
        )
        for k, cut in enumerate(cuts):
            bounds.append((cut, cuts[k + 1] if k + 1 < len(cuts) else end))
            position.append(0 if k == 0 else 1 if k == middle else 2)
            bar.append(index)
    bounds_array = np.array(bounds, np.int64).reshape(-1, 2)
    sounding = np.zeros(len(lines) - 1, bool)
    for note in melody:
        first = np.searchsorted(lines, max(note.start, 0), side="right") - 1
        last = np.searchsorted(lines, min(note.end, num_steps) - 1, side="right") - 1
        if note.end > max(note.start, 0) and note.start < num_steps:
            sounding[max(first, 0) : last + 1] = True
    bar_array = np.array(bar, np.int64)
    return Frames(bounds_array, np.array(position, np.int64), bar_array, ~sounding[bar_array])


def frame_chroma(melody: Sequence[Note], bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sounding, attack), both ``(F, 12)``: the share of each frame each pitch class
    sounds in, and 1 for the pitch classes sounding at the frame's first step."""
    end = int(bounds[-1, 1]) if len(bounds) else 0
    roll = np.zeros((end + 1, 12))
    for note in melody:
        start, stop = max(int(note.start), 0), min(int(note.end), end)
        if stop > start:
            roll[start:stop, note.pitch % 12] = 1.0
    cumulative = np.vstack([np.zeros((1, 12)), np.cumsum(roll, axis=0)])
    lengths = np.maximum(bounds[:, 1] - bounds[:, 0], 1)[:, None]
    sounding = (cumulative[bounds[:, 1]] - cumulative[bounds[:, 0]]) / lengths
    return sounding, roll[bounds[:, 0]]


def _normalised(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1 (rows of zeros stay zeros)."""
    total = rows.sum(axis=-1, keepdims=True)
    return np.divide(rows, total, out=np.zeros_like(rows), where=total > 0)


def _shifted(rows: np.ndarray, offset: int) -> np.ndarray:
    """Row ``f`` of the result is row ``f + offset`` of ``rows`` (zeros past either end)."""
    result = np.zeros_like(rows)
    if offset >= 0:
        result[: max(len(rows) - offset, 0)] = rows[offset:]
    else:
        result[-offset:] = rows[: max(len(rows) + offset, 0)]
    return result


def _group_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each row, the sum of ``values`` over the rows of its group."""
    totals = np.zeros((int(groups.max()) + 1 if len(groups) else 0, values.shape[1]))
    np.add.at(totals, groups, values)
    return totals[groups]


def frame_features(
    melody: Sequence[Note], frames: Frames, tonic: int, minor: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(features ``(F, D)`` for the classifiers, emission counts ``(F, 12)`` for the HMM),
    pitch classes counted from ``tonic``.

    Features: the frame's sounding shares and attacks, the previous and next frame's
    shares, the shares of its bar, of the half of the bar it is in, of the bars before
    and after, of the :data:`CONTEXT_BEATS` beats around it and of the whole melody
    (each normalised to sum 1), its place in the bar (one-hot), whether the key is
    minor, whether the frame is silent, then the shares and attacks of the
    :data:`NEIGHBOURS`.
    """
    sounding, attack = frame_chroma(melody, frames.bounds)
    sounding = np.roll(sounding, -tonic, axis=1)
    attack = np.roll(attack, -tonic, axis=1)
    count = len(sounding)
    zero = np.zeros((1, 12))
    both = np.hstack([sounding, attack])
    neighbours = [_shifted(both, offset) for offset in NEIGHBOURS]
    bar_of = frames.bar
    bar_sum = _group_sums(sounding, bar_of)
    first_half = np.zeros(count, bool)
    for bar in np.unique(bar_of):
        members = np.flatnonzero(bar_of == bar)
        first_half[members[: max((len(members) + 1) // 2, 1)]] = True
    half_sum = _group_sums(sounding, bar_of * 2 + first_half)
    bars = int(bar_of.max()) + 1 if count else 0
    per_bar = np.zeros((bars + 2, 12))
    np.add.at(per_bar, bar_of + 1, sounding)
    window = np.cumsum(np.vstack([zero, sounding]), axis=0)
    low = np.clip(np.arange(count) - CONTEXT_BEATS // 2, 0, count)
    high = np.clip(np.arange(count) + CONTEXT_BEATS // 2 + 1, 0, count)
    context = window[high] - window[low]
    whole = np.repeat(sounding.sum(axis=0, keepdims=True), count, axis=0)
    shares = [bar_sum, half_sum, per_bar[bar_of], per_bar[bar_of + 2], context, whole]
    features = np.hstack(
        [sounding, attack, _shifted(sounding, -1), _shifted(sounding, 1)]
        + [_normalised(s) for s in shares]
        + [
            np.eye(len(POSITIONS))[frames.position],
            np.full((count, 1), float(minor)),
            (sounding.sum(axis=1, keepdims=True) == 0).astype(float),
        ]
        + neighbours
    )
    return features, sounding + attack


# --------------------------------------------------------------------------- decoding


def emission_scores(
    parameters: Mapping[str, Any], features: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Log score ``(F, S)`` of every state for every frame, before the transitions."""
    kind = str(parameters["kind"])
    if kind == "hmm":
        return float(parameters["scale"]) * (counts @ parameters["log_emission"])
    hidden = (features - parameters["feature_mean"]) / parameters["feature_std"]
    if kind == "mlp":
        hidden = np.maximum(hidden @ parameters["w0"] + parameters["b0"], 0.0)
    logits = hidden @ parameters["w_out"] + parameters["b_out"]
    logits -= logits.max(axis=1, keepdims=True)
    log_posterior = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(parameters["scale"]) * (
        log_posterior - float(parameters["prior_weight"]) * parameters["log_prior"]
    )


def transition_matrices(parameters: Mapping[str, Any]) -> np.ndarray:
    """Log transition matrices ``(positions, S, S)``, row = state before, column = after:
    hold with ``log_stay[position, before]``, else move to a state drawn from
    ``log_change[before]`` (which excludes holding)."""
    change, stay = parameters["log_change"], parameters["log_stay"]
    leave = np.log1p(-np.minimum(np.exp(stay), 1 - 1e-9))
    matrices = leave[:, :, None] + change[None].astype(np.float64)
    diagonal = np.arange(change.shape[0])
    matrices[:, diagonal, diagonal] = stay
    return matrices


def viterbi(
    scores: np.ndarray,
    transitions: np.ndarray,
    position: np.ndarray,
    frozen: np.ndarray,
    log_prior: np.ndarray,
) -> np.ndarray:
    """Most likely state path ``(F,)`` given per-frame scores ``(F, S)`` and log
    transitions ``(positions, S, S)``; a frame marked ``frozen`` keeps the state before it."""
    count, states = scores.shape
    best = log_prior + scores[0]
    back = np.zeros((count, states), np.int64)
    keep = np.arange(states)
    for f in range(1, count):
        if frozen[f]:
            back[f] = keep
            best = best + scores[f]
            continue
        candidates = best[:, None] + transitions[position[f]]
        back[f] = np.argmax(candidates, axis=0)
        best = candidates[back[f], keep] + scores[f]
    path = np.zeros(count, np.int64)
    path[-1] = int(np.argmax(best))
    for f in range(count - 1, 0, -1):
        path[f - 1] = back[f, path[f]]
    return path


class PreparedMelody(NamedTuple):
    """What the emissions read from a melody: its frames, features and HMM counts
    (:func:`frame_features`) and the relative-major ``tonic`` they are counted from."""

    frames: Frames
    features: np.ndarray
    counts: np.ndarray
    tonic: int


def prepare_melody(
    melody: Sequence[Note],
    bar_starts: Sequence[int],
    num_steps: int,
    tonic: tuple[int, bool] | None = None,
) -> PreparedMelody | None:
    """Frames and features of the notes sounding in ``[0, num_steps)``; ``None`` when there
    are none. ``tonic`` (relative-major tonic, minor), as :func:`melody_tonic` gives it,
    skips the key estimation."""
    num_steps = int(num_steps)
    inside = [n for n in melody if n.end > max(n.start, 0) and n.start < num_steps]
    if num_steps <= 0 or not inside:
        return None
    frames = melody_frames(inside, bar_starts, num_steps)
    key, minor = melody_tonic(inside) if tonic is None else tonic
    features, counts = frame_features(inside, frames, key, minor)
    return PreparedMelody(frames, features, counts, key)


def decode_path(
    prepared: PreparedMelody, scores: np.ndarray, parameters: Mapping[str, Any]
) -> np.ndarray:
    """Each frame's state ``(F,)``: the best path (:func:`viterbi`) through ``scores``
    ``(F, S)``, with bars where no melody sounds looping the progression around them
    (:func:`loop_silent_bars`)."""
    frames = prepared.frames
    path = viterbi(
        scores,
        _transitions(parameters),
        frames.position,
        frames.silent_bar,
        parameters["log_prior"],
    )
    return loop_silent_bars(path, frames)


def state_posteriors(
    prepared: PreparedMelody, scores: np.ndarray, parameters: Mapping[str, Any]
) -> np.ndarray:
    """Each frame's probability of each state given the whole melody, ``(F, S)``, rows
    summing to 1: the forward-backward sums over the paths :func:`viterbi` maximises
    over (same scores, transitions and frozen frames). Where the decoder is unsure
    (C major or A minor over C and E), the mass is shared."""
    transitions, frames = _transitions(parameters), prepared.frames
    forward, backward = np.zeros_like(scores), np.zeros_like(scores)
    forward[0] = parameters["log_prior"] + scores[0]
    for f in range(1, len(scores)):
        if frames.silent_bar[f]:  # frozen: the state before holds
            forward[f] = forward[f - 1] + scores[f]
        else:
            step = forward[f - 1][:, None] + transitions[frames.position[f]]
            forward[f] = np.logaddexp.reduce(step, axis=0) + scores[f]
    for f in range(len(scores) - 2, -1, -1):
        ahead = scores[f + 1] + backward[f + 1]
        if frames.silent_bar[f + 1]:
            backward[f] = ahead
        else:
            step = transitions[frames.position[f + 1]] + ahead[None, :]
            backward[f] = np.logaddexp.reduce(step, axis=1)
    joint = forward + backward
    return np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))


def decode(
    prepared: PreparedMelody, scores: np.ndarray, parameters: Mapping[str, Any]
) -> list[Span]:
    """Chord spans of the state path :func:`decode_path` gives: every frame gets a
    chord; consecutive frames with the same chord merge into one span."""
    frames = prepared.frames
    path = decode_path(prepared, scores, parameters)
    qualities = [str(q) for q in parameters["qualities"]]
    spans: list[Span] = []
    for (start, end), state in zip(frames.bounds, path):
        label = state_label(int(state), prepared.tonic, qualities)
        if spans and spans[-1].label == label:
            spans[-1] = spans[-1]._replace(end=int(end))
        else:
            spans.append(Span(int(start), int(end), label))
    return spans


def loop_silent_bars(path: np.ndarray, frames: Frames, period: int = LOOP_BARS) -> np.ndarray:
    """``path`` ``(F,)`` with the states of melody-less bars replaced: a run of silent bars
    after the first sounding one loops the ``period`` bars before it (fewer when fewer
    come after the first sounding bar), frame by frame; silent bars before it (an
    intro) take those of the bar ``period`` bars after them. A bar shorter than its
    source takes the source's first frames; a longer one repeats the source's last."""
    bar_frames = [np.flatnonzero(frames.bar == b) for b in range(int(frames.bar.max()) + 1)]
    silent = np.array([len(f) > 0 and bool(frames.silent_bar[f[0]]) for f in bar_frames])
    sounding = np.flatnonzero(~silent & np.array([len(f) > 0 for f in bar_frames]))
    if len(sounding) == 0:
        return path
    path = path.copy()

    def copy(bar: int, source: int) -> None:
        source_frames = bar_frames[source]
        for k, frame in enumerate(bar_frames[bar]):
            path[frame] = path[source_frames[min(k, len(source_frames) - 1)]]

    first, run = int(sounding[0]), period
    for bar in range(first + 1, len(bar_frames)):  # in order: a filled bar can be a source
        if silent[bar] and not silent[bar - 1]:  # a silent run begins: what can it loop?
            run = min(period, bar - first)
        if silent[bar]:
            copy(bar, bar - run)
    for bar in range(first - 1, -1, -1):  # backwards: the intro repeats what follows it
        copy(bar, min(bar + period, len(bar_frames) - 1))
    return path


def harmonise(
    melody: Sequence[Note],
    bar_starts: Sequence[int],
    num_steps: int,
    parameters: Mapping[str, Any],
    tonic: tuple[int, bool] | None = None,
) -> list[Span]:
    """Chord spans for a melody with the given parameters (see the module doc), from
    step 0 to ``num_steps`` (:func:`prepare_melody`, :func:`emission_scores`,
    :func:`decode`). An empty melody, or one with no note inside ``[0, num_steps)``,
    gives no spans."""
    prepared = prepare_melody(melody, bar_starts, num_steps, tonic)
    if prepared is None:
        return []
    return decode(
        prepared, emission_scores(parameters, prepared.features, prepared.counts), parameters
    )


def _transitions(parameters: Mapping[str, Any]) -> np.ndarray:
    """:func:`transition_matrices`, kept with the parameters after the first call."""
    cached = parameters.get("_transitions") if isinstance(parameters, dict) else None
    if cached is None:
        cached = transition_matrices(parameters)
        if isinstance(parameters, dict):
            parameters["_transitions"] = cached
    return cached


# --------------------------------------------------------------------------- parameters


def read_parameters(path: str | Path) -> dict[str, Any]:
    """Parameters from a file written by :func:`pianoacc_utils.harmony.fitting.save_parameters`,
    as float64 arrays."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            parameters = {
                name: (
                    stored[name].astype(np.float64)
                    if stored[name].dtype.kind == "f"
                    else stored[name]
                )
                for name in stored.files
            }
    except (OSError, ValueError) as error:
        raise PianoaccError(f"{path}: cannot read harmonisation parameters ({error})") from error
    missing = {"kind", "qualities", "log_change", "log_stay", "log_prior"} - set(parameters)
    if missing:
        raise PianoaccError(f"{path}: not harmonisation parameters (missing {sorted(missing)})")
    if "quality_tones" in parameters:
        remember_chord_tones(vocabulary_tones(parameters))
    return parameters


def vocabulary_tones(parameters: Mapping[str, Any]) -> dict[str, tuple[frozenset[int], int]]:
    """Pitch classes and bass of every label the parameters' states can have
    (:func:`state_label`), from the chord shapes stored with them."""
    qualities = [str(q) for q in parameters["qualities"]]
    tones: dict[str, tuple[frozenset[int], int]] = {}
    for index, quality in enumerate(qualities):
        intervals = np.flatnonzero(parameters["quality_tones"][index])
        bass = int(parameters["quality_bass"][index])
        for root in range(12):
            pitch_classes = frozenset(int((root + i) % 12) for i in intervals)
            tones[f"{PITCH_NAMES[root]}:{quality}"] = (pitch_classes, (root + bass) % 12)
    return tones


@functools.lru_cache(maxsize=None)
def load_parameters(path: str | None = None) -> dict[str, Any]:
    """The parameters at ``path`` (default: the shipped :data:`PARAMETERS_FILE`), read once."""
    if path is None:
        root = project_root()
        if root is None:
            raise PianoaccError(
                f"the harmonisation parameters live in the checkout's {PARAMETERS_FILE}"
            )
        path = str(root / PARAMETERS_FILE)
    return read_parameters(path)


def learned_chords(melody: Sequence[Note], bar_starts: Sequence[int], num_steps: int) -> list[Span]:
    """Chords for a melody alone with the shipped parameters: spans in grid steps with
    POP909 labels (``"A:min7"``, ``"G:maj/3"``), sorted, not overlapping, within
    ``[0, num_steps]``; ``[]`` for an empty melody. The same call as
    :func:`pianoacc_utils.harmony.estimate_chords`."""
    return harmonise(melody, bar_starts, num_steps, load_parameters())
