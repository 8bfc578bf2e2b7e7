"""The critic: features of hand-made windows, the two-sample test on synthetic samples,
folds grouped by song, the controls, and the report's tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import Note
from pianoacc_utils.evaluation import critic
from pianoacc_utils.generation.critic_features import (
    ROLL_PITCHES,
    ROLL_STEPS,
    CriticWindow,
    critic_windows,
    feature_names,
    feature_unit,
    window_features,
    window_roll,
)

BAR = 32  # steps of a 4/4 bar


def features(window: CriticWindow) -> dict[str, float]:
    return dict(zip(feature_names(), window_features(window)))


def block_window(chord: tuple[int, ...] = (48, 55, 64), velocity: int = 70) -> CriticWindow:
    """Two bars of the same chord struck on every beat, under a one-note melody."""
    notes = tuple(Note(b * 8, b * 8 + 8, p, velocity) for b in range(8) for p in chord)
    return CriticWindow((Note(0, 64, 72, 90),), notes, (0, BAR), 2 * BAR, tonic=0)


def test_block_chords_have_their_chord_size_per_onset_and_onsets_on_the_beats():
    values = features(block_window())
    assert values["notes_per_onset"] == pytest.approx(3)
    assert values["onsets_per_beat"] == pytest.approx(1)
    assert values["notes_per_beat"] == pytest.approx(3)
    for k in range(16):
        expected = 0.25 if k % 4 == 0 else 0.0
        assert values[f"onset_at_16th_{k:02d}"] == pytest.approx(expected)
    assert values["onsets_off_sixteenths"] == 0
    assert values["bar_rhythm_repetition"] == pytest.approx(1)
    assert values["velocity_std"] == 0 and values["velocity_mean"] == pytest.approx(70)
    assert (values["bass_pitch"], values["top_pitch"]) == (48, 64)
    assert (values["lowest_pitch"], values["highest_pitch"]) == (48, 64)
    assert values["voicing_span"] == 16 and values["voicing_interval"] == pytest.approx(8)
    assert values["duration_median"] == pytest.approx(1) and values["silent_share"] == 0
    assert values["polyphony"] == pytest.approx(3)
    # C, G, E: a third of the sounding time each, counted from the tonic C
    assert values["pitch_class_00_from_tonic"] == pytest.approx(1 / 3)
    assert values["pitch_class_07_from_tonic"] == pytest.approx(1 / 3)
    assert values["pitch_class_02_from_tonic"] == 0
    assert values["melody_pitch_class_share"] == pytest.approx(1 / 3)  # the melody plays C
    assert values["melody_onset_share"] == 1


def test_pitch_classes_are_counted_from_the_tonic():
    window = block_window()
    in_g = CriticWindow(window.melody, window.accompaniment, window.bar_starts,
                        window.num_steps, tonic=7)
    values = features(in_g)
    assert values["pitch_class_05_from_tonic"] == pytest.approx(1 / 3)  # C is G's fourth
    assert values["pitch_class_00_from_tonic"] == pytest.approx(1 / 3)  # G


def test_rhythm_features_of_an_off_beat_pattern():
    # bar 1: onsets on the second 16th and on an odd 32nd step; bar 2: on beats 1 and 3
    notes = (Note(2, 4, 60, 80), Note(5, 8, 62, 80), Note(32, 40, 60, 60), Note(48, 56, 60, 100))
    window = CriticWindow((Note(0, 64, 72, 90),), notes, (0, BAR), 2 * BAR, tonic=0)
    values = features(window)
    assert values["onset_at_16th_01"] == pytest.approx(0.25)
    assert values["onset_at_16th_02"] == pytest.approx(0.25)  # step 5 counts at 16th 2
    assert values["onset_at_16th_00"] == pytest.approx(0.25)
    assert values["onset_at_16th_08"] == pytest.approx(0.25)
    assert values["onsets_off_sixteenths"] == pytest.approx(0.25)
    assert values["bar_rhythm_repetition"] == 0
    assert values["notes_per_onset"] == 1 and math.isnan(values["voicing_interval"])
    assert values["velocity_std"] == pytest.approx(np.std([80, 80, 60, 100]))
    assert values["melody_onset_share"] == 0


def test_an_empty_window_is_silent_and_otherwise_undefined():
    window = CriticWindow((Note(0, 8, 72, 90),), (), (0, BAR), 2 * BAR, tonic=0)
    values = features(window)
    assert values["onsets_per_beat"] == 0 and values["silent_share"] == 1
    assert math.isnan(values["notes_per_onset"]) and math.isnan(values["bass_pitch"])


def test_every_feature_has_a_unit():
    assert all(feature_unit(name) for name in feature_names())
    assert feature_unit("pitch_class_03_from_tonic") == "share of sounding time"
    assert feature_unit("bass_pitch") == "MIDI pitch"


def test_windows_are_cut_where_the_melody_sounds_at_the_same_bars_for_any_accompaniment():
    bars = [0, 32, 64, 96, 128, 160, 192]
    melody = [Note(0, 16, 72, 90), Note(100, 140, 74, 90)]  # notes in bars 0 and 3
    pianist = [Note(s, s + 8, 48, 70) for s in range(0, 224, 8)]
    system = [Note(s, s + 4, 50, 70) for s in range(0, 224, 16)]
    ours = critic_windows(melody, pianist, bars, 224, tonic=0)
    theirs = critic_windows(melody, system, bars, 224, tonic=0)
    # windows: bars 0-1 and 2-3 (a note from step 100); not bars 4-5, where the note
    # from bar 3 is only held; bar 6 alone is not a whole window
    assert [w.num_steps for w in ours] == [64, 64]
    assert [w.melody for w in ours] == [w.melody for w in theirs]
    assert ours[1].melody == (Note(36, 64, 74, 90),) and ours[1].bar_starts == (0, 32)
    assert all(n.start < 64 for w in ours for n in w.accompaniment)
    assert len(ours[0].accompaniment) == 8 and len(theirs[0].accompaniment) == 4
    melody_in_one_window = [Note(0, 16, 72, 90)]
    assert len(critic_windows(melody_in_one_window, pianist, bars, 224, tonic=0)) == 1
    with pytest.raises(PianoaccError, match="at least one bar"):
        critic_windows(melody, pianist, bars, 224, bars=0)


def test_piano_roll_channels():
    roll = window_roll(block_window(velocity=127))
    assert roll.shape == (ROLL_PITCHES, ROLL_STEPS, 3)
    assert roll[48 - 21, 0, 0] == pytest.approx(1) and roll[48 - 21, 1, 0] == 0
    assert roll[48 - 21, :, 1].sum() == 64  # held on every step
    assert roll[72 - 21, :, 2].sum() == 64 and roll[:, :, 2].sum() == 64


# --------------------------------------------------------------------------- the test


def synthetic(songs: int, per_song: int, shift: float, seed: int):
    """Feature rows for two samples: ``a`` standard normal, ``b`` moved by ``shift`` in
    its first two features; ``per_song`` windows per song and sample."""
    rng = np.random.default_rng(seed)
    width = len(feature_names())
    a = rng.normal(size=(songs * per_song, width))
    b = rng.normal(size=(songs * per_song, width))
    b[:, :2] += shift
    groups = [f"{s:03d}" for s in range(songs) for _ in range(per_song)]
    return a, b, groups


def test_two_sample_test_is_near_chance_on_one_distribution_and_near_one_on_two():
    config = critic.CriticConfig(folds=4, resamples=200)
    a, b, groups = synthetic(songs=12, per_song=20, shift=0.0, seed=1)
    same = critic.two_sample_test(a, b, groups, groups, config)
    assert 0.35 < same["accuracy"] < 0.65
    assert same["accuracy_lo"] <= same["accuracy"] <= same["accuracy_hi"]
    assert set(same["critics"]) == {"boosted_trees", "logistic"}
    assert same["windows"] == [240, 240] and same["songs"] == 12 and same["folds"] == 4
    a, b, groups = synthetic(songs=12, per_song=20, shift=6.0, seed=2)
    apart = critic.two_sample_test(a, b, groups, groups, config)
    assert apart["accuracy"] > 0.95 and apart["accuracy_lo"] > 0.9
    top = {row["feature"] for row in apart["features"][:2]}
    assert top == set(feature_names()[:2])
    assert all(row["auc"] > 0.95 for row in apart["features"][:2])  # b is higher


def test_folds_never_share_a_song_between_training_and_test():
    groups = [f"{s % 7:03d}" for s in range(100)]
    folds = critic.grouped_folds(groups, 5)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(100))
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert len(critic.grouped_folds(groups[:14], 5)) == 5
    assert len(critic.grouped_folds(["a", "b", "a"], 5)) == 2
    with pytest.raises(PianoaccError, match="at least 2 songs"):
        critic.grouped_folds(["a", "a"], 5)


def test_song_bootstrap_interval_widens_when_songs_disagree():
    groups = [f"{s:02d}" for s in range(10) for _ in range(30)]
    even = np.tile(np.r_[np.ones(24), np.zeros(6)], 10)  # 0.8 in every song
    split = np.r_[np.ones(240), np.zeros(60)]  # 8 songs right, 2 wrong
    narrow = critic.song_bootstrap_ci(even, groups, 300, 0)
    wide = critic.song_bootstrap_ci(split, groups, 300, 0)
    assert narrow == pytest.approx((0.8, 0.8))
    assert wide[0] < 0.7 and wide[1] > 0.9


def test_jitter_moves_every_note_by_a_sixteenth():
    notes = [Note(s, s + 6, 60 + s % 12, 80) for s in range(8, 200, 8)]
    moved = critic.jittered(notes, np.random.default_rng(0))
    assert len(moved) == len(notes)
    shifts = {m.start - n.start for n, m in zip(notes, moved)}
    assert shifts == {-2, 2}
    assert all(m.end - m.start == 6 for m in moved)


def piece(song_id: str, bars: int = 8, seed: int = 0) -> critic.CriticPiece:
    """A pianist's piece: a melody on the beats, broken chords in a varied rhythm."""
    rng = np.random.default_rng(seed)
    melody = [Note(s, s + 8, 72 + int(rng.integers(0, 5)), 90) for s in range(0, bars * BAR, 8)]
    pianist = []
    for start in range(0, bars * BAR, 4):
        if rng.random() < 0.5:
            pitch = int(rng.choice([48, 52, 55, 60, 64]))
            length, velocity = int(rng.integers(2, 12)), int(rng.integers(50, 90))
            pianist.append(Note(start, start + length, pitch, velocity))
    return critic.CriticPiece(song_id, melody, pianist, list(range(0, bars * BAR, BAR)),
                              bars * BAR, tonic=0)


