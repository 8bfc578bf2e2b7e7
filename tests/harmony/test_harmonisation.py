"""Chords from a melody alone (the learned harmoniser) and the melody-chord metrics of
Yeh et al. (2020).

Metric values are worked out by hand from the definitions on melodies of a few notes;
the harmoniser runs with the shipped parameters on tiny melodies in several meters.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.data import Note, Span, load_song
from pianoacc_utils.evaluation import (
    HARMONISATION_METRICS,
    bar_line_changes,
    cc,
    che,
    ctd,
    ctnctr,
    exact_beat_agreement,
    harmonisation_metrics,
    mctd,
    pcs,
    tonal_centroid,
)
from pianoacc_utils.harmony import (
    HarmonyExample,
    beat_agreement,
    chord_tones,
    choose_vocabulary,
    fit_harmoniser,
    harmonise,
    key_tonic,
    label_state,
    learned_chords,
    load_parameters,
    melody_frames,
    nearest_quality,
    read_parameters,
    save_parameters,
    state_label,
    training_data,
)
from pianoacc_utils.harmony.key import parse_key
from pianoacc_utils.harmony.learned import (
    PARAMETERS_FILE,
    Frames,
    PreparedMelody,
    loop_silent_bars,
    state_posteriors,
    transition_matrices,
    viterbi,
    vocabulary_tones,
)

C_MAJOR = [Span(0, 32, "C:maj")]


def notes(*pitches: int, length: int = 8, start: int = 0) -> list[Note]:
    """Consecutive notes of ``length`` steps from ``start``."""
    return [
        Note(start + i * length, start + (i + 1) * length, p, 80) for i, p in enumerate(pitches)
    ]


def check_spans(spans: list[Span], num_steps: int) -> None:
    """Sorted, touching, non-overlapping spans covering ``[0, num_steps]``, labels that parse."""
    assert spans[0].start == 0 and spans[-1].end == num_steps
    for before, after in zip(spans[:-1], spans[1:]):
        assert before.end == after.start and before.start < before.end
    for span in spans:
        assert chord_tones(span.label) is not None


# --------------------------------------------------------------------------- metrics


def test_chord_tones_give_ctnctr_one():
    assert ctnctr(notes(60, 64, 67, 72), C_MAJOR, 32) == 1.0


def test_ctnctr_counts_proper_non_chord_tones():
    # D (steps to E: proper), E (chord tone) over C; F# (leaps to Bb) and Bb (last) over G.
    chords = [Span(0, 16, "C:maj"), Span(16, 32, "G:maj")]
    assert ctnctr(notes(62, 64, 66, 70), chords, 32) == pytest.approx((8 + 8) / 32)


def test_a_repeated_non_chord_tone_looks_past_its_repeats():
    # D, D (both step to E after the repeat: proper), E over C: no improper time.
    assert ctnctr(notes(62, 62, 64), [Span(0, 24, "C:maj")], 24) == 1.0
    # D leaps to A (improper), A is a chord tone of A minor: (8 + 0) / 16.
    assert ctnctr(notes(62, 69), [Span(0, 16, "A:min")], 16) == pytest.approx(0.5)


def test_pcs_of_a_c_major_arpeggio():
    # C over C/E/G: +1 +1 0 (a fourth above G); E: +1 +1 +1; G: +1 +1 +1; C: +1 +1 0.
    assert pcs(notes(60, 64, 67, 72), C_MAJOR, 32) == pytest.approx(10 / 12)


def test_pcs_of_dissonant_seconds():
    # Db over C, E, G: a minor 2nd, a major 6th (Db above E), a tritone: -1 +1 -1.
    assert pcs(notes(61), [Span(0, 8, "C:maj")], 8) == pytest.approx(-1 / 3)


def test_tonal_centroid_of_c_major():
    half = math.sqrt(3) / 2
    expected = [(half + 0.5) / 3, (1 + half - 0.5) / 3, 1 / 3, 2 / 3, half / 3, 0.0]
    chroma = np.zeros(12)
    chroma[[0, 4, 7]] = 1
    assert tonal_centroid(chroma) == pytest.approx(expected, abs=1e-9)
    assert np.linalg.norm(tonal_centroid(np.eye(12)[5])) == pytest.approx(1.5)


def test_mctd_is_zero_for_a_chord_of_one_pitch_class():
    assert mctd(notes(60, 72), [Span(0, 16, "C:maj(*3,*5)")], 16) == pytest.approx(0.0)
    assert mctd(notes(66), [Span(0, 8, "C:maj(*3,*5)")], 8) == pytest.approx(
        np.linalg.norm(tonal_centroid(np.eye(12)[6]) - tonal_centroid(np.eye(12)[0]))
    )


def test_progression_metrics():
    one = [Span(0, 32, "C:maj")]
    assert che([], one, 32) == 0.0 and cc([], one, 32) == 1.0 and ctd([], one, 32) == 0.0
    # Two beats of C, one of G, one of C again: two chords, shares 3/4 and 1/4.
    three = [Span(0, 16, "C:maj"), Span(16, 24, "G:maj"), Span(24, 32, "C:maj")]
    assert cc([], three, 32) == 2.0
    assert che([], three, 32) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    c, g = np.zeros(12), np.zeros(12)
    c[[0, 4, 7]], g[[7, 11, 2]] = 1, 1
    jump = np.linalg.norm(tonal_centroid(c) - tonal_centroid(g))
    assert ctd([], three, 32) == pytest.approx(2 * jump / 3)


def test_no_chord_gives_nan_and_counts_nothing():
    silence = [Span(0, 32, "N")]
    assert math.isnan(ctnctr(notes(60), silence, 32)) and math.isnan(pcs(notes(60), silence, 32))
    assert math.isnan(che([], silence, 32)) and cc([], silence, 32) == 0.0


def test_agreements_root_third_and_exact():
    annotated = [Span(0, 16, "C:maj7"), Span(16, 32, "A:min")]
    ours = [Span(0, 16, "C:maj"), Span(16, 32, "A:min")]
    values = harmonisation_metrics(notes(60, 64, 69, 72), ours, 32, annotated)
    assert values["root_third"] == 1.0 and values["exact"] == 0.5
    assert exact_beat_agreement(annotated, annotated, 32) == 1.0
    assert set(HARMONISATION_METRICS) <= set(values)


# --------------------------------------------------------------------------- the harmoniser


def test_empty_or_outside_melody_gives_no_chords():
    assert learned_chords([], [0, 32], 64) == []
    assert learned_chords(notes(60), [0], 0) == []
    assert learned_chords([Note(80, 88, 60, 80)], [0, 32], 64) == []


def test_c_major_arpeggio_gets_a_chord_with_c_e_g():
    spans = learned_chords(notes(60, 64, 67, 72), [0], 32)
    check_spans(spans, 32)
    assert all({0, 4, 7} <= chord_tones(span.label)[0] for span in spans)
    # Over two bars the first bar's chord holds C, E and G (POP909's chords change on
    # most bar lines, so the second bar may move on).
    spans = learned_chords(notes(60, 64, 67, 64, 60, 67, 64, 72), [0, 32], 64)
    check_spans(spans, 64)
    assert spans[0].end >= 32 and {0, 4, 7} <= chord_tones(spans[0].label)[0]


@pytest.mark.parametrize(
    "bar_starts, num_steps",
    [
        ([0, 24, 48, 72], 96),  # 3/4, and 6/8 (six eighths of 4 steps)
        ([0, 12, 24, 36], 48),  # 3/8: bars of one and a half beats
        ([0, 40, 80], 120),  # 5/4
        ([0, 32, 56, 60, 100], 110),  # irregular bars, a bar shorter than a beat
        ([16, 48, 80], 112),  # a two-beat pickup
    ],
)
def test_any_meter_gives_valid_spans(bar_starts, num_steps):
    melody = notes(67, 69, 71, 72, 74, 72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 60, length=7)
    spans = learned_chords(melody, bar_starts, num_steps)
    check_spans(spans, num_steps)


def test_short_melody_and_notes_outside_the_bars():
    check_spans(learned_chords(notes(64, length=3), [0], 8), 8)
    # A note before step 0 and one past the end: the spans still cover [0, num_steps].
    melody = [Note(-4, 6, 60, 80)] + notes(64, 67, start=8) + [Note(30, 50, 72, 80)]
    check_spans(learned_chords(melody, [0, 16], 32), 32)


def test_state_posteriors_are_the_sums_over_every_path():
    """Forward-backward against enumerating all 3^5 paths of a tiny model, a frozen frame
    (which keeps the state before it) included; the best path is Viterbi's."""
    rng = np.random.default_rng(0)
    states, count = 3, 5
    change = np.log(rng.dirichlet(np.ones(states), size=states))
    parameters = {
        "log_change": change,
        "log_stay": np.log(rng.uniform(0.2, 0.8, size=(2, states))),
        "log_prior": np.log(rng.dirichlet(np.ones(states))),
    }
    scores = rng.normal(size=(count, states))
    position = np.array([0, 1, 0, 1, 0])
    frozen = np.array([False, False, True, False, False])
    frames = Frames(np.zeros((count, 2), np.int64), position, np.zeros(count, np.int64), frozen)
    transitions = transition_matrices(parameters)
    expected, best, best_path = np.zeros((count, states)), -np.inf, None
    for path in np.ndindex(*(states,) * count):
        if path[2] != path[1]:  # the frozen frame keeps its state
            continue
        log_weight = parameters["log_prior"][path[0]] + sum(scores[f, s] for f, s in enumerate(path))
        log_weight += sum(
            transitions[position[f], path[f - 1], path[f]] for f in range(1, count) if not frozen[f]
        )
        expected[np.arange(count), path] += np.exp(log_weight)
        if log_weight > best:
            best, best_path = log_weight, path
    expected /= expected.sum(axis=1, keepdims=True)
    prepared = PreparedMelody(frames, np.zeros((count, 1)), np.zeros((count, 1)), 0)
    np.testing.assert_allclose(state_posteriors(prepared, scores, parameters), expected, atol=1e-10)
    path = viterbi(scores, transitions, position, frozen, parameters["log_prior"])
    assert tuple(path) == best_path


