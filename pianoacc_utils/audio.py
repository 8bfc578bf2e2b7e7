"""MIDI -> audio: WAV files for listening and short clips for notebooks.

Renders with a SoundFont: the General MIDI SoundFont that pretty_midi ships
(``TimGM6mb.sf2``), played by FluidSynth where ``pyfluidsynth`` and the system's
libfluidsynth are installed, else by symusic's synthesizer (a pinned dependency, so a
plain ``pip install`` always has it). pretty_midi's sine waves are only a last resort,
announced once on stderr. Audio is mono, normalised to a peak of :data:`PEAK` (no
clipping), written as 16-bit PCM WAV with the standard library ``wave`` module, or as
MP3 (:func:`mp3_bytes`, through libsndfile) where a web page plays it.
"""

from __future__ import annotations

import copy
import io
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

from pianoacc_utils.common import PianoaccError, write_atomic
from pianoacc_utils.data.melody_midi import read_midi

SAMPLE_RATE = 22050
"""Default sample rate in Hz (enough for piano, half the size of 44.1 kHz)."""


PEAK = 0.9
"""Peak amplitude after normalisation (full scale = 1.0), leaving headroom."""


FADE_SECONDS = 0.05
"""Fade-out at the end of a clip cut mid-note, so it does not end with a click."""


FLUIDSYNTH = "fluidsynth"
"""Renderer name: FluidSynth playing :data:`SOUNDFONT`."""

SYMUSIC = "soundfont"
"""Renderer name: symusic's synthesizer playing :data:`SOUNDFONT`."""

SINE = "sine"
"""Renderer name: pretty_midi's sine waves (no instrument sound; last resort)."""

SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
"""The General MIDI SoundFont shipped with pretty_midi (piano is program 0)."""

FALLBACK_NOTICE = (
    "pianoacc: no SoundFont renderer (FluidSynth or symusic) could be loaded; "
    "rendering audio with sine waves instead"
)


_notice_shown = False


@dataclass(frozen=True)
class Rendering:
    """A rendered WAV file: its path, the renderer used (:data:`FLUIDSYNTH`, :data:`SYMUSIC`
    or :data:`SINE`),
    its duration in seconds and sample rate in Hz."""

    path: Path
    renderer: str
    seconds: float
    sample_rate: int


def _as_midi(midi_or_path):
    """A ``pretty_midi.PrettyMIDI`` from itself or from a MIDI file path."""
    if isinstance(midi_or_path, (str, Path)):
        return read_midi(midi_or_path)
    return midi_or_path


def _fallback_notice() -> None:
    """Print the sine-wave fallback notice once per process."""
    global _notice_shown
    if not _notice_shown:
        print(FALLBACK_NOTICE, file=sys.stderr)
        _notice_shown = True


def _symusic(midi, sample_rate: int) -> np.ndarray:
    """Mono audio of a ``PrettyMIDI`` rendered by symusic with :data:`SOUNDFONT`."""
    import symusic  # a compiled extension: imported only when audio is rendered

    buffer = io.BytesIO()
    midi.write(buffer)
    score = symusic.Score.from_midi(buffer.getvalue())
    synthesizer = symusic.Synthesizer(str(SOUNDFONT), sample_rate, 0)
    return np.asarray(synthesizer.render(score, False)).mean(axis=0)


def synthesize(midi, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, str]:
    """Mono float32 audio of a ``PrettyMIDI`` at ``sample_rate`` Hz with peak :data:`PEAK`,
    and the renderer used (:data:`FLUIDSYNTH`, :data:`SYMUSIC` or :data:`SINE`).

    FluidSynth where installed, else symusic, both playing :data:`SOUNDFONT`; sine waves
    only when neither loads. Silence stays silence (no NaN).
    """
    try:
        audio, renderer = midi.fluidsynth(fs=sample_rate, sf2_path=str(SOUNDFONT)), FLUIDSYNTH
    except (ImportError, OSError):
        try:
            audio, renderer = _symusic(midi, sample_rate), SYMUSIC
        except (ImportError, OSError):
            _fallback_notice()
            audio, renderer = midi.synthesize(fs=sample_rate), SINE
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float64).reshape(-1))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (PEAK / peak)
    return audio.astype(np.float32), renderer


