"""Which checkpoint ships: the 16-epoch models or the ones trained on, chosen on validation.

    KERAS_BACKEND=jax .venv/bin/python results/checkpoint_choice.py [--songs N]

The shipped FNet and Transformer were trained for 16 epochs; ``results/continued_training.py``
trains each for 4 more epochs from its weights (``runs/continued/<kind>-from-epoch-16``).
The choice between them was once made on test-split outputs; here it is made on the
*validation* split only, with two measures:

* the teacher-forced validation loss of each run (``results/continued_training.json``);
* the critic of ``evaluation.critic`` on the first :data:`SONGS` whole validation songs,
  accompanied as ``pianoacc accompany`` does at the defaults (reranked candidates
  included; the committed report was made when each window added 6 bars, before
  ``results/critic_overlap.py``), from the melody alone and with a lead sheet: the same
  songs, seed and critic as ``results/critic_validation.py``, whose generation cache this
  run shares;
* the quality bar's checks on :data:`SEGMENTS` 32-bar validation segments from the
  melody alone (as ``results/critic_rerank.py``), counting the checks the pianist of
  those segments passes.

The rule, fixed before any result was seen (:func:`choose`): a continued model ships
only if its validation loss is lower, it passes at least as many of the quality bar's
checks, *and* the critic tells it from the pianist less often, by more than
:data:`EQUAL_WITHIN` on the mean of the two chord settings, without being told apart
more often in either of them by more than that. Otherwise the shipped model stays. Only finished continued runs are judged; one still training is reported as
such. Writes results/checkpoint_choice.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import critic_validation  # noqa: E402  (the same songs, cache and critic)
from critic_rerank import checks_the_pianist_passes  # noqa: E402  (the same counting)

from pianoacc_utils import evaluation, generation  # noqa: E402
from pianoacc_utils.backends.exported import package_fingerprint  # noqa: E402
from pianoacc_utils.common import cache_dir, project_root, write_atomic, write_json  # noqa: E402
from pianoacc_utils.evaluation.critic import accuracy_cell  # noqa: E402

DECIDES_ON = "validation"
"""The split this script chooses on (which checkpoint ships), ``None`` where it chooses
nothing; ``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/checkpoint_choice")
SONGS = critic_validation.SONGS
SEGMENTS = 32
"""32-bar validation segments of the quality-bar check (as ``results/critic_rerank.py``)."""
EQUAL_WITHIN = 0.01
"""Critic accuracies this close count as equal (as in ``results/critic_rerank.py``)."""
CHORDS = {"melody_only": "estimated", "lead_sheet": "annotated"}
KINDS = ("fnet", "transformer")
TRAINING = Path("results/continued_training.json")
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/checkpoint_choice.py"


def continued_checkpoint(kind: str) -> Path | None:
    """The best checkpoint of ``kind``'s continued run, ``None`` when the run is missing
    or has not done all its epochs (its own ``training_state.json`` says so: a run still
    training already has a ``best.keras`` of the epochs so far)."""
    training = json.loads((project_root() / TRAINING).read_text()).get(kind, {})
    run = project_root() / "runs" / "continued" / training.get("run", "-")
    state = run / "training_state.json"
    done = json.loads(state.read_text()).get("epochs_done", 0) if state.is_file() else 0
    epochs = training.get("settings", {}).get("epochs")
    best = run / "best.keras"
    return best if epochs and done >= epochs and best.is_file() else None


