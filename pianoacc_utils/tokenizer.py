"""Performance-RNN style event tokens: note-on, note-off, time-shift, velocity.

The vocabulary is data: a fixed layout you can print with :meth:`EventTokenizer.table`.

=========  ======================  ===================================
ids        names                   meaning
=========  ======================  ===================================
0          ``PAD``                 padding, ignored by losses and decoding
1          ``START``               decoder start (begin of sequence)
2          ``END``                 end of sequence
3-130      ``NOTE_ON_<p>``         key ``p`` (0..127) goes down
131-258    ``NOTE_OFF_<p>``        key ``p`` comes up
259-290    ``TIME_SHIFT_<n>``      time moves ``n`` grid steps (1..32)
291-322    ``VELOCITY_<b>``        following note-ons use velocity bin ``b``
=========  ======================  ===================================

Encoding at each grid step: note-offs first (so a key can be struck again at once),
then note-ons by pitch, each preceded by a velocity token only when its bin
changes. Gaps longer than 32 steps become several time shifts. Encoding and
decoding are exact inverses for notes from :func:`~pianoacc_utils.data.normalize_notes`
(starts, ends and pitches exactly; velocity to the centre of its bin).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from pianoacc_utils.data.notes import Note

NUM_PITCHES = 128
"""MIDI pitches 0..127: one note-on and one note-off token each."""

MAX_SHIFT = 32
"""Longest time shift in grid steps: 32 steps = 4 beats, one 4/4 bar in one token."""

NUM_VELOCITY_BINS = 32
"""Velocity bins of 4 MIDI velocities each: a decoded note is at most 2 units off."""


SPECIAL_TOKENS = ("PAD", "START", "END")
"""Ids 0, 1, 2: padding, decoder start and end of sequence."""


class EventTokenizer:
    """Notes on the grid <-> token ids. ``len(tok)`` is the vocabulary size (323 tokens).

    Stateless: one instance serves every song, and the layout (offsets of each kind
    of token) is fixed, so token arrays saved by :mod:`pianoacc_utils.prepare` and
    models trained on them stay valid.
    """

    pad_id = 0
    start_id = 1
    end_id = 2

    def __init__(self) -> None:
        self.note_on_offset = len(SPECIAL_TOKENS)
        self.note_off_offset = self.note_on_offset + NUM_PITCHES
        self.time_shift_offset = self.note_off_offset + NUM_PITCHES
        self.velocity_offset = self.time_shift_offset + MAX_SHIFT
        self.vocabulary_size = self.velocity_offset + NUM_VELOCITY_BINS
        names = list(SPECIAL_TOKENS)
        names += [f"NOTE_ON_{p}" for p in range(NUM_PITCHES)]
        names += [f"NOTE_OFF_{p}" for p in range(NUM_PITCHES)]
        names += [f"TIME_SHIFT_{n}" for n in range(1, MAX_SHIFT + 1)]
        names += [f"VELOCITY_{b}" for b in range(NUM_VELOCITY_BINS)]
        self._names = names
        self._ids = {name: i for i, name in enumerate(names)}

    def __len__(self) -> int:
        return self.vocabulary_size

    # ------------------------------------------------------------------ vocabulary

    def token_name(self, token_id: int) -> str:
        """Name of a token id, e.g. ``token_name(63) == "NOTE_ON_60"``."""
        if not 0 <= token_id < self.vocabulary_size:
            raise ValueError(f"token id {token_id} outside 0..{self.vocabulary_size - 1}")
        return self._names[token_id]

    def token_id(self, name: str) -> int:
        """Id of a token name (inverse of :meth:`token_name`)."""
        return self._ids[name]

    def table(self) -> list[tuple[str, int, int]]:
        """The layout as (kind, first id, last id) rows, for printing."""
        return [
            ("PAD / START / END", 0, self.note_on_offset - 1),
            ("NOTE_ON_0..127", self.note_on_offset, self.note_off_offset - 1),
            ("NOTE_OFF_0..127", self.note_off_offset, self.time_shift_offset - 1),
            (f"TIME_SHIFT_1..{MAX_SHIFT}", self.time_shift_offset, self.velocity_offset - 1),
            (f"VELOCITY_0..{NUM_VELOCITY_BINS - 1}", self.velocity_offset, self.vocabulary_size - 1),
        ]

    @staticmethod
    def velocity_bin(velocity: int) -> int:
        """MIDI velocity 0..127 -> bin 0..31 (4 velocities per bin)."""
        return min(max(int(velocity), 0), 127) * NUM_VELOCITY_BINS // 128

    @staticmethod
    def bin_velocity(velocity_bin: int) -> int:
        """Bin -> the velocity at its centre (never 0, which MIDI reads as note-off)."""
        width = 128 // NUM_VELOCITY_BINS
        return max(1, velocity_bin * width + width // 2)

    def time_shift_steps(self, token_id: int) -> int:
        """Grid steps a token advances time by (0 for anything but a time shift)."""
        if self.time_shift_offset <= token_id < self.velocity_offset:
            return token_id - self.time_shift_offset + 1
        return 0

    def shift_tokens(self, steps: int) -> list[int]:
        """Time-shift tokens that advance exactly ``steps`` grid steps (greedy, 32 at a time)."""
        tokens = []
        while steps > 0:
            chunk = min(steps, MAX_SHIFT)
            tokens.append(self.time_shift_offset + chunk - 1)
            steps -= chunk
        return tokens

    # ------------------------------------------------------------------ encode / decode

    def encode(self, notes: Iterable[Note]) -> list[int]:
        """Notes (grid steps) -> token ids, without START/END.

        Expects non-negative times; use :func:`~pianoacc_utils.data.normalize_notes`
        first for exact round trips when notes of one pitch overlap.
        """
        events: list[tuple[int, int, int, int]] = []  # (time, kind 0=off 1=on, pitch, velocity)
        for note in notes:
            if note.start < 0 or note.end <= note.start:
                raise ValueError(f"note {note} has no positive duration at a time >= 0")
            events.append((note.start, 1, note.pitch, note.velocity))
            events.append((note.end, 0, note.pitch, 0))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        tokens: list[int] = []
        now, current_bin = 0, -1
        for time, kind, pitch, velocity in events:
            tokens += self.shift_tokens(time - now)
            now = time
            if kind == 0:
                tokens.append(self.note_off_offset + pitch)
                continue
            velocity_bin = self.velocity_bin(velocity)
            if velocity_bin != current_bin:
                tokens.append(self.velocity_offset + velocity_bin)
                current_bin = velocity_bin
            tokens.append(self.note_on_offset + pitch)
        return tokens

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[Note]:
        """Token ids -> notes (see :meth:`decode_hanging` for the policy)."""
        return self.decode_hanging(ids)[0]

    def decode_hanging(self, ids: Sequence[int] | np.ndarray) -> tuple[list[Note], list[bool]]:
        """Token ids -> notes, and for each whether it was left hanging (no note-off).

        Lenient: it never raises on a malformed sequence.

        Policy: ``PAD`` and ``START`` are skipped anywhere; ``END`` stops decoding;
        ids outside the vocabulary are skipped; a note-off for a key that is not
        down is ignored; a note-off at the step of its note-on gives a one-step
        note, which a new note-on of that key at the same step replaces; a note-on
        for a key already down first releases it (a zero-length note is dropped);
        keys still down at the end are released one step after the last event or
        at the final time, whichever is later: these
        are the *hanging* notes, whose length the sequence never decided (generation
        shortens them, ``generation.release_notes``). Notes come back sorted by
        (start, pitch).
        """
        notes: list[Note | None] = []
        sounding: dict[int, tuple[int, int]] = {}  # pitch -> (start, velocity)
        struck_now: dict[int, int] = {}  # pitch -> index in notes of a note started and ended now
        now, velocity = 0, self.bin_velocity(NUM_VELOCITY_BINS // 2)
        for raw in ids:
            token = int(raw)
            if token == self.end_id:
                break
            if token < self.note_on_offset or token >= self.vocabulary_size:
                continue
            if token < self.note_off_offset:
                pitch = token - self.note_on_offset
                if pitch in struck_now:  # re-struck at once: the new note replaces it
                    notes[struck_now.pop(pitch)] = None
                if pitch in sounding:
                    start, vel = sounding.pop(pitch)
                    if now > start:
                        notes.append(Note(start, now, pitch, vel))
                sounding[pitch] = (now, velocity)
            elif token < self.time_shift_offset:
                pitch = token - self.note_off_offset
                if pitch in sounding:
                    start, vel = sounding.pop(pitch)
                    if start == now:
                        struck_now[pitch] = len(notes)
                    notes.append(Note(start, max(now, start + 1), pitch, vel))
            elif token < self.velocity_offset:
                now += self.time_shift_steps(token)
                struck_now.clear()
            else:
                velocity = self.bin_velocity(token - self.velocity_offset)
        ended = len(notes)
        for pitch, (start, vel) in sounding.items():
            notes.append(Note(start, max(now, start + 1), pitch, vel))
        kept = sorted(
            ((note, i >= ended) for i, note in enumerate(notes) if note is not None),
            key=lambda pair: (pair[0].start, pair[0].pitch),
        )
        return [note for note, _ in kept], [hanging for _, hanging in kept]

    def duration_steps(self, ids: Iterable[int]) -> int:
        """Total grid steps the time-shift tokens of a sequence advance."""
        return sum(self.time_shift_steps(int(t)) for t in ids)