def _has_notes(midi) -> bool:
    return any(instrument.notes and not instrument.is_drum for instrument in midi.instruments)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio in [-1, 1] -> the bytes of a 16-bit PCM WAV file."""
    samples = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


MP3_QUALITY = 0.6
"""libsndfile's MP3 compression level (0: best quality, 1: smallest): about 35 kbit/s for
mono piano at 22,050 Hz, which keeps a page of many clips small."""


def mp3_bytes(audio: np.ndarray, sample_rate: int, compression: float = MP3_QUALITY) -> bytes:
    """Mono float audio in [-1, 1] -> the bytes of an MP3 file (MPEG layer III), a format
    every browser plays. ``compression`` as :data:`MP3_QUALITY`."""
    import soundfile  # loads libsndfile: imported only when MP3 is written

    buffer = io.BytesIO()
    samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    soundfile.write(
        buffer, samples, int(sample_rate), format="MP3", subtype="MPEG_LAYER_III",
        compression_level=compression,
    )
    return buffer.getvalue()


def render_wav(midi_or_path, out_path: str | Path, sample_rate: int = SAMPLE_RATE) -> Rendering:
    """Render a MIDI file (or ``PrettyMIDI``) to a mono 16-bit WAV file, written atomically.

    Drum tracks are silent with the sine-wave fallback. Raises :class:`PianoaccError`
    for an unreadable input, a MIDI without pitched notes, or an unwritable output.
    """
    out_path = Path(out_path)
    if sample_rate <= 0:
        raise PianoaccError(f"{out_path}: sample rate must be positive, got {sample_rate}")
    midi = _as_midi(midi_or_path)
    if not _has_notes(midi):
        source = midi_or_path if isinstance(midi_or_path, (str, Path)) else "the MIDI data"
        raise PianoaccError(f"{source}: no pitched notes to render to {out_path.name}")
    audio, renderer = synthesize(midi, sample_rate)
    try:
        write_atomic(out_path, wav_bytes(audio, sample_rate))
    except OSError as error:
        reason = error.strerror or error
        raise PianoaccError(f"{out_path}: cannot write the WAV file ({reason})") from error
    return Rendering(out_path, renderer, len(audio) / sample_rate, sample_rate)


def audio_clip(midi_or_path, seconds: float = 10.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first ``seconds`` of a MIDI as mono float32 audio, for ``IPython.display.Audio``.

    Notes starting after ``seconds`` are left out before rendering (fast on long
    songs) and the clip is cut to ``seconds * sample_rate`` samples with a short
    fade-out (padded with silence to that length when the music goes on past it, so
    that clips of several versions of a piece line up). Notebooks keep embedded audio
    to 10 s or less.
    """
    if seconds <= 0:
        raise PianoaccError(f"clip length must be positive, got {seconds} s")
    midi = copy.deepcopy(_as_midi(midi_or_path))
    goes_on = midi.get_end_time() >= seconds
    for instrument in midi.instruments:
        instrument.notes = [note for note in instrument.notes if note.start < seconds]
        for note in instrument.notes:
            note.end = min(note.end, seconds)
    if not _has_notes(midi):
        return np.zeros(0, dtype=np.float32)
    audio, _ = synthesize(midi, sample_rate)
    length = int(seconds * sample_rate)
    audio = audio[:length].copy()
    if goes_on and len(audio) < length:
        audio = np.concatenate([audio, np.zeros(length - len(audio), np.float32)])
    fade = min(int(FADE_SECONDS * sample_rate), len(audio))
    if fade:
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio
