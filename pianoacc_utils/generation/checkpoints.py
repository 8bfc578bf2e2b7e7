"""Loading a model to generate with: the shipped models or a training run's checkpoint.

:func:`load_checkpoint` returns the model with the window it was trained on (bars per
window from the run's ``config.json``; overlap a quarter of it), since the window loop
must cut a melody as the training segments were cut. Training a model when none exists
is the notebooks' business (:func:`pianoacc_utils.course.checkpoints.find_checkpoint`),
not this module's: loading never trains. Under JAX a model is built by tracing rather
than by running it (:func:`load_model`), which saves most of a cold load's time.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from pianoacc_utils import models
from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.generation.accompany import WindowConfig

PRETRAINED = {"fnet": "fnet", "transformer": "transformer"}
"""Names accepted by :func:`load_checkpoint` for the models shipped in ``pretrained/``."""


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


def load_checkpoint(name_or_path: str | Path) -> tuple[models.AccompanimentModel, WindowConfig]:
    """Load a model and the window it was trained on (from ``config.json`` beside it)."""
    path = resolve_checkpoint(name_or_path)
    try:
        model = load_model(path)
    except Exception as error:  # keras raises many kinds on a broken file
        raise PianoaccError(f"{path}: not a loadable Keras model ({error})") from error
    bars = 8
    config_path = path.parent / "config.json"
    if config_path.is_file():
        saved = json.loads(config_path.read_text())
        prepare = saved.get("prepare") or saved.get("profile", {}).get("prepare") or {}
        bars = int(prepare.get("bars_per_segment", bars))
    return model, WindowConfig(bars=bars, overlap_bars=max(1, bars // 4) if bars > 1 else 0)


def load_model(path: str | Path) -> models.AccompanimentModel:
    """The model saved in a ``.keras`` file, as ``keras.models.load_model(path,
    compile=False)`` returns it, with the same weights.

    Keras builds a loaded model by running it once on a dummy batch. Under JAX every
    operation of that eager run compiles a program of its own, most of a cold load's
    time, so there the build runs inside ``jax.eval_shape`` instead:
    traced, nothing compiled; the weights it creates get their initial values when
    the trace ends, and the file's weights then replace them.
    """
    if keras.config.backend() != "jax":
        return keras.models.load_model(path, compile=False)
    import jax

    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    config.pop("compile_config", None)
    config.pop("build_config", None)  # built below, by tracing
    model = keras.saving.deserialize_keras_object(config)
    with keras.StatelessScope():  # weights created in the trace are initialized on leaving
        jax.eval_shape(model.build)
    model.load_weights(path)
    return model
