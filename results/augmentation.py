"""Data augmentation as a lever: a shipped model trained on with its data in more keys, judged on validation.

    .venv/bin/python results/augmentation.py [--kind fnet] [--transpose 2] [--epochs 1]
    KERAS_BACKEND=jax .venv/bin/python results/augmentation.py --judge [--songs N] [--reranker FILE]
    .venv/bin/python results/augmentation.py --report [--songs N] [--reranker FILE]

The shipped models saw each training song in its own key only (``transpositions [0]``).
The first command trains ``kind`` on from its shipped weights, as
``results/continued_training.py`` does (a fresh AdamW warming up to the shipped run's last
learning rate, then a cosine to zero over the run), on the same songs transposed by every
shift from ``-transpose`` to ``+transpose`` semitones (the train split only; validation
keeps its keys). ``--transpose 2`` over one epoch gives 5 keys of every segment: the
tokens of 5 epochs of the shipped data, against the 4 epochs of the continuation without
transposing (``results/continued_training.json``, the control). The run lives in
``runs/continued/<kind>-from-epoch-16-transposed-<K>-down-<K>-up`` and resumes.

``--judge`` then measures, on the validation split only, what ``results/checkpoint_choice.py``
measures: the best teacher-forced validation loss, the quality bar's checks on
:data:`checkpoint_choice.SEGMENTS` 32-bar segments from the melody alone, and the critic on
the same whole validation songs (the cache of ``results/critic_validation.py`` is shared), at
the defaults, each window primed as the shipped model's are. The rule of
:func:`checkpoint_choice.choose` says whether the run would ship in place of the shipped
model; what it adds over training on without transposing is read against the control's loss.
Writes ``results/augmentation.json`` and ``.md``; with ``--reranker FILE`` (trees trained on
the transposed run's own samples, ``results/reranker.py --checkpoint``) or another number
of songs, a report beside them (:func:`out_path`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checkpoint_choice  # noqa: E402  (the same measures and rule)
import continued_training  # noqa: E402  (the same continuation)
import critic_validation  # noqa: E402

from pianoacc_utils.common import project_root, write_atomic, write_json  # noqa: E402
from pianoacc_utils.evaluation.critic import accuracy_cell  # noqa: E402

DECIDES_ON = "validation"
"""The split this script chooses on (whether the transposed run would ship), ``None`` where
it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

OUT = Path("results/augmentation")
CHORDS = checkpoint_choice.CHORDS
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/augmentation.py --judge"


def train(kind: str, transpose: int, epochs: int, warmup: int) -> dict:
    """Train (or resume) the transposed continuation; its entry of ``augmentation.json``."""
    path = OUT.with_suffix(".json")
    previous = json.loads(path.read_text()) if path.is_file() else {}
    report, _ = continued_training.continue_run(
        kind, epochs, warmup, previous.get(kind, {}).get("training", {}),
        transpositions=tuple(range(-transpose, transpose + 1)),
    )
    report["command"] = (f"python results/augmentation.py --kind {kind} --transpose {transpose} "
                         f"--epochs {epochs}")
    write_json(path, {**previous, kind: {**previous.get(kind, {}), "training": report}})
    return report


def out_path(reranker: Path | None, songs: int = critic_validation.SONGS) -> Path:
    """Where a judgement is written (``checkpoint_choice.judgement_path``)."""
    return checkpoint_choice.judgement_path(OUT, reranker, songs)


def judge(kind: str, songs: int, reranker: Path | None = None) -> dict:
    """The validation measures of the shipped model and the finished transposed run, and
    the rule's choice between them (``augmentation.json``'s ``kind`` entry, ``judged``;
    with ``reranker``, the file of trees that chooses among the transposed run's
    candidates, or another number of ``songs``, a report of its own: :func:`out_path`)."""
    path = out_path(reranker, songs).with_suffix(".json")
    entry = json.loads(OUT.with_suffix(".json").read_text())[kind]
    entry = {"training": entry["training"]}
    training = entry["training"]
    if not training["finished"]:
        raise SystemExit(f"{training['run']}: not finished; train it first ({training['command']})")
    checkpoint = f"runs/continued/{training['run']}/best.keras"
    control = json.loads((project_root() / checkpoint_choice.TRAINING).read_text())[kind]
    losses = {"shipped": training["shipped"]["best_val_loss"],
              "continued": training["continued"]["best_val_loss"]}
    scratch = Path(critic_validation.cache_dir()) / out_path(reranker, songs).name
    arguments = ("--judge", "--kind", kind)
    if reranker is not None:
        arguments += ("--reranker", str(reranker))
    judged, critic_report = checkpoint_choice.judge_against_shipped(
        kind, checkpoint, "transposed", losses, songs, scratch, COMMAND, __file__, arguments,
        None if reranker is None else str(reranker))
    judged = {"validation_loss": {**losses, "control": control["continued"]["best_val_loss"],
                                  "control_epochs": control["continued"]["epochs"]},
              **judged}
    entry["judged"] = judged
    previous = json.loads(path.read_text()) if path.is_file() else {}
    report = {**previous, kind: entry, "critic_report": critic_report}
    if reranker is not None:
        report["reranker"] = checkpoint_choice.own_reranker(reranker)
    write_json(path, report)
    return report


def sampled_on(processor: dict | None) -> str:
    """The processor a critic report's systems were sampled on, in words."""
    if not processor:
        return "a processor not recorded"
    units = [name for name, key in (("AVX-512", "avx512f"), ("AMX", "amx_bf16")) if processor[key]]
    return f"{processor['name']} ({', '.join(units) or 'neither AVX-512 nor AMX'})"


