"""How much does the critic's accuracy depend on how many songs it learns from?

    KERAS_BACKEND=jax .venv/bin/python results/critic_songs.py

The critic is trained anew in every fold on the other songs' windows, so the more songs
it is given, the more it can learn, and the better it may tell a system from the
pianist. The validation reports judge 20 songs (``results/critic_validation.py``), the
test report 30 (``results/critic_test.py``): their accuracies are not on one scale.
This script measures the critic (its two feature classifiers, the better counting; the
network over piano rolls is left out: it never counted for the models) on the first
:data:`SONGS` whole songs of each split, accompanied at the default settings as those
reports do (their caches are shared; the committed report was made when each window
added 6 bars, before ``results/critic_overlap.py``; run again, it measures today's
defaults), and on :data:`SUBSETS` random subsets of
:data:`SIZES` songs of them, so that how many songs and which songs can be told apart.

It chooses nothing: the test split is only reported. Writes ``results/critic_songs.json``
and ``.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from critic_validation import SYSTEMS, critic_on_songs, generate, log, whole_songs, write_report

DECIDES_ON = None
"""The split this script chooses on: none (it measures the critic); ``tests/test_project.py``
checks that no script chooses on the test split."""
OUT = Path("results/critic_songs")
SONGS = 30
SIZES = (10, 20)
SUBSETS = 5
SPLITS = ("validation", "test")
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_songs.py"


def accuracies(songs: list, notes: dict, split: str) -> dict[str, float]:
    """The critic's accuracy per system on ``songs`` (feature critics, the better one)."""
    chosen = {name: [notes[name][i] for i in songs] for name in SYSTEMS}
    segments = [notes["_songs"][i] for i in songs]
    report = critic_on_songs(segments, chosen, learned=False, split=split)
    return {name: round(row["accuracy"], 4) for name, row in report["systems"].items()}


def measure(split: str) -> dict:
    """Accuracy on the first :data:`SONGS` songs, on the first 20 (the validation
    reports' songs) and on random subsets of each size in :data:`SIZES`."""
    songs = whole_songs(SONGS, split)
    notes = {**generate(songs, split), "_songs": songs}
    rng = np.random.default_rng(0)
    found = {"all": accuracies(range(SONGS), notes, split),
             "first 20": accuracies(range(20), notes, split)}
    for size in SIZES:
        runs = [accuracies(sorted(rng.choice(SONGS, size, replace=False)), notes, split)
                for _ in range(SUBSETS)]
        found[f"random {size}"] = {
            name: {"mean": round(float(np.mean([r[name] for r in runs])), 4),
                   "low": min(r[name] for r in runs), "high": max(r[name] for r in runs)}
            for name in SYSTEMS
        }
    log(f"{split}: {found['all']}")
    return {"songs": [s.song_id for s in songs], "bars": sum(s.num_bars for s in songs),
            "accuracy": found}


def markdown(report: dict) -> str:
    header = "| split | songs the critic judges | " + " | ".join(SYSTEMS) + " |"
    table = [header, "|---|---|" + "---|" * len(SYSTEMS)]
    for split in SPLITS:
        found = report["splits"][split]["accuracy"]
        for size in SIZES:
            cells = [f"{found[f'random {size}'][n]['mean']:.2f} "
                     f"({found[f'random {size}'][n]['low']:.2f}-{found[f'random {size}'][n]['high']:.2f})"
                     for n in SYSTEMS]
            table.append(f"| {split} | {size}, {SUBSETS} random subsets: mean (lowest-highest) | "
                         + " | ".join(cells) + " |")
        table.append(f"| {split} | the first 20 | "
                     + " | ".join(f"{found['first 20'][n]:.2f}" for n in SYSTEMS) + " |")
        table.append(f"| {split} | all {SONGS} | "
                     + " | ".join(f"{found['all'][n]:.2f}" for n in SYSTEMS) + " |")
    return "\n".join([
        "# The critic and the number of songs it learns from",
        "",
        f"Written by `{COMMAND}` ({report['seconds']:.0f} s).",
        "",
        f"The first {SONGS} whole songs of the validation and the test split, accompanied at "
        "the default settings (sampling seed 0, 8 candidates per window) by FNet and the "
        "Transformer, from the melody alone (*melody_only*) and with the annotated chords "
        "(*lead_sheet*). Accuracy of the better of the critic's two feature classifiers on "
        "held-out songs, 5 folds grouped by song (0.5 = indistinguishable), on all the "
        f"songs, on the first 20 (the songs of the validation reports) and on {SUBSETS} "
        "random subsets of 10 and 20 of them. Nothing is chosen here.",
        "",
        *table,
        "",
    ])


def main() -> None:
    began = time.time()
    report = {"command": COMMAND, "splits": {split: measure(split) for split in SPLITS}}
    report["seconds"] = round(time.time() - began, 1)
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
