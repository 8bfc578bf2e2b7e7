"""The decoding programs of a first run, made ahead of it (JAX).

Under JAX a process that decodes windows of a shape it has never seen traces and compiles
its sampling loop for that shape: about 4 s each on 2 CPU cores, most of a first run's
wait. Both are kept on disk (:mod:`pianoacc_utils.backends.exported`, and JAX's
persistent compilation cache), so that later processes only load them. Within one
process, the windows of a melody differ in one dimension only: the melody's width in
tokens, padded to a multiple of :data:`~pianoacc_utils.generation.decoder.MELODY_BUCKET`
and to the widest window decoded before (``CachedDecoder._padded_melody``). The harmony
and bar tables of a window of up to 8 bars of up to 8 beats are padded to one size, and a
window's candidates are its rows.

:func:`prebuild_programs` decodes one short stand-in window of every width a window can
have, in the order a long melody reaches them, so that every program a melody of that
model and those settings needs is made once (``make setup`` runs it for the shipped FNet
at the command's defaults: ``pianoacc prebuild``). It changes no note: a kept program is
the program the run would have traced.
"""

from __future__ import annotations

import time

from pianoacc_utils import harmony, models
from pianoacc_utils.defaults import DEFAULT_CANDIDATES, STEPS_PER_BEAT
from pianoacc_utils.generation.accompany import Window, WindowConfig, decode_windows
from pianoacc_utils.generation.decoder import MELODY_BUCKET, CachedDecoder
from pianoacc_utils.generation.sampling import TOKENIZER

BEATS_PER_BAR = 4
"""The stand-in window's meter (4/4; any meter of up to 8 beats pads to the same tables)."""


def stand_in_window(width: int, bars: int) -> Window:
    """A window of ``bars`` 4/4 bars whose melody is ``width`` tokens long (a repeated
    note-on: only the shape matters) and which covers one step: its decoding stops
    soon after it begins."""
    steps_per_bar = BEATS_PER_BAR * STEPS_PER_BEAT
    return Window(
        origin=0,
        end=1,
        melody_ids=[TOKENIZER.note_on_offset + 60] * width,
        primer_ids=[],
        harmony_table=harmony.beat_table([], bars * steps_per_bar),
        bar_lines=[bar * steps_per_bar for bar in range(bars)],
    )


def prebuild_programs(
    model: models.AccompanimentModel,
    decoder: CachedDecoder,
    window: WindowConfig,
    candidates: int = DEFAULT_CANDIDATES,
) -> dict[str, float | int]:
    """Decode one stand-in window of every melody width, widest last, with ``decoder``
    (made for ``model`` with the sampling settings to prepare for), ``candidates`` rows
    each, as :func:`~pianoacc_utils.generation.accompany` decodes a melody's windows.
    Returns ``widths`` (how many), ``programs`` (made in this process: traced, or loaded
    when kept before) and ``seconds``."""
    began, before = time.perf_counter(), len(decoder.timings)
    length = model.config.melody_length
    for width in range(MELODY_BUCKET, length + MELODY_BUCKET, MELODY_BUCKET):
        rows = [stand_in_window(min(width, length), window.bars)] * candidates
        decode_windows(decoder, rows, length, candidates)
    made = sum(timing.compiled for timing in decoder.timings[before:])
    return {"widths": -(-length // MELODY_BUCKET), "programs": int(made),
            "seconds": round(time.perf_counter() - began, 2)}

