"""Fitting the learned harmonisation (:mod:`pianoacc_utils.harmony.learned`) to songs
with annotated chords (POP909's training split).

Annotated labels become states (:func:`label_state`): their quality is reduced to the
nearest of the vocabulary on the same root (:func:`nearest_quality`).

:func:`choose_vocabulary` picks the chord qualities from the annotation's frequencies;
:func:`training_data` reads every song into frames (features, HMM counts, the
annotated state of each frame, the frame's place in the bar); :func:`fit_harmoniser`
fits the transitions (counted) and the emissions of one kind: ``"hmm"`` (per-state
pitch-class distributions, counted), ``"softmax"`` (softmax regression) or ``"mlp"``
(one hidden layer), the last two trained by gradient descent (Adam) on the frames'
cross-entropy. Everything is numpy and seeded, so a fit is repeatable.
"""

from __future__ import annotations

import functools
import io
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError, write_atomic
from pianoacc_utils.data.notes import Note, Span
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.harmony.chords import chord_tones
from pianoacc_utils.harmony.learned import POSITIONS, frame_features, melody_frames, melody_tonic

VOCABULARY_COVERAGE = 0.98
"""Share of the annotated chord beats (``N`` aside) that the vocabulary's qualities
cover as annotated, before the rarer qualities are reduced to their nearest."""

STAY_SMOOTHING = 20.0
"""Pseudo-count pulling a state's holding probability towards that of all states."""

CHANGE_SMOOTHING = 5.0
"""Pseudo-count pulling a state's next-chord distribution towards the overall one."""

EMISSION_SMOOTHING = 10.0
"""Pseudo-count pulling a state's pitch-class distribution (HMM) towards its quality's."""


# --------------------------------------------------------------------------- vocabulary


@functools.lru_cache(maxsize=None)
def quality_shape(quality: str) -> tuple[frozenset[int], int]:
    """Intervals above the root (semitones) and the bass interval of a chord quality
    (``"maj/5"`` -> ({0, 4, 7}, 7))."""
    tones = chord_tones(f"C:{quality}")
    if tones is None:
        raise PianoaccError(f"chord quality {quality!r}: not a chord")
    return tones


def split_label(label: str) -> tuple[int, str] | None:
    """``"Bb:min7/b7"`` -> (root pitch class 10, quality ``"min7/b7"``); ``None`` for no
    chord (``"N"``, ``"X"``). The label must parse with :func:`chord_tones`."""
    import mir_eval

    if chord_tones(label) is None:
        return None
    root, _, quality = label.partition(":")
    return mir_eval.chord.pitch_class_to_semitone(root) % 12, quality or "maj"


def nearest_quality(quality: str, qualities: Sequence[str]) -> int:
    """Index of the vocabulary quality closest to ``quality`` on the same root: the most
    shared intervals (Jaccard overlap), then the same bass; a quality in the
    vocabulary maps to itself (``"maj6"`` -> ``"maj"``, ``"9"`` -> ``"7"``)."""
    if quality in qualities:
        return list(qualities).index(quality)
    tones, bass = quality_shape(quality)
    scores = []
    for other in qualities:
        other_tones, other_bass = quality_shape(other)
        overlap = len(tones & other_tones) / len(tones | other_tones)
        scores.append(overlap + 0.2 * (bass == other_bass))
    return int(np.argmax(scores))


def label_state(label: str, tonic: int, qualities: Sequence[str]) -> int:
    """State of a chord label relative to ``tonic`` (its quality reduced to the
    vocabulary by :func:`nearest_quality`); -1 for no chord."""
    parsed = split_label(label)
    if parsed is None:
        return -1
    root, quality = parsed
    return nearest_quality(quality, qualities) * 12 + (root - tonic) % 12


# --------------------------------------------------------------------------- training data


class HarmonyExample(NamedTuple):
    """A melody with its bars and annotated chords, all in grid steps."""

    melody: Sequence[Note]
    bar_starts: Sequence[int]
    num_steps: int
    chords: Sequence[Span]


