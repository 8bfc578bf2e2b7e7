"""A critic: can a trained classifier tell a system's accompaniment from the pianist's?

Metrics check one property at a time; a listener hears them all at once. A *classifier
two-sample test* asks the listener's question directly: cut the pianist's and a system's
accompaniment of the same melodies into the same two-bar windows
(:mod:`~pianoacc_utils.generation.critic_features`), train a classifier to say which is
which, and measure its accuracy on songs it never saw. 0.5 means the two cannot be told
apart (by this classifier, from these windows); 1.0 means every window gives the system
away.

Three critics, the strongest counting (:func:`two_sample_test`):

* ``boosted_trees`` and ``logistic``: gradient-boosted trees and a logistic regression
  over the named features of :func:`~pianoacc_utils.generation.critic_features.window_features`;
* ``convolutional``: a small convolutional network over the windows' piano rolls, the
  melody beside the accompaniment
  (:func:`~pianoacc_utils.evaluation.critic_network.roll_critic_model`), which finds its
  own features.

Folds are grouped by song (no song is in a fold's training and test windows), so a
critic cannot win by recognising a song. The interval of an accuracy comes from
resampling *songs* (a song's windows are alike, so windows are not independent draws).
:func:`critic_report` runs the test for every system and for controls that show the
critic's range: the pianist against the pianist, the pianist jittered by a sixteenth,
another song's pianist under the melody, and block chords. ``docs/metrics.md`` says
what the critic can and cannot hear.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import Note, normalize_notes
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.generation.critic_features import (
    CRITIC_BARS,
    SIXTEENTH_STEPS,
    CriticWindow,
    critic_windows,
    feature_matrix,
    feature_names,
    feature_unit,
    roll_tensor,
)
from pianoacc_utils.evaluation.critic_network import RollCritic
from pianoacc_utils.harmony.learned import key_tonic, melody_tonic

CRITICS = ("boosted_trees", "logistic", "convolutional")
"""The critics of :func:`two_sample_test`, in report order."""

CONTROLS = {
    "ground_truth": "the pianist against the pianist: each song's windows in two random halves",
    "pianist_jittered": "the pianist with every note moved a sixteenth early or late at random",
    "other_song": "the pianist of another song under this melody",
    "block_chords": "a block chord on every beat of the annotated chords",
}
"""Comparisons that show the critic's range (expected accuracy: about 0.5 for the first,
near 1 for block chords), by name: what stands against the pianist."""


@dataclass(frozen=True)
class CriticConfig:
    """How the critic is trained and reported.

    ``bars``: bars per window; ``folds``: cross-validation folds grouped by song (fewer
    when fewer songs); ``seed``: every random choice (control halves, jitter, network
    initialisation and batch order); ``resamples``: song resamples of the bootstrap
    interval (95%); ``learned``: also train the convolutional critic, ``epochs`` passes
    of ``batch_size`` windows per fold over at most ``learned_windows`` training windows
    (which bounds its time: a few seconds per fold on two cores); ``top_features``:
    features reported per comparison, those with an AUC furthest from 0.5.
    """

    bars: int = CRITIC_BARS
    folds: int = 5
    seed: int = 0
    resamples: int = 1000
    learned: bool = True
    epochs: int = 5
    batch_size: int = 128
    learned_windows: int = 1200
    top_features: int = 8


@dataclass(frozen=True)
class CriticPiece:
    """A melody with the pianist's accompaniment: a segment or a whole song. ``tonic``: the
    key's tonic pitch class (relative major for a minor key); times in grid steps."""

    song_id: str
    melody: list[Note]
    pianist: list[Note]
    bar_starts: list[int]
    num_steps: int
    tonic: int


def segment_piece(seg: Segment) -> CriticPiece:
    """A segment as a :class:`CriticPiece`: its annotated key moved by its ``transpose``
    (the key estimated from the melody when the song has none)."""
    known = key_tonic(seg.key)
    tonic = (known[0] + seg.transpose) % 12 if known else melody_tonic(seg.melody)[0]
    return CriticPiece(
        seg.song_id, list(seg.melody), list(seg.accompaniment), list(seg.bar_starts),
        seg.num_steps, tonic,
    )


# --------------------------------------------------------------------------- the test


def grouped_folds(groups: Sequence[str], folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) window indices of cross-validation folds that keep each group (song)
    on one side: scikit-learn's ``GroupKFold`` with ``min(folds, groups)`` folds."""
    from sklearn.model_selection import GroupKFold

    labels = np.asarray(groups)
    count = len(np.unique(labels))
    if count < 2:
        raise PianoaccError(f"the critic needs windows of at least 2 songs, got {count}")
    splitter = GroupKFold(n_splits=min(folds, count))
    return list(splitter.split(np.zeros(len(labels)), groups=labels))


