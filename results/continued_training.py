"""More epochs for a shipped model: does training on lower its validation loss?

    .venv/bin/python results/continued_training.py [--kind fnet] [--epochs 4] [--export]

A shipped run (``pretrained/<kind>``) was saved without its optimizer state, so it cannot
be resumed. This run starts from its weights (``training.train(init_weights=...)``) with
a fresh AdamW: the learning rate
warms up over ``--warmup`` steps to the shipped run's last one and falls to zero by a
cosine over ``--epochs`` epochs, on the same data, batches and validation split (all of
it, as in the shipped ``history.csv``). The run lives in
``runs/continued/<kind>-from-epoch-<N>`` (N: the shipped run's epochs) with a step
checkpoint every 50 optimizer steps: run the script again to resume an interrupted run.
Writes its entry (``fnet`` or ``transformer``) of ``results/continued_training.json``:
both histories, the best validation loss of each, and the wall seconds of training.

The finished runs are evaluated as the shipped models are (``docs/results.md``; under
``KERAS_BACKEND=jax``), and ``--report`` writes ``results/continued_training.md`` from
those reports::

    R=runs/continued
    pianoacc evaluate --checkpoint $R/fnet-from-epoch-16/best.keras \\
      --checkpoint $R/transformer-from-epoch-16/best.keras --segments 96 --seeds 0 1 2 \\
      --json results/continued_evaluation.json --markdown results/continued_evaluation.md
    pianoacc evaluate --checkpoint $R/fnet-from-epoch-16/best.keras --segments 96 \\
      --seeds 0 1 2 --no-chord-mask --no-release \\
      --json results/continued_evaluation_no_rules.json \\
      --markdown results/continued_evaluation_no_rules.md
    python results/continued_training.py --report

``--export`` then ships the finished run in place of ``pretrained/<kind>``
(``training.export_run(..., continued_from=...)``: the history, configuration and model
card keep the earlier stage). Ship only what the quality bar accepts (``docs/results.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import keras

from pianoacc_utils import training
from pianoacc_utils.common import processor_name, project_root, write_json
from pianoacc_utils.prepare import load_split, prepare

DECIDES_ON = None
"""The split this script chooses on (reports the continued runs; nothing is chosen here),
``None`` where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on
the test split."""

OUT = Path("results/continued_training.json")
REPORT = Path("results/continued_training.md")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: its validation loss and the minutes since the start."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        print(
            f"epoch {epoch}: loss {logs.get('loss', float('nan')):.4f}, val_loss "
            f"{logs.get('val_loss', float('nan')):.4f} ({(time.time() - self.started) / 60:.1f} min)",
            flush=True,
        )


COLUMNS = (
    ("pianist", "evaluation", "ground_truth"),
    ("FNet, shipped", "evaluation", "fnet"),
    ("FNet, trained on", "continued_evaluation", "fnet"),
    ("Transformer, shipped", "evaluation", "transformer"),
    ("Transformer, trained on", "continued_evaluation", "transformer"),
    ("FNet, no rules, shipped", "evaluation_no_rules", "fnet"),
    ("FNet, no rules, trained on", "continued_evaluation_no_rules", "fnet"),
)
"""(heading, report under results/, system): the shipped models' evaluation beside that of
the models trained on (``pianoacc evaluate`` of the runs' ``best.keras``, same settings)."""


def report_markdown(root: Path) -> str:
    """``results/continued_training.md``: the validation loss of each continued run by epoch,
    then the test-split metrics of the shipped models beside the continued ones (the
    reports of :data:`COLUMNS` that exist)."""
    import result_tables  # beside this script

    runs = json.loads((root / OUT).read_text())
    epochs = max(len(run["continued"]["val_loss"]) for run in runs.values())
    lines = [
        "# Training the shipped models on",
        "",
        (
            "Written by `python results/continued_training.py --report` from "
            "`results/continued_training.json` and the evaluation reports named below."
        ),
        "",
        "## Validation loss (whole validation split, nats per token)",
        "",
        "| model | shipped (best of its epochs) | "
        + " | ".join(f"+{i + 1} epoch{'s' * (i > 0)}" for i in range(epochs)) + " | training |",
        "|---|---|" + "---|" * (epochs + 1),
    ]
    for kind, run in sorted(runs.items()):
        losses = [f"{v:.4f}" for v in run["continued"]["val_loss"]] + ["–"] * epochs
        minutes = f"{run['training_seconds'] / 60:.0f} min" if run.get("training_seconds") else "–"
        lines.append(
            f"| {kind} | {run['shipped']['best_val_loss']:.4f} | " + " | ".join(losses[:epochs])
            + f" | {minutes} |"
        )
    processors = sorted({run["processor"] for run in runs.values() if run.get("processor")})
    if processors:
        lines += ["", f"Training time on {', '.join(processors)}."]
    available = tuple(c for c in COLUMNS if (root / "results" / f"{c[1]}.json").is_file())
    setting = json.loads((root / "results" / "evaluation.json").read_text())["details"]["config"]
    forced = []
    for heading, name, system in available[1:5]:
        model = json.loads((root / "results" / f"{name}.json").read_text())["details"]["models"]
        if system in model:
            forced.append(f"{heading} {model[system]['teacher_forced']['loss']:.3f}")
    lines += ["", "Teacher-forced loss on the test split: " + ", ".join(forced) + "."]
    sampling = ("temperature", "top_k", "top_p", "velocity_temperature", "note_off_bias",
                "candidates")
    configs = {
        name: json.loads((root / "results" / f"{name}.json").read_text())["details"]["config"]
        for _, name, _ in available
    }
    settings = {json.dumps({k: c.get(k) for k in sampling}, sort_keys=True) for c in configs.values()}
    if len(settings) > 1:  # the shipped models' reports were remade at other defaults since
        lines += [
            "",
            "## Test split",
            "",
            "Not compared here: the reports of the models trained on "
            "(`results/continued_evaluation*.json`) were made at the sampling defaults of "
            "their time, and the shipped models' reports have since been remade at other "
            "ones, so their columns would not be alike. Which checkpoint ships is decided "
            "on the validation split: `results/checkpoint_choice.md`.",
            "",
        ]
        return "\n".join(lines) + "\n"
    lines += [
        "",
        (
            f"## Test split, default generation ({setting['segments']} segments, seeds "
            f"{', '.join(map(str, setting['seeds']))})"
        ),
        "",
        "Median over the seeds [min, max] (`results/result_tables.py`); *no rules*: no chord "
        "mask, no note release. Reports: "
        + ", ".join(sorted({f"`results/{c[1]}.json`" for c in available})) + ".",
        "",
        result_tables.table(available, result_tables.README_ROWS).rstrip(),
        "",
    ]
    return "\n".join(lines) + "\n"


def continue_run(kind: str, epochs: int, warmup: int, earlier: dict,
                 transpositions: tuple[int, ...] = (0,)) -> tuple[dict, float]:
    """Train (or resume, or read back) ``kind``'s continuation from the shipped weights for
    ``epochs`` epochs of the shipped run's data, that data augmented with
    ``transpositions`` (semitones; the train split only) when other than ``(0,)``. A
    shipped run that was continued itself is continued as its first stage was. Returns
    the run's report entry (see the module docstring) and its training seconds over every
    sitting; ``earlier``, the entry an earlier sitting wrote (or ``{}``), gives theirs."""
    root = project_root()
    shipped = root / "pretrained" / kind
    saved = json.loads((shipped / "config.json").read_text())
    # A shipped run that was itself continued: its first stage's profile, and the learning
    # rate that stage ended with, as for a run of one stage (not the 0 a cosine ends at).
    base = training.Profile.from_dict(saved.get("continued_from", saved)["profile"])
    shipped_history = training.read_history(shipped)
    peak = float(shipped_history["lr"][base.train.epochs - 1])
    base = dataclasses.replace(
        base, prepare=dataclasses.replace(base.prepare, transpositions=tuple(transpositions))
    )
    folder = prepare(base.prepare, progress=False)
    settings = base.train
    steps_per_epoch = training.SegmentBatches(
        load_split(folder, "train"),
        base.model_config(kind),
        batch_size=settings.batch_size,
        shuffle=True,
        seed=settings.seed,
        length_multiple=settings.length_multiple,
        pool_batches=settings.pool_batches,
        harmony_dropout=settings.harmony_dropout,
    ).batches_per_epoch
    augmented = tuple(transpositions) != (0,)
    profile = dataclasses.replace(
        base,
        name=f"{base.name}-continued",
        description=f"{base.description}; continued from the shipped {kind} weights"
        + (f", its training data transposed by {list(transpositions)} semitones" if augmented else ""),
        train=dataclasses.replace(
            settings,
            epochs=epochs,
            learning_rate=peak,
            warmup_steps=warmup,
            decay="cosine",
            decay_steps=epochs * steps_per_epoch,
            checkpoint_steps=50,
        ),
    )
    name = f"{kind}-from-epoch-{len(shipped_history['epoch'])}"
    if augmented:
        name += f"-transposed-{-min(transpositions)}-down-{max(transpositions)}-up"
    out = root / "runs" / "continued" / name
    # A resumed run adds to the seconds of its earlier sittings; a run started afresh
    # (no state in its folder) does not inherit those of a run made elsewhere.
    resuming = (out / "training_state.json").is_file()
    seconds = earlier.get("training_seconds", 0.0) if resuming and earlier.get("run") == out.name else 0.0
    began = time.time()
    if not training.is_finished_run(out, profile, kind):
        training.train(
            profile, kind, out, resume=resuming, progress=False, data=folder,
            callbacks=[EpochLog()], init_weights=None if resuming else shipped / "model.keras",
        )
        seconds += time.time() - began
    history = training.read_history(out)
    report = {
        "command": f"python results/continued_training.py --kind {kind} --epochs {epochs}",
        "kind": kind,
        "run": out.name,
        "steps_per_epoch": steps_per_epoch,
        "transpositions": list(transpositions),
        "settings": dataclasses.asdict(profile.train),
        "finished": training.is_finished_run(out, profile, kind),
        "training_seconds": round(seconds, 1),
        "processor": processor_name(),
        "shipped": {
            "epochs": len(shipped_history["epoch"]),
            "val_loss": shipped_history["val_loss"],
            "best_val_loss": min(shipped_history["val_loss"]),
        },
        "continued": {
            "epochs": len(history["epoch"]),
            "loss": history["loss"],
            "val_loss": history["val_loss"],
            "lr": history["lr"],
            "best_val_loss": min(history["val_loss"], default=None),
        },
    }
    return report, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="fnet", choices=("fnet", "transformer"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps of the fresh optimizer")
    parser.add_argument("--export", action="store_true",
                        help="ship the finished run as pretrained/<kind> (after the quality bar)")
    parser.add_argument("--report", action="store_true",
                        help="only write results/continued_training.md from the reports")
    args = parser.parse_args(argv)

    root = project_root()
    if args.report:
        (root / REPORT).write_text(report_markdown(root))
        print(f"wrote {REPORT}")
        return 0
    previous = json.loads((root / OUT).read_text()) if (root / OUT).is_file() else {}
    report, seconds = continue_run(args.kind, args.epochs, args.warmup, previous.get(args.kind, {}))
    shipped, out = root / "pretrained" / args.kind, root / "runs" / "continued" / report["run"]
    write_json(root / OUT, {**previous, args.kind: report})
    print(
        f"shipped best val_loss {report['shipped']['best_val_loss']:.4f}; continued "
        f"{report['continued']['best_val_loss']} after {report['continued']['epochs']} of "
        f"{args.epochs} epochs; wrote {OUT}"
    )
    if args.export:
        if not report["finished"]:
            raise SystemExit(f"{out}: not finished; run the script again without --export first")
        card = (shipped / "MODEL_CARD.md").read_text()
        evaluation = card.split("## Evaluation", 1)[1] if "## Evaluation" in card else None
        training.export_run(
            out, shipped, wall_seconds=seconds, continued_from=shipped,
            hardware=f"{os.cpu_count()} CPU cores ({processor_name()}), no GPU",
            evaluation_markdown=evaluation,
        )
        print(f"shipped {out} as {shipped}: re-run the evaluation and the result tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