class TrainingData(NamedTuple):
    """Frames of many songs, stacked: ``features`` ``(N, D)``, ``counts`` ``(N, 12)``,
    ``states`` ``(N,)`` (-1: no annotated chord), ``position`` ``(N,)``, ``song`` ``(N,)``."""

    features: np.ndarray
    counts: np.ndarray
    states: np.ndarray
    position: np.ndarray
    song: np.ndarray


def choose_vocabulary(
    examples: Sequence[HarmonyExample], coverage: float = VOCABULARY_COVERAGE
) -> tuple[str, ...]:
    """The most frequent chord qualities (by annotated beats), as few as cover
    ``coverage`` of the beats that have a chord, most frequent first."""
    beats: Counter[str] = Counter()
    for example in examples:
        for chord in example.chords:
            parsed = split_label(chord.label)
            if parsed is not None:
                beats[parsed[1]] += (chord.end - chord.start) / STEPS_PER_BEAT
    total = sum(beats.values())
    if total <= 0:
        raise PianoaccError("no annotated chord to choose a vocabulary from")
    chosen, covered = [], 0.0
    for quality, count in beats.most_common():
        chosen.append(quality)
        covered += count
        if covered >= coverage * total:
            break
    return tuple(chosen)


def quality_beats(examples: Sequence[HarmonyExample]) -> dict[str, float]:
    """Annotated beats of every chord quality (``N`` included), for reports."""
    beats: Counter[str] = Counter()
    for example in examples:
        for chord in example.chords:
            parsed = split_label(chord.label)
            name = "N" if parsed is None else parsed[1]
            beats[name] += (chord.end - chord.start) / STEPS_PER_BEAT
    return dict(beats.most_common())


def frame_states(
    chords: Sequence[Span], bounds: np.ndarray, tonic: int, qualities: Sequence[str]
) -> np.ndarray:
    """State of the chord sounding longest in each frame (the earlier on a tie), -1 where
    none sounds or the annotation says ``N``."""
    states = np.full(len(bounds), -1, np.int64)
    longest = np.zeros(len(bounds))
    for chord in chords:
        state = label_state(chord.label, tonic, qualities)
        overlap = np.minimum(bounds[:, 1], chord.end) - np.maximum(bounds[:, 0], chord.start)
        better = overlap > longest
        states[better] = state
        longest[better] = overlap[better]
    return states


def training_data(
    examples: Sequence[HarmonyExample],
    qualities: Sequence[str],
    tonics: Sequence[tuple[int, bool]] | None = None,
) -> TrainingData:
    """Frames of every example (see :class:`TrainingData`); ``tonics`` (one per example,
    as :func:`melody_tonic` gives) saves estimating the keys again."""
    parts: list[tuple[np.ndarray, ...]] = []
    for index, example in enumerate(examples):
        if not example.melody or example.num_steps <= 0:
            continue
        frames = melody_frames(example.melody, example.bar_starts, example.num_steps)
        tonic, minor = melody_tonic(example.melody) if tonics is None else tonics[index]
        features, counts = frame_features(example.melody, frames, tonic, minor)
        states = frame_states(example.chords, frames.bounds, tonic, qualities)
        parts.append((features, counts, states, frames.position, np.full(len(states), index)))
    if not parts:
        raise PianoaccError("no example with a melody to learn harmonisation from")
    return TrainingData(*(np.concatenate(column) for column in zip(*parts)))


