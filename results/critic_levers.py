"""Which generation settings make the critic's job harder? Measured on validation songs.

    KERAS_BACKEND=jax .venv/bin/python results/critic_levers.py [--songs N]

Accompanies the same whole *validation* songs as ``results/critic_validation.py`` (the
cache is shared: a setting is generated once) with FNet from the melody alone under each
setting of :data:`LEVERS`, then asks the critic's feature
critics (gradient-boosted trees and logistic regression, folds grouped by song; the
convolutional one is left out, as it tells no system apart better than they do) how well
they tell each from the pianist. Writes ``results/critic_levers.json`` and ``.md``.
Only validation songs are used: the settings chosen here are then reported on test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from critic_validation import (
    LEGACY_OVERLAP, accompany_songs, critic_in_tensorflow, critic_on_songs, whole_songs, write_report,
)

from pianoacc_utils.evaluation import critic

DECIDES_ON = "validation"
"""The split this script chooses on (which generation settings to try against the critic),
``None`` where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on
the test split."""

OUT = Path("results/critic_levers")
SONGS = 20
EARLIER = {
    "temperature": 0.7, "top_p": 0.8, "velocity_temperature": 2.0, "note_off_bias": 0.0,
    "release": True, "hanging_beats": 4.0, "candidates": 1, "overlap_bars": LEGACY_OVERLAP,
}
"""The generation defaults the levers were first tried against (chosen on validation
before the critic existed: ``results/sampling_validation.md``, ``velocity_validation.md``,
``chord_mask_validation.md``); every lever changes some of them, written out in full so that
the table stays what it says when the defaults change (one candidate per window: the levers
were measured before reranking, ``results/critic_rerank.py``)."""
LEVERS = {
    "the earlier defaults": {},
    "temperature 0.85, top-p 0.9": {"temperature": 0.85, "top_p": 0.9},
    "temperature 1.0, top-p 0.95": {"temperature": 1.0, "top_p": 0.95},
    "no note release": {"release": False},
    "hanging notes up to 8 beats": {"hanging_beats": 8.0},
    "velocity temperature 1.0": {"velocity_temperature": 1.0},
    "temperature 1.0, top-p 0.95, no note release": {
        "temperature": 1.0, "top_p": 0.95, "release": False,
    },
    "temperature 1.0, top-p 0.95, velocity temperature 1.4": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.4,
    },
    "temperature 1.2, top-p 0.95": {"temperature": 1.2, "top_p": 0.95},
    "temperature 1.0, top-p 0.95, velocity temperature 1.4, note-off bias -1": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.4, "note_off_bias": -1.0,
    },
    "temperature 1.0, top-p 0.95, velocity temperature 1.4, note-off bias -2": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.4, "note_off_bias": -2.0,
    },
    "temperature 1.0, top-p 0.95, velocity temperature 1.2": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.2,
    },
    "temperature 1.0, top-p 0.95, velocity temperature 1.0": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.0,
    },
    "temperature 1.0, top-p 0.98, velocity temperature 1.4": {
        "temperature": 1.0, "top_p": 0.98, "velocity_temperature": 1.4,
    },
    "temperature 1.0, top-p 0.95, velocity temperature 1.4, no chord mask": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.4, "chord_mask": False,
    },
    "temperature 1.0, top-p 0.95, velocity temperature 1.4, no note release": {
        "temperature": 1.0, "top_p": 0.95, "velocity_temperature": 1.4, "release": False,
    },
}
"""Lever name -> what it changes in :data:`EARLIER` (``SamplingConfig`` fields, or
``release`` / ``hanging_beats`` of ``generation.accompany``)."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_levers.py"


def markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        "# Levers against the critic, on whole validation songs",
        "",
        f"Written by `{COMMAND}` ({report['seconds']:.0f} s for the critic). FNet from the "
        f"melody alone on {len(settings['songs'])} whole validation songs "
        f"({settings['bars']} bars), sampling seed 0, each lever changing some settings of "
        "the earlier defaults (temperature 0.7, top-p 0.8, velocity temperature 2, no "
        "note-off bias, notes released at chord changes, hanging notes up to 4 beats). "
        "Accuracy of the better feature critic on held-out songs "
        "(0.5 = indistinguishable; 95% interval from resampling songs).",
        "",
        critic.critic_markdown(report),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    systems = {
        name: accompany_songs(songs, "validation", name, "fnet", "estimated", {**EARLIER, **changes})
        for name, changes in LEVERS.items()
    }
    critic_in_tensorflow(__file__, args.songs)
    report = critic_on_songs(
        songs, systems, learned=False, earlier=EARLIER, levers=LEVERS, command=COMMAND
    )
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