def test_silent_bars_loop_the_progression_around_them():
    # Bars (4 beats each): 0-1 silent (an intro), 2-5 sounding, 6-9 silent (an interlude).
    bars = np.repeat(np.arange(10), 4)
    silent = np.isin(bars, [0, 1, 6, 7, 8, 9])
    frames = Frames(np.zeros((40, 2), np.int64), np.zeros(40, np.int64), bars, silent)
    path = np.where(silent, -1, bars * 10 + np.tile(np.arange(4), 10))  # state: bar, beat
    looped = loop_silent_bars(path, frames).reshape(10, 4)
    # Each silent bar takes the bar four bars away, beat by beat; the interlude's bars 8
    # and 9 repeat bars 4 and 5, and the intro repeats bars 4 and 5 of the bars after it.
    for bar, source in {0: 4, 1: 5, 6: 2, 7: 3, 8: 4, 9: 5}.items():
        assert looped[bar].tolist() == [source * 10 + beat for beat in range(4)]
    assert (looped[2:6] == path.reshape(10, 4)[2:6]).all()  # sounding bars unchanged
    # No sounding bar: nothing to loop.
    assert (loop_silent_bars(path, frames._replace(silent_bar=np.ones(40, bool))) == path).all()


def test_silent_bars_of_other_lengths_take_the_source_beats_in_order():
    # A 3-beat bar after a 4-beat source, then a 5-beat one: the source's first beats, then
    # its last beat repeated.
    bars = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    silent = bars > 0
    frames = Frames(np.zeros((12, 2), np.int64), np.zeros(12, np.int64), bars, silent)
    path = np.array([1, 2, 3, 4] + [-1] * 8)
    # Only one bar comes before the silent run: it loops that bar (bar 2 copies bar 1,
    # itself a copy of bar 0).
    assert loop_silent_bars(path, frames).tolist() == [1, 2, 3, 4, 1, 2, 3, 1, 2, 3, 3, 3]


