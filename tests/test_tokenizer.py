"""The event tokenizer: vocabulary layout, exact round trips, lenient decoding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pianoacc_utils.data import Note, normalize_notes, segment
from pianoacc_utils.tokenizer import EventTokenizer

TOKENIZER = EventTokenizer()


@st.composite
def raw_notes(draw, max_start: int = 400, max_duration: int = 80) -> list[Note]:
    """Any notes with non-negative onsets (overlaps, duplicates, zero lengths allowed)."""
    count = draw(st.integers(0, 40))
    notes = []
    for _ in range(count):
        start = draw(st.integers(0, max_start))
        duration = draw(st.integers(0, max_duration))
        pitch = draw(st.integers(0, 127))
        velocity = draw(st.integers(0, 127))
        notes.append(Note(start, start + duration, pitch, velocity))
    return notes


normalized_notes = raw_notes().map(normalize_notes)
sparse_notes = raw_notes(max_start=3000, max_duration=200).map(normalize_notes)
"""Notes far apart: gaps and durations much longer than the largest time shift (32 steps)."""


def binned(notes: list[Note]) -> list[Note]:
    """Notes with their velocity replaced by its bin, for comparing round trips."""
    return [n._replace(velocity=TOKENIZER.velocity_bin(n.velocity)) for n in notes]


def kinds(ids: list[int]) -> list[str]:
    return [TOKENIZER.token_name(i).rsplit("_", 1)[0] for i in ids]


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_layout():
    names = [TOKENIZER.token_name(i) for i in range(len(TOKENIZER))]
    assert len(TOKENIZER) == TOKENIZER.vocabulary_size == 323
    assert names[:3] == ["PAD", "START", "END"]
    assert (TOKENIZER.pad_id, TOKENIZER.start_id, TOKENIZER.end_id) == (0, 1, 2)
    assert len(set(names)) == len(names)
    counts = {
        kind: sum(name.startswith(kind) for name in names)
        for kind in ("NOTE_ON_", "NOTE_OFF_", "TIME_SHIFT_", "VELOCITY_")
    }
    assert counts == {"NOTE_ON_": 128, "NOTE_OFF_": 128, "TIME_SHIFT_": 32, "VELOCITY_": 32}
    assert TOKENIZER.token_name(3) == "NOTE_ON_0"
    assert TOKENIZER.token_name(63) == "NOTE_ON_60"
    assert TOKENIZER.token_name(130) == "NOTE_ON_127"
    assert TOKENIZER.token_name(131) == "NOTE_OFF_0"
    assert TOKENIZER.token_name(258) == "NOTE_OFF_127"
    assert TOKENIZER.token_name(259) == "TIME_SHIFT_1"
    assert TOKENIZER.token_name(290) == "TIME_SHIFT_32"
    assert TOKENIZER.token_name(291) == "VELOCITY_0"
    assert TOKENIZER.token_name(322) == "VELOCITY_31"
    assert all(TOKENIZER.token_id(name) == i for i, name in enumerate(names))


def test_table_covers_the_vocabulary_without_gaps():
    rows = TOKENIZER.table()
    assert rows[0][1] == 0 and rows[-1][2] == len(TOKENIZER) - 1
    for (_, _, last), (_, first, _) in itertools.pairwise(rows):
        assert first == last + 1
    sizes = [last - first + 1 for _, first, last in rows]
    assert sizes == [3, 128, 128, 32, 32]


@pytest.mark.parametrize("bad", [-1, 323, 10_000])
def test_token_name_rejects_ids_outside_the_vocabulary(bad):
    with pytest.raises(ValueError, match=str(bad)):
        TOKENIZER.token_name(bad)


def test_velocity_bins():
    bins = [TOKENIZER.velocity_bin(v) for v in range(128)]
    assert bins == sorted(bins) and bins[0] == 0 and bins[-1] == 31
    assert all(bins.count(b) == 4 for b in range(32))
    for b in range(32):
        centre = TOKENIZER.bin_velocity(b)
        assert 1 <= centre <= 127 and TOKENIZER.velocity_bin(centre) == b
    assert TOKENIZER.velocity_bin(-5) == 0 and TOKENIZER.velocity_bin(500) == 31


# --------------------------------------------------------------------------- encode


@given(normalized_notes)
def test_round_trip_is_exact_up_to_the_velocity_bin(notes):
    decoded = TOKENIZER.decode(TOKENIZER.encode(notes))
    assert [n[:3] for n in decoded] == [n[:3] for n in notes]  # start, end, pitch
    assert binned(decoded) == binned(notes)


@given(sparse_notes)
def test_round_trip_over_long_gaps(notes):
    ids = TOKENIZER.encode(notes)
    assert binned(TOKENIZER.decode(ids)) == binned(notes)
    assert TOKENIZER.duration_steps(ids) == max((n.end for n in notes), default=0)


@given(normalized_notes)
def test_encoding_uses_only_event_tokens(notes):
    ids = TOKENIZER.encode(notes)
    assert all(TOKENIZER.note_on_offset <= i < len(TOKENIZER) for i in ids)
    assert kinds(ids).count("NOTE_ON") == kinds(ids).count("NOTE_OFF") == len(notes)


@given(normalized_notes)
def test_velocity_token_only_when_the_bin_changes(notes):
    ids = TOKENIZER.encode(notes)
    velocity_bins = [i - TOKENIZER.velocity_offset for i in ids if i >= TOKENIZER.velocity_offset]
    assert all(a != b for a, b in itertools.pairwise(velocity_bins))
    onset_bins = [TOKENIZER.velocity_bin(n.velocity) for n in notes]  # notes come in onset order
    changes = sum(1 for i, b in enumerate(onset_bins) if i == 0 or b != onset_bins[i - 1])
    assert len(velocity_bins) == changes
    for position, token in enumerate(ids):  # every note-on follows its bin's velocity token
        if TOKENIZER.token_name(token).startswith("VELOCITY"):
            assert kinds(ids[position + 1 : position + 2]) == ["NOTE_ON"]


@given(st.integers(0, 5000))
def test_shift_tokens_split_long_gaps_into_at_most_32_steps(steps):
    tokens = TOKENIZER.shift_tokens(steps)
    shifts = [TOKENIZER.time_shift_steps(t) for t in tokens]
    assert sum(shifts) == steps
    assert len(tokens) == math.ceil(steps / 32)
    assert all(1 <= s <= 32 for s in shifts)
    assert all(s == 32 for s in shifts[:-1])


@given(sparse_notes)
def test_consecutive_time_shifts_only_after_a_full_32_step_shift(notes):
    ids = TOKENIZER.encode(notes)
    for a, b in itertools.pairwise(ids):
        if TOKENIZER.time_shift_steps(a) and TOKENIZER.time_shift_steps(b):
            assert TOKENIZER.time_shift_steps(a) == 32


def test_encode_orders_note_offs_before_note_ons_at_one_step():
    notes = [Note(0, 4, 60, 80), Note(4, 8, 60, 80)]  # the same key struck again at once
    names = [TOKENIZER.token_name(i) for i in TOKENIZER.encode(notes)]
    assert names == [
        "VELOCITY_20", "NOTE_ON_60", "TIME_SHIFT_4", "NOTE_OFF_60", "NOTE_ON_60", "TIME_SHIFT_4",
        "NOTE_OFF_60",
    ]


def test_a_gap_of_100_steps_takes_four_time_shifts():
    ids = TOKENIZER.encode([Note(0, 1, 60, 64), Note(101, 102, 62, 64)])
    names = [TOKENIZER.token_name(i) for i in ids]
    assert names == [
        "VELOCITY_16", "NOTE_ON_60", "TIME_SHIFT_1", "NOTE_OFF_60",
        "TIME_SHIFT_32", "TIME_SHIFT_32", "TIME_SHIFT_32", "TIME_SHIFT_4",
        "NOTE_ON_62", "TIME_SHIFT_1", "NOTE_OFF_62",
    ]


@pytest.mark.parametrize("bad", [Note(-1, 3, 60, 64), Note(5, 5, 60, 64), Note(5, 4, 60, 64)])
def test_encode_rejects_notes_without_positive_duration(bad):
    with pytest.raises(ValueError, match="positive duration"):
        TOKENIZER.encode([bad])


# --------------------------------------------------------------------------- lenient decode


def ids_of(*names: str) -> list[int]:
    return [TOKENIZER.token_id(name) for name in names]


def decoded_without_velocity(ids) -> list[tuple[int, int, int]]:
    return [(n.start, n.end, n.pitch) for n in TOKENIZER.decode(ids)]


def test_decode_ignores_a_note_off_without_note_on():
    ids = ids_of("NOTE_OFF_60", "TIME_SHIFT_4", "NOTE_ON_62", "TIME_SHIFT_2", "NOTE_OFF_62")
    assert decoded_without_velocity(ids) == [(4, 6, 62)]


def test_decode_releases_keys_still_down_at_the_end():
    assert decoded_without_velocity(ids_of("NOTE_ON_60", "TIME_SHIFT_4")) == [(0, 4, 60)]
    assert decoded_without_velocity(ids_of("TIME_SHIFT_3", "NOTE_ON_60")) == [(3, 4, 60)]


def test_decode_restrikes_a_key_that_is_already_down():
    ids = ids_of("NOTE_ON_60", "TIME_SHIFT_2", "NOTE_ON_60", "TIME_SHIFT_3", "NOTE_OFF_60")
    assert decoded_without_velocity(ids) == [(0, 2, 60), (2, 5, 60)]
    same_step = ids_of("NOTE_ON_60", "NOTE_ON_60", "TIME_SHIFT_2", "NOTE_OFF_60")
    assert decoded_without_velocity(same_step) == [(0, 2, 60)]


def test_decode_gives_a_note_released_at_once_one_step():
    assert decoded_without_velocity(ids_of("NOTE_ON_60", "NOTE_OFF_60")) == [(0, 1, 60)]


def test_decode_skips_pad_and_start_and_stops_at_end():
    ids = ids_of(
        "START", "NOTE_ON_60", "PAD", "TIME_SHIFT_2", "START", "NOTE_OFF_60", "END",
        "NOTE_ON_64", "TIME_SHIFT_8", "NOTE_OFF_64",
    )
    assert decoded_without_velocity(ids) == [(0, 2, 60)]


def test_decode_skips_ids_outside_the_vocabulary():
    ids = [-7, *ids_of("NOTE_ON_60"), 323, 99_999, *ids_of("TIME_SHIFT_2", "NOTE_OFF_60"), -1]
    assert decoded_without_velocity(ids) == [(0, 2, 60)]


def test_decode_uses_the_latest_velocity_token_and_accepts_arrays():
    ids = np.array(ids_of("VELOCITY_5", "NOTE_ON_60", "VELOCITY_30", "NOTE_ON_64", "TIME_SHIFT_1"))
    velocities = [n.velocity for n in TOKENIZER.decode(ids)]
    assert velocities == [TOKENIZER.bin_velocity(5), TOKENIZER.bin_velocity(30)]


def test_a_key_released_and_struck_again_at_one_step_gives_one_note():
    on, off = TOKENIZER.note_on_offset + 63, TOKENIZER.note_off_offset + 63
    notes = TOKENIZER.decode([on, off, on])  # found by the property test below
    assert [(n.start, n.end, n.pitch) for n in notes] == [(0, 1, 63)]
    # A time shift in between keeps both notes.
    notes = TOKENIZER.decode([on, off, TOKENIZER.time_shift_offset, on])
    assert [(n.start, n.end) for n in notes] == [(0, 1), (1, 2)]


@given(st.lists(st.integers(-50, 400), max_size=300))
def test_decode_never_raises_on_garbage(ids):
    notes = TOKENIZER.decode(ids)
    until_end = ids[: ids.index(TOKENIZER.end_id)] if TOKENIZER.end_id in ids else ids
    last_time = TOKENIZER.duration_steps(t for t in until_end if 0 <= t < len(TOKENIZER))
    assert notes == sorted(notes, key=lambda n: (n.start, n.pitch))
    for note in notes:
        assert 0 <= note.start < note.end <= max(last_time, note.start + 1)
        assert 0 <= note.pitch <= 127 and 1 <= note.velocity <= 127
    assert normalize_notes(notes) == notes  # so decoded notes re-encode exactly


# --------------------------------------------------------------------------- real music


def test_round_trip_over_every_segment_of_real_songs(songs):
    checked = 0
    for song in songs.values():
        for seg in segment(song, bars=32):
            for part in (seg.melody, seg.accompaniment):
                assert part == normalize_notes(part), f"{song.song_id} bar {seg.first_bar}"
                decoded = TOKENIZER.decode(TOKENIZER.encode(part))
                assert binned(decoded) == binned(part), f"{song.song_id} bar {seg.first_bar}"
                checked += 1
    assert checked >= 2 * len(songs) * 2  # every song has at least two 32-bar segments