def song_bootstrap_ci(
    correct: np.ndarray, groups: Sequence[str], resamples: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy, resampling songs with replacement.

    ``correct`` holds 1/0 per window, ``groups`` its song. Each resample draws as many
    songs as there are, with replacement, and pools their windows. Resampling songs rather
    than windows keeps the interval honest when a song's windows are alike.
    """
    labels = np.asarray(groups)
    songs, index = np.unique(labels, return_inverse=True)
    hits = np.bincount(index, weights=correct, minlength=len(songs))
    sizes = np.bincount(index, minlength=len(songs)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(songs), size=(resamples, len(songs)))
    accuracies = hits[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(accuracies, [tail, 100 - tail])
    return float(low), float(high)


def feature_aucs(features_a: np.ndarray, features_b: np.ndarray) -> list[dict[str, Any]]:
    """Each feature's power to tell ``b`` (a system) from ``a`` (the pianist) on its own.

    Per feature of :func:`~pianoacc_utils.generation.critic_features.feature_names`: the
    ROC AUC of the feature's value as a score for "``b``" over the windows where it is
    defined (above 0.5: higher in ``b``; 1 or 0: it alone separates them), the means of
    ``a`` and ``b`` and the unit; sorted from the AUC furthest from 0.5.
    """
    from sklearn.metrics import roc_auc_score

    rows = []
    for k, name in enumerate(feature_names()):
        a, b = features_a[:, k], features_b[:, k]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) == 0 or len(b) == 0:
            continue
        scores = np.concatenate([a, b])
        auc = roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], scores)
        rows.append({
            "feature": name, "auc": float(auc), "pianist_mean": float(a.mean()),
            "system_mean": float(b.mean()), "unit": feature_unit(name),
        })
    return sorted(rows, key=lambda row: -abs(row["auc"] - 0.5))


def _feature_critics(seed: int) -> dict[str, Any]:
    """The two critics over named features (scikit-learn estimators, unfitted)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "boosted_trees": HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=15, early_stopping=False,
            random_state=seed,
        ),
        "logistic": make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
            LogisticRegression(C=1.0, max_iter=2000),
        ),
    }


def two_sample_test(
    features_a: np.ndarray,
    features_b: np.ndarray,
    groups_a: Sequence[str],
    groups_b: Sequence[str],
    config: CriticConfig = CriticConfig(),
    rolls_a: np.ndarray | None = None,
    rolls_b: np.ndarray | None = None,
    roll_critic: RollCritic | None = None,
) -> dict[str, Any]:
    """Classifier two-sample test of windows ``a`` (the pianist) against windows ``b``.

    Every critic is trained on the windows of the training songs of each fold
    (:func:`grouped_folds`) and predicts the windows of the held-out songs; its accuracy
    is the share of held-out windows it labels right, with a 95% interval from
    :func:`song_bootstrap_ci`. With ``rolls_a``/``rolls_b`` (piano rolls of the same
    windows) and a ``roll_critic``, the convolutional critic joins the two feature critics.
    Returns ``critics`` (per critic: ``accuracy``, ``accuracy_lo``, ``accuracy_hi``),
    ``critic`` (the most accurate one), its ``accuracy`` and interval, ``windows`` ([a, b]),
    ``songs``, ``folds`` and ``features`` (:func:`feature_aucs`, the first
    ``config.top_features``).
    """
    features = np.concatenate([features_a, features_b])
    labels = np.r_[np.zeros(len(features_a)), np.ones(len(features_b))].astype(np.int64)
    groups = np.concatenate([np.asarray(groups_a, dtype=str), np.asarray(groups_b, dtype=str)])
    folds = grouped_folds(groups, config.folds)
    predictions = {name: np.full(len(labels), -1) for name in CRITICS}
    critics = _feature_critics(config.seed)
    rolls = None
    if rolls_a is not None and rolls_b is not None and roll_critic is not None:
        rolls = np.concatenate([rolls_a, rolls_b])
    for fold, (train, test) in enumerate(folds):
        # a feature undefined in every training window (no chord struck: no voicing
        # interval) tells nothing, and the trees cannot bin it
        usable = np.isfinite(features[train]).any(axis=0)
        for name, critic in critics.items():
            critic.fit(features[train][:, usable], labels[train])
            predictions[name][test] = critic.predict(features[test][:, usable])
        if rolls is not None:
            predictions["convolutional"][test] = roll_critic.fold_predictions(
                rolls, labels, train, test, seed=config.seed + fold
            )
    result: dict[str, Any] = {"critics": {}}
    for name, predicted in predictions.items():
        if np.any(predicted < 0):
            continue
        correct = (predicted == labels).astype(np.float64)
        low, high = song_bootstrap_ci(correct, groups, config.resamples, config.seed)
        result["critics"][name] = {
            "accuracy": float(correct.mean()), "accuracy_lo": low, "accuracy_hi": high,
        }
    best = max(result["critics"], key=lambda name: result["critics"][name]["accuracy"])
    result.update(
        critic=best,
        **result["critics"][best],
        windows=[len(features_a), len(features_b)],
        songs=int(len(np.unique(groups))),
        folds=len(folds),
        features=feature_aucs(features_a, features_b)[: config.top_features],
    )
    return result


