"""``prepare``: POP909 -> token arrays per split, cached by configuration, and its command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pianoacc_utils import cli, data
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.prepare import (
    SPLITS,
    PrepareConfig,
    load_config,
    load_split,
    load_stats,
    prepare,
    prepared_dir,
    segment_meter,
)
from pianoacc_utils.tokenizer import EventTokenizer

CONFIG = PrepareConfig(
    bars_per_segment=8,
    hop_bars=8,
    transpositions=(-1, 0, 1),
    max_tokens=512,
    songs=12,
    rebar_3_4=0.3,
    rebar_2_4=0.3,
)
"""Twelve songs (train and test songs among them), 8-bar segments, train shifted by +-1
semitone and re-barred into 3/4 or 2/4 at random."""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, test_environment) -> Path:
    return prepare(CONFIG, out=tmp_path_factory.mktemp("prepared"), workers=2, progress=False)


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_prepared_files(prepared):
    names = {p.name for p in prepared.iterdir()}
    assert names == {"config.json", "stats.json", "train.npz", "validation.npz", "test.npz"}
    assert load_config(prepared) == CONFIG


def test_stats_match_the_arrays(prepared):
    stats = load_stats(prepared)
    assert stats["max_tokens"] == CONFIG.max_tokens and stats["workers"] == 2
    songs = 0
    for name in SPLITS:
        split, row = load_split(prepared, name), stats["splits"][name]
        melody, accompaniment = split.lengths("melody"), split.lengths("accompaniment")
        assert row["segments"] == len(split) == len(melody) == len(accompaniment)
        assert row["songs"] == len(set(split.song_id))
        assert row["melody_tokens"] == melody.sum() == len(split.melody_tokens)
        assert row["accompaniment_tokens"] == accompaniment.sum() == len(split.accompaniment_tokens)
        assert row["melody_over_max"] == (melody > CONFIG.max_tokens).sum()
        assert row["accompaniment_over_max"] == (accompaniment + 1 > CONFIG.max_tokens).sum()
        songs += row["songs"]
    assert songs + len(stats["skipped"]) == CONFIG.songs
    assert stats["splits"]["train"]["segments"] > 0 and stats["splits"]["test"]["segments"] > 0


def test_splits_hold_disjoint_songs_of_the_fixed_split(prepared, pop909_dir):
    ids = data.song_ids(pop909_dir)
    fixed = data.split_songs(ids)
    members = {name: set(load_split(prepared, name).song_id) for name in SPLITS}
    for name in SPLITS:
        assert members[name] <= set(fixed[name]) & set(ids[: CONFIG.songs])
    assert not members["train"] & members["test"]
    assert not members["train"] & members["validation"]
    assert not members["validation"] & members["test"]


def test_sequences_are_the_tokenized_segments(prepared, pop909_dir):
    tokenizer = EventTokenizer()
    split = load_split(prepared, "train")
    song_id = str(split.song_id[0])
    segments = data.segment(data.load_song(song_id, root=pop909_dir), bars=8)
    rows = np.flatnonzero(split.song_id == song_id)
    expected = []
    for seg in segments:
        seg = data.rebar(seg, segment_meter(CONFIG, song_id, seg.first_bar))
        for semitones in CONFIG.transpositions:
            moved = data.transpose(seg, semitones)
            if moved is not None:
                expected.append((seg.first_bar, semitones, moved))
    assert len(rows) == len(expected)
    for i, (first_bar, semitones, moved) in zip(rows, expected):
        assert (split.first_bar[i], split.transpose[i], split.num_steps[i]) == (
            first_bar, semitones, moved.num_steps,
        )
        assert split.melody(i).tolist() == tokenizer.encode(moved.melody)
        assert split.accompaniment(i).tolist() == tokenizer.encode(moved.accompaniment)
        assert split.bar_lines(i).tolist() == moved.bar_starts


def test_only_train_segments_are_rebarred(prepared, pop909_dir):
    stats = load_stats(prepared)["splits"]
    train = load_split(prepared, "train")
    assert sum(stats["train"]["meters"].values()) == len(train)
    assert min(stats["train"]["meters"].values()) > 0  # all three meters drawn
    bar_lengths = {
        length
        for i in range(len(train))
        for length in np.diff(np.append(train.bar_lines(i), train.num_steps[i])).tolist()
    }
    assert {2 * 8, 3 * 8, 4 * 8} <= bar_lengths
    for name in ("validation", "test"):
        assert "meters" not in stats[name]
        split = load_split(prepared, name)
        for i in range(len(split)):
            song = data.load_song(str(split.song_id[i]), root=pop909_dir)
            seg = next(s for s in data.segment(song, bars=8) if s.first_bar == split.first_bar[i])
            assert split.bar_lines(i).tolist() == seg.bar_starts


def test_tokens_decode_inside_their_segment(prepared):
    tokenizer = EventTokenizer()
    for name in SPLITS:
        split = load_split(prepared, name)
        for tokens in (split.melody_tokens, split.accompaniment_tokens):
            assert tokens.size == 0 or tokens.min() >= tokenizer.note_on_offset
            assert tokens.size == 0 or tokens.max() < len(tokenizer)
        for i in range(len(split)):
            for sequence in (split.melody(i), split.accompaniment(i)):
                assert tokenizer.duration_steps(sequence) <= split.num_steps[i]
            assert len(split.melody(i)) > 0


def test_transpositions_only_in_train(prepared):
    train = load_split(prepared, "train")
    assert set(train.transpose.tolist()) == set(CONFIG.transpositions)
    for name in ("validation", "test"):
        assert set(load_split(prepared, name).transpose.tolist()) <= {0}


def test_second_call_reuses_the_folder(prepared, monkeypatch):
    """A second call with the same config reads no song and rewrites no file."""
    before = mtimes(prepared)

    def no_songs(*args, **kwargs):
        raise AssertionError("the second call looked for POP909 songs: it rebuilt")

    monkeypatch.setattr(data, "find_pop909_dir", no_songs)
    again = prepare(CONFIG, out=prepared, progress=False)
    assert again == prepared and mtimes(prepared) == before


def test_changed_config_rebuilds(tmp_path):
    small = PrepareConfig(bars_per_segment=8, hop_bars=8, songs=3, max_tokens=512)
    folder = prepare(small, out=tmp_path, workers=1, progress=False)
    before, segments_before = mtimes(folder), load_stats(folder)["splits"]["train"]["segments"]
    changed = PrepareConfig(bars_per_segment=8, hop_bars=4, songs=3, max_tokens=512)
    assert prepare(changed, out=tmp_path, workers=1, progress=False) == folder
    after = mtimes(folder)
    assert all(after[name] != before[name] for name in before)
    assert load_config(folder) == changed
    assert load_stats(folder)["splits"]["train"]["segments"] > segments_before  # overlapping now
    forced_before = mtimes(folder)
    prepare(changed, out=tmp_path, workers=1, progress=False, force=True)
    assert mtimes(folder)["train.npz"] != forced_before["train.npz"]


def test_default_folder_is_named_by_the_config(tmp_path):
    small = PrepareConfig(bars_per_segment=8, hop_bars=8, songs=2)
    folder = prepare(small, workers=1, progress=False)
    assert folder == prepared_dir(small) and folder.is_dir()
    other = PrepareConfig(bars_per_segment=16, hop_bars=16, songs=2)
    assert prepared_dir(other) != folder


def test_load_split_names_the_missing_file(tmp_path):
    with pytest.raises(PianoaccError, match=r"train\.npz.*pianoacc prepare"):
        load_split(tmp_path, "train")


def test_prepare_command_prints_the_table(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert cli.main(["prepare", "--songs", "12", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"prepared: {out}" in printed
    stats = load_stats(out)
    for name in SPLITS:
        row = stats["splits"][name]
        line = next(line for line in printed.splitlines() if line.startswith(name))
        assert line.split()[1:4] == [
            str(row["songs"]), str(row["segments"]), str(row["melody_tokens"]),
        ]
    assert load_config(out).bars_per_segment == 32 and load_config(out).songs == 12


def test_prepare_command_reports_a_missing_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POP909_DIR", str(tmp_path / "nowhere"))
    assert cli.main(["prepare", "--songs", "2", "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("pianoacc prepare: error:") and "nowhere" in error
    assert len(error.splitlines()) == 1


def test_file_lock_keeps_other_processes_out_while_held(tmp_path):
    """prepare() builds under this lock: a second process cannot take it meanwhile."""
    import subprocess
    import sys

    from pianoacc_utils.common import file_lock

    lock = tmp_path / ".folder.lock"
    probe = (
        "import fcntl, sys\n"
        f"handle = open({str(lock)!r}, 'a')\n"
        "try:\n    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('free')\n"
        "except BlockingIOError:\n    print('held')\n"
    )
    run = lambda: subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)  # noqa: E731
    with file_lock(lock):
        assert run().stdout.strip() == "held"
    assert run().stdout.strip() == "free"


FORK_CHECK = """
import warnings
from concurrent.futures import ProcessPoolExecutor
import jax.numpy as jnp
from pianoacc_utils.common import worker_processes

jnp.ones(4).block_until_ready()  # JAX's threads are running
for name, pool in (("plain", lambda: ProcessPoolExecutor(2)), ("helper", lambda: worker_processes(2))):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pool() as workers:
            assert list(workers.map(abs, [-1, -2, -3])) == [1, 2, 3]
    print(name, sum("os.fork()" in str(w.message) for w in caught))
"""


def test_song_workers_fork_without_jaxs_warning():
    """The per-song worker pool (``common.worker_processes``, used by ``prepare``, the copy
    check and the course's exploration) forks after JAX has started without printing
    JAX's fork warning, which a plain pool prints in the same process."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FORK_CHECK], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    counts = dict(line.split() for line in done.stdout.split("\n") if line)
    assert int(counts["plain"]) > 0, "JAX no longer warns on fork: this test checks nothing"
    assert counts["helper"] == "0"
