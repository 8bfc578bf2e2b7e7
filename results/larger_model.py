"""The larger FNet of the scaling campaign, judged on validation against the shipped FNet.

    KERAS_BACKEND=jax .venv/bin/python results/larger_model.py [--songs N]
    .venv/bin/python results/larger_model.py --report

``results/scaling.py`` trains FNet ``l`` (the ``cpu`` profile's width and depth, 6.9M
parameters against the shipped 1.06M) on the shipped model's data over several sittings,
saving its state in ``<cache>/scaling/fnet_l/``. This script takes the state saved last,
writes its weights as a model of their own (``runs/larger/fnet_l-<tokens>/model.keras``,
with a ``config.json`` that primes each window as the shipped FNet's are), and measures it
against the shipped FNet on the validation split only, as ``results/checkpoint_choice.py``
measures a continued run:

* the teacher-forced loss on the whole validation split, both models through the same
  code (``training.scaling.validation_loss``, nats per target token);
* the quality bar's checks on :data:`checkpoint_choice.SEGMENTS` 32-bar validation segments
  from the melody alone;
* the critic on the first :data:`checkpoint_choice.SONGS` whole validation songs at the
  defaults, from the melody alone and with the annotated chords.

The rule of :func:`checkpoint_choice.choose`, fixed before the larger model was trained,
says whether it would ship. Writes ``results/larger_model.json`` and ``.md``; test
outputs play no part.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checkpoint_choice  # noqa: E402  (the same measures and rule)
import critic_validation  # noqa: E402
import scaling as campaign  # noqa: E402  (the campaign's data, batches and saved runs)
from augmentation import sampled_on  # noqa: E402

from pianoacc_utils import generation  # noqa: E402
from pianoacc_utils.common import cache_dir, write_atomic, write_json  # noqa: E402
from pianoacc_utils.evaluation.critic import accuracy_cell  # noqa: E402

DECIDES_ON = "validation"
"""The split this script chooses on (whether the larger model would ship), ``None`` where
it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

OUT = Path("results/larger_model")
KIND, SIZE = "fnet", "l"
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/larger_model.py"


def saved_state() -> tuple[Path, dict]:
    """The campaign's last saved state of FNet ``l``: its ``.keras`` file and counters."""
    folder = campaign.CACHE / f"{KIND}_{SIZE}"
    path = folder / campaign.scaling.BUDGET_STATE
    if not path.is_file():
        raise SystemExit(f"{path}: no saved run; train it first (docs/training.md, "
                         "\"A larger FNet, trained over sittings\")")
    state = json.loads(path.read_text())
    return folder / state["checkpoint"], state


def millions(tokens: int) -> str:
    return f"{tokens / 1e6:.1f}M"


def candidate(source: Path, state: dict) -> Path:
    """The saved state's weights written as a model of their own (no optimizer), beside a
    ``config.json`` whose window is the shipped FNet's; made once per saved state."""
    folder = Path("runs/larger") / f"{KIND}_{SIZE}-{millions(state['seen'])}-step-{state['steps']}"
    model_path = folder / "model.keras"
    if model_path.is_file():
        return model_path
    import keras

    model = keras.saving.load_model(source, compile=False)
    folder.mkdir(parents=True, exist_ok=True)
    window = generation.checkpoint_window(KIND)
    config = {
        "kind": KIND,
        "model": dataclasses.asdict(model.config),
        "prepare": dataclasses.asdict(campaign.SMALL.prepare),
        "train": {**dataclasses.asdict(campaign.SETTINGS), "steps": state["steps"],
                  "tokens": state["seen"], "made_by": "results/scaling.py"},
        "generation": {"overlap_bars": window.overlap_bars,
                       "chosen_on": "the shipped FNet's (validation)"},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    partial = folder / "model.partial.keras"
    model.save(partial)
    partial.replace(model_path)
    return model_path


def validation_loss(checkpoint: str, split: str = "validation") -> float:
    """``checkpoint``'s loss on the whole validation split (or ``split``; nats per target
    token), as the campaign measures it; cached by the weights."""
    weights = hashlib.sha1(generation.resolve_checkpoint(checkpoint).read_bytes()).hexdigest()
    name = f"loss-{weights[:16]}" if split == "validation" else f"loss-{split}-{weights[:16]}"
    path = cache_dir() / "larger_model" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())["loss"]
    import keras

    from pianoacc_utils.prepare import load_split, prepare
    from pianoacc_utils.training.loss import compile_model

    model = keras.saving.load_model(generation.resolve_checkpoint(checkpoint), compile=False)
    compile_model(model, campaign.SETTINGS)
    data = load_split(prepare(campaign.SMALL.prepare, progress=False), split)
    loss = campaign.scaling.validation_loss(model, campaign.batches(data, model.config, False))
    write_json(path, {"checkpoint": checkpoint, "loss": loss})
    return loss


def out_path(reranker: Path | None, songs: int = checkpoint_choice.SONGS) -> Path:
    """Where the judgement is written (``checkpoint_choice.judgement_path``)."""
    return checkpoint_choice.judgement_path(OUT, reranker, songs)


