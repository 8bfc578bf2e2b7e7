"""Metrics of what a pianist does and block chords do not, on hand-made notes with known answers;
and the quality bar failing block chords against a pianist-like accompaniment."""

from __future__ import annotations

import math

import pytest

from pianoacc_utils import evaluation as ev
from pianoacc_utils.data import Note, Segment, Span

BAR = 32
"""Steps in a 4/4 bar (8 steps per beat)."""

BARS = [b * BAR for b in range(8)]
C, F, G, A_MINOR = [48, 60, 64, 67], [53, 60, 65, 69], [43, 59, 62, 67], [45, 60, 64, 69]


def block(bar: int, pitches: list[int], beats: tuple[int, ...] = (0, 1, 2, 3)) -> list[Note]:
    """The chord struck on the given beats of a bar, each held one beat."""
    starts = [bar * BAR + 8 * beat for beat in beats]
    return [Note(start, start + 8, p, 70) for start in starts for p in pitches]


def blocks(chords: list[list[int]]) -> list[Note]:
    return [n for bar, pitches in enumerate(chords) for n in block(bar, pitches)]


# --------------------------------------------------------------------------- harmony


def test_one_chord_repeated_has_no_motion_and_one_set_per_phrase():
    notes = blocks([C] * 8)
    assert ev.harmonic_motion(notes, BARS, 8 * BAR) == 0.0
    assert ev.harmonic_variety(notes, BARS, 8 * BAR) == 1.0
    assert ev.onset_repetition(notes, BARS, 8 * BAR) == 1.0


def test_a_new_chord_every_bar_moves_every_bar():
    notes = blocks([C, F, G, A_MINOR] * 2)
    assert ev.harmonic_motion(notes, BARS, 8 * BAR) == 1.0
    assert ev.harmonic_variety(notes, BARS, 8 * BAR) == 4.0
    two_per_phrase = blocks([C, C, G, G] * 2)
    assert ev.harmonic_motion(two_per_phrase, BARS, 8 * BAR) == pytest.approx(3 / 7)
    assert ev.harmonic_variety(two_per_phrase, BARS, 8 * BAR) == 2.0


def test_bar_pitch_content_ignores_short_passing_notes_and_silent_bars():
    held = [Note(0, BAR, p, 80) for p in (48, 64, 67)]
    passing = held + [Note(4, 6, 62, 80)]  # a 32nd-note D against whole notes
    assert ev.bar_pitch_classes(passing, [0, BAR], 2 * BAR) == [frozenset({0, 4, 7}), None]
    longer = held + [Note(4, 20, 62, 80)]  # half the bar: part of the content
    assert ev.bar_pitch_classes(longer, [0], BAR) == [frozenset({0, 2, 4, 7})]
    silent_between = blocks([C]) + block(2, F)
    assert math.isnan(ev.harmonic_motion(silent_between, [0, BAR, 2 * BAR], 3 * BAR))
    assert math.isnan(ev.harmonic_variety(blocks([C, F]), [0, BAR], 2 * BAR))  # no 4-bar phrase


# --------------------------------------------------------------------------- rhythm


def test_onset_patterns_count_a_chord_once_and_repetition_compares_bars():
    on_beats = blocks([C, F])
    assert ev.bar_onset_patterns(on_beats, [0, BAR], 2 * BAR) == [frozenset({0, 8, 16, 24})] * 2
    alternating = [n for bar in range(4) for n in block(bar, C, (0, 2) if bar % 2 else (0, 1, 3))]
    assert ev.onset_repetition(alternating, BARS[:4], 4 * BAR) == 0.0
    assert math.isnan(ev.onset_repetition(blocks([C]), [0], BAR))


def test_rhythm_distance_crosses_the_halves():
    beats = blocks([C] * 4)
    offbeats = [Note(8 * beat + 4, 8 * beat + 8, 60, 70) for beat in range(16)]
    bars = BARS[:4]
    assert ev.rhythm_distance(beats, beats, bars, 4 * BAR) == 0.0
    assert ev.rhythm_distance(beats, offbeats, bars, 4 * BAR) == 1.0
    # a pianist on the beats in bars 0-1 and off them in bars 2-3: its own value is 1,
    # and a system playing both halves alike is half as far from it
    changing = [n for n in beats if n.start < 2 * BAR] + [n for n in offbeats if n.start >= 2 * BAR]
    assert ev.rhythm_distance(changing, changing, bars, 4 * BAR) == 1.0
    both = sorted(set(beats + offbeats))
    assert ev.rhythm_distance(both, changing, bars, 4 * BAR) == pytest.approx(0.5)
    assert math.isnan(ev.rhythm_distance(beats, [], bars, 4 * BAR))
    assert math.isnan(ev.rhythm_distance(beats, beats, [0], BAR))


