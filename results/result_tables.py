"""The results tables of the README, of docs/results.md and of the model cards, built from
the committed evaluation reports.

    .venv/bin/python results/result_tables.py            # print them
    .venv/bin/python results/result_tables.py --write    # replace them in the files

Columns are systems of three reports (``results/evaluation.json``: annotated chords;
``evaluation_estimated_chords.json``: the melody alone; ``evaluation_no_rules.json``: no
chord mask, no note release); rows are metrics (``docs/metrics.md``). The README holds
a short table (:data:`README_ROWS`), ``docs/results.md`` every row (:data:`RESULTS_ROWS`).
A cell is the metric's value over segments (a median, key agreement and the copy check a
mean) at the median seed, followed by its [min, max] across the seeds where those differ
at three significant digits; "–" where a report has no such system
(:mod:`pianoacc_utils.evaluation.tables`). The next-to-last row is the critic's accuracy
telling each system from the pianist at the first seed (the pianist's column: the pianist
against the pianist); the last row counts the quality bar's checks passed at each seed. ``tests/test_readme.py`` checks that the files hold these tables as
written here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pianoacc_utils.evaluation.tables import markdown_table, table_rows

DECIDES_ON = None
"""The split this script chooses on (writes the tables of committed reports), ``None`` where it
chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test split."""

ROOT = Path(__file__).resolve().parents[1]

README_COLUMNS = (
    ("ground truth", "evaluation", "ground_truth"),
    ("FNet", "evaluation", "fnet"),
    ("Transformer", "evaluation", "transformer"),
    ("FNet, melody only", "evaluation_estimated_chords", "fnet"),
    ("Transformer, melody only", "evaluation_estimated_chords", "transformer"),
    ("FNet, no rules", "evaluation_no_rules", "fnet"),
    ("block chords", "evaluation", "block_chords"),
)
"""(heading, report under results/, system in it)."""

RESULTS_ROWS = (
    ("bars off the beat by ⅛ beat or more", "bars_off_share"),
    ("chord-tone ratio (annotated chords)", "chord_tone_ratio"),
    ("consonance with the melody", "melody_consonance"),
    ("key agreement (mean)", "key_agreement"),
    ("harmonic motion (bar lines changing pitch content)", "harmonic_motion"),
    ("pitch-class sets per 4 bars", "harmonic_variety"),
    ("rhythm distance to the pianist's (0..1)", "rhythm_distance"),
    ("bar-to-bar onset repetition", "onset_repetition"),
    ("bass on strong beats", "strong_beat_bass"),
    ("voicing spread (semitones)", "voicing_spread"),
    ("notes per bar", "notes_per_bar"),
    ("polyphony (notes sounding)", "polyphony"),
    ("velocity standard deviation", "velocity_std"),
    ("2-bar windows found in train (copy check)", "copied_2_bar_share"),
    ("4-bar windows found in train", "copied_4_bar_share"),
    ("longest run found in train (bars)", "longest_copied_bars"),
)
"""(row heading, metric): every row, in ``docs/results.md``."""

README_ROWS = tuple(
    row for row in RESULTS_ROWS
    if row[1] in {
        "bars_off_share", "chord_tone_ratio", "melody_consonance", "key_agreement",
        "rhythm_distance", "notes_per_bar", "copied_2_bar_share",
    }
)
"""The README's short table: timing, harmony, rhythm, density and the copy check."""

CARD_ROWS = (
    ("bars off the beat", "bars_off_share"),
    ("chord-tone ratio (annotated chords)", "chord_tone_ratio"),
    ("consonance with the melody", "melody_consonance"),
    ("harmonic motion", "harmonic_motion"),
    ("rhythm distance to the pianist", "rhythm_distance"),
    ("notes per bar", "notes_per_bar"),
    ("velocity standard deviation", "velocity_std"),
)


def card_columns(kind: str) -> tuple[tuple[str, str, str], ...]:
    """A shipped model's columns: the pianist, then the model in each report."""
    return (
        ("pianist", "evaluation", "ground_truth"),
        ("annotated", "evaluation", kind),
        ("melody only", "evaluation_estimated_chords", kind),
        ("no rules", "evaluation_no_rules", kind),
    )


def tables() -> dict[Path, str]:
    """Each file holding a results table, with the table it should hold."""
    cards = {
        ROOT / "pretrained" / kind / "MODEL_CARD.md": table(
            card_columns(kind), CARD_ROWS, "quality bar (checks passed per seed)", critic=True
        )
        for kind in ("fnet", "transformer")
    }
    return {
        ROOT / "README.md": table(README_COLUMNS, README_ROWS, critic=True),
        ROOT / "docs" / "results.md": table(README_COLUMNS, RESULTS_ROWS, critic=True),
        **cards,
    }


def table(
    columns: tuple[tuple[str, str, str], ...],
    rows: tuple[tuple[str, str], ...],
    quality_heading: str | None = None,
    results: Path = ROOT / "results",
    critic: bool = False,
) -> str:
    """A table in Markdown, ending with a newline (``critic``: with the critic's row)."""
    return markdown_table(table_rows(columns, rows, results, quality_heading, critic))


def table_span(text: str, table_text: str) -> tuple[int, int]:
    """Start and end (characters) in ``text`` of the table whose header line is that of
    ``table_text``: from that line to the next blank line."""
    start = text.index(table_text.split("\n", 1)[0] + "\n")
    end = text.find("\n\n", start)
    return start, (len(text) if end < 0 else end + 1)


if __name__ == "__main__":
    for path, written in tables().items():
        if sys.argv[1:] == ["--write"]:
            text = path.read_text()
            start, end = table_span(text, written)
            path.write_text(text[:start] + written + text[end:])
            print(f"wrote the table into {path.relative_to(ROOT)}")
        else:
            print(f"{path.relative_to(ROOT)}:\n\n{written}")