# --------------------------------------------------------------------------- systems and controls


def jittered(
    notes: Sequence[Note], rng: np.random.Generator, steps: int = SIXTEENTH_STEPS
) -> list[Note]:
    """Every note moved ``steps`` grid steps (a sixteenth) early or late at random, its
    length kept; a note that would start before step 0 starts there."""
    shifts = rng.choice([-steps, steps], size=len(notes))
    return normalize_notes(
        [n._replace(start=max(n.start + int(d), 0), end=max(n.end + int(d), 1))
         for n, d in zip(notes, shifts)]
    )


def other_song_pianist(pieces: Sequence[CriticPiece]) -> list[list[Note]]:
    """For each piece, the pianist of the next piece from another song (cyclically), cut to
    the piece's length: a real accompaniment that does not belong to the melody."""
    chosen = []
    for i, piece in enumerate(pieces):
        others = [pieces[(i + k) % len(pieces)] for k in range(1, len(pieces))]
        other = next((p for p in others if p.song_id != piece.song_id), None)
        if other is None:
            raise PianoaccError("the other-song control needs pieces of at least 2 songs")
        chosen.append(
            [n._replace(end=min(n.end, piece.num_steps)) for n in other.pianist
             if n.start < piece.num_steps]
        )
    return chosen


def piece_windows(
    pieces: Sequence[CriticPiece], accompaniments: Sequence[Sequence[Note]], bars: int
) -> tuple[list[CriticWindow], list[str]]:
    """The critic's windows (:func:`~pianoacc_utils.generation.critic_features.critic_windows`)
    of every piece with its accompaniment in ``accompaniments``, and each window's song."""
    if len(accompaniments) != len(pieces):
        raise PianoaccError(f"{len(accompaniments)} accompaniments for {len(pieces)} pieces")
    windows, groups = [], []
    for piece, notes in zip(pieces, accompaniments):
        cut = critic_windows(
            piece.melody, notes, piece.bar_starts, piece.num_steps, bars, piece.tonic
        )
        windows += cut
        groups += [piece.song_id] * len(cut)
    return windows, groups