def markdown(report: dict) -> str:
    settings = report["critic_report"]["settings"]
    own = report.get("reranker")
    songs = len(settings["songs"])
    options = (f" --reranker {own['file']}" if own else "") + (
        f" --songs {songs}" if songs != critic_validation.SONGS else "")
    json_path = out_path(Path(own["file"]) if own else None, songs).with_suffix(".json")
    lines = [
        "# Data augmentation: the shipped model trained on in more keys (validation split)"
        + (", each with a reranker of its own" if own else ""),
        "",
        f"Written by `{COMMAND}{options}` after the training command below; "
        f"`python results/augmentation.py --report{options}` rewrites it from `{json_path}`. "
        f"Measures as in `results/checkpoint_choice.md`: the best teacher-forced validation loss "
        f"(whole validation split, nats per token), the quality bar's checks "
        f"({checkpoint_choice.SEGMENTS} validation segments of 32 bars, melody only; the checks "
        f"the pianist there passes) and the critic on {len(settings['songs'])} whole validation "
        f"songs ({settings['bars']} bars) at the defaults, from the melody alone and with the "
        "annotated chords (0.5: indistinguishable; 95% interval from resampling songs; the most "
        "accurate of the three critics counts), every system sampled on "
        f"{sampled_on(settings.get('processor'))}. Test outputs play no part.",
        "",
        *([f"The transposed run's candidates are chosen by a reranker of its own, trained as "
           "the shipped one but on the transposed run's windows in place of the shipped "
           f"models' (`{own['report']}`; trees in `{own['file']}`, git-ignored); the shipped "
           "model's by the shipped reranker (`results/reranker.md`). The same run with the "
           "shipped reranker: `results/augmentation.md`.", ""] if own else []),
        "| model | training | validation loss | checks passed | critic, melody only "
        "| critic, lead sheet |",
        "|---|---|---|---|---|---|",
    ]
    for kind, entry in report.items():
        if kind in ("critic_report", "reranker") or "judged" not in entry:
            continue
        training, judged = entry["training"], entry["judged"]
        loss, critic, bar = judged["validation_loss"], judged["critic"], judged["quality_bar"]
        keys = training["transpositions"]
        steps = training["steps_per_epoch"] * training["settings"]["epochs"]
        rows = (
            ("shipped", f"{training['shipped']['epochs']} epochs, its own keys",
             f"{loss['shipped']:.4f}"),
            ("continued", f"then {training['settings']['epochs']} epoch"
             f"{'s' * (training['settings']['epochs'] > 1)} of {len(keys)} keys "
             f"({min(keys):+d} to {max(keys):+d} semitones; {steps} steps, "
             f"{training['training_seconds'] / 60:.0f} min on {training['processor']})",
             f"{loss['continued']:.4f}"),
        )
        for which, described, value in rows:
            lines.append(
                f"| {kind} | {described} | {value} | {bar[which]['passed']} of "
                f"{bar[which]['checks']} | {accuracy_cell(critic[which]['melody_only'])} | "
                f"{accuracy_cell(critic[which]['lead_sheet'])} |"
            )
        lines.append(
            f"| {kind} | control: then {loss['control_epochs']} epochs of its own keys "
            f"(`results/continued_training.json`) | {loss['control']:.4f} | | | |"
        )
        ships = "the transposed run" if judged["choice"] == "continued" else "the shipped model"
        lines += ["", f"- {kind}: by the rule of `results/checkpoint_choice.py`, **{ships}** "
                  f"would ship (windows primed by {judged['overlap_bars']} bars, as the "
                  "shipped model's)."]
    lines += ["", "The critic's full report (controls and what gives each system away) follows.",
              "", critic_validation.critic.critic_markdown(report["critic_report"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="fnet", choices=checkpoint_choice.KINDS)
    parser.add_argument("--transpose", type=int, default=2, metavar="K",
                        help="train on every shift from -K to +K semitones (default 2)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the transposed data")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps (default 200)")
    parser.add_argument("--judge", action="store_true", help="measure the finished run on validation")
    parser.add_argument("--songs", type=int, default=critic_validation.SONGS,
                        help=f"validation songs for the critic (default {critic_validation.SONGS})")
    parser.add_argument("--reranker", type=Path, default=None,
                        help="with --judge or --report: choose the transposed run's candidates "
                             "with this reranker's trees (results/reranker.py --checkpoint) "
                             "instead of the shipped one's")
    parser.add_argument("--report", action="store_true", help=f"only rewrite {OUT}.md")
    args = parser.parse_args()
    if args.report or args.judge:
        out = out_path(args.reranker, args.songs)
        report = (judge(args.kind, args.songs, args.reranker) if args.judge
                  else json.loads(out.with_suffix(".json").read_text()))
        write_atomic(out.with_suffix(".md"), markdown(report).encode())
        critic_validation.log(f"wrote {out}.json and .md")
        return
    if args.transpose < 1:
        raise SystemExit(f"--transpose {args.transpose}: expected 1 or more semitones")
    report = train(args.kind, args.transpose, args.epochs, args.warmup)
    print(f"{args.kind}: best validation loss {report['continued']['best_val_loss']} after "
          f"{report['continued']['epochs']} of {args.epochs} epochs; wrote {OUT}.json")


if __name__ == "__main__":
    main()
