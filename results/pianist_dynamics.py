"""How widely the pianist's dynamics vary, song set by song set.

    .venv/bin/python results/pianist_dynamics.py

The velocity temperature was chosen on the first 40 validation songs
(``results/critic_velocity.md``), where the spread of velocities within the critic's 2-bar
windows gave FNet away most: it played them wider than the pianist. On the first 30 test
songs the same feature gives the model at the new setting away the other way
(``results/critic_test.md``). The model cannot tell the two apart from the melody: this
script measures only the pianist, on the song sets the critic's reports use and on
training songs, so that the difference between the sets is on record.

Per song set, over the critic's 2-bar windows of whole songs where the melody sounds
(``generation.critic_features``): the mean of the pianist's velocity standard deviation
within a window (MIDI velocity; windows with a single note, which have none, left out),
the 10th, 50th and 90th percentiles of its per-song means, and the number of windows and
songs. It chooses nothing (the test songs are listed only beside the others). Writes
``results/pianist_dynamics.json`` and ``.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from critic_validation import log, whole_songs, write_report

from pianoacc_utils.evaluation import critic
from pianoacc_utils.generation.critic_features import CRITIC_BARS, feature_matrix, feature_names

DECIDES_ON = None
"""The split this script chooses on: none (it describes the pianist);
``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/pianist_dynamics")
COMMAND = ".venv/bin/python results/pianist_dynamics.py"
SETS = (
    ("train", 200, "the first 200 training songs"),
    ("validation", 20, "the first 20 validation songs (the sampling defaults were chosen on them)"),
    ("validation", 40, "the first 40 validation songs (the velocity temperature was chosen on them)"),
    ("validation", 91, "every validation song"),
    ("test", 30, "the first 30 test songs (`results/critic_test.md`; reported only)"),
)
"""(split, songs, what the set is): the first songs of each split in its order."""


def song_set(split: str, count: int) -> dict:
    """The pianist's window velocity spread on the first ``count`` songs of ``split``."""
    pieces = [critic.segment_piece(song) for song in whole_songs(count, split)]
    windows, groups = critic.piece_windows(pieces, [p.pianist for p in pieces], CRITIC_BARS)
    spread = feature_matrix(windows)[:, feature_names().index("velocity_std")]
    kept = ~np.isnan(spread)
    per_song: dict[str, list[float]] = {}
    for song, value in zip(np.asarray(groups)[kept], spread[kept]):
        per_song.setdefault(str(song), []).append(float(value))
    song_means = [float(np.mean(values)) for values in per_song.values()]
    low, middle, high = np.percentile(song_means, [10, 50, 90])
    return {"split": split, "songs": count, "windows": int(kept.sum()),
            "mean": round(float(spread[kept].mean()), 2),
            "song_p10": round(float(low), 2), "song_median": round(float(middle), 2),
            "song_p90": round(float(high), 2)}


def markdown(report: dict) -> str:
    lines = [
        "# How widely the pianist's dynamics vary, song set by song set",
        "",
        f"Written by `{report['command']}`. The pianist's velocity standard deviation within "
        "the critic's 2-bar windows of whole songs (MIDI velocity; windows with one note left "
        "out): its mean over windows, and the 10th, 50th and 90th percentiles of the songs' "
        "means. Describes the pianist only; chooses nothing.",
        "",
        "| songs | windows | mean | songs: 10th / 50th / 90th percentile |",
        "|---|---|---|---|",
    ]
    for row in report["sets"]:
        lines.append(f"| {row['what']} | {row['windows']} | {row['mean']:.1f} | "
                     f"{row['song_p10']:.1f} / {row['song_median']:.1f} / {row['song_p90']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    sets = []
    for split, count, what in SETS:
        sets.append({**song_set(split, count), "what": what})
        log(f"{what}: {sets[-1]['mean']}")
    report = {"command": COMMAND, "sets": sets}
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
