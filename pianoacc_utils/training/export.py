"""Shipping a finished training run: its best model and a model card, in a folder of its own.

A run folder (written by :func:`pianoacc_utils.training.loop.train`) holds what
training needs to resume: two checkpoints with optimizer state, TensorBoard logs,
the per-epoch history. :func:`export_run` keeps what *using* and *describing* the
model needs, the way ``pretrained/fnet`` and ``pretrained/transformer`` are shipped:
the best checkpoint saved again without its optimizer state (``model.keras``; AdamW
keeps two moments per weight, so this is about a third of ``best.keras``), the run's
``config.json`` and ``history.csv``, and ``MODEL_CARD.md``: the configuration, the
data split, the optimisation, the hardware, the wall time and the validation metrics
of the shipped epoch, plus an evaluation table when one is given.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import keras
import numpy as np

from pianoacc_utils.common import PianoaccError, config_dict, write_atomic
from pianoacc_utils.training.checkpoints import read_history
from pianoacc_utils.training.profiles import Profile


def export_run(
    run_dir: str | Path,
    dest: str | Path,
    wall_seconds: float | None = None,
    hardware: str | None = None,
    evaluation_markdown: str | None = None,
) -> Path:
    """Copy a finished run's best model into ``dest`` with a model card; returns ``dest``.

    Writes ``model.keras`` (weights and architecture, no optimizer state),
    ``config.json``, ``history.csv`` and ``MODEL_CARD.md`` (configuration, data
    split, epochs, optimizer steps, hardware, wall time, the validation metrics of
    the best epoch and, when given, ``evaluation_markdown``). ``wall_seconds``: the
    training's wall time in seconds (the run folder does not record it across
    resumes); ``hardware``: a description for the card (default: this machine's
    processor and core count).
    """
    run, dest = Path(run_dir), Path(dest)
    best = run / "best.keras"
    if not best.is_file():
        raise PianoaccError(f"{best}: missing; is {run} a finished training run?")
    saved = json.loads((run / "config.json").read_text())
    state = json.loads((run / "training_state.json").read_text())
    history = read_history(run)
    dest.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(best, compile=False)
    tmp = dest / ".model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, dest / "model.keras")
    shutil.copy(run / "config.json", dest / "config.json")
    shutil.copy(run / "history.csv", dest / "history.csv")

    profile = Profile.from_dict(saved["profile"])
    stats_path = Path(saved.get("data", "")) / "stats.json"
    splits = json.loads(stats_path.read_text())["splits"] if stats_path.is_file() else {}
    best_epoch = int(np.nanargmin(history["val_loss"]))
    hardware = hardware or f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    lines = [
        f"# {saved['kind']} accompaniment model ({profile.name} profile)",
        "",
        f"{profile.description}.",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config_dict(profile.model_config(saved["kind"])), indent=2, sort_keys=True),
        "```",
        "",
        (
            f"Parameters: {model.count_params():,}. Data: {profile.prepare.bars_per_segment}-bar "
            f"segments (hop {profile.prepare.hop_bars} bars), transpositions "
            f"{list(profile.prepare.transpositions)}, re-barred into 3/4 / 2/4: "
            f"{profile.prepare.rebar_3_4:.0%} / {profile.prepare.rebar_2_4:.0%} of the training "
            f"segments; decoder length {profile.model.accompaniment_length} tokens, "
            f"melody length {profile.model.melody_length}."
        ),
        "",
        "## Data split (songs / segments)",
        "",
        "| split | songs | segments |",
        "|---|---|---|",
        *[f"| {name} | {row['songs']} | {row['segments']} |" for name, row in splits.items()],
        "",
        "Song-level split of POP909, seed 909 (727/91/91 songs; song 186 pinned to test).",
        "",
        "## Training",
        "",
        (
            f"- epochs: {state['epochs_done']}, optimizer steps: {state['optimizer_iterations']}, "
            f"batch size {profile.train.batch_size}, peak learning rate "
            f"{profile.train.learning_rate} after {profile.train.warmup_steps} warm-up steps "
            f"({profile.train.decay} decay)"
        ),
        f"- hardware: {hardware}",
        f"- wall time: {wall_seconds / 60:.1f} min" if wall_seconds else "- wall time: not recorded",
        f"- best epoch (lowest validation loss, the shipped weights): {best_epoch}",
        (
            f"- validation at that epoch: loss {history['val_loss'][best_epoch]:.3f}, "
            f"token accuracy {history['val_accuracy'][best_epoch]:.3f}, "
            f"perplexity {history['val_perplexity'][best_epoch]:.2f}"
        ),
        "",
    ]
    if evaluation_markdown:
        lines += ["## Evaluation", "", evaluation_markdown.strip(), ""]
    write_atomic(dest / "MODEL_CARD.md", "\n".join(lines).encode())
    return dest
