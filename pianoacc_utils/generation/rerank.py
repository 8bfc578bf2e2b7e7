"""Reranking: sample several candidates for each window, keep the one that sounds most
like a pianist.

The critic of :mod:`~pianoacc_utils.evaluation.critic` tells the models' accompaniment
from the pianist's by what is heard in 2-bar windows (:mod:`~pianoacc_utils.generation.critic_features`,
which lives here, before evaluation, because reranking reads it too).
The same kind of classifier, trained once on the *training* split (the pianist's windows
against the shipped models' windows of the same songs, block chords and the pianist
jittered by a sixteenth: ``results/reranker.py``), scores
each sampled candidate for a window: the candidate whose 2-bar windows it finds most like
the pianist's is kept (:func:`choose`). It never saw a validation or test song; the number
of candidates is chosen on validation with the critic (``results/critic_rerank.md``), and so
is how many bars each window adds, that is how often the reranker chooses
(``results/critic_overlap.md``).

The classifier is scikit-learn's gradient-boosted trees, stored as plain arrays
(:class:`TreeEnsemble`, ``pretrained/reranker/reranker.npz``) and evaluated with NumPy,
so that accompanying needs neither scikit-learn nor a pickle.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.data.notes import Note
from pianoacc_utils.defaults import MAX_CANDIDATES
from pianoacc_utils.generation.critic_features import (
    CriticWindow,
    critic_windows,
    feature_matrix,
    feature_names,
)

RERANKER_FILE = "reranker/reranker.npz"
"""The shipped reranker, under ``pretrained/`` (``generation.pretrained_dir``)."""


# --------------------------------------------------------------------------- trees as arrays


@dataclass(frozen=True)
class TreeEnsemble:
    """Gradient-boosted decision trees as flat arrays, all trees' nodes in one table.

    Node ``i`` splits on ``feature[i]``: a value ``<= threshold[i]`` goes to ``left[i]``,
    a larger one to ``right[i]``, a missing one (NaN) to ``left[i]`` where
    ``missing_left[i]`` else ``right[i]``; a leaf (``leaf[i]``) adds ``value[i]``.
    ``roots`` holds each tree's first node; the decision is ``baseline`` plus one leaf
    value per tree (log-odds of the positive class).
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: float

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class for each row of ``features`` (rows x features)."""
        features = np.asarray(features, np.float64)
        rows = np.arange(len(features))[:, None]
        node = np.broadcast_to(self.roots, (len(features), len(self.roots))).copy()
        while not self.leaf[node].all():
            values = features[rows, self.feature[node]]
            go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
            step = np.where(go_left, self.left[node], self.right[node])
            node = np.where(self.leaf[node], node, step)
        return self.baseline + self.value[node].sum(axis=1)

    @classmethod
    def from_sklearn(cls, model: Any) -> "TreeEnsemble":
        """The trees of a fitted binary ``HistGradientBoostingClassifier`` on numerical
        features (its ``_predictors``: private, but stable across scikit-learn 1.x)."""
        tables, roots, offset = [], [], 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise PianoaccError("the reranker's trees must split numerical features only")
            tables.append((nodes, offset))
            roots.append(offset)
            offset += len(nodes)
        glue = lambda key, shift=0: np.concatenate(  # noqa: E731
            [nodes[key].astype(np.int64) + (start if shift else 0) for nodes, start in tables]
        )
        return cls(
            feature=glue("feature_idx"),
            threshold=np.concatenate([nodes["num_threshold"] for nodes, _ in tables]),
            left=glue("left", 1),
            right=glue("right", 1),
            missing_left=np.concatenate([nodes["missing_go_to_left"] for nodes, _ in tables]).astype(bool),
            leaf=np.concatenate([nodes["is_leaf"] for nodes, _ in tables]).astype(bool),
            value=np.concatenate([nodes["value"] for nodes, _ in tables]),
            roots=np.asarray(roots, np.int64),
            baseline=float(np.ravel(model._baseline_prediction)[0]),
        )


# --------------------------------------------------------------------------- the reranker


@dataclass(frozen=True)
class Reranker:
    """A classifier of 2-bar windows, pianist (positive) against model, over the named
    features ``features`` (:func:`~pianoacc_utils.generation.critic_features.feature_names`
    when it was trained; they must still match)."""

    features: tuple[str, ...]
    trees: TreeEnsemble

    def save(self, path: Path) -> None:
        arrays = {f"trees_{k}": np.asarray(v) for k, v in vars(self.trees).items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:  # np.savez would add .npz to a path without it
            np.savez(handle, features=np.array(self.features), **arrays)

    @classmethod
    def load(cls, path: Path) -> "Reranker":
        path = Path(path)
        if not path.is_file():
            raise PianoaccError(f"{path}: no reranker there (results/reranker.py writes it)")
        with np.load(path) as stored:
            features = tuple(str(name) for name in stored["features"])
            fields = {k[len("trees_"):]: stored[k] for k in stored.files if k.startswith("trees_")}
        fields["baseline"] = float(fields["baseline"])
        if list(features) != feature_names():
            raise PianoaccError(f"{path}: its features are not the critic's features of today; "
                                "train it again (results/reranker.py)")
        return cls(features, TreeEnsemble(**fields))

    def window_scores(self, windows: Sequence[CriticWindow]) -> np.ndarray:
        """Log-odds that each :class:`~pianoacc_utils.generation.critic_features.CriticWindow`
        is the pianist's."""
        return self.trees.decision(feature_matrix(windows)) if windows else np.zeros(0)


