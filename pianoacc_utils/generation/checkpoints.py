"""Loading a model to generate with: the shipped models or a training run's checkpoint.

:func:`load_checkpoint` returns the model with the window it was trained on (bars per
window from the run's ``config.json``), since the window loop must cut a melody as the
training segments were cut, and the bars of each window that the accompaniment already
made primes (:func:`checkpoint_window`: a shipped model's own, chosen on validation,
else :func:`default_window`). Training a model when none exists
is the notebooks' business (:func:`pianoacc_utils.course.checkpoints.find_checkpoint`),
not this module's: loading never trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from pianoacc_utils import models
from pianoacc_utils.backends.loading import weights_from_file
from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.defaults import WINDOW_NEW_BARS
from pianoacc_utils.generation.accompany import WindowConfig
from pianoacc_utils.generation.rerank import RERANKER_FILE, Reranker, shipped_reranker

PRETRAINED = {"fnet": "fnet", "transformer": "transformer", "fnet-l": "fnet_l"}
"""Names accepted by :func:`load_checkpoint` for the models shipped in ``pretrained/``:
the two 1M-parameter models of the course and ``fnet-l``, the 6.9M-parameter FNet of the
scaling campaign (``docs/training.md``), slower but ahead on validation by the rule the
shipped models were chosen by (``results/larger_model_fnet_l_reranker.md``)."""

OWN_RERANKER = "reranker.npz"
"""A model's own reranker, beside its weights: trees trained on that model's samples
(``results/reranker.py --checkpoint``), since a reranker learns what its model gets wrong."""


# --------------------------------------------------------------------------- checkpoints


def pretrained_dir() -> Path:
    """Folder of the shipped models (``pretrained/`` in the checkout)."""
    root = project_root()
    if root is None:
        raise PianoaccError("the shipped models live in the repository's pretrained/ folder")
    return root / "pretrained"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A ``.keras`` file from a name (``fnet``/``transformer``: shipped models),
    a ``.keras`` path, or a training folder (its ``best.keras``)."""
    text = str(name_or_path)
    if text in PRETRAINED:
        path = pretrained_dir() / PRETRAINED[text] / "model.keras"
        if not path.is_file():
            raise PianoaccError(f"{path}: the shipped {text} model is missing")
        return path
    path = Path(text)
    if path.is_dir():
        for candidate in ("best.keras", "model.keras", "last.keras"):
            if (path / candidate).is_file():
                return path / candidate
        raise PianoaccError(f"{path}: no best.keras, model.keras or last.keras in this folder")
    if not path.is_file():
        raise PianoaccError(f"{path}: checkpoint not found")
    return path


def reranker_file(name_or_path: str | Path) -> Path:
    """The file of the reranker that chooses among a model's candidates: its own
    (:data:`OWN_RERANKER` beside its weights) where it has one, else the shipped reranker."""
    own = resolve_checkpoint(name_or_path).parent / OWN_RERANKER
    return own if own.is_file() else pretrained_dir() / RERANKER_FILE


def checkpoint_reranker(name_or_path: str | Path) -> Reranker:
    """The reranker of :func:`reranker_file`, loaded (the shipped one loaded once)."""
    path = reranker_file(name_or_path)
    if path == pretrained_dir() / RERANKER_FILE:
        return shipped_reranker()
    return Reranker.load(path)


def candidate_reranker(
    name_or_path: str | Path, candidates: int, file: str | Path | None = None
) -> Reranker | None:
    """What chooses among a model's ``candidates`` per window: nothing for one candidate,
    else the trees in ``file`` where one is named, else the model's own
    (:func:`checkpoint_reranker`)."""
    if candidates == 1:
        return None
    return checkpoint_reranker(name_or_path) if file is None else Reranker.load(Path(file))


def default_window(bars: int) -> WindowConfig:
    """The windows of a model trained on ``bars``-bar segments: each window after the first
    adds :data:`~pianoacc_utils.defaults.WINDOW_NEW_BARS` of them (at least one bar), the
    others prime it."""
    new_bars = min(bars, max(1, round(bars * WINDOW_NEW_BARS)))
    return WindowConfig(bars=bars, overlap_bars=bars - new_bars)


def checkpoint_window(name_or_path: str | Path) -> WindowConfig:
    """The windows a model generates with, from the ``config.json`` beside it: as many bars
    as its training segments (8 without one), overlapping by its ``"generation"`` entry's
    ``overlap_bars`` where it has one (the shipped models': chosen per model on the
    validation split, ``results/critic_overlap_models.md``), else by :func:`default_window`."""
    config_path = resolve_checkpoint(name_or_path).parent / "config.json"
    saved = json.loads(config_path.read_text()) if config_path.is_file() else {}
    prepare = saved.get("prepare") or saved.get("profile", {}).get("prepare") or {}
    window = default_window(int(prepare.get("bars_per_segment", 8)))
    try:
        return window.with_overlap(saved.get("generation", {}).get("overlap_bars"))
    except PianoaccError as error:
        raise PianoaccError(f"{config_path}: {error}") from None


def load_checkpoint(name_or_path: str | Path) -> tuple[models.AccompanimentModel, WindowConfig]:
    """Load a model and its windows (:func:`checkpoint_window`)."""
    path = resolve_checkpoint(name_or_path)
    try:
        with weights_from_file():  # no initializer runs: the file's weights replace them
            model = keras.models.load_model(path, compile=False)
    except Exception as error:  # keras raises many kinds on a broken file
        raise PianoaccError(f"{path}: not a loadable Keras model ({error})") from error
    return model, checkpoint_window(path)
