"""The checkpoint a notebook uses: a run trained in the notebook's output folder, else the
shipped model, else (so that a checkout without models still runs) a quick model trained
now. It sits with the course because it may train: the generation stage never does."""

from __future__ import annotations

from pathlib import Path

from pianoacc_utils import training
from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.generation.checkpoints import PRETRAINED

COURSE_MODELS = ("fnet", "transformer")
"""The model kinds the notebooks train and compare (the shipped ``fnet-l`` is an FNet of
another size: ``pianoacc accompany --checkpoint fnet-l``)."""


def find_checkpoint(
    kind: str,
    runs_dir: str | Path | None = None,
    train_profile_if_missing: str | None = "quick",
    progress: bool = False,
) -> Path:
    """The checkpoint of a model kind (``fnet``/``transformer``) that the notebooks use.

    In order: a run trained in ``runs_dir/<kind>`` (its ``best.keras``); else the
    shipped model ``pretrained/<kind>/model.keras``; else, so that a checkout without
    models still runs, a model of profile ``train_profile_if_missing`` trained now
    into ``runs_dir/<kind>`` (``training.train_or_reuse``: the quick profile takes
    about a minute on a CPU). ``None`` there, or no ``runs_dir``, turns that last
    step into a :class:`PianoaccError` naming what is missing.
    """
    if kind not in COURSE_MODELS:
        raise PianoaccError(f"model kind {kind!r}: expected one of {', '.join(COURSE_MODELS)}")
    run = Path(runs_dir) / kind if runs_dir is not None else None
    if run is not None and (run / "best.keras").is_file():
        return run / "best.keras"
    root = project_root()
    shipped = root / "pretrained" / PRETRAINED[kind] / "model.keras" if root else None
    if shipped is not None and shipped.is_file():
        return shipped
    if run is None or train_profile_if_missing is None:
        where = f"{run / 'best.keras'} nor " if run is not None else ""
        raise PianoaccError(
            f"no {kind} checkpoint: neither {where}the shipped pretrained/{kind}/model.keras exists"
        )

    training.train_or_reuse(train_profile_if_missing, kind, run, progress=progress)
    if not (run / "best.keras").is_file():
        raise PianoaccError(f"{run}: training wrote no best.keras")
    return run / "best.keras"