def test_other_song_control_takes_another_songs_pianist():
    pieces = [piece("001", seed=1), piece("001", seed=2), piece("002", seed=3)]
    others = critic.other_song_pianist(pieces)
    cut = [n._replace(end=min(n.end, 256)) for n in pieces[2].pianist]
    assert others[0] == cut and others[1] == cut
    assert others[2] == [n._replace(end=min(n.end, 256)) for n in pieces[0].pianist]
    with pytest.raises(PianoaccError, match="at least 2 songs"):
        critic.other_song_pianist(pieces[:2])


@pytest.mark.slow
def test_critic_report_tells_block_chords_apart_and_not_the_pianist_from_herself():
    pieces = [piece(f"{i:03d}", bars=16, seed=i) for i in range(8)]
    blocks = [
        [Note(s, s + 8, p, 70) for s in range(0, p_.num_steps, 8) for p in (48, 60, 64, 67)]
        for p_ in pieces
    ]
    config = critic.CriticConfig(folds=4, resamples=100, epochs=2, batch_size=32)
    report = critic.critic_report(pieces, {"blocks": blocks}, {"block_chords": blocks}, config)
    assert set(report["controls"]) == {"ground_truth", "pianist_jittered", "other_song",
                                       "block_chords"}
    blocks_row = report["systems"]["blocks"]
    assert set(blocks_row["critics"]) == set(critic.CRITICS)
    assert blocks_row["accuracy"] > 0.9 and blocks_row["windows"] == [64, 64]
    assert report["controls"]["ground_truth"]["windows"] == [32, 32]
    assert report["controls"]["ground_truth"]["critics"]["logistic"]["accuracy"] < 0.8
    text = critic.critic_markdown(report)
    assert "| blocks | " in text and "| ground_truth (control) | " in text
    assert "what gives *blocks* away" in text
    row = critic.critic_row(report, ["ground_truth", "blocks", "absent"])
    assert row.count("[") == 2 and row.endswith("| n/a |")