def judge(songs: int, reranker: Path | None = None) -> dict:
    """The larger model against the shipped FNet, its candidates chosen by ``reranker``'s
    trees (``None``: the shipped reranker's)."""
    source, state = saved_state()
    checkpoint = str(candidate(source, state))
    losses = {"shipped": round(validation_loss(KIND), 5),
              "continued": round(validation_loss(checkpoint), 5)}
    record = json.loads((campaign.RUNS / f"{KIND}_{SIZE}.json").read_text())
    scratch = Path(critic_validation.cache_dir()) / out_path(reranker, songs).name
    arguments = () if reranker is None else ("--reranker", str(reranker))
    judged, critic_report = checkpoint_choice.judge_against_shipped(
        KIND, checkpoint, "larger", losses, songs, scratch, COMMAND, __file__, arguments,
        None if reranker is None else str(reranker))
    report = {
        "checkpoint": checkpoint,
        "reranker": checkpoint_choice.own_reranker(reranker),
        "training": {"tokens": state["seen"], "steps": state["steps"],
                     "parameters": record["parameters"]["total"],
                     "record": f"results/scaling_runs/{KIND}_{SIZE}.json",
                     "budgets": {row["budget"]: row["val_loss"] for row in record["budgets"]}},
        "validation_loss": losses,
        **judged,
        "critic_report": critic_report,
    }
    write_json(out_path(reranker, songs).with_suffix(".json"), report)
    return report


def markdown(report: dict) -> str:
    settings = report["critic_report"]["settings"]
    training, loss = report["training"], report["validation_loss"]
    critic, bar = report["critic"], report["quality_bar"]
    shipped = json.loads(campaign.OUT.read_text())["shipped_runs"][KIND]
    rows = (("shipped", f"FNet as shipped: {shipped['parameters'] / 1e6:.2f}M parameters, "
                        f"{millions(shipped['tokens'])} tokens ({shipped['epochs']} epochs)"),
            ("continued", f"FNet `l`: {training['parameters'] / 1e6:.2f}M parameters, "
                          f"{millions(training['tokens'])} tokens ({training['steps']} steps)"))
    own = report.get("reranker")
    songs = len(settings["songs"])
    command = COMMAND + (f" --reranker {own['file']}" if own else "")
    if songs != checkpoint_choice.SONGS:
        command += f" --songs {songs}"
    json_path = out_path(Path(own["file"]) if own else None, songs).with_suffix(".json")
    lines = [
        "# The larger FNet against the shipped one (validation split)"
        + (", each with a reranker of its own" if own else ""),
        "",
        f"Written by `{command}`; adding `--report` rewrites it from "
        f"`{json_path}`. The larger model is the scaling campaign's FNet `l` "
        f"(`{training['record']}`) as its last sitting left it, written out as "
        f"`{report['checkpoint']}` (git-ignored). Measures as in `results/checkpoint_choice.md`: "
        "the teacher-forced loss on the whole validation split (nats per target token, both "
        "models through the same code), the quality bar's checks "
        f"({checkpoint_choice.SEGMENTS} validation segments of 32 bars, melody only; the "
        f"checks the pianist there passes) and the critic on {len(settings['songs'])} whole "
        f"validation songs ({settings['bars']} bars) at the defaults, each window primed by "
        f"{report['overlap_bars']} bars as the shipped FNet's, from the melody alone and with "
        "the annotated chords (0.5: indistinguishable; 95% interval from resampling songs; the "
        "most accurate of the three critics counts), every system sampled on "
        f"{sampled_on(settings.get('processor'))}. Test outputs play no part.",
        "",
        *([f"The larger model's candidates are chosen by a reranker of its own, trained as "
           "the shipped one but on the larger model's windows in place of the shipped models' "
           f"(`{own['report']}`; trees in `{own['file']}`, git-ignored); the shipped FNet's by "
           "the shipped reranker (`results/reranker.md`). The same model with the shipped "
           "reranker: `results/larger_model.md`.", ""] if own else []),
        "| model | validation loss | checks passed | critic, melody only | critic, lead sheet |",
        "|---|---|---|---|---|",
    ]
    for which, described in rows:
        lines.append(f"| {described} | {loss[which]:.4f} | {bar[which]['passed']} of "
                     f"{bar[which]['checks']} | {accuracy_cell(critic[which]['melody_only'])} | "
                     f"{accuracy_cell(critic[which]['lead_sheet'])} |")
    ships = "the larger model" if report["choice"] == "continued" else "the shipped FNet"
    lines += ["", f"By the rule of `results/checkpoint_choice.py`, **{ships}** would ship.", "",
              "The critic's full report (controls and what gives each system away) follows.",
              "", critic_validation.critic.critic_markdown(report["critic_report"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=checkpoint_choice.SONGS,
                        help=f"validation songs for the critic (default {checkpoint_choice.SONGS})")
    parser.add_argument("--reranker", type=Path, default=None,
                        help="choose the larger model's candidates with this reranker's trees "
                             "(results/reranker.py --checkpoint) instead of the shipped one's")
    parser.add_argument("--report", action="store_true", help="only rewrite the .md")
    args = parser.parse_args()
    out = out_path(args.reranker, args.songs)
    report = (json.loads(out.with_suffix(".json").read_text()) if args.report
              else judge(args.songs, args.reranker))
    write_atomic(out.with_suffix(".md"), markdown(report).encode())
    critic_validation.log(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