def quality_bar(
    checkpoint: str, overlap: int = critic_validation.LEGACY_OVERLAP, reranker: str | None = None
) -> dict:
    """The quality bar's checks that ``checkpoint`` passes on :data:`SEGMENTS` validation
    segments from the melody alone, at the defaults, each window primed by ``overlap`` bars
    (by default those of the time this choice was made); counted over the checks the pianist
    of those segments passes, the others listed. Cached by the weights, the reranker, the
    package's source, the processor and the overlap (in the key only when not the legacy
    one). ``reranker``: the file of the reranker that chooses among candidates (``None``:
    the shipped one)."""
    config = evaluation.EvaluationConfig(
        split="validation", segments=SEGMENTS, chords="estimated", copy_check=False,
        critic=False, overlap_bars=overlap, reranker=reranker,
    )
    weights = hashlib.sha1(generation.resolve_checkpoint(checkpoint).read_bytes()).hexdigest()
    legacy = overlap == critic_validation.LEGACY_OVERLAP
    described = json.dumps({"weights": weights, "config": {k: v for k, v in vars(config).items()
                                                      if (k != "overlap_bars" or not legacy)
                                                      and (k != "reranker" or v is not None)},
                            "reranker": critic_validation.reranker_digest(reranker),
                            "package": package_fingerprint(),
                            "processor": critic_validation.processor()},
                           sort_keys=True, default=str)
    path = cache_dir() / "checkpoint_choice" / f"bar-{hashlib.sha1(described.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    report = evaluation.evaluation_report([checkpoint], config, teacher_forced=False)
    (name,) = report["details"]["models"]
    result = checks_the_pianist_passes(report, name)
    write_json(path, result)
    return result


def choose(
    shipped: dict[str, float], continued: dict[str, float], losses: dict, checks: dict
) -> str:
    """``"continued"`` or ``"shipped"`` by the rule of the module docstring: critic
    accuracies per chord setting, validation losses and quality-bar checks passed, each
    ``{"shipped", "continued"}``."""
    if losses["continued"] >= losses["shipped"] or checks["continued"] < checks["shipped"]:
        return "shipped"
    mean = lambda accuracy: sum(accuracy.values()) / len(accuracy)  # noqa: E731
    if any(continued[c] > shipped[c] + EQUAL_WITHIN for c in CHORDS):
        return "shipped"
    return "continued" if mean(continued) < mean(shipped) - EQUAL_WITHIN else "shipped"


def judgement_path(out: Path, reranker: Path | None, songs: int) -> Path:
    """Where a judgement against the shipped model is written: ``out``, or beside it for a
    reranker of the judged model's own (``results/reranker.py --checkpoint``) or another
    number of songs than :data:`SONGS`."""
    name = out.name if reranker is None else f"{out.name}_{reranker.stem}_reranker"
    if songs != SONGS:
        name += f"_{songs}_songs"
    return out.with_name(name)


def own_reranker(reranker: Path | None) -> dict | None:
    """A judgement's record of the judged model's own reranker: its file, digest and
    training report (``None``: it was reranked by the shipped one)."""
    if reranker is None:
        return None
    return {"file": str(reranker), "sha1": critic_validation.reranker_digest(reranker),
            "report": f"results/reranker_{reranker.stem}.md"}


def judge_against_shipped(
    kind: str, checkpoint: str, label: str, losses: dict, songs: int, scratch: Path,
    command: str, script: str, arguments: tuple[str, ...], reranker: str | None = None,
) -> tuple[dict, dict]:
    """``checkpoint`` (a model of ``kind`` other than the shipped one) measured against the
    shipped ``kind`` on validation as :func:`decisions` measures, and the rule's choice:
    both quality bars, the critic on the first ``songs`` validation songs (the shipped
    model's systems and ``<kind>_<label>_<chords>``, each window primed as the shipped
    model's; report in ``scratch`` .json and .md) and ``losses`` (``{"shipped",
    "continued"}``, the caller's). ``script`` with ``arguments`` is re-run in a TensorFlow
    process for the critic (:func:`critic_validation.run`), so everything before the critic
    must be cached by then: the quality bars are. Returns (the judgement, the critic's
    report). ``reranker``: the file of the reranker that chooses among ``checkpoint``'s
    candidates (``None``: the shipped one)."""
    overlap = generation.checkpoint_window(kind).overlap_bars
    names = {c: (f"{kind}_{c}", f"{kind}_{label}_{c}") for c in CHORDS}
    own = {"reranker": reranker} if reranker is not None else {}
    extra = {names[c][1]: (checkpoint, chords, {"overlap_bars": overlap, **own})
             for c, chords in CHORDS.items()}
    bars = {"shipped": quality_bar(kind, overlap),
            "continued": quality_bar(checkpoint, overlap, reranker)}
    shipped = {name: system for name, system in critic_validation.SYSTEMS.items()
               if system[0] == kind}  # the other kind's systems play no part
    critic_validation.run("validation", songs, scratch, command, script, extra,
                          arguments=arguments, base=shipped)
    critic_report = json.loads(scratch.with_suffix(".json").read_text())
    systems = critic_report["systems"]
    critic = {which: {c: {k: systems[names[c][i]][k]
                          for k in ("accuracy", "accuracy_lo", "accuracy_hi", "critic")}
                      for c in CHORDS}
              for i, which in enumerate(("shipped", "continued"))}
    accuracy = {w: {c: critic[w][c]["accuracy"] for c in CHORDS} for w in critic}
    checks = {w: bars[w]["passed"] for w in bars}
    judged = {"critic": critic, "quality_bar": bars, "overlap_bars": overlap,
              "choice": choose(accuracy["shipped"], accuracy["continued"], losses, checks)}
    return judged, critic_report