def test_evaluation_skips_the_critic_for_segments_of_one_song():
    from pianoacc_utils.data.pop909 import Segment
    from pianoacc_utils.evaluation import evaluation_critic

    one = piece("001")
    segments = [
        Segment("001", first, one.num_steps, one.melody, one.pianist, [], one.bar_starts)
        for first in (0, 8)
    ]
    result = evaluation_critic(segments, {"fnet": [one.pianist, one.pianist]})
    assert "at least 2 songs, got 1" in result["skipped"]


def test_the_results_table_gives_each_systems_critic_accuracy(tmp_path):
    from pianoacc_utils.evaluation.tables import table_rows

    def report(critic):
        seeds = {
            "seeds": [0, 1],
            "median": {"ground_truth": {"notes_per_bar": 12.0}, "fnet": {"notes_per_bar": 14.0}},
            "spread": {"ground_truth": {"notes_per_bar": [12.0, 12.0]},
                       "fnet": {"notes_per_bar": [13.0, 15.0]}},
        }
        return {"seeds": seeds, "details": {"critic": critic}}

    critic = {"systems": {"fnet": {"accuracy": 0.7234}},
              "controls": {"ground_truth": {"accuracy": 0.5012}}}
    (tmp_path / "a.json").write_text(json.dumps(report(critic)))
    (tmp_path / "b.json").write_text(json.dumps(report(None)))
    columns = [("pianist", "a", "ground_truth"), ("FNet", "a", "fnet"), ("FNet, b", "b", "fnet")]
    rows = table_rows(columns, [("notes per bar", "notes_per_bar")], tmp_path, critic=True)
    assert rows[1] == ["notes per bar", "12", "14 [13, 15]", "14 [13, 15]"]
    assert rows[2] == ["critic accuracy, seed 0 (0.5: indistinguishable)", "0.501", "0.723", "–"]
    without = table_rows(columns, [("notes per bar", "notes_per_bar")], tmp_path)
    assert not any(row[0].startswith("critic") for row in without)
