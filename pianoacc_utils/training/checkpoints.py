"""A run folder's checkpoints: what training commits after each epoch and every N steps,
and how a resume finds a consistent state after a crash at any point.

Three things describe where a run stands: the weights with their optimizer state
(``last.keras``, or ``step.keras`` inside an epoch), the per-epoch history
(``history.csv``) and ``training_state.json``. They cannot be replaced in one atomic
operation, so :class:`RunCheckpoints` commits them in an order that makes the state file
the single point of truth:

1. the new checkpoint is saved under a pending name that carries its optimizer step
   (``last.<step>.partial.keras``; ``best.<step>...``, ``step.<step>...`` alike);
2. the history is rewritten atomically (rows of all epochs done, this one included);
3. ``training_state.json`` is written atomically, naming the epochs done and the
   optimizer step of the checkpoint it belongs to: this is the commit;
4. the pending file is renamed over ``last.keras`` (``best.keras``, ``step.keras``).

:func:`recover`, run before every resume, finishes or undoes an interrupted commit: a
pending file whose step the state names is renamed into place (crash between 3 and 4),
any other is deleted (crash before 3), and history rows past the state's epochs are
dropped (crash between 2 and 3). A crash therefore always leaves the state of the last
commit, whose weights, history and counters agree.

Step checkpoints (``checkpoint_steps``) add mid-epoch resume: the state then also names
the epoch, the batches of it already trained and the running sums of the epoch's
training metrics, so a resumed run replays the rest of the epoch's batches (their order
is a function of the seed and the epoch, :class:`~pianoacc_utils.training.batches.SegmentBatches`)
with the saved optimizer state and learning-rate step, and reports the same epoch
metrics as a run that never stopped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from pianoacc_utils.common import PianoaccError, write_atomic, write_json
from pianoacc_utils.training.profiles import Profile

STATE = "training_state.json"
HISTORY = "history.csv"
LAST = "last.keras"
BEST = "best.keras"
STEP = "step.keras"

FREE_SETTINGS = ("description", "train.epochs", "train.checkpoint_steps")
"""Profile settings a resumed run may change: they decide how long training goes on and
how often it saves, not what any optimizer step computes."""


# --------------------------------------------------------------------------- history


def read_history(out_dir: str | Path) -> dict[str, list[float]]:
    """``history.csv`` of a run as columns (``epoch`` first, then loss, val_loss, ...)."""
    path = Path(out_dir) / HISTORY
    if not path.is_file():
        raise PianoaccError(f"{path}: no training history here")
    columns: dict[str, list[float]] = {}
    for row in history_rows(out_dir):
        for key, value in row.items():
            number = float(value) if value not in ("", None) else math.nan
            columns.setdefault(key, []).append(number)
    if "epoch" in columns:
        columns["epoch"] = [int(e) for e in columns["epoch"]]
    return columns


def history_rows(out_dir: str | Path, epochs: int | None = None) -> list[dict[str, str]]:
    """The rows of ``history.csv`` (none when it is missing), only those of the first
    ``epochs`` epochs when given (rows an interrupted commit wrote beyond the state)."""
    path = Path(out_dir) / HISTORY
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if epochs is not None:
        rows = [row for row in rows if int(float(row["epoch"])) < epochs]
    return rows


def write_history(out_dir: str | Path, rows: list[dict[str, str]]) -> None:
    """Rewrite ``history.csv`` atomically: ``epoch`` first, then the other columns sorted."""
    keys = sorted({key for row in rows for key in row} - {"epoch"})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["epoch", *keys], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(out_dir) / HISTORY, text.getvalue().encode())


def history_row(epoch: int, logs: dict[str, Any]) -> dict[str, str]:
    """One epoch's logs as a ``history.csv`` row (numbers written exactly, ``repr``)."""
    row = {"epoch": str(epoch)}
    for key, value in logs.items():
        row[key] = repr(float(np.asarray(value)))
    return row


# --------------------------------------------------------------------------- state, files


def read_state(out_dir: str | Path) -> dict[str, Any]:
    """``training_state.json`` of a run (:class:`PianoaccError` when missing or unreadable)."""
    path = Path(out_dir) / STATE
    if not path.is_file():
        raise PianoaccError(f"{path}: missing, cannot resume this run")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PianoaccError(
            f"{path}: unreadable ({error}); delete the folder {path.parent} or train into a "
            "fresh --out"
        ) from error


def write_state(out_dir: str | Path, state: dict[str, Any]) -> None:
    """Write ``training_state.json`` atomically: the commit point of a checkpoint."""
    write_json(Path(out_dir) / STATE, state)