def fit_transitions(data: TrainingData, num_states: int) -> dict[str, np.ndarray]:
    """Counted transitions between the annotated states of consecutive frames of a song:
    ``log_stay`` ``(positions, S)``, ``log_change`` ``(S, S)`` (``-inf`` diagonal) and
    the states' frame frequencies ``log_prior`` ``(S,)``, all smoothed."""
    before, after = data.states[:-1], data.states[1:]
    valid = (data.song[:-1] == data.song[1:]) & (before >= 0) & (after >= 0)
    before, after, position = before[valid], after[valid], data.position[1:][valid]
    stay_counts = np.zeros((len(POSITIONS), num_states))
    all_counts = np.zeros((len(POSITIONS), num_states))
    np.add.at(all_counts, (position, before), 1.0)
    np.add.at(stay_counts, (position[before == after], before[before == after]), 1.0)
    pooled = (stay_counts.sum(axis=1, keepdims=True) + 1.0) / (
        all_counts.sum(axis=1, keepdims=True) + 2.0
    )
    stay = (stay_counts + STAY_SMOOTHING * pooled) / (all_counts + STAY_SMOOTHING)
    moves = np.zeros((num_states, num_states))
    np.add.at(moves, (before[before != after], after[before != after]), 1.0)
    target = moves.sum(axis=0) + 1.0
    target /= target.sum()
    change = moves + CHANGE_SMOOTHING * target[None]
    np.fill_diagonal(change, 0.0)
    change /= change.sum(axis=1, keepdims=True)
    frequency = np.bincount(data.states[data.states >= 0], minlength=num_states) + 1.0
    with np.errstate(divide="ignore"):
        return {
            "log_stay": np.log(stay),
            "log_change": np.log(change),
            "log_prior": np.log(frequency / frequency.sum()),
        }


