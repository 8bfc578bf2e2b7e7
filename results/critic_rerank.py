"""How many candidates should the reranker choose among? Measured with the critic on
validation songs.

    KERAS_BACKEND=jax .venv/bin/python results/critic_rerank.py [--songs N]

Accompanies the same whole *validation* songs as ``results/critic_validation.py`` (the
cache is shared) with FNet, from the melody alone and with the annotated chords, sampling
1 (no reranking), 2, 4, 8 or 16 candidates per window and keeping the one the reranker
(``generation.rerank``, trained on the training split by ``results/reranker.py``) finds
most like the pianist. Then the critic, all three of its classifiers (the reranker shares
the feature critics' features, so the convolutional one, which reads piano rolls, must
be among them), tells each from the pianist.

A number of candidates must also keep what the defaults were chosen for: the quality bar
(thresholds from the validation pianist) on the 32 validation segments of
``results/critic_defaults.py``, chords from the melody alone, seed 0
(``defaults_validation.run``, cached), at least as many checks as one candidate less
:data:`CHECK_SLACK`. Only the checks that the pianist of those same segments passes are
counted: a check the pianist fails there (the ending offset: the pianist's median on
these 32 segments is 1.2 bars, the limit 1) cannot tell a pianist's accompaniment from
a fault. Both counts are reported. Among those, the choice is the fewest candidates whose critic
accuracy from the melody alone is within :data:`EQUAL_WITHIN` of the lowest (each
candidate costs generation time). Writes ``results/critic_rerank.json`` and ``.md``. Only
validation songs are used: the number chosen here is then reported on test.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from critic_defaults import CHECK_SLACK
from critic_validation import (
    LEGACY_OVERLAP,
    SEED,
    accompany_songs,
    critic_in_tensorflow,
    log,
    whole_songs,
)
from defaults_validation import SHOWN, run

from pianoacc_utils import evaluation
from pianoacc_utils.common import write_atomic, write_json
from pianoacc_utils.evaluation import critic

DECIDES_ON = "validation"
"""The split this script chooses on (how many candidates to rerank), ``None`` where it
chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/critic_rerank")
SONGS = 20
CANDIDATES = (1, 2, 4, 8, 16)
"""Candidates per window compared. 16 was added after 8, then the largest tried, had been
chosen: a choice at the end of the range tried does not show that more would not do better.
The rule (:func:`choose`) stayed as it was."""
CHORDS = {"melody only": "estimated", "lead sheet": "annotated"}
"""System name -> the chords FNet is given (``generation.CHORD_SOURCES``)."""
SEGMENTS = 32
"""32-bar validation segments of the quality-bar check (as ``results/critic_defaults.py``)."""
EQUAL_WITHIN = 0.01
"""Critic accuracies closer than this count as equal (the fewer candidates win)."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_rerank.py"


def quality_bar(
    candidates: int, reranker: str | None = None, overlap: int = LEGACY_OVERLAP
) -> dict:
    """Checks passed by FNet with ``candidates`` on :data:`SEGMENTS` validation segments,
    chosen among by the reranker in the file ``reranker`` (``None``: the shipped one), each
    window primed by ``overlap`` bars (by default those before ``results/critic_overlap.py``)."""
    config = evaluation.EvaluationConfig(
        split="validation", segments=SEGMENTS, chords="estimated", copy_check=False,
        critic=False, overlap_bars=overlap,
    )
    report = run(replace(config, candidates=candidates, reranker=reranker))
    summary = report["seeds"]["median"]
    return {
        **checks_the_pianist_passes(report, "fnet"),
        "fnet": {m: summary["fnet"][m] for m in SHOWN},
        "pianist": {m: summary["ground_truth"][m] for m in SHOWN},
    }


def checks_the_pianist_passes(report: dict, name: str) -> dict:
    """The quality-bar checks that system ``name`` of an evaluation ``report`` passes,
    counted over those the pianist of the same segments passes (``passed`` of ``checks``;
    a check the pianist fails there cannot tell a pianist's accompaniment from a fault),
    and over all of them (``passed_all`` of ``checks_all``); which checks the pianist
    fails and which the system fails."""
    bar = report["quality_bar"][name]
    first_seed = SimpleNamespace(summary=report["summary"]["summary"])
    pianist = evaluation.quality_bar(first_seed, "ground_truth", report["quality_reference"])
    fair = {row["criterion"] for row in pianist if row["passed"]}
    return {
        "passed": sum(row["passed"] for row in bar if row["criterion"] in fair),
        "checks": len(fair),
        "passed_all": sum(row["passed"] for row in bar), "checks_all": len(bar),
        "pianist_fails": sorted({row["criterion"] for row in pianist} - fair),
        "failed": [row["criterion"] for row in bar if not row["passed"]],
    }


def choose(accuracy: dict[int, float], bars: dict[int, dict]) -> int:
    """The number of candidates chosen (see the module docstring)."""
    floor = bars[1]["passed"] - CHECK_SLACK
    kept = [n for n in CANDIDATES if bars[n]["passed"] >= floor]
    best = min(accuracy[n] for n in kept)
    return min(n for n in kept if accuracy[n] <= best + EQUAL_WITHIN)


def systems() -> dict[str, tuple[str, dict]]:
    """Name -> (chords, changes to the default settings) of every system compared."""
    return {
        f"FNet, {name}, {n} candidate{'s' if n > 1 else ''}": (chords, {"candidates": n, "overlap_bars": LEGACY_OVERLAP})
        for name, chords in CHORDS.items() for n in CANDIDATES
    }


def markdown(report: dict) -> str:
    settings = report["settings"]
    bars = report["quality_bar"]
    table = [
        "| candidates | critic, melody only [95% CI] | critic, lead sheet | checks passed "
        "(of those the pianist passes) | all checks | "
        + " | ".join(SHOWN) + " |",
        "|---|---|---|---|---|" + "---|" * len(SHOWN),
    ]
    for n in settings["candidates"]:
        row = {chords: report["systems"][name] for name, (chords, changes) in systems().items()
               if changes["candidates"] == n}
        melody, lead = row["estimated"], row["annotated"]
        mark = " **chosen**" if n == report["chosen"] else ""
        values = " | ".join(f"{bars[str(n)]['fnet'][m]:.3g}" for m in SHOWN)
        table.append(
            f"| {n}{mark} | {critic.accuracy_cell(melody)} | {lead['accuracy']:.2f} | "
            f"{bars[str(n)]['passed']}/{bars[str(n)]['checks']} | "
            f"{bars[str(n)]['passed_all']}/{bars[str(n)]['checks_all']} | {values} |"
        )
    pianist = " | ".join(f"{bars['1']['pianist'][m]:.3g}" for m in SHOWN)
    table.append(f"| pianist | | | | | {pianist} |")
    failed = [f"- *{n} candidates* fail: " + "; ".join(bars[str(n)]["failed"]) + "."
              for n in settings["candidates"] if bars[str(n)]["failed"]]
    return "\n".join([
        "# Reranking against the critic, on validation",
        "",
        f"Written by `{COMMAND}` (with `results/critic_rerank.json`).",
        "",
        f"**Chosen: {report['chosen']} candidates per window**: the fewest whose critic "
        f"accuracy from the melody alone is within {settings['equal_within']} of the lowest, "
        f"among those passing at least {settings['check_slack']} check fewer than one "
        f"candidate on the quality bar ({settings['segments']} validation segments of 32 "
        "bars, chords from the melody alone, seed 0; metrics: medians over segments, key "
        "agreement the mean), counting only the checks that the pianist of the same "
        "segments passes (it fails: "
        + ("; ".join(bars["1"]["pianist_fails"]) or "none") + ").",
        "",
        *table,
        "",
        *failed,
        "",
        "## The critic, in full",
        "",
        f"{report['seconds']:.0f} s for the critic. FNet on "
        f"{len(settings['songs'])} whole validation songs ({settings['bars']} bars), from "
        "the melody alone (chords from the learned harmoniser) and with the annotated "
        "chords, at the default settings (sampling seed 0), sampling 1 to "
        f"{max(settings['candidates'])} candidates per "
        "window and keeping the one the reranker (`results/reranker.md`, trained on the "
        "training split) finds most like the pianist. Accuracy of the best of the critic's "
        "three classifiers on held-out songs (0.5 = indistinguishable; 95% interval from "
        "resampling songs).",
        "",
        critic.critic_markdown(report),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    notes = {
        name: accompany_songs(songs, "validation", name, "fnet", chords, changes)
        for name, (chords, changes) in systems().items()
    }
    bars = {}
    for n in CANDIDATES:
        bars[n] = quality_bar(n)
        log(f"{n} candidates: {bars[n]['passed']}/{bars[n]['checks']} checks the pianist passes, "
            f"{bars[n]['passed_all']}/{bars[n]['checks_all']} in all")
    critic_in_tensorflow(__file__, args.songs)
    pieces = [critic.segment_piece(s) for s in songs]
    report = critic.critic_report(pieces, notes, None, critic.CriticConfig(seed=SEED))
    melody_only = {changes["candidates"]: report["systems"][name]["accuracy"]
                   for name, (chords, changes) in systems().items() if chords == "estimated"}
    chosen = choose(melody_only, bars)
    report["settings"].update(
        split="validation", songs=[s.song_id for s in songs],
        bars=sum(s.num_bars for s in songs), candidates=list(CANDIDATES), command=COMMAND,
        segments=SEGMENTS, check_slack=CHECK_SLACK, equal_within=EQUAL_WITHIN,
    )
    report.update(quality_bar={str(n): bar for n, bar in bars.items()}, chosen=chosen)
    write_json(OUT.with_suffix(".json"), report)
    write_atomic(OUT.with_suffix(".md"), markdown(report).encode())
    log(f"wrote {OUT}.json and .md")


if __name__ == "__main__":
    main()