def decisions(critic_report: dict, bars: dict) -> dict:
    """Per model kind: both validation losses, both critics per chord setting (with
    intervals), both quality bars (``bars``: kind -> shipped/continued ->
    :func:`quality_bar`), and the choice; or why there is none yet."""
    training = json.loads((project_root() / TRAINING).read_text())
    systems = critic_report["systems"]
    out = {}
    for kind in KINDS:
        names = {c: (f"{kind}_{c}", f"{kind}_continued_{c}") for c in CHORDS}
        if not all(n in systems for pair in names.values() for n in pair):
            out[kind] = {"choice": None, "why": "the continued run is not finished"}
            continue
        losses = {
            "shipped": training[kind]["shipped"]["best_val_loss"],
            "continued": training[kind]["continued"]["best_val_loss"],
        }
        critic = {
            which: {c: {k: systems[names[c][i]][k]
                        for k in ("accuracy", "accuracy_lo", "accuracy_hi", "critic")}
                    for c in CHORDS}
            for i, which in enumerate(("shipped", "continued"))
        }
        accuracy = {w: {c: critic[w][c]["accuracy"] for c in CHORDS} for w in critic}
        checks = {w: bars[kind][w]["passed"] for w in ("shipped", "continued")}
        out[kind] = {
            "validation_loss": losses,
            "critic": critic,
            "quality_bar": bars[kind],
            "choice": choose(accuracy["shipped"], accuracy["continued"], losses, checks),
        }
    return out


def shipped_epochs(kind: str) -> int:
    """The epochs in ``pretrained/<kind>``'s history: 16, or 20 once a continued run is
    exported."""
    history = project_root() / "pretrained" / kind / "history.csv"
    return len(history.read_text().strip().splitlines()) - 1


def shipped_now(decisions: dict) -> list[str]:
    """A line per model kind: whether ``pretrained/<kind>`` holds the chosen weights (its
    history has 16 epochs, or 20 once the continued run is exported)."""
    lines = []
    for kind, decision in decisions.items():
        if decision["choice"] is None:
            continue
        epochs = shipped_epochs(kind)
        holds = "continued" if epochs > 16 else "shipped"
        if holds == decision["choice"]:
            lines.append(f"- {kind}: `pretrained/{kind}` holds the chosen weights ({epochs} epochs).")
        else:
            lines.append(
                f"- {kind}: `pretrained/{kind}` still holds the {epochs}-epoch weights. To ship "
                f"the choice: `python results/continued_training.py --kind {kind} --export`, "
                "then remake the reports that show this model (`docs/training.md`, "
                "\"Training on\")."
            )
    return lines


def markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        "# Which checkpoint ships (validation split)",
        "",
        f"Written by `{settings['command']}`. Measures: the best teacher-forced validation "
        f"loss of each run (whole validation split, nats per token; `{TRAINING}`), and "
        f"the critic's accuracy on {len(settings['songs'])} whole validation songs "
        f"({settings['bars']} bars), accompanied at the defaults ({settings['sampling']}), "
        "from the melody alone and with the annotated chords (0.5: indistinguishable; "
        "95% interval from resampling songs; the most accurate of the three critics "
        "counts). Test outputs play no part.",
        "",
        f"Rule, fixed before the results: a continued model ships only if its validation "
        f"loss is lower, it passes at least as many of the quality bar's checks "
        f"({SEGMENTS} validation segments of 32 bars, melody only; the checks the pianist "
        f"there passes), and the critic's accuracy on it is lower by more than "
        f"{EQUAL_WITHIN} on the mean of the two chord settings, and higher by at most "
        f"{EQUAL_WITHIN} in either.",
        "",
        "| model | validation loss, 16 epochs | + 4 epochs | checks passed, 16 epochs "
        "| + 4 epochs | critic, melody only, 16 epochs | + 4 epochs "
        "| critic, lead sheet, 16 epochs | + 4 epochs | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cell = accuracy_cell
    for kind, decision in report["decisions"].items():
        if decision["choice"] is None:
            lines.append(f"| {kind} | | | | | | | | | not judged: {decision['why']} |")
            continue
        loss, critic = decision["validation_loss"], decision["critic"]
        ships = "16 epochs" if decision["choice"] == "shipped" else "+ 4 epochs"
        bar = decision["quality_bar"]
        passed = {w: f"{bar[w]['passed']} of {bar[w]['checks']}" for w in bar}
        lines.append(
            f"| {kind} | {loss['shipped']:.4f} | {loss['continued']:.4f} | "
            f"{passed['shipped']} | {passed['continued']} | "
            f"{cell(critic['shipped']['melody_only'])} | {cell(critic['continued']['melody_only'])} | "
            f"{cell(critic['shipped']['lead_sheet'])} | {cell(critic['continued']['lead_sheet'])} | "
            f"**{ships}** |"
        )
    failed = [
        f"- {kind}, checks failed: 16 epochs: "
        + ", ".join(f"`{c}`" for c in decision["quality_bar"]["shipped"]["failed"])
        + "; + 4 epochs: "
        + ", ".join(f"`{c}`" for c in decision["quality_bar"]["continued"]["failed"])
        + " (the pianist of these segments fails "
        + ", ".join(f"`{c}`" for c in decision["quality_bar"]["shipped"]["pianist_fails"])
        + ", left out of the counts)."
        for kind, decision in report["decisions"].items() if decision["choice"] is not None
    ]
    lines += ["", *failed, *shipped_now(report["decisions"]), "",
              "The critic's full report (controls and what gives each system away) follows.",
              "", critic_validation.critic.critic_markdown(report["critic_report"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    parser.add_argument("--report", action="store_true",
                        help=f"only rewrite {OUT}.md from {OUT}.json")
    args = parser.parse_args()
    if args.report:
        report = json.loads(OUT.with_suffix(".json").read_text())
        write_atomic(OUT.with_suffix(".md"), markdown(report).encode())
        return
    exported = [kind for kind in KINDS if shipped_epochs(kind) > 16]
    if exported:
        raise SystemExit(
            f"pretrained/{exported[0]} already holds the continued weights: the choice would "
            "compare the run with itself. It was made with the 16-epoch weights (git show "
            "7e480d4:pretrained/<kind>/model.keras); --report rewrites the report."
        )
    extra, bars = {}, {}
    for kind in KINDS:
        checkpoint = continued_checkpoint(kind)
        if checkpoint is None:
            critic_validation.log(f"{kind}: no finished continued run, not judged")
            continue
        relative = str(checkpoint.relative_to(project_root()))
        for chords_name, chords in CHORDS.items():
            extra[f"{kind}_continued_{chords_name}"] = (relative, chords, {})
        bars[kind] = {"shipped": quality_bar(kind), "continued": quality_bar(relative)}
        critic_validation.log(f"{kind}: quality bar {bars[kind]}")
    scratch = Path(critic_validation.cache_dir()) / "checkpoint_choice"
    critic_validation.run("validation", args.songs, scratch, COMMAND, __file__, extra)
    critic_report = json.loads(scratch.with_suffix(".json").read_text())
    report = {
        "settings": critic_report["settings"],
        "decisions": decisions(critic_report, bars),
        "critic_report": critic_report,
    }
    write_json(OUT.with_suffix(".json"), report)
    write_atomic(OUT.with_suffix(".md"), markdown(report).encode())
    critic_validation.log(f"wrote {OUT}.json and .md")


if __name__ == "__main__":
    main()
