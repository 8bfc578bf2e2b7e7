"""MIDI -> WAV and notebook clips, with FluidSynth or the sine-wave fallback."""

from __future__ import annotations

import wave

import numpy as np
import pretty_midi
import pytest
from melodies import RESOLUTION, Track, simple_melody, tune, write_midi

from pianoacc_utils import audio
from pianoacc_utils.common import PianoaccError


def read_wav(path) -> tuple:
    """The WAV file's parameters and its 16-bit samples."""
    with wave.open(str(path), "rb") as handle:
        params = handle.getparams()
        samples = np.frombuffer(handle.readframes(params.nframes), dtype="<i2")
    return params, samples


@pytest.fixture
def no_fluidsynth(monkeypatch):
    """FluidSynth missing, whether or not it is installed here."""

    def missing(self, *args, **kwargs):
        raise ImportError("fluidsynth() was called but pyfluidsynth is not installed.")

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", missing)
    monkeypatch.setattr(audio, "_notice_shown", False)


def test_render_wav_header_duration_and_level(tmp_path, no_fluidsynth, capsys):
    melody = simple_melody(tmp_path / "tune.mid", bars=2, bpm=120.0)  # 8 beats = 4 s
    result = audio.render_wav(melody, tmp_path / "wav" / "tune.wav", sample_rate=16000)
    params, samples = read_wav(result.path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 16000)
    end = pretty_midi.PrettyMIDI(str(melody)).get_end_time()
    assert end <= params.nframes / 16000 <= end + 2.0
    assert result.seconds == pytest.approx(params.nframes / 16000)
    peak = np.abs(samples.astype(np.int32)).max()
    assert 0.85 * 32767 <= peak <= 0.91 * 32767  # normalised, never clipping
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 0.05 * 32767
    first_second = np.abs(samples[:16000].astype(np.int32)).max()
    assert first_second > 1000  # the first note sounds at once
    assert result.renderer == audio.SINE
    notice = capsys.readouterr().err.strip().splitlines()
    assert notice == [audio.FALLBACK_NOTICE]


def test_render_with_what_is_installed(tmp_path):
    try:
        import fluidsynth  # noqa: F401

        expected = audio.FLUIDSYNTH
    except (ImportError, OSError):
        expected = audio.SINE
    result = audio.render_wav(simple_melody(tmp_path / "tune.mid", bars=1), tmp_path / "tune.wav")
    assert result.renderer == expected
    _, samples = read_wav(result.path)
    assert samples.size > 2 * audio.SAMPLE_RATE and np.abs(samples).max() > 0.5 * 32767


def test_fallback_notice_is_printed_once(tmp_path, no_fluidsynth, capsys):
    melody = simple_melody(tmp_path / "tune.mid", bars=1)
    for name in ("a.wav", "b.wav"):
        assert audio.render_wav(melody, tmp_path / name).renderer == audio.SINE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_fluidsynth_is_used_when_available(tmp_path, monkeypatch, capsys):
    rendered = {}

    def fake_fluidsynth(self, fs=None, **kwargs):
        rendered["fs"] = fs
        return 0.01 * np.sin(np.linspace(0, 200 * np.pi, int(fs * (self.get_end_time() + 1))))

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", fake_fluidsynth)
    melody = pretty_midi.PrettyMIDI(str(simple_melody(tmp_path / "tune.mid", bars=1)))
    result = audio.render_wav(melody, tmp_path / "tune.wav")
    assert result.renderer == audio.FLUIDSYNTH and rendered["fs"] == audio.SAMPLE_RATE
    _, samples = read_wav(result.path)
    assert np.abs(samples.astype(np.int32)).max() == pytest.approx(audio.PEAK * 32767, abs=2)
    assert capsys.readouterr().err == ""


def test_audio_clip_is_cut_to_the_first_seconds(tmp_path, no_fluidsynth):
    long_tune = simple_melody(tmp_path / "long.mid", bars=10, bpm=60.0)  # 40 s
    clip = audio.audio_clip(long_tune, seconds=3.0, sample_rate=8000)
    assert clip.dtype == np.float32 and clip.shape == (3 * 8000,)
    assert np.abs(clip).max() <= 1.0 and np.abs(clip[:8000]).max() > 0.5
    assert abs(clip[-1]) < 1e-3  # faded out, no click
    short_tune = simple_melody(tmp_path / "short.mid", bars=1, bpm=120.0)  # 2 s
    short = audio.audio_clip(short_tune, sample_rate=8000)
    assert 2 * 8000 <= len(short) <= 10 * 8000


def test_audio_clip_of_a_late_start_is_silence(tmp_path, no_fluidsynth):
    notes = tune(2, RESOLUTION, start=40 * RESOLUTION)
    late = write_midi(tmp_path / "late.mid", [Track(notes, "MELODY")])
    assert audio.audio_clip(late, seconds=5.0).size == 0


def test_render_errors_name_the_file(tmp_path, no_fluidsynth):
    with pytest.raises(PianoaccError, match="gone.mid"):
        audio.render_wav(tmp_path / "gone.mid", tmp_path / "x.wav")
    kit = Track(tune(4, RESOLUTION, pitches=(36,)), "Kit", channel=9)
    drums = write_midi(tmp_path / "kit.mid", [kit])
    with pytest.raises(PianoaccError, match="kit.mid"):
        audio.render_wav(drums, tmp_path / "x.wav")
    blocker = tmp_path / "plain.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(PianoaccError, match="song.wav"):
        audio.render_wav(simple_melody(tmp_path / "tune.mid", bars=1), blocker / "song.wav")
    assert not (tmp_path / "x.wav").exists()
