"""The training loop: train a model of a profile into a run folder, resume it, read it back.

:func:`train` prepares (or reuses) the profile's data, builds and compiles the model,
and fits it on teacher-forced batches, writing into the run folder after every epoch:
the history (``history.csv``), TensorBoard scalars (``logs/``), the best checkpoint by
validation loss (``best.keras``), the last one with its optimizer state (``last.keras``)
and ``training_state.json`` (epochs done, optimizer steps, best validation loss), plus a
step checkpoint every N optimizer steps when asked. That is enough to resume an
interrupted run exactly where it stopped (epoch numbering, learning-rate schedule,
shuffling, and inside an epoch the batches left); how the files are committed so that a
crash never leaves them inconsistent is :mod:`pianoacc_utils.training.checkpoints`.
:func:`train_or_reuse` is what the notebooks call: train, resume or read back, so that
running a notebook twice does not train twice. Shipping a finished run is
:mod:`pianoacc_utils.training.export`. The compute precision on CPU cores is chosen by
timing the run's own steps first (:mod:`pianoacc_utils.training.precision`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from pianoacc_utils.common import PianoaccError, write_json
from pianoacc_utils.models.config import ModelConfig
from pianoacc_utils.models.seq2seq import build_model
from pianoacc_utils.prepare import load_split, prepare
from pianoacc_utils.training.batches import SegmentBatches
from pianoacc_utils.training.checkpoints import (
    LAST,
    STATE,
    RunCheckpoints,
    check_resume,
    history_rows,
    load_checkpoint,
    read_history,
    resume_checkpoint,
    settings_difference,
)
from pianoacc_utils.training.devices import pick_strategy, precision_policy
from pianoacc_utils.training.loss import compile_model
from pianoacc_utils.training.precision import choose_for_run
from pianoacc_utils.training.profiles import Profile, get_profile

# --------------------------------------------------------------------------- train


class _LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs (``lr``)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["lr"] = float(np.asarray(ops.convert_to_numpy(rate)))


class _EpochSummaries(keras.callbacks.Callback):
    """TensorBoard scalars per epoch: ``logs/train`` and ``logs/validation``
    (tags ``epoch_loss``, ``epoch_accuracy``, ...), as Keras' TensorBoard
    callback writes them, without needing the ``tensorboard`` package itself."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        self._metadata = summary_pb2.SummaryMetadata(plugin_data=plugin)
        self._log_dir = log_dir
        self._writers: dict[str, Any] = {}

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._writers = {
            part: self._tf.summary.create_file_writer(str(self._log_dir / part))
            for part in ("train", "validation")
        }

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        tf = self._tf
        for key, value in (logs or {}).items():
            part, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with tf.device("/cpu:0"), self._writers[part].as_default():
                tf.summary.write(
                    f"epoch_{name}", tf.constant(float(value)), step=epoch, metadata=self._metadata
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()


def _fit(
    model: keras.Model,
    train_batches: SegmentBatches,
    validation_batches: SegmentBatches,
    first_epoch: int,
    end_epoch: int,
    callbacks: list[keras.callbacks.Callback],
    progress: bool,
) -> None:
    model.fit(
        train_batches.for_fit(),
        validation_data=validation_batches.for_fit(),
        epochs=end_epoch,
        initial_epoch=first_epoch,
        callbacks=callbacks,
        shuffle=False,  # the batches shuffle themselves (bucketed by length)
        verbose=1 if progress else 0,
    )


def train(
    profile_or_name: str | Profile,
    kind: str,
    out_dir: str | Path,
    epochs: int | None = None,
    resume: bool = False,
    progress: bool = True,
    data: str | Path | None = None,
    checkpoint_steps: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    init_weights: str | Path | None = None,
    loss_check: bool = False,
) -> dict[str, list[float]]:
    """Train one model and return the whole run's history (all epochs so far).

    ``epochs``: epochs to run now (default: the profile's; on resume, the epochs
    the profile has left; an interrupted epoch counts as one). ``data``: a prepared
    folder (default: the profile's data, prepared and cached on first use).
    ``checkpoint_steps``: save a step checkpoint every so many optimizer steps
    (default: the profile's ``checkpoint_steps``). ``callbacks``: more Keras callbacks,
    run after the run's own. ``init_weights``: a checkpoint of the same model
    configuration whose weights a new run starts from, instead of random ones (a longer
    run continued from a model saved without its optimizer: the optimizer and the
    schedule start afresh). ``loss_check``: on CPU cores where mixed bfloat16 times
    faster than float32, train a short run in both first and allow bfloat16 only if it
    keeps the validation loss (:mod:`~pianoacc_utils.training.precision`; without the
    check such a run trains in float32). Writes into ``out_dir``: ``config.json`` (profile,
    kind, the compute precision and how it was chosen), ``history.csv`` (one row per
    epoch), ``logs/`` (TensorBoard), ``best.keras`` (lowest val_loss), ``last.keras``
    (with optimizer state), ``step.keras`` (the latest step checkpoint of an unfinished
    epoch) and ``training_state.json`` (epochs done, optimizer step, best val_loss, the
    step checkpoint). They are committed so that a
    crash at any point leaves a consistent run (:mod:`~pianoacc_utils.training.checkpoints`).

    Resume continues from the latest commit: the epoch numbering, the learning-rate
    schedule, the optimizer state and, from a step checkpoint, the rest of the
    interrupted epoch's batches in their order and its metric sums. It is refused when
    the profile's settings differ from the run's (each difference named).

    The compute precision is not stored in a checkpoint: a model loads in the
    global dtype policy of the process (float32 unless set), so a checkpoint
    trained with mixed precision on a GPU runs in float32 on a CPU; resuming on the
    same processor and backend keeps the run's recorded precision, elsewhere it is
    chosen again.
    """
    profile = get_profile(profile_or_name)
    model_config = profile.model_config(kind)
    settings = profile.train
    out = Path(out_dir)
    state: dict[str, Any] = {"kind": kind, "profile": profile.name, "best_val_loss": math.inf}
    if resume:
        state = check_resume(out, profile, kind)
    elif (out / LAST).exists() or (out / STATE).exists():
        raise PianoaccError(
            f"{out}: already holds a training run; resume it or choose another folder"
        )
    initial_epoch = int(state.get("epochs_done", 0))
    checkpoint, step = resume_checkpoint(out, state) if resume else (out / LAST, None)
    if epochs is None:
        epochs = settings.epochs - initial_epoch
        if epochs <= 0:
            raise PianoaccError(
                f"{out}: all {settings.epochs} epochs of profile {profile.name!r} are done; "
                "ask for more epochs explicitly"
            )
    folder = Path(data) if data else prepare(profile.prepare, progress=progress)
    train_split = load_split(folder, "train")
    validation_split = load_split(folder, "validation")

    out.mkdir(parents=True, exist_ok=True)
    strategy = pick_strategy()
    if strategy.name != "default" and settings.batch_size % strategy.replicas:
        raise PianoaccError(
            f"batch size {settings.batch_size} does not split evenly over "
            f"{strategy.replicas} devices"
        )
    origin, earlier = init_weights, None
    if resume:  # the run's own checkpoint has the weights; keep where they first came from
        saved = json.loads((out / "config.json").read_text())
        origin, earlier = saved.get("init_weights"), saved.get("precision_choice")
    batches = {
        "model_config": model_config,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "length_multiple": settings.length_multiple,
        "pool_batches": settings.pool_batches,
    }
    resume_batches = int(step["batches_done"]) if step else 0
    train_batches = SegmentBatches(
        train_split, shuffle=True, max_segments=settings.max_train_segments,
        epoch=initial_epoch, harmony_dropout=settings.harmony_dropout,
        start_batch=resume_batches, **batches,
    )
    validation_batches = SegmentBatches(
        validation_split, shuffle=False, max_segments=settings.max_validation_segments, **batches
    )
    choice = choose_for_run(
        model_config, settings, train_batches, validation_batches, strategy.replicas,
        loss_check, earlier,
    )
    if progress:
        print(f"compute precision: {choice.summary()}", flush=True)
    write_json(
        out / "config.json",
        {
            "kind": kind,
            "profile": profile.to_dict(),
            "data": str(folder),
            "strategy": strategy.describe(),
            "precision": choice.precision,
            "precision_choice": choice.describe(),
            **({"init_weights": str(origin)} if origin else {}),
        },
    )
    keras.utils.set_random_seed(settings.seed + initial_epoch)
    commits = RunCheckpoints(
        out, state, history_rows(out, initial_epoch) if resume else [],
        train_batches.batches_per_epoch,
        checkpoint_steps if checkpoint_steps is not None else settings.checkpoint_steps,
    )
    end_epoch = initial_epoch + epochs
    with precision_policy(settings.mixed_precision, cpu=choice.precision), strategy.scope():
        if resume:
            model = load_checkpoint(checkpoint)
        else:
            model = build_model(model_config)
            if origin:
                model.set_weights(_checkpoint_weights(origin, model_config))
            model = compile_model(model, settings)
        # The commit comes before the TensorBoard scalars: a crash in between loses one
        # epoch's scalars rather than writing those of an epoch that is then redone.
        run_callbacks = [_LearningRateLogger(), commits, _EpochSummaries(out / "logs"), *callbacks]
        first_epoch = initial_epoch
        if step:
            # The rest of the interrupted epoch on its own, with its saved metric sums
            # (the metrics are built first: Keras may build them at the first step only).
            inputs, target = train_batches[0]
            model.compute_metrics(inputs, target, model(inputs, training=False), None)
            model.reset_metrics()
            commits.resume_batches, commits.resume_metrics = resume_batches, step["metrics"]
            _fit(model, train_batches, validation_batches, first_epoch, first_epoch + 1,
                 run_callbacks, progress)
            first_epoch += 1
        if first_epoch < end_epoch:
            train_batches.seek(first_epoch)
            _fit(model, train_batches, validation_batches, first_epoch, end_epoch,
                 run_callbacks, progress)
    return read_history(out)


def _checkpoint_weights(path: str | Path, config: ModelConfig) -> list[np.ndarray]:
    """The weights of the checkpoint at ``path``, which must have model configuration
    ``config`` (:class:`PianoaccError` naming the file otherwise)."""
    source = load_checkpoint(Path(path))
    if source.config != config:
        raise PianoaccError(
            f"{path}: its model is not the one this run trains "
            f"({source.config} against {config})"
        )
    return source.get_weights()


# --------------------------------------------------------------------------- runs, speed


def run_profile(out_dir: str | Path) -> Profile:
    """The profile a run folder was trained with (from its ``config.json``)."""
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise PianoaccError(f"{path}: missing, not a training run folder")
    return Profile.from_dict(json.loads(path.read_text())["profile"])


def first_stage_profile(out_dir: str | Path) -> Profile:
    """The profile of a run's first stage: a run trained on from an exported one
    (``config.json``'s ``continued_from``, written by ``training.export_run``) keeps the
    earlier stages' configurations, the oldest of which is the first; otherwise the
    run's own profile. Two runs trained the same way share it."""
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise PianoaccError(f"{path}: missing, not a training run folder")
    saved = json.loads(path.read_text())
    while "continued_from" in saved:
        saved = saved["continued_from"]
    return Profile.from_dict(saved["profile"])


def is_finished_run(out_dir: str | Path, profile_or_name: str | Profile, kind: str) -> bool:
    """True when ``out_dir`` holds a ``kind`` run of exactly this profile's settings
    that has done all of the profile's epochs (``training_state.json``)."""
    out, profile = Path(out_dir), get_profile(profile_or_name)
    needed = ("config.json", "training_state.json", "history.csv")
    if not all((out / name).is_file() for name in needed):
        return False
    saved = json.loads((out / "config.json").read_text())
    state = json.loads((out / "training_state.json").read_text())
    return (
        saved.get("kind") == kind
        and Profile.from_dict(saved["profile"]) == profile
        and int(state.get("epochs_done", 0)) >= profile.train.epochs
    )


def train_or_reuse(
    profile_or_name: str | Profile,
    kind: str,
    out_dir: str | Path,
    progress: bool = True,
    data: str | Path | None = None,
) -> dict[str, list[float]]:
    """The history of a finished ``kind`` run of this profile in ``out_dir``: trained
    now when the folder holds none, resumed when it holds an unfinished one, read
    back when it is complete (a notebook run twice does not train twice).

    A folder holding a run of another kind or other profile settings raises
    :class:`PianoaccError` rather than being overwritten.
    """
    profile = get_profile(profile_or_name)
    out = Path(out_dir)
    if not (out / LAST).exists() and not (out / STATE).exists():
        return train(profile, kind, out, progress=progress, data=data)
    saved = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else {}
    if saved.get("kind") != kind or "profile" not in saved:
        differences = ["kind"]
    else:
        differences = settings_difference(saved["profile"], profile, ignore=())
    if differences:
        was = f"{saved.get('kind')}/{saved.get('profile', {}).get('name')}"
        raise PianoaccError(
            f"{out}: holds a {was} run that is not a {kind} run of the current {profile.name!r} "
            f"profile (differs in {'; '.join(differences)}); delete it or choose another folder"
        )
    if is_finished_run(out, profile, kind):
        return read_history(out)
    return train(profile, kind, out, resume=True, progress=progress, data=data)