def critic_report(
    pieces: Sequence[CriticPiece],
    systems: Mapping[str, Sequence[Sequence[Note]]],
    controls: Mapping[str, Sequence[Sequence[Note]]] | None = None,
    config: CriticConfig = CriticConfig(),
) -> dict[str, Any]:
    """The pianist against each system, and against the controls, as one JSON-ready dict.

    ``systems`` maps a name to one accompaniment per piece (grid steps of the piece);
    ``controls`` adds comparisons that show the critic's range (``block_chords``, say),
    to which the report adds three of its own: ``ground_truth`` (the pianist's windows of
    each song split into two random halves), ``pianist_jittered`` and ``other_song``
    (:data:`CONTROLS`). Returns ``systems`` and ``controls`` (name -> :func:`two_sample_test`),
    ``settings`` (the configuration, the feature names and the descriptions of the
    controls) and ``seconds`` (the time it took).

    scikit-learn runs on one thread here: its threads wait for each other, and on a
    machine whose cores are busy that made a fit some thirty times slower.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _critic_report(pieces, systems, controls, config)


def _critic_report(
    pieces: Sequence[CriticPiece],
    systems: Mapping[str, Sequence[Sequence[Note]]],
    controls: Mapping[str, Sequence[Sequence[Note]]] | None,
    config: CriticConfig,
) -> dict[str, Any]:
    """:func:`critic_report`, with the thread limits set."""
    import time

    began = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    pianist, groups = piece_windows(pieces, [p.pianist for p in pieces], config.bars)
    if not pianist:
        raise PianoaccError("the critic found no window in which the melody sounds")
    pianist_features = feature_matrix(pianist)
    roll_critic = None
    if config.learned:
        roll_critic = RollCritic(
            config.seed, config.epochs, config.batch_size, config.learned_windows
        )
    pianist_rolls = roll_tensor(pianist) if config.learned else None

    def against_pianist(accompaniments: Sequence[Sequence[Note]]) -> dict[str, Any]:
        windows, other_groups = piece_windows(pieces, accompaniments, config.bars)
        rolls = roll_tensor(windows) if config.learned else None
        return two_sample_test(
            pianist_features, feature_matrix(windows), groups, other_groups, config,
            pianist_rolls, rolls, roll_critic,
        )

    report: dict[str, Any] = {"systems": {}, "controls": {}}
    for name, accompaniments in systems.items():
        report["systems"][name] = against_pianist(accompaniments)
    half = np.zeros(len(pianist), dtype=bool)
    for song in dict.fromkeys(groups):
        members = np.flatnonzero(np.asarray(groups) == song)
        half[rng.permutation(members)[: len(members) // 2]] = True
    halves = [np.flatnonzero(~half), np.flatnonzero(half)]
    report["controls"]["ground_truth"] = two_sample_test(
        pianist_features[halves[0]], pianist_features[halves[1]],
        [groups[i] for i in halves[0]], [groups[i] for i in halves[1]], config,
        None if pianist_rolls is None else pianist_rolls[halves[0]],
        None if pianist_rolls is None else pianist_rolls[halves[1]], roll_critic,
    )
    moved = [jittered(p.pianist, rng) for p in pieces]
    report["controls"]["pianist_jittered"] = against_pianist(moved)
    report["controls"]["other_song"] = against_pianist(other_song_pianist(pieces))
    for name, accompaniments in (controls or {}).items():
        report["controls"][name] = against_pianist(accompaniments)
    report["settings"] = {
        "config": asdict(config),
        "pieces": len(pieces),
        "features": feature_names(),
        "controls": {name: CONTROLS.get(name, name) for name in report["controls"]},
    }
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


# --------------------------------------------------------------------------- tables


def accuracy_cell(row: Mapping[str, Any] | None) -> str:
    """"0.82 [0.78, 0.86]" for a comparison (or a critic's row); "n/a" for none."""
    if not row or row.get("accuracy") is None or not math.isfinite(row["accuracy"]):
        return "n/a"
    return f"{row['accuracy']:.2f} [{row['accuracy_lo']:.2f}, {row['accuracy_hi']:.2f}]"


def critic_markdown(report: Mapping[str, Any], features_of: Sequence[str] | None = None) -> str:
    """Tables of a :func:`critic_report`: every comparison's accuracy (the strongest
    critic, with its 95% interval over songs, and each critic), then per comparison (or
    per comparison named in ``features_of``) the features that give it away most (AUC,
    the pianist's and the system's means)."""
    lines = [
        "| against the pianist | critic accuracy [95% CI] | critic | "
        + " | ".join(CRITICS) + " | windows | songs |",
        "|---|---|---|" + "---|" * len(CRITICS) + "---|---|",
    ]
    rows = [*report["systems"].items(), *report["controls"].items()]
    for name, row in rows:
        kind = " (control)" if name in report["controls"] else ""
        cells = [accuracy_cell(row["critics"].get(critic)) for critic in CRITICS]
        lines.append(
            f"| {name}{kind} | {accuracy_cell(row)} | {row['critic']} | " + " | ".join(cells)
            + f" | {row['windows'][1]} | {row['songs']} |"
        )
    lines += ["", "Controls: " + "; ".join(
        f"*{name}*: {text}" for name, text in report["settings"]["controls"].items()) + ".", ""]
    for name, row in rows:
        if features_of is not None and name not in features_of:
            continue
        lines += [
            f"| what gives *{name}* away | AUC | pianist mean | {name} mean | unit |",
            "|---|---|---|---|---|",
        ]
        for feature in row["features"]:
            lines.append(
                f"| {feature['feature']} | {feature['auc']:.2f} | {feature['pianist_mean']:.3g} "
                f"| {feature['system_mean']:.3g} | {feature['unit']} |"
            )
        lines.append("")
    return "\n".join(lines)


def critic_row(report: Mapping[str, Any], columns: Sequence[str]) -> str:
    """One table row: the critic's accuracy with its interval for each of ``columns``
    (systems of an evaluation; ``ground_truth`` is the pianist-against-pianist control)."""
    comparisons = {**report.get("controls", {}), **report.get("systems", {})}
    cells = [accuracy_cell(comparisons.get(name)) for name in columns]
    label = "| accuracy (0.5: like the pianist) | share of held-out windows | "
    return label + " | ".join(cells) + " |"
