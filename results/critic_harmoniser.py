"""Does the harmoniser's decoding change what the critic hears? Measured on validation songs.

    KERAS_BACKEND=jax .venv/bin/python results/critic_harmoniser.py [--songs N]

The learned harmoniser (``harmony.learned``, ``docs/harmonisation.md``) decodes its chords
with an emission scale and a prior weight, chosen on validation for agreement with the
annotated chords (``results/harmonisation_validation.md``: scale 3, weight 0, from scale 1,
2, 3 and weight 0, 0.3). Here each of those decodings gives the chords that FNet
accompanies the same whole *validation* songs as ``results/critic_validation.py`` with
(default sampling, seed 0), and the critic (all three classifiers) tells each from the
pianist. One candidate per window (no reranking), so that the chords alone change. Writes
``results/critic_harmoniser.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from critic_validation import (
    LEGACY_OVERLAP, accompany_songs, critic_in_tensorflow, critic_on_songs, whole_songs, write_report,
)

from pianoacc_utils import harmony
from pianoacc_utils.evaluation import critic

DECIDES_ON = "validation"
"""The split this script chooses on (the harmoniser's decoding, with the critic), ``None``
where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the
test split."""

OUT = Path("results/critic_harmoniser")
SONGS = 20
DECODINGS = {
    "scale 3, prior weight 0 (shipped)": (3.0, 0.0),
    "scale 2, prior weight 0": (2.0, 0.0),
    "scale 1, prior weight 0": (1.0, 0.0),
    "scale 3, prior weight 0.3": (3.0, 0.3),
}
"""Name -> (emission scale, prior weight) of the harmoniser's decoding."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_harmoniser.py"


def chord_finder(scale: float, weight: float):
    """A song's chords from the shipped harmoniser decoded at ``scale`` and ``weight``."""
    parameters = dict(harmony.learned.load_parameters())
    parameters.update(scale=np.array(scale), prior_weight=np.array(weight))
    parameters.pop("_transitions", None)
    return lambda seg: harmony.learned.harmonise(
        seg.melody, seg.bar_starts, seg.num_steps, parameters
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    notes = {}
    for name, (scale, weight) in DECODINGS.items():
        label = f"harmoniser_scale{scale:g}_weight{weight:g}"
        notes[name] = accompany_songs(songs, "validation", name, "fnet", label,
                                      {"candidates": 1, "overlap_bars": LEGACY_OVERLAP}, chord_finder(scale, weight))
    critic_in_tensorflow(__file__, args.songs)
    report = critic_on_songs(songs, notes, decodings=DECODINGS, command=COMMAND)
    lines = [
        "# The harmoniser's decoding against the critic, on whole validation songs", "",
        f"Written by `{COMMAND}` ({report['seconds']:.0f} s for the critic). FNet on "
        f"{len(songs)} whole validation songs ({report['settings']['bars']} bars) from the "
        "melody alone, with the chords of the learned harmoniser decoded at each emission "
        "scale and prior weight (`harmony.learned.harmonise`), default sampling with one "
        "candidate per window (seed 0). "
        "Accuracy of the best of the critic's three classifiers on held-out songs (0.5 = "
        "indistinguishable; 95% interval from resampling songs).", "",
        critic.critic_markdown(report),
    ]
    write_report(OUT, report, "\n".join(lines))


if __name__ == "__main__":
    main()