@functools.lru_cache(maxsize=1)
def shipped_reranker() -> Reranker:
    """The reranker under ``pretrained/`` (loaded once)."""
    root = project_root()
    if root is None:
        raise PianoaccError("the shipped reranker lives in the repository's pretrained/ folder")
    return Reranker.load(root / "pretrained" / RERANKER_FILE)


def candidate_windows(
    melody: Sequence[Note],
    notes: Sequence[Note],
    bar_starts: Sequence[int],
    start: int,
    end: int,
    tonic: int,
) -> list[CriticWindow]:
    """The windows a candidate's ``notes`` for the steps ``[start, end)`` are judged in:
    2 bars each, counted from the bar line at or before ``start`` (a last single bar is
    its own window); none where the melody is silent throughout."""
    lines = [b for b in bar_starts if b < end]
    first = max([i for i, b in enumerate(lines) if b <= start], default=0)
    lines = lines[first:] or [start]
    windows = critic_windows(melody, notes, lines, end, bars=2, tonic=tonic)
    if len(lines) % 2:  # the last bar alone
        windows += critic_windows(melody, notes, lines[-1:], end, bars=1, tonic=tonic)
    return windows


def candidate_score(
    reranker: Reranker,
    melody: Sequence[Note],
    notes: Sequence[Note],
    bar_starts: Sequence[int],
    start: int,
    end: int,
    tonic: int,
) -> float:
    """How much a candidate's ``notes`` for the steps ``[start, end)`` sound like the
    pianist's: the mean log-odds of its windows there (:func:`candidate_windows`); 0 where
    the melody is silent throughout."""
    scores = reranker.window_scores(candidate_windows(melody, notes, bar_starts, start, end, tonic))
    return float(scores.mean()) if len(scores) else 0.0


def choose(scores: Sequence[float]) -> int:
    """The candidate kept: the highest score, the first one on a tie."""
    return int(np.argmax(np.asarray(scores, np.float64)))


def check_candidates(candidates: int) -> int:
    if not 1 <= int(candidates) <= MAX_CANDIDATES:
        raise PianoaccError(f"candidates must be in 1..{MAX_CANDIDATES}, got {candidates}")
    return int(candidates)
