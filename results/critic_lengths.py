"""Would longer notes make the accompaniment harder to tell from the pianist's? On validation.

    KERAS_BACKEND=jax .venv/bin/python results/critic_lengths.py [--songs N]

The critic's strongest tells on validation are note lengths: at today's defaults FNet's
median note lasts 0.60 beats from the melody alone, the pianist's 0.78
(``results/critic_validation.md``). Sampling a note-off less often (``note_off_bias``)
made the critic's job easier (``results/critic_levers.md``). This script tries the
other way: the same accompaniments (FNet at the defaults, eight candidates per window,
cached by ``results/critic_validation.py``), every note lengthened after generation by
one of :data:`CHANGES`, never past the next onset of the same pitch or the song's end,
and asks the critic's feature critics how well they tell each from the pianist on 20
whole *validation* songs, from the melody alone and with a lead sheet. Writes
``results/critic_lengths.json`` and ``.md``.

The rule, fixed before the results: a change is adopted only if it lowers the critic's
accuracy by more than 0.01 in both settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from critic_validation import (
    LEGACY_OVERLAP, accompany_songs, critic_in_tensorflow, critic_on_songs, whole_songs, write_report,
)

from pianoacc_utils.data import Note
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.evaluation import critic
from pianoacc_utils.generation.critic_features import feature_matrix, feature_names, feature_unit

DECIDES_ON = "validation"
"""The split this script chooses on; ``tests/test_project.py`` checks that no script
chooses on the test split."""

OUT = Path("results/critic_lengths")
SONGS = 20
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_lengths.py"
CHANGES = {
    "every note 1.25 times as long": {"factor": 1.25},
    "every note 1.5 times as long": {"factor": 1.5},
    "notes at least 3/8 beat long": {"minimum": 3},
    "notes at least 1/2 beat long": {"minimum": 4},
    "notes held to the next onset, up to 1 beat": {"legato": STEPS_PER_BEAT},
    "notes held to the next onset, up to 2 beats": {"legato": 2 * STEPS_PER_BEAT},
}
"""Change name -> how a note's length (grid steps) becomes longer: ``factor`` times it,
at least ``minimum`` steps, or held to the next onset of any note (at most ``legato``
steps from its own onset)."""
MARGIN = 0.01
"""How much lower both accuracies must be for a change to be adopted."""
SHOWN = ("duration_median", "silent_share", "polyphony")
"""Features whose mean over windows the report gives for every system and the pianist."""


def feature_means(pieces: list, systems: dict[str, list]) -> dict[str, dict[str, float]]:
    """The mean of each :data:`SHOWN` feature over the critic's windows, per system and
    for the pianist."""
    names = feature_names()
    columns = [names.index(name) for name in SHOWN]
    played = {"pianist": [piece.pianist for piece in pieces], **systems}
    means = {}
    for name, accompaniments in played.items():
        windows, _ = critic.piece_windows(pieces, accompaniments, critic.CriticConfig().bars)
        matrix = feature_matrix(windows)[:, columns]
        means[name] = {feature: round(float(v), 4) for feature, v in zip(SHOWN, np.nanmean(matrix, axis=0))}
    return means


def lengthened(
    notes: Sequence[Note], num_steps: int, factor: float = 1.0, minimum: int = 0,
    legato: int = 0,
) -> list[Note]:
    """``notes`` with every length changed as :data:`CHANGES` describes, never shorter
    than before and never past the next onset of the same pitch or ``num_steps``."""
    notes = sorted(notes)
    onsets = sorted({n.start for n in notes})
    following: dict[int, int] = {}  # pitch -> the next onset of that pitch
    cap = [num_steps] * len(notes)
    for i in range(len(notes) - 1, -1, -1):
        cap[i] = min(following.get(notes[i].pitch, num_steps), num_steps)
        following[notes[i].pitch] = notes[i].start
    later = iter(onsets)
    nxt = next(later, None)
    out = []
    for note, limit in zip(notes, cap):
        while nxt is not None and nxt <= note.start:
            nxt = next(later, None)
        length = max(round((note.end - note.start) * factor), minimum)
        if legato and nxt is not None:
            length = max(length, min(nxt - note.start, legato))
        end = max(note.end, min(note.start + length, limit))
        out.append(note._replace(end=end))
    return out


def markdown(report: dict) -> str:
    settings, rows = report["settings"], report["systems"]
    verdict = []
    for name in CHANGES:
        drops = {
            chords: rows[f"{chords}: as generated"]["accuracy"] - rows[f"{chords}: {name}"]["accuracy"]
            for chords in ("melody only", "lead sheet")
        }
        adopted = all(drop > MARGIN for drop in drops.values())
        verdict.append(
            f"- *{name}*: {'adopted' if adopted else 'not adopted'} (accuracy "
            + ", ".join(f"{chords} {-drop:+.2f}" for chords, drop in drops.items()) + ")"
        )
    means = report["feature_means"]
    table = [
        "| | " + " | ".join(f"{f} ({feature_unit(f)})" for f in SHOWN) + " |",
        "|---|" + "---|" * len(SHOWN),
        *(f"| {name} | " + " | ".join(f"{row[f]:.3g}" for f in SHOWN) + " |"
          for name, row in means.items()),
    ]
    return "\n".join([
        "# Longer notes against the critic, on validation",
        "",
        f"Written by `{COMMAND}` ({report['seconds']:.0f} s for the critic). FNet at the "
        f"defaults (eight candidates per window, sampling seed 0) on {len(settings['songs'])} "
        f"whole validation songs ({settings['bars']} bars), from the melody alone and with "
        "the annotated chords; each change lengthens every note after generation, never "
        "past the next onset of the same pitch. Accuracy of the better feature critic on "
        "held-out songs (0.5 = indistinguishable; 95% interval from resampling songs). "
        f"Rule, fixed before the results: adopt a change only if it lowers both accuracies "
        f"by more than {MARGIN}.",
        "",
        *verdict,
        "",
        "Means over the critic's windows:",
        "",
        *table,
        "",
        critic.critic_markdown(report),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    systems = {}
    for chords, source in (("melody only", "estimated"), ("lead sheet", "annotated")):
        played = accompany_songs(songs, "validation", f"fnet {chords}", "fnet", source,
                                 {"overlap_bars": LEGACY_OVERLAP})
        systems[f"{chords}: as generated"] = played
        for name, change in CHANGES.items():
            systems[f"{chords}: {name}"] = [
                lengthened(notes, song.num_steps, **change) for notes, song in zip(played, songs)
            ]
    critic_in_tensorflow(__file__, args.songs)
    report = critic_on_songs(
        songs, systems, learned=False, changes=CHANGES, margin=MARGIN, command=COMMAND
    )
    report["feature_means"] = feature_means([critic.segment_piece(s) for s in songs], systems)
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
