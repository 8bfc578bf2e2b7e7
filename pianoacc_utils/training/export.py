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

A run that trained on from a shipped model's weights (``train(..., init_weights=...)``)
is exported with ``continued_from`` set to that shipped folder: the history then holds
both stages' epochs in order, ``config.json`` keeps the earlier stage's configuration
under ``"continued_from"``, and the card describes both stages, so that the shipped
folder still tells the whole training of its weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from pianoacc_utils.common import PianoaccError, config_dict, processor_name, write_atomic
from pianoacc_utils.training.checkpoints import history_rows, read_history, write_history
from pianoacc_utils.training.precision import PrecisionChoice
from pianoacc_utils.training.profiles import Profile


def export_run(
    run_dir: str | Path,
    dest: str | Path,
    wall_seconds: float | None = None,
    hardware: str | None = None,
    evaluation_markdown: str | None = None,
    continued_from: str | Path | None = None,
) -> Path:
    """Copy a finished run's best model into ``dest`` with a model card; returns ``dest``.

    Writes ``model.keras`` (weights and architecture, no optimizer state),
    ``config.json``, ``history.csv`` and ``MODEL_CARD.md`` (configuration, data
    split, epochs, optimizer steps, hardware, wall time, the validation metrics of
    the best epoch and, when given, ``evaluation_markdown``). ``wall_seconds``: the
    training's wall time in seconds (the run folder does not record it across
    resumes); ``hardware``: a description for the card (default: this machine's
    processor and core count). ``continued_from``: the exported folder whose weights
    the run started from (``train(..., init_weights=...)``); it may be ``dest`` itself,
    which is then replaced. Its model configuration must be the run's.
    """
    run, dest = Path(run_dir), Path(dest)
    best = run / "best.keras"
    if not best.is_file():
        raise PianoaccError(f"{best}: missing; is {run} a finished training run?")
    saved = json.loads((run / "config.json").read_text())
    state = json.loads((run / "training_state.json").read_text())
    profile = Profile.from_dict(saved["profile"])
    hardware = hardware or f"{processor_name()}, {os.cpu_count()} CPU cores"
    stage = [
        (
            f"- epochs: {state['epochs_done']}, optimizer steps: {state['optimizer_iterations']}, "
            f"batch size {profile.train.batch_size}, peak learning rate "
            f"{profile.train.learning_rate:.3g} after {profile.train.warmup_steps} warm-up steps "
            f"({profile.train.decay} decay)"
        ),
        f"- hardware: {hardware}",
        f"- compute precision: {_precision_line(saved)}",
        f"- wall time: {wall_seconds / 60:.1f} min" if wall_seconds else "- wall time: not recorded",
    ]
    rows = history_rows(run)
    config = dict(saved)
    description = f"{profile.description}."
    training_lines = stage
    if continued_from is not None:  # read the earlier stage before dest (maybe it) is replaced
        earlier = _EarlierStage.read(Path(continued_from), profile.model_config(saved["kind"]))
        rows = earlier.rows + [
            {**row, "epoch": str(int(float(row["epoch"])) + len(earlier.rows))} for row in rows
        ]
        config.pop("init_weights", None)  # the earlier stage, described whole, replaces it
        config["continued_from"] = earlier.config
        description = (
            f"{earlier.description} Then {state['epochs_done']} more epochs from those weights "
            f"with a fresh optimizer ({profile.name} profile)."
        )
        training_lines = [
            (
                f"Trained in {len(earlier.stages) + 1} stages, each from the weights the one "
                "before it ended with; epochs are counted over all of them."
            ),
            "",
            *earlier.stages_markdown(),
            f"### Stage {len(earlier.stages) + 1}: {profile.name} profile",
            "",
            *stage,
        ]
    dest.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(best, compile=False)
    tmp = dest / ".model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, dest / "model.keras")
    write_atomic(dest / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    write_history(dest, rows)
    history = read_history(dest)
    best_epoch = int(np.nanargmin(history["val_loss"]))

    stats_path = Path(saved.get("data", "")) / "stats.json"
    splits = json.loads(stats_path.read_text())["splits"] if stats_path.is_file() else {}
    lines = [
        f"# {saved['kind']} accompaniment model ({profile.name} profile)",
        "",
        description,
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
        *training_lines,
        "",
        f"{_BEST} {best_epoch}",
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


def _precision_line(saved: dict) -> str:
    """The card's account of the run's compute precision (``config.json``)."""
    if "precision_choice" in saved:
        return PrecisionChoice.from_dict(saved["precision_choice"]).summary()
    return f"{saved.get('precision', 'float32')} (how it was chosen was not recorded)"


_BEST = "- best epoch (lowest validation loss, the shipped weights):"
_VALIDATION = "- validation at that epoch:"


@dataclass
class _EarlierStage:
    """What an exported folder says of the training its weights came from."""

    config: dict
    rows: list[dict[str, str]]
    description: str
    stages: list[list[str]]  # each stage's card lines (bullets), oldest first
    names: list[str]

    @classmethod
    def read(cls, folder: Path, model_config: object) -> _EarlierStage:
        config = json.loads((folder / "config.json").read_text())
        earlier = Profile.from_dict(config["profile"]).model_config(config["kind"])
        if earlier != model_config:
            raise PianoaccError(
                f"{folder}: its model is not the one this run trained ({earlier} against "
                f"{model_config}); export the run without continued_from"
            )
        card = (folder / "MODEL_CARD.md").read_text().split("\n")
        description = card[2] if len(card) > 2 else ""
        start = card.index("## Training") + 1
        end = next((i for i in range(start, len(card)) if card[i].startswith("## ")), len(card))
        section = [line for line in card[start:end]
                   if not line.startswith((_BEST, _VALIDATION)) and line.strip()]
        stages: list[list[str]] = []
        names: list[str] = []
        for line in section:
            if line.startswith("### "):  # an earlier export of several stages
                names.append(line.split(": ", 1)[-1])
                stages.append([])
            elif stages and line.startswith("- "):
                stages[-1].append(line)
        if not stages:  # a run trained in one go
            names = [f"{config['profile']['name']} profile"]
            stages = [[line for line in section if line.startswith("- ")]]
        return cls(config, history_rows(folder), description, stages, names)

    def stages_markdown(self) -> list[str]:
        lines: list[str] = []
        for number, (name, stage) in enumerate(zip(self.names, self.stages, strict=True), 1):
            lines += [f"### Stage {number}: {name}", "", *stage, ""]
        return lines