def pending_path(out_dir: str | Path, name: str, iterations: int) -> Path:
    """Where checkpoint ``name`` (``last.keras``, ...) of optimizer step ``iterations``
    is saved before its commit: ``last.<iterations>.partial.keras``."""
    stem = name.removesuffix(".keras")
    return Path(out_dir) / f"{stem}.{int(iterations)}.partial.keras"


def _committed_steps(state: dict[str, Any]) -> dict[str, int | None]:
    step = state.get("step") or {}
    return {
        LAST: state.get("optimizer_iterations"),
        BEST: state.get("best_iterations"),
        STEP: step.get("optimizer_iterations"),
    }


def recover(out_dir: str | Path, state: dict[str, Any]) -> list[str]:
    """Finish or undo an interrupted commit so the folder matches ``state``.

    Pending checkpoints the state names are renamed into place, others deleted;
    ``step.keras`` is deleted when the state names no step checkpoint (the epoch
    that held it was committed); history rows beyond the state's epochs are dropped.
    Returns what was done, one line per file.
    """
    out = Path(out_dir)
    wanted = _committed_steps(state)
    done = []
    for path in sorted(out.glob("*.partial.keras")):
        parts = path.name.split(".")
        name = f"{parts[0]}.keras"
        iterations = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
        if iterations is not None and wanted.get(name) == iterations:
            os.replace(path, out / name)
            done.append(f"{path.name} -> {name}")
        else:
            path.unlink()
            done.append(f"{path.name} deleted (not committed)")
    if not state.get("step") and (out / STEP).exists():
        (out / STEP).unlink()
        done.append(f"{STEP} deleted (its epoch was committed)")
    epochs = int(state.get("epochs_done", 0))
    rows = history_rows(out)
    if len(rows) > epochs:
        write_history(out, history_rows(out, epochs))
        done.append(f"{HISTORY}: {len(rows) - epochs} rows past epoch {epochs} dropped")
    return done


def _broken(path: Path, reason: object) -> PianoaccError:
    return PianoaccError(
        f"{path}: not a readable Keras checkpoint ({reason}), so this run cannot resume "
        f"from it; delete the folder {path.parent} or train into a fresh --out"
    )


def check_checkpoint(path: Path) -> None:
    """Raise a :class:`PianoaccError` naming ``path`` unless it is a complete ``.keras``
    archive (a truncated or overwritten file fails here, before any data is loaded)."""
    if not path.is_file():
        raise PianoaccError(f"{path}: missing, cannot resume this run")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise _broken(path, error) from error
    if not {"config.json", "model.weights.h5"} <= names:
        raise _broken(path, "no config.json or model.weights.h5 inside")


def load_checkpoint(path: Path) -> keras.Model:
    """``keras.models.load_model(path)`` with the optimizer state, a damaged file raising
    one :class:`PianoaccError` that names it and what to do."""
    check_checkpoint(path)
    try:
        return keras.models.load_model(path)
    except Exception as error:  # h5py, zip and Keras errors alike
        raise _broken(path, f"{type(error).__name__}: {error}") from error


# --------------------------------------------------------------------------- resume checks


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: values}


def settings_difference(
    saved: dict[str, Any], profile: Profile, ignore: tuple[str, ...] = FREE_SETTINGS
) -> list[str]:
    """The settings in which a run's saved profile (``config.json["profile"]``) and
    ``profile`` differ, as ``"model.hidden_dim: 64 in the run, 128 now"`` (sorted;
    the dotted names in ``ignore`` left out)."""
    try:
        was = _flat(Profile.from_dict(saved).to_dict())
    except (KeyError, TypeError, ValueError, PianoaccError) as error:
        return [f"profile: unreadable in the run ({error})"]
    now = _flat(profile.to_dict())
    return [
        f"{key}: {was.get(key)!r} in the run, {now.get(key)!r} now"
        for key in sorted(set(was) | set(now))
        if key not in ignore and was.get(key) != now.get(key)
    ]


def resume_checkpoint(out_dir: str | Path, state: dict[str, Any]) -> tuple[Path, dict | None]:
    """The checkpoint a resume starts from and, when it is a step checkpoint inside the
    next epoch, its step record (epoch, batches done, metric sums)."""
    step = state.get("step")
    if step and int(step["epoch"]) == int(state.get("epochs_done", 0)):
        return Path(out_dir) / STEP, step
    return Path(out_dir) / LAST, None


