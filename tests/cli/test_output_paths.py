"""No user file is overwritten by mistake: output paths are checked before any work starts."""

from __future__ import annotations

import pytest
from melodies import simple_melody

from pianoacc_utils import cli
from pianoacc_utils.common import PianoaccError, check_outputs


def run(*args: object) -> int:
    return cli.main([str(a) for a in args])


@pytest.mark.parametrize("target", ["melody", "out", "link"])
def test_wav_never_overwrites_the_melody_or_the_arrangement(tmp_path, capsys, target):
    melody = simple_melody(tmp_path / "tune.mid", bars=2)
    out = tmp_path / "out.mid"
    out.write_bytes(b"an earlier arrangement")
    (tmp_path / "link.mid").symlink_to(melody)
    before = {p: p.read_bytes() for p in (melody, out)}
    wav = {"melody": melody, "out": out, "link": tmp_path / "link.mid"}[target]
    assert run("accompany", melody, "-o", out, "--wav", wav, "--checkpoint", tmp_path / "nowhere") == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--wav would overwrite" in error[0]
    assert {p: p.read_bytes() for p in (melody, out)} == before


def test_output_through_a_link_to_the_melody_is_refused(tmp_path, capsys):
    melody = simple_melody(tmp_path / "tune.mid", bars=2)
    before = melody.read_bytes()
    (tmp_path / "alias.mid").symlink_to(melody)
    assert run("accompany", melody, "-o", tmp_path / "alias.mid") == 1
    assert "-o would overwrite the input melody" in capsys.readouterr().err
    assert melody.read_bytes() == before


def test_output_over_the_chord_file_is_refused(tmp_path, capsys):
    melody = simple_melody(tmp_path / "tune.mid", bars=2)
    chords = tmp_path / "chords.txt"
    chords.write_text("0 2 C:maj\n")
    assert run("accompany", melody, "-o", chords, "--chords", chords) == 1
    assert "would overwrite the chord file" in capsys.readouterr().err
    assert chords.read_text() == "0 2 C:maj\n"


def test_check_outputs_refuses_folders_unwritable_places_and_duplicates(tmp_path):
    check_outputs({"-o": tmp_path / "new" / "deeper" / "out.mid", "--wav": tmp_path / "out.wav"})
    with pytest.raises(PianoaccError, match="names a folder"):
        check_outputs({"-o": tmp_path})
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(PianoaccError, match="not a writable folder"):
        check_outputs({"--json": blocker / "results.json"})
    with pytest.raises(PianoaccError, match="--markdown would overwrite the --json"):
        check_outputs({"--json": tmp_path / "r", "--markdown": tmp_path / "r"})
    check_outputs({"-o": None, "--wav": None})


def test_evaluate_checks_its_outputs_before_evaluating(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert run("evaluate", "--segments", "1", "--json", blocker / "out.json") == 1
    error = capsys.readouterr().err.strip()
    assert "not a writable folder" in error and len(error.splitlines()) == 1
    same = tmp_path / "same"
    assert run("evaluate", "--segments", "1", "--json", same, "--markdown", same) == 1
    assert "would overwrite" in capsys.readouterr().err
    assert not same.exists()
