"""MIDI -> WAV and notebook clips: a SoundFont piano (FluidSynth or symusic), sine waves last."""

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


@pytest.fixture
def no_soundfont(monkeypatch, no_fluidsynth):
    """Neither FluidSynth nor symusic: the sine-wave fallback."""

    def missing(*args, **kwargs):
        raise ImportError("no module named symusic")

    monkeypatch.setattr(audio, "_symusic", missing)


def one_note(path, pitch=57, start=0.5, end=1.5):
    """A MIDI file holding one piano note (A3 by default, 220 Hz)."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=start, end=end))
    midi.instruments.append(piano)
    midi.write(str(path))
    return path


def harmonic_share(samples, sample_rate, fundamental):
    """Share of the spectrum's energy near the 2nd..8th harmonics of ``fundamental`` (Hz),
    against the energy near the fundamental and those harmonics together."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / sample_rate)

    def near(f):
        return spectrum[np.abs(freqs - f) < 0.03 * f].sum()

    harmonics = sum(near(k * fundamental) for k in range(2, 9))
    return harmonics / (harmonics + near(fundamental))


def test_a_piano_note_sounds_like_a_piano_and_lasts_as_the_midi(tmp_path, no_fluidsynth, capsys):
    note = one_note(tmp_path / "a3.mid")
    result = audio.render_wav(note, tmp_path / "a3.wav")
    assert result.renderer == audio.SYMUSIC and capsys.readouterr().err == ""
    params, samples = read_wav(result.path)
    end = pretty_midi.PrettyMIDI(str(note)).get_end_time()
    assert end <= params.nframes / params.framerate <= end + 0.5  # the release tail at most
    sounding = samples[int(0.5 * params.framerate) : int(1.5 * params.framerate)]
    assert np.abs(samples[: int(0.45 * params.framerate)]).max() < 0.01 * 32767  # silent before
    assert harmonic_share(sounding, params.framerate, 220.0) > 0.05  # overtones: not a sine


def test_the_sine_fallback_has_no_overtones(tmp_path, no_soundfont):
    """The measure above tells the two apart: a sine-wave note has (almost) no overtones."""
    result = audio.render_wav(one_note(tmp_path / "a3.mid"), tmp_path / "a3.wav")
    params, samples = read_wav(result.path)
    sounding = samples[int(0.5 * params.framerate) : int(1.5 * params.framerate)]
    assert result.renderer == audio.SINE and harmonic_share(sounding, params.framerate, 220.0) < 0.01


def test_render_wav_header_duration_and_level(tmp_path, no_soundfont, capsys):
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
        expected = audio.SYMUSIC
    result = audio.render_wav(simple_melody(tmp_path / "tune.mid", bars=1), tmp_path / "tune.wav")
    assert result.renderer == expected
    _, samples = read_wav(result.path)
    assert samples.size > 2 * audio.SAMPLE_RATE and np.abs(samples).max() > 0.5 * 32767


def test_fallback_notice_is_printed_once(tmp_path, no_soundfont, capsys):
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
    end = pretty_midi.PrettyMIDI(str(short_tune)).get_end_time()
    assert end * 8000 <= len(short) <= 10 * 8000  # the whole tune, not padded to 10 s


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