def fit_hmm_emissions(data: TrainingData, qualities: Sequence[str]) -> np.ndarray:
    """``log_emission`` ``(12, S)``: log probability of each key-relative pitch class in a
    frame of each state (counts of :func:`frame_features`), smoothed towards the
    distribution of the state's quality around its root."""
    num_states = 12 * len(qualities)
    labelled = data.states >= 0
    per_state = np.zeros((num_states, 12))
    np.add.at(per_state, data.states[labelled], data.counts[labelled])
    roots = np.arange(num_states) % 12
    around_root = np.stack([np.roll(per_state[s], -roots[s]) for s in range(num_states)])
    per_quality = around_root.reshape(len(qualities), 12, 12).sum(axis=1) + 1.0
    per_quality /= per_quality.sum(axis=1, keepdims=True)
    backoff = np.stack([np.roll(per_quality[s // 12], roots[s]) for s in range(num_states)])
    totals = per_state.sum(axis=1, keepdims=True)
    emission = (per_state + EMISSION_SMOOTHING * backoff) / (totals + EMISSION_SMOOTHING)
    return np.log(emission).T


def fit_classifier(
    data: TrainingData,
    num_states: int,
    hidden: int = 0,
    epochs: int = 6,
    batch: int = 512,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Softmax regression (``hidden = 0``) or a one-hidden-layer ReLU network from the
    standardised features to the annotated state, trained with Adam on minibatches;
    frames without an annotated chord are left out."""
    rng = np.random.default_rng(seed)
    labelled = data.states >= 0
    x = data.features[labelled].astype(np.float32)
    y = data.states[labelled]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    x = (x - mean) / std
    width = x.shape[1]
    shapes: dict[str, tuple[int, ...]] = {}
    if hidden:
        shapes.update(w0=(width, hidden), b0=(hidden,))
        width = hidden
    shapes.update(w_out=(width, num_states), b_out=(num_states,))
    weights = {
        name: (
            rng.normal(0, np.sqrt(2.0 / shape[0]), shape) if len(shape) == 2 else np.zeros(shape)
        ).astype(np.float32)
        for name, shape in shapes.items()
    }
    moments = {name: [np.zeros_like(w), np.zeros_like(w)] for name, w in weights.items()}
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        rate = learning_rate * (0.5 ** max(epoch - epochs // 2, 0))
        total = 0.0
        for first in range(0, len(order), batch):
            rows = order[first : first + batch]
            grads, loss = _gradients(weights, x[rows], y[rows], hidden > 0)
            total += loss * len(rows)
            step += 1
            for name, grad in grads.items():
                grad = grad + weight_decay * weights[name] if grad.ndim == 2 else grad
                m, v = moments[name]
                m *= 0.9
                m += 0.1 * grad
                v *= 0.999
                v += 0.001 * grad * grad
                corrected = rate * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
                weights[name] -= corrected * m / (np.sqrt(v) + 1e-8)
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: cross-entropy {total / len(x):.4f}", flush=True)
    return {"feature_mean": mean, "feature_std": std, **weights}


def _gradients(
    weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, has_hidden: bool
) -> tuple[dict[str, np.ndarray], float]:
    """Gradients of the mean cross-entropy of a minibatch, and that mean."""
    grads: dict[str, np.ndarray] = {}
    inputs = x
    if has_hidden:
        pre = x @ weights["w0"] + weights["b0"]
        inputs = np.maximum(pre, 0.0)
    logits = inputs @ weights["w_out"] + weights["b_out"]
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(-np.log(probabilities[rows, y] + 1e-12).mean())
    delta = probabilities
    delta[rows, y] -= 1.0
    delta /= len(y)
    grads["w_out"] = inputs.T @ delta
    grads["b_out"] = delta.sum(axis=0)
    if has_hidden:
        back = (delta @ weights["w_out"].T) * (pre > 0)
        grads["w0"] = x.T @ back
        grads["b0"] = back.sum(axis=0)
    return grads, loss


def fit_harmoniser(
    data: TrainingData,
    qualities: Sequence[str],
    kind: str,
    scale: float = 1.0,
    prior_weight: float = 1.0,
    **classifier: Any,
) -> dict[str, Any]:
    """Parameters of one kind (``"hmm"``, ``"softmax"``, ``"mlp"``) for
    :func:`pianoacc_utils.harmony.learned.harmonise`, fitted on ``data``.
    ``scale`` weighs the emissions against the transitions; ``prior_weight`` is how much
    of the states' prior a classifier's posterior is divided by. ``classifier`` goes to
    :func:`fit_classifier` (``hidden`` defaults to 128 for ``"mlp"``)."""
    if kind not in ("hmm", "softmax", "mlp"):
        raise PianoaccError(f"harmoniser kind {kind!r}: expected hmm, softmax or mlp")
    num_states = 12 * len(qualities)
    parameters: dict[str, Any] = {
        "kind": np.array(kind),
        "qualities": np.array(list(qualities)),
        "scale": np.array(scale),
        "prior_weight": np.array(prior_weight),
        **fit_transitions(data, num_states),
        **quality_tables(qualities),
    }
    if kind == "hmm":
        parameters["log_emission"] = fit_hmm_emissions(data, qualities)
    else:
        hidden = classifier.pop("hidden", 128 if kind == "mlp" else 0)
        parameters.update(
            fit_classifier(data, num_states, hidden=hidden if kind == "mlp" else 0, **classifier)
        )
    return parameters


def quality_tables(qualities: Sequence[str]) -> dict[str, np.ndarray]:
    """The vocabulary's chord shapes as parsed now (:func:`quality_shape`), kept with
    the parameters: ``quality_tones`` ``(Q, 12)`` 1 for each interval above the root,
    ``quality_bass`` ``(Q,)`` the bass interval
    (see :func:`pianoacc_utils.harmony.learned.read_parameters`)."""
    tones = np.zeros((len(qualities), 12), np.int8)
    for row, quality in enumerate(qualities):
        tones[row, sorted(quality_shape(quality)[0])] = 1
    bass = np.array([quality_shape(quality)[1] for quality in qualities], np.int8)
    return {"quality_tones": tones, "quality_bass": bass}


def save_parameters(path: str | Path, parameters: Mapping[str, Any]) -> None:
    """Write parameters as a compressed ``.npz``, atomically; matrices (weights, log
    probabilities) as float16, which halves the file and changes no decision that
    matters, other numbers as float32."""
    arrays = {
        name: (
            np.asarray(value, np.float16 if np.ndim(value) == 2 else np.float32)
            if np.asarray(value).dtype.kind == "f"
            else np.asarray(value)
        )
        for name, value in parameters.items()
        if not name.startswith("_")
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(Path(path), buffer.getvalue())
