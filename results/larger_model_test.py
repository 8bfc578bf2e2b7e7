"""The shipped larger FNet (``fnet-l``) on whole *test* songs: reported, never chosen on.

    KERAS_BACKEND=jax .venv/bin/python results/larger_model_test.py [--songs N]
    .venv/bin/python results/larger_model_test.py --report

``results/larger_model.py --reranker`` judged the scaling campaign's FNet ``l`` (6.9M
parameters), its candidates chosen by a reranker of its own, against the shipped FNet on
the validation split, by the rule of ``results/checkpoint_choice.py`` fixed before it was
trained: it would ship (on 20 and on 40 songs). It ships as ``fnet-l``
(``pretrained/fnet_l/``: the judged weights and their reranker). This script only reports
what that choice gives on test, both models sampled here side by side:

* the critic on the first :data:`critic_test.SONGS` whole test songs (those of
  ``results/critic_test.md``), accompanied as ``pianoacc accompany`` does at the defaults
  (seed 0), from the melody alone and with the annotated chords;
* the teacher-forced loss on the whole test split (nats per target token, both models
  through the same code as the validation loss of ``results/larger_model.md``).

Writes ``results/larger_model_test.json`` and ``.md`` and the model card,
``pretrained/fnet_l/MODEL_CARD.md``; generation is cached as in
``critic_validation.py``, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import critic_test  # noqa: E402  (the same songs)
import critic_validation  # noqa: E402
from augmentation import sampled_on  # noqa: E402
from larger_model import validation_loss  # noqa: E402

from pianoacc_utils.common import write_atomic, write_json  # noqa: E402
from pianoacc_utils.evaluation.critic import accuracy_cell, critic_markdown  # noqa: E402

DECIDES_ON = None
"""The split this script chooses on: none (it only reports); ``tests/test_project.py``
checks that no script chooses on the test split."""

OUT = Path("results/larger_model_test")
MODELS = {"fnet": "the shipped FNet (1.06M parameters)",
          "fnet-l": "FNet `l` (`fnet-l`, 6.86M parameters, its own reranker)"}
SYSTEMS = {f"{name.replace('-', '_')}_{way}": (name, chords)
           for name in MODELS for way, chords in (("melody_only", "estimated"),
                                                  ("lead_sheet", "annotated"))}
"""System name -> (shipped model, chords): each model from the melody alone and given the
annotated chords (a lead sheet)."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/larger_model_test.py"


def losses() -> dict[str, float]:
    """Each model's teacher-forced loss on the whole test split (cached by the weights)."""
    return {name: round(validation_loss(name, "test"), 5) for name in MODELS}


def test_table(report: dict) -> list[str]:
    """Each model's test loss and critic accuracies, a row each (markdown lines)."""
    systems, loss = report["systems"], report["test_loss"]
    lines = ["| model | test loss | critic, melody only | critic, lead sheet |",
             "|---|---|---|---|"]
    for name, described in MODELS.items():
        key = name.replace("-", "_")
        lines.append(f"| {described} | {loss[name]:.4f} | "
                     f"{accuracy_cell(systems[f'{key}_melody_only'])} | "
                     f"{accuracy_cell(systems[f'{key}_lead_sheet'])} |")
    return lines


def markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        "# The larger FNet on whole test songs (reported, not chosen on)",
        "",
        f"Written by `{settings['command']}` ({report['seconds']:.0f} s for the critic); "
        f"adding `--report` rewrites it from `{OUT}.json`. `fnet-l` ships because it was "
        "ahead on the validation split by the rule fixed before it was trained "
        "(`results/larger_model_fnet_l_reranker.md`, 20 songs; "
        "`results/larger_model_fnet_l_reranker_40_songs.md`, 40 songs); this report only "
        f"says what that gives on test. {len(settings['songs'])} whole test songs "
        f"({settings['bars']} bars; the songs of `results/critic_test.md`), accompanied as "
        "`pianoacc accompany` does at the defaults of the time (sampling seed 0, velocity "
        f"temperature {velocity_made_at(settings)}, 8 candidates per window, windows primed "
        "by 6 bars; each model's candidates chosen by its own "
        "reranker: `results/reranker.md`, `results/reranker_fnet_l.md`), both models "
        f"sampled on {sampled_on(settings.get('processor'))}. Critic accuracy on held-out "
        "songs (0.5: indistinguishable; 95% interval from resampling songs; the most "
        "accurate of the three critics counts). Loss: teacher-forced on the whole test "
        "split, nats per target token.",
        "",
        *test_table(report),
    ]
    lines += ["", "The critic's full report (controls and what gives each system away) follows.",
              "", critic_markdown(report)]
    return "\n".join(lines) + "\n"


