"""``pianoacc accompany``: melody MIDI in any meter in, melody + PIANO accompaniment out.

The model is a tiny untrained one saved the way training saves a run (``best.keras``
with ``config.json`` beside it), so nothing here judges musical quality: only that
the arrangement keeps the melody as it was, stays within it, and that every bad
input is one line on stderr with exit code 1 and no output file.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from melodies import (
    broken_melody_files,
    multitrack_song,
    pickup_melody,
    simple_melody,
    tempo_change_melody,
)

from pianoacc_utils import cli
from pianoacc_utils.common import write_json
from pianoacc_utils.data import ARRANGEMENT_TRACK_NAME

REPO = Path(__file__).resolve().parents[2]

WINDOW_BARS = 4
"""Segment length the test checkpoint was "trained" on: windows of 4 bars, each adding one
(``generation.default_window``), the other 3 overlapping."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training-run folder with a tiny untrained FNet model (melodies are cut to 32
    tokens per window, so every window reuses one compiled decoding loop)."""
    import keras

    from pianoacc_utils.models import ModelConfig, build_model
    from pianoacc_utils.training import PROFILES

    folder = tmp_path_factory.mktemp("run")
    config = ModelConfig(
        kind="fnet", melody_length=32, accompaniment_length=128, hidden_dim=32, num_heads=2,
        intermediate_dim=64, encoder_layers=1, decoder_layers=1, dropout=0.0,
    )
    keras.utils.set_random_seed(0)
    build_model(config).save(folder / "best.keras")
    quick = PROFILES["quick"]
    profile = dataclasses.replace(
        quick,
        model=config,
        prepare=dataclasses.replace(quick.prepare, bars_per_segment=WINDOW_BARS),
    )
    write_json(folder / "config.json", {"kind": "fnet", "profile": profile.to_dict(), "data": ""})
    return folder


def run_cli(*args: object) -> int:
    return cli.main(["accompany", *map(str, args)])


def notes_of(instrument: pretty_midi.Instrument) -> np.ndarray:
    """``(start, end, pitch, velocity)`` rows in seconds."""
    return np.array([[n.start, n.end, n.pitch, n.velocity] for n in instrument.notes])


# --------------------------------------------------------------------------- melodies in


def long_melody(path: Path) -> Path:
    return simple_melody(path, bars=104, bpm=160.0)


MELODIES = {
    "2-4": (lambda p: simple_melody(p, 8, numerator=2, denominator=4), "meter 2/4", ()),
    "3-4": (lambda p: simple_melody(p, 8, numerator=3, denominator=4), "meter 3/4", ()),
    "6-8": (
        lambda p: simple_melody(p, 8, numerator=6, denominator=8), "meter 6/8",
        ("--temperature", 0, "--chords", "none"),
    ),
    "9-8": (
        lambda p: simple_melody(p, 6, numerator=9, denominator=8), "meter 9/8",
        ("--top-k", 20, "--top-p", 1),
    ),
    "2-2": (lambda p: simple_melody(p, 8, numerator=2, denominator=2), "meter 2/2", ()),
    # three candidates per window, the shipped reranker keeping one
    "4-4 reranked": (lambda p: simple_melody(p, 8), "meter 4/4", ("--candidates", 3)),
    # time shifts and pitches at temperatures of their own
    "4-4 own temperatures": (
        lambda p: simple_melody(p, 8), "meter 4/4",
        ("--shift-temperature", 1.25, "--pitch-temperature", 0.8),
    ),
    # meters POP909 never has (nor the re-barred training segments)
    "5-4": (lambda p: simple_melody(p, 6, numerator=5, denominator=4), "meter 5/4", ()),
    "7-8": (lambda p: simple_melody(p, 6, numerator=7, denominator=8), "meter 7/8", ()),
    # The model is untrained, so at some seeds it plays no note at all: seed 1 is one
    # at which it plays (the outputs are checked for timing, not for music).
    "pickup": (pickup_melody, "meter 1/4 -> 4/4", ("--seed", 1)),
    "tempo-changes": (tempo_change_melody, "61.5-200 bpm", ()),
    "104-bars": (long_melody, "104 bars", ()),
    # windows adding 3 bars each instead of the default's 1
    "104-bars, overlap 1": (long_melody, "104 bars", ("--overlap-bars", 1)),
}


@pytest.mark.parametrize("name", MELODIES)
def test_accompany_keeps_the_melody_and_stays_within_it(tmp_path, checkpoint, capsys, name):
    make, expected_text, options = MELODIES[name]
    source = make(tmp_path / f"{name}.mid")
    out = tmp_path / "out" / "arrangement.mid"
    assert run_cli(source, "-o", out, "--checkpoint", checkpoint, *options) == 0
    printed = capsys.readouterr().out
    assert 'track 0 "MELODY"' in printed and expected_text in printed
    assert f"windows of {WINDOW_BARS} bars" in printed and f"wrote {out}" in printed
    overlap = options[options.index("--overlap-bars") + 1] if "--overlap-bars" in options else 3
    assert f"{overlap} overlapping" in printed

    original = pretty_midi.PrettyMIDI(str(source))
    arrangement = pretty_midi.PrettyMIDI(str(out))
    names = [instrument.name for instrument in arrangement.instruments]
    assert names == ["MELODY", ARRANGEMENT_TRACK_NAME]
    melody, piano = arrangement.instruments
    np.testing.assert_allclose(notes_of(melody), notes_of(original.instruments[0]), atol=1e-6)
    assert piano.notes, "no accompaniment at all"
    melody_end = max(note.end for note in melody.notes)
    assert min(note.start for note in piano.notes) >= 0
    assert max(note.end for note in piano.notes) <= melody_end + 1e-6
    assert all(note.end > note.start for note in piano.notes)
    for before, after in zip(original.get_tempo_changes(), arrangement.get_tempo_changes()):
        np.testing.assert_allclose(after, before, atol=1e-6)


def test_a_model_with_its_own_reranker_is_reranked_by_it(tmp_path, checkpoint, monkeypatch):
    """A checkpoint folder with a ``reranker.npz`` beside its weights (as the shipped
    ``fnet-l``) has its candidates chosen by those trees; without one, by the shipped
    reranker; with one candidate, by none."""
    import shutil

    from pianoacc_utils.generation import OWN_RERANKER, rerank, shipped_reranker

    own = tmp_path / "run"
    shutil.copytree(checkpoint, own)
    shutil.copy(REPO / "pretrained" / "fnet_l" / OWN_RERANKER, own / OWN_RERANKER)
    used = []
    score = rerank.candidate_score
    monkeypatch.setattr(rerank, "candidate_score",
                        lambda reranker, *args, **kwargs: used.append(reranker)
                        or score(reranker, *args, **kwargs))
    source = simple_melody(tmp_path / "melody.mid", 6)
    for folder, candidates in ((own, 2), (checkpoint, 2), (own, 1)):
        out = tmp_path / f"{folder.name}-{candidates}.mid"
        assert run_cli(source, "-o", out, "--checkpoint", folder, "--candidates", candidates,
                       "--seed", 1) == 0
        assert out.is_file()
        used.append(candidates)
    first = used.index(2)
    mine, = set(map(id, used[:first]))
    assert mine != id(shipped_reranker()) and first > 0
    assert set(map(id, used[first + 1 : -2])) == {id(shipped_reranker())}
    assert used[-2:] == [2, 1]  # one candidate: nothing scored


def test_requested_track_and_wav(tmp_path, checkpoint, capsys):
    """``--track Bass`` accompanies the bass line of a band file; ``--wav`` renders the result."""
    source = multitrack_song(tmp_path / "band.mid")
    out, audio = tmp_path / "band_piano.mid", tmp_path / "audio" / "band_piano.wav"
    options = ("--checkpoint", checkpoint, "--track", "bass", "--wav", audio)
    assert run_cli(source, "-o", out, *options) == 0
    printed = capsys.readouterr().out
    assert 'track 0 "Bass"' in printed and "requested" in printed and f"wrote {audio}" in printed
    arrangement = pretty_midi.PrettyMIDI(str(out))
    assert [i.name for i in arrangement.instruments] == ["Bass", ARRANGEMENT_TRACK_NAME]
    bass = pretty_midi.PrettyMIDI(str(source)).instruments[0]
    np.testing.assert_allclose(notes_of(arrangement.instruments[0]), notes_of(bass), atol=1e-6)
    assert arrangement.instruments[0].program == bass.program == 33
    with wave.open(str(audio), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
    assert seconds >= arrangement.get_end_time() - 0.01


# --------------------------------------------------------------------------- bad input


def bad_inputs(folder: Path) -> dict[str, tuple[Path, tuple]]:
    """Each broken input as (melody path, extra options)."""
    files = broken_melody_files(folder)
    good = files["good"]
    return {
        "missing": (files["missing"], ()),
        "not MIDI": (files["not_midi"], ()),
        "short text": (files["short_text"], ()),
        "RIFF MIDI": (files["riff"], ()),
        "empty": (files["empty"], ()),
        "truncated": (files["truncated"], ()),
        "no notes": (files["no_notes"], ()),
        "drums only": (files["drums_only"], ()),
        "unknown track": (good, ("--track", "Vocals")),
        "negative temperature": (good, ("--temperature", -1)),
        "top-p of 0": (good, ("--top-p", 0)),
        "candidates of 0": (good, ("--candidates", 0)),
        "overlap of a whole window": (good, ("--overlap-bars", WINDOW_BARS)),
    }


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, checkpoint, capsys):
    cases = bad_inputs(tmp_path / "in")
    out = tmp_path / "out.mid"
    for name, (path, options) in cases.items():
        for existing in (None, b"an earlier arrangement"):
            if existing is None:
                out.unlink(missing_ok=True)
            else:
                out.write_bytes(existing)
            assert run_cli(path, "-o", out, "--checkpoint", checkpoint, *options) == 1, name
            error = capsys.readouterr().err.strip().splitlines()
            assert len(error) == 1, (name, error)
            assert error[0].startswith("pianoacc accompany: error: "), (name, error)
            words = ("temperature", "top-p", "candidates", "overlap")
            named = next((word for word in words if word in name), path.name)
            assert named in error[0], (name, error)
            if existing is None:
                assert not out.exists(), name
            else:
                assert out.read_bytes() == existing, name


def test_bad_checkpoint_and_output_over_the_input(tmp_path, capsys):
    melody = simple_melody(tmp_path / "tune.mid", bars=4)
    before = melody.read_bytes()
    out = tmp_path / "out.mid"
    assert run_cli(melody, "-o", out, "--checkpoint", tmp_path / "nowhere") == 1
    assert "nowhere" in capsys.readouterr().err and not out.exists()
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    assert run_cli(melody, "-o", out, "--checkpoint", broken) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "broken.keras" in error[0] and not out.exists()
    assert run_cli(melody, "-o", melody) == 1
    assert "input melody" in capsys.readouterr().err
    assert melody.read_bytes() == before


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_text("not a MIDI file")
    out = tmp_path / "out.mid"
    script = Path(sys.executable).with_name("pianoacc")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [str(script), "accompany", str(bad), "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("pianoacc accompany: error: ") and "bad.mid" in lines[0]
    assert not out.exists()


# --------------------------------------------------------------------------- chords


def test_chords_auto_none_and_file(tmp_path, checkpoint, capsys):
    source = simple_melody(tmp_path / "melody.mid", 8)
    chords = tmp_path / "chords.txt"
    chords.write_text("0 2 C:maj\n2 4 A:min7\n4 6 F:maj/3\n6 30 G:7\n")
    printed = {}
    for option in ("auto", "none", chords):
        out = tmp_path / f"{Path(str(option)).stem}.mid"
        assert run_cli(source, "-o", out, "--checkpoint", checkpoint, "--chords", option) == 0
        printed[str(option)] = capsys.readouterr().out
        assert out.is_file()
    assert "estimated from the melody" in printed["auto"]
    assert "chords: none" in printed["none"]
    assert f"chords: 4 from {chords}" in printed[str(chords)]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("0 2 C:maj\n2 4 Q:what\n", "chord 2: chord label 'Q:what'"),
        ("0 2\n", "expected 3 columns"),
        ("zero two C:maj\n", "could not convert"),
        ("", "no chord inside"),
    ],
)
def test_bad_chord_file_is_one_line_and_writes_nothing(tmp_path, checkpoint, capsys, text, problem):
    source = simple_melody(tmp_path / "melody.mid", 4)
    chords = tmp_path / "chords.txt"
    chords.write_text(text)
    out = tmp_path / "out.mid"
    assert run_cli(source, "-o", out, "--checkpoint", checkpoint, "--chords", chords) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pianoacc accompany: error:") and str(chords) in err and problem in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_binary_chord_file_is_refused(tmp_path, checkpoint, capsys):
    source = simple_melody(tmp_path / "melody.mid", 4)
    out = tmp_path / "out.mid"
    assert run_cli(source, "-o", out, "--checkpoint", checkpoint, "--chords", source) == 1
    err = capsys.readouterr().err
    assert "not a text file of chords" in err and not out.exists()
