"""The critic on whole *test* songs: reported, never chosen on.

    KERAS_BACKEND=jax .venv/bin/python results/critic_test.py [--songs N]

Every choice the critic informs (the generation defaults, which checkpoint ships) is made
on the validation split (``results/critic_validation.py``, ``results/critic_levers.py``).
This script runs the same measurement, unchanged, on the first songs of the test split
(POP909's test songs, whole, accompanied as ``pianoacc accompany`` does at the defaults,
seed 0) and writes ``results/critic_test.json`` and ``.md``, the figures the README and
``docs/results.md`` report. Generation is cached as in ``critic_validation.py``, so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from critic_levers import EARLIER
from critic_validation import LEGACY_OVERLAP, run
from critic_velocity import BEFORE as VELOCITY_BEFORE

DECIDES_ON = None
"""The split this script chooses on: none (it only reports); ``tests/test_project.py``
checks that no script chooses on the test split."""

OUT = Path("results/critic_test")
SONGS = 30
"""Test songs judged (the first of the split's order): about 40 minutes of generation for
the four systems on two cores, and 10 for the critic."""
BEFORE = {"candidates": 1, "overlap_bars": LEGACY_OVERLAP}
"""One candidate per window, windows adding 6 bars: the defaults before reranking."""
EXTRA = {
    "fnet_melody_only_one_candidate": ("fnet", "estimated", BEFORE),
    "fnet_lead_sheet_one_candidate": ("fnet", "annotated", BEFORE),
    "fnet_melody_only_earlier_defaults": ("fnet", "estimated", {**EARLIER, "candidates": 1}),
    "fnet_lead_sheet_earlier_defaults": ("fnet", "annotated", {**EARLIER, "candidates": 1}),
    "fnet_melody_only_velocity_1_4": ("fnet", "estimated",
                                      {"velocity_temperature": VELOCITY_BEFORE}),
    "fnet_lead_sheet_velocity_1_4": ("fnet", "annotated",
                                     {"velocity_temperature": VELOCITY_BEFORE}),
}
"""FNet without reranking (one candidate per window, windows adding 6 bars as before
``results/critic_overlap.py``) and at the sampling defaults before
the critic chose them (``critic_levers.EARLIER``), and at the velocity temperature before
``results/critic_velocity.md`` chose 1.2 (1.4), so that the report shows what the choices
made on validation changed on test."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_test.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    run("test", args.songs, OUT, COMMAND, __file__, EXTRA)


if __name__ == "__main__":
    main()
