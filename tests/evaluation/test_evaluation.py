"""Evaluation metrics on hand-made cases with known answers, and on real POP909 songs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pianoacc_utils import evaluation as ev
from pianoacc_utils import generation
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.evaluation.reference import summarise_pianist
from pianoacc_utils.data import (
    Note,
    Segment,
    Span,
    load_song,
    normalize_notes,
    song_ids,
    split_songs,
)
from pianoacc_utils.data import segment as cut_segments
from pianoacc_utils.harmony import estimate_key

BAR = 32
"""Steps in a 4/4 bar (8 steps per beat)."""

C_MAJOR = [60, 64, 67]
C_SHARP_MAJOR = [61, 65, 68]


def chord(start: int, end: int, pitches: list[int], velocity: int = 80) -> list[Note]:
    return [Note(start, end, p, velocity) for p in pitches]


def scale(tonic: int, intervals: list[int]) -> list[Note]:
    """One note per beat going up ``intervals`` from ``tonic`` (MIDI)."""
    return [Note(8 * i, 8 * i + 8, tonic + step, 80) for i, step in enumerate(intervals)]


MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11, 12]
C_TRIAD = [48, *C_MAJOR]


def oom_pah(bars: int) -> list[Note]:
    """A low, held bass on every beat and a short three-note chord on every off-beat."""
    notes = []
    for beat in range(4 * bars):
        notes.append(Note(8 * beat, 8 * beat + 6, 36 if beat % 2 == 0 else 43, 80))
        notes += chord(8 * beat + 4, 8 * beat + 5, C_MAJOR, 60)
    return notes


def make_segment(bars: int = 4, **fields) -> Segment:
    """A 4/4 segment over "C:maj" chords, key C major, melody on every beat."""
    values = {
        "song_id": "test",
        "first_bar": 0,
        "num_steps": bars * BAR,
        "melody": [Note(8 * b, 8 * b + 8, 72 + (b % 3) * 2, 90) for b in range(4 * bars)],
        "accompaniment": [n for b in range(bars) for n in chord(b * BAR, (b + 1) * BAR, C_TRIAD)],
        "chords": [Span(0, bars * BAR, "C:maj")],
        "bar_starts": [b * BAR for b in range(bars)],
        "key": "C:maj",
        "transpose": 0,
    }
    values.update(fields)
    return Segment(**values)


def moved(notes: list[Note], steps: int) -> list[Note]:
    return normalize_notes([n._replace(start=n.start + steps, end=n.end + steps) for n in notes])


def stretched(notes: list[Note], factor: float = 1.03) -> list[Note]:
    return normalize_notes(
        [n._replace(start=round(n.start * factor), end=round(n.end * factor)) for n in notes]
    )


# --------------------------------------------------------------------------- timing


def test_grid_share_counts_sixteenth_onsets():
    assert ev.grid_share([Note(s, s + 1, 60, 80) for s in (0, 2, 4, 14)]) == 1.0
    assert ev.grid_share([Note(s, s + 1, 60, 80) for s in (1, 3, 5, 15)]) == 0.0
    assert ev.grid_share([Note(s, s + 1, 60, 80) for s in (0, 2, 4, 5)]) == 0.75
    assert math.isnan(ev.grid_share([]))


def test_grid_share_tolerance_is_30_ms_at_the_given_tempo():
    onset = [Note(0.3, 2, 60, 80)]  # 0.3 step = 3/80 beat
    assert ev.grid_share(onset, beat_seconds=0.5) == 1.0  # 18.75 ms off
    assert ev.grid_share(onset, beat_seconds=1.0) == 0.0  # 37.5 ms off
    with pytest.raises(PianoaccError, match="beat_seconds"):
        ev.grid_share(onset, beat_seconds=0)


def test_melody_beat_coverage_counts_on_beat_melody_onsets_struck_together():
    melody = [Note(s, s + 4, 72, 90) for s in (0, 4, 8, 16, 24)]  # step 4 is off the beat
    assert ev.melody_beat_coverage(melody, chord(0, 8, C_MAJOR) + chord(16, 24, C_MAJOR)) == 0.5
    assert ev.melody_beat_coverage(melody, []) == 0.0
    assert math.isnan(ev.melody_beat_coverage([Note(4, 8, 72, 90)], chord(0, 8, C_MAJOR)))
    late = [Note(s + 1, s + 4, 48, 80) for s in (0, 8, 16, 24)]  # one 32nd note late
    assert ev.melody_beat_coverage(melody, late, beat_seconds=0.5) == 0.0  # 62.5 ms > 40 ms
    assert ev.melody_beat_coverage(melody, late, beat_seconds=0.3) == 1.0  # 37.5 ms <= 40 ms


def test_bar_offsets_find_the_shift_of_each_bar():
    on_beat = [Note(8 * b, 8 * b + 6, 40, 80) for b in range(4)] + chord(0, 32, C_MAJOR)
    assert ev.bar_offsets(on_beat, [0], BAR).tolist() == [0.0]
    # half a beat late: reported as +0.5 (positive = late; +-1/2 beat are the same shift)
    assert ev.bar_offsets(moved(on_beat, 4), [0], 40).tolist() == [0.5]
    assert ev.bar_offsets(moved(on_beat, 1), [0], 40).tolist() == [0.125]
    assert ev.bar_offsets(moved(on_beat, 2), [0], 40).tolist() == [0.25]
    # one 32nd early: the first chord falls at the end of bar 0, next to bar 1's downbeat
    early = [n._replace(start=n.start + BAR - 1, end=n.end + BAR - 1) for n in on_beat]
    assert ev.bar_offsets(early, [0, BAR], 2 * BAR + 8).tolist() == [-0.125, -0.125]


def test_bar_offsets_skip_empty_bars_and_ignore_onsets_outside_the_bars():
    notes = [Note(BAR + 4, BAR + 12, 40, 80), Note(3 * BAR, 3 * BAR + 8, 40, 80)]
    assert ev.bar_offsets(notes, [0, BAR], 2 * BAR).tolist() == [0.5]
    assert len(ev.bar_offsets([], [0, BAR], 2 * BAR)) == 0


def test_bar_offsets_let_the_bass_beat_outvote_off_beat_chords():
    """Each off-beat chord has three notes, the bass one: the chord counts once, the
    long low bass counts most, so the pattern is on time; shifted, it is not."""
    pattern = oom_pah(8)
    bars, steps = [b * BAR for b in range(8)], 8 * BAR
    assert ev.bar_offsets(pattern, bars, steps).tolist() == [0.0] * 8
    assert ev.bar_offsets(moved(pattern, 4), bars, steps + 4).tolist() == [0.5] * 8
    stretch_offsets = ev.bar_offsets(stretched(pattern), bars, steps)
    assert np.mean(np.abs(stretch_offsets) >= 1 / 8) >= 0.5


# --------------------------------------------------------------------------- harmony


def test_chord_tone_ratio_of_triads_over_a_c_major_chord():
    chords = [Span(0, BAR, "C:maj")]
    assert ev.chord_tone_ratio(chord(0, BAR, C_MAJOR), chords) == 1.0
    assert ev.chord_tone_ratio(chord(0, BAR, C_SHARP_MAJOR), chords) == 0.0
    assert ev.chord_tone_ratio([Note(0, 8, 60, 80), Note(8, 32, 61, 80)], chords) == 0.25


def test_chord_tone_ratio_counts_time_inside_chords_only_and_undoes_transposition():
    chords = [Span(0, 16, "C:maj"), Span(16, 32, "N")]
    assert ev.chord_tone_ratio([Note(0, 32, 60, 80), Note(16, 32, 61, 80)], chords) == 1.0
    d_major = [p + 2 for p in C_MAJOR]  # sounding D major, annotated C:maj, transposed +2
    assert ev.chord_tone_ratio(chord(0, 16, d_major), chords, transpose=2) == 1.0
    assert ev.chord_tone_ratio(chord(0, 16, d_major), chords, transpose=0) < 0.5
    assert ev.chord_tone_ratio(chord(0, 8, [70]), [Span(0, 8, "C:maj/b7")]) == 1.0  # bass Bb
    assert math.isnan(ev.chord_tone_ratio(chord(16, 32, C_MAJOR), chords))
    with pytest.raises(PianoaccError, match="Q:weird"):
        ev.chord_tone_ratio(chord(0, 8, C_MAJOR), [Span(0, 8, "Q:weird")])


def test_melody_consonance_weights_pairs_by_overlap():
    melody = [Note(0, 16, 60, 90)]
    assert ev.melody_consonance(melody, [Note(0, 16, 64, 80)]) == 1.0  # C + E
    assert ev.melody_consonance(melody, [Note(0, 16, 61, 80)]) == 0.0  # C + C#
    assert ev.melody_consonance(melody, [Note(0, 16, 40, 80)]) == 1.0  # E two octaves below
    assert ev.melody_consonance(melody, [Note(0, 4, 67, 80), Note(4, 16, 62, 80)]) == 0.25
    assert math.isnan(ev.melody_consonance(melody, [Note(16, 20, 64, 80)]))


def test_estimate_key_of_scales():
    assert estimate_key(scale(60, MAJOR_SCALE)) == "C:maj"
    assert estimate_key(scale(66, MAJOR_SCALE)) == "Gb:maj"  # POP909 spelling, flats
    assert estimate_key(scale(57, [0, 2, 3, 5, 7, 8, 11, 12, 0, 0])) == "A:min"
    assert estimate_key([]) is None


def test_key_estimate_is_fast_on_many_notes(monkeypatch):
    """The key of many notes comes from their duration-weighted pitch-class profile (12
    numbers), computed without music21's analysis: the same key, at a cost that does not
    grow with the notes, for 10,000 notes as for 500."""
    from music21.analysis.discrete import KrumhanslSchmuckler

    def refused(*args, **kwargs):
        raise AssertionError("estimate_key ran music21's analysis")

    monkeypatch.setattr(KrumhanslSchmuckler, "process", refused)
    notes = [Note(i, i + 3, 48 + (i * 7) % 36, 80) for i in range(500)]
    key = estimate_key(notes)
    assert key is not None and estimate_key(notes * 20) == key


def test_key_agreement_with_annotation_relative_key_transposition_and_melody():
    c_major = scale(60, MAJOR_SCALE)
    same = ev.key_agreement(c_major, c_major, "C:maj")
    assert same == {
        "key_agreement": 1.0,
        "key_compatible": 1.0,
        "melody_key_agreement": 1.0,
        "melody_key_compatible": 1.0,
    }
    relative = ev.key_agreement(c_major, c_major, "A:min")
    assert (relative["key_agreement"], relative["key_compatible"]) == (0.0, 1.0)
    d_major = scale(62, MAJOR_SCALE)
    assert ev.key_agreement(d_major, d_major, "C:maj", transpose=2)["key_agreement"] == 1.0
    assert ev.key_agreement(scale(61, MAJOR_SCALE), [], "C#:maj")["key_agreement"] == 1.0
    elsewhere = ev.key_agreement(scale(66, MAJOR_SCALE), c_major, "C:maj")
    assert elsewhere["key_compatible"] == 0.0 and elsewhere["melody_key_compatible"] == 0.0
    assert math.isnan(ev.key_agreement(c_major, [], None)["key_agreement"])
    with pytest.raises(PianoaccError, match="C:dorian"):
        ev.key_agreement(c_major, c_major, "C:dorian")


# --------------------------------------------------------------------------- coverage


def test_silent_bar_share_counts_melody_bars_without_accompaniment():
    bars = [0, BAR, 2 * BAR, 3 * BAR]
    melody = [Note(b + 8, b + 16, 72, 90) for b in bars[:3]]  # melody in bars 0-2
    accompaniment = [Note(b, b + 8, 48, 80) for b in (0, 2 * BAR, 3 * BAR)]  # bars 0, 2, 3
    assert ev.silent_bar_share(melody, accompaniment, bars, 4 * BAR) == pytest.approx(1 / 3)
    held = accompaniment + [Note(20, BAR + 4, 36, 80)]  # rings into bar 1
    assert ev.silent_bar_share(melody, held, bars, 4 * BAR) == 0.0
    assert ev.silent_bar_share(melody, [], bars, 4 * BAR) == 1.0
    assert math.isnan(ev.silent_bar_share([], accompaniment, bars, 4 * BAR))


def test_ending_offset_in_bars():
    bars, melody = [0, BAR, 2 * BAR], [Note(0, 3 * BAR, 72, 90)]
    assert ev.ending_offset_bars(melody, [Note(0, 3 * BAR + 16, 48, 80)], bars, 4 * BAR) == 0.5
    assert ev.ending_offset_bars(melody, [Note(0, 2 * BAR, 48, 80)], bars, 3 * BAR) == -1.0
    assert math.isnan(ev.ending_offset_bars(melody, [], bars, 3 * BAR))
    irregular = [0, 24, 56]  # bars of 3 and 4 beats: mean 28 steps
    assert ev.ending_offset_bars(melody, [Note(0, 3 * BAR + 28, 48, 80)], irregular, 96) == 1.0


# --------------------------------------------------------------------------- texture


def test_texture_statistics():
    notes = [Note(0, 8, 60, 60), Note(4, 12, 64, 100)]
    assert ev.notes_per_bar(notes, 4) == 0.5
    assert ev.polyphony(notes) == pytest.approx(16 / 12)  # 1 note, 2 notes, 1 note for 4 steps each
    assert ev.pitch_range([Note(0, 1, p, 80) for p in range(40, 81)]) == pytest.approx(36.0)
    assert ev.velocity_std(notes) == 20.0
    assert ev.velocity_std(notes[:1]) == 0.0
    assert all(math.isnan(f([])) for f in (ev.polyphony, ev.pitch_range, ev.velocity_std))


def test_overlapping_area():
    values = [1.0, 2.0, 2.0, 3.5, 7.0]
    assert ev.overlapping_area(values, values) == pytest.approx(1.0)
    assert ev.overlapping_area([0, 1, 2], [10, 11, 12]) == 0.0
    assert ev.overlapping_area([0, 0, 1, 1], [1, 1, 2, 2], bins=[-0.5, 0.5, 1.5, 2.5]) == 0.5
    assert math.isnan(ev.overlapping_area([], values))


# --------------------------------------------------------------------------- baseline, one segment


def test_block_chord_baseline_plays_root_position_chords_on_the_beats():
    change = 2 * BAR - 4  # between beats
    chords = [Span(0, BAR, "C:maj"), Span(BAR, change, "A:min7"), Span(change, 3 * BAR, "N")]
    seg = make_segment(bars=3, chords=chords)
    notes = ev.block_chord_baseline(seg)
    assert {n.start for n in notes} == set(range(0, change, 8))
    first_beat = sorted(n.pitch for n in notes if n.start == 0)
    assert first_beat == [48, 60, 64, 67]  # bass C3, then C4 E4 G4
    assert sorted(n.pitch for n in notes if n.start == BAR) == [45, 69, 72, 76, 79]  # A2; A4 C E G
    assert all(n.velocity == 70 for n in notes)
    assert {n.end for n in notes if n.start == change - 4} == {change}  # cut at the chord end
    assert ev.chord_tone_ratio(notes, seg.chords) == 1.0
    assert ev.grid_share(notes) == 1.0


def test_block_chord_baseline_follows_transposition():
    seg = make_segment(transpose=3)
    notes = ev.block_chord_baseline(seg)
    assert sorted(n.pitch for n in notes if n.start == 0) == [51, 63, 67, 70]  # Eb major
    assert ev.chord_tone_ratio(notes, seg.chords, transpose=3) == 1.0


def test_segment_metrics_names_units_and_undefined_values():
    seg = make_segment()
    metrics = ev.segment_metrics(seg, seg.accompaniment)
    assert list(metrics) == list(ev.METRICS)
    assert metrics["grid_share"] == 1.0 and metrics["chord_tone_ratio"] == 1.0
    assert metrics["silent_bar_share"] == 0.0 and metrics["notes_per_bar"] == 4.0
    assert metrics["key_agreement"] == 1.0
    silent = ev.segment_metrics(seg, [])
    assert math.isnan(silent["grid_share"]) and math.isnan(silent["median_bar_offset"])
    assert silent["melody_beat_coverage"] == 0.0 and silent["silent_bar_share"] == 1.0


# --------------------------------------------------------------------------- aggregation


def test_bootstrap_interval_is_reproducible_and_brackets_the_statistic():
    values = np.random.default_rng(1).normal(10, 2, size=200)
    low, high = ev.bootstrap_ci(values, np.median, seed=3)
    assert low < np.median(values) < high and high - low < 1.5
    assert ev.bootstrap_ci(values, np.median, seed=3) == (low, high)
    assert ev.bootstrap_ci([4.0] * 5 + [math.nan]) == (4.0, 4.0)
    assert all(math.isnan(v) for v in ev.bootstrap_ci([math.nan]))


@pytest.fixture(scope="module")
def toy_result() -> ev.EvaluationResult:
    segments = [make_segment(bars=2 + i % 3, song_id=f"{i:03d}") for i in range(6)]
    systems = {
        "blocks": ev.block_chord_baseline,
        "late": lambda s: moved(s.accompaniment, 4),
        "silent": lambda s: [],
    }
    return ev.evaluate_systems(segments, systems, beat_seconds=0.5, progress=False, resamples=200)


def test_evaluate_systems_summarises_every_system_and_metric(toy_result):
    assert toy_result.systems == ["ground_truth", "blocks", "late", "silent"]
    assert len(toy_result.per_segment["late"]["grid_share"]) == 6
    truth = toy_result.summary["ground_truth"]
    assert truth["chord_tone_ratio"]["median"] == 1.0 and truth["chord_tone_ratio"]["n"] == 6
    assert toy_result.summary["late"]["median_bar_offset"]["median"] == 0.5
    assert toy_result.summary["silent"]["grid_share"]["n"] == 0
    assert toy_result.overlap["ground_truth"]["pitch"] == 1.0
    assert toy_result.overlap["blocks"]["velocity"] == 0.0  # 70 vs 80


def test_evaluate_systems_rejects_bad_input():
    seg = make_segment()
    with pytest.raises(PianoaccError, match="3 values for 1 segments"):
        ev.evaluate_systems([seg], {}, beat_seconds=[0.5, 0.5, 0.5], progress=False)
    with pytest.raises(PianoaccError, match="ground_truth"):
        ev.evaluate_systems([seg], {"ground_truth": ev.block_chord_baseline}, progress=False)
    with pytest.raises(PianoaccError, match="at least one segment"):
        ev.evaluate_systems([], {}, progress=False)


def test_result_round_trips_through_json_and_renders_markdown(toy_result, tmp_path: Path):
    path = tmp_path / "evaluation.json"
    toy_result.to_json(path)
    assert "NaN" not in path.read_text()
    assert json.loads(path.read_text())["summary"]["silent"]["grid_share"]["median"] is None
    again = ev.EvaluationResult.from_json(path)
    assert again.systems == toy_result.systems
    assert again.summary["late"]["bars_off_share"] == toy_result.summary["late"]["bars_off_share"]
    assert math.isnan(again.summary["silent"]["grid_share"]["median"])
    table = toy_result.to_markdown()
    assert table.splitlines()[0].endswith("| ground_truth | blocks | late | silent |")
    row = next(line for line in table.splitlines() if line.startswith("| median_bar_offset |"))
    assert "0.5 [0.5, 0.5]" in row and "n/a" in row
    assert "overlapping area" in table
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(PianoaccError, match="broken.json"):
        ev.EvaluationResult.from_json(tmp_path / "broken.json")


def test_quality_bar_passes_good_systems_and_fails_bad_ones(toy_result):
    rows = {row["criterion"]: row for row in ev.quality_bar(toy_result, "late")}
    assert len(rows) == 19
    assert not rows["median_bar_offset median == 0 beats"]["passed"]
    assert not rows["bars_off_share median <= 0.15"]["passed"]
    assert rows["chord_tone_ratio median >= 0.95 x ground truth"]["passed"]
    # half a beat late: the bass misses the downbeats, the onsets sit where the pianist has none
    assert not rows["strong_beat_bass median >= the pianist's 10th percentile"]["passed"]
    assert not rows["rhythm_distance median <= the pianist's 90th percentile"]["passed"]
    silent = {row["criterion"]: row["passed"] for row in ev.quality_bar(toy_result, "silent")}
    assert not silent["silent_bar_share mean <= 0.05"]
    assert not silent["grid_share median >= 0.9 x ground truth"]
    assert not silent["harmonic_motion median >= the pianist's 10th percentile"]  # NaN fails
    blocks = {row["criterion"]: row for row in ev.quality_bar(toy_result, "blocks")}
    # four chords a bar against one whole-bar chord, all at velocity 70: too dense, too
    # flat, struck where the pianist is not, and too short
    failed = {name for name, row in blocks.items() if not row["passed"]}
    assert failed == {
        "notes_per_bar median within [0.5, 2] x ground truth",
        "velocity_std median > 0 and >= 0.3 x ground truth",
        "rhythm_distance median <= the pianist's 90th percentile",
        "median_duration median within [0.5, 2] x ground truth",
    }
    assert blocks["notes_per_bar median within [0.5, 2] x ground truth"]["threshold"] == [2.0, 8.0]
    spread = blocks["voicing_spread median within the pianist's 10th-90th percentiles"]
    assert spread["threshold"] == [19.0, 19.0] and spread["value"] == 19.0
    with pytest.raises(PianoaccError, match="fnet"):
        ev.quality_bar(toy_result)
    older = ev.EvaluationResult(**{**toy_result.__dict__, "summary": {
        name: {m: v for m, v in rows.items() if m not in ev.PIANISM_METRICS}
        for name, rows in toy_result.summary.items()
    }})
    with pytest.raises(PianoaccError, match="lacks harmonic_motion"):
        ev.quality_bar(older, "blocks")


def test_compare_models_writes_the_comparison_from_the_numbers(toy_result):
    report = {
        "summary": toy_result.to_dict(),
        "quality_bar": {name: ev.quality_bar(toy_result, name) for name in ("blocks", "late")},
    }
    text = ev.compare_models(report, "blocks", "late")
    assert text.startswith("- **Closeness to the pianist.** blocks is closer")
    assert "bars_off_share 0 vs 1, pianist 0" in text  # late by half a beat: every bar off
    assert "- **Quality bar.** blocks passes 15 of 19 checks" in text
    assert "Teacher forcing" not in text  # the report has no teacher-forced metrics
    assert ev.compare_models(report, "blocks", "fnet").startswith("Only ground_truth, blocks")


def test_overlapping_area_of_values_equal_but_for_the_last_bit():
    noisy = [7.782158021466435, 7.782158021466434] * 3
    assert ev.overlapping_area(noisy, noisy[::-1]) == pytest.approx(1.0)


def test_evaluate_systems_adds_extra_metrics_with_their_units():
    segments = [make_segment(bars=2, song_id=f"{i:03d}") for i in range(3)]
    result = ev.evaluate_systems(
        segments, {"blocks": ev.block_chord_baseline}, progress=False, resamples=20,
        extra=lambda seg, notes: {"note_count": float(len(notes))},
        extra_units={"note_count": "notes"},
    )
    assert result.metrics == [*ev.METRICS, "note_count"]
    assert result.per_segment["blocks"]["note_count"] == [32.0] * 3  # 8 beats x 4 notes
    assert result.settings["units"]["note_count"] == "notes"
    assert "| note_count | notes | 8 [8, 8] | 32 [32, 32] |" in result.to_markdown()
    with pytest.raises(PianoaccError, match="extra_units"):
        ev.evaluate_systems(segments, {}, progress=False, extra=lambda seg, notes: {})


def test_evaluation_details_name_the_windows_each_model_generated_with(monkeypatch):
    """Each model's entry says the windows it generated with: the shipped models' own
    overlaps (FNet's and the Transformer's differ), or the one the configuration sets."""
    from pianoacc_utils.evaluation import runs

    segments = [make_segment(bars=2, song_id=f"{i:03d}") for i in range(2)]
    monkeypatch.setattr(runs, "split_segments", lambda config: (segments, [0.5, 0.5]))
    monkeypatch.setattr(runs, "generate_for_segments",  # generation itself is tested elsewhere
                        lambda checkpoint, segs, config: [s.accompaniment for s in segs])
    windows = {}
    for overlap in (None, 3):
        config = ev.EvaluationConfig(copy_check=False, critic=False, overlap_bars=overlap)
        _, details = runs.evaluate_checkpoints(["fnet", "transformer"], config, progress=False,
                                               baseline=False, teacher_forced=False)
        windows[overlap] = {name: model["window"] for name, model in details["models"].items()}
    shipped = {kind: generation.checkpoint_window(kind) for kind in ("fnet", "transformer")}
    assert shipped["fnet"].overlap_bars != shipped["transformer"].overlap_bars
    assert windows[None] == {kind: {"bars": w.bars, "overlap_bars": w.overlap_bars}
                             for kind, w in shipped.items()}
    assert windows[3] == {kind: {"bars": 8, "overlap_bars": 3} for kind in shipped}


def _seeded_runs(monkeypatch) -> list[ev.EvaluationConfig]:
    """``evaluate_checkpoints`` replaced by a model that plays the ground truth ``seed``
    steps late (seed 0 on time, seed 4 half a beat late) on the toy segments."""
    from pianoacc_utils.evaluation import reports

    segments = [make_segment(bars=2 + i % 3, song_id=f"{i:03d}") for i in range(6)]
    seen = []

    def by_seed(checkpoints, config, progress=True, teacher_forced=True):
        seen.append((config, teacher_forced))
        systems = {"fnet": lambda s: moved(s.accompaniment, config.seed),
                   "block_chords": ev.block_chord_baseline}
        result = ev.evaluate_systems(segments, systems, progress=False, resamples=20)
        model = {"checkpoint": "fnet", "generation_seconds": 1.0 + config.seed,
                 "teacher_forced": {"loss": 1.0} if teacher_forced else None}
        return result, {"segments": len(segments), "models": {"fnet": model}}

    def toy_reference(config):  # the toy pianist, summarised as the validation one is
        truth = ev.evaluate_systems(segments, {}, progress=False, resamples=1)
        return {"split": "toy", "metrics": summarise_pianist(truth.per_segment["ground_truth"])}

    monkeypatch.setattr(reports, "evaluate_checkpoints", by_seed)
    monkeypatch.setattr(reports, "load_reference", toy_reference)
    return seen


def test_quality_bar_reads_its_thresholds_from_the_reference(toy_result):
    own = {row["criterion"]: row for row in ev.quality_bar(toy_result, "blocks")}
    reference = {"metrics": summarise_pianist(toy_result.per_segment["ground_truth"])}
    same = {row["criterion"]: row for row in ev.quality_bar(toy_result, "blocks", reference)}
    assert same == own  # the same pianist summarised: the same checks
    sparser = json.loads(json.dumps(reference))
    sparser["metrics"]["notes_per_bar"]["median"] = 10.0  # a pianist of 10 notes a bar
    sparser["metrics"]["voicing_spread"].update(p10=5.0, p90=12.0)
    moved_bar = {row["criterion"]: row for row in ev.quality_bar(toy_result, "blocks", sparser)}
    density = "notes_per_bar median within [0.5, 2] x ground truth"
    assert moved_bar[density]["threshold"] == [5.0, 20.0] and moved_bar[density]["passed"]
    spread = "voicing_spread median within the pianist's 10th-90th percentiles"
    assert moved_bar[spread]["threshold"] == [5.0, 12.0] and not moved_bar[spread]["passed"]


def test_the_reference_is_always_the_validation_split():
    from pianoacc_utils.evaluation.reference import reference_config, reference_path

    for split in ("test", "validation", "train"):
        config = ev.EvaluationConfig(split=split, bars_per_segment=16, meter="3/4")
        chosen = reference_config(config)
        assert (chosen.split, chosen.bars_per_segment, chosen.meter) == ("validation", 16, "3/4")
        assert reference_path(config).name == "validation-96x16-3-4.json"
    summary = summarise_pianist({"a": [1.0, 2.0, float("nan"), 3.0, 4.0], "b": [float("nan")]})
    assert summary["a"]["median"] == 2.5 and summary["a"]["mean"] == 2.5
    assert summary["a"]["p10"] == pytest.approx(1.3) and summary["a"]["p90"] == pytest.approx(3.7)
    assert all(math.isnan(v) for v in summary["b"].values())


def test_evaluation_report_summarises_every_seed(monkeypatch):
    seen = _seeded_runs(monkeypatch)
    report = ev.evaluation_report(["fnet"], ev.EvaluationConfig(seeds=(0, 4, 0)))
    assert [(config.seed, forced) for config, forced in seen] == [(0, True), (4, False)]
    seeds = report["seeds"]
    assert seeds["seeds"] == [0, 4]
    assert seeds["statistic"]["key_agreement"] == "mean"
    assert seeds["statistic"]["bars_off_share"] == "median"
    assert ev.seed_statistic("copied_2_bar_share", "share of 2-bar windows") == "mean"
    assert seeds["per_seed"]["fnet"]["median_bar_offset"] == [0.0, 0.5]
    assert seeds["median"]["fnet"]["median_bar_offset"] == 0.25
    assert seeds["spread"]["fnet"]["bars_off_share"] == [0.0, 1.0]
    assert seeds["spread"]["block_chords"]["notes_per_bar"] == [16.0, 16.0]
    bars = {row["seed"]: row for row in seeds["quality_bar"]["fnet"]}
    # seed 0 plays the ground truth, whose velocities are all 80 (the bar asks for a spread)
    assert bars[0]["passed"] == 18 and bars[0]["checks"] == 19
    assert bars[0]["failed"] == ["velocity_std median > 0 and >= 0.3 x ground truth"]
    assert "median_bar_offset median == 0 beats" in bars[4]["failed"]
    assert "rhythm_distance median <= the pianist's 90th percentile" in seeds["quality_bar"][
        "block_chords"][0]["failed"]
    assert report["summary"]["summary"]["fnet"]["median_bar_offset"]["median"] == 0.0  # seed 0
    assert report["details"]["models"]["fnet"]["seed_generation_seconds"] == {"0": 1.0, "4": 5.0}
    assert set(report["quality_bar"]) == {"fnet", "block_chords"}
    text = ev.report_markdown(report)
    assert "| fnet | 4 | " in text and "| block_chords | 0 | 15/19 |" in text
    assert "| median_bar_offset | median | beats | 0 [0, 0] | 0.25 [0, 0.5] | 0 [0, 0] |" in text
    single = ev.evaluation_report(["fnet"], ev.EvaluationConfig(seed=4))
    assert single["seeds"]["seeds"] == [4] and "over seeds" not in ev.report_markdown(single)


def test_evaluate_seeds_and_copy_check_options(evaluate_config, capsys):
    from pianoacc_utils import cli

    config = evaluate_config(["--seeds", "3", "1", "2"])
    assert config.seeds == (3, 1, 2) and config.seed == 3
    assert config.copy_check
    config = evaluate_config(["--seed", "5", "--no-copy-check"])
    assert config.seeds == () and config.seed == 5
    assert not config.copy_check
    config = evaluate_config([])
    assert config.seeds == () and config.seed == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--seed", "1", "--seeds", "2"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--seeds", "one"])


# --------------------------------------------------------------------------- real songs


def _jittered(notes: list[Note], seed: int) -> list[Note]:
    """Every onset moved by -1, 0 or +1 step (a 32nd note) at random."""
    rng = np.random.default_rng(seed)
    shifts = rng.integers(-1, 2, len(notes))
    return normalize_notes(
        [n._replace(start=max(n.start + d, 0), end=n.end + d) for n, d in zip(notes, shifts)]
    )


@pytest.fixture(scope="module")
def real_result(pop909_dir: Path) -> ev.EvaluationResult:
    """Four test-split songs in 32-bar segments, with perturbed ground truths."""
    test_songs = split_songs(song_ids(pop909_dir))["test"][:4]
    segments, tempos = [], []
    for song_id in test_songs:
        song = load_song(song_id, root=pop909_dir)
        for seg in cut_segments(song, bars=32):
            segments.append(seg)
            tempos.append(ev.segment_beat_seconds(song, seg))
    by_song = {s.song_id: s for s in reversed(segments)}  # each song's first segment

    def other_song(seg: Segment) -> list[Note]:
        other = by_song[test_songs[(test_songs.index(seg.song_id) + 1) % len(test_songs)]]
        return [n for n in other.accompaniment if n.start < seg.num_steps]

    systems = {
        "shifted": lambda s: moved(s.accompaniment, 4),
        "jittered": lambda s: _jittered(s.accompaniment, s.first_bar),
        "stretched": lambda s: stretched(s.accompaniment),
        "other_song": other_song,
        "blocks": ev.block_chord_baseline,
    }
    return ev.evaluate_systems(
        segments, systems, beat_seconds=tempos, progress=False, resamples=200
    )


def test_ground_truth_scores_high_on_real_songs(real_result):
    truth = real_result.summary["ground_truth"]
    assert truth["grid_share"]["median"] > 0.9
    assert truth["chord_tone_ratio"]["median"] > 0.9
    assert truth["melody_beat_coverage"]["median"] > 0.85
    assert truth["median_bar_offset"]["median"] == 0
    assert truth["bars_off_share"]["median"] < 0.15


def test_timing_damage_is_detected_on_real_songs(real_result):
    summary = real_result.summary
    truth_off = summary["ground_truth"]["bars_off_share"]["mean"]
    truth_coverage = summary["ground_truth"]["melody_beat_coverage"]["mean"]
    for system in ("shifted", "stretched"):
        assert summary[system]["bars_off_share"]["mean"] > truth_off + 0.5, system
        assert summary[system]["melody_beat_coverage"]["mean"] < truth_coverage - 0.1, system
    assert summary["shifted"]["median_bar_offset"]["median"] == 0.5
    assert summary["jittered"]["grid_share"]["median"] < 0.5


def test_harmony_damage_is_detected_on_real_songs(real_result):
    summary = real_result.summary
    truth = summary["ground_truth"]["chord_tone_ratio"]["median"]
    assert summary["other_song"]["chord_tone_ratio"]["median"] < truth - 0.4
    consonance = {s: summary[s]["melody_consonance"]["median"] for s in summary}
    assert consonance["other_song"] < consonance["ground_truth"] - 0.1
    blocks = real_result.per_segment["blocks"]
    assert all(v == 1.0 for v in blocks["chord_tone_ratio"])
    assert all(v == 1.0 for v in blocks["grid_share"])