CARD = Path("pretrained/fnet_l/MODEL_CARD.md")
JUDGED = {20: Path("results/larger_model_fnet_l_reranker.json"),
          40: Path("results/larger_model_fnet_l_reranker_40_songs.json")}
"""The validation judgements that made ``fnet-l`` ship (``results/larger_model.py``)."""
WAIT = Path("benchmarks/results/accompany_wait.json")


def velocity_made_at(settings: dict) -> str:
    """The velocity temperature a report's systems were sampled at, as its ``sampling``
    setting records it: the default of the time (1.4 for the committed report; 1.2 since
    ``results/critic_velocity.md``)."""
    found = re.search(r"velocity_temperature ([0-9.]+)", settings["sampling"])
    if found is None:
        raise ValueError(f"{OUT}.json: no velocity temperature in settings.sampling")
    return found.group(1)


def tenths(seconds: float) -> str:
    """Seconds to a tenth, halves rounded up as the docs round them (26.65: 26.7)."""
    return str(Decimal(str(seconds)).quantize(Decimal("0.1"), ROUND_HALF_UP))


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def card(report: dict) -> str:
    """``pretrained/fnet_l/MODEL_CARD.md``: what the model is, how it was trained, chosen
    on validation and how it does on test, every figure read from a committed file."""
    folder = CARD.parent
    config = json.loads((folder / "config.json").read_text())
    record = json.loads(Path("results/scaling_runs/fnet_l.json").read_text())
    reranker = json.loads(Path("results/reranker_fnet_l.json").read_text())
    judged = {songs: json.loads(path.read_text()) for songs, path in JUDGED.items()}
    wait = json.loads(WAIT.read_text())["labels"]
    larger_wait = wait["fnet-l"]["results"]["default/warm"]
    shipped_wait = wait["shipped-beside-fnet-l"]["results"]["default/warm"]
    budget = next(b for b in record["budgets"] if b["steps"] == config["train"]["steps"])
    train, sittings = config["train"], record["sittings"]
    processors = sorted({s["processor"]["name"] for s in sittings})
    lines = [
        "# fnet-l: the larger FNet accompaniment model",
        "",
        "The scaling campaign's FNet `l` (`docs/training.md`, \"A larger FNet, trained over "
        "sittings\"): the shipped FNet's architecture and data at the width and depth of the "
        f"`cpu` profile, {record['parameters']['total']:,} parameters against the shipped "
        "1,061,315. It is used with `pianoacc accompany melody.mid --checkpoint fnet-l` (or "
        "`--checkpoint fnet-l` to `pianoacc evaluate`); the course's notebooks and the "
        "default stay with the shipped FNet, which is about three times as fast.",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config["model"], indent=2, sort_keys=True),
        "```",
        "",
        f"Data: the shipped FNet's (8-bar segments, hop 8 bars, a fifth of the training "
        "segments re-barred into 3/4 and a fifth into 2/4; the song-level split of POP909, "
        "seed 909, 727/91/91 songs). Windows of 8 bars, each primed by the last "
        f"{config['generation']['overlap_bars']} bars already accompanied, as the shipped "
        "FNet's.",
        "",
        "## Training",
        "",
        f"- `results/scaling.py --sizes l --encoders fnet` over {len(sittings)} sittings "
        f"(`results/scaling_runs/fnet_l.json`): {budget['tokens']:,} target tokens, "
        f"{budget['steps']} optimizer steps of {train['batch_size']} segments "
        f"({budget['epochs']} epochs), peak learning rate {train['learning_rate']} after "
        f"{train['warmup_steps']} warm-up steps ({train['decay']} decay), "
        f"{sittings[0]['precision']} on {sittings[0]['backend'].upper()}",
        f"- hardware: 2 CPU cores ({', '.join(processors)}), no GPU; "
        f"{budget['train_seconds'] / 3600:.1f} h of training",
        "- the shipped weights are the campaign's state at that budget; the campaign resumes "
        "past it (`docs/training.md`)",
        "",
        "## Its own reranker",
        "",
        f"`reranker.npz` beside the weights chooses among the candidates of every window "
        f"(`results/reranker_fnet_l.md`): gradient-boosted trees trained as the shipped "
        f"reranker but on this model's windows of {reranker['songs']} training songs at one "
        f"candidate, held-out accuracy {reranker['held_out_accuracy']:.3f}, AUC "
        f"{reranker['held_out_auc']:.3f}. The shipped reranker learned from the 1M models, "
        "whose notes are shorter than the pianist's; choosing among this model's candidates "
        "it made them longer than the pianist's (`results/larger_model.md`).",
        "",
        "## Chosen on validation",
        "",
        "By the rule of `results/checkpoint_choice.py`, fixed before the model was trained: "
        "it ships if its validation loss is lower, it passes as many of the quality bar's "
        "checks, the critic's accuracy is nowhere more than 0.01 higher and, averaged over "
        "melody only and lead sheet, more than 0.01 lower; against the shipped FNet sampled "
        "again beside it (critic accuracy: 0.5 = indistinguishable, 95% interval over songs):",
        "",
        "| validation songs | validation loss | fnet-l: melody only / lead sheet | shipped FNet "
        "| checks passed | report |",
        "|---|---|---|---|---|---|",
    ]
    for songs, judgement in judged.items():
        critic, loss, bar = judgement["critic"], judgement["validation_loss"], judgement["quality_bar"]
        lines.append(
            f"| {songs} | {loss['continued']:.3f} against {loss['shipped']:.3f} | "
            f"{accuracy_cell(critic['continued']['melody_only'])} / "
            f"{accuracy_cell(critic['continued']['lead_sheet'])} | "
            f"{accuracy_cell(critic['shipped']['melody_only'])} / "
            f"{accuracy_cell(critic['shipped']['lead_sheet'])} | "
            f"{bar['continued']['passed']} and {bar['shipped']['passed']} of "
            f"{bar['continued']['checks']} | `{JUDGED[songs].with_suffix('.md')}` |")
    lines += [
        "",
        "Both margins were just over the rule's 0.01 and well inside the intervals.",
        "",
        "## Test (reported, not chosen on)",
        "",
        f"`{OUT}.md`: {len(report['settings']['songs'])} whole test songs, both models sampled "
        f"side by side on {sampled_on(report['settings'].get('processor'))} at the defaults "
        f"of the time (velocity temperature {velocity_made_at(report['settings'])}).",
        "",
        *test_table(report),
    ]
    lines += [
        "",
        "## Speed",
        "",
        f"`pianoacc accompany` of the 120-bar benchmark melody, warm, at the defaults: "
        f"{tenths(larger_wait['wall_fastest'])} s (median "
        f"{tenths(larger_wait['wall_median'])} s) against {tenths(shipped_wait['wall_fastest'])} "
        f"s (median {tenths(shipped_wait['wall_median'])} s) for the shipped FNet in the same sitting on 2 "
        f"{wait['fnet-l']['machine']['processor']['name']} cores "
        f"(`{WAIT}`, labels `fnet-l` and `shipped-beside-fnet-l`).",
        "",
        "## Files",
        "",
        f"- `model.keras` (SHA-1 {digest(folder / 'model.keras')[:12]}): the campaign's "
        f"state at step {train['steps']} written as a model by `results/larger_model.py`",
        f"- `reranker.npz` (SHA-1 {digest(folder / 'reranker.npz')[:12]}): written by "
        f"`{reranker['command']}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=critic_test.SONGS,
                        help=f"default {critic_test.SONGS}")
    parser.add_argument("--report", action="store_true", help="only rewrite the .md")
    args = parser.parse_args()
    if not args.report:
        measured = losses()  # before the critic's TensorFlow process, which reads the cache
        critic_validation.run("test", args.songs, OUT, COMMAND, __file__, base=SYSTEMS)
        report = json.loads(OUT.with_suffix(".json").read_text())
        report["test_loss"] = measured
        write_json(OUT.with_suffix(".json"), report)
    report = json.loads(OUT.with_suffix(".json").read_text())
    write_atomic(OUT.with_suffix(".md"), markdown(report).encode())
    write_atomic(CARD, card(report).encode())
    critic_validation.log(f"wrote {OUT}.json and .md, and {CARD}")


if __name__ == "__main__":
    main()