# --------------------------------------------------------------------------- register and voicing


def test_strong_beats_of_even_and_odd_meters():
    assert ev.strong_beats([0, 32, 56], 72) == [0, 16, 32, 56, 64]  # 4/4, 3/4, 2/4


def test_strong_beat_bass_needs_a_low_onset_on_the_beat():
    bars = [0, BAR]
    on_one_and_three = [Note(s, s + 8, 40, 80) for s in (0, 16, 32, 48)]
    assert ev.strong_beat_bass(on_one_and_three, bars, 2 * BAR) == 1.0
    assert ev.strong_beat_bass(on_one_and_three[::2], bars, 2 * BAR) == 0.5
    one_step_late = [n._replace(start=n.start + 1) for n in on_one_and_three]
    assert ev.strong_beat_bass(one_step_late, bars, 2 * BAR) == 1.0
    two_steps_late = [n._replace(start=n.start + 2) for n in on_one_and_three]
    assert ev.strong_beat_bass(two_steps_late, bars, 2 * BAR) == 0.0
    high = [n._replace(pitch=60) for n in on_one_and_three]
    assert ev.strong_beat_bass(high, bars, 2 * BAR) == 0.0
    assert math.isnan(ev.strong_beat_bass([], bars, 2 * BAR))


def test_voicing_spread_and_median_duration():
    assert ev.voicing_spread(block(0, C)) == 19.0  # C3 to G4
    assert ev.voicing_spread([Note(0, 8, 60, 80), Note(8, 16, 72, 80)]) == 0.0  # lone notes
    held_bass = [Note(0, 32, 36, 80), Note(8, 12, 60, 80), Note(16, 20, 67, 80)]
    assert ev.voicing_spread(held_bass) == 24.0  # onsets: 0, 24, 31 semitones
    assert ev.median_duration(held_bass) == 0.5
    assert ev.median_duration(block(0, C)) == 1.0
    assert math.isnan(ev.voicing_spread([])) and math.isnan(ev.median_duration([]))


def test_pianism_metrics_name_every_metric():
    notes = blocks([C] * 8)
    values = ev.pianism_metrics(notes, notes, BARS, 8 * BAR)
    assert list(values) == list(ev.PIANISM_METRICS)
    assert values["rhythm_distance"] == 0.0 and values["onset_repetition"] == 1.0
    assert set(ev.PIANISM_METRICS) <= set(ev.METRICS)


# --------------------------------------------------------------------------- the quality bar


CHORDS = {"C:maj": C, "A:min": A_MINOR, "F:maj": F, "G:maj": G}


def pianist(labels: list[str], seed: int) -> list[Note]:
    """A held bass on each downbeat, then single chord tones on off-beat positions that
    change from bar to bar."""
    patterns = [(4, 12, 20, 28), (4, 10, 12, 20, 28), (6, 12, 20, 26), (4, 12, 14, 22, 28)]
    notes = []
    for bar, label in enumerate(labels):
        bass, *tones = CHORDS[label]
        start = bar * BAR
        notes.append(Note(start, start + 16, bass, 80))
        for i, position in enumerate(patterns[(bar + seed) % len(patterns)]):
            onset = start + position
            notes.append(Note(onset, onset + 3, tones[i % 3], 60 + 8 * (i % 3)))
    return notes


def pianist_segment(seed: int) -> Segment:
    labels = [list(CHORDS)[(bar + seed) % len(CHORDS)] for bar in range(8)]
    return Segment(
        song_id=f"{seed:03d}",
        first_bar=0,
        num_steps=8 * BAR,
        melody=[Note(8 * b, 8 * b + 8, 72, 90) for b in range(32)],
        accompaniment=pianist(labels, seed),
        chords=[Span(b * BAR, (b + 1) * BAR, label) for b, label in enumerate(labels)],
        bar_starts=BARS,
        key="C:maj",
    )


def test_quality_bar_fails_block_chords_against_a_pianist():
    segments = [pianist_segment(seed) for seed in range(6)]
    systems = {"block_chords": ev.block_chord_baseline, "pianist": lambda s: s.accompaniment}
    result = ev.evaluate_systems(segments, systems, progress=False, resamples=50)

    def failed(system: str) -> set[str]:
        rows = ev.quality_bar(result, system)
        return {row["criterion"].split()[0] for row in rows if not row["passed"]}

    assert {"rhythm_distance", "onset_repetition", "voicing_spread"} <= failed("block_chords")
    assert not failed("pianist")  # the pianist passes against itself
