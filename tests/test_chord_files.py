"""Chord files: every line is a chord or an error naming the file and the line."""

from __future__ import annotations

import numpy as np
import pytest

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import BeatGrid, Span
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.harmony import chord_coverage, read_chords

GRID = BeatGrid(beat_times=np.arange(0.0, 20.0, 0.5), downbeats=np.arange(0, 40, 4))
"""120 bpm, 4/4: a beat every 0.5 s, so one second is 2 beats = 16 grid steps."""

MELODY_END = 16 * 2 * STEPS_PER_BEAT  # 16 s


def chords_from(tmp_path, text, end_step=MELODY_END):
    path = tmp_path / "chords.txt"
    path.write_text(text)
    return read_chords(path, GRID, end_step)


def test_good_lines_comments_and_blanks(tmp_path):
    spans = chords_from(tmp_path, "# intro\n0 2 C:maj\n\n2 4 A:min7  # two bars\n4 30 G:7/3\n")
    assert spans == [Span(0, 32, "C:maj"), Span(32, 64, "A:min7"), Span(64, 480, "G:7/3")]


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("0 2 C:maj\n2 4 A min\n", 2, "expected 3 columns (start end label), got 4"),
        ("0 2 C:maj\n\n0 2\n", 3, "expected 3 columns (start end label), got 2"),
        ("4 2 C:maj\n", 1, "ends (2.0 s) before it starts (4.0 s)"),
        ("2 2 C:maj\n", 1, "ends (2.0 s) before it starts"),
        ("0 nan C:maj\n", 1, "finite seconds"),
        ("0 inf C:maj\n", 1, "finite seconds"),
        ("-1 2 C:maj\n", 1, "finite seconds >= 0"),
        ("zero two C:maj\n", 1, "could not convert"),
        ("0 2 C:maj\n2 4 Q:what\n", 2, "chord 2: chord label 'Q:what'"),
        ("0 2 C:maj\n20 24 G:maj\n", 2, "after the melody ends (16.000 s)"),
        ("0 0.01 C:maj\n", 1, "shorter than one grid step"),
    ],
)
def test_every_bad_line_is_an_error_naming_file_and_line(tmp_path, text, line, problem):
    with pytest.raises(PianoaccError) as raised:
        chords_from(tmp_path, text)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'chords.txt'}:{line}: ") and problem in message


def test_a_file_without_chords_is_an_error(tmp_path):
    with pytest.raises(PianoaccError, match="no chord inside the file"):
        chords_from(tmp_path, "# nothing here\n\n")


def test_coverage_counts_chords_inside_the_melody():
    chords = [Span(0, 64, "C:maj"), Span(64, 128, "N"), Span(128, 1000, "G:maj")]
    assert chord_coverage(chords, 256) == pytest.approx((64 + 128) / 256)
    assert chord_coverage([], 256) == 0.0
