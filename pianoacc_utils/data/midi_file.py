"""Reading a MIDI file, with an error that names the file instead of a library traceback.

Every MIDI file the package reads (POP909 songs, users' melodies, arrangements to render)
comes in through :func:`read_midi`.
"""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from pianoacc_utils.common import PianoaccError


def read_midi(path: str | Path) -> pretty_midi.PrettyMIDI:
    """Parse a MIDI file with pretty_midi; every failure becomes a :class:`PianoaccError`.

    Missing paths, folders, empty files, files that are not MIDI (read from their first
    four bytes, so that a short text file is not taken for a truncated MIDI file) and
    truncated files are reported with the file name instead of a library traceback.
    """
    path = Path(path)
    if not path.exists():
        raise PianoaccError(f"{path}: file missing")
    if not path.is_file():
        raise PianoaccError(f"{path}: not a file (a MIDI file was expected)")
    if path.stat().st_size == 0:
        raise PianoaccError(f"{path}: empty file (0 bytes), not a MIDI file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == b"RIFF":
        raise PianoaccError(f"{path}: a RIFF MIDI file (.rmi); save it as a standard MIDI file")
    if head != b"MThd":
        raise PianoaccError(f"{path}: not a MIDI file (it does not begin with the header MThd)")
    try:
        return pretty_midi.PrettyMIDI(str(path))
    except EOFError as error:
        raise PianoaccError(f"{path}: truncated MIDI file (data ends early)") from error
    except Exception as error:  # mido/pretty_midi raise many kinds on broken files
        detail = str(error) or type(error).__name__
        raise PianoaccError(f"{path}: not a readable MIDI file ({detail})") from error