def test_a_silent_run_soon_after_the_start_loops_the_bars_it_has():
    bars = np.arange(6)  # one frame per bar: bars 0-1 sounding, 2-5 silent
    frames = Frames(np.zeros((6, 2), np.int64), np.zeros(6, np.int64), bars, bars >= 2)
    path = np.array([7, 8, -1, -1, -1, -1])
    assert loop_silent_bars(path, frames).tolist() == [7, 8, 7, 8, 7, 8]


def test_a_melody_with_an_interlude_gets_moving_chords_there():
    melody = notes(60, 64, 67, 72) + notes(62, 65, 69, 74, start=32) + notes(60, 64, 67, 72, start=192)
    spans = learned_chords(melody, list(range(0, 256, 32)), 256)
    check_spans(spans, 256)

    def beat_labels(bar: int) -> list[str]:
        return [next(s.label for s in spans if s.start <= t < s.end) for t in range(bar * 32, bar * 32 + 32, 8)]

    # Bars 2-5 have no melody: they loop bars 0 and 1, the two bars before them.
    assert [beat_labels(bar) for bar in (2, 3, 4, 5)] == [beat_labels(0), beat_labels(1)] * 2


def test_bar_line_changes():
    chords = [Span(0, 32, "C:maj"), Span(32, 64, "C:maj"), Span(64, 96, "A:min"), Span(100, 128, "F:maj")]
    # Lines 32 (C to C: held), 64 (changes), 96 (no chord after it: not counted).
    assert bar_line_changes(chords, [0, 32, 64, 96, 128], 128) == 0.5
    assert bar_line_changes([Span(0, 64, "C:maj")], [0, 32], 64) == 0.0
    assert math.isnan(bar_line_changes([], [0, 32], 64))
    assert math.isnan(bar_line_changes(chords, [0], 128))  # no line inside the piece


def test_frames_follow_the_bars():
    # A one-beat pickup, bars of 4 and 3 beats, a bar shorter than a beat, a last bar
    # of a beat and a quarter (its short end joins the beat before it).
    frames = melody_frames(notes(60), [8, 40, 64, 68], 78)
    assert frames.bounds.tolist() == [
        [0, 8],
        [8, 16],
        [16, 24],
        [24, 32],
        [32, 40],
        [40, 48],
        [48, 56],
        [56, 64],
        [64, 68],
        [68, 78],
    ]
    # 0: bar line, 1: middle of a bar of an even number of beats, 2: other beats.
    assert frames.position.tolist() == [0, 0, 2, 1, 2, 0, 2, 2, 0, 0]
    assert frames.bar.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 3, 4]
    assert frames.silent_bar.tolist() == [False] + [True] * 9


def test_vocabulary_reduction_and_states():
    vocabulary = ("maj", "min", "7", "maj/3")
    assert vocabulary[nearest_quality("maj6", vocabulary)] == "maj"
    assert vocabulary[nearest_quality("9", vocabulary)] == "7"
    assert vocabulary[nearest_quality("maj7/3", vocabulary)] == "maj/3"
    state = label_state("Bb:7", 2, vocabulary)
    assert state == 2 * 12 + 8 and state_label(state, 2, vocabulary) == "Bb:7"
    assert label_state("N", 2, vocabulary) == -1


def test_shipped_parameters_are_small_and_valid():
    parameters = load_parameters()
    assert (project_root() / PARAMETERS_FILE).stat().st_size < 1 << 20
    qualities = [str(q) for q in parameters["qualities"]]
    assert {"maj", "min"} <= set(qualities)
    states = 12 * len(qualities)
    assert parameters["log_change"].shape == (states, states)
    assert np.all(np.exp(parameters["log_stay"]) < 1)


def test_shipped_parameters_are_the_reported_fit(pop909_dir):
    # The report's figures come from the file it saved; a file from another fit (an
    # older run, another seed) gives other agreements on these validation songs.
    report = json.loads((project_root() / "results/harmonisation_validation.json").read_text())
    check = report["shipped_check"]
    assert len(check["songs"]) >= 5
    for song_id, expected in zip(check["songs"], check["root_third"]):
        song = load_song(song_id, root=pop909_dir)
        bars = [int(b) for b in song.grid.bar_starts]
        chords = learned_chords(song.melody, bars, int(song.grid.num_steps))
        measured = beat_agreement(chords, song.chords, int(song.grid.num_steps))
        assert measured == pytest.approx(expected, abs=1e-9), song_id


def test_shipped_vocabulary_tones_are_mir_evals(monkeypatch):
    # The tones stored with the parameters answer chord_tones for every label the
    # harmoniser can emit; they must be what parsing the label gives.
    from pianoacc_utils.harmony import chords

    parameters = load_parameters()
    stored = vocabulary_tones(parameters)
    assert len(stored) == 12 * len(parameters["qualities"])
    monkeypatch.setattr(chords, "_PARSED", {})
    chords.chord_tones.cache_clear()
    try:
        for label, tones in stored.items():
            assert chords.chord_tones(label) == tones, label
    finally:
        chords.chord_tones.cache_clear()


def test_key_labels_in_any_spelling():
    assert parse_key("Db:maj") == (1, "maj") and parse_key("C#:maj") == (1, "maj")
    assert parse_key("Fb:min") == (4, "min")
    with pytest.raises(PianoaccError, match="unknown tonic"):
        parse_key("H:maj")
    # The harmoniser's frame: a minor key is read from its relative major's tonic.
    assert key_tonic("A:min") == (0, True) and key_tonic("D:maj") == (2, False)
    assert key_tonic(None) is None


def test_fit_save_and_read_a_tiny_harmoniser(tmp_path):
    # Melodies that spell their chords: C major arpeggios under C, G major ones under G.
    c, g = notes(60, 64, 67, 72), notes(67, 71, 74, 79, start=32)
    examples = [
        HarmonyExample(c + g, [0, 32], 64, [Span(0, 32, "C:maj"), Span(32, 64, "G:maj")]),
        HarmonyExample(
            c + notes(65, 69, 72, 77, start=32),
            [0, 32],
            64,
            [Span(0, 32, "C:maj"), Span(32, 64, "F:maj")],
        ),
    ]
    vocabulary = choose_vocabulary(examples)
    assert vocabulary == ("maj",)
    data = training_data(examples, vocabulary, [(0, False)] * len(examples))
    assert data.states.tolist()[:8] == [0] * 4 + [7] * 4
    for kind in ("hmm", "softmax", "mlp"):
        parameters = fit_harmoniser(data, vocabulary, kind, epochs=200, hidden=32)
        path = tmp_path / f"{kind}.npz"
        save_parameters(path, parameters)
        stored = read_parameters(path)
        assert str(stored["kind"]) == kind
        spans = harmonise(c + g, [0, 32], 64, stored, tonic=(0, False))
        check_spans(spans, 64)
        assert [s.label for s in spans] == ["C:maj", "G:maj"]
    with pytest.raises(PianoaccError, match="harmoniser kind"):
        fit_harmoniser(data, vocabulary, "forest")
    (tmp_path / "bad.npz").write_bytes(b"not a file of arrays")
    with pytest.raises(PianoaccError, match="bad.npz"):
        read_parameters(tmp_path / "bad.npz")