def check_resume(out_dir: str | Path, profile: Profile, kind: str) -> dict[str, Any]:
    """The state to resume a ``kind`` run of ``profile`` in ``out_dir`` from, after
    :func:`recover`; :class:`PianoaccError` when the run is of another kind or other
    settings (each difference named), or its files are missing or damaged."""
    out = Path(out_dir)
    config_path = out / "config.json"
    if not config_path.is_file():
        raise PianoaccError(f"{config_path}: missing, cannot resume this run")
    try:
        saved = json.loads(config_path.read_text())
    except ValueError as error:
        raise PianoaccError(f"{config_path}: unreadable ({error}), cannot resume") from error
    saved_profile = saved.get("profile", {})
    if saved.get("kind") != kind or saved_profile.get("name") != profile.name:
        was = f"{saved.get('kind')}/{saved_profile.get('name')}"
        raise PianoaccError(f"{config_path}: run was {was}, not {kind}/{profile.name}")
    differences = settings_difference(saved_profile, profile)
    if differences:
        raise PianoaccError(
            f"{config_path}: the run was trained with other {profile.name!r} settings than "
            f"now ({'; '.join(differences)}); a resumed run must go on with the same "
            "settings: resume with training.run_profile(folder), or train into a fresh --out"
        )
    state = read_state(out)
    recover(out, state)
    checkpoint, _ = resume_checkpoint(out, state)
    check_checkpoint(checkpoint)
    return state


# --------------------------------------------------------------------------- the callback


def _number(value: Any) -> float:
    return float(np.asarray(ops.convert_to_numpy(value)))


class RunCheckpoints(keras.callbacks.Callback):
    """Commits the run folder after each epoch and every ``checkpoint_steps`` optimizer
    steps (see the module docstring for the order of the writes).

    ``state`` is the committed ``training_state.json`` (updated after each commit) and
    ``rows`` the committed history rows. ``batches_per_epoch``: the full epoch's batch
    count (no step checkpoint on an epoch's last batch: the epoch commit follows).
    Before a fit that resumes mid-epoch, set ``resume_batches`` (batches of the epoch
    already trained) and ``resume_metrics`` (the saved metric sums).
    """

    def __init__(
        self,
        out_dir: Path,
        state: dict[str, Any],
        rows: list[dict[str, str]],
        batches_per_epoch: int,
        checkpoint_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.out = Path(out_dir)
        self.state = state
        self.rows = rows
        self.batches_per_epoch = batches_per_epoch
        self.checkpoint_steps = checkpoint_steps
        self.resume_batches = 0
        self.resume_metrics: list[float] | None = None
        self.began = time.perf_counter()
        self.epoch = 0
        self.batches_done = 0
        self.steps = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.steps = int(_number(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.batches_done = epoch, self.resume_batches
        if self.resume_metrics is not None:
            variables = self.model.metrics_variables
            if len(variables) != len(self.resume_metrics):
                raise PianoaccError(
                    f"{self.out / STATE}: {len(self.resume_metrics)} saved metric sums, "
                    f"the model has {len(variables)}"
                )
            for variable, value in zip(variables, self.resume_metrics):
                variable.assign(value)
        self.resume_batches, self.resume_metrics = 0, None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Counted here rather than read from the optimizer: reading the model's state
        # each step would cost a copy per step under JAX.
        self.steps += 1
        self.batches_done += 1
        every = self.checkpoint_steps
        if every and self.steps % every == 0 and self.batches_done < self.batches_per_epoch:
            self.save_step()

    def save_step(self) -> None:
        """Commit a step checkpoint: weights, optimizer and metric sums mid-epoch."""
        model = self.model
        iterations = int(_number(model.optimizer.iterations))
        step = {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "optimizer_iterations": iterations,
            "metrics": [_number(v) for v in model.metrics_variables],
        }
        model.save(pending_path(self.out, STEP, iterations))
        state = {**self.state, "step": step}
        write_state(self.out, state)
        self.state.update(state)
        os.replace(pending_path(self.out, STEP, iterations), self.out / STEP)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        model = self.model
        iterations = int(_number(model.optimizer.iterations))
        model.save(pending_path(self.out, LAST, iterations))
        best = float(self.state.get("best_val_loss", math.inf))
        val_loss = logs.get("val_loss")
        improved = val_loss is not None and float(val_loss) < best
        state = dict(self.state)
        if improved:
            shutil.copyfile(
                pending_path(self.out, LAST, iterations), pending_path(self.out, BEST, iterations)
            )
            state.update(best_val_loss=float(val_loss), best_epoch=epoch, best_iterations=iterations)
        rows = [*self.rows, history_row(epoch, logs)]
        write_history(self.out, rows)
        state.update(
            epochs_done=epoch + 1,
            optimizer_iterations=iterations,
            step=None,
            seconds_this_run=round(time.perf_counter() - self.began, 2),
        )
        write_state(self.out, state)
        self.state.update(state)
        self.rows[:] = rows
        recover(self.out, state)
